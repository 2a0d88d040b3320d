//! The life cycle of one service as a pure state machine: an [`Event`] and
//! the current time go in, the new state and a list of [`Action`]s come
//! out. Nothing here spawns, signals or sleeps; the event loop in
//! `runtime` does what the actions say and feeds back what happened. That
//! is what lets the table of cases in the tests cover every transition.

use std::time::Duration;

/// The policy of a unit that the state machine needs, copied out of the
/// unit file so this module does not depend on its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub kind: Kind,
    pub restart: RestartPolicy,
    pub restart_delay: Duration,
    pub restart_delay_max: Duration,
    /// At most `burst` starts within `interval`, else crash-loop.
    pub start_burst: u32,
    pub start_interval: Duration,
    pub ready_timeout: Option<Duration>,
    /// Ready only once a probe passes (for simple units too).
    pub ready_probe: bool,
    pub stop_signal: i32,
    pub stop_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Ready once exec succeeded.
    Simple,
    /// Ready on READY=1.
    Notify,
    /// Done when it exits 0.
    Oneshot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Never,
    OnFailure,
    Always,
}

/// Where a service is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not started yet (or waiting for its dependencies).
    Inactive,
    /// Running, not ready yet (a oneshot stays here until it exits).
    Starting { pid: i32 },
    /// Running and ready.
    Ready { pid: i32 },
    /// Reloading (a notify service until it says READY=1 again).
    Reloading { pid: i32 },
    /// Sent its stop signal; waiting for it to exit. `restart`: it was
    /// killed for failing its health check or watchdog, and comes back.
    Stopping {
        pid: i32,
        killed: bool,
        restart: bool,
    },
    /// Said STOPPING=1: shutting down by itself. Its exit counts as from
    /// ready (the restart policy applies); past its stop-timeout it is
    /// killed.
    Deactivating { pid: i32 },
    /// Exited and stays down: a finished oneshot, or a stopped service.
    Exited { status: Option<String> },
    /// Waiting out the restart delay.
    Backoff,
    /// Failed and not restarting.
    Failed { reason: String },
    /// Hit its start limit; only a manual start brings it back.
    CrashLoop { reason: String },
}

impl State {
    /// The one-word name shown by `keel status`.
    pub fn name(&self) -> &'static str {
        match self {
            State::Inactive => "inactive",
            State::Starting { .. } => "starting",
            State::Ready { .. } => "ready",
            State::Reloading { .. } => "reloading",
            State::Stopping { .. } | State::Deactivating { .. } => "stopping",
            State::Exited { .. } => "exited",
            State::Backoff => "backoff",
            State::Failed { .. } => "failed",
            State::CrashLoop { .. } => "crash-loop",
        }
    }

    /// The main process, while there is one.
    pub fn pid(&self) -> Option<i32> {
        match *self {
            State::Starting { pid }
            | State::Ready { pid }
            | State::Reloading { pid }
            | State::Stopping { pid, .. }
            | State::Deactivating { pid } => Some(pid),
            _ => None,
        }
    }

    /// Whether dependents may start: ready, or a oneshot that finished well.
    pub fn satisfies(&self) -> bool {
        matches!(
            self,
            State::Ready { .. } | State::Reloading { .. } | State::Exited { .. }
        )
    }

    /// Whether the service has given up (dependents that require it fail).
    pub fn is_failed(&self) -> bool {
        matches!(self, State::Failed { .. } | State::CrashLoop { .. })
    }

    /// Whether the service has reached where boot can count it: ready,
    /// done, or failed for good.
    pub fn settled(&self) -> bool {
        self.satisfies() || self.is_failed()
    }
}

/// What happened to the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Start it (boot found its dependencies ready, or `keel start`).
    Start { manual: bool },
    /// exec succeeded.
    Spawned { pid: i32 },
    /// fork or a step before exec failed.
    SpawnFailed { error: String },
    /// READY=1 (or a ready probe passed).
    Ready,
    /// The service said its main process is another one (MAINPID=).
    MainPid { pid: i32 },
    /// The service asked for more time (EXTEND_TIMEOUT_USEC=).
    ExtendTimeout(Duration),
    /// The main process exited.
    Exited {
        pid: i32,
        success: bool,
        status: String,
    },
    /// Stop it (`keel stop`, shutdown).
    Stop,
    /// `keel reload`: SIGHUP, and for a notify service wait for READY=1.
    Reload,
    /// The service said RELOADING=1.
    ReloadingNotified,
    /// The service said STOPPING=1.
    StoppingNotified,
    /// Its health check or watchdog failed: kill it with `signal` and
    /// restart it.
    Kill { signal: i32, reason: String },
    /// A dependency it requires failed.
    DependencyFailed { dependency: String },
    /// Its timer (ready-timeout, stop-timeout, restart delay) fired.
    Timer,
}

