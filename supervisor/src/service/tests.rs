//! The state machine, case by case: (policy, state, event) -> (state, actions).

use super::*;

const MS: Duration = Duration::from_millis(1);
const NOW: Duration = Duration::from_secs(100);

fn policy(kind: Kind, restart: RestartPolicy) -> Policy {
    Policy {
        kind,
        restart,
        restart_delay: 100 * MS,
        restart_delay_max: 800 * MS,
        start_burst: 3,
        start_interval: Duration::from_secs(10),
        ready_timeout: Some(Duration::from_secs(5)),
        ready_probe: false,
        stop_signal: libc::SIGTERM,
        stop_timeout: Duration::from_secs(2),
    }
}

fn exited(pid: i32, success: bool) -> Event {
    Event::Exited {
        pid,
        success,
        status: if success {
            "exit status 0"
        } else {
            "exit status 1"
        }
        .into(),
    }
}

fn is_log(a: &Action) -> bool {
    matches!(a, Action::Log { .. })
}

struct Case {
    name: &'static str,
    policy: Policy,
    state: State,
    event: Event,
    want_state: State,
    want_actions: Vec<Action>,
}

#[test]
fn transitions() {
    use Kind::*;
    use RestartPolicy::*;
    let cases = vec![
        Case {
            name: "start spawns",
            policy: policy(Simple, Never),
            state: State::Inactive,
            event: Event::Start { manual: false },
            want_state: State::Inactive,
            want_actions: vec![Action::ClearTimer, Action::Spawn],
        },
        Case {
            name: "simple is ready once spawned",
            policy: policy(Simple, Never),
            state: State::Inactive,
            event: Event::Spawned { pid: 10 },
            want_state: State::Ready { pid: 10 },
            want_actions: vec![],
        },
        Case {
            name: "notify waits for READY=1 under a ready-timeout",
            policy: policy(Notify, Never),
            state: State::Inactive,
            event: Event::Spawned { pid: 10 },
            want_state: State::Starting { pid: 10 },
            want_actions: vec![Action::SetTimer(NOW + Duration::from_secs(5))],
        },
        Case {
            name: "a simple service with a ready probe waits for it",
            policy: Policy {
                ready_probe: true,
                ..policy(Simple, Never)
            },
            state: State::Inactive,
            event: Event::Spawned { pid: 10 },
            want_state: State::Starting { pid: 10 },
            want_actions: vec![Action::SetTimer(NOW + Duration::from_secs(5))],
        },
        Case {
            name: "READY=1 makes a notify service ready",
            policy: policy(Notify, Never),
            state: State::Starting { pid: 10 },
            event: Event::Ready,
            want_state: State::Ready { pid: 10 },
            want_actions: vec![Action::ClearTimer],
        },
        Case {
            name: "a oneshot ignores READY=1",
            policy: policy(Oneshot, Never),
            state: State::Starting { pid: 10 },
            event: Event::Ready,
            want_state: State::Starting { pid: 10 },
            want_actions: vec![],
        },
        Case {
            name: "a oneshot that exits 0 is done",
            policy: policy(Oneshot, Never),
            state: State::Starting { pid: 10 },
            event: exited(10, true),
            want_state: State::Exited {
                status: Some("exit status 0".into()),
            },
            want_actions: vec![Action::ClearTimer],
        },
        Case {
            name: "a oneshot that exits 1 fails",
            policy: policy(Oneshot, Never),
            state: State::Starting { pid: 10 },
            event: exited(10, false),
            want_state: State::Failed {
                reason: "failed with exit status 1".into(),
            },
            want_actions: vec![Action::ClearTimer],
        },
        Case {
            name: "the exit of another pid is not ours",
            policy: policy(Simple, Never),
            state: State::Ready { pid: 10 },
            event: exited(11, false),
            want_state: State::Ready { pid: 10 },
            want_actions: vec![],
        },
        Case {
            name: "on-failure restarts a crash after the delay",
            policy: policy(Simple, OnFailure),
            state: State::Ready { pid: 10 },
            event: exited(10, false),
            want_state: State::Backoff,
            want_actions: vec![Action::ClearTimer, Action::SetTimer(NOW + 100 * MS)],
        },
        Case {
            name: "on-failure leaves a clean exit alone",
            policy: policy(Simple, OnFailure),
            state: State::Ready { pid: 10 },
            event: exited(10, true),
            want_state: State::Exited {
                status: Some("exit status 0".into()),
            },
            want_actions: vec![Action::ClearTimer],
        },
        Case {
            name: "always restarts a clean exit too",
            policy: policy(Simple, Always),
            state: State::Ready { pid: 10 },
            event: exited(10, true),
            want_state: State::Backoff,
            want_actions: vec![Action::ClearTimer, Action::SetTimer(NOW + 100 * MS)],
        },
        Case {
            name: "the backoff timer spawns again",
            policy: policy(Simple, Always),
            state: State::Backoff,
            event: Event::Timer,
            want_state: State::Backoff,
            want_actions: vec![Action::Spawn],
        },
        Case {
            name: "a spawn failure without restart fails the unit",
            policy: policy(Simple, Never),
            state: State::Inactive,
            event: Event::SpawnFailed {
                error: "executing the program failed: No such file".into(),
            },
            want_state: State::Failed {
                reason: "cannot start: executing the program failed: No such file".into(),
            },
            want_actions: vec![],
        },
        Case {
            name: "a spawn failure is not retried, even with restart=always",
            policy: policy(Simple, Always),
            state: State::Backoff,
            event: Event::SpawnFailed { error: "x".into() },
            want_state: State::Failed {
                reason: "cannot start: x".into(),
            },
            want_actions: vec![],
        },
        Case {
            name: "ready-timeout kills and fails, naming the timeout",
            policy: policy(Notify, Never),
            state: State::Starting { pid: 10 },
            event: Event::Timer,
            want_state: State::Failed {
                reason: "ready-timeout (5s) expired".into(),
            },
            want_actions: vec![Action::Signal {
                pid: 10,
                signal: libc::SIGKILL,
            }],
        },
        Case {
            name: "stop sends the stop signal and arms the stop-timeout",
            policy: policy(Simple, Always),
            state: State::Ready { pid: 10 },
            event: Event::Stop,
            want_state: State::Stopping {
                pid: 10,
                killed: false,
                restart: false,
            },
            want_actions: vec![
                Action::Signal {
                    pid: 10,
                    signal: libc::SIGTERM,
                },
                Action::SetTimer(NOW + Duration::from_secs(2)),
            ],
        },
        Case {
            name: "stop-timeout escalates to SIGKILL",
            policy: policy(Simple, Always),
            state: State::Stopping {
                pid: 10,
                killed: false,
                restart: false,
            },
            event: Event::Timer,
            want_state: State::Stopping {
                pid: 10,
                killed: true,
                restart: false,
            },
            want_actions: vec![
                Action::Signal {
                    pid: 10,
                    signal: libc::SIGKILL,
                },
                Action::SetTimer(NOW + Duration::from_secs(2)),
            ],
        },
        Case {
            name: "a stopped service stays down even with restart=always",
            policy: policy(Simple, Always),
            state: State::Stopping {
                pid: 10,
                killed: false,
                restart: false,
            },
            event: Event::Exited {
                pid: 10,
                success: false,
                status: "killed by SIGTERM".into(),
            },
            want_state: State::Exited {
                status: Some("killed by SIGTERM".into()),
            },
            want_actions: vec![Action::ClearTimer],
        },
        Case {
            name: "STOPPING=1: stopping by itself, under the stop-timeout",
            policy: policy(Notify, OnFailure),
            state: State::Ready { pid: 10 },
            event: Event::StoppingNotified,
            want_state: State::Deactivating { pid: 10 },
            want_actions: vec![Action::SetTimer(NOW + Duration::from_secs(2))],
        },
        Case {
            name: "after STOPPING=1 a clean exit follows the restart policy (on-failure: down)",
            policy: policy(Notify, OnFailure),
            state: State::Deactivating { pid: 10 },
            event: exited(10, true),
            want_state: State::Exited {
                status: Some("exit status 0".into()),
            },
            want_actions: vec![Action::ClearTimer],
        },
        Case {
            name: "after STOPPING=1 restart=always still restarts",
            policy: policy(Notify, Always),
            state: State::Deactivating { pid: 10 },
            event: exited(10, true),
            want_state: State::Backoff,
            want_actions: vec![Action::ClearTimer, Action::SetTimer(NOW + 100 * MS)],
        },
        Case {
            name: "after STOPPING=1 a service that does not exit is killed",
            policy: policy(Notify, OnFailure),
            state: State::Deactivating { pid: 10 },
            event: Event::Timer,
            want_state: State::Stopping {
                pid: 10,
                killed: true,
                restart: true,
            },
            want_actions: vec![
                Action::Signal {
                    pid: 10,
                    signal: libc::SIGKILL,
                },
                Action::SetTimer(NOW + Duration::from_secs(2)),
            ],
        },
        Case {
            name: "a stop after STOPPING=1 sends the stop signal and keeps it down",
            policy: policy(Notify, Always),
            state: State::Deactivating { pid: 10 },
            event: Event::Stop,
            want_state: State::Stopping {
                pid: 10,
                killed: false,
                restart: false,
            },
            want_actions: vec![
                Action::Signal {
                    pid: 10,
                    signal: libc::SIGTERM,
                },
                Action::SetTimer(NOW + Duration::from_secs(2)),
            ],
        },
        Case {
            name: "STOPPING=1 before READY=1 is ignored",
            policy: policy(Notify, Always),
            state: State::Starting { pid: 10 },
            event: Event::StoppingNotified,
            want_state: State::Starting { pid: 10 },
            want_actions: vec![],
        },
        Case {
            name: "a service that dies while reloading is restarted, not left reloading",
            policy: policy(Notify, OnFailure),
            state: State::Reloading { pid: 10 },
            event: exited(10, false),
            want_state: State::Backoff,
            want_actions: vec![Action::ClearTimer, Action::SetTimer(NOW + 100 * MS)],
        },
        Case {
            name: "stop during backoff cancels the restart",
            policy: policy(Simple, Always),
            state: State::Backoff,
            event: Event::Stop,
            want_state: State::Exited { status: None },
            want_actions: vec![Action::ClearTimer],
        },
        Case {
            name: "a failed requirement fails a waiting unit, naming it",
            policy: policy(Simple, Never),
            state: State::Inactive,
            event: Event::DependencyFailed {
                dependency: "etcd".into(),
            },
            want_state: State::Failed {
                reason: "required unit etcd failed".into(),
            },
            want_actions: vec![Action::ClearTimer],
        },
        Case {
            name: "reload of a notify service waits for READY=1",
            policy: policy(Notify, Always),
            state: State::Ready { pid: 10 },
            event: Event::Reload,
            want_state: State::Reloading { pid: 10 },
            want_actions: vec![
                Action::Signal {
                    pid: 10,
                    signal: libc::SIGHUP,
                },
                Action::SetTimer(NOW + Duration::from_secs(5)),
            ],
        },
        Case {
            name: "reload of a simple service only signals",
            policy: policy(Simple, Always),
            state: State::Ready { pid: 10 },
            event: Event::Reload,
            want_state: State::Ready { pid: 10 },
            want_actions: vec![Action::Signal {
                pid: 10,
                signal: libc::SIGHUP,
            }],
        },
        Case {
            name: "READY=1 ends a reload",
            policy: policy(Notify, Always),
            state: State::Reloading { pid: 10 },
            event: Event::Ready,
            want_state: State::Ready { pid: 10 },
            want_actions: vec![Action::ClearTimer],
        },
        Case {
            name: "a failed health check kills for a restart",
            policy: policy(Simple, Never),
            state: State::Ready { pid: 10 },
            event: Event::Kill {
                signal: libc::SIGTERM,
                reason: "health check failed 3 times".into(),
            },
            want_state: State::Stopping {
                pid: 10,
                killed: false,
                restart: true,
            },
            want_actions: vec![
                Action::Signal {
                    pid: 10,
                    signal: libc::SIGTERM,
                },
                Action::SetTimer(NOW + Duration::from_secs(2)),
            ],
        },
        Case {
            name: "killed for a check, it restarts even with restart=never",
            policy: policy(Simple, Never),
            state: State::Stopping {
                pid: 10,
                killed: false,
                restart: true,
            },
            event: Event::Exited {
                pid: 10,
                success: false,
                status: "killed by SIGABRT".into(),
            },
            want_state: State::Backoff,
            want_actions: vec![Action::ClearTimer, Action::SetTimer(NOW + 100 * MS)],
        },
        Case {
            name: "a stop during a check-kill cancels the restart",
            policy: policy(Simple, Always),
            state: State::Stopping {
                pid: 10,
                killed: false,
                restart: true,
            },
            event: Event::Stop,
            want_state: State::Stopping {
                pid: 10,
                killed: false,
                restart: false,
            },
            want_actions: vec![],
        },
        Case {
            name: "a running unit ignores a stray start",
            policy: policy(Simple, Never),
            state: State::Ready { pid: 10 },
            event: Event::Start { manual: true },
            want_state: State::Ready { pid: 10 },
            want_actions: vec![],
        },
    ];
    for c in cases {
        let mut s = Service::new(&c.policy);
        s.state = c.state.clone();
        let actions: Vec<Action> = s
            .handle(&c.policy, c.event.clone(), NOW)
            .into_iter()
            .filter(|a| !is_log(a))
            .collect();
        assert_eq!(s.state, c.want_state, "{}: state", c.name);
        assert_eq!(actions, c.want_actions, "{}: actions", c.name);
    }
}

