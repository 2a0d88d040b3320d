//! keel as PID 1: early mounts, logging, the command line, the supervisor,
//! and the end of the machine (stage 3). PID 1 never exits: whatever goes
//! wrong, including a panic, ends in the emergency action the command line
//! names (`keel.emergency=reboot|poweroff|halt|shell`), after saying why.
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

/// Entry point as PID 1. Never returns.
pub fn main(started: Duration, args: &[String]) -> ! {
    let result = std::panic::catch_unwind(|| boot(started, args));
    let (cmdline, why) = match result {
        Ok((cmdline, action)) => {
            final_stage(action);
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
    let mount_errors = mount_api_filesystems();
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

    let mut module_problems = Vec::new();
    if let Some(release) = crate::modules::running_release(Path::new("/proc")) {
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
        problems: module_problems.into_iter().chain(loaded.problems).collect(),
        after_boot,
    };
    let runtime = Path::new("/run/keel");
    if let Err(e) = std::fs::create_dir_all(runtime) {
        log::error!("cannot create {}: {e}", runtime.display());
    }
    let mut sup = match Supervisor::new(crate::boot::pid1_config(runtime), loaded.units) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot start the supervisor: {e}");
            return (cmdline, PowerAction::Reboot);
        }
    };
    let Request::Stop(code) = sup.run(&mut host);
    let action = action_from_code(code);
    log::info!("all units stopped; {}", action.name());
    (cmdline, action)
}

fn mount_api_filesystems() -> Vec<String> {
    let mut errors = Vec::new();
    for (target, source, fstype, flags, data) in mount::api_filesystems(Path::new("/")) {
        let m = Mount {
            source,
            target: &target,
            fstype,
            flags,
            data,
        };
        if let Err(e) = mount::mount_once(&m) {
            errors.push(e.to_string());
        }
    }
    errors
}

/// Stage 3 after the units are down: TERM, then KILL, to everything left,
/// sync, and reboot(2). Returns only if reboot(2) failed.
fn final_stage(action: PowerAction) {
    // Everything left is a descendant of PID 1 (orphans are re-parented
    // here), so "no children" means no process is left.
    let _ = process::kill(-1, libc::SIGTERM);
    if !wait_for_children(FINAL_TERM_WAIT) {
        log::warn!(
            "processes still running {} after SIGTERM; sending SIGKILL",
            keel_supervisor::service::fmt_duration(FINAL_TERM_WAIT)
        );
        let _ = process::kill(-1, libc::SIGKILL);
        wait_for_children(FINAL_TERM_WAIT);
    }
    power::sync();
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
