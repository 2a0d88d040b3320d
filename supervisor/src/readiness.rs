//! Readiness and liveness: sd_notify messages (checked against the sender's
//! credentials), readiness probes, health checks for the whole life of a
//! unit, the sd_notify watchdog, and the fd store. tcp and http probes run
//! as `keel probe …` child processes and exec probes as the given command,
//! so PID 1 never blocks on a slow peer: a probe is one more child whose
//! exit status is the answer.

use crate::notify;
use crate::runtime::{Supervisor, TimerKind};
use crate::service::{Event, State};
use keel_kernel::clock::boottime;
use keel_kernel::process::{self, Command};
use keel_kernel::socket::NotifySocket;
use keel_units::Probe;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

/// At most this many fds are stored per unit.
pub const FDSTORE_MAX: usize = 64;
/// The first readiness probe runs at once; then every 50 ms, doubling to 1 s.
const PROBE_FIRST: Duration = Duration::from_millis(50);
const PROBE_MAX: Duration = Duration::from_secs(1);
/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Which check a probe process is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    Ready,
    Health,
}

/// Probe bookkeeping.
#[derive(Debug, Default)]
pub(crate) struct Probes {
    /// Running probe processes: pid -> (unit, check).
    running: HashMap<i32, (String, Check)>,
    /// Consecutive failed health checks.
    failures: BTreeMap<String, u32>,
    /// Notify units that have sent READY=1 but also wait for a probe.
    notified: BTreeSet<String>,
    /// The next readiness probe's delay.
    delay: BTreeMap<String, Duration>,
    /// The watchdog period each unit asked for (WATCHDOG_USEC=).
    watchdog: BTreeMap<String, Duration>,
}

impl Probes {
    /// Whether `unit` has failed health checks not yet followed by a pass.
    pub(crate) fn health_failing(&self, unit: &str) -> bool {
        self.failures.get(unit).is_some_and(|n| *n > 0)
    }
}

impl Supervisor {
    /// The unit whose process `pid` is: by its cgroup where units have
    /// cgroups, else by walking its parents up to a main process.
    pub(crate) fn owner_of(&self, pid: i32) -> Option<String> {
        if let Some(name) = self.pids.get(&pid) {
            return Some(name.clone());
        }
        let proc = &self.config.proc;
        if !self.cgroups.is_empty() {
            if let Some(path) =
                keel_kernel::cgroup::own_path(&proc.join(pid.to_string()).join("cgroup"))
            {
                // The process's cgroup is the unit's or below it.
                let rel = Path::new(path.trim_start_matches('/'));
                for (name, cg) in &self.cgroups {
                    if rel.starts_with(&cg.rel) {
                        return Some(name.clone());
                    }
                }
            }
        }
        let mut p = pid;
        for _ in 0..32 {
            if let Some(name) = self.pids.get(&p) {
                return Some(name.clone());
            }
            let stat = std::fs::read_to_string(proc.join(p.to_string()).join("stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 1..];
            p = rest.split_whitespace().nth(1)?.parse().ok()?;
            if p <= 1 {
                return None;
            }
        }
        None
    }

    pub(crate) fn on_notify(&mut self) {
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
                log::warn!(
                    "ignoring a notify message from pid {} (not a unit's process)",
                    cred.pid
                );
                continue;
            };
            let msg = notify::parse(&dgram.data);
            self.apply_notify(&name, msg, dgram.fds);
            // BARRIER=1: dropping the datagram's fds closes them, which is
            // what the sender waits for.
        }
    }

    fn apply_notify(&mut self, name: &str, msg: notify::Message, fds: Vec<std::os::fd::OwnedFd>) {
        let now = boottime();
        if let Some(s) = &msg.status {
            self.status.insert(name.to_string(), s.clone());
        }
        if let Some(errno) = msg.errno {
            log::warn!(
                "{name}: reports error {errno} ({})",
                keel_kernel::errno_text(errno)
            );
            self.errno.insert(name.to_string(), errno);
        }
        if let Some(pid) = msg.main_pid {
            let old = self.services.get(name).and_then(|s| s.state.pid());
            if let Some(old) = old {
                self.pids.remove(&old);
            }
            self.pids.insert(pid, name.to_string());
            self.feed(name, Event::MainPid { pid });
        }
        if let Some(d) = msg.extend_timeout {
            self.feed(name, Event::ExtendTimeout(d));
        }
        if let Some(w) = msg.watchdog_usec {
            self.probes.watchdog.insert(name.to_string(), w);
            self.timers
                .insert((name.to_string(), TimerKind::Watchdog), now + w);
        }
        if msg.watchdog_ping {
            if let Some(w) = self.watchdog_period(name) {
                self.timers
                    .insert((name.to_string(), TimerKind::Watchdog), now + w);
            }
        }
        if msg.watchdog_trigger {
            self.feed(
                name,
                Event::Kill {
                    signal: libc::SIGABRT,
                    reason: "the service asked for its watchdog to fire (WATCHDOG=trigger)".into(),
                },
            );
        }
        if msg.reloading {
            self.feed(name, Event::ReloadingNotified);
        }
        if msg.stopping {
            self.feed(name, Event::StoppingNotified);
        }
        if msg.fdstore && !fds.is_empty() {
            let fdname = msg.fdname.clone().unwrap_or_else(|| "stored".into());
            let store = self.fdstore.entry(name.to_string()).or_default();
            for fd in fds {
                if store.len() >= FDSTORE_MAX {
                    log::warn!("{name}: fd store full ({FDSTORE_MAX}); fd dropped");
                    break;
                }
                store.push((fdname.clone(), fd));
            }
        }
        if msg.fdstore_remove {
            if let (Some(store), Some(fdname)) = (self.fdstore.get_mut(name), &msg.fdname) {
                store.retain(|(n, _)| n != fdname);
            }
        }
        if msg.ready {
            let has_probe = self.units.get(name).is_some_and(|u| u.ready.is_some());
            let starting = matches!(
                self.services.get(name).map(|s| &s.state),
                Some(State::Starting { .. })
            );
            if has_probe && starting {
                // READY=1, then the probe must pass too.
                self.probes.notified.insert(name.to_string());
                self.timers
                    .insert((name.to_string(), TimerKind::Probe), now);
            } else {
                self.feed(name, Event::Ready);
            }
        }
    }