/// Crashes back to back: the delay doubles up to the cap, and the start
/// limit ends in a crash loop that only a manual start leaves.
#[test]
fn backoff_doubles_then_crash_loop_then_manual_start() {
    let mut p = policy(Kind::Simple, RestartPolicy::Always);
    p.start_burst = 5;
    let mut s = Service::new(&p);
    let mut now = NOW;
    let mut delays = Vec::new();
    s.handle(&p, Event::Start { manual: false }, now);
    for pid in 1..=5 {
        s.handle(&p, Event::Spawned { pid }, now);
        let acts = s.handle(&p, exited(pid, false), now);
        match acts.iter().find_map(|a| match a {
            Action::SetTimer(t) => Some(*t),
            _ => None,
        }) {
            Some(t) => {
                delays.push(t - now);
                now = t;
                assert_eq!(s.handle(&p, Event::Timer, now), vec![Action::Spawn]);
            }
            None => break,
        }
    }
    assert_eq!(delays, vec![100 * MS, 200 * MS, 400 * MS, 800 * MS]);
    assert!(
        matches!(&s.state, State::CrashLoop { reason } if reason.contains("start limit reached (5 starts within 10s)")),
        "{:?}",
        s.state
    );
    assert!(s.state.settled() && s.state.is_failed());
    assert_eq!(
        s.handle(&p, Event::Start { manual: true }, now),
        vec![Action::ClearTimer, Action::Spawn]
    );
    assert!(s.starts.len() == 1, "a manual start resets the start limit");
    assert_eq!(s.next_delay, 100 * MS, "and the backoff");
}

