//! A small epoll wrapper: register fds with a `u64` token, wait for events.
//! The supervisor's loop is one `Epoll` over a signalfd, a timerfd and its
//! sockets and pipes; with nothing to do it sleeps without a timeout.

use crate::{cvt, cvt_retry};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// An epoll instance.
pub struct Epoll {
    fd: OwnedFd,
}

/// What became ready: the token given at registration and the event bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    pub token: u64,
    pub readable: bool,
    pub hangup: bool,
}

impl Epoll {
    /// Creates a close-on-exec epoll instance.
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes only flags; the returned fd is new and
        // owned by nobody else.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Epoll {
            fd: crate::owned(fd),
        })
    }

    /// Watches `fd` for input under `token`.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
            u64: token,
        };
        // SAFETY: both fds are valid for the call; `ev` is a valid event.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })?;
        Ok(())
    }

    /// Stops watching `fd`.
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: as in `add`; the event is ignored by EPOLL_CTL_DEL.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev) })?;
        Ok(())
    }

    /// Waits for events; `timeout_ms` of -1 waits for ever. EINTR is retried.
    pub fn wait(&self, out: &mut Vec<Ready>, timeout_ms: i32) -> io::Result<()> {
        const MAX: usize = 64;
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; MAX];
        let n = cvt_retry(|| {
            // SAFETY: `evs` has room for MAX events, as we tell the kernel.
            unsafe {
                libc::epoll_wait(
                    self.fd.as_raw_fd(),
                    evs.as_mut_ptr(),
                    MAX as i32,
                    timeout_ms,
                )
            }
        })?;
        out.clear();
        for ev in evs.iter().take(usize::try_from(n).unwrap_or(0)) {
            let bits = ev.events;
            out.push(Ready {
                token: ev.u64,
                readable: bits & (libc::EPOLLIN as u32) != 0,
                hangup: bits & ((libc::EPOLLHUP | libc::EPOLLRDHUP | libc::EPOLLERR) as u32) != 0,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn reports_readable_fd_with_its_token() {
        let ep = Epoll::new().unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        ep.add(b.as_raw_fd(), 42).unwrap();
        let mut out = Vec::new();
        ep.wait(&mut out, 0).unwrap();
        assert!(out.is_empty(), "nothing written yet");
        a.write_all(b"x").unwrap();
        ep.wait(&mut out, 1000).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].token, 42);
        assert!(out[0].readable);
        ep.delete(b.as_raw_fd()).unwrap();
        ep.wait(&mut out, 0).unwrap();
        assert!(out.is_empty(), "deleted fds are not reported");
    }
}
