//! cgroup v2: one cgroup per unit under Keel's own, with its limits, and a
//! way to kill everything in one (`cgroup.kill`). Plain file operations on
//! the cgroup2 mount, which is a parameter, so tests can use a temporary
//! tree. Where a controller is missing (a host whose cgroup v2 has none),
//! the limit is reported as skipped, not as an error.

use std::io;
use std::path::{Path, PathBuf};

/// A cgroup operation that failed, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup2 file system is mounted (looked in {0})")]
    NoCgroup2(PathBuf),
    #[error("cannot create cgroup {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
}

/// Where the cgroup2 file system is mounted, from a mountinfo file.
pub fn cgroup2_mount(mountinfo: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(mountinfo).ok()?;
    text.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
    })
}

/// The cgroup v2 path of a process, from its /proc/PID/cgroup (`0::/x`).
pub fn own_path(proc_cgroup: &Path) -> Option<String> {
    let text = std::fs::read_to_string(proc_cgroup).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    crate::fs::write_file(path, value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

/// Keel's cgroups: `base/units/<unit>` for each unit.
#[derive(Debug, Clone)]
pub struct Cgroups {
    /// Where cgroup2 is mounted.
    root: PathBuf,
    units: PathBuf,
    /// Controllers enabled for the unit cgroups (e.g. memory, cpu, pids).
    controllers: Vec<String>,
}

/// One unit's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitCgroup {
    pub path: PathBuf,
    /// The path as /proc/PID/cgroup shows it, without the leading `/`.
    pub rel: PathBuf,
    /// `cgroup.kill` was used on it.
    killed: std::cell::Cell<bool>,
}

impl Cgroups {
    /// Sets up under `base` (Keel's own cgroup, inside the cgroup2 mount
    /// `root`). When `move_self` is set (not the root cgroup), this process
    /// first moves into `base/keel` so that `base` may enable controllers
    /// for its children.
    pub fn setup(root: &Path, base: &Path, move_self: bool) -> Result<Cgroups, CgroupError> {
        if !base.join("cgroup.procs").exists() {
            return Err(CgroupError::NoCgroup2(base.to_path_buf()));
        }
        if move_self {
            let me = base.join("keel");
            mkdir(&me)?;
            write(&me.join("cgroup.procs"), "0")?;
        }
        let units = base.join("units");
        mkdir(&units)?;
        let available =
            std::fs::read_to_string(base.join("cgroup.controllers")).unwrap_or_default();
        let mut controllers = Vec::new();
        for c in ["cpu", "memory", "pids"] {
            if !available.split_whitespace().any(|a| a == c) {
                continue;
            }
            let enabled = write(&base.join("cgroup.subtree_control"), &format!("+{c}")).is_ok()
                && write(&units.join("cgroup.subtree_control"), &format!("+{c}")).is_ok();
            if enabled {
                controllers.push(c.to_string());
            }
        }
        Ok(Cgroups {
            root: root.to_path_buf(),
            units,
            controllers,
        })
    }

    /// The controllers unit cgroups have.
    pub fn controllers(&self) -> &[String] {
        &self.controllers
    }

    /// Creates (or reuses) the cgroup of `unit`.
    pub fn unit(&self, unit: &str) -> Result<UnitCgroup, CgroupError> {
        let path = self.units.join(unit);
        mkdir(&path)?;
        let rel = path.strip_prefix(&self.root).unwrap_or(&path).to_path_buf();
        Ok(UnitCgroup {
            path,
            rel,
            killed: std::cell::Cell::new(false),
        })
    }

    /// Writes a limit file (e.g. `memory.max`) if its controller is enabled;
    /// `Ok(false)` when it is not (the limit was skipped).
    pub fn limit(&self, cg: &UnitCgroup, file: &str, value: &str) -> Result<bool, CgroupError> {
        let controller = file.split('.').next().unwrap_or("");
        if !self.controllers.iter().any(|c| c == controller) {
            return Ok(false);
        }
        write(&cg.path.join(file), value)?;
        Ok(true)
    }
}

fn mkdir(path: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(CgroupError::Create {
            path: path.to_path_buf(),
            source,
        }),
    }
}

impl UnitCgroup {
    /// The `cgroup.procs` file a child writes itself into.
    pub fn procs_file(&self) -> PathBuf {
        self.path.join("cgroup.procs")
    }

    /// The processes in this cgroup.
    pub fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.procs_file())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Whether any process is left (cgroup.events `populated 1`).
    pub fn populated(&self) -> bool {
        match std::fs::read_to_string(self.path.join("cgroup.events")) {
            Ok(t) => t.lines().any(|l| l == "populated 1"),
            Err(_) => !self.pids().is_empty(),
        }
    }

    /// Sends `signal` to every process in the cgroup. SIGKILL uses
    /// `cgroup.kill` (Linux 5.14+), which also catches processes forking
    /// while it runs; other signals go to each listed pid.
    pub fn signal_all(&self, signal: i32) -> usize {
        if signal == libc::SIGKILL && write(&self.path.join("cgroup.kill"), "1").is_ok() {
            self.killed.set(true);
            return self.pids().len().max(1);
        }
        let pids = self.pids();
        for &p in &pids {
            let _ = crate::process::kill(p, signal);
        }
        pids.len()
    }

    /// Whether `cgroup.kill` was used on it (see
    /// [`Command::cgroup_by_migration`](crate::process::Command::cgroup_by_migration)).
    pub fn was_killed(&self) -> bool {
        self.killed.get()
    }

    /// Marks it as killed: `unit` found the directory of a killed one.
    pub fn set_killed(&self) {
        self.killed.set(true);
    }

    /// Removes the (empty) cgroup.
    pub fn remove(&self) -> io::Result<()> {
        std::fs::remove_dir(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount_and_own_path() {
        let d = std::env::temp_dir().join(format!("keel-cg-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("mountinfo"),
            "22 1 0:21 / /sys rw shared:7 - sysfs sysfs rw\n\
             35 24 0:30 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw\n",
        )
        .unwrap();
        assert_eq!(
            cgroup2_mount(&d.join("mountinfo")),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        std::fs::write(d.join("cgroup"), "4:memory:/x\n0::/user.slice/a\n").unwrap();
        assert_eq!(
            own_path(&d.join("cgroup")).as_deref(),
            Some("/user.slice/a")
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn limits_are_skipped_without_controllers() {
        // A fake cgroup tree: plain directories with the files cgroupfs has.
        let d = std::env::temp_dir().join(format!("keel-cgt-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("cgroup.procs"), "").unwrap();
        std::fs::write(d.join("cgroup.controllers"), "").unwrap();
        let cg = Cgroups::setup(&d, &d, false).unwrap();
        assert!(cg.controllers().is_empty());
        let u = cg.unit("etcd").unwrap();
        assert_eq!(u.path, d.join("units/etcd"));
        assert_eq!(u.rel, PathBuf::from("units/etcd"));
        assert!(!cg.limit(&u, "memory.max", "1G").unwrap(), "skipped");
        assert!(!u.populated());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_missing_cgroup2_is_named() {
        let e = Cgroups::setup(
            Path::new("/nonexistent"),
            Path::new("/nonexistent/cg"),
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/cg"), "{e}");
    }
}
