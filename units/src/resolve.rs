//! From the texts of every unit (and their drop-ins) to the set of units
//! that will boot: parse, merge, validate, then the checks between units.
//! A unit with an error is excluded together with every unit that
//! (transitively) requires it; everything else is kept. Pure: no files.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diag::{did_you_mean, Diagnostic, Loc, Severity};
use crate::graph::{Cycle, DepKind, Graph};
use crate::raw::{self, Value};
use crate::unit::Unit;
use crate::validate::{validate, MERGED_TABLES};

/// The text of one unit: its file, its drop-ins in the order they apply,
/// and any error met while reading them (which makes the unit invalid).
#[derive(Debug, Clone, Default)]
pub struct UnitSource {
    pub name: String,
    pub file: PathBuf,
    pub text: String,
    pub dropins: Vec<(PathBuf, String)>,
    pub read_errors: Vec<Diagnostic>,
}

/// A unit that will not be started, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Excluded {
    pub unit: String,
    /// One line: `invalid: ...`, `requires \`x\`, which does not exist`, ...
    pub reason: String,
}

/// The outcome of loading: what boots, what does not, and every diagnostic.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The units that will boot; their graph has no cycle.
    pub units: BTreeMap<String, Unit>,
    /// Sorted by file and position.
    pub diagnostics: Vec<Diagnostic>,
    /// Sorted by unit name.
    pub excluded: Vec<Excluded>,
    /// Units with `enabled = false`, sorted.
    pub disabled: Vec<String>,
    /// Units masked by a link to /dev/null in the directory that wins,
    /// sorted.
    pub masked: Vec<String>,
}

