//! Signals as file descriptor events: PID 1 blocks every signal and reads the
//! ones it handles from a signalfd in its epoll loop, so no handler ever runs
//! on top of the supervisor's state. Children get an empty mask back before
//! exec (see `process`).

use crate::cvt;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// The signals Keel's loop handles.
pub const HANDLED: &[i32] = &[
    libc::SIGCHLD,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGPWR,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGQUIT,
];

fn empty_set() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        set.assume_init()
    }
}

fn set_of(signals: &[i32]) -> libc::sigset_t {
    let mut set = empty_set();
    for &s in signals {
        // SAFETY: `set` is initialised; an invalid number only yields EINVAL.
        unsafe { libc::sigaddset(&mut set, s) };
    }
    set
}

/// Blocks `signals` for the calling thread (the whole process when it has
/// one thread, as PID 1 does).
pub fn block(signals: &[i32]) -> io::Result<()> {
    let set = set_of(signals);
    // SAFETY: `set` is a valid, initialised sigset; the old mask is not kept.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Blocks every signal that can be blocked.
pub fn block_all() -> io::Result<()> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigfillset initialises the set; pthread_sigmask reads it.
    let rc = unsafe {
        libc::sigfillset(set.as_mut_ptr());
        libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// A signal read from a signalfd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalInfo {
    pub signo: i32,
    /// The sender's pid (0 from the kernel).
    pub pid: u32,
    pub uid: u32,
}

/// A non-blocking signalfd for a fixed set of (blocked) signals.
pub struct SignalFd {
    fd: OwnedFd,
}

impl SignalFd {
    /// Creates a signalfd for `signals`; the caller must have blocked them.
    pub fn new(signals: &[i32]) -> io::Result<SignalFd> {
        let set = set_of(signals);
        // SAFETY: -1 asks for a new fd; `set` is a valid sigset.
        let fd = cvt(unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) })?;
        Ok(SignalFd {
            fd: crate::owned(fd),
        })
    }

    /// Reads one pending signal, or `None` when none is pending.
    pub fn read(&self) -> io::Result<Option<SignalInfo>> {
        let mut info = MaybeUninit::<libc::signalfd_siginfo>::zeroed();
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        loop {
            // SAFETY: `info` has room for exactly one signalfd_siginfo.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), info.as_mut_ptr().cast(), size) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => return Ok(None),
                    _ => return Err(e),
                }
            }
            if usize::try_from(n).ok() != Some(size) {
                return Ok(None);
            }
            // SAFETY: the kernel filled the whole struct (n == size); all-zero
            // is valid too, as it was zeroed.
            let info = unsafe { info.assume_init() };
            return Ok(Some(SignalInfo {
                signo: i32::try_from(info.ssi_signo).unwrap_or(0),
                pid: info.ssi_pid,
                uid: info.ssi_uid,
            }));
        }
    }
}

impl AsRawFd for SignalFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The conventional name of a signal number ("SIGTERM"), for logs.
pub fn name(signo: i32) -> String {
    let n = match signo {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGCONT => "SIGCONT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGPWR => "SIGPWR",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("signal {signo}"),
    };
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(name(libc::SIGTERM), "SIGTERM");
        assert_eq!(name(libc::SIGKILL), "SIGKILL");
        assert_eq!(name(77), "signal 77");
    }

    #[test]
    fn signalfd_receives_a_blocked_signal() {
        // Runs in its own thread; the mask is per thread and the signal is
        // directed at this thread with tgkill.
        std::thread::spawn(|| {
            block(&[libc::SIGUSR2]).unwrap();
            let sfd = SignalFd::new(&[libc::SIGUSR2]).unwrap();
            assert_eq!(sfd.read().unwrap(), None);
            // SAFETY: test-only direct syscalls with valid ids.
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::pid_t;
                libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, libc::SIGUSR2);
            }
            let got = sfd.read().unwrap().expect("a pending signal");
            assert_eq!(got.signo, libc::SIGUSR2);
            assert_eq!(got.pid, std::process::id());
        })
        .join()
        .unwrap();
    }
}
