//! `keel supervise`: the supervisor outside PID 1, as a subreaper. It
//! adopts orphans like an init, runs the units of one directory, and turns
//! SIGTERM or SIGINT into an orderly stop. Exit status: 0 when every unit
//! went well, 1 when any failed, 100 on bad usage, 111 when it could not
//! set itself up.

use crate::boot::{degraded_suffix, load_units};
use crate::exit;
use keel_kernel::clock::boottime;
use keel_kernel::kmsg::{self, LogConfig};
use keel_kernel::signal::SignalInfo;
use keel_supervisor::timeline::Timeline;
use keel_supervisor::{BootReport, Host, Request, Supervisor};
use log::LevelFilter;
use std::path::PathBuf;
use std::time::Duration;

struct Options {
    units: Vec<PathBuf>,
    runtime_dir: Option<PathBuf>,
    log_dir: Option<PathBuf>,
    control: Option<PathBuf>,
    bless_grace: Option<std::time::Duration>,
    exit_after_boot: bool,
    debug: bool,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        units: Vec::new(),
        runtime_dir: None,
        log_dir: None,
        control: None,
        bless_grace: None,
        exit_after_boot: false,
        debug: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--units" => o
                .units
                .push(PathBuf::from(it.next().ok_or("--units needs a directory")?)),
            "--runtime-dir" => {
                o.runtime_dir = Some(PathBuf::from(
                    it.next().ok_or("--runtime-dir needs a directory")?,
                ))
            }
            "--control" => {
                o.control = Some(PathBuf::from(it.next().ok_or("--control needs a path")?))
            }
            "--bless-after" => {
                let v = it.next().ok_or("--bless-after needs a duration")?;
                o.bless_grace = Some(
                    keel_units::parse_duration(v).map_err(|e| format!("--bless-after {v}: {e}"))?,
                );
            }
            "--log-dir" => {
                o.log_dir = Some(PathBuf::from(
                    it.next().ok_or("--log-dir needs a directory")?,
                ))
            }
            "--after-boot" => match it.next().map(String::as_str) {
                Some("exit") => o.exit_after_boot = true,
                Some("stay") => o.exit_after_boot = false,
                _ => return Err("--after-boot takes exit or stay".into()),
            },
            "--debug" => o.debug = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if o.units.is_empty() {
        return Err("--units DIR is required".into());
    }
    Ok(o)
}

struct Sub {
    started: Duration,
    problems: Vec<String>,
    exit_after_boot: bool,
    failed: bool,
}

impl Host for Sub {
    fn boot_complete(&mut self, report: &BootReport, _timeline: &Timeline) -> Option<Request> {
        let ms = report.at.saturating_sub(self.started).as_millis();
        let suffix = degraded_suffix(&self.problems, &report.failed);
        self.failed = !report.failed.is_empty() || !self.problems.is_empty();
        kmsg::announce(&format!("units ready in {ms} ms{suffix}"));
        self.exit_after_boot.then_some(Request::Stop(0))
    }

    fn blessed(&mut self, at: Duration) {
        kmsg::announce(&format!(
            "boot blessed: every boot-critical unit healthy; {} ms after start",
            at.saturating_sub(self.started).as_millis()
        ));
    }

    fn power(&mut self, action: &str) -> Option<Request> {
        log::info!("{action} requested over the control socket: stopping");
        Some(Request::Stop(0))
    }

    fn signal(&mut self, info: &SignalInfo) -> Option<Request> {
        match info.signo {
            libc::SIGTERM | libc::SIGINT => {
                log::info!("{}: stopping", keel_kernel::signal::name(info.signo));
                Some(Request::Stop(0))
            }
            _ => None,
        }
    }
}

pub fn main(args: &[String]) -> u8 {
    let started = boottime();
    let o = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("keel supervise: {e}");
            return exit::USAGE;
        }
    };
    kmsg::init(&LogConfig {
        kmsg: false,
        level: if o.debug {
            LevelFilter::Debug
        } else {
            LevelFilter::Info
        },
    });
    if let Err(e) = keel_kernel::process::set_child_subreaper() {
        log::error!("cannot become a subreaper: {e}");
        return exit::SYSTEM;
    }
    let loaded = load_units(&o.units);
    let mut host = Sub {
        started,
        problems: loaded.problems,
        exit_after_boot: o.exit_after_boot,
        failed: false,
    };
    let runtime = o.runtime_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("keel-supervise-{}", std::process::id()))
    });
    if let Err(e) = std::fs::create_dir_all(&runtime) {
        log::error!(
            "cannot create the runtime directory {}: {e}",
            runtime.display()
        );
        return exit::SYSTEM;
    }
    let mut config = crate::boot::subreaper_config(&runtime, o.log_dir.clone(), &o.units);
    if let Some(c) = &o.control {
        config.control_socket = Some(c.clone());
    }
    config.bless_grace = o.bless_grace;
    let mut sup = match Supervisor::new(config, loaded.units) {
        Ok(s) => s,
        Err(e) => {
            log::error!("{e}");
            return exit::SYSTEM;
        }
    };
    let Request::Stop(_) = sup.run(&mut host);
    let failed = host.failed || sup.states().any(|(_, s)| s.is_failed());
    log::info!("all units stopped");
    crate::boot::cleanup_subreaper_cgroup();
    for sock in ["notify", "control.sock"] {
        let _ = std::fs::remove_file(runtime.join(sock));
    }
    if let Some(c) = &o.control {
        let _ = std::fs::remove_file(c);
    }
    if o.runtime_dir.is_none() {
        let _ = std::fs::remove_dir(&runtime);
    }
    if failed {
        exit::FAILED
    } else {
        exit::OK
    }
}