impl Loaded {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Why a unit is out, as the root of a chain of exclusions.
#[derive(Debug, Clone)]
struct Cause {
    /// The unit the trouble started with.
    root: String,
    /// What is wrong with the root, after its name: "is invalid".
    tail: String,
    reason: String,
}

/// Parses, merges, validates and cross-checks `sources`.
pub fn resolve(sources: Vec<UnitSource>) -> Loaded {
    resolve_masked(sources, Vec::new())
}

/// [`resolve`], with the names of the masked units (which are not among
/// `sources`): like disabled ones they do not start, and a unit that
/// requires one is excluded, naming it.
pub fn resolve_masked(sources: Vec<UnitSource>, masked: Vec<String>) -> Loaded {
    let mut out = Loaded {
        masked,
        ..Loaded::default()
    };
    let mut valid = BTreeMap::new();
    let mut causes: BTreeMap<String, Cause> = BTreeMap::new();
    for src in sources {
        let name = src.name.clone();
        let (unit, mut diags, disabled) = check_source(src);
        if disabled {
            for d in &mut diags {
                d.severity = Severity::Warning;
            }
            out.disabled.push(name);
        } else if let Some(unit) = unit {
            valid.insert(name, unit);
        } else {
            let mut errors: Vec<&Diagnostic> = diags.iter().filter(|d| d.is_error()).collect();
            errors.sort();
            let first = errors.first().map_or("", |d| d.message.as_str());
            let more = match errors.len() {
                0 | 1 => String::new(),
                2 => " (and 1 more error)".to_owned(),
                n => format!(" (and {} more errors)", n - 1),
            };
            let reason = format!("invalid: {first}{more}");
            let cause = Cause {
                root: name.clone(),
                tail: "is invalid".to_owned(),
                reason,
            };
            causes.insert(name, cause);
        }
        out.diagnostics.extend(diags);
    }
    let known: BTreeSet<String> = valid
        .keys()
        .chain(causes.keys())
        .chain(&out.disabled)
        .chain(&out.masked)
        .cloned()
        .collect();
    let disabled: BTreeSet<&str> = out.disabled.iter().map(String::as_str).collect();
    let masked: BTreeSet<&str> = out.masked.iter().map(String::as_str).collect();
    let mut roots = causes.keys().cloned().collect::<Vec<_>>();
    for unit in valid.values() {
        let mut first = None;
        for (i, dep) in unit.requires.iter().enumerate() {
            if valid.contains_key(dep) || causes.contains_key(dep) {
                continue;
            }
            let loc = unit
                .dep_locs
                .requires
                .get(i)
                .cloned()
                .unwrap_or_else(|| unit.file_loc());
            let (message, hint) = if masked.contains(dep.as_str()) {
                let hint =
                    format!("remove the link {dep}.toml -> /dev/null to unmask it, or use `wants`");
                (format!("`requires` names `{dep}`, which is masked"), hint)
            } else if disabled.contains(dep.as_str()) {
                let hint =
                    format!("enable `{dep}`, or use `wants` for a dependency that may be off");
                (format!("`requires` names `{dep}`, which is disabled"), hint)
            } else {
                let hint = did_you_mean(dep, known.iter().map(String::as_str)).map_or_else(
                    || "use `wants` for a dependency that may be absent".to_owned(),
                    |g| format!("did you mean `{g}`?"),
                );
                (
                    format!("`requires` names `{dep}`, which does not exist"),
                    hint,
                )
            };
            let tail = message.replacen("`requires` names", "requires", 1);
            out.diagnostics
                .push(Diagnostic::error(&loc, Some(&unit.name), message).with_hint(hint));
            first.get_or_insert(tail);
        }
        if let Some(tail) = first {
            let cause = Cause {
                root: unit.name.clone(),
                reason: tail.clone(),
                tail,
            };
            causes.insert(unit.name.clone(), cause);
            roots.push(unit.name.clone());
        }
    }
    propagate(&valid, &mut causes, roots);
    valid.retain(|name, _| !causes.contains_key(name));
    loop {
        let cycles = match Graph::new(&valid) {
            Ok(_) => break,
            Err(cycles) => cycles,
        };
        let mut roots = Vec::new();
        for cycle in cycles {
            out.diagnostics.push(cycle_diagnostic(&valid, &cycle));
            for member in &cycle.units {
                let tail = format!("is in a dependency cycle: {cycle}");
                let reason = format!("in a dependency cycle: {cycle}");
                let cause = Cause {
                    root: member.clone(),
                    tail,
                    reason,
                };
                causes.insert(member.clone(), cause);
                roots.push(member.clone());
            }
        }
        propagate(&valid, &mut causes, roots);
        valid.retain(|name, _| !causes.contains_key(name));
    }
    let off: BTreeSet<&str> = disabled.union(&masked).copied().collect();
    wants_warnings(&valid, &causes, &known, &off, &mut out.diagnostics);
    out.units = valid;
    out.excluded = causes
        .into_iter()
        .map(|(unit, c)| Excluded {
            unit,
            reason: c.reason,
        })
        .collect();
    out.diagnostics.sort();
    out
}

/// Parses and validates one unit: the unit if valid, its diagnostics, and
/// whether it says `enabled = false`.
fn check_source(src: UnitSource) -> (Option<Unit>, Vec<Diagnostic>, bool) {
    let file: Arc<Path> = src.file.into();
    let mut diags = src.read_errors;
    let mut table = match raw::parse(&file, &src.text, &src.name) {
        Ok(t) => Some(t),
        Err(d) => {
            diags.push(d);
            None
        }
    };
    let mut dropins = Vec::with_capacity(src.dropins.len());
    for (path, text) in src.dropins {
        let path: Arc<Path> = path.into();
        match (raw::parse(&path, &text, &src.name), &mut table) {
            (Ok(over), Some(base)) => base.merge(over, MERGED_TABLES),
            (Ok(_), None) => {}
            (Err(d), _) => diags.push(d),
        }
        dropins.push(path.to_path_buf());
    }
    let Some(table) = table else {
        return (None, diags, false);
    };
    let disabled =
        matches!(table.get("enabled"), Some(e) if matches!(e.node.value, Value::Bool(false)));
    if diags.iter().any(Diagnostic::is_error) {
        return (None, diags, disabled);
    }
    let (unit, more) = validate(&src.name, &file, &table);
    diags.extend(more);
    let unit = unit.map(|mut u| {
        u.dropins = dropins;
        u
    });
    (unit, diags, disabled)
}

/// Excludes, breadth-first, every unit that requires an excluded one.
fn propagate(
    valid: &BTreeMap<String, Unit>,
    causes: &mut BTreeMap<String, Cause>,
    roots: Vec<String>,
) {
    let mut required_by: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for unit in valid.values() {
        for dep in &unit.requires {
            required_by.entry(dep).or_default().push(&unit.name);
        }
    }
    let mut queue = VecDeque::from(roots);
    while let Some(x) = queue.pop_front() {
        let Some(cause) = causes.get(&x).cloned() else {
            continue;
        };
        for &y in required_by.get(x.as_str()).into_iter().flatten() {
            if causes.contains_key(y) {
                continue;
            }
            let reason = if cause.root == x {
                format!("requires `{x}`, which {}", cause.tail)
            } else {
                format!(
                    "requires `{x}`, which is excluded because `{}` {}",
                    cause.root, cause.tail
                )
            };
            let next = Cause {
                root: cause.root.clone(),
                tail: cause.tail.clone(),
                reason,
            };
            causes.insert(y.to_owned(), next);
            queue.push_back(y.to_owned());
        }
    }
}

/// Where the first edge of the cycle is written, and every edge as a hint.
fn cycle_diagnostic(units: &BTreeMap<String, Unit>, cycle: &Cycle) -> Diagnostic {
    let n = cycle.units.len();
    let edge = |i: usize| {
        (
            &cycle.units[i],
            &cycle.units[(i + 1) % n],
            cycle.kinds.get(i).copied(),
        )
    };
    let (a, b, kind) = edge(0);
    let loc = match kind {
        Some(DepKind::Before) => units.get(b).and_then(|u| u.dep_loc(DepKind::Before, a)),
        Some(k) => units.get(a).and_then(|u| u.dep_loc(k, b)),
        None => None,
    };
    let loc = loc.cloned().or_else(|| units.get(a).map(Unit::file_loc));
    let loc = loc.unwrap_or_else(|| Loc::file(Path::new(a).into()));
    let edges: Vec<String> = (0..n)
        .map(|i| match edge(i) {
            (a, b, Some(DepKind::Before)) => format!("`{b}` is before `{a}`"),
            (a, b, Some(DepKind::After)) => format!("`{a}` is after `{b}`"),
            (a, b, Some(k)) => format!("`{a}` {} `{b}`", k.key()),
            (a, b, None) => format!("`{a}` waits for `{b}`"),
        })
        .collect();
    Diagnostic::error(&loc, Some(a), format!("dependency cycle: {cycle}"))
        .with_hint(format!("remove one of: {}", edges.join(", ")))
}

fn wants_warnings(
    valid: &BTreeMap<String, Unit>,
    causes: &BTreeMap<String, Cause>,
    known: &BTreeSet<String>,
    disabled: &BTreeSet<&str>,
    diags: &mut Vec<Diagnostic>,
) {
    for unit in valid.values() {
        for (i, dep) in unit.wants.iter().enumerate() {
            if valid.contains_key(dep) || disabled.contains(dep.as_str()) {
                continue;
            }
            let loc = unit
                .dep_locs
                .wants
                .get(i)
                .cloned()
                .unwrap_or_else(|| unit.file_loc());
            let d = if causes.contains_key(dep) {
                let message = format!("`wants` names `{dep}`, which is excluded");
                Diagnostic::warning(&loc, Some(&unit.name), message)
            } else {
                let message = format!("`wants` names `{dep}`, which does not exist");
                let hint = did_you_mean(dep, known.iter().map(String::as_str))
                    .map(|g| format!("did you mean `{g}`?"));
                Diagnostic::warning(&loc, Some(&unit.name), message).with_opt_hint(hint)
            };
            diags.push(d);
        }
    }
}
