//! The event loop: one thread, one epoll over a signalfd and a timerfd (and,
//! as the supervisor grows, the notify and control sockets and log pipes).
//! It turns what the kernel reports into [`Event`]s for each service's state
//! machine and carries out the [`Action`]s that come back. Nothing polls: with
//! no deadline pending the timer is disarmed and PID 1 sleeps in epoll_wait.

use crate::creds;
use crate::notify;
use crate::service::{Action, Event, Kind, Policy, RestartPolicy, Service, State};
use crate::timeline::{Mark, Timeline};
use keel_kernel::clock::boottime;
use keel_kernel::epoll::{Epoll, Ready};
use keel_kernel::process::{self, Command, ExitStatus};
use keel_kernel::signal::{self, SignalFd, SignalInfo};
use keel_kernel::socket::NotifySocket;
use keel_kernel::timer::TimerFd;
use keel_units::Unit;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

const TOKEN_SIGNAL: u64 = 1;
const TOKEN_TIMER: u64 = 2;
const TOKEN_NOTIFY: u64 = 3;

/// Why the supervisor could not start its loop.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot block signals: {0}")]
    BlockSignals(#[source] io::Error),
    #[error("cannot create the signalfd: {0}")]
    SignalFd(#[source] io::Error),
    #[error("cannot create the timerfd: {0}")]
    TimerFd(#[source] io::Error),
    #[error("cannot bind the notify socket {path}: {source}")]
    NotifySocket { path: PathBuf, source: io::Error },
    #[error("cannot create the epoll instance: {0}")]
    Epoll(#[source] io::Error),
}

/// How the loop ended: every unit is down and the host asked for this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Stop everything, then hand back this code (PID 1 turns it into a
    /// power action; `keel supervise` exits with it).
    Stop(i32),
}

/// What the boot came to once every boot-critical unit settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootReport {
    /// CLOCK_BOOTTIME when the last boot-critical unit settled.
    pub at: Duration,
    /// Units that failed, with the reason.
    pub failed: Vec<(String, String)>,
}

/// The part of PID 1 (or `keel supervise`) that the loop calls back.
pub trait Host {
    /// Every boot-critical unit is ready, done or failed.
    fn boot_complete(&mut self, report: &BootReport, timeline: &Timeline) -> Option<Request>;
    /// A signal other than SIGCHLD arrived.
    fn signal(&mut self, info: &SignalInfo) -> Option<Request>;
}

/// Settings of the loop.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where user and group names are looked up.
    pub passwd: PathBuf,
    pub group: PathBuf,
    /// /proc, to find which unit a notify message's sender belongs to.
    pub proc: PathBuf,
    /// Where the sd_notify socket is bound (a path or `@abstract`).
    pub notify_socket: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            passwd: PathBuf::from("/etc/passwd"),
            group: PathBuf::from("/etc/group"),
            proc: PathBuf::from("/proc"),
            notify_socket: None,
        }
    }
}

impl Config {
    /// The defaults, with the sockets under `dir` (`/run/keel` for PID 1).
    pub fn in_runtime_dir(dir: &std::path::Path) -> Config {
        Config {
            notify_socket: Some(dir.join("notify")),
            ..Config::default()
        }
    }
}

/// The supervisor: units, their state machines and the loop's fds.
pub struct Supervisor {
    config: Config,
    units: BTreeMap<String, Unit>,
    policies: BTreeMap<String, Policy>,
    services: BTreeMap<String, Service>,
    /// What each unit waits for before it starts: (unit, required).
    waits: BTreeMap<String, Vec<(String, bool)>>,
    timers: BTreeMap<String, Duration>,
    pids: HashMap<i32, String>,
    epoll: Epoll,
    signals: SignalFd,
    timer: TimerFd,
    notify: Option<NotifySocket>,
    /// The last STATUS= of each unit.
    status: BTreeMap<String, String>,
    timeline: Timeline,
    boot_reported: bool,
    stopping: Option<Request>,
}

