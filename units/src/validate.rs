//! From a positioned TOML table to a [`Unit`]: the schema (every key, its
//! type and its default) and the contradictions between keys. Every problem
//! is reported, each where it is written; a unit with an error yields no
//! [`Unit`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::diag::{did_you_mean, Diagnostic, Loc};
use crate::fields::{table, Ctx};
use crate::raw::{Node, Table, Value};
use crate::unit::{
    Capability, Health, KillMode, Limits, Probe, Restart, ServiceType, StartLimit, Unit,
};
use crate::values::{self, HttpUrl, Ident};

/// The keys of a unit file, in the order the documentation lists them.
pub(crate) const TOP_KEYS: &[&str] = &[
    "description",
    "exec",
    "type",
    "requires",
    "wants",
    "after",
    "before",
    "boot-critical",
    "enabled",
    "restart",
    "restart-delay",
    "restart-delay-max",
    "start-limit",
    "ready-timeout",
    "stop-signal",
    "stop-timeout",
    "kill-mode",
    "user",
    "group",
    "supplementary-groups",
    "working-directory",
    "environment",
    "umask",
    "ready",
    "health",
    "limits",
    "watchdog",
    "oom-score-adj",
    "no-new-privileges",
    "capabilities",
];
const START_LIMIT_KEYS: &[&str] = &["burst", "interval"];
const LIMIT_KEYS: &[&str] = &["memory-max", "cpu-weight", "pids-max", "nofile"];
const PROBE_KEYS: &[&str] = &["tcp", "exec", "path", "http"];
const READY_KEYS: &[&str] = &["tcp", "exec", "path", "http", "type"];
const HEALTH_KEYS: &[&str] = &[
    "tcp", "exec", "path", "http", "interval", "failures", "timeout",
];

/// Tables that a drop-in merges key by key instead of replacing.
pub(crate) const MERGED_TABLES: &[&str] = &["environment", "limits", "start-limit"];

/// systemd's names (and a few other habits) for our keys.
const ALIASES: &[(&str, &str)] = &[
    ("ExecStart", "exec"),
    ("Description", "description"),
    ("Type", "type"),
    ("Requires", "requires"),
    ("Wants", "wants"),
    ("After", "after"),
    ("Before", "before"),
    ("Restart", "restart"),
    ("RestartSec", "restart-delay"),
    ("TimeoutStartSec", "ready-timeout"),
    ("TimeoutStopSec", "stop-timeout"),
    ("KillSignal", "stop-signal"),
    ("KillMode", "kill-mode"),
    ("User", "user"),
    ("Group", "group"),
    ("SupplementaryGroups", "supplementary-groups"),
    ("WorkingDirectory", "working-directory"),
    ("Environment", "environment"),
    ("UMask", "umask"),
    ("WatchdogSec", "watchdog"),
    ("MemoryMax", "limits.memory-max"),
    ("CPUWeight", "limits.cpu-weight"),
    ("TasksMax", "limits.pids-max"),
    ("LimitNOFILE", "limits.nofile"),
    ("StartLimitBurst", "start-limit.burst"),
    ("StartLimitIntervalSec", "start-limit.interval"),
    ("command", "exec"),
    ("cmd", "exec"),
    ("env", "environment"),
    ("depends-on", "requires"),
];

/// A hint for an unknown key: a typo, systemd's name, or a key that lives
/// in a nested table.
pub(crate) fn guess_key(prefix: &str, key: &str, known: &[&str]) -> Option<String> {
    if prefix.is_empty() {
        if let Some((_, ours)) = ALIASES.iter().find(|(theirs, _)| *theirs == key) {
            return Some(format!("did you mean `{ours}`?"));
        }
    }
    if let Some(guess) = did_you_mean(key, known.iter().copied()) {
        return Some(format!("did you mean `{prefix}{guess}`?"));
    }
    if prefix.is_empty() {
        for (table, keys) in [("limits", LIMIT_KEYS), ("start-limit", START_LIMIT_KEYS)] {
            if let Some(guess) =
                did_you_mean(key, keys.iter().copied()).or(keys.iter().copied().find(|k| *k == key))
            {
                return Some(format!("did you mean `{table}.{guess}`?"));
            }
        }
    }
    if prefix == "health." && key == "type" {
        return Some("sd_notify liveness is the top-level `watchdog` key".to_owned());
    }
    if prefix == "ready." && key == "timeout" {
        return Some("did you mean the top-level `ready-timeout`?".to_owned());
    }
    None
}