    fn watchdog_period(&self, name: &str) -> Option<Duration> {
        self.probes
            .watchdog
            .get(name)
            .copied()
            .or_else(|| self.units.get(name).and_then(|u| u.watchdog))
    }

    /// Timers and probes follow the state: probing while starting, health
    /// checks while ready, the watchdog while running, and leftovers of a
    /// unit's cgroup killed once its main process is gone.
    pub(crate) fn on_state_change(
        &mut self,
        name: &str,
        before: &State,
        after: &State,
        now: Duration,
    ) {
        let Some(unit) = self.units.get(name) else {
            return;
        };
        let kind = unit.kind;
        let has_probe = unit.ready.is_some();
        let health = unit.health.as_ref().map(|h| h.interval);
        let key = |k| (name.to_string(), k);
        match after {
            State::Starting { .. } if !matches!(before, State::Starting { .. }) => {
                self.probes.notified.remove(name);
                self.probes.delay.insert(name.to_string(), PROBE_FIRST);
                if has_probe && kind != keel_units::ServiceType::Notify {
                    self.timers.insert(key(TimerKind::Probe), now);
                }
                if let Some(w) = self
                    .watchdog_period(name)
                    .filter(|_| kind == keel_units::ServiceType::Notify)
                {
                    self.timers.insert(key(TimerKind::Watchdog), now + w);
                }
            }
            State::Ready { .. } => {
                self.timers.remove(&key(TimerKind::Probe));
                self.probes.failures.remove(name);
                if let Some(i) = health {
                    self.timers.insert(key(TimerKind::Health), now + i);
                }
                if before.pid().is_none() {
                    if let Some(w) = self
                        .watchdog_period(name)
                        .filter(|_| kind == keel_units::ServiceType::Notify)
                    {
                        self.timers.insert(key(TimerKind::Watchdog), now + w);
                    }
                }
            }
            State::Reloading { .. } => {}
            _ => {
                for k in [TimerKind::Probe, TimerKind::Health, TimerKind::Watchdog] {
                    self.timers.remove(&key(k));
                }
                self.probes.notified.remove(name);
            }
        }
        let main_gone = before.pid().is_some() && after.pid().is_none();
        let whole = matches!(unit.kill_mode, keel_units::KillMode::Cgroup);
        if main_gone && whole {
            if let Some(cg) = self.cgroups.get(name) {
                if cg.populated() {
                    log::info!("{name}: killing what its main process left in its cgroup");
                    cg.signal_all(libc::SIGKILL);
                }
            }
        }
    }

    /// A probe, health or watchdog timer fired.
    pub(crate) fn on_check_timer(&mut self, name: &str, kind: TimerKind) {
        let state = self.services.get(name).map(|s| s.state.clone());
        match (kind, state) {
            (TimerKind::Probe, Some(State::Starting { .. })) => self.run_probe(name, Check::Ready),
            (TimerKind::Health, Some(State::Ready { .. })) => self.run_probe(name, Check::Health),
            (
                TimerKind::Watchdog,
                Some(State::Starting { .. } | State::Ready { .. } | State::Reloading { .. }),
            ) => {
                let period = self.watchdog_period(name).unwrap_or_default();
                self.feed(
                    name,
                    Event::Kill {
                        signal: libc::SIGABRT,
                        reason: format!(
                            "watchdog timeout: no WATCHDOG=1 within {}",
                            keel_units::format_duration(period)
                        ),
                    },
                );
            }
            (TimerKind::ProbeTimeout, _) => {
                let pids: Vec<i32> = self
                    .probes
                    .running
                    .iter()
                    .filter(|(_, (u, _))| u == name)
                    .map(|(p, _)| *p)
                    .collect();
                for p in pids {
                    let _ = process::kill(p, libc::SIGKILL);
                }
            }
            _ => {}
        }
    }

