//! The Linux watchdog device (`/dev/watchdog`, Documentation/watchdog/
//! watchdog-api.rst): opening it starts the timer, WDIOC_SETTIMEOUT sets
//! the timeout, WDIOC_KEEPALIVE pets it, and writing `V` before close (the
//! "magic close") stops it; closing without `V` leaves it running, which is
//! how stage 1 hands a running watchdog over to stage 2 across exec.

use crate::cvt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// `_IOR('W', 5, int)`.
const WDIOC_KEEPALIVE: libc::c_ulong = 0x8004_5705;
/// `_IOWR('W', 6, int)`.
const WDIOC_SETTIMEOUT: libc::c_ulong = 0xC004_5706;
/// `_IOR('W', 7, int)`.
const WDIOC_GETTIMEOUT: libc::c_ulong = 0x8004_5707;

/// A step with the watchdog that failed.
#[derive(Debug, thiserror::Error)]
pub enum WatchdogError {
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("{path}: WDIOC_SETTIMEOUT {secs} s: {source}")]
    SetTimeout {
        path: PathBuf,
        secs: u32,
        source: io::Error,
    },
    #[error("{path}: WDIOC_KEEPALIVE: {source}")]
    Keepalive { path: PathBuf, source: io::Error },
    #[error("{path}: magic close: {source}")]
    Close { path: PathBuf, source: io::Error },
}

/// An open (so running) watchdog.
#[derive(Debug)]
pub struct Watchdog {
    file: File,
    path: PathBuf,
}

impl Watchdog {
    /// Opens `path` (normally `/dev/watchdog`): the timer starts now.
    /// Close-on-exec: an exec closes it without the magic character, so
    /// the timer keeps running for the next program to open it again.
    pub fn open(path: &Path) -> Result<Watchdog, WatchdogError> {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|source| WatchdogError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Watchdog {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Sets the timeout; returns the one the driver chose (it may round).
    pub fn set_timeout(&mut self, secs: u32) -> Result<u32, WatchdogError> {
        let mut value = libc::c_int::try_from(secs).unwrap_or(libc::c_int::MAX);
        // SAFETY: WDIOC_SETTIMEOUT reads and writes one int through the
        // pointer, which is valid and writable for the call; the fd is open.
        let r = cvt(unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                WDIOC_SETTIMEOUT as _,
                &mut value as *mut libc::c_int,
            )
        });
        r.map_err(|source| WatchdogError::SetTimeout {
            path: self.path.clone(),
            secs,
            source,
        })?;
        Ok(u32::try_from(value).unwrap_or(secs))
    }

    /// The current timeout in seconds.
    pub fn timeout(&self) -> io::Result<u32> {
        let mut value: libc::c_int = 0;
        // SAFETY: WDIOC_GETTIMEOUT writes one int through the pointer,
        // which is valid and writable for the call; the fd is open.
        cvt(unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                WDIOC_GETTIMEOUT as _,
                &mut value as *mut libc::c_int,
            )
        })?;
        Ok(u32::try_from(value).unwrap_or(0))
    }

    /// Pets the watchdog: the timeout starts again.
    pub fn keepalive(&mut self) -> Result<(), WatchdogError> {
        let mut dummy: libc::c_int = 0;
        // SAFETY: WDIOC_KEEPALIVE ignores its argument (some drivers write
        // an int to it); the pointer is valid and writable; the fd is open.
        let r = cvt(unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                WDIOC_KEEPALIVE as _,
                &mut dummy as *mut libc::c_int,
            )
        });
        r.map(drop).map_err(|source| WatchdogError::Keepalive {
            path: self.path.clone(),
            source,
        })
    }

    /// The magic close: `V`, then close; the timer stops (unless the
    /// driver was built or loaded with nowayout).
    pub fn disarm(mut self) -> Result<(), WatchdogError> {
        self.file
            .write_all(b"V")
            .map_err(|source| WatchdogError::Close {
                path: self.path.clone(),
                source,
            })
    }

    /// The device path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_device_is_named() {
        let e = Watchdog::open(Path::new("/nonexistent/watchdog")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/watchdog"), "{e}");
    }

    #[test]
    fn ioctls_on_something_that_is_not_a_watchdog_fail_cleanly() {
        let mut w = Watchdog::open(Path::new("/dev/null")).unwrap();
        let e = w.set_timeout(5).unwrap_err();
        assert!(e.to_string().contains("WDIOC_SETTIMEOUT 5 s"), "{e}");
        assert!(w.keepalive().is_err());
        assert!(w.timeout().is_err());
        w.disarm().unwrap();
    }
}
