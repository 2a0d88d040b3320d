//! keel as PID 1: early mounts, logging, the command line, stage 1 (when
//! `keel.root=` names a root: see `stage1`), the supervisor, and the end of
//! the machine (stage 3). PID 1 never exits: whatever goes wrong, including a
//! panic, ends in the emergency action the command line names
//! (`keel.emergency=reboot|poweroff|halt|shell`), after saying why.
//!
//! Three ways in: the initramfs with `keel.root=` (stage 1, then exec the
//! root's keel); the root's keel as stage 2 (`keel.stage=2`: everything is
//! mounted, modules are loaded); and an initramfs-only system (no
//! `keel.root=`: the units run from the initramfs, unikernel style).
//!
//! The same code runs as PID 1 of a PID namespace (tests): mounts that are
//! already there are left alone, `keel.log=console` keeps the host's kmsg
//! out of it, and reboot(2) there ends the namespace.

use crate::boot::load_units;
use crate::pid1_host::action_from_code;
use keel_kernel::clock::boottime;
use keel_kernel::cmdline::Cmdline;
use keel_kernel::kmsg::{self, LogConfig};
use keel_kernel::mount::{self, Mount};
use keel_kernel::power::{self, PowerAction};
use keel_kernel::process;
use keel_supervisor::{Request, Supervisor};
use log::LevelFilter;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long stage 3 waits for stray processes after SIGTERM.
const FINAL_TERM_WAIT: Duration = Duration::from_secs(3);
/// The whole of stage 3, from the stop request to reboot(2), unless
/// `keel.shutdown-timeout=` says otherwise.
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(90);
/// Mounts stage 3 leaves alone: the kernel's own, and /run (tmpfs).
const API_MOUNTS: [&str; 4] = ["/dev", "/proc", "/sys", "/run"];

/// Entry point as PID 1. Never returns.
pub fn main(started: Duration, args: &[String]) -> ! {
    let result = std::panic::catch_unwind(|| boot(started, args));
    let (cmdline, why) = match result {
        Ok((cmdline, action)) => {
            final_stage(action, cmdline.get("keel.stage") == Some("2"));
            (cmdline, format!("{} failed", action.name()))
        }
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            (read_cmdline(args), format!("keel panicked: {msg}"))
        }
    };
    emergency(&cmdline, &why)
}

/// The command line: /proc/cmdline, then keel's own arguments (which the
/// kernel passes from after `--`, and which tests use in a namespace).
fn read_cmdline(args: &[String]) -> Cmdline {
    let mut c = Cmdline::read(Path::new("/proc/cmdline")).unwrap_or_default();
    c.extend(Cmdline::parse(&args.get(1..).unwrap_or_default().join(" ")));
    c
}

