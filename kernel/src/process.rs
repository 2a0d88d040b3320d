//! Processes: spawning with a plan built before fork, reaping, signalling.
//!
//! Between fork and exec the child only makes async-signal-safe calls on
//! data prepared beforehand (every CString, every pointer array, every fd).
//! It walks through [`Stage`]s; when one fails it writes `{stage, errno}` to
//! a close-on-exec pipe and exits 127, so the parent can say exactly which
//! step failed. A successful exec closes the pipe and the parent reads EOF.

use crate::{cvt, cvt_retry};
use std::ffi::{CString, NulError};
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The step of the child's set-up that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Stage {
    Stdio = 1,
    Session = 2,
    Cgroup = 3,
    Rlimit = 4,
    OomScore = 5,
    Chdir = 6,
    Groups = 7,
    Gid = 8,
    Uid = 9,
    NoNewPrivs = 10,
    Signals = 11,
    Exec = 12,
    Capabilities = 13,
    ListenFds = 14,
}

impl Stage {
    fn from_u32(v: u32) -> Option<Stage> {
        use Stage::*;
        [
            Stdio, Session, Cgroup, Rlimit, OomScore, Chdir, Groups, Gid, Uid, NoNewPrivs, Signals,
            Exec,
        ]
        .into_iter()
        .find(|s| *s as u32 == v)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Stage::Stdio => "setting up stdin/stdout/stderr",
            Stage::Session => "creating a session",
            Stage::Cgroup => "joining the cgroup",
            Stage::Rlimit => "setting resource limits",
            Stage::OomScore => "setting oom_score_adj",
            Stage::Chdir => "changing to the working directory",
            Stage::Groups => "setting supplementary groups",
            Stage::Gid => "setting the group",
            Stage::Uid => "setting the user",
            Stage::NoNewPrivs => "setting no_new_privs",
            Stage::Signals => "resetting the signal mask",
            Stage::Exec => "executing the program",
            Stage::Capabilities => "dropping capabilities from the bounding set",
            Stage::ListenFds => "passing the stored file descriptors",
        };
        f.write_str(s)
    }
}