/// Unit names: letters, digits, `-`, `_`, `.`, `@`; not starting with `.`
/// nor ending in `.toml` (a dependency names the unit, not its file).
pub fn valid_unit_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.ends_with(".toml")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
}

/// What `ready` asked for.
enum Ready {
    Notify(Loc),
    Probe(Probe, Loc),
}

/// Validates one (merged) unit table.
pub(crate) fn validate(
    name: &str,
    source: &Arc<Path>,
    t: &Table,
) -> (Option<Unit>, Vec<Diagnostic>) {
    let mut ctx = Ctx {
        unit: name,
        diags: Vec::new(),
    };
    let mut u = Unit::new(name, Vec::new());
    u.source = source.to_path_buf();
    ctx.unknown_keys("", t, TOP_KEYS);
    if t.get("exec").is_none() {
        let loc = Loc {
            file: source.clone(),
            line: 1,
            col: 1,
        };
        let hint = Some("add exec = [\"/path/to/program\", \"argument\", ...]".to_owned());
        ctx.error(&loc, "missing required key `exec`".to_owned(), hint);
    }
    let mut kind = None;
    let mut restart = None;
    let mut ready = None;
    for entry in &t.entries {
        let (key, node) = (entry.key.as_str(), &entry.node);
        match key {
            "description" => u.description = ctx.str(key, node).map(str::to_owned),
            "exec" => u.exec = ctx.argv(key, node).unwrap_or_default(),
            "type" => kind = ctx.choice(key, node, SERVICE_TYPES).map(|k| (k, &node.loc)),
            "requires" => (u.requires, u.dep_locs.requires) = deps(&mut ctx, key, node),
            "wants" => (u.wants, u.dep_locs.wants) = deps(&mut ctx, key, node),
            "after" => (u.after, u.dep_locs.after) = deps(&mut ctx, key, node),
            "before" => (u.before, u.dep_locs.before) = deps(&mut ctx, key, node),
            "boot-critical" => u.boot_critical = ctx.bool(key, node).unwrap_or(true),
            "enabled" => u.enabled = ctx.bool(key, node).unwrap_or(true),
            "restart" => restart = ctx.choice(key, node, RESTARTS).map(|r| (r, &node.loc)),
            "restart-delay" => set(&mut u.restart_delay, ctx.duration(key, node)),
            "restart-delay-max" => set(&mut u.restart_delay_max, ctx.duration(key, node)),
            "start-limit" => {
                if let Some(tab) = table(&mut ctx, key, entry, None) {
                    u.start_limit = start_limit(&mut ctx, tab);
                }
            }
            "ready-timeout" => u.ready_timeout = ctx.duration_or_infinity(key, node).flatten(),
            "stop-signal" => set(&mut u.stop_signal, ctx.signal(key, node)),
            "stop-timeout" => set(&mut u.stop_timeout, ctx.duration(key, node)),
            "kill-mode" => set(&mut u.kill_mode, ctx.choice(key, node, KILL_MODES)),
            "user" => u.user = ctx.ident(key, node),
            "group" => u.group = ctx.ident(key, node),
            "supplementary-groups" => u.supplementary_groups = idents(&mut ctx, key, node),
            "working-directory" => u.working_directory = ctx.absolute_path(key, node),
            "environment" => {
                if let Some(tab) = table(&mut ctx, key, entry, None) {
                    u.environment = environment(&mut ctx, tab);
                }
            }
            "umask" => u.umask = umask(&mut ctx, key, node),
            "ready" => {
                let hint = match &node.value {
                    Value::Str(s) if s == "notify" => "write ready = { type = \"notify\" }",
                    _ => "write e.g. ready = { tcp = \"127.0.0.1:2379\" }",
                };
                if let Some(tab) = table(&mut ctx, key, entry, Some(hint.to_owned())) {
                    ready = ready_probe(&mut ctx, tab, &node.loc);
                }
            }
            "health" => {
                let hint = Some("write e.g. health = { http = \"http://127.0.0.1/\" }".to_owned());
                if let Some(tab) = table(&mut ctx, key, entry, hint) {
                    u.health = health(&mut ctx, tab, &node.loc);
                }
            }
            "limits" => {
                if let Some(tab) = table(&mut ctx, key, entry, None) {
                    u.limits = limits(&mut ctx, tab);
                }
            }
            "watchdog" => u.watchdog = ctx.duration(key, node),
            "oom-score-adj" => {
                u.oom_score_adj = ctx
                    .int(key, node, -1000, 1000)
                    .and_then(|n| i32::try_from(n).ok());
            }
            "no-new-privileges" => u.no_new_privileges = ctx.bool(key, node).unwrap_or(false),
            "capabilities" => u.capabilities = capabilities(&mut ctx, key, node),
            _ => {}
        }
    }
    contradictions(&mut ctx, &mut u, t, kind, restart, ready);
    let failed = ctx.diags.iter().any(Diagnostic::is_error);
    (if failed { None } else { Some(u) }, ctx.diags)
}

