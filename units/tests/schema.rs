//! Valid units and the values they yield: types, defaults, the DESIGN.md
//! example key by key.
#![allow(clippy::unwrap_used)] // a test crate: a panic is a failure

use std::path::Path;
use std::time::Duration;

use keel_units::{
    parse_unit, HttpUrl, Ident, KillMode, Limits, Probe, Restart, ServiceType, Signal, StartLimit,
    Unit,
};

fn parse(text: &str) -> Unit {
    match parse_unit("u", Path::new("/u/u.toml"), text) {
        Ok(u) => u,
        Err(diags) => panic!(
            "{}",
            diags
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

#[test]
fn defaults() {
    let u = parse(r#"exec = ["/bin/true"]"#);
    let mut want = Unit::new("u", vec!["/bin/true".into()]);
    want.source = "/u/u.toml".into();
    assert_eq!(u, want);
    assert_eq!(u.kind, ServiceType::Simple);
    assert_eq!(u.restart, Restart::OnFailure);
    assert!(u.boot_critical && u.enabled);
    assert_eq!(u.restart_delay, Duration::from_millis(100));
    assert_eq!(u.restart_delay_max, Duration::from_secs(30));
    assert_eq!(
        u.start_limit,
        StartLimit {
            burst: 5,
            interval: Duration::from_secs(10)
        }
    );
    assert_eq!(u.stop_signal, Signal::TERM);
    assert_eq!(u.stop_timeout, Duration::from_secs(10));
    assert_eq!(u.kill_mode, KillMode::Cgroup);
    assert_eq!(u.limits, Limits::default());
}

#[test]
fn the_design_example() {
    let u = parse(
        r#"
description = "etcd key-value store"
exec = ["/usr/bin/etcd", "--data-dir=/var/lib/etcd"]
type = "notify"
requires = ["network"]
wants = []
after = []
boot-critical = true
restart = "always"
restart-delay = "100ms"
restart-delay-max = "30s"
start-limit = { burst = 5, interval = "10s" }
ready-timeout = "60s"
stop-signal = "SIGTERM"
stop-timeout = "10s"
kill-mode = "process"
user = "etcd"
group = 0
supplementary-groups = ["disk", 6]
working-directory = "/var/lib/etcd"
umask = "0027"
environment = { ETCD_NAME = "node1" }
ready = { tcp = "127.0.0.1:2379" }
health = { http = "http://127.0.0.1:2379/health", interval = "10s", failures = 3 }
limits = { memory-max = "512M", cpu-weight = 100, pids-max = 1024, nofile = 65536 }
watchdog = "1m30s"
"#,
    );
    assert_eq!(u.description.as_deref(), Some("etcd key-value store"));
    assert_eq!(u.exec, ["/usr/bin/etcd", "--data-dir=/var/lib/etcd"]);
    assert_eq!(u.kind, ServiceType::Notify);
    assert_eq!(u.requires, ["network"]);
    assert_eq!(
        (u.dep_locs.requires[0].line, u.dep_locs.requires[0].col),
        (5, 13)
    );
    assert_eq!(u.restart, Restart::Always);
    assert_eq!(u.ready_timeout, Some(Duration::from_secs(60)));
    assert_eq!(u.kill_mode, KillMode::Process);
    assert_eq!(u.user, Some(Ident::Name("etcd".into())));
    assert_eq!(u.group, Some(Ident::Id(0)));
    assert_eq!(
        u.supplementary_groups,
        [Ident::Name("disk".into()), Ident::Id(6)]
    );
    assert_eq!(u.umask, Some(0o027));
    assert_eq!(
        u.environment.get("ETCD_NAME").map(String::as_str),
        Some("node1")
    );
    assert_eq!(u.ready, Some(Probe::Tcp("127.0.0.1:2379".parse().unwrap())));
    let health = u.health.unwrap();
    assert_eq!(
        health.probe,
        Probe::Http(HttpUrl::parse("http://127.0.0.1:2379/health").unwrap())
    );
    assert_eq!(
        (health.interval, health.failures),
        (Duration::from_secs(10), 3)
    );
    assert_eq!(health.timeout, Duration::from_secs(5));
    assert_eq!(
        u.limits,
        Limits {
            memory_max: Some(512 << 20),
            cpu_weight: Some(100),
            pids_max: Some(1024),
            nofile: Some(65536)
        }
    );
    assert_eq!(u.watchdog, Some(Duration::from_secs(90)));
}

#[test]
fn oneshot_defaults_to_never_restart() {
    let u = parse("exec = [\"/bin/true\"]\ntype = \"oneshot\"");
    assert_eq!((u.kind, u.restart), (ServiceType::Oneshot, Restart::Never));
}

#[test]
fn ready_notify_makes_a_notify_unit() {
    let u = parse("exec = [\"/bin/true\"]\nready = { type = \"notify\" }");
    assert_eq!(u.kind, ServiceType::Notify);
    assert_eq!(u.ready, None);
}

#[test]
fn infinities_and_sections() {
    let u = parse(
        "exec = [\"/bin/true\"]\nready-timeout = \"infinity\"\n[limits]\nmemory-max = \"max\"\npids-max = \"infinity\"\nnofile = \"infinity\"\n",
    );
    assert_eq!(u.ready_timeout, None);
    assert_eq!(u.limits.memory_max, None);
    assert_eq!(u.limits.pids_max, None);
    assert_eq!(u.limits.nofile, Some(u64::MAX));
}

#[test]
fn health_timeout_defaults_to_a_short_interval() {
    let u = parse("exec = [\"/bin/true\"]\nhealth = { path = \"/run/ok\", interval = \"2s\" }");
    assert_eq!(u.health.map(|h| h.timeout), Some(Duration::from_secs(2)));
}

#[test]
fn signals_by_number_and_stop_signal_kill() {
    let u = parse("exec = [\"/bin/true\"]\nstop-signal = 2");
    assert_eq!(u.stop_signal, Signal::INT);
    let u = parse("exec = [\"/bin/true\"]\nstop-signal = \"KILL\"");
    assert_eq!(
        (u.stop_signal.number(), u.stop_signal.name()),
        (9, "SIGKILL".to_owned())
    );
}

#[test]
fn process_hardening_keys() {
    let u = keel_units::parse_unit(
        "h",
        std::path::Path::new("/u/h.toml"),
        "exec = [\"/bin/true\"]\noom-score-adj = -500\nno-new-privileges = true\ncapabilities = [\"CAP_NET_BIND_SERVICE\", \"chown\", \"net_bind_service\"]\n",
    )
    .unwrap();
    assert_eq!(u.oom_score_adj, Some(-500));
    assert!(u.no_new_privileges);
    let caps = u.capabilities.unwrap();
    assert_eq!(caps.len(), 2, "sorted and deduplicated");
    assert_eq!(caps[0].name(), "CAP_CHOWN");
    assert_eq!(caps[1].name(), "CAP_NET_BIND_SERVICE");
    let errs = keel_units::parse_unit(
        "h",
        std::path::Path::new("/u/h.toml"),
        "exec = [\"/bin/true\"]\noom-score-adj = 2000\ncapabilities = [\"CAP_FLY\"]\n",
    )
    .unwrap_err();
    let text: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
    assert!(
        text.iter().any(|t| t.starts_with("/u/h.toml:2:17: error:")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("/u/h.toml:3:17: error: unknown capability `CAP_FLY`")),
        "{text:?}"
    );
}