/// Why a spawn failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("argument contains a NUL byte: {0}")]
    Nul(#[from] NulError),
    #[error("cannot open /dev/null: {0}")]
    DevNull(#[source] io::Error),
    #[error("cannot create the exec status pipe: {0}")]
    Pipe(#[source] io::Error),
    #[error("fork failed: {0}")]
    Fork(#[source] io::Error),
    #[error("{stage} failed: {source}")]
    Child {
        stage: Stage,
        #[source]
        source: io::Error,
    },
}

/// Where a standard stream of the child goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdio {
    /// /dev/null (the default for stdin).
    Null,
    /// The parent's own stream.
    Inherit,
    /// This descriptor, duplicated onto the stream (the caller keeps it).
    Fd(RawFd),
}

/// A resource limit a unit may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    NoFile,
    NProc,
    Core,
    MemLock,
}

/// Everything a child needs, prepared before fork.
pub struct Command {
    path: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    cwd: Option<CString>,
    uid: Option<u32>,
    gid: Option<u32>,
    groups: Option<Vec<libc::gid_t>>,
    umask: Option<u32>,
    rlimits: Vec<(u32, u64)>,
    oom_score_adj: Option<i32>,
    no_new_privs: bool,
    new_session: bool,
    cgroup_procs: Option<CString>,
    /// Join the cgroup by writing cgroup.procs after fork, not clone3.
    cgroup_by_migration: bool,
    stdio: [Stdio; 3],
    cap_drop: Vec<libc::c_ulong>,
    listen_fds: Vec<RawFd>,
}

impl Command {
    /// A command running `argv[0]` with `argv`; the environment starts empty.
    pub fn new(argv: &[String]) -> Result<Command, SpawnError> {
        let argv: Vec<CString> = argv
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()?;
        let path = argv.first().cloned().unwrap_or_default();
        Ok(Command {
            path,
            argv,
            env: Vec::new(),
            cwd: None,
            uid: None,
            gid: None,
            groups: None,
            umask: None,
            rlimits: Vec::new(),
            oom_score_adj: None,
            no_new_privs: false,
            new_session: true,
            cgroup_procs: None,
            cgroup_by_migration: false,
            stdio: [Stdio::Null, Stdio::Inherit, Stdio::Inherit],
            cap_drop: Vec::new(),
            listen_fds: Vec::new(),
        })
    }

    /// Adds `KEY=VALUE` to the environment.
    pub fn env(&mut self, key: &str, value: &str) -> Result<&mut Self, SpawnError> {
        self.env.push(CString::new(format!("{key}={value}"))?);
        Ok(self)
    }
    pub fn cwd(&mut self, dir: &str) -> Result<&mut Self, SpawnError> {
        self.cwd = Some(CString::new(dir)?);
        Ok(self)
    }
    pub fn user(&mut self, uid: u32, gid: u32, groups: Vec<u32>) -> &mut Self {
        self.uid = Some(uid);
        self.gid = Some(gid);
        self.groups = Some(groups);
        self
    }
    pub fn umask(&mut self, mask: u32) -> &mut Self {
        self.umask = Some(mask);
        self
    }
    /// Sets a resource limit (soft = hard) in the child.
    pub fn rlimit(&mut self, resource: Resource, value: u64) -> &mut Self {
        // The constant's C type differs between glibc and musl.
        #[allow(clippy::unnecessary_cast)]
        let r = match resource {
            Resource::NoFile => libc::RLIMIT_NOFILE as u32,
            Resource::NProc => libc::RLIMIT_NPROC as u32,
            Resource::Core => libc::RLIMIT_CORE as u32,
            Resource::MemLock => libc::RLIMIT_MEMLOCK as u32,
        };
        self.rlimits.push((r, value));
        self
    }
    pub fn oom_score_adj(&mut self, v: i32) -> &mut Self {
        self.oom_score_adj = Some(v);
        self
    }
    pub fn no_new_privs(&mut self, on: bool) -> &mut Self {
        self.no_new_privs = on;
        self
    }
    /// Whether the child calls setsid (default yes: a service is not part of
    /// PID 1's session and has no controlling terminal).
    pub fn new_session(&mut self, on: bool) -> &mut Self {
        self.new_session = on;
        self
    }
    /// Moves the child into the cgroup whose `cgroup.procs` file is `path`
    /// before anything else it does.
    pub fn cgroup_procs(&mut self, path: &str) -> Result<&mut Self, SpawnError> {
        self.cgroup_procs = Some(CString::new(path)?);
        Ok(self)
    }

    /// Joins the cgroup by writing `cgroup.procs` from the child after a
    /// plain fork instead of being born in it with clone3: for a cgroup
    /// that `cgroup.kill` was used on. Some kernels (seen on 6.18.44) keep
    /// killing every child cloned into such a cgroup, while one that moves
    /// in lives.
    pub fn cgroup_by_migration(&mut self, yes: bool) -> &mut Self {
        self.cgroup_by_migration = yes;
        self
    }
    /// Keeps only `keep` (capability numbers) in the bounding set: every
    /// capability up to `last_cap` (/proc/sys/kernel/cap_last_cap) that is
    /// not kept is dropped before exec.
    pub fn cap_bounding(&mut self, keep: &[u8], last_cap: u8) -> &mut Self {
        self.cap_drop = (0..=last_cap)
            .filter(|c| !keep.contains(c))
            .map(libc::c_ulong::from)
            .collect();
        self
    }
    /// Passes `fds` as 3, 4, … with LISTEN_FDS, LISTEN_PID (the child's own
    /// pid, filled in after fork) and LISTEN_FDNAMES, as sd_listen_fds wants.
    pub fn listen_fds(
        &mut self,
        fds: Vec<RawFd>,
        names: &[String],
    ) -> Result<&mut Self, SpawnError> {
        if !fds.is_empty() {
            self.env("LISTEN_FDS", &fds.len().to_string())?;
            self.env("LISTEN_FDNAMES", &names.join(":"))?;
        }
        self.listen_fds = fds;
        Ok(self)
    }
    pub fn stdin(&mut self, s: Stdio) -> &mut Self {
        self.stdio[0] = s;
        self
    }
    pub fn stdout(&mut self, s: Stdio) -> &mut Self {
        self.stdio[1] = s;
        self
    }
    pub fn stderr(&mut self, s: Stdio) -> &mut Self {
        self.stdio[2] = s;
        self
    }

    /// Forks and execs. Returns the child's pid once exec succeeded; if any
    /// stage before exec failed, the child is reaped here and the stage and
    /// errno are returned.
    pub fn spawn(&self) -> Result<i32, SpawnError> {
        let null = if self.stdio.contains(&Stdio::Null) {
            // SAFETY: the path is a valid C string; the fd is new and ours.
            let fd =
                cvt(unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })
                    .map_err(SpawnError::DevNull)?;
            // SAFETY: `fd` was just opened and is owned by nobody else.
            Some(unsafe { OwnedFd::from_raw_fd(fd) })
        } else {
            None
        };
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 returns.
        cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }).map_err(SpawnError::Pipe)?;
        // SAFETY: both descriptors were just created and belong to us.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };

        let mut argv: Vec<*const libc::c_char> = self.argv.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = self.env.iter().map(|a| a.as_ptr()).collect();
        // LISTEN_PID must be the child's pid: a buffer the child fills in.
        let mut listen_pid = *b"LISTEN_PID=\0\0\0\0\0\0\0\0\0\0\0\0\0";
        if !self.listen_fds.is_empty() {
            envp.push(listen_pid.as_ptr().cast());
        }
        envp.push(std::ptr::null());
        // Scratch space for moving the listen fds out of the way.
        let mut scratch: Vec<RawFd> = vec![-1; self.listen_fds.len()];
        let stdio: [RawFd; 3] = self.stdio.map(|s| match s {
            Stdio::Null => null.as_ref().map_or(-1, |f| f.as_raw_fd()),
            Stdio::Inherit => -2,
            Stdio::Fd(fd) => fd,
        });
        let rlimits: Vec<(u32, libc::rlimit)> = self
            .rlimits
            .iter()
            .map(|&(r, v)| {
                (
                    r,
                    libc::rlimit {
                        rlim_cur: v,
                        rlim_max: v,
                    },
                )
            })
            .collect();
        let oom = self.oom_score_adj.map(|v| {
            let mut s = v.to_string().into_bytes();
            s.push(b'\n');
            s
        });

        // Born in its cgroup (clone3 + CLONE_INTO_CGROUP) where the kernel
        // can: migrating a running process into a cgroup waits for an RCU
        // grace period, about a millisecond. Otherwise fork, and the child
        // writes itself into cgroup.procs.
        let cgroup_dir = self.cgroup_procs.as_ref().and_then(|p| {
            let dir = p.to_bytes().strip_suffix(b"/cgroup.procs")?;
            let dir = CString::new(dir).ok()?;
            // SAFETY: a valid C string; the fd is new and ours.
            let fd = unsafe {
                libc::open(
                    dir.as_ptr(),
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                )
            };
            (fd >= 0).then(|| crate::owned(fd))
        });
        let mut in_cgroup = false;
        let mut pid = -1;
        if let Some(dir) = cgroup_dir.as_ref().filter(|_| !self.cgroup_by_migration) {
            pid = clone_into_cgroup(dir.as_raw_fd());
            in_cgroup = pid >= 0;
        }
        if !in_cgroup {
            // SAFETY: fork has no preconditions. The child below only calls
            // async-signal-safe functions on memory prepared above, then
            // execs or _exits; it never returns into Rust code.
            pid = unsafe { libc::fork() };
        }
        if pid < 0 {
            return Err(SpawnError::Fork(io::Error::last_os_error()));
        }
        if pid == 0 {
            // SAFETY: we are the child; see `child` for what it touches.
            unsafe {
                child(
                    self,
                    &argv,
                    &envp,
                    stdio,
                    &rlimits,
                    oom.as_deref(),
                    Listen {
                        pid_buf: &mut listen_pid,
                        scratch: &mut scratch,
                    },
                    in_cgroup,
                    wr.as_raw_fd(),
                )
            }
        }
        drop(wr);
        drop(null);
        let mut report = [0u8; 8];
        let n = read_full(rd.as_raw_fd(), &mut report);
        if n == report.len() {
            let stage = u32::from_ne_bytes([report[0], report[1], report[2], report[3]]);
            let errno = i32::from_ne_bytes([report[4], report[5], report[6], report[7]]);
            let _ = waitpid_blocking(pid);
            return Err(SpawnError::Child {
                stage: Stage::from_u32(stage).unwrap_or(Stage::Exec),
                source: io::Error::from_raw_os_error(errno),
            });
        }
        Ok(pid)
    }
}