const SERVICE_TYPES: &[(&str, ServiceType)] = &[
    ("simple", ServiceType::Simple),
    ("notify", ServiceType::Notify),
    ("oneshot", ServiceType::Oneshot),
];
const RESTARTS: &[(&str, Restart)] = &[
    ("never", Restart::Never),
    ("on-failure", Restart::OnFailure),
    ("always", Restart::Always),
];
const KILL_MODES: &[(&str, KillMode)] =
    &[("cgroup", KillMode::Cgroup), ("process", KillMode::Process)];

/// An array of capability names; each unknown one is reported where it is.
fn capabilities(ctx: &mut Ctx<'_>, key: &str, node: &Node) -> Option<Vec<Capability>> {
    let items = ctx.strings(key, node)?;
    let mut out = Vec::new();
    for (name, loc) in items {
        match Capability::parse(name) {
            Some(c) => out.push(c),
            None => ctx.error(
                loc,
                format!("unknown capability `{name}`"),
                Some("write e.g. \"CAP_NET_BIND_SERVICE\"".to_owned()),
            ),
        }
    }
    out.sort();
    out.dedup();
    Some(out)
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

/// Settles the service type and restart policy, and reports the keys that
/// contradict each other.
fn contradictions(
    ctx: &mut Ctx<'_>,
    u: &mut Unit,
    t: &Table,
    kind: Option<(ServiceType, &Loc)>,
    restart: Option<(Restart, &Loc)>,
    ready: Option<Ready>,
) {
    u.kind = kind.map_or(ServiceType::Simple, |(k, _)| k);
    match ready {
        Some(Ready::Notify(loc)) => match kind {
            Some((ServiceType::Simple | ServiceType::Oneshot, _)) => {
                let written = if u.kind == ServiceType::Simple {
                    "simple"
                } else {
                    "oneshot"
                };
                let message =
                    format!("`ready = {{ type = \"notify\" }}` contradicts `type = \"{written}\"`");
                ctx.error(&loc, message, Some("keep one of them".to_owned()));
            }
            _ => u.kind = ServiceType::Notify,
        },
        Some(Ready::Probe(probe, loc)) => match u.kind {
            ServiceType::Oneshot => {
                let hint = Some("a oneshot unit is ready when it exits with status 0".to_owned());
                ctx.error(
                    &loc,
                    "a oneshot unit cannot have a `ready` probe".to_owned(),
                    hint,
                );
            }
            ServiceType::Simple | ServiceType::Notify => u.ready = Some(probe),
        },
        None => {}
    }
    u.restart = match (restart, u.kind) {
        (Some((Restart::Always, loc)), ServiceType::Oneshot) => {
            let hint = Some(
                "a oneshot unit runs to completion; use restart = \"on-failure\" to retry it"
                    .to_owned(),
            );
            ctx.error(
                loc,
                "`restart = \"always\"` contradicts `type = \"oneshot\"`".to_owned(),
                hint,
            );
            Restart::Never
        }
        (Some((r, _)), _) => r,
        (None, ServiceType::Oneshot) => Restart::Never,
        (None, _) => Restart::OnFailure,
    };
    if let (Some(_), ServiceType::Oneshot, Some(e)) = (&u.health, u.kind, t.get("health")) {
        let hint = Some("health checks watch a running service; a oneshot unit exits".to_owned());
        ctx.error(
            &e.node.loc,
            "a oneshot unit cannot have a `health` check".to_owned(),
            hint,
        );
    }
    if let (Some(w), Some(e)) = (u.watchdog, t.get("watchdog")) {
        if u.kind != ServiceType::Notify {
            let hint = Some(
                "the service pets the watchdog by sending WATCHDOG=1 over sd_notify".to_owned(),
            );
            ctx.error(
                &e.node.loc,
                "`watchdog` needs `type = \"notify\"`".to_owned(),
                hint,
            );
        } else if w.is_zero() {
            ctx.error(
                &e.node.loc,
                "`watchdog` must be longer than 0".to_owned(),
                None,
            );
        }
    }
    if u.restart_delay > u.restart_delay_max {
        if let Some(e) = t.get("restart-delay").or(t.get("restart-delay-max")) {
            let message = format!(
                "`restart-delay` ({}) is longer than `restart-delay-max` ({})",
                values::format_duration(u.restart_delay),
                values::format_duration(u.restart_delay_max)
            );
            ctx.error(&e.node.loc, message, None);
        }
    }
    if let (Some(_), ServiceType::Simple, None) = (u.ready_timeout, u.kind, &u.ready) {
        if let Some(e) = t.get("ready-timeout") {
            let message = "`ready-timeout` has no effect: a simple unit without a `ready` probe is ready once spawned";
            ctx.warn(&e.node.loc, message.to_owned(), None);
        }
    }
}

/// A dependency list: the valid names and where each was written.
fn deps(ctx: &mut Ctx<'_>, key: &str, node: &Node) -> (Vec<String>, Vec<Loc>) {
    let (mut names, mut locs) = (Vec::new(), Vec::<Loc>::new());
    for (dep, loc) in ctx.strings(key, node).unwrap_or_default() {
        if !valid_unit_name(dep) {
            let hint = match dep.strip_suffix(".toml") {
                Some(stem) if valid_unit_name(stem) => {
                    format!("write the unit's name without .toml: \"{stem}\"")
                }
                _ => "unit names use letters, digits and - _ . @".to_owned(),
            };
            ctx.error(
                loc,
                format!("invalid unit name \"{dep}\" in `{key}`"),
                Some(hint),
            );
        } else if dep == ctx.unit {
            ctx.error(loc, format!("`{key}` names the unit itself"), None);
        } else if let Some(i) = names.iter().position(|n| n == dep) {
            let first = &locs[i];
            let message = format!("`{dep}` is listed twice in `{key}`");
            let hint = Some(format!("first listed at {}:{}", first.line, first.col));
            ctx.warn(loc, message, hint);
        } else {
            names.push(dep.to_owned());
            locs.push(loc.clone());
        }
    }
    (names, locs)
}

fn start_limit(ctx: &mut Ctx<'_>, t: &Table) -> StartLimit {
    ctx.unknown_keys("start-limit.", t, START_LIMIT_KEYS);
    let mut limit = StartLimit::default();
    if let Some(e) = t.get("burst") {
        let burst = ctx.int("start-limit.burst", &e.node, 0, i64::from(u32::MAX));
        set(&mut limit.burst, burst.and_then(|b| u32::try_from(b).ok()));
    }
    if let Some(e) = t.get("interval") {
        set(
            &mut limit.interval,
            ctx.duration("start-limit.interval", &e.node),
        );
    }
    limit
}

fn idents(ctx: &mut Ctx<'_>, key: &str, node: &Node) -> Vec<Ident> {
    let Value::Array(items) = &node.value else {
        ctx.wrong_type(key, node, "an array of names or ids", None);
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| ctx.ident(key, item))
        .collect()
}

fn environment(ctx: &mut Ctx<'_>, t: &Table) -> std::collections::BTreeMap<String, String> {
    let mut env = std::collections::BTreeMap::new();
    for e in &t.entries {
        let valid = e
            .key
            .starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && e.key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            let message = format!("invalid environment variable name `{}`", e.key);
            let hint =
                Some("names use letters, digits and _, and do not start with a digit".to_owned());
            ctx.error(&e.key_loc, message, hint);
            continue;
        }
        let key = format!("environment.{}", e.key);
        if let Some(value) = ctx.str(&key, &e.node) {
            if value.contains('\0') {
                ctx.error(
                    &e.node.loc,
                    format!("`{key}` cannot contain NUL bytes"),
                    None,
                );
            } else {
                env.insert(e.key.clone(), value.to_owned());
            }
        }
    }
    env
}

