//! The table of unit files and their exact diagnostics, positions
//! included: what an operator sees from `keel check`. One file per case, as
//! `/u/NAME.toml`; cases checked on their own (cross-unit checks are in
//! `load.rs`).
#![allow(clippy::unwrap_used)] // a test crate: a panic is a failure

use std::path::Path;

use keel_units::check_unit;

/// (name, file text, valid?, every diagnostic as displayed, one per line).
const CASES: &[(&str, &str, bool, &str)] = &[
    ("minimal", r#"exec = ["/bin/true"]"#, true, r#""#),
    (
        "etcd",
        r#"description = "etcd key-value store"
exec = ["/usr/bin/etcd", "--data-dir=/var/lib/etcd"]
type = "notify"
requires = ["network"]
restart = "always"
restart-delay = "100ms"
restart-delay-max = "30s"
start-limit = { burst = 5, interval = "10s" }
ready-timeout = "60s"
stop-signal = "SIGTERM"
stop-timeout = "10s"
kill-mode = "cgroup"
user = "etcd"
environment = { ETCD_NAME = "node1" }
ready = { tcp = "127.0.0.1:2379" }
health = { http = "http://127.0.0.1:2379/health", interval = "10s", failures = 3 }
limits = { memory-max = "512M", cpu-weight = 100, pids-max = 1024, nofile = 65536 }"#,
        true,
        r#""#,
    ),
    (
        "sections",
        r#"exec = ["/bin/sleep", "1"]
[limits]
memory-max = "1G"
[start-limit]
burst = 0
"#,
        true,
        r#""#,
    ),
    (
        "oneshot",
        r#"exec = ["/bin/mkdir", "-p", "/run/x"]
type = "oneshot"
restart = "on-failure""#,
        true,
        r#""#,
    ),
    (
        "unknown-typo",
        r#"exec = ["/bin/true"]
restart_delay = "1s""#,
        false,
        r#"/u/unknown-typo.toml:2:1: error: unknown key `restart_delay`
  = hint: did you mean `restart-delay`?"#,
    ),
    (
        "unknown-systemd",
        r#"ExecStart = "/bin/true"
exec = ["/bin/true"]"#,
        false,
        r#"/u/unknown-systemd.toml:1:1: error: unknown key `ExecStart`
  = hint: did you mean `exec`?"#,
    ),
    (
        "unknown-plain",
        r#"exec = ["/bin/true"]
flavour = "vanilla""#,
        false,
        r#"/u/unknown-plain.toml:2:1: error: unknown key `flavour`"#,
    ),
    (
        "unknown-nested-top",
        r#"exec = ["/bin/true"]
memory-max = "1G""#,
        false,
        r#"/u/unknown-nested-top.toml:2:1: error: unknown key `memory-max`
  = hint: did you mean `limits.memory-max`?"#,
    ),
    (
        "unknown-nested",
        r#"exec = ["/bin/true"]
limits = { memroy-max = "1G" }"#,
        false,
        r#"/u/unknown-nested.toml:2:12: error: unknown key `limits.memroy-max`
  = hint: did you mean `limits.memory-max`?"#,
    ),
    (
        "exec-string",
        r#"exec = "/usr/bin/etcd --data-dir=/var/lib/etcd""#,
        false,
        r#"/u/exec-string.toml:1:8: error: `exec` must be an array of strings, not a string
  = hint: write exec = ["/usr/bin/etcd", "--data-dir=/var/lib/etcd"]"#,
    ),
    (
        "exec-empty",
        r#"exec = []"#,
        false,
        r#"/u/exec-empty.toml:1:8: error: `exec` is empty
  = hint: name the program to run, by its absolute path"#,
    ),
    (
        "exec-relative",
        r#"exec = ["etcd", "--x"]"#,
        false,
        r#"/u/exec-relative.toml:1:9: error: `exec` must start with an absolute path, not "etcd"
  = hint: keel does not search PATH: write the full path, e.g. "/usr/bin/etcd""#,
    ),
    (
        "exec-int",
        r#"exec = ["/bin/sleep", 5]"#,
        false,
        r#"/u/exec-int.toml:1:23: error: `exec` must hold strings, not an integer
  = hint: quote it: "5""#,
    ),
    (
        "exec-missing",
        r#"description = "nothing to run""#,
        false,
        r#"/u/exec-missing.toml:1:1: error: missing required key `exec`
  = hint: add exec = ["/path/to/program", "argument", ...]"#,
    ),
    (
        "type-bad",
        r#"exec = ["/bin/true"]
type = "forking""#,
        false,
        r#"/u/type-bad.toml:2:8: error: invalid value "forking" for `type`
  = hint: expected one of "simple", "notify", "oneshot""#,
    ),
    (
        "type-typo",
        r#"exec = ["/bin/true"]
type = "notfy""#,
        false,
        r#"/u/type-typo.toml:2:8: error: invalid value "notfy" for `type`
  = hint: did you mean "notify"?"#,
    ),
    (
        "restart-bad",
        r#"exec = ["/bin/true"]
restart = "sometimes""#,
        false,
        r#"/u/restart-bad.toml:2:11: error: invalid value "sometimes" for `restart`
  = hint: expected one of "never", "on-failure", "always""#,
    ),
    (
        "duration-int",
        r#"exec = ["/bin/true"]
stop-timeout = 10"#,
        false,
        r#"/u/duration-int.toml:2:16: error: `stop-timeout` must be a duration string, not an integer
  = hint: a number alone has no unit: write "10s" or "10ms""#,
    ),
    (
        "duration-nounit",
        r#"exec = ["/bin/true"]
stop-timeout = "10""#,
        false,
        r#"/u/duration-nounit.toml:2:16: error: invalid duration "10" for `stop-timeout`: missing unit after `10`
  = hint: write a number and a unit (us, ms, s, m, h, d), e.g. "1m30s""#,
    ),
    (
        "duration-unit",
        r#"exec = ["/bin/true"]
restart-delay = "5 parsecs""#,
        false,
        r#"/u/duration-unit.toml:2:17: error: invalid duration "5 parsecs" for `restart-delay`: unknown unit `parsecs`
  = hint: write a number and a unit (us, ms, s, m, h, d), e.g. "1m30s""#,
    ),
    (
        "duration-fraction",
        r#"exec = ["/bin/true"]
ready-timeout = "1.5s""#,
        false,
        r#"/u/duration-fraction.toml:2:17: error: invalid duration "1.5s" for `ready-timeout`: fractions are not supported
  = hint: write a number and a unit (us, ms, s, m, h, d), e.g. "1m30s""#,
    ),
    (
        "size-suffix",
        r#"exec = ["/bin/true"]
limits = { memory-max = "12Q" }"#,
        false,
        r#"/u/size-suffix.toml:2:25: error: invalid size "12Q" for `limits.memory-max`: unknown size suffix `Q`
  = hint: write bytes, or a number with K, M, G or T (powers of 1024), or "infinity""#,
    ),
    (
        "size-negative",
        r#"exec = ["/bin/true"]
limits.memory-max = -1"#,
        false,
        r#"/u/size-negative.toml:2:21: error: `limits.memory-max` cannot be negative"#,
    ),
    (
        "cpu-weight",
        r#"exec = ["/bin/true"]
limits = { cpu-weight = 0 }"#,
        false,
        r#"/u/cpu-weight.toml:2:25: error: `limits.cpu-weight` must be between 1 and 10000, not 0"#,
    ),
    (
        "pids-max",
        r#"exec = ["/bin/true"]
limits = { pids-max = "lots" }"#,
        false,
        r#"/u/pids-max.toml:2:23: error: `limits.pids-max` must be an integer, not a string
  = hint: write a number, or "infinity""#,
    ),
    (
        "signal-typo",
        r#"exec = ["/bin/true"]
stop-signal = "SIGTREM""#,
        false,
        r#"/u/signal-typo.toml:2:15: error: invalid signal "SIGTREM" for `stop-signal`: unknown signal
  = hint: did you mean "SIGTERM"?"#,
    ),
    (
        "signal-number",
        r#"exec = ["/bin/true"]
stop-signal = 99"#,
        false,
        r#"/u/signal-number.toml:2:15: error: `stop-signal` is not a signal number (1 to 64)"#,
    ),
    (
        "user-bad",
        r#"exec = ["/bin/true"]
user = "a:b""#,
        false,
        r#"/u/user-bad.toml:2:8: error: invalid name "a:b" for `user`: use letters, digits, `_`, `-` and `.` (at most 32)"#,
    ),
    (
        "user-negative",
        r#"exec = ["/bin/true"]
user = -1"#,
        false,
        r#"/u/user-negative.toml:2:8: error: `user` is not a valid id: -1"#,
    ),
    (
        "workdir",
        r#"exec = ["/bin/true"]
working-directory = "var/lib""#,
        false,
        r#"/u/workdir.toml:2:21: error: `working-directory` must be an absolute path, not "var/lib""#,
    ),
    (
        "env-name",
        r#"exec = ["/bin/true"]
environment = { 1FOO = "x", OK = "y" }"#,
        false,
        r#"/u/env-name.toml:2:17: error: invalid environment variable name `1FOO`
  = hint: names use letters, digits and _, and do not start with a digit"#,
    ),
    (
        "env-int",
        r#"exec = ["/bin/true"]
[environment]
PORT = 8080"#,
        false,
        r#"/u/env-int.toml:3:8: error: `environment.PORT` must be a string, not an integer
  = hint: quote it: "8080""#,
    ),
    (
        "umask-bad",
        r#"exec = ["/bin/true"]
umask = "0800""#,
        false,
        r#"/u/umask-bad.toml:2:9: error: invalid mode "0800" for `umask`: not an octal mode of at most 0777
  = hint: write the mode in octal, e.g. "0022""#,
    ),
    (
        "ready-two",
        r#"exec = ["/bin/true"]
ready = { tcp = "127.0.0.1:80", http = "http://127.0.0.1/" }"#,
        false,
        r#"/u/ready-two.toml:2:33: error: `ready` takes one probe, but has both `tcp` and `http`
  = hint: keep one of them"#,
    ),
    (
        "ready-empty",
        r#"exec = ["/bin/true"]
ready = {}"#,
        false,
        r#"/u/ready-empty.toml:2:9: error: `ready` needs a probe: `tcp`, `exec`, `path`, `http` or `type = "notify"`"#,
    ),
    (
        "ready-string",
        r#"exec = ["/bin/true"]
ready = "notify""#,
        false,
        r#"/u/ready-string.toml:2:9: error: `ready` must be a table, not a string
  = hint: write ready = { type = "notify" }"#,
    ),
    (
        "ready-host",
        r#"exec = ["/bin/true"]
ready = { tcp = "example.com:80" }"#,
        false,
        r#"/u/ready-host.toml:2:17: error: invalid address "example.com:80" for `ready.tcp`: the host must be an IP address or `localhost`
  = hint: write IP:PORT, e.g. "127.0.0.1:2379""#,
    ),
    (
        "ready-https",
        r#"exec = ["/bin/true"]
ready = { http = "https://127.0.0.1/" }"#,
        false,
        r#"/u/ready-https.toml:2:18: error: invalid URL "https://127.0.0.1/" for `ready.http`: only http:// URLs are supported
  = hint: probes speak plain HTTP only"#,
    ),
    (
        "ready-type",
        r#"exec = ["/bin/true"]
ready = { type = "sdnotify" }"#,
        false,
        r#"/u/ready-type.toml:2:18: error: invalid value "sdnotify" for `ready.type`
  = hint: did you mean "notify"?"#,
    ),
    (
        "ready-notify",
        r#"exec = ["/bin/true"]
ready = { type = "notify" }"#,
        true,
        r#""#,
    ),
    (
        "health-timeout",
        r#"exec = ["/bin/true"]
health = { tcp = "127.0.0.1:80", interval = "1s", timeout = "2s" }"#,
        false,
        r#"/u/health-timeout.toml:2:61: error: `health.timeout` (2s) is longer than `health.interval` (1s)"#,
    ),
    (
        "health-noprobe",
        r#"exec = ["/bin/true"]
health = { interval = "1s" }"#,
        false,
        r#"/u/health-noprobe.toml:2:10: error: `health` needs a probe: `tcp`, `exec`, `path` or `http`"#,
    ),
    (
        "health-type",
        r#"exec = ["/bin/true"]
health = { type = "notify", tcp = "127.0.0.1:1" }"#,
        false,
        r#"/u/health-type.toml:2:12: error: unknown key `health.type`
  = hint: sd_notify liveness is the top-level `watchdog` key"#,
    ),
    (
        "oneshot-always",
        r#"exec = ["/bin/true"]
type = "oneshot"
restart = "always""#,
        false,
        r#"/u/oneshot-always.toml:3:11: error: `restart = "always"` contradicts `type = "oneshot"`
  = hint: a oneshot unit runs to completion; use restart = "on-failure" to retry it"#,
    ),
    (
        "oneshot-ready",
        r#"exec = ["/bin/true"]
type = "oneshot"
ready = { path = "/run/x" }"#,
        false,
        r#"/u/oneshot-ready.toml:3:9: error: a oneshot unit cannot have a `ready` probe
  = hint: a oneshot unit is ready when it exits with status 0"#,
    ),
    (
        "oneshot-health",
        r#"exec = ["/bin/true"]
type = "oneshot"
health = { path = "/run/x" }"#,
        false,
        r#"/u/oneshot-health.toml:3:10: error: a oneshot unit cannot have a `health` check
  = hint: health checks watch a running service; a oneshot unit exits"#,
    ),
    (
        "watchdog-simple",
        r#"exec = ["/bin/true"]
watchdog = "30s""#,
        false,
        r#"/u/watchdog-simple.toml:2:12: error: `watchdog` needs `type = "notify"`
  = hint: the service pets the watchdog by sending WATCHDOG=1 over sd_notify"#,
    ),
    (
        "notify-contradiction",
        r#"exec = ["/bin/true"]
type = "simple"
ready = { type = "notify" }"#,
        false,
        r#"/u/notify-contradiction.toml:3:18: error: `ready = { type = "notify" }` contradicts `type = "simple"`
  = hint: keep one of them"#,
    ),
    (
        "delay-max",
        r#"exec = ["/bin/true"]
restart-delay = "1m""#,
        false,
        r#"/u/delay-max.toml:2:17: error: `restart-delay` (1m) is longer than `restart-delay-max` (30s)"#,
    ),
    (
        "ready-timeout-noop",
        r#"exec = ["/bin/true"]
ready-timeout = "5s""#,
        true,
        r#"/u/ready-timeout-noop.toml:2:17: warning: `ready-timeout` has no effect: a simple unit without a `ready` probe is ready once spawned"#,
    ),
    (
        "dep-toml",
        r#"exec = ["/bin/true"]
requires = ["db.toml", "a b"]"#,
        false,
        r#"/u/dep-toml.toml:2:13: error: invalid unit name "db.toml" in `requires`
  = hint: write the unit's name without .toml: "db"
/u/dep-toml.toml:2:24: error: invalid unit name "a b" in `requires`
  = hint: unit names use letters, digits and - _ . @"#,
    ),
    (
        "dep-self",
        r#"exec = ["/bin/true"]
after = ["dep-self"]"#,
        false,
        r#"/u/dep-self.toml:2:10: error: `after` names the unit itself"#,
    ),
    (
        "dep-dup",
        r#"exec = ["/bin/true"]
wants = ["a", "b", "a"]"#,
        true,
        r#"/u/dep-dup.toml:2:20: warning: `a` is listed twice in `wants`
  = hint: first listed at 2:10"#,
    ),
    (
        "bool-string",
        r#"exec = ["/bin/true"]
enabled = "false""#,
        false,
        r#"/u/bool-string.toml:2:11: error: `enabled` must be a boolean, not a string
  = hint: write enabled = false, without quotes"#,
    ),
    (
        "burst-string",
        r#"exec = ["/bin/true"]
start-limit = { burst = "5" }"#,
        false,
        r#"/u/burst-string.toml:2:25: error: `start-limit.burst` must be an integer, not a string
  = hint: write burst = 5, without quotes"#,
    ),
    (
        "syntax",
        r#"exec = ["/bin/true"]
description = 
"#,
        false,
        r#"/u/syntax.toml:2:15: error: invalid TOML: invalid string expected `"`, `'`"#,
    ),
    (
        "duplicate-key",
        r#"exec = ["/bin/true"]
exec = ["/bin/false"]"#,
        false,
        r#"/u/duplicate-key.toml:2:1: error: invalid TOML: duplicate key `exec` in document root"#,
    ),
    (
        "datetime",
        r#"exec = ["/bin/true"]
description = 1979-05-27T07:32:00Z"#,
        false,
        r#"/u/datetime.toml:2:15: error: `description` must be a string, not a date-time"#,
    ),
    (
        "many",
        r#"exec = "true"
type = "daemon"
stop-timeout = "forever"
bogus = 1
limits = { nofile = 0 }"#,
        false,
        r#"/u/many.toml:1:8: error: `exec` must be an array of strings, not a string
  = hint: write exec = ["true"]
/u/many.toml:2:8: error: invalid value "daemon" for `type`
  = hint: expected one of "simple", "notify", "oneshot"
/u/many.toml:3:16: error: invalid duration "forever" for `stop-timeout`: expected a number at `forever`
  = hint: write a number and a unit (us, ms, s, m, h, d), e.g. "1m30s"
/u/many.toml:4:1: error: unknown key `bogus`
/u/many.toml:5:21: error: `limits.nofile` must be at least 1, not 0"#,
    ),
    (
        "bool-int",
        r#"exec = ["/bin/true"]
boot-critical = 1"#,
        false,
        r#"/u/bool-int.toml:2:17: error: `boot-critical` must be a boolean (true or false), not an integer"#,
    ),
    (
        "description-int",
        r#"exec = ["/bin/true"]
description = 5"#,
        false,
        r#"/u/description-int.toml:2:15: error: `description` must be a string, not an integer
  = hint: quote it: "5""#,
    ),
    (
        "groups-string",
        r#"exec = ["/bin/true"]
supplementary-groups = "wheel""#,
        false,
        r#"/u/groups-string.toml:2:24: error: `supplementary-groups` must be an array of names or ids, not a string"#,
    ),
    (
        "start-limit-int",
        r#"exec = ["/bin/true"]
start-limit = 5"#,
        false,
        r#"/u/start-limit-int.toml:2:15: error: `start-limit` must be a table, not an integer"#,
    ),
    (
        "unicode",
        r#"description = "café ☕"
exec = ["/bin/true"]
restart = "allways""#,
        false,
        r#"/u/unicode.toml:3:11: error: invalid value "allways" for `restart`
  = hint: did you mean "always"?"#,
    ),
];

#[test]
fn every_case_gives_exactly_its_diagnostics() {
    assert!(CASES.len() >= 40);
    let mut failures = Vec::new();
    for &(name, text, valid, expected) in CASES {
        let file = format!("/u/{name}.toml");
        let (unit, diags) = check_unit(name, Path::new(&file), text);
        let shown: Vec<String> = diags.iter().map(ToString::to_string).collect();
        let shown = shown.join("\n");
        if shown != expected || unit.is_some() != valid {
            failures.push(format!(
                "case {name}: valid={} (want {valid})\n--- got:\n{shown}\n--- want:\n{expected}",
                unit.is_some()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_error_is_an_error_and_every_unit_is_named() {
    for &(name, text, _, _) in CASES {
        let (unit, diags) = check_unit(name, Path::new("/u/x.toml"), text);
        for d in &diags {
            assert_eq!(d.unit.as_deref(), Some(name));
            assert!(d.line >= 1 && d.col >= 1, "{d}");
        }
        assert_eq!(unit.is_none(), diags.iter().any(|d| d.is_error()), "{name}");
    }
}
