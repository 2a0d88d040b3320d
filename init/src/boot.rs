//! Loading units for a boot and reporting what was wrong with them: every
//! diagnostic becomes one log line naming the file, line and unit, and any
//! of them makes the boot "degraded"; the units that are fine still run.

use keel_units::Unit;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Units ready to run, and what was wrong (for the boot line).
pub struct LoadedUnits {
    pub units: BTreeMap<String, Unit>,
    pub problems: Vec<String>,
}

/// Loads units from `dirs`, logging each problem once.
pub fn load_units(dirs: &[PathBuf]) -> LoadedUnits {
    let mut problems = Vec::new();
    if !dirs.iter().any(|d| d.is_dir()) {
        let list = dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        log::error!("no unit directory found (looked in {list}); nothing to start");
        problems.push("no unit directory".to_string());
    }
    let loaded = keel_units::load(dirs);
    for d in &loaded.diagnostics {
        let text = d.to_string();
        if d.is_error() {
            log::error!("{text}");
        } else {
            log::warn!("{text}");
        }
    }
    for x in &loaded.excluded {
        log::error!("unit {} not started: {}", x.unit, x.reason);
        problems.push(format!("unit {} not started", x.unit));
    }
    if problems.is_empty() && loaded.diagnostics.iter().any(|d| d.is_error()) {
        problems.push("unit files have errors".to_string());
    }
    LoadedUnits {
        units: loaded.units,
        problems,
    }
}

/// The boot line's "degraded" suffix, or nothing.
pub fn degraded_suffix(problems: &[String], failed: &[(String, String)]) -> String {
    let mut parts: Vec<String> = problems.to_vec();
    parts.extend(failed.iter().map(|(u, _)| format!("unit {u} failed")));
    if parts.is_empty() {
        String::new()
    } else {
        format!(", degraded: {}", parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_lists_problems_and_failures() {
        assert_eq!(degraded_suffix(&[], &[]), "");
        assert_eq!(
            degraded_suffix(
                &["unit bad not started".into()],
                &[("x".into(), "exit status 1".into())]
            ),
            ", degraded: unit bad not started; unit x failed"
        );
    }
}