/// The state machine's view of a unit.
pub fn policy_of(u: &Unit) -> Policy {
    Policy {
        kind: match u.kind {
            keel_units::ServiceType::Simple => Kind::Simple,
            keel_units::ServiceType::Notify => Kind::Notify,
            keel_units::ServiceType::Oneshot => Kind::Oneshot,
        },
        restart: match u.restart {
            keel_units::Restart::Never => RestartPolicy::Never,
            keel_units::Restart::OnFailure => RestartPolicy::OnFailure,
            keel_units::Restart::Always => RestartPolicy::Always,
        },
        restart_delay: u.restart_delay,
        restart_delay_max: u.restart_delay_max,
        start_burst: u.start_limit.burst,
        start_interval: u.start_limit.interval,
        ready_timeout: u.ready_timeout,
        stop_signal: u.stop_signal.number(),
        stop_timeout: u.stop_timeout,
    }
}

/// What `unit` waits for: its requirements (hard), what it is ordered after,
/// and the units that say they come before it.
pub fn waits_of(units: &BTreeMap<String, Unit>, name: &str) -> Vec<(String, bool)> {
    let mut w: BTreeMap<String, bool> = BTreeMap::new();
    if let Some(u) = units.get(name) {
        for r in &u.requires {
            w.insert(r.clone(), true);
        }
        for a in &u.after {
            w.entry(a.clone()).or_insert(false);
        }
    }
    for (other, u) in units {
        if u.before.iter().any(|b| b == name) {
            w.entry(other.clone()).or_insert(false);
        }
    }
    w.into_iter()
        .filter(|(n, _)| units.contains_key(n))
        .collect()
}

impl Supervisor {
    /// Sets up signals, the timer and epoll. Blocks every signal of the
    /// calling thread (PID 1 has only one).
    pub fn new(config: Config, units: BTreeMap<String, Unit>) -> Result<Supervisor, SetupError> {
        signal::block_all().map_err(SetupError::BlockSignals)?;
        let signals = SignalFd::new(signal::HANDLED).map_err(SetupError::SignalFd)?;
        let timer = TimerFd::new().map_err(SetupError::TimerFd)?;
        let epoll = Epoll::new().map_err(SetupError::Epoll)?;
        epoll
            .add(signals.as_raw_fd(), TOKEN_SIGNAL)
            .map_err(SetupError::Epoll)?;
        epoll
            .add(timer.as_raw_fd(), TOKEN_TIMER)
            .map_err(SetupError::Epoll)?;
        let notify = match &config.notify_socket {
            Some(path) => {
                let s = NotifySocket::bind(path).map_err(|source| SetupError::NotifySocket {
                    path: path.clone(),
                    source,
                })?;
                epoll
                    .add(s.as_raw_fd(), TOKEN_NOTIFY)
                    .map_err(SetupError::Epoll)?;
                Some(s)
            }
            None => None,
        };
        let policies = units
            .iter()
            .map(|(n, u)| (n.clone(), policy_of(u)))
            .collect::<BTreeMap<_, _>>();
        let services = policies
            .iter()
            .map(|(n, p)| (n.clone(), Service::new(p)))
            .collect();
        let waits = units
            .keys()
            .map(|n| (n.clone(), waits_of(&units, n)))
            .collect();
        Ok(Supervisor {
            config,
            units,
            policies,
            services,
            waits,
            timers: BTreeMap::new(),
            pids: HashMap::new(),
            epoll,
            signals,
            timer,
            notify,
            status: BTreeMap::new(),
            timeline: Timeline::default(),
            boot_reported: false,
            stopping: None,
        })
    }

    /// The state of every unit.
    pub fn states(&self) -> impl Iterator<Item = (&str, &State)> {
        self.services.iter().map(|(n, s)| (n.as_str(), &s.state))
    }

    /// Runs until the host asks to stop and every unit is down.
    pub fn run(&mut self, host: &mut dyn Host) -> Request {
        let mut ready: Vec<Ready> = Vec::new();
        loop {
            if self.stopping.is_none() {
                self.start_what_can_start();
                self.report_boot(host);
            }
            if let Some(req) = self.stopping {
                self.stop_what_can_stop();
                if self
                    .services
                    .values()
                    .all(|s| s.state.pid().is_none() && s.state != State::Backoff)
                {
                    return req;
                }
            }
            let next = self.timers.values().min().copied();
            if let Err(e) = self.timer.set(next) {
                log::error!("cannot arm the timer: {e}");
            }
            if let Err(e) = self.epoll.wait(&mut ready, -1) {
                log::error!("epoll_wait failed: {e}");
                continue;
            }
            for r in ready.clone() {
                match r.token {
                    TOKEN_SIGNAL => self.on_signals(host),
                    TOKEN_TIMER => self.on_timer(),
                    TOKEN_NOTIFY => self.on_notify(),
                    _ => {}
                }
            }
        }
    }

