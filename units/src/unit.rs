//! The validated unit: what the supervisor and PID 1 consume. Every field
//! has its final type and its default filled in; nothing here can be wrong.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::diag::Loc;
use crate::signal::Signal;
use crate::values::{HttpUrl, Ident};

/// One validated unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    /// The file stem: `etcd` for `etcd.toml`.
    pub name: String,
    /// The unit file (drop-ins are in [`Unit::dropins`]).
    pub source: PathBuf,
    pub description: Option<String>,
    /// The command: an absolute path, then its arguments. Never empty.
    pub exec: Vec<String>,
    /// `type` in the file.
    pub kind: ServiceType,
    /// Hard: start after these are ready; fail if they fail.
    pub requires: Vec<String>,
    /// Soft: start after these are ready (or have failed).
    pub wants: Vec<String>,
    /// Ordering only: start after these, if they are being started.
    pub after: Vec<String>,
    /// Ordering only: start before these.
    pub before: Vec<String>,
    /// Gates "boot complete" and the blessing of the slot. Default true.
    pub boot_critical: bool,
    /// Default true; a disabled unit is dropped at load.
    pub enabled: bool,
    /// Default `Never` for oneshot units, `OnFailure` otherwise.
    pub restart: Restart,
    /// The first restart's delay; doubles at each crash up to the max.
    pub restart_delay: Duration,
    pub restart_delay_max: Duration,
    pub start_limit: StartLimit,
    /// How long to wait for readiness; `None` when not set (or `"infinity"`).
    pub ready_timeout: Option<Duration>,
    /// Default SIGTERM.
    pub stop_signal: Signal,
    /// Time between the stop signal and SIGKILL. Default 10s.
    pub stop_timeout: Duration,
    /// Default `Cgroup`.
    pub kill_mode: KillMode,
    pub user: Option<Ident>,
    pub group: Option<Ident>,
    pub supplementary_groups: Vec<Ident>,
    /// Absolute.
    pub working_directory: Option<PathBuf>,
    pub environment: BTreeMap<String, String>,
    /// Octal permission bits, at most 0o777.
    pub umask: Option<u32>,
    /// A readiness probe. On a notify unit, readiness is READY=1 and then
    /// the probe passing (DESIGN.md's etcd example has both).
    /// `ready = { type = "notify" }` does not appear here: it sets
    /// [`Unit::kind`] to `Notify`.
    pub ready: Option<Probe>,
    pub health: Option<Health>,
    pub limits: Limits,
    /// The sd_notify watchdog period (`WATCHDOG_USEC`); notify units only.
    pub watchdog: Option<Duration>,
    /// /proc/PID/oom_score_adj of the service, -1000..=1000.
    pub oom_score_adj: Option<i32>,
    /// PR_SET_NO_NEW_PRIVS before exec. Default false.
    pub no_new_privileges: bool,
    /// The capability bounding set (`CAP_NET_BIND_SERVICE`, …, lower case
    /// and without `CAP_` accepted): every other capability is dropped from
    /// it before exec. `None` leaves the bounding set alone.
    pub capabilities: Option<Vec<Capability>>,
    /// The drop-ins that were merged into this unit, in order.
    pub dropins: Vec<PathBuf>,
    /// Where each dependency was written, for diagnostics.
    pub dep_locs: DepLocs,
}

/// Positions of the dependency strings, index for index with
/// [`Unit::requires`] and its siblings. Empty for units built in code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DepLocs {
    pub requires: Vec<Loc>,
    pub wants: Vec<Loc>,
    pub after: Vec<Loc>,
    pub before: Vec<Loc>,
}

impl Unit {
    /// A unit with every default, as if its file held only `exec`. For
    /// tests and for units made in code.
    pub fn new(name: &str, exec: Vec<String>) -> Unit {
        Unit {
            name: name.to_owned(),
            source: PathBuf::from(format!("{name}.toml")),
            description: None,
            exec,
            kind: ServiceType::Simple,
            requires: Vec::new(),
            wants: Vec::new(),
            after: Vec::new(),
            before: Vec::new(),
            boot_critical: true,
            enabled: true,
            restart: Restart::OnFailure,
            restart_delay: Duration::from_millis(100),
            restart_delay_max: Duration::from_secs(30),
            start_limit: StartLimit::default(),
            ready_timeout: None,
            stop_signal: Signal::TERM,
            stop_timeout: Duration::from_secs(10),
            kill_mode: KillMode::Cgroup,
            user: None,
            group: None,
            supplementary_groups: Vec::new(),
            working_directory: None,
            environment: BTreeMap::new(),
            umask: None,
            ready: None,
            health: None,
            limits: Limits::default(),
            watchdog: None,
            oom_score_adj: None,
            no_new_privileges: false,
            capabilities: None,
            dropins: Vec::new(),
            dep_locs: DepLocs::default(),
        }
    }

