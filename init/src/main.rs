//! keel: one static binary with several modes.
//!
//! - As PID 1 (`getpid() == 1`): the init of a machine or of a PID
//!   namespace (see `pid1`).
//! - `keel supervise --units DIR`: the same supervisor as a subreaper, for
//!   containers and tests (see `supervise`).
//! - Anything else is a command-line tool (`keel check`, `keel version`).

#![forbid(unsafe_code)]

mod agent;
mod analyze;
mod boot;
mod check;
mod ctl;
mod modules;
mod notify;
mod pid1;
mod pid1_host;
mod probe;
mod record;
mod slots;
mod stage1;
mod supervise;
mod update;

use std::process::ExitCode;

/// Exit codes of the command-line modes (s6's convention).
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const USAGE: u8 = 100;
    pub const SYSTEM: u8 = 111;
}

const USAGE: &str = "usage: keel <command>

  keel supervise --units DIR [--control PATH] [--runtime-dir DIR] [--log-dir DIR]
                         [--after-boot exit|stay] [--bless-after DURATION]
                         run DIR's units as a subreaper until SIGTERM/SIGINT
  keel check [--json] [DIR...]
                         check unit files; print diagnostics and the start order
  keel notify [--ready] [--status=TEXT] [--pid[=N]] [KEY=VALUE...]
                         send an sd_notify message to $NOTIFY_SOCKET
  keel status [UNIT] [--json]        units and their states (UNIT: events, last output)
  keel start|stop|restart|reload UNIT
  keel logs UNIT [-n N] [-f]         a unit's recent output; -f follows
  keel poweroff|reboot|halt          ask PID 1 (or keel supervise) to stop everything
                         (--control PATH or $KEEL_CONTROL; default /run/keel/control.sock)
  keel agent [--endpoint HOST:PORT] [--hostname NAME] [--units-dir DIR] [--control PATH]
                         take units from etcd (/keel/hosts/NAME/units/) and reload
  keel version           print the version

As PID 1, keel boots the machine (see the README for keel.* parameters).";

fn main() -> ExitCode {
    let started = keel_kernel::clock::boottime();
    let args: Vec<String> = std::env::args().collect();
    if keel_kernel::getpid() == 1 {
        pid1::main(started, &args);
    }
    let code = match args.get(1).map(String::as_str) {
        Some("supervise") => supervise::main(&args[2..]),
        Some("notify") => notify::main(&args[2..]),
        Some("agent") => agent::main(&args[2..]),
        Some("analyze") => analyze::main(&args[2..]),
        Some("probe") => probe::main(&args[2..]),
        Some("update") => update::main(&args[2..]),
        Some(
            op @ ("status" | "start" | "stop" | "restart" | "reload" | "logs" | "poweroff"
            | "reboot" | "halt"),
        ) => ctl::main(op, &args[2..]),
        Some("check") => u8::try_from(check::run(&args[2..])).unwrap_or(exit::FAILED),
        Some("version" | "--version") => {
            println!("keel {}", env!("CARGO_PKG_VERSION"));
            exit::OK
        }
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            exit::OK
        }
        _ => {
            eprintln!("{USAGE}");
            exit::USAGE
        }
    };
    ExitCode::from(code)
}