fn umask(ctx: &mut Ctx<'_>, key: &str, node: &Node) -> Option<u32> {
    match &node.value {
        Value::Int(_) => ctx
            .int(key, node, 0, 0o777)
            .and_then(|m| u32::try_from(m).ok()),
        _ => ctx.parsed(key, node, "mode", values::parse_mode),
    }
}

/// One probe out of `t`: `None` (with a diagnostic) when there is none,
/// more than one, or a bad one. `notify` is `ready = { type = "notify" }`.
fn probe(ctx: &mut Ctx<'_>, key: &str, t: &Table, loc: &Loc, notify: bool) -> Option<Ready> {
    let is_probe = |k: &str| PROBE_KEYS.contains(&k) || (notify && k == "type");
    let mut found = t.entries.iter().filter(|e| is_probe(&e.key));
    let Some(first) = found.next() else {
        let choices = if notify {
            "`tcp`, `exec`, `path`, `http` or `type = \"notify\"`"
        } else {
            "`tcp`, `exec`, `path` or `http`"
        };
        ctx.error(loc, format!("`{key}` needs a probe: {choices}"), None);
        return None;
    };
    if let Some(second) = found.next() {
        let message = format!(
            "`{key}` takes one probe, but has both `{}` and `{}`",
            first.key, second.key
        );
        ctx.error(
            &second.key_loc,
            message,
            Some("keep one of them".to_owned()),
        );
        return None;
    }
    let sub = format!("{key}.{}", first.key);
    let node = &first.node;
    let probe = match first.key.as_str() {
        "tcp" => Probe::Tcp(ctx.parsed(&sub, node, "address", values::parse_socket_addr)?),
        "exec" => Probe::Exec(ctx.argv(&sub, node)?),
        "path" => Probe::Path(ctx.absolute_path(&sub, node)?),
        "http" => Probe::Http(ctx.parsed(&sub, node, "URL", HttpUrl::parse)?),
        _ => {
            ctx.choice(&sub, node, &[("notify", ())])?;
            return Some(Ready::Notify(node.loc.clone()));
        }
    };
    Some(Ready::Probe(probe, loc.clone()))
}

