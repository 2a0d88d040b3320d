//! Stage 1: from the initramfs to the real root, in keel itself (no shell,
//! no udev, no modprobe). Runs when the command line names a root
//! (`keel.root=`) and this is not already stage 2 (`keel.stage=2`, which
//! stage 1 passes to the root's keel):
//!
//! 1. open a uevent socket, load the initramfs's modules (modules.dep order);
//! 2. wait for the root device (`keel.root=`, bounded by `keel.root-timeout=`);
//!    with `keel.root=slot`, wait for the disk with `KEEL-A` and `KEEL-B`,
//!    choose the slot from their GPT attributes (`keel.slot=a|b` forces),
//!    write its decremented tries to both GPT copies, and arm the watchdog
//!    (see `slot` and `crate::slots`);
//! 3. mount it read-only on /sysroot, the state partition on /sysroot/var
//!    (`keel.state=`, default `PARTLABEL=KEEL-STATE`; a tmpfs if there is
//!    none), /etc as an overlay with its upper layer on /var, /tmp as tmpfs;
//! 4. `keel.break=stage1`: a shell here, if the initramfs has one;
//! 5. switch_root (moving /dev, /proc, /sys, /run; freeing the initramfs),
//!    write `/run/keel/stage1.json`, and exec the root's own
//!    `/usr/lib/keel/keel keel.stage=2 keel.started-us=N`.
//!
//! Every step is timed into the record; any failure is returned for PID 1's
//! emergency action, with the step and the device in the message.

pub mod mounts;
pub mod phases;
pub mod probe;
pub mod root;
pub mod slot;

use keel_kernel::clock::boottime;
use keel_kernel::cmdline::Cmdline;
use keel_kernel::switch_root::{self, SwitchRootError};
use keel_kernel::uevent::UeventSocket;
use keel_kernel::{block, process};
use mounts::{RootMountError, Var, SYSROOT};
use phases::Record;
use root::{DeviceSpec, NotFound, Roots};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The root's own keel, exec'd as stage 2.
pub const ROOT_KEEL: &str = "/usr/lib/keel/keel";
/// Default bound for the root device to appear.
pub const DEFAULT_ROOT_TIMEOUT: Duration = Duration::from_secs(10);
/// API mounts carried into the new root.
pub const MOVED: [&str; 4] = ["/dev", "/proc", "/sys", "/run"];

