//! Loading kernel modules from the initramfs's /lib/modules/RELEASE, in
//! modules.dep order, with finit_module: no modprobe. Built-in and already
//! loaded modules are fine; a missing one is named with the release it was
//! looked for in.
//!
//! An initramfs-only boot loads what the command line asks for
//! (`keel.modules=a,b`). Stage 1 of a boot from disk loads every module the
//! initramfs carries (its `modules.order`: what the image builder put there
//! for the root, e.g. virtio_blk, erofs, overlay) and `keel.modules=` too.

use keel_image::modules::ModuleDb;
use keel_kernel::clock::boottime;
use keel_kernel::cmdline::Cmdline;
use keel_kernel::modules::{self, Loaded};
use std::path::Path;

/// Loads the requested modules under `root` (normally `/lib/modules`).
/// Returns one problem string per failure (for the degraded boot line).
pub fn load_requested(cmdline: &Cmdline, root: &Path, release: &str) -> Vec<String> {
    let names: Vec<String> = requested(cmdline);
    load_names(&names, root, release)
}

fn requested(cmdline: &Cmdline) -> Vec<String> {
    cmdline
        .all("keel.modules")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(String::from)
        .collect()
}

/// Stage 1: every module listed in `root/release/modules.order`, then the
/// requested ones. Returns the problems, as [`load_requested`] does.
pub fn load_all(cmdline: &Cmdline, root: &Path, release: &str) -> Vec<String> {
    let order =
        std::fs::read_to_string(root.join(release).join("modules.order")).unwrap_or_default();
    let mut names: Vec<String> = order
        .lines()
        .filter_map(|l| keel_image::modules::module_name(l.trim()))
        .collect();
    names.extend(requested(cmdline));
    load_names(&names, root, release)
}

fn load_names(names: &[String], root: &Path, release: &str) -> Vec<String> {
    if names.is_empty() {
        return Vec::new();
    }
    let dir = root.join(release);
    let db = match ModuleDb::load(&dir, release) {
        Ok(db) => db,
        Err(e) => {
            log::error!("cannot load modules {}: {e}", names.join(","));
            return vec![format!("modules not loaded ({e})")];
        }
    };
    let mut problems = Vec::new();
    let mut wanted = Vec::new();
    for n in names {
        if db.is_builtin(n) {
            log::debug!("module {n} is built into the kernel");
        } else if db.get(n).is_none() {
            log::error!("module {n} not found in {}", dir.display());
            problems.push(format!("module {n} missing"));
        } else {
            wanted.push(n.as_str());
        }
    }
    let order = match db.resolve(&wanted) {
        Ok(o) => o,
        Err(e) => {
            log::error!("cannot resolve modules: {e}");
            problems.push(format!("modules not resolved ({e})"));
            return problems;
        }
    };
    for m in order {
        let started = boottime();
        match modules::load(&dir.join(&m.path), "") {
            Ok(Loaded::Loaded) => log::info!(
                "loaded module {} in {} us",
                m.name,
                (boottime() - started).as_micros()
            ),
            Ok(Loaded::AlreadyLoaded) => log::debug!("module {} was already loaded", m.name),
            Err(e) => {
                log::error!("{e}");
                problems.push(format!("module {} failed", m.name));
            }
        }
    }
    problems
}

/// The running kernel's release, as `uname -r` prints it.
pub fn running_release(proc: &Path) -> Option<String> {
    std::fs::read_to_string(proc.join("sys/kernel/osrelease"))
        .ok()
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_requested_is_nothing_done() {
        let c = Cmdline::parse("quiet");
        assert!(load_requested(&c, Path::new("/nonexistent"), "x").is_empty());
    }

    #[test]
    fn a_missing_module_tree_is_one_named_problem() {
        let c = Cmdline::parse("keel.modules=virtio_blk");
        let p = load_requested(&c, Path::new("/nonexistent"), "6.1.0-test");
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("modules.dep"), "{p:?}");
    }

    #[test]
    fn stage1_loads_what_modules_order_lists_and_names_failures() {
        let d = std::env::temp_dir().join(format!("keel-mods-all-{}", std::process::id()));
        std::fs::create_dir_all(d.join("r1/kernel")).unwrap();
        std::fs::write(d.join("r1/modules.dep"), "kernel/a.ko:\n").unwrap();
        std::fs::write(d.join("r1/modules.order"), "kernel/a.ko\n").unwrap();
        std::fs::write(d.join("r1/kernel/a.ko"), "not an ELF module").unwrap();
        let p = load_all(&Cmdline::parse("keel.modules=nope"), &d, "r1");
        std::fs::remove_dir_all(&d).unwrap();
        assert_eq!(
            p,
            vec![
                "module nope missing".to_string(),
                "module a failed".to_string()
            ]
        );
    }

    #[test]
    fn a_module_not_in_the_tree_is_named() {
        let d = std::env::temp_dir().join(format!("keel-mods-{}", std::process::id()));
        std::fs::create_dir_all(d.join("r1")).unwrap();
        std::fs::write(d.join("r1/modules.dep"), "kernel/a.ko:\n").unwrap();
        std::fs::write(d.join("r1/modules.builtin"), "kernel/b.ko\n").unwrap();
        let c = Cmdline::parse("keel.modules=nope,b");
        let p = load_requested(&c, &d, "r1");
        assert_eq!(p, vec!["module nope missing".to_string()]);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