/// What the loop must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Spawn,
    Signal {
        pid: i32,
        signal: i32,
    },
    /// Arm the service's timer at this absolute CLOCK_BOOTTIME deadline.
    SetTimer(Duration),
    ClearTimer,
    /// Log this (the failure reason, the restart).
    Log {
        error: bool,
        message: String,
    },
}

/// One service: its state and the bookkeeping for restarts.
#[derive(Debug, Clone)]
pub struct Service {
    pub state: State,
    /// The restart delay the next crash will wait.
    pub next_delay: Duration,
    /// When recent starts happened (for the start limit).
    pub starts: Vec<Duration>,
    /// When the current process was spawned (to reset the backoff once it
    /// stayed up).
    pub since: Duration,
    pub restarts: u32,
    /// The last exit status of the main process, for status and crash-loop.
    pub last_exit: Option<String>,
}

impl Service {
    pub fn new(policy: &Policy) -> Service {
        Service {
            state: State::Inactive,
            next_delay: policy.restart_delay,
            starts: Vec::new(),
            since: Duration::ZERO,
            restarts: 0,
            last_exit: None,
        }
    }

    /// Feeds one event; returns what to do. Events that do not apply in the
    /// current state are ignored (an empty list).
    pub fn handle(&mut self, p: &Policy, event: Event, now: Duration) -> Vec<Action> {
        use State::*;
        let mut out = Vec::new();
        match (&self.state, event) {
            (
                Inactive | Exited { .. } | Failed { .. } | CrashLoop { .. } | Backoff,
                Event::Start { manual },
            ) => {
                if manual {
                    self.starts.clear();
                    self.next_delay = p.restart_delay;
                }
                self.starts.push(now);
                out.push(Action::ClearTimer);
                out.push(Action::Spawn);
            }
            (Backoff, Event::Timer) => {
                self.starts.push(now);
                out.push(Action::Spawn);
            }
            (_, Event::Spawned { pid }) => {
                self.since = now;
                if p.kind == Kind::Simple && !p.ready_probe {
                    self.state = Ready { pid };
                } else {
                    self.state = Starting { pid };
                    if let Some(t) = p.ready_timeout {
                        out.push(Action::SetTimer(now + t));
                    }
                }
            }
            (_, Event::SpawnFailed { error }) => {
                // A program that cannot be executed will not be executable
                // 100 ms later either: fail at once instead of crash-looping.
                self.last_exit = Some(error.clone());
                let reason = format!("cannot start: {error}");
                out.push(Action::Log {
                    error: true,
                    message: reason.clone(),
                });
                self.state = Failed { reason };
            }
            (Starting { pid }, Event::Ready) => {
                let pid = *pid;
                if p.kind != Kind::Oneshot {
                    self.state = Ready { pid };
                    out.push(Action::ClearTimer);
                }
            }
            (Reloading { pid }, Event::Ready) => {
                self.state = Ready { pid: *pid };
                out.push(Action::ClearTimer);
            }
            (Ready { pid }, Event::Reload) => {
                let pid = *pid;
                out.push(Action::Signal {
                    pid,
                    signal: libc::SIGHUP,
                });
                if p.kind == Kind::Notify {
                    self.state = Reloading { pid };
                    if let Some(t) = p.ready_timeout {
                        out.push(Action::SetTimer(now + t));
                    }
                }
            }
            (Ready { pid }, Event::ReloadingNotified) => {
                self.state = Reloading { pid: *pid };
            }
            (Ready { pid } | Reloading { pid }, Event::StoppingNotified) => {
                // As systemd does: as if it had been sent its stop signal.
                // (After keel's own stop signal it only confirms the stop.)
                out.push(Action::Log {
                    error: false,
                    message: "stopping by itself (STOPPING=1)".into(),
                });
                self.state = Deactivating { pid: *pid };
                out.push(Action::SetTimer(now + p.stop_timeout));
            }
            (Deactivating { pid }, Event::Timer) => {
                let pid = *pid;
                let restart = p.restart != RestartPolicy::Never;
                self.kill_past_stop_timeout(p, now, pid, restart, "said STOPPING=1 but ", &mut out);
            }
            (Reloading { pid }, Event::Timer) => {
                let pid = *pid;
                self.kill_for_restart(
                    p,
                    now,
                    pid,
                    libc::SIGKILL,
                    "did not finish reloading within its ready-timeout".into(),
                    &mut out,
                );
            }
            (
                Starting { pid } | Ready { pid } | Reloading { pid } | Deactivating { pid },
                Event::Kill { signal, reason },
            ) => {
                let pid = *pid;
                self.kill_for_restart(p, now, pid, signal, reason, &mut out);
            }
            (Starting { .. }, Event::MainPid { pid }) => self.state = Starting { pid },
            (Ready { .. }, Event::MainPid { pid }) => self.state = Ready { pid },
            (Reloading { .. }, Event::MainPid { pid }) => self.state = Reloading { pid },
            (Deactivating { .. }, Event::MainPid { pid }) => self.state = Deactivating { pid },
            (Starting { .. } | Stopping { .. } | Deactivating { .. }, Event::ExtendTimeout(d)) => {
                out.push(Action::SetTimer(now + d));
            }
            (Starting { pid }, Event::Timer) => {
                let pid = *pid;
                out.push(Action::Log {
                    error: true,
                    message: format!(
                        "did not become ready within its ready-timeout of {}",
                        fmt_duration(p.ready_timeout.unwrap_or_default())
                    ),
                });
                out.push(Action::Signal {
                    pid,
                    signal: libc::SIGKILL,
                });
                self.state = Failed {
                    reason: format!(
                        "ready-timeout ({}) expired",
                        fmt_duration(p.ready_timeout.unwrap_or_default())
                    ),
                };
            }
            (
                Starting { pid } | Ready { pid } | Reloading { pid } | Deactivating { pid },
                Event::Exited {
                    pid: dead,
                    success,
                    status,
                },
            ) if *pid == dead => {
                self.last_exit = Some(status.clone());
                out.push(Action::ClearTimer);
                let was_ready = !matches!(self.state, Starting { .. });
                if p.kind == Kind::Oneshot && success {
                    self.state = Exited {
                        status: Some(status),
                    };
                    self.next_delay = p.restart_delay;
                } else if success && p.restart != RestartPolicy::Always {
                    self.state = Exited {
                        status: Some(status),
                    };
                } else {
                    // Stayed up longer than the delay cap: the backoff resets.
                    if was_ready && now.saturating_sub(self.since) >= p.restart_delay_max {
                        self.next_delay = p.restart_delay;
                    }
                    let what = if success { "exited" } else { "failed" };
                    self.failed_run(p, now, format!("{what} with {status}"), &mut out);
                }
            }
            (Failed { .. }, Event::Exited { .. }) => {
                // The process killed after a ready-timeout: already failed.
            }
            (
                Starting { pid } | Ready { pid } | Reloading { pid } | Deactivating { pid },
                Event::Stop,
            ) => {
                let pid = *pid;
                out.push(Action::Signal {
                    pid,
                    signal: p.stop_signal,
                });
                out.push(Action::SetTimer(now + p.stop_timeout));
                self.state = Stopping {
                    pid,
                    killed: false,
                    restart: false,
                };
            }
            (
                Stopping {
                    pid,
                    restart: true,
                    killed,
                },
                Event::Stop,
            ) => {
                // A stop while it is being killed for a restart: no restart.
                self.state = Stopping {
                    pid: *pid,
                    killed: *killed,
                    restart: false,
                };
            }
            (Backoff | Inactive, Event::Stop) => {
                out.push(Action::ClearTimer);
                self.state = Exited { status: None };
            }
            (
                Stopping {
                    pid,
                    killed: false,
                    restart,
                },
                Event::Timer,
            ) => {
                let (pid, restart) = (*pid, *restart);
                self.kill_past_stop_timeout(p, now, pid, restart, "", &mut out);
            }
            (
                Stopping { pid, restart, .. },
                Event::Exited {
                    pid: dead, status, ..
                },
            ) if *pid == dead => {
                out.push(Action::ClearTimer);
                self.last_exit = Some(status.clone());
                if *restart {
                    let reason = format!("killed ({status})");
                    self.failed_run_forced(p, now, reason, &mut out);
                } else {
                    self.state = Exited {
                        status: Some(status),
                    };
                }
            }
            (Inactive | Backoff, Event::DependencyFailed { dependency }) => {
                out.push(Action::ClearTimer);
                self.state = Failed {
                    reason: format!("required unit {dependency} failed"),
                };
            }
            _ => {}
        }
        out
    }

