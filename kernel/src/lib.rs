//! keel-kernel: every syscall Keel makes and every `unsafe` block it has.
//!
//! The rest of the workspace forbids `unsafe`; what it needs from the kernel
//! (mounts, signals, processes, epoll, timers, reboot, modules, logging to
//! /dev/kmsg) comes from here as small typed wrappers that return `io::Result`
//! or an error enum naming the step and the path. Paths such as `/proc` are
//! parameters wherever a test may want to point them at a temporary tree.

pub mod block;
pub mod cgroup;
pub mod clock;
pub mod cmdline;
pub mod epoll;
pub mod fs;
pub mod kmsg;
pub mod modules;
pub mod mount;
pub mod power;
pub mod process;
pub mod signal;
pub mod socket;
pub mod switch_root;
pub mod timer;
pub mod uevent;
pub mod watchdog;

use std::io;

/// Turns a C return value into `io::Result`: -1 means "look at errno".
pub(crate) fn cvt<T: IsMinusOne>(ret: T) -> io::Result<T> {
    if ret.is_minus_one() {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Like [`cvt`], but retries while the call was interrupted by a signal.
pub(crate) fn cvt_retry<T: IsMinusOne>(mut f: impl FnMut() -> T) -> io::Result<T> {
    loop {
        match cvt(f()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

pub(crate) trait IsMinusOne: Copy {
    fn is_minus_one(self) -> bool;
}

macro_rules! impl_is_minus_one {
    ($($t:ty)*) => {$(
        impl IsMinusOne for $t {
            fn is_minus_one(self) -> bool { self == -1 }
        }
    )*};
}
impl_is_minus_one!(i32 i64 isize);

/// The calling process's id.
pub fn getpid() -> i32 {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() }
}

/// The calling process's real user id.
pub fn getuid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// What an errno value means, as strerror says it ("No such file or
/// directory"), for errors a process reports as a number (sd_notify ERRNO=).
pub fn errno_text(errno: i32) -> String {
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    match text.rfind(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Takes ownership of a descriptor a syscall just returned.
pub(crate) fn owned(fd: std::os::fd::RawFd) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: callers pass only descriptors freshly returned by the kernel
    // (checked by `cvt`), which nothing else owns.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}

#[cfg(test)]
mod errno_tests {
    #[test]
    fn errno_text_is_strerror_without_the_number() {
        assert_eq!(super::errno_text(2), "No such file or directory");
    }
}
