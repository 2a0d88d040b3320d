//! The event loop: one thread, one epoll over a signalfd, a timerfd, the
//! notify socket, the control socket and its connections, and the services'
//! log pipes.
//! It turns what the kernel reports into [`Event`]s for each service's state
//! machine and carries out the [`Action`]s that come back. Nothing polls: with
//! no deadline pending the timer is disarmed and PID 1 sleeps in epoll_wait.

use crate::service::{Action, Event, Kind, Policy, RestartPolicy, Service, State};
use crate::timeline::{Mark, Timeline};
use keel_kernel::clock::boottime;
use keel_kernel::epoll::{Epoll, Ready};
use keel_kernel::process::{self, ExitStatus};
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
pub(crate) const TOKEN_CONTROL: u64 = 4;
/// Control connections: this bit plus the connection's id.
pub(crate) const TOKEN_CONN: u64 = 1 << 32;
/// Log pipes: this bit plus the pipe's id.
pub(crate) const TOKEN_LOG: u64 = 2 << 32;

/// The timers a unit can have at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimerKind {
    /// The state machine's: ready-timeout, stop-timeout, restart delay.
    State,
    /// The next readiness probe.
    Probe,
    /// The next health check.
    Health,
    /// The sd_notify watchdog deadline.
    Watchdog,
    /// A running probe's time limit.
    ProbeTimeout,
    /// The end of the blessing grace period (host-wide, unit "").
    Bless,
    /// The host's periodic tick (e.g. petting a hardware watchdog).
    Tick,
}

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
    #[error("cannot bind the control socket {path}: {source}")]
    ControlSocket { path: PathBuf, source: io::Error },
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
    /// `keel poweroff|reboot|halt` over the control socket.
    fn power(&mut self, action: &str) -> Option<Request>;
    /// Every boot-critical unit has been ready and healthy, without a
    /// single state change, for the whole grace period (`Config::bless_grace`).
    /// Called once.
    fn blessed(&mut self, _at: Duration) {}
    /// The periodic tick (`Config::tick`); return false to stop ticking.
    fn tick(&mut self) -> bool {
        false
    }
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
    /// Where the control socket is bound.
    pub control_socket: Option<PathBuf>,
    /// Where `UNIT.log` files go once writable (PID 1: /var/log/keel).
    pub log_dir: Option<PathBuf>,
    /// The program run as `PROGRAM probe …` for tcp/http probes
    /// (default: /proc/self/exe, i.e. keel itself).
    pub probe_program: PathBuf,
    /// cgroup v2 for the units; `None`: process groups only.
    pub cgroups: Option<keel_kernel::cgroup::Cgroups>,
    /// The unit directories, reread by `keel reload`.
    pub unit_dirs: Vec<PathBuf>,
    /// Bless the boot once every boot-critical unit stayed ready and
    /// healthy this long after boot complete (`None`: never).
    pub bless_grace: Option<Duration>,
    /// Call `Host::tick` this often (`None`: never; an idle loop then has no
    /// timer at all).
    pub tick: Option<Duration>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            passwd: PathBuf::from("/etc/passwd"),
            group: PathBuf::from("/etc/group"),
            proc: PathBuf::from("/proc"),
            notify_socket: None,
            control_socket: None,
            log_dir: None,
            probe_program: PathBuf::from("/proc/self/exe"),
            cgroups: None,
            bless_grace: None,
            tick: None,
            unit_dirs: Vec::new(),
        }
    }
}

impl Config {
    /// The defaults, with the sockets under `dir` (`/run/keel` for PID 1).
    pub fn in_runtime_dir(dir: &std::path::Path) -> Config {
        Config {
            notify_socket: Some(dir.join("notify")),
            control_socket: Some(dir.join("control.sock")),
            ..Config::default()
        }
    }
}