    /// Where the unit's dependency on `dep` of this kind was written.
    pub fn dep_loc(&self, kind: crate::DepKind, dep: &str) -> Option<&Loc> {
        use crate::DepKind;
        let (names, locs) = match kind {
            DepKind::Requires => (&self.requires, &self.dep_locs.requires),
            DepKind::Wants => (&self.wants, &self.dep_locs.wants),
            DepKind::After => (&self.after, &self.dep_locs.after),
            DepKind::Before => (&self.before, &self.dep_locs.before),
        };
        names
            .iter()
            .position(|n| n == dep)
            .and_then(|i| locs.get(i))
    }

    /// The unit's file as a diagnostic position (line 0).
    pub(crate) fn file_loc(&self) -> Loc {
        Loc::file(Path::new(&self.source).into())
    }
}

/// How the unit tells that it is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ServiceType {
    /// Ready once spawned (or once its `ready` probe passes).
    #[default]
    Simple,
    /// Ready when it sends `READY=1` over sd_notify.
    Notify,
    /// Runs to completion; ready when it exits with status 0.
    Oneshot,
}

/// When to restart a unit whose main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Restart {
    Never,
    /// After a non-zero exit or a death by signal.
    OnFailure,
    Always,
}

/// What a stop kills once the stop timeout has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KillMode {
    /// The whole cgroup (`cgroup.kill`).
    #[default]
    Cgroup,
    /// Only the main process (containerd leaves its shims running).
    Process,
}

/// At most `burst` starts within `interval`; then the unit stays failed
/// until started by hand. A burst of 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StartLimit {
    pub burst: u32,
    pub interval: Duration,
}

impl Default for StartLimit {
    fn default() -> StartLimit {
        StartLimit {
            burst: 5,
            interval: Duration::from_secs(10),
        }
    }
}

/// A readiness or health probe.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Probe {
    /// Passes when a TCP connect succeeds.
    Tcp(SocketAddr),
    /// Passes when the command exits 0. Absolute path first.
    Exec(Vec<String>),
    /// Passes when the path exists.
    Path(PathBuf),
    /// Passes on an HTTP 2xx answer to a GET.
    Http(HttpUrl),
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Tcp(a) => write!(f, "tcp {a}"),
            Probe::Exec(argv) => write!(f, "exec {}", argv.join(" ")),
            Probe::Path(p) => write!(f, "path {}", p.display()),
            Probe::Http(u) => write!(f, "http {u}"),
        }
    }
}

/// A probe run every `interval` for the whole life of the service; after
/// `failures` failures in a row the unit is restarted (per `restart`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Health {
    pub probe: Probe,
    /// Default 10s.
    pub interval: Duration,
    /// Default 3; at least 1.
    pub failures: u32,
    /// Default 5s, or the interval when shorter; never above the interval.
    pub timeout: Duration,
}

/// cgroup and rlimit limits; `None` means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Limits {
    /// `memory.max`, bytes.
    pub memory_max: Option<u64>,
    /// `cpu.weight`, 1..=10000.
    pub cpu_weight: Option<u32>,
    /// `pids.max`.
    pub pids_max: Option<u64>,
    /// RLIMIT_NOFILE (soft and hard).
    pub nofile: Option<u64>,
}

/// A Linux capability by number (`CAP_NET_ADMIN` is 12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Capability(pub u8);

/// The capability names of Linux 6.1, in number order.
pub const CAPABILITY_NAMES: &[&str] = &[
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

impl Capability {
    /// Parses `CAP_NET_ADMIN`, `net_admin` or `NET_ADMIN`.
    pub fn parse(text: &str) -> Option<Capability> {
        let lower = text.to_ascii_lowercase();
        let name = lower.strip_prefix("cap_").unwrap_or(&lower);
        CAPABILITY_NAMES
            .iter()
            .position(|n| *n == name)
            .and_then(|i| u8::try_from(i).ok())
            .map(Capability)
    }

    /// `CAP_NET_ADMIN`.
    pub fn name(self) -> String {
        CAPABILITY_NAMES
            .get(usize::from(self.0))
            .map(|n| format!("CAP_{}", n.to_ascii_uppercase()))
            .unwrap_or_else(|| format!("capability {}", self.0))
    }
}
