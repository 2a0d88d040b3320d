//! A timerfd on CLOCK_BOOTTIME, armed at an absolute deadline. The supervisor
//! keeps one and arms it at its earliest deadline, so an idle system has no
//! timer at all and PID 1 sleeps until something happens.

use crate::cvt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// A non-blocking, close-on-exec timerfd.
pub struct TimerFd {
    fd: OwnedFd,
}

impl TimerFd {
    /// Creates a disarmed timer.
    pub fn new() -> io::Result<TimerFd> {
        // SAFETY: timerfd_create takes a clock id and flags; the new fd is ours.
        let fd = cvt(unsafe {
            libc::timerfd_create(libc::CLOCK_BOOTTIME, libc::TFD_CLOEXEC | libc::TFD_NONBLOCK)
        })?;
        Ok(TimerFd {
            fd: crate::owned(fd),
        })
    }

    /// Arms the timer to fire at `deadline` (CLOCK_BOOTTIME), or disarms it.
    pub fn set(&self, deadline: Option<Duration>) -> io::Result<()> {
        let value = match deadline {
            // A zero it_value disarms; a deadline already past must still fire.
            Some(d) if d.is_zero() => libc::timespec {
                tv_sec: 0,
                tv_nsec: 1,
            },
            Some(d) => libc::timespec {
                tv_sec: d.as_secs().try_into().unwrap_or(i64::MAX),
                tv_nsec: libc::c_long::from(d.subsec_nanos()),
            },
            None => libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
        };
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: value,
        };
        // SAFETY: `spec` is a valid itimerspec; the old value is not wanted.
        cvt(unsafe {
            libc::timerfd_settime(
                self.fd.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        })?;
        Ok(())
    }

    /// Consumes the expiration count so the fd stops being readable.
    pub fn drain(&self) {
        let mut buf = [0u8; 8];
        // SAFETY: `buf` is 8 writable bytes, as a timerfd read requires. A
        // failure (EAGAIN when nothing expired) needs no handling.
        unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    }
}

impl AsRawFd for TimerFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::boottime;
    use crate::epoll::Epoll;

    #[test]
    fn fires_at_deadline_and_disarms() {
        let t = TimerFd::new().unwrap();
        let ep = Epoll::new().unwrap();
        ep.add(t.as_raw_fd(), 7).unwrap();
        let mut out = Vec::new();
        t.set(Some(boottime() + Duration::from_millis(20))).unwrap();
        ep.wait(&mut out, 5000).unwrap();
        assert_eq!(out.first().map(|r| r.token), Some(7));
        t.drain();
        t.set(Some(boottime() + Duration::from_millis(10))).unwrap();
        t.set(None).unwrap();
        ep.wait(&mut out, 50).unwrap();
        assert!(out.is_empty(), "a disarmed timer never fires");
        t.set(Some(Duration::ZERO)).unwrap();
        ep.wait(&mut out, 1000).unwrap();
        assert_eq!(out.len(), 1, "a deadline in the past fires at once");
    }
}