    /// SIGKILL for a service still there past its stop-timeout, the
    /// log line starting with `said` (what it was waited for after).
    fn kill_past_stop_timeout(
        &mut self,
        p: &Policy,
        now: Duration,
        pid: i32,
        restart: bool,
        said: &str,
        out: &mut Vec<Action>,
    ) {
        out.push(Action::Log {
            error: true,
            message: format!(
                "{said}did not stop within its stop-timeout of {}; sending SIGKILL",
                fmt_duration(p.stop_timeout)
            ),
        });
        out.push(Action::Signal {
            pid,
            signal: libc::SIGKILL,
        });
        out.push(Action::SetTimer(now + p.stop_timeout));
        self.state = State::Stopping {
            pid,
            killed: true,
            restart,
        };
    }

    /// Kills the main process because it failed a check; it restarts once
    /// it exited.
    fn kill_for_restart(
        &mut self,
        p: &Policy,
        now: Duration,
        pid: i32,
        signal: i32,
        reason: String,
        out: &mut Vec<Action>,
    ) {
        out.push(Action::Log {
            error: true,
            message: format!("{reason}; sending {}", keel_kernel::signal::name(signal)),
        });
        out.push(Action::Signal { pid, signal });
        out.push(Action::SetTimer(now + p.stop_timeout));
        self.state = State::Stopping {
            pid,
            killed: signal == libc::SIGKILL,
            restart: true,
        };
    }

