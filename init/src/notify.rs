//! `keel notify`: an sd_notify client, like systemd-notify, for images that
//! have no systemd: `keel notify --ready --status="serving"` sends
//! `READY=1\nSTATUS=serving` to `$NOTIFY_SOCKET`, then waits (bounded) until
//! the supervisor has read it (BARRIER=1: the supervisor closes the pipe fd
//! it was sent), so that it is still alive while its sender is checked.

use crate::exit;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

const USAGE: &str = "usage: keel notify [--ready] [--reloading] [--stopping] [--status=TEXT] \
[--pid[=N]] [--no-block] [KEY=VALUE...]";

/// Builds the datagram from the arguments.
fn message(args: &[String]) -> Result<(String, bool), String> {
    let mut lines = Vec::new();
    let mut block = true;
    for a in args {
        match a.as_str() {
            "--ready" => lines.push("READY=1".to_string()),
            "--reloading" => lines.push("RELOADING=1".to_string()),
            "--stopping" => lines.push("STOPPING=1".to_string()),
            "--no-block" => block = false,
            "--pid" => lines.push(format!("MAINPID={}", std::os::unix::process::parent_id())),
            s if s.starts_with("--pid=") => lines.push(format!("MAINPID={}", &s[6..])),
            s if s.starts_with("--status=") => lines.push(format!("STATUS={}", &s[9..])),
            s if !s.starts_with('-') && s.contains('=') => lines.push(s.to_string()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if lines.is_empty() {
        return Err("nothing to send".into());
    }
    Ok((lines.join("\n"), block))
}

pub fn main(args: &[String]) -> u8 {
    let (msg, block) = match message(args) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("keel notify: {e}\n{USAGE}");
            return exit::USAGE;
        }
    };
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET").map(PathBuf::from) else {
        eprintln!("keel notify: NOTIFY_SOCKET is not set (not started by a supervisor?)");
        return exit::FAILED;
    };
    if let Err(e) = keel_kernel::socket::send_datagram(&socket, msg.as_bytes(), &[]) {
        eprintln!("keel notify: cannot send to {}: {e}", socket.display());
        return exit::SYSTEM;
    }
    if block && !barrier(&socket) {
        eprintln!("keel notify: the supervisor did not confirm within 5s");
        return exit::FAILED;
    }
    exit::OK
}

/// Sends BARRIER=1 with the write end of a pipe and waits until the
/// supervisor closed it (EOF on the read end).
fn barrier(socket: &std::path::Path) -> bool {
    let Ok((mut reader, writer)) = std::io::pipe() else {
        return false;
    };
    let sent = keel_kernel::socket::send_datagram(socket, b"BARRIER=1", &[writer.as_raw_fd()]);
    drop(writer);
    if sent.is_err() {
        return false;
    }
    // EOF once the supervisor dropped its copy of the write end.
    let mut buf = [0u8; 1];
    matches!(
        keel_kernel::fs::wait_readable(reader.as_raw_fd(), 5000),
        Ok(true)
    ) && matches!(reader.read(&mut buf), Ok(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn builds_messages() {
        assert_eq!(
            message(&a(&["--ready", "--status=up and running"])).unwrap(),
            ("READY=1\nSTATUS=up and running".to_string(), true)
        );
        assert_eq!(
            message(&a(&["--pid=42", "WATCHDOG=1", "--no-block"])).unwrap(),
            ("MAINPID=42\nWATCHDOG=1".to_string(), false)
        );
        assert!(message(&a(&[])).is_err());
        assert!(message(&a(&["--bogus"])).is_err());
    }
}