    fn run_probe(&mut self, name: &str, check: Check) {
        if self
            .probes
            .running
            .values()
            .any(|(u, c)| u == name && *c == check)
        {
            return;
        }
        let probe = match check {
            Check::Ready => self.units.get(name).and_then(|u| u.ready.clone()),
            Check::Health => self
                .units
                .get(name)
                .and_then(|u| u.health.as_ref().map(|h| h.probe.clone())),
        };
        let Some(probe) = probe else { return };
        let timeout = match check {
            Check::Health => self
                .units
                .get(name)
                .and_then(|u| u.health.as_ref().map(|h| h.timeout))
                .unwrap_or(PROBE_TIMEOUT),
            Check::Ready => PROBE_TIMEOUT,
        };
        let program = self.config.probe_program.to_string_lossy().into_owned();
        let ms = timeout.as_millis().to_string();
        let argv: Vec<String> = match &probe {
            Probe::Path(p) => {
                // No process needed: a stat.
                self.probe_result(
                    name,
                    check,
                    p.exists(),
                    &format!("{} does not exist", p.display()),
                );
                return;
            }
            Probe::Exec(argv) => argv.clone(),
            Probe::Tcp(addr) => vec![program, "probe".into(), "tcp".into(), addr.to_string(), ms],
            Probe::Http(url) => vec![
                program,
                "probe".into(),
                "http".into(),
                url.addr.to_string(),
                url.host.clone(),
                url.path.clone(),
                ms,
            ],
        };
        // An exec probe runs as the unit's main process would (user,
        // environment, directory); its output goes to the unit's log. The
        // tcp and http probes are keel's own and run as keel.
        let exec = match (&probe, self.units.get(name)) {
            (Probe::Exec(_), Some(unit)) => Some(self.unit_command(unit, &argv)),
            _ => None,
        };
        let spawned = match exec {
            Some(cmd) => cmd.and_then(|mut c| self.spawn_logged(name, &mut c, &argv)),
            None => Command::new(&argv)
                .and_then(|c| c.spawn())
                .map_err(|e| e.to_string()),
        };
        match spawned {
            Ok(pid) => {
                self.probes.running.insert(pid, (name.to_string(), check));
                self.timers.insert(
                    (name.to_string(), TimerKind::ProbeTimeout),
                    boottime() + timeout,
                );
            }
            Err(e) => self.probe_result(name, check, false, &format!("cannot run the probe: {e}")),
        }
    }

    /// A reaped pid that was a probe; true when it was one.
    pub(crate) fn probe_exited(&mut self, pid: i32, success: bool, status: &str) -> bool {
        let Some((name, check)) = self.probes.running.remove(&pid) else {
            return false;
        };
        if !self.probes.running.values().any(|(u, _)| *u == name) {
            self.timers.remove(&(name.clone(), TimerKind::ProbeTimeout));
        }
        self.probe_result(&name, check, success, &format!("probe {status}"));
        true
    }

    fn probe_result(&mut self, name: &str, check: Check, ok: bool, detail: &str) {
        let now = boottime();
        let state = self.services.get(name).map(|s| s.state.clone());
        match (check, state) {
            (Check::Ready, Some(State::Starting { .. })) => {
                let is_notify = self
                    .units
                    .get(name)
                    .is_some_and(|u| u.kind == keel_units::ServiceType::Notify);
                if ok && (!is_notify || self.probes.notified.contains(name)) {
                    log::debug!("{name}: ready probe passed");
                    self.feed(name, Event::Ready);
                } else {
                    let d = self.probes.delay.get(name).copied().unwrap_or(PROBE_FIRST);
                    self.probes
                        .delay
                        .insert(name.to_string(), (d * 2).min(PROBE_MAX));
                    self.timers
                        .insert((name.to_string(), TimerKind::Probe), now + d);
                }
            }
            (Check::Health, Some(State::Ready { .. })) => {
                let Some(h) = self.units.get(name).and_then(|u| u.health.clone()) else {
                    return;
                };
                if ok {
                    self.probes.failures.remove(name);
                } else {
                    let n = self.probes.failures.entry(name.to_string()).or_insert(0);
                    *n += 1;
                    let n = *n;
                    log::warn!(
                        "{name}: health check failed ({n} of {}): {detail}",
                        h.failures
                    );
                    if n >= h.failures {
                        self.probes.failures.remove(name);
                        let signal = self
                            .policies
                            .get(name)
                            .map_or(libc::SIGTERM, |p| p.stop_signal);
                        self.feed(
                            name,
                            Event::Kill {
                                signal,
                                reason: format!(
                                    "health check failed {n} times in a row ({detail})"
                                ),
                            },
                        );
                        return;
                    }
                }
                self.timers
                    .insert((name.to_string(), TimerKind::Health), now + h.interval);
            }
            _ => {}
        }
    }
}