fn read_full(fd: RawFd, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: the slice past `got` is valid writable memory.
        let n = unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            break;
        }
        got += usize::try_from(n).unwrap_or(0);
    }
    got
}

/// clone3(CLONE_INTO_CGROUP): like fork, but the child starts in the
/// cgroup whose directory is `cgroup`. Returns the pid (0 in the child), or
/// -1 when the kernel cannot (older than 5.7, or the call is refused), in
/// which case nothing was created.
fn clone_into_cgroup(cgroup: RawFd) -> i32 {
    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: cgroup as u64,
    };
    // SAFETY: without CLONE_VM this duplicates the process like fork; the
    // struct is valid for the size passed. The child (return value 0) only
    // makes raw async-signal-safe calls before exec, as after fork.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    i32::try_from(rc).unwrap_or(-1)
}

/// Buffers the child fills in for LISTEN_FDS.
struct Listen<'a> {
    pid_buf: &'a mut [u8; 24],
    scratch: &'a mut [RawFd],
}

/// The child between fork and exec. Only async-signal-safe calls.
///
/// # Safety
/// Must only be called in a freshly forked child; every pointer array must
/// be NULL-terminated and point into `cmd`'s CStrings.
// Everything the child may touch is prepared before fork and passed in.
#[allow(clippy::too_many_arguments)]
unsafe fn child(
    cmd: &Command,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    stdio: [RawFd; 3],
    rlimits: &[(u32, libc::rlimit)],
    oom: Option<&[u8]>,
    listen: Listen<'_>,
    in_cgroup: bool,
    report: RawFd,
) -> ! {
    let fail = |stage: Stage| -> ! {
        let errno = *libc::__errno_location();
        let mut buf = [0u8; 8];
        buf[..4].copy_from_slice(&(stage as u32).to_ne_bytes());
        buf[4..].copy_from_slice(&errno.to_ne_bytes());
        libc::write(report, buf.as_ptr().cast(), buf.len());
        libc::_exit(127)
    };
    if let Some(procs) = cmd.cgroup_procs.as_ref().filter(|_| !in_cgroup) {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
            fail(Stage::Cgroup);
        }
        libc::close(fd);
    }
    // Standard streams: an fd that is already in place must lose CLOEXEC.
    for (target, &src) in stdio.iter().enumerate() {
        let target = target as RawFd;
        if src == -2 {
            continue;
        }
        if src == target {
            let flags = libc::fcntl(target, libc::F_GETFD);
            if flags < 0 || libc::fcntl(target, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                fail(Stage::Stdio);
            }
        } else if src < 0 || libc::dup2(src, target) < 0 {
            fail(Stage::Stdio);
        }
    }
    // Stored fds to 3, 4, …: first out of the way (above the targets and the
    // report pipe), then into place; dup2 clears close-on-exec.
    let n = cmd.listen_fds.len() as RawFd;
    if n > 0 {
        let floor = (3 + n).max(report + 1);
        for (i, &fd) in cmd.listen_fds.iter().enumerate() {
            let moved = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, floor);
            if moved < 0 {
                fail(Stage::ListenFds);
            }
            listen.scratch[i] = moved;
        }
        for (i, &fd) in listen.scratch.iter().enumerate() {
            if libc::dup2(fd, 3 + i as RawFd) < 0 {
                fail(Stage::ListenFds);
            }
        }
        // LISTEN_PID=<our pid>, written without allocating.
        let mut pid = libc::getpid() as u32;
        let mut digits = [0u8; 10];
        let mut len = 0;
        loop {
            digits[len] = b'0' + (pid % 10) as u8;
            len += 1;
            pid /= 10;
            if pid == 0 {
                break;
            }
        }
        for i in 0..len {
            listen.pid_buf[11 + i] = digits[len - 1 - i];
        }
        listen.pid_buf[11 + len] = 0;
    }
    for &cap in &cmd.cap_drop {
        if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) < 0
            && *libc::__errno_location() != libc::EINVAL
        {
            fail(Stage::Capabilities);
        }
    }
    if cmd.new_session && libc::setsid() < 0 {
        fail(Stage::Session);
    }
    for (res, lim) in rlimits {
        if libc::setrlimit(*res as _, lim) < 0 {
            fail(Stage::Rlimit);
        }
    }
    if let Some(oom) = oom {
        let fd = libc::open(
            c"/proc/self/oom_score_adj".as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC,
        );
        if fd < 0 || libc::write(fd, oom.as_ptr().cast(), oom.len()) < 0 {
            fail(Stage::OomScore);
        }
        libc::close(fd);
    }
    if let Some(cwd) = &cmd.cwd {
        if libc::chdir(cwd.as_ptr()) < 0 {
            fail(Stage::Chdir);
        }
    }
    if let Some(groups) = &cmd.groups {
        if libc::setgroups(groups.len(), groups.as_ptr()) < 0 {
            fail(Stage::Groups);
        }
    }
    if let Some(gid) = cmd.gid {
        if libc::setgid(gid) < 0 {
            fail(Stage::Gid);
        }
    }
    if let Some(uid) = cmd.uid {
        if libc::setuid(uid) < 0 {
            fail(Stage::Uid);
        }
    }
    if let Some(mask) = cmd.umask {
        libc::umask(mask as libc::mode_t);
    }
    if cmd.no_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
        fail(Stage::NoNewPrivs);
    }
    let mut empty = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    libc::sigemptyset(empty.as_mut_ptr());
    if libc::sigprocmask(libc::SIG_SETMASK, empty.as_ptr(), std::ptr::null_mut()) < 0 {
        fail(Stage::Signals);
    }
    libc::execve(cmd.path.as_ptr(), argv.as_ptr(), envp.as_ptr());
    fail(Stage::Exec)
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Signaled { signal: i32, core: bool },
}