    /// Asks the loop to stop every unit and then return `req`.
    pub fn request_stop(&mut self, req: Request) {
        if self.stopping.is_none() {
            self.stopping = Some(req);
        }
    }

    fn feed(&mut self, name: &str, event: Event) {
        let now = boottime();
        let (Some(service), Some(policy)) = (self.services.get_mut(name), self.policies.get(name))
        else {
            return;
        };
        let before = service.state.clone();
        let actions = service.handle(policy, event, now);
        let after = service.state.clone();
        if before.name() != after.name() {
            log::debug!("{name}: {} -> {}", before.name(), after.name());
            let delay = actions.iter().find_map(|a| match a {
                Action::SetTimer(t) => Some(t.saturating_sub(now)),
                _ => None,
            });
            for mark in transition_marks(&before, &after, delay) {
                self.timeline.push(now, name, mark);
            }
        }
        for a in actions {
            self.act(name, a);
        }
    }

    fn act(&mut self, name: &str, action: Action) {
        match action {
            Action::Spawn => {
                self.timeline.push(boottime(), name, Mark::Started);
                match self.spawn(name) {
                    Ok(pid) => {
                        self.pids.insert(pid, name.to_string());
                        self.timeline.push(boottime(), name, Mark::Execd { pid });
                        self.feed(name, Event::Spawned { pid });
                    }
                    Err(error) => self.feed(name, Event::SpawnFailed { error }),
                }
            }
            Action::Signal { pid, signal } => {
                let group = matches!(
                    self.units.get(name).map(|u| u.kill_mode),
                    Some(keel_units::KillMode::Cgroup)
                );
                // A service runs in its own session (setsid), so its process
                // group holds what it forked that did not leave it.
                let target = if group { -pid } else { pid };
                if let Err(e) = process::kill(target, signal) {
                    if e.raw_os_error() != Some(libc::ESRCH) {
                        log::warn!("{name}: cannot send {}: {e}", signal::name(signal));
                    }
                    if group {
                        let _ = process::kill(pid, signal);
                    }
                }
            }
            Action::SetTimer(at) => {
                self.timers.insert(name.to_string(), at);
            }
            Action::ClearTimer => {
                self.timers.remove(name);
            }
            Action::Log { error, message } => {
                if error {
                    log::error!("unit {name} failed: {message}");
                } else {
                    log::info!("{name}: {message}");
                }
            }
        }
    }

    fn spawn(&self, name: &str) -> Result<i32, String> {
        let unit = self
            .units
            .get(name)
            .ok_or_else(|| "unknown unit".to_string())?;
        let mut cmd = Command::new(&unit.exec).map_err(|e| e.to_string())?;
        cmd.env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .map_err(|e| e.to_string())?;
        if unit.kind == keel_units::ServiceType::Notify {
            if let Some(path) = &self.config.notify_socket {
                cmd.env("NOTIFY_SOCKET", &path.to_string_lossy())
                    .map_err(|e| e.to_string())?;
            }
        }
        for (k, v) in &unit.environment {
            cmd.env(k, v).map_err(|e| e.to_string())?;
        }
        if let Some(dir) = &unit.working_directory {
            cmd.cwd(&dir.to_string_lossy()).map_err(|e| e.to_string())?;
        }
        if let Some(mask) = unit.umask {
            cmd.umask(mask);
        }
        if let Some(n) = unit.limits.nofile {
            cmd.rlimit(process::Resource::NoFile, n);
        }
        if let Some(user) = &unit.user {
            let user = ident_str(user);
            let (uid, mut gid) =
                creds::lookup_user(&self.config.passwd, &user).map_err(|e| e.to_string())?;
            if let Some(g) = &unit.group {
                gid = creds::lookup_group(&self.config.group, &ident_str(g))
                    .map_err(|e| e.to_string())?;
            }
            let mut groups = creds::member_groups(&self.config.group, &user);
            for g in &unit.supplementary_groups {
                groups.push(
                    creds::lookup_group(&self.config.group, &ident_str(g))
                        .map_err(|e| e.to_string())?,
                );
            }
            cmd.user(uid, gid, groups);
        }
        let exe = unit.exec.first().map(String::as_str).unwrap_or("");
        cmd.spawn().map_err(|e| match e {
            process::SpawnError::Child { stage, source } => {
                format!("{stage} failed for {exe}: {source}")
            }
            other => format!("{other} (starting {exe})"),
        })
    }

