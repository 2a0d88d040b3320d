//! A kernel's module metadata: `modules.dep` and `modules.builtin`, as depmod
//! writes them under `/lib/modules/<release>/`.
//!
//! `modules.dep` has one line per loadable module, its path relative to the
//! release directory, a colon, then every module it depends on (the transitive
//! closure, as depmod writes it):
//!
//! ```text
//! kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
//! ```
//!
//! Paths may end in `.ko`, `.ko.xz`, `.ko.zst` or `.ko.gz`. A module's name is
//! its file name without that suffix, with `-` read as `_` (as modprobe does),
//! so `virtio-rng` and `virtio_rng` are the same module. `modules.builtin`
//! lists, in the same path form, the modules compiled into the kernel: they need
//! no file and no loading. [`ModuleDb::resolve`] turns a list of names into the
//! modules to load, in load order: each one after its dependencies, each once.
//! The image builder uses this to pick files; `keel` uses it at boot to load them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Why module metadata could not be read or a module not resolved.
#[derive(Debug, thiserror::Error)]
pub enum ModulesError {
    /// A metadata file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line of `modules.dep` has no colon or names no module file.
    #[error("modules.dep of kernel {release}, line {line}: not `path.ko: deps...`: {text:?}")]
    MalformedLine {
        /// Kernel release the file belongs to.
        release: String,
        /// 1-based line number.
        line: usize,
        /// The offending line.
        text: String,
    },
    /// A requested module is neither in `modules.dep` nor built in.
    #[error(
        "kernel module {name} not found for kernel {release} (neither in modules.dep nor built in)"
    )]
    MissingModule {
        /// The name as requested.
        name: String,
        /// The kernel release searched.
        release: String,
    },
    /// A module lists a dependency that has no line of its own.
    #[error("kernel {release}: module {module} depends on {dependency}, which modules.dep does not list")]
    MissingDependency {
        /// The module whose line names the dependency.
        module: String,
        /// The dependency's path as written.
        dependency: String,
        /// Kernel release.
        release: String,
    },
    /// Dependencies loop back to a module (modules.dep is corrupt).
    #[error("kernel {release}: module {name} depends on itself through its dependencies")]
    DependencyCycle {
        /// A module on the cycle.
        name: String,
        /// Kernel release.
        release: String,
    },
}

/// One loadable module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// Normalised name (`_`, never `-`).
    pub name: String,
    /// Path relative to `/lib/modules/<release>/`, as modules.dep writes it.
    pub path: String,
    /// Names of the modules this one depends on, in modules.dep's order.
    pub deps: Vec<String>,
}

/// The modules of one kernel release.
#[derive(Clone, Debug, Default)]
pub struct ModuleDb {
    release: String,
    modules: BTreeMap<String, Module>,
    builtin: BTreeSet<String>,
}

/// Normalises a module name as modprobe does: `-` and `_` are the same.
pub fn normalize_name(name: &str) -> String {
    name.replace('-', "_")
}

/// The module name of a path from modules.dep or modules.builtin, or `None` if
/// the file name does not end in `.ko` (optionally compressed).
pub fn module_name(path: &str) -> Option<String> {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|suffix| file.strip_suffix(suffix))?;
    (!stem.is_empty()).then(|| normalize_name(stem))
}