    /// A run ended badly: restart with backoff, give up, or crash-loop.
    fn failed_run(&mut self, p: &Policy, now: Duration, reason: String, out: &mut Vec<Action>) {
        let wants_restart = match p.restart {
            RestartPolicy::Never => false,
            RestartPolicy::OnFailure | RestartPolicy::Always => true,
        };
        self.restart_or_give_up(p, now, reason, wants_restart, out);
    }

    /// Like `failed_run`, but a killed-for-a-check service restarts even
    /// with restart=never: that is what the check is for.
    fn failed_run_forced(
        &mut self,
        p: &Policy,
        now: Duration,
        reason: String,
        out: &mut Vec<Action>,
    ) {
        self.restart_or_give_up(p, now, reason, true, out);
    }

    fn restart_or_give_up(
        &mut self,
        p: &Policy,
        now: Duration,
        reason: String,
        wants_restart: bool,
        out: &mut Vec<Action>,
    ) {
        if !wants_restart {
            out.push(Action::Log {
                error: true,
                message: reason.clone(),
            });
            self.state = State::Failed { reason };
            return;
        }
        let window_start = now.saturating_sub(p.start_interval);
        self.starts.retain(|t| *t >= window_start);
        // A burst of 0 means no start limit.
        if p.start_burst > 0
            && u32::try_from(self.starts.len()).unwrap_or(u32::MAX) >= p.start_burst
        {
            let reason = format!(
                "{reason}; start limit reached ({} starts within {}), not restarting",
                p.start_burst,
                fmt_duration(p.start_interval)
            );
            out.push(Action::Log {
                error: true,
                message: reason.clone(),
            });
            self.state = State::CrashLoop { reason };
            return;
        }
        let delay = self.next_delay;
        self.next_delay = (self.next_delay * 2).min(p.restart_delay_max);
        self.restarts += 1;
        out.push(Action::Log {
            error: true,
            message: format!("{reason}; restarting in {}", fmt_duration(delay)),
        });
        self.state = State::Backoff;
        out.push(Action::SetTimer(now + delay));
    }
}

pub use keel_units::format_duration as fmt_duration;

#[cfg(test)]
mod tests;