/// The supervisor: units, their state machines and the loop's fds.
pub struct Supervisor {
    pub(crate) config: Config,
    pub(crate) units: BTreeMap<String, Unit>,
    pub(crate) policies: BTreeMap<String, Policy>,
    pub(crate) services: BTreeMap<String, Service>,
    /// What each unit waits for before it starts: (unit, required).
    pub(crate) waits: BTreeMap<String, Vec<(String, bool)>>,
    pub(crate) timers: BTreeMap<(String, TimerKind), Duration>,
    /// Main processes (and MAINPID=) to their unit.
    pub(crate) pids: HashMap<i32, String>,
    pub(crate) epoll: Epoll,
    signals: SignalFd,
    timer: TimerFd,
    pub(crate) notify: Option<NotifySocket>,
    /// The last STATUS= of each unit.
    pub(crate) status: BTreeMap<String, String>,
    /// The last ERRNO= of each unit.
    pub(crate) errno: BTreeMap<String, i32>,
    pub(crate) timeline: Timeline,
    /// When each unit last changed state.
    pub(crate) changed: BTreeMap<String, Duration>,
    pub(crate) logs: BTreeMap<String, crate::logs::UnitLog>,
    /// Open log pipes: id -> (unit, read end).
    pub(crate) log_pipes: HashMap<u64, (String, std::fs::File)>,
    pub(crate) next_id: u64,
    pub(crate) control: Option<std::os::unix::net::UnixListener>,
    pub(crate) conns: HashMap<u64, crate::control::Conn>,
    /// `keel logs -f` connections: (unit, connection id).
    pub(crate) followers: Vec<(String, u64)>,
    pub(crate) probes: crate::readiness::Probes,
    pub(crate) fdstore: BTreeMap<String, Vec<(String, std::os::fd::OwnedFd)>>,
    pub(crate) cgroups: BTreeMap<String, keel_kernel::cgroup::UnitCgroup>,
    /// Units a `keel restart` stopped, to start once they are down.
    pub(crate) restart_pending: std::collections::BTreeSet<String>,
    /// Units a reload removed, forgotten once they are down.
    pub(crate) removing: std::collections::BTreeSet<String>,
    boot_reported: bool,
    blessed: bool,
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
        ready_probe: u.ready.is_some(),
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
        let control = match &config.control_socket {
            Some(path) => {
                let l = crate::control::bind(path).map_err(|source| SetupError::ControlSocket {
                    path: path.clone(),
                    source,
                })?;
                epoll
                    .add(l.as_raw_fd(), TOKEN_CONTROL)
                    .map_err(SetupError::Epoll)?;
                Some(l)
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
        let logs = units
            .keys()
            .map(|n| (n.clone(), crate::logs::UnitLog::new(n)))
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
            errno: BTreeMap::new(),
            timeline: Timeline::default(),
            changed: BTreeMap::new(),
            logs,
            log_pipes: HashMap::new(),
            next_id: 0,
            control,
            conns: HashMap::new(),
            followers: Vec::new(),
            probes: crate::readiness::Probes::default(),
            fdstore: BTreeMap::new(),
            cgroups: BTreeMap::new(),
            restart_pending: std::collections::BTreeSet::new(),
            removing: std::collections::BTreeSet::new(),
            boot_reported: false,
            blessed: false,
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
        if let Some(t) = self.config.tick {
            self.timers
                .insert((String::new(), TimerKind::Tick), boottime() + t);
        }
        loop {
            if self.stopping.is_none() {
                self.start_what_can_start();
                self.report_boot(host);
                self.watch_blessing();
            }
            if let Some(req) = self.stopping {
                self.stop_what_can_stop();
                if self
                    .services
                    .values()
                    .all(|s| s.state.pid().is_none() && s.state != State::Backoff)
                {
                    self.drain_logs();
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
                    TOKEN_TIMER => self.on_timer(host),
                    TOKEN_NOTIFY => self.on_notify(),
                    TOKEN_CONTROL => self.on_accept(),
                    t if t & TOKEN_LOG != 0 => self.on_log(t & !TOKEN_LOG, r.hangup),
                    t if t & TOKEN_CONN != 0 => {
                        if let Some(req) = self.on_conn(t & !TOKEN_CONN, host) {
                            self.request_stop(req);
                        }
                    }
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

    pub(crate) fn feed(&mut self, name: &str, event: Event) {
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
            self.changed.insert(name.to_string(), now);
        }
        for a in actions {
            self.act(name, a);
        }
        if before.name() != after.name() {
            self.on_state_change(name, &before, &after, now);
            self.continue_restart(name);
            self.forget_if_down(name);
        }
    }

    pub(crate) fn act(&mut self, name: &str, action: Action) {
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
            Action::Signal { pid, signal } => self.signal_unit(name, pid, signal),
            Action::SetTimer(at) => {
                self.timers.insert((name.to_string(), TimerKind::State), at);
            }
            Action::ClearTimer => {
                self.timers.remove(&(name.to_string(), TimerKind::State));
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

    /// Sends `signal` to a unit: its whole cgroup (kill-mode = "cgroup"),
    /// or its process group where there are no cgroups, or only its main
    /// process (kill-mode = "process").
    pub(crate) fn signal_unit(&mut self, name: &str, pid: i32, signal: i32) {
        let whole = matches!(
            self.units.get(name).map(|u| u.kill_mode),
            Some(keel_units::KillMode::Cgroup)
        );
        if whole {
            if let Some(cg) = self.cgroups.get(name) {
                cg.signal_all(signal);
            } else {
                // A service runs in its own session (setsid): its process
                // group holds what it forked that did not leave it.
                let _ = process::kill(-pid, signal);
            }
        }
        if let Err(e) = process::kill(pid, signal) {
            if e.raw_os_error() != Some(libc::ESRCH) {
                log::warn!("{name}: cannot send {}: {e}", signal::name(signal));
            }
        }
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

    /// Whether every boot-critical unit is ready (or finished) and has no
    /// failed health check pending.
    fn critical_healthy(&self) -> bool {
        self.services
            .iter()
            .filter(|(n, _)| self.units.get(*n).is_some_and(|u| u.boot_critical))
            .all(|(n, s)| s.state.satisfies() && !self.probes.health_failing(n))
    }

    /// The last state change of any boot-critical unit.
    fn critical_changed(&self) -> Duration {
        self.changed
            .iter()
            .filter(|(n, _)| self.units.get(*n).is_some_and(|u| u.boot_critical))
            .map(|(_, t)| *t)
            .max()
            .unwrap_or_default()
    }

    /// Arms the blessing grace period while every boot-critical unit is
    /// healthy; disarms it as soon as one is not.
    fn watch_blessing(&mut self) {
        let Some(grace) = self.config.bless_grace else {
            return;
        };
        if !self.boot_reported || self.blessed {
            return;
        }
        let key = (String::new(), TimerKind::Bless);
        if self.critical_healthy() {
            if !self.timers.contains_key(&key) {
                self.timers
                    .insert(key, self.critical_changed().max(boottime()) + grace);
            }
        } else {
            self.timers.remove(&key);
        }
    }

    fn try_bless(&mut self, host: &mut dyn Host) {
        let Some(grace) = self.config.bless_grace else {
            return;
        };
        let now = boottime();
        if self.blessed || !self.critical_healthy() {
            return;
        }
        // A change inside the grace period starts it again.
        let since = self.critical_changed();
        if now.saturating_sub(since) < grace {
            self.timers
                .insert((String::new(), TimerKind::Bless), since + grace);
            return;
        }
        self.blessed = true;
        host.blessed(now);
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
                    None => {
                        if !self.probe_exited(pid, status.success(), &status.to_string()) {
                            log::debug!("reaped orphan {pid} ({status})");
                        }
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    log::error!("waitpid failed: {e}");
                    break;
                }
            }
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

    fn on_timer(&mut self, host: &mut dyn Host) {
        self.timer.drain();
        let now = boottime();
        let due: Vec<(String, TimerKind)> = self
            .timers
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.timers.remove(&key);
            let (name, kind) = key;
            match kind {
                TimerKind::State => self.feed(&name, Event::Timer),
                TimerKind::Bless => self.try_bless(host),
                TimerKind::Tick => {
                    if host.tick() {
                        if let Some(t) = self.config.tick {
                            self.timers
                                .insert((String::new(), TimerKind::Tick), now + t);
                        }
                    }
                }
                other => self.on_check_timer(&name, other),
            }
        }
    }
}

/// The timeline marks a state change means.
fn transition_marks(before: &State, after: &State, delay: Option<Duration>) -> Vec<Mark> {
    match (before, after) {
        (State::Stopping { .. } | State::Deactivating { .. }, State::Exited { .. }) => {
            vec![Mark::Stopped]
        }
        (_, State::Exited { .. }) if before.pid().is_some() => vec![Mark::Ready],
        (_, State::Exited { .. }) => vec![Mark::Stopped],
        (_, State::Ready { .. }) => vec![Mark::Ready],
        (_, State::Failed { reason } | State::CrashLoop { reason }) => vec![Mark::Failed {
            reason: reason.clone(),
        }],
        (_, State::Backoff) => vec![Mark::Restarting {
            delay: delay.unwrap_or_default(),
        }],
        (_, State::Stopping { .. } | State::Deactivating { .. }) => vec![Mark::Stopping],
        _ => vec![],
    }
}

fn log_exit(name: &str, status: &ExitStatus) {
    log::debug!("{name}: main process exited ({status})");
}