impl ExitStatus {
    fn from_raw(status: i32) -> ExitStatus {
        if libc::WIFEXITED(status) {
            ExitStatus::Exited(libc::WEXITSTATUS(status))
        } else {
            ExitStatus::Signaled {
                signal: libc::WTERMSIG(status),
                core: libc::WCOREDUMP(status),
            }
        }
    }

    pub fn success(&self) -> bool {
        *self == ExitStatus::Exited(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited(c) => write!(f, "exit status {c}"),
            ExitStatus::Signaled { signal, core } => {
                write!(f, "killed by {}", crate::signal::name(*signal))?;
                if *core {
                    f.write_str(" (core dumped)")?;
                }
                Ok(())
            }
        }
    }
}

/// Reaps one exited child, if any, without blocking.
pub fn reap_one() -> io::Result<Option<(i32, ExitStatus)>> {
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer; WNOHANG never blocks.
    let pid = cvt_retry(|| unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) });
    match pid {
        Ok(0) => Ok(None),
        Ok(pid) => Ok(Some((pid, ExitStatus::from_raw(status)))),
        Err(e) if e.raw_os_error() == Some(libc::ECHILD) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether this process has any child left (exited or not).
pub fn has_children() -> bool {
    // SAFETY: siginfo_t is plain data; waitid only writes into it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is valid; WNOWAIT leaves any exited child to be reaped.
    let rc = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    !(rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD))
}