    fn start_what_can_start(&mut self) {
        loop {
            let mut progressed = false;
            let names: Vec<String> = self.services.keys().cloned().collect();
            for name in names {
                if self.services.get(&name).map(|s| &s.state) != Some(&State::Inactive) {
                    continue;
                }
                let waits = self.waits.get(&name).cloned().unwrap_or_default();
                let mut blocked = false;
                let mut failed_req = None;
                for (dep, required) in &waits {
                    let Some(st) = self.services.get(dep).map(|s| &s.state) else {
                        continue;
                    };
                    if st.satisfies() {
                        continue;
                    }
                    if st.is_failed() {
                        if *required {
                            failed_req = Some(dep.clone());
                        }
                        continue;
                    }
                    blocked = true;
                }
                if let Some(dependency) = failed_req {
                    self.feed(&name, Event::DependencyFailed { dependency });
                    if let Some(State::Failed { reason }) =
                        self.services.get(&name).map(|s| &s.state)
                    {
                        log::error!("unit {name} failed: {reason}");
                    }
                    progressed = true;
                } else if !blocked {
                    let last = waits
                        .iter()
                        .filter_map(|(d, _)| self.timeline.ready_at(d).map(|t| (t, d.clone())))
                        .max()
                        .map(|(_, d)| d);
                    self.timeline.waited_for.insert(name.clone(), last);
                    self.feed(&name, Event::Start { manual: false });
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
    }

    fn report_boot(&mut self, host: &mut dyn Host) {
        if self.boot_reported {
            return;
        }
        let critical_settled = self
            .services
            .iter()
            .filter(|(n, _)| self.units.get(*n).is_some_and(|u| u.boot_critical))
            .all(|(_, s)| s.state.settled());
        if !critical_settled {
            return;
        }
        self.boot_reported = true;
        let failed = self
            .services
            .iter()
            .filter_map(|(n, s)| match &s.state {
                State::Failed { reason } | State::CrashLoop { reason } => {
                    Some((n.clone(), reason.clone()))
                }
                _ => None,
            })
            .collect();
        let report = BootReport {
            at: boottime(),
            failed,
        };
        if let Some(req) = host.boot_complete(&report, &self.timeline) {
            self.request_stop(req);
        }
    }

    /// Stops, in reverse dependency order, every unit nothing running
    /// depends on any more.
    fn stop_what_can_stop(&mut self) {
        let names: Vec<String> = self.services.keys().cloned().collect();
        for name in names {
            let st = match self.services.get(&name) {
                Some(s) => s.state.clone(),
                None => continue,
            };
            let active = st.pid().is_some() || st == State::Backoff || st == State::Inactive;
            if !active || matches!(st, State::Stopping { .. }) {
                continue;
            }
            let dependents_down = self.waits.iter().all(|(other, waits)| {
                !waits.iter().any(|(d, _)| *d == name)
                    || self
                        .services
                        .get(other)
                        .is_none_or(|s| s.state.pid().is_none())
            });
            if dependents_down {
                self.feed(&name, Event::Stop);
            }
        }
    }

    fn on_signals(&mut self, host: &mut dyn Host) {
        loop {
            match self.signals.read() {
                Ok(Some(info)) if info.signo == libc::SIGCHLD => self.reap(),
                Ok(Some(info)) => {
                    if let Some(req) = host.signal(&info) {
                        self.request_stop(req);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    log::error!("cannot read the signalfd: {e}");
                    break;
                }
            }
        }
        // SIGCHLD coalesces: reap whatever is there on every wake-up.
        self.reap();
    }

    fn reap(&mut self) {
        loop {
            match process::reap_one() {
                Ok(Some((pid, status))) => match self.pids.remove(&pid) {
                    Some(name) => {
                        log_exit(&name, &status);
                        self.timeline.push(
                            boottime(),
                            &name,
                            Mark::Exited {
                                status: status.to_string(),
                            },
                        );
                        self.feed(
                            &name,
                            Event::Exited {
                                pid,
                                success: status.success(),
                                status: status.to_string(),
                            },
                        );
                    }
                    None => log::debug!("reaped orphan {pid} ({status})"),
                },
                Ok(None) => break,
                Err(e) => {
                    log::error!("waitpid failed: {e}");
                    break;
                }
            }
        }
    }

    /// The unit whose process `pid` is, or descends from.
    fn owner_of(&self, pid: i32) -> Option<String> {
        let mut p = pid;
        for _ in 0..32 {
            if let Some(name) = self.pids.get(&p) {
                return Some(name.clone());
            }
            let stat =
                std::fs::read_to_string(self.config.proc.join(p.to_string()).join("stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 1..];
            p = rest.split_whitespace().nth(1)?.parse().ok()?;
            if p <= 1 {
                return None;
            }
        }
        None
    }

    fn on_notify(&mut self) {
        loop {
            let dgram = match self.notify.as_ref().map(NotifySocket::recv) {
                Some(Ok(Some(d))) => d,
                Some(Ok(None)) | None => break,
                Some(Err(e)) => {
                    log::warn!("cannot read the notify socket: {e}");
                    break;
                }
            };
            let Some(cred) = dgram.cred else {
                log::debug!("ignoring a notify message without credentials");
                continue;
            };
            let Some(name) = self.owner_of(cred.pid) else {
                log::debug!(
                    "ignoring a notify message from pid {} (no unit's process)",
                    cred.pid
                );
                continue;
            };
            let msg = notify::parse(&dgram.data);
            if let Some(s) = &msg.status {
                self.status.insert(name.clone(), s.clone());
            }
            if let Some(pid) = msg.main_pid {
                let old = self.services.get(&name).and_then(|s| s.state.pid());
                if let Some(old) = old {
                    self.pids.remove(&old);
                }
                self.pids.insert(pid, name.clone());
                self.feed(&name, Event::MainPid { pid });
            }
            if let Some(d) = msg.extend_timeout {
                self.feed(&name, Event::ExtendTimeout(d));
            }
            if msg.ready {
                log::debug!("{name}: READY=1 from pid {}", cred.pid);
                self.feed(&name, Event::Ready);
            }
            // BARRIER=1: dropping the datagram closes its fds, which is
            // what the sender waits for.
        }
    }

    /// Every unit's events so far.
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// The last STATUS= a unit sent.
    pub fn status_text(&self, name: &str) -> Option<&str> {
        self.status.get(name).map(String::as_str)
    }

    fn on_timer(&mut self) {
        self.timer.drain();
        let now = boottime();
        let due: Vec<String> = self
            .timers
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            self.timers.remove(&name);
            self.feed(&name, Event::Timer);
        }
    }
}

/// The timeline marks a state change means.
fn transition_marks(before: &State, after: &State, delay: Option<Duration>) -> Vec<Mark> {
    match (before, after) {
        (State::Stopping { .. }, State::Exited { .. }) => vec![Mark::Stopped],
        (_, State::Exited { .. }) if before.pid().is_some() => vec![Mark::Ready],
        (_, State::Exited { .. }) => vec![Mark::Stopped],
        (_, State::Ready { .. }) => vec![Mark::Ready],
        (_, State::Failed { reason } | State::CrashLoop { reason }) => vec![Mark::Failed {
            reason: reason.clone(),
        }],
        (_, State::Backoff) => vec![Mark::Restarting {
            delay: delay.unwrap_or_default(),
        }],
        (_, State::Stopping { .. }) => vec![Mark::Stopping],
        _ => vec![],
    }
}

fn ident_str(i: &keel_units::Ident) -> String {
    match i {
        keel_units::Ident::Name(n) => n.clone(),
        keel_units::Ident::Id(id) => id.to_string(),
    }
}

fn log_exit(name: &str, status: &ExitStatus) {
    log::debug!("{name}: main process exited ({status})");
}
