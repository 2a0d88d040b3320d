//! modules.dep parsing and load order against the installed kernel's real
//! module tree (the Debian cloud kernel on these machines).

// Helpers outside #[test] functions panic on failure, as the tests do.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use keel_image::kernel::HostRoots;
use keel_image::modules::{ModuleDb, ModulesError};

/// The running kernel's module tree if it has one, else the newest installed.
fn real_db() -> ModuleDb {
    let roots = HostRoots::default();
    let running = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let running = running.trim();
    let release = if !running.is_empty() && roots.modules_dir(running).join("modules.dep").is_file()
    {
        running.to_owned()
    } else {
        roots
            .newest_release()
            .expect("no kernel with modules installed: apt-get install linux-image-cloud-amd64")
    };
    let dir: PathBuf = roots.modules_dir(&release);
    ModuleDb::load(&dir, &release).unwrap()
}

fn position(order: &[&keel_image::modules::Module], name: &str) -> usize {
    order
        .iter()
        .position(|m| m.name == name)
        .unwrap_or_else(|| panic!("{name} not in load order"))
}

#[test]
fn virtio_blk_loads_after_its_dependencies() {
    let db = real_db();
    assert!(db.len() > 100, "only {} modules", db.len());
    let order = db.resolve(&["virtio_pci", "virtio_blk"]).unwrap();
    let names: Vec<&str> = order.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names.last(), Some(&"virtio_blk"), "{names:?}");
    let blk = position(&order, "virtio_blk");
    let pci = position(&order, "virtio_pci");
    assert!(
        position(&order, "virtio_ring") < position(&order, "virtio"),
        "{names:?}"
    );
    assert!(position(&order, "virtio") < pci.min(blk), "{names:?}");
    for dep in &db.get("virtio_pci").unwrap().deps {
        assert!(
            position(&order, dep) < pci,
            "{dep} after virtio_pci: {names:?}"
        );
    }
    assert!(
        order[blk].path.ends_with("drivers/block/virtio_blk.ko")
            || order[blk].path.contains("drivers/block/virtio_blk.ko.")
    );
}

#[test]
fn every_module_resolves_dependencies_first_each_once() {
    let db = real_db();
    // Resolving every module at once is the hardest order to get right.
    let dep = std::fs::read_to_string(
        HostRoots::default()
            .modules_dir(db.release())
            .join("modules.dep"),
    )
    .unwrap();
    let all: Vec<String> = dep
        .lines()
        .filter_map(|l| keel_image::modules::module_name(l.split(':').next()?))
        .collect();
    let order = db.resolve(&all).unwrap();
    assert_eq!(order.len(), db.len());
    let index: BTreeMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (m.name.as_str(), i))
        .collect();
    assert_eq!(index.len(), order.len(), "a module appears twice");
    for (i, module) in order.iter().enumerate() {
        for dep in &module.deps {
            assert!(
                index[dep.as_str()] < i,
                "{} loads before its dependency {dep}",
                module.name
            );
        }
    }
}

#[test]
fn dashes_builtins_and_missing_modules() {
    let db = real_db();
    // virtio-rng.ko is spelled with a dash on disk; either spelling finds it.
    if db.get("virtio_rng").is_some() {
        let a = db.resolve(&["virtio-rng"]).unwrap();
        let b = db.resolve(&["virtio_rng"]).unwrap();
        assert_eq!(a, b);
        assert!(a.last().unwrap().path.contains("virtio-rng.ko"));
    }

    let builtin = std::fs::read_to_string(
        HostRoots::default()
            .modules_dir(db.release())
            .join("modules.builtin"),
    )
    .unwrap();
    let first = builtin
        .lines()
        .find_map(keel_image::modules::module_name)
        .unwrap();
    assert!(db.is_builtin(&first));
    assert!(
        db.resolve(&[first.as_str()]).unwrap().is_empty(),
        "{first} is built in"
    );

    let err = db
        .resolve(&["virtio_blk", "no_such_module_xyz"])
        .unwrap_err();
    assert!(
        matches!(&err, ModulesError::MissingModule { name, .. } if name == "no_such_module_xyz")
    );
    let msg = err.to_string();
    assert!(
        msg.contains("no_such_module_xyz") && msg.contains(db.release()),
        "{msg}"
    );
}