fn boot(started: Duration, args: &[String]) -> (Cmdline, PowerAction) {
    let mut stage1_record = crate::stage1::phases::Record::default();
    let mount_errors = mount_api_filesystems(&mut stage1_record);
    let cmdline = read_cmdline(args);
    let level = if cmdline.flag("keel.debug") {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    kmsg::init(&LogConfig {
        kmsg: cmdline.get("keel.log") != Some("console"),
        level,
    });
    log::info!(
        "keel {} started as PID 1 at {} ms",
        env!("CARGO_PKG_VERSION"),
        started.as_millis()
    );
    for e in &mount_errors {
        log::error!("{e}");
    }
    if let Err(e) = power::ctrl_alt_del_to_sigint() {
        log::debug!("cannot turn ctrl-alt-del into SIGINT: {e}");
    }
    let _ = std::env::set_current_dir("/");

    let stage2 = cmdline.get("keel.stage") == Some("2");
    if crate::stage1::wanted(&cmdline) {
        if in_initramfs() {
            let e = crate::stage1::run(&cmdline, stage1_record, started);
            emergency(&cmdline, &format!("stage 1: {e}"));
        }
        log::info!("keel.root= given but / is not an initramfs: running as stage 2");
    }
    // Stage 2 reports the boot from stage 1's start: the kernel's share
    // ends where keel's first instruction in the initramfs ran.
    let stage2_at = stage2.then_some(started);
    let started = match cmdline.get("keel.started-us").and_then(|v| v.parse().ok()) {
        Some(us) if stage2 => Duration::from_micros(us),
        _ => started,
    };
    if stage2 {
        log::info!(
            "stage 2: the root's keel, {} ms after stage 1 started",
            boottime().saturating_sub(started).as_millis()
        );
        report_memory_returned();
    }
    if cmdline.get("keel.break") == Some("stage2") {
        crate::stage1::debug_shell("stage2", "before the units start");
    }

    // Stage 1 loaded the modules; the root has no initramfs module tree.
    let mut module_problems = Vec::new();
    if let (false, Some(release)) = (stage2, crate::modules::running_release(Path::new("/proc"))) {
        module_problems =
            crate::modules::load_requested(&cmdline, Path::new("/lib/modules"), &release);
    }

    let dirs: Vec<PathBuf> = match cmdline.get("keel.units") {
        Some(d) => d.split(',').map(PathBuf::from).collect(),
        None => keel_units::DEFAULT_DIRS.iter().map(PathBuf::from).collect(),
    };
    let loaded = load_units(&dirs);
    let after_boot = cmdline.get("keel.after-boot").and_then(PowerAction::parse);
    let mut host = crate::pid1_host::Pid1 {
        started,
        stage2_at,
        problems: module_problems.into_iter().chain(loaded.problems).collect(),
        after_boot,
        record: crate::record::collect::Recorder::start(&cmdline, &loaded.units),
    };
    let runtime = Path::new("/run/keel");
    if let Err(e) = std::fs::create_dir_all(runtime) {
        log::error!("cannot create {}: {e}", runtime.display());
    }
    // A/B slots and the watchdog (see `slots`): blessing after the grace
    // period, petting on the tick.
    let mut slots = crate::slots::Slots::start(&cmdline, crate::slots::Paths::default());
    let mut config = crate::boot::pid1_config(runtime);
    if let Some(s) = &slots {
        config.bless_grace = Some(s.grace());
        config.tick = Some(s.config.tick());
    }
    let mut sup = match Supervisor::new(config, loaded.units) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot start the supervisor: {e}");
            return (cmdline, PowerAction::Reboot);
        }
    };
    let shutdown_timeout = cmdline
        .get("keel.shutdown-timeout")
        .and_then(crate::stage1::parse_duration)
        .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT);
    let Request::Stop(code) = sup.run(&mut Bounded {
        host: &mut host,
        slots: slots.as_mut(),
        timeout: shutdown_timeout,
        armed: false,
    });
    let action = action_from_code(code);
    if let Some(s) = &mut slots {
        s.shutdown(action.name());
    }
    host.record.shutdown(sup.timeline(), action.name());
    log::info!("all units stopped; {}", action.name());
    (cmdline, action)
}

/// The supervisor's host, plus the bound on stage 3: the first stop
/// request arms a timer thread that forces reboot(2) when
/// `keel.shutdown-timeout=` passes, whatever is still stuck.
struct Bounded<'a> {
    host: &'a mut crate::pid1_host::Pid1,
    slots: Option<&'a mut crate::slots::Slots>,
    timeout: Duration,
    armed: bool,
}

impl Bounded<'_> {
    fn arm(&mut self, request: Option<Request>) -> Option<Request> {
        if let (Some(Request::Stop(code)), false) = (&request, self.armed) {
            self.armed = true;
            let (action, timeout) = (action_from_code(*code), self.timeout);
            log::info!(
                "stage 3: {} within {} ms (keel.shutdown-timeout)",
                action.name(),
                timeout.as_millis()
            );
            // The thread only sleeps and makes syscalls; the supervisor's
            // fork/exec path stays async-signal-safe with it around.
            std::thread::spawn(move || {
                std::thread::sleep(timeout);
                log::error!(
                    "stage 3 did not finish within {} ms (keel.shutdown-timeout): forcing {}",
                    timeout.as_millis(),
                    action.name()
                );
                let e = power::reboot(action);
                log::error!("reboot(2) failed: {e}");
            });
        }
        request
    }
}

impl keel_supervisor::Host for Bounded<'_> {
    fn boot_complete(
        &mut self,
        report: &keel_supervisor::BootReport,
        timeline: &keel_supervisor::timeline::Timeline,
    ) -> Option<Request> {
        let r = self.host.boot_complete(report, timeline);
        self.arm(r)
    }
    fn signal(&mut self, info: &keel_kernel::signal::SignalInfo) -> Option<Request> {
        let r = self.host.signal(info);
        self.arm(r)
    }
    fn power(&mut self, action: &str) -> Option<Request> {
        let r = self.host.power(action);
        self.arm(r)
    }
    fn blessed(&mut self, at: Duration) {
        self.host.blessed(at);
        if let Some(s) = &mut self.slots {
            s.blessed(at);
        }
    }
    fn tick(&mut self) -> bool {
        self.host.tick() | self.slots.as_mut().is_some_and(|s| s.tick())
    }
}

