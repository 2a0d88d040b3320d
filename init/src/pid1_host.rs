//! What PID 1 does when the supervisor calls back: the boot line (and the
//! boot record) at boot complete, and the power action a signal asks for.

use crate::boot::degraded_suffix;
use crate::record::collect::Recorder;
use keel_kernel::kmsg;
use keel_kernel::power::PowerAction;
use keel_kernel::signal::SignalInfo;
use keel_supervisor::timeline::Timeline;
use keel_supervisor::{BootReport, Host, Request};
use std::time::Duration;

pub struct Pid1 {
    pub started: Duration,
    pub problems: Vec<String>,
    pub after_boot: Option<PowerAction>,
    /// The boot record (written at boot complete and again at shutdown).
    pub record: Recorder,
}

pub fn code_of(action: PowerAction) -> i32 {
    match action {
        PowerAction::PowerOff => 0,
        PowerAction::Reboot => 1,
        PowerAction::Halt => 2,
    }
}

pub fn action_from_code(code: i32) -> PowerAction {
    match code {
        0 => PowerAction::PowerOff,
        2 => PowerAction::Halt,
        _ => PowerAction::Reboot,
    }
}

impl Host for Pid1 {
    fn boot_complete(&mut self, report: &BootReport, timeline: &Timeline) -> Option<Request> {
        let total = report.at.as_millis();
        let kernel = self.started.as_millis();
        let user = total.saturating_sub(kernel);
        let suffix = degraded_suffix(&self.problems, &report.failed);
        kmsg::announce(&format!(
            "boot complete in {total} ms (kernel {kernel} ms + userspace {user} ms){suffix}"
        ));
        // After the boot line, so that writing the record is not counted.
        self.record
            .boot_complete(self.started, report, timeline, &self.problems);
        self.after_boot.map(|a| {
            log::info!("keel.after-boot={}: shutting down", a.name());
            Request::Stop(code_of(a))
        })
    }

    fn power(&mut self, action: &str) -> Option<Request> {
        let a = PowerAction::parse(action)?;
        log::info!("{} requested over the control socket", a.name());
        Some(Request::Stop(code_of(a)))
    }

    fn blessed(&mut self, at: Duration) {
        self.record.blessed(at);
    }

    fn signal(&mut self, info: &SignalInfo) -> Option<Request> {
        let action = match info.signo {
            // ctrl-alt-del (after CAD_OFF) and the sysvinit/busybox
            // convention for SIGTERM.
            libc::SIGINT | libc::SIGTERM => PowerAction::Reboot,
            libc::SIGUSR2 | libc::SIGPWR => PowerAction::PowerOff,
            libc::SIGUSR1 => PowerAction::Halt,
            other => {
                log::info!(
                    "ignoring {} from pid {}",
                    keel_kernel::signal::name(other),
                    info.pid
                );
                return None;
            }
        };
        log::info!(
            "{} from pid {}: {}",
            keel_kernel::signal::name(info.signo),
            info.pid,
            action.name()
        );
        Some(Request::Stop(code_of(action)))
    }
}