fn ready_probe(ctx: &mut Ctx<'_>, t: &Table, loc: &Loc) -> Option<Ready> {
    ctx.unknown_keys("ready.", t, READY_KEYS);
    probe(ctx, "ready", t, loc, true)
}

fn health(ctx: &mut Ctx<'_>, t: &Table, loc: &Loc) -> Option<Health> {
    ctx.unknown_keys("health.", t, HEALTH_KEYS);
    let probe = match probe(ctx, "health", t, loc, false) {
        Some(Ready::Probe(p, _)) => Some(p),
        _ => None,
    };
    let mut interval = Duration::from_secs(10);
    if let Some(e) = t.get("interval") {
        set(&mut interval, ctx.duration("health.interval", &e.node));
        if interval.is_zero() {
            ctx.error(
                &e.node.loc,
                "`health.interval` must be longer than 0".to_owned(),
                None,
            );
        }
    }
    let mut failures = 3;
    if let Some(e) = t.get("failures") {
        let n = ctx.int("health.failures", &e.node, 1, i64::from(u32::MAX));
        set(&mut failures, n.and_then(|n| u32::try_from(n).ok()));
    }
    let mut timeout = interval.min(Duration::from_secs(5));
    if let Some(e) = t.get("timeout") {
        set(&mut timeout, ctx.duration("health.timeout", &e.node));
        if timeout > interval {
            let message = format!(
                "`health.timeout` ({}) is longer than `health.interval` ({})",
                values::format_duration(timeout),
                values::format_duration(interval)
            );
            ctx.error(&e.node.loc, message, None);
        }
    }
    Some(Health {
        probe: probe?,
        interval,
        failures,
        timeout,
    })
}

fn limits(ctx: &mut Ctx<'_>, t: &Table) -> Limits {
    ctx.unknown_keys("limits.", t, LIMIT_KEYS);
    let mut l = Limits::default();
    for e in &t.entries {
        let key = format!("limits.{}", e.key);
        let node = &e.node;
        match e.key.as_str() {
            "memory-max" => l.memory_max = ctx.size(&key, node).flatten(),
            "cpu-weight" => {
                l.cpu_weight = ctx
                    .int(&key, node, 1, 10_000)
                    .and_then(|w| u32::try_from(w).ok());
            }
            "pids-max" => l.pids_max = count(ctx, &key, node).flatten(),
            "nofile" => l.nofile = count(ctx, &key, node).map(|n| n.unwrap_or(u64::MAX)),
            _ => {}
        }
    }
    l
}

/// A positive count, or `"infinity"`/`"max"` (`Some(None)`).
fn count(ctx: &mut Ctx<'_>, key: &str, node: &Node) -> Option<Option<u64>> {
    match &node.value {
        Value::Str(s) if s == "infinity" || s == "max" => Some(None),
        Value::Str(_) => {
            let hint = Some("write a number, or \"infinity\"".to_owned());
            ctx.wrong_type(key, node, "an integer", hint);
            None
        }
        _ => ctx
            .int(key, node, 1, i64::MAX)
            .and_then(|n| u64::try_from(n).ok())
            .map(Some),
    }
}