/// Logs what switch_root gave back, from stage 1's record and meminfo now.
fn report_memory_returned() {
    use crate::stage1::phases;
    let record = std::fs::read_to_string(phases::PATH)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    if let Some(line) = record.and_then(|r| phases::memory_returned(&r, &phases::meminfo())) {
        log::info!("{line}");
    }
}

/// Whether / is the initramfs (rootfs: ramfs or tmpfs).
fn in_initramfs() -> bool {
    use keel_kernel::switch_root::{fs_magic, RAMFS_MAGIC, TMPFS_MAGIC};
    matches!(fs_magic(Path::new("/")), Ok(m) if m == RAMFS_MAGIC || m == TMPFS_MAGIC)
}

/// Mounts what is not mounted yet, timing each into stage 1's record.
fn mount_api_filesystems(record: &mut crate::stage1::phases::Record) -> Vec<String> {
    let mut errors = Vec::new();
    for (target, source, fstype, flags, data) in mount::api_filesystems(Path::new("/")) {
        let m = Mount {
            source,
            target: &target,
            fstype,
            flags,
            data,
        };
        let start = boottime();
        match mount::mount_once(&m) {
            Ok(true) => record.push(format!("mount {}", target.display()), start, boottime()),
            Ok(false) => {}
            Err(e) => errors.push(e.to_string()),
        }
    }
    errors
}

/// Stage 3 after the units are down: TERM, then KILL, to everything left,
/// sync, unmount what stage 1 mounted (read-only what stays busy), and
/// reboot(2). Returns only if reboot(2) failed.
fn final_stage(action: PowerAction, unmount: bool) {
    // Everything left is a descendant of PID 1 (orphans are re-parented
    // here), so "no children" means no process is left.
    let _ = process::kill(-1, libc::SIGTERM);
    kill_deaf_to_sigterm(Path::new("/proc"));
    if !wait_for_children(FINAL_TERM_WAIT) {
        log::warn!(
            "processes still running {} after SIGTERM; sending SIGKILL",
            keel_supervisor::service::fmt_duration(FINAL_TERM_WAIT)
        );
        let _ = process::kill(-1, libc::SIGKILL);
        wait_for_children(FINAL_TERM_WAIT);
    }
    power::sync();
    if unmount {
        unmount_all();
    }
    log::info!(
        "{}",
        match action {
            PowerAction::PowerOff => "powering off",
            PowerAction::Reboot => "rebooting",
            PowerAction::Halt => "halting",
        }
    );
    let e = power::reboot(action);
    log::error!("reboot(2) failed: {e}");
}

/// Unmounts everything but / and the API file systems, the most recent
/// first; what stays busy is remounted read-only, and so is /. Only for a
/// machine that came through stage 1: as PID 1 of a test's PID namespace,
/// the mounts are the host's.
fn unmount_all() {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounts = mount::parse_mountinfo(&text);
    for target in mount::unmount_order(&mounts, &API_MOUNTS) {
        match mount::umount(&target, 0) {
            Ok(()) => log::info!("unmounted {}", target.display()),
            Err(e) => match mount::remount_readonly(&target) {
                Ok(()) => log::warn!("{e}; remounted {} read-only", target.display()),
                Err(e2) => log::error!("{e}; and {e2}"),
            },
        }
    }
    let root_rw = mounts
        .iter()
        .any(|m| m.target == Path::new("/") && !m.read_only);
    if root_rw && !in_initramfs() {
        if let Err(e) = mount::remount_readonly(Path::new("/")) {
            log::error!("{e}");
        }
    }
    power::sync();
}

