//! Loading units for a boot and reporting what was wrong with them: every
//! diagnostic becomes one log line naming the file, line and unit, and any
//! of them makes the boot "degraded"; the units that are fine still run.

use keel_kernel::cgroup::Cgroups;
use keel_supervisor::Config;
use keel_units::Unit;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

/// The supervisor's settings as PID 1: sockets in `runtime` (/run/keel),
/// unit cgroups under the root cgroup, logs in /var/log/keel.
pub fn pid1_config(runtime: &Path) -> Config {
    let cgroups = match Cgroups::setup(
        Path::new("/sys/fs/cgroup"),
        Path::new("/sys/fs/cgroup"),
        false,
    ) {
        Ok(c) => {
            log::debug!(
                "cgroup controllers for units: {}",
                c.controllers().join(" ")
            );
            Some(c)
        }
        Err(e) => {
            log::warn!("{e}; units run without cgroups");
            None
        }
    };
    Config {
        log_dir: Some(PathBuf::from("/var/log/keel")),
        cgroups,
        unit_dirs: keel_units::DEFAULT_DIRS.iter().map(PathBuf::from).collect(),
        ..Config::in_runtime_dir(runtime)
    }
}

/// The supervisor's settings for `keel supervise`: sockets in `runtime`,
/// unit cgroups in a cgroup of its own below the caller's (where cgroup2 is
/// mounted and writable).
pub fn subreaper_config(runtime: &Path, log_dir: Option<PathBuf>, unit_dirs: &[PathBuf]) -> Config {
    let cgroups =
        subreaper_cgroup().and_then(|(root, base)| match Cgroups::setup(&root, &base, true) {
            Ok(c) => Some(c),
            Err(e) => {
                log::warn!("{e}; units run without cgroups");
                None
            }
        });
    Config {
        log_dir,
        cgroups,
        unit_dirs: unit_dirs.to_vec(),
        ..Config::in_runtime_dir(runtime)
    }
}

fn subreaper_cgroup() -> Option<(PathBuf, PathBuf)> {
    let mount = keel_kernel::cgroup::cgroup2_mount(Path::new("/proc/self/mountinfo"))?;
    let own = keel_kernel::cgroup::own_path(Path::new("/proc/self/cgroup"))?;
    let base = mount
        .join(own.trim_start_matches('/'))
        .join(format!("keel-supervise-{}", std::process::id()));
    std::fs::create_dir_all(&base).ok()?;
    Some((mount, base))
}

/// Removes the cgroups `subreaper_config` made (best effort, at exit): moves
/// this process back to where it started, then removes the empty cgroups.
pub fn cleanup_subreaper_cgroup() {
    let Some(mount) = keel_kernel::cgroup::cgroup2_mount(Path::new("/proc/self/mountinfo")) else {
        return;
    };
    let Some(own) = keel_kernel::cgroup::own_path(Path::new("/proc/self/cgroup")) else {
        return;
    };
    let me = mount.join(own.trim_start_matches('/'));
    let (Some(base), Some(parent)) = (me.parent(), me.parent().and_then(Path::parent)) else {
        return;
    };
    if !base
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("keel-supervise-"))
    {
        return;
    }
    let _ = keel_kernel::fs::write_file(&parent.join("cgroup.procs"), "0");
    if let Ok(entries) = std::fs::read_dir(base.join("units")) {
        for e in entries.flatten() {
            let _ = std::fs::remove_dir(e.path());
        }
    }
    let _ = std::fs::remove_dir(base.join("units"));
    let _ = std::fs::remove_dir(&me);
    let _ = std::fs::remove_dir(base);
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
