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
    /// When the root's keel (stage 2) started, after a switch_root.
    pub stage2_at: Option<Duration>,
    pub problems: Vec<String>,
    pub after_boot: Option<PowerAction>,
    /// The boot record (written at boot complete and again at shutdown).
    pub record: Recorder,
}

/// `N ms (kernel K ms [+ initramfs I ms] + userspace U ms)`, the parts
/// adding up to the whole in whole milliseconds: the kernel until keel's
/// first instruction, stage 1 in the initramfs until the root's keel
/// started, and the rest.
pub fn boot_split(at: Duration, started: Duration, stage2_at: Option<Duration>) -> String {
    let total = at.as_millis();
    let kernel = started.as_millis();
    match stage2_at {
        Some(s2) => {
            let s2 = s2.as_millis().clamp(kernel, total);
            format!(
                "{total} ms (kernel {kernel} ms + initramfs {} ms + userspace {} ms)",
                s2 - kernel,
                total - s2
            )
        }
        None => format!(
            "{total} ms (kernel {kernel} ms + userspace {} ms)",
            total.saturating_sub(kernel)
        ),
    }
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
        let suffix = degraded_suffix(&self.problems, &report.failed);
        kmsg::announce(&format!(
            "boot complete in {}{suffix}",
            boot_split(report.at, self.started, self.stage2_at)
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

#[cfg(test)]
mod split_tests {
    use super::*;

    #[test]
    fn the_parts_add_up() {
        let ms = Duration::from_millis;
        assert_eq!(
            boot_split(ms(2567), ms(2298), None),
            "2567 ms (kernel 2298 ms + userspace 269 ms)"
        );
        assert_eq!(
            boot_split(ms(12943), ms(2115), Some(ms(2596))),
            "12943 ms (kernel 2115 ms + initramfs 481 ms + userspace 10347 ms)"
        );
    }
}