/// Reaps until no child is left or `limit` passed; true when none is left.
fn wait_for_children(limit: Duration) -> bool {
    let deadline = boottime() + limit;
    loop {
        while let Ok(Some(_)) = process::reap_one() {}
        if !process::has_children() {
            return true;
        }
        if boottime() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGKILLs, at once, the processes SIGTERM cannot stop: those that
/// ignore it, and a PID namespace's init (a container's) without a handler
/// for it, which the kernel shields from it. Waiting for them would only
/// wait out `FINAL_TERM_WAIT`. Only where `proc` is this PID namespace's.
fn kill_deaf_to_sigterm(proc: &Path) {
    let me = keel_kernel::getpid();
    let ours = std::fs::read_to_string(proc.join("self/status"))
        .ok()
        .and_then(|t| status_field(&t, "Pid").and_then(|v| v.parse::<i32>().ok()))
        == Some(me);
    if !ours {
        return;
    }
    let Ok(dir) = std::fs::read_dir(proc) else {
        return;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        if let Some(why) = deaf_to_sigterm(&text) {
            let name = status_field(&text, "Name").unwrap_or("?");
            log::info!("PID {pid} ({name}) {why}: SIGKILL");
            let _ = process::kill(pid, libc::SIGKILL);
        }
    }
}

/// Why the process whose /proc/PID/status is `status` cannot be stopped by
/// SIGTERM, if it cannot. Kernel threads (parent 0 or kthreadd) are left out.
fn deaf_to_sigterm(status: &str) -> Option<&'static str> {
    let ppid: i32 = status_field(status, "PPid")?.parse().ok()?;
    if ppid == 0 || ppid == 2 {
        return None;
    }
    let mask = |key: &str| {
        status_field(status, key)
            .and_then(|v| u64::from_str_radix(v, 16).ok())
            .unwrap_or(0)
    };
    let term = 1u64 << (libc::SIGTERM - 1);
    if mask("SigIgn") & term != 0 {
        return Some("ignores SIGTERM");
    }
    let nspid: Vec<&str> = status_field(status, "NSpid")?.split_whitespace().collect();
    if nspid.len() > 1 && nspid.last() == Some(&"1") && mask("SigCgt") & term == 0 {
        return Some("is a PID namespace's init without a SIGTERM handler");
    }
    None
}

/// The value of `key:` in a /proc/PID/status text.
fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == key).then(|| v.trim())
    })
}

/// The last resort: say why, then do what `keel.emergency=` asks.
fn emergency(cmdline: &Cmdline, why: &str) -> ! {
    log::error!("emergency: {why}");
    let wanted = cmdline.get("keel.emergency").unwrap_or("reboot");
    if wanted == "shell" && Path::new("/bin/sh").exists() {
        log::error!("emergency: starting /bin/sh");
        let e = process::exec(
            &["/bin/sh".to_string()],
            &["PATH=/usr/sbin:/usr/bin:/sbin:/bin".to_string()],
        );
        log::error!("emergency: cannot exec /bin/sh: {e}");
    }
    let action = PowerAction::parse(wanted).unwrap_or(PowerAction::Reboot);
    power::sync();
    let e = power::reboot(action);
    log::error!("emergency: reboot(2) failed: {e}; halting here");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(ppid: i32, nspid: &str, ign: &str, cgt: &str) -> String {
        format!(
            "Name:\tsh\nPid:\t40\nPPid:\t{ppid}\nNSpid:\t{nspid}\nSigBlk:\t0000000000000000\n\
             SigIgn:\t{ign}\nSigCgt:\t{cgt}\n"
        )
    }

    #[test]
    fn who_sigterm_cannot_stop() {
        let none = "0000000000000000";
        let term = "0000000000004000";
        // A container's init with no handler, in its own PID namespace.
        assert!(deaf_to_sigterm(&status(30, "40\t1", none, none))
            .is_some_and(|w| w.contains("PID namespace's init")));
        // The same with a handler: SIGTERM reaches it.
        assert_eq!(deaf_to_sigterm(&status(30, "40\t1", none, term)), None);
        // Ignoring SIGTERM, anywhere.
        assert_eq!(
            deaf_to_sigterm(&status(1, "40", term, none)),
            Some("ignores SIGTERM")
        );
        // An ordinary process, and kernel threads.
        assert_eq!(deaf_to_sigterm(&status(1, "40", none, none)), None);
        assert_eq!(
            deaf_to_sigterm(&status(2, "40", "ffffffffffffffff", none)),
            None
        );
        assert_eq!(
            deaf_to_sigterm(&status(0, "2", "ffffffffffffffff", none)),
            None
        );
    }
}
