//! reboot(2) and friends: the last thing PID 1 does, and the ctrl-alt-del
//! setting it makes first (CAD_OFF turns the key into SIGINT for PID 1).

use crate::cvt;
use std::io;

/// What to do with the machine at the end of stage 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    PowerOff,
    Reboot,
    Halt,
}

impl PowerAction {
    pub fn parse(s: &str) -> Option<PowerAction> {
        match s {
            "poweroff" => Some(PowerAction::PowerOff),
            "reboot" => Some(PowerAction::Reboot),
            "halt" => Some(PowerAction::Halt),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            PowerAction::PowerOff => "poweroff",
            PowerAction::Reboot => "reboot",
            PowerAction::Halt => "halt",
        }
    }
}

/// Makes ctrl-alt-del send SIGINT to PID 1 instead of rebooting at once.
pub fn ctrl_alt_del_to_sigint() -> io::Result<()> {
    // SAFETY: reboot with a command constant only.
    cvt(unsafe { libc::reboot(libc::LINUX_REBOOT_CMD_CAD_OFF) })?;
    Ok(())
}

/// Flushes every file system.
pub fn sync() {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
}

/// Powers off, reboots or halts now. In a PID namespace this ends the
/// namespace's init instead. Returns only on failure.
pub fn reboot(action: PowerAction) -> io::Error {
    let cmd = match action {
        PowerAction::PowerOff => libc::LINUX_REBOOT_CMD_POWER_OFF,
        PowerAction::Reboot => libc::LINUX_REBOOT_CMD_RESTART,
        PowerAction::Halt => libc::LINUX_REBOOT_CMD_HALT,
    };
    // SAFETY: reboot with a command constant only.
    unsafe { libc::reboot(cmd) };
    io::Error::last_os_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names() {
        for a in [
            PowerAction::PowerOff,
            PowerAction::Reboot,
            PowerAction::Halt,
        ] {
            assert_eq!(PowerAction::parse(a.name()), Some(a));
        }
        assert_eq!(PowerAction::parse("explode"), None);
    }
}
