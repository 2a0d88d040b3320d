//! Small file-system helpers PID 1 needs early: writing a value into a
//! /proc or /sys file, and opening the console.

use std::io::{self, Write};
use std::path::Path;

/// Writes `value` into a kernel file such as /proc/sys/kernel/printk_devkmsg.
pub fn write_file(path: &Path, value: &str) -> io::Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(value.as_bytes())
}

/// A close-on-exec pipe: (read end, write end). The read end is
/// non-blocking when asked, for an epoll loop.
pub fn pipe(nonblocking_read: bool) -> io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 returns.
    crate::cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    let (r, w) = (crate::owned(fds[0]), crate::owned(fds[1]));
    if nonblocking_read {
        use std::os::fd::AsRawFd;
        // SAFETY: fcntl on a descriptor we own, with integer arguments.
        unsafe {
            let flags = crate::cvt(libc::fcntl(r.as_raw_fd(), libc::F_GETFL))?;
            crate::cvt(libc::fcntl(
                r.as_raw_fd(),
                libc::F_SETFL,
                flags | libc::O_NONBLOCK,
            ))?;
        }
    }
    Ok((r, w))
}

/// Waits until `fd` is readable or hung up, at most `timeout_ms`
/// milliseconds. Returns whether it became so.
pub fn wait_readable(fd: std::os::fd::RawFd, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd, as the count says.
    let n = crate::cvt_retry(|| unsafe { libc::poll(&mut p, 1, timeout_ms) })?;
    Ok(n > 0)
}

/// Counts the zombie processes visible in `proc` (state `Z` in stat).
pub fn count_zombies(proc: &Path) -> io::Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(proc)? {
        let entry = entry?;
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The state follows the command name, which is in parentheses and
        // may itself contain spaces or parentheses.
        if let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) {
            if rest.trim_start().starts_with('Z') {
                n += 1;
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_zombies_in_a_fake_proc() {
        let d = std::env::temp_dir().join(format!("keel-proc-{}", std::process::id()));
        for (pid, stat) in [
            ("1", "1 (keel) S 0"),
            ("7", "7 (a) b) Z 1"),
            ("9", "9 (z) Z 1"),
        ] {
            std::fs::create_dir_all(d.join(pid)).unwrap();
            std::fs::write(d.join(pid).join("stat"), stat).unwrap();
        }
        std::fs::create_dir_all(d.join("self")).unwrap();
        assert_eq!(count_zombies(&d).unwrap(), 2);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