/// A service that stayed up longer than the delay cap restarts quickly again.
#[test]
fn backoff_resets_after_staying_up() {
    let p = policy(Kind::Simple, RestartPolicy::Always);
    let mut s = Service::new(&p);
    s.next_delay = 800 * MS;
    s.handle(&p, Event::Spawned { pid: 1 }, NOW);
    let later = NOW + Duration::from_secs(60);
    let acts = s.handle(&p, exited(1, false), later);
    assert!(
        acts.contains(&Action::SetTimer(later + 100 * MS)),
        "{acts:?}"
    );
}

#[test]
fn state_predicates() {
    assert!(State::Ready { pid: 1 }.satisfies());
    assert!(State::Exited { status: None }.satisfies());
    assert!(!State::Starting { pid: 1 }.satisfies());
    assert!(State::Failed {
        reason: String::new()
    }
    .settled());
    assert!(!State::Backoff.settled());
    assert_eq!(
        State::Stopping {
            pid: 3,
            killed: true,
            restart: false,
        }
        .pid(),
        Some(3)
    );
    assert_eq!(
        State::CrashLoop {
            reason: String::new()
        }
        .name(),
        "crash-loop"
    );
    assert_eq!(fmt_duration(Duration::from_millis(1500)), "1s500ms");
    assert_eq!(fmt_duration(Duration::from_secs(120)), "2m");
    assert_eq!(fmt_duration(Duration::from_millis(300)), "300ms");
}