/// Waits for one specific child.
pub fn waitpid_blocking(pid: i32) -> io::Result<ExitStatus> {
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer.
    cvt_retry(|| unsafe { libc::waitpid(pid, &mut status, 0) })?;
    Ok(ExitStatus::from_raw(status))
}

/// Sends `signal` to `pid` (a negative pid is a process group, -1 all).
pub fn kill(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    cvt(unsafe { libc::kill(pid, signal) })?;
    Ok(())
}

/// Makes this process adopt orphaned descendants (PR_SET_CHILD_SUBREAPER).
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    cvt(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) })?;
    Ok(())
}

/// Execs `argv` in place of this process (used to hand PID 1 to a shell or
/// to a newer keel). Returns only on failure.
pub fn exec(argv: &[String], env: &[String]) -> io::Error {
    let to_c = |v: &[String]| -> Result<Vec<CString>, NulError> {
        v.iter().map(|a| CString::new(a.as_bytes())).collect()
    };
    let (Ok(args), Ok(envs)) = (to_c(argv), to_c(env)) else {
        return io::Error::from(io::ErrorKind::InvalidInput);
    };
    let Some(path) = args.first() else {
        return io::Error::from(io::ErrorKind::InvalidInput);
    };
    let mut a: Vec<*const libc::c_char> = args.iter().map(|c| c.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = envs.iter().map(|c| c.as_ptr()).collect();
    e.push(std::ptr::null());
    // SAFETY: both arrays are NULL-terminated and point into live CStrings.
    unsafe { libc::execve(path.as_ptr(), a.as_ptr(), e.as_ptr()) };
    io::Error::last_os_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn spawn_and_wait_reports_exit_code() {
        let pid = Command::new(&args(&["/bin/sh", "-c", "exit 3"]))
            .unwrap()
            .spawn()
            .unwrap();
        assert_eq!(waitpid_blocking(pid).unwrap(), ExitStatus::Exited(3));
    }

    #[test]
    fn missing_program_fails_at_exec_with_enoent() {
        let err = Command::new(&args(&["/nonexistent/prog"]))
            .unwrap()
            .spawn()
            .unwrap_err();
        match err {
            SpawnError::Child { stage, source } => {
                assert_eq!(stage, Stage::Exec);
                assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn bad_working_directory_fails_at_chdir() {
        let mut c = Command::new(&args(&["/bin/true"])).unwrap();
        c.cwd("/nonexistent-dir").unwrap();
        match c.spawn().unwrap_err() {
            SpawnError::Child { stage, .. } => assert_eq!(stage, Stage::Chdir),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn environment_cwd_umask_and_stdout_reach_the_child() {
        let dir = std::env::temp_dir().join(format!("keel-spawn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = std::fs::File::create(dir.join("out")).unwrap();
        let mut c = Command::new(&args(&[
            "/bin/sh",
            "-c",
            "echo \"$GREETING $(pwd) $(umask)\"; test -t 0 || read x || echo stdin-eof",
        ]))
        .unwrap();
        c.env("GREETING", "hi").unwrap();
        c.cwd(dir.to_str().unwrap()).unwrap();
        c.umask(0o027);
        c.stdout(Stdio::Fd(out.as_raw_fd()));
        let pid = c.spawn().unwrap();
        assert!(waitpid_blocking(pid).unwrap().success());
        let text = std::fs::read_to_string(dir.join("out")).unwrap();
        assert_eq!(text, format!("hi {} 0027\nstdin-eof\n", dir.display()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn has_children_sees_a_running_child() {
        // Test threads share the process, so only the positive case is
        // stable: while our child runs, there is a child.
        let pid = Command::new(&args(&["/bin/sleep", "0.5"]))
            .unwrap()
            .spawn()
            .unwrap();
        assert!(has_children());
        waitpid_blocking(pid).unwrap();
    }

    #[test]
    fn listen_fds_arrive_as_3_with_the_childs_pid() {
        let dir = std::env::temp_dir().join(format!("keel-listen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let stored = std::fs::File::create(dir.join("stored")).unwrap();
        let out = std::fs::File::create(dir.join("out")).unwrap();
        let mut c = Command::new(&args(&[
            "/bin/sh",
            "-c",
            "echo \"$LISTEN_FDS $LISTEN_FDNAMES $LISTEN_PID $$\"; echo via-fd3 >&3",
        ]))
        .unwrap();
        c.stdout(Stdio::Fd(out.as_raw_fd()));
        c.listen_fds(vec![stored.as_raw_fd()], &["state".to_string()])
            .unwrap();
        let pid = c.spawn().unwrap();
        assert!(waitpid_blocking(pid).unwrap().success());
        let text = std::fs::read_to_string(dir.join("out")).unwrap();
        assert_eq!(text, format!("1 state {pid} {pid}\n"));
        assert_eq!(
            std::fs::read_to_string(dir.join("stored")).unwrap(),
            "via-fd3\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_bounding_set_loses_what_is_not_kept() {
        let dir = std::env::temp_dir().join(format!("keel-caps-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = std::fs::File::create(dir.join("out")).unwrap();
        let mut c = Command::new(&args(&["/bin/grep", "CapBnd", "/proc/self/status"])).unwrap();
        c.stdout(Stdio::Fd(out.as_raw_fd()));
        // Keep CAP_CHOWN (0) and CAP_NET_BIND_SERVICE (10) only.
        c.cap_bounding(&[0, 10], 40);
        let pid = c.spawn().unwrap();
        assert!(waitpid_blocking(pid).unwrap().success());
        let text = std::fs::read_to_string(dir.join("out")).unwrap();
        assert_eq!(text.trim(), "CapBnd:\t0000000000000401");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn children_are_born_in_their_cgroup() {
        let Some(mount) =
            crate::cgroup::cgroup2_mount(std::path::Path::new("/proc/self/mountinfo"))
        else {
            eprintln!("no cgroup2 mount here: nothing to test");
            return;
        };
        let own = crate::cgroup::own_path(std::path::Path::new("/proc/self/cgroup")).unwrap();
        let rel = format!(
            "{}/keel-spawn-test-{}",
            own.trim_end_matches('/'),
            std::process::id()
        );
        let dir = mount.join(rel.trim_start_matches('/'));
        if std::fs::create_dir(&dir).is_err() {
            eprintln!("cgroup2 not writable here: nothing to test");
            return;
        }
        let out_path = std::env::temp_dir().join(format!("keel-cg-{}", std::process::id()));
        let out = std::fs::File::create(&out_path).unwrap();
        let mut c = Command::new(&args(&["/bin/cat", "/proc/self/cgroup"])).unwrap();
        c.stdout(Stdio::Fd(out.as_raw_fd()));
        c.cgroup_procs(&dir.join("cgroup.procs").to_string_lossy())
            .unwrap();
        let pid = c.spawn().unwrap();
        assert!(waitpid_blocking(pid).unwrap().success());
        let text = std::fs::read_to_string(&out_path).unwrap();
        assert!(text.contains(&format!("0::{rel}")), "{text}");
        std::fs::remove_dir(&dir).unwrap();
        std::fs::remove_file(&out_path).unwrap();
    }

    #[test]
    fn exit_status_display() {
        assert_eq!(ExitStatus::Exited(1).to_string(), "exit status 1");
        let s = ExitStatus::Signaled {
            signal: libc::SIGKILL,
            core: false,
        };
        assert_eq!(s.to_string(), "killed by SIGKILL");
        assert!(!s.success());
    }
}