/// A step of stage 1 that failed.
#[derive(Debug, thiserror::Error)]
pub enum Stage1Error {
    #[error("keel.root={value}: {reason}")]
    BadRoot { value: String, reason: String },
    #[error("keel.slot={0}: not a or b")]
    BadSlot(String),
    #[error("choosing the slot: {0}")]
    Slot(#[from] slot::SlotError),
    #[error(transparent)]
    NotFound(#[from] NotFound),
    #[error("cannot mount the root {node}: {source}")]
    MountRoot {
        node: PathBuf,
        source: RootMountError,
    },
    #[error("the root on {node} has no {ROOT_KEEL}; not switching to it")]
    NoKeel { node: PathBuf },
    #[error("switch_root to {SYSROOT}: {0}")]
    SwitchRoot(#[from] SwitchRootError),
    #[error("cannot exec {ROOT_KEEL} in the new root: {0}")]
    Exec(std::io::Error),
}

/// Whether this boot needs stage 1.
pub fn wanted(cmdline: &Cmdline) -> bool {
    cmdline.get("keel.root").is_some() && cmdline.get("keel.stage") != Some("2")
}

/// A duration on the command line: `10` (seconds), `2s`, `500ms`, `1m30s`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    // A bare number is seconds; anything else reads like a unit file's
    // durations ("500ms", "1m30s").
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Some(Duration::from_secs_f64(v)),
        Ok(_) => None,
        Err(_) => keel_units::parse_duration(s).ok(),
    }
}

/// Runs stage 1. On success this process becomes the root's keel and
/// never returns; the error says which step failed.
pub fn run(cmdline: &Cmdline, mut record: Record, started: Duration) -> Stage1Error {
    match run_steps(cmdline, &mut record, started) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

enum Never {}

fn run_steps(
    cmdline: &Cmdline,
    record: &mut Record,
    started: Duration,
) -> Result<Never, Stage1Error> {
    let value = cmdline.get("keel.root").unwrap_or_default().to_string();
    // `keel.root=slot`: the A/B disk; wait for its first slot to appear.
    let slotted = value == "slot";
    let spec = if slotted {
        DeviceSpec::PartLabel(slot::Slot::A.label().into())
    } else {
        DeviceSpec::parse(&value).map_err(|reason| Stage1Error::BadRoot {
            value: value.clone(),
            reason,
        })?
    };
    let forced = match cmdline.get("keel.slot") {
        Some(v) => Some(slot::Slot::parse(v).ok_or_else(|| Stage1Error::BadSlot(v.into()))?),
        None => None,
    };
    let timeout = cmdline
        .get("keel.root-timeout")
        .and_then(parse_duration)
        .unwrap_or(DEFAULT_ROOT_TIMEOUT);

    // Listen before the drivers load, so no "add" is missed.
    let events = match UeventSocket::open() {
        Ok(s) => Some(s),
        Err(e) => {
            log::warn!("no uevent socket ({e}); polling /sys/class/block");
            None
        }
    };
    record.time("load modules", || {
        if let Some(release) = crate::modules::running_release(Path::new("/proc")) {
            for p in crate::modules::load_all(cmdline, Path::new("/lib/modules"), &release) {
                log::warn!("stage 1: {p}");
            }
        }
    });

    let roots = Roots::default();
    let found = record.time(format!("wait for {spec}"), || {
        root::wait_for(&spec, timeout, events.as_ref(), &roots)
    })?;
    drop(events);
    let (found, _watchdog, shown) = if slotted {
        let (found, watchdog) = choose_slot(cmdline, forced, record, &roots)?;
        let shown = format!(
            "slot {}",
            record.slot.as_deref().unwrap_or("?").to_uppercase()
        );
        (found, watchdog, shown)
    } else {
        (found, None, spec.to_string())
    };
    let node = found.node.clone();
    record.root = Some(node.display().to_string());
    let sysroot = Path::new(SYSROOT);
    let fstype = record
        .time("mount root", || {
            mounts::mount_root(&node, found.probe.as_ref(), sysroot)
        })
        .map_err(|source| Stage1Error::MountRoot {
            node: node.clone(),
            source,
        })?;
    log::info!(
        "root {shown} is {} ({fstype}), mounted read-only",
        node.display()
    );
    if !sysroot.join(ROOT_KEEL.trim_start_matches('/')).is_file() {
        let _ = keel_kernel::mount::umount(sysroot, 0);
        return Err(Stage1Error::NoKeel { node });
    }

    let state = state_device(cmdline, &roots);
    let var = record.time("mount /var", || {
        mounts::mount_var(
            state.as_ref().map(|f| (f.node.as_path(), f.probe.as_ref())),
            &sysroot.join("var"),
        )
    });
    match &var {
        Var::State(dev) => log::info!("state {} mounted on /var", dev.display()),
        Var::Tmpfs(why) => log::error!(
            "/var is a tmpfs ({why}): nothing written to /var or /etc will survive a reboot"
        ),
    }
    if let Err(e) = record.time("mount /etc overlay", || mounts::mount_etc(sysroot)) {
        log::error!("/etc stays the image's, read-only: {e}");
    }
    if let Err(e) = record.time("mount /tmp", || mounts::mount_tmp(sysroot)) {
        log::error!("{e}");
    }

    if cmdline.get("keel.break") == Some("stage1") {
        debug_shell("stage1", &format!("the new root is mounted on {SYSROOT}"));
    }

    let before = phases::meminfo();
    let switch_start = boottime();
    let freed = switch_root::switch_root(sysroot, &MOVED)?;
    record.push("switch_root", switch_start, boottime());
    let after = phases::meminfo();
    let kb = |text: &str, key| phases::meminfo_kb(text, key).unwrap_or(0);
    record.memory = vec![
        ("initramfs_freed_bytes", freed.bytes),
        ("initramfs_freed_entries", freed.entries),
        ("memfree_before_kb", kb(&before, "MemFree")),
        ("memfree_after_kb", kb(&after, "MemFree")),
        ("shmem_before_kb", kb(&before, "Shmem")),
        ("shmem_after_kb", kb(&after, "Shmem")),
    ];
    log::info!(
        "switch_root: freed the initramfs ({} files, {} KiB): MemFree {} -> {} kB, Shmem {} -> {} kB",
        freed.entries,
        freed.bytes / 1024,
        kb(&before, "MemFree"),
        kb(&after, "MemFree"),
        kb(&before, "Shmem"),
        kb(&after, "Shmem"),
    );
    if let Err(e) = record.write(Path::new(phases::PATH)) {
        log::error!("cannot write {}: {e}", phases::PATH);
    }
    let stage1_ms = boottime().saturating_sub(started).as_millis();
    log::info!("stage 1 done in {stage1_ms} ms; exec {ROOT_KEEL} as stage 2");
    let argv = vec![
        ROOT_KEEL.to_string(),
        "keel.stage=2".to_string(),
        format!("keel.started-us={}", started.as_micros()),
    ];
    let env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    Err(Stage1Error::Exec(process::exec(&argv, &env)))
}

/// `keel.root=slot`: chooses the slot, persists its tries, arms the
/// watchdog. Returns the chosen partition and the open watchdog, which the
/// exec to stage 2 closes without disarming it.
fn choose_slot(
    cmdline: &Cmdline,
    forced: Option<slot::Slot>,
    record: &mut Record,
    roots: &Roots,
) -> Result<(root::Found, Option<keel_kernel::watchdog::Watchdog>), Stage1Error> {
    let (disk, choice) = record.time("choose slot", || {
        let disk = slot::SlotDisk::scan(&roots.sys, &roots.dev)?;
        let choice = slot::count_boot(&disk.disk, forced)?;
        Ok::<_, slot::SlotError>((disk, choice))
    })?;
    log::info!(
        "slot {} ({}): {}",
        choice.slot.name(),
        disk.node(choice.slot).display(),
        choice.reason
    );
    record.slot = Some(choice.slot.id().into());
    record.slot_reason = Some(choice.reason.clone());
    record.slot_disk = Some(disk.disk.display().to_string());
    let config = crate::slots::SlotConfig::from_cmdline(cmdline, true);
    let watchdog = record.time("arm watchdog", || crate::slots::arm_watchdog(&config));
    let node = disk.node(choice.slot).to_path_buf();
    let found = root::Found {
        probe: probe::probe_device(&node),
        node,
    };
    Ok((found, watchdog))
}

/// The state partition, if the command line and the disk have one. It is
/// on the disk that is already there, so there is no waiting.
fn state_device(cmdline: &Cmdline, roots: &Roots) -> Option<root::Found> {
    let value = cmdline.get("keel.state").unwrap_or("PARTLABEL=KEEL-STATE");
    if matches!(value, "none" | "tmpfs") {
        return None;
    }
    let spec = match DeviceSpec::parse(value) {
        Ok(s) => s,
        Err(e) => {
            log::error!("keel.state={value}: {e}");
            return None;
        }
    };
    let devices = block::list(&roots.sys).unwrap_or_default();
    let found = root::find(&spec, &devices, roots);
    if found.is_none() {
        log::error!(
            "state partition {spec} not found; block devices: {}",
            root::describe(&devices)
        );
    }
    found
}

/// `keel.break=STAGE`: runs /bin/sh on the console and continues when it
/// exits. Without a shell in the image, says so and continues.
pub fn debug_shell(stage: &str, context: &str) {
    if !Path::new("/bin/sh").exists() {
        log::warn!("keel.break={stage}: no /bin/sh in this image; continuing");
        return;
    }
    log::warn!("keel.break={stage}: {context}; starting /bin/sh (exit it to continue)");
    let argv = ["/bin/sh".to_string()];
    let spawned = process::Command::new(&argv).and_then(|mut c| {
        c.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")?
            .stdin(process::Stdio::Inherit)
            .stdout(process::Stdio::Inherit)
            .stderr(process::Stdio::Inherit);
        c.spawn()
    });
    match spawned {
        Ok(pid) => {
            let status = process::waitpid_blocking(pid);
            log::info!("keel.break={stage}: shell ended ({status:?}); continuing");
        }
        Err(e) => log::error!("keel.break={stage}: cannot start /bin/sh: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_stage1_runs() {
        assert!(!wanted(&Cmdline::parse("console=ttyS0")));
        assert!(wanted(&Cmdline::parse("keel.root=PARTLABEL=KEEL-A")));
        assert!(!wanted(&Cmdline::parse(
            "keel.root=PARTLABEL=KEEL-A keel.stage=2"
        )));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("-1"), None);
    }

    #[test]
    fn a_bad_root_spec_is_named_before_anything_happens() {
        let c = Cmdline::parse("keel.root=vda1");
        let e = run(&c, Record::default(), Duration::ZERO);
        assert!(
            matches!(&e, Stage1Error::BadRoot { value, .. } if value == "vda1"),
            "{e}"
        );
    }
}