impl ModuleDb {
    /// Parses the text of `modules.dep` and, if given, `modules.builtin`.
    pub fn parse(
        release: &str,
        modules_dep: &str,
        modules_builtin: Option<&str>,
    ) -> Result<Self, ModulesError> {
        let mut db = ModuleDb {
            release: release.to_owned(),
            ..Default::default()
        };
        let mut raw = Vec::new();
        for (i, line) in modules_dep.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let malformed = || ModulesError::MalformedLine {
                release: release.to_owned(),
                line: i + 1,
                text: line.to_owned(),
            };
            let (path, deps) = line.split_once(':').ok_or_else(malformed)?;
            let path = path.trim();
            let name = module_name(path).ok_or_else(malformed)?;
            raw.push((
                name,
                path.to_owned(),
                deps.split_whitespace().collect::<Vec<_>>(),
            ));
        }
        let by_path: BTreeMap<&str, &str> = raw
            .iter()
            .map(|(name, path, _)| (path.as_str(), name.as_str()))
            .collect();
        for (name, path, deps) in &raw {
            let deps = deps
                .iter()
                .map(|dep| {
                    by_path.get(dep).map(|d| (*d).to_owned()).ok_or_else(|| {
                        ModulesError::MissingDependency {
                            module: name.clone(),
                            dependency: (*dep).to_owned(),
                            release: release.to_owned(),
                        }
                    })
                })
                .collect::<Result<_, _>>()?;
            let module = Module {
                name: name.clone(),
                path: path.clone(),
                deps,
            };
            db.modules.insert(name.clone(), module);
        }
        for line in modules_builtin.unwrap_or("").lines() {
            if let Some(name) = module_name(line.trim()) {
                db.builtin.insert(name);
            }
        }
        Ok(db)
    }

    /// Reads `modules.dep` and (if present) `modules.builtin` from `dir`,
    /// normally `/lib/modules/<release>`.
    pub fn load(dir: &Path, release: &str) -> Result<Self, ModulesError> {
        let read = |file: &str| {
            let path = dir.join(file);
            std::fs::read_to_string(&path).map_err(|source| ModulesError::ReadFile { path, source })
        };
        let dep = read("modules.dep")?;
        let builtin = match read("modules.builtin") {
            Ok(text) => Some(text),
            Err(ModulesError::ReadFile { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                None
            }
            Err(e) => return Err(e),
        };
        Self::parse(release, &dep, builtin.as_deref())
    }

    /// The kernel release this database describes.
    pub fn release(&self) -> &str {
        &self.release
    }

    /// The loadable module called `name` (`-` or `_` alike).
    pub fn get(&self, name: &str) -> Option<&Module> {
        self.modules.get(&normalize_name(name))
    }

    /// Whether `name` is compiled into the kernel.
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&normalize_name(name))
    }

    /// Number of loadable modules.
    pub fn len(&self) -> usize {
        self.modules.len()
    }

    /// Whether modules.dep listed no module.
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// The modules to load so that every name in `names` is available, in load
    /// order: dependencies first, each module once. Built-in modules are
    /// skipped; a name that is neither loadable nor built in is an error.
    pub fn resolve<S: AsRef<str>>(&self, names: &[S]) -> Result<Vec<&Module>, ModulesError> {
        let mut order = Vec::new();
        let mut state = BTreeMap::new();
        for name in names {
            let name = normalize_name(name.as_ref());
            if self.modules.contains_key(&name) {
                self.visit(&name, &mut state, &mut order)?;
            } else if !self.builtin.contains(&name) {
                return Err(ModulesError::MissingModule {
                    name,
                    release: self.release.clone(),
                });
            }
        }
        Ok(order)
    }

    /// Depth-first: a module is pushed after all of its dependencies. Within a
    /// line, depmod lists the deepest dependencies last, so they are visited
    /// from the end, which keeps modprobe's order where the graph allows any.
    fn visit<'a>(
        &'a self,
        name: &str,
        state: &mut BTreeMap<String, bool>,
        order: &mut Vec<&'a Module>,
    ) -> Result<(), ModulesError> {
        match state.get(name) {
            Some(true) => return Ok(()),
            Some(false) => {
                return Err(ModulesError::DependencyCycle {
                    name: name.to_owned(),
                    release: self.release.clone(),
                })
            }
            None => {}
        }
        let Some(module) = self.modules.get(name) else {
            return Ok(());
        };
        state.insert(name.to_owned(), false);
        for dep in module.deps.iter().rev() {
            self.visit(dep, state, order)?;
        }
        state.insert(name.to_owned(), true);
        order.push(module);
        Ok(())
    }

    /// A modules.dep holding only `modules` (e.g. the result of
    /// [`resolve`](Self::resolve)), each line as depmod writes it.
    pub fn render_dep(&self, modules: &[&Module]) -> String {
        let mut out = String::new();
        for module in modules {
            out.push_str(&module.path);
            out.push(':');
            for dep in &module.deps {
                if let Some(d) = self.modules.get(dep) {
                    out.push(' ');
                    out.push_str(&d.path);
                }
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/char/hw_random/virtio-rng.ko.xz: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/fs/ext4/ext4.ko.zst: kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko kernel/lib/crc16.ko
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/lib/crc16.ko:
";

    fn names(mods: &[&Module]) -> Vec<String> {
        mods.iter().map(|m| m.name.clone()).collect()
    }

    #[test]
    fn names_are_normalised() {
        assert_eq!(
            module_name("kernel/a/virtio-rng.ko.xz").as_deref(),
            Some("virtio_rng")
        );
        assert_eq!(module_name("x.ko.zst").as_deref(), Some("x"));
        assert_eq!(module_name("kernel/a/readme.txt"), None);
        assert_eq!(module_name(".ko"), None);
    }

    #[test]
    fn resolves_in_load_order_each_once() {
        let db =
            ModuleDb::parse("6.1-test", DEP, Some("kernel/crypto/crc32c_generic.ko\n")).unwrap();
        assert_eq!(db.len(), 8);
        let order = db
            .resolve(&["virtio_blk", "virtio-rng", "crc32c_generic", "ext4"])
            .unwrap();
        assert_eq!(
            names(&order),
            [
                "virtio_ring",
                "virtio",
                "virtio_blk",
                "virtio_rng",
                "crc16",
                "jbd2",
                "mbcache",
                "ext4"
            ]
        );
        assert_eq!(
            order[3].path,
            "kernel/drivers/char/hw_random/virtio-rng.ko.xz"
        );
        assert!(db.is_builtin("crc32c-generic"));
    }

    #[test]
    fn missing_module_names_it_and_the_release() {
        let db = ModuleDb::parse("6.1-test", DEP, None).unwrap();
        let err = db.resolve(&["virtio_blk", "no_such_mod"]).unwrap_err();
        assert!(matches!(&err, ModulesError::MissingModule { name, release }
            if name == "no_such_mod" && release == "6.1-test"));
        let msg = err.to_string();
        assert!(
            msg.contains("no_such_mod") && msg.contains("6.1-test"),
            "{msg}"
        );
    }

    #[test]
    fn malformed_input_is_an_error() {
        let err = ModuleDb::parse("r", "kernel/a.ko: \nnot a module line\n", None).unwrap_err();
        assert!(matches!(err, ModulesError::MalformedLine { line: 2, .. }));
        let err = ModuleDb::parse("r", "kernel/a.ko: kernel/b.ko\n", None).unwrap_err();
        assert!(matches!(err, ModulesError::MissingDependency { .. }));
        let err = ModuleDb::parse("r", "a.ko: b.ko\nb.ko: a.ko\n", None)
            .unwrap()
            .resolve(&["a"])
            .unwrap_err();
        assert!(matches!(err, ModulesError::DependencyCycle { .. }));
    }

    #[test]
    fn render_dep_round_trips() {
        let db = ModuleDb::parse("r", DEP, None).unwrap();
        let order = db.resolve(&["virtio_blk"]).unwrap();
        let text = db.render_dep(&order);
        let again = ModuleDb::parse("r", &text, None).unwrap();
        assert_eq!(again.len(), 3);
        assert_eq!(
            names(&again.resolve(&["virtio_blk"]).unwrap()),
            names(&order)
        );
    }
}
