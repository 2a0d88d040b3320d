//! Finding unit files: `NAME.toml` in each directory (a later directory
//! replaces an earlier one's file of the same name) and drop-ins
//! `NAME.d/*.toml` (applied in file-name order across all directories; a
//! later directory's drop-in replaces an earlier one of the same file name).
//! Reading files is the only thing this crate does besides computing.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::diag::{Diagnostic, Loc};
use crate::resolve::{resolve_masked, Loaded, UnitSource};
use crate::validate::valid_unit_name;

/// Where units live, the later winning: the image, the admin, the runtime.
pub const DEFAULT_DIRS: [&str; 3] = ["/usr/lib/keel/units", "/etc/keel/units", "/run/keel/units"];

/// A step of loading that failed on the filesystem.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("cannot read unit directory: {0}")]
    ReadDir(#[source] io::Error),
    #[error("cannot read unit file: {0}")]
    ReadFile(#[source] io::Error),
    #[error("invalid unit name `{0}`")]
    BadName(String),
    #[error("drop-in for `{0}`, which has no unit file")]
    OrphanDropin(String),
}

impl LoadError {
    fn at(self, path: &Path, unit: Option<&str>) -> Diagnostic {
        let loc = Loc::file(path.into());
        match &self {
            LoadError::BadName(_) => Diagnostic::error(&loc, None, self.to_string())
                .with_hint("unit names use letters, digits and - _ . @"),
            LoadError::OrphanDropin(name) => {
                Diagnostic::warning(&loc, Some(name), self.to_string())
            }
            LoadError::ReadDir(_) | LoadError::ReadFile(_) => {
                Diagnostic::error(&loc, unit, self.to_string())
            }
        }
    }
}

/// Loads every unit of `dirs` (later directories winning), validates them
/// one by one and together, and returns what boots. A missing directory is
/// not an error; an unreadable file is one, of its unit only.
pub fn load(dirs: &[PathBuf]) -> Loaded {
    let mut diagnostics = Vec::new();
    let mut mains: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut dropins: BTreeMap<String, BTreeMap<OsString, PathBuf>> = BTreeMap::new();
    let mut masked: BTreeSet<String> = BTreeSet::new();
    for dir in dirs {
        let entries = match sorted_entries(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                diagnostics.push(LoadError::ReadDir(e).at(dir, None));
                continue;
            }
        };
        for (file_name, path) in entries {
            let Some(name) = file_name.to_str().filter(|n| !n.starts_with('.')) else {
                continue;
            };
            if let Some(stem) = name.strip_suffix(".toml").filter(|_| links_to_null(&path)) {
                // Masked, as systemd does it: `ln -s /dev/null NAME.toml`.
                mains.remove(stem);
                masked.insert(stem.to_owned());
            } else if let Some(stem) = name.strip_suffix(".toml").filter(|_| path.is_file()) {
                if valid_unit_name(stem) {
                    masked.remove(stem);
                    mains.insert(stem.to_owned(), path);
                } else {
                    diagnostics.push(LoadError::BadName(stem.to_owned()).at(&path, None));
                }
            } else if let Some(stem) = name.strip_suffix(".d").filter(|_| path.is_dir()) {
                match sorted_entries(&path) {
                    Ok(inner) => {
                        let slot = dropins.entry(stem.to_owned()).or_default();
                        for (n, p) in inner {
                            let toml = n
                                .to_str()
                                .is_some_and(|n| n.ends_with(".toml") && !n.starts_with('.'));
                            if toml && p.is_file() {
                                slot.insert(n, p);
                            }
                        }
                    }
                    Err(e) => diagnostics.push(LoadError::ReadDir(e).at(&path, None)),
                }
            }
        }
    }
    let mut sources = Vec::with_capacity(mains.len());
    for (name, file) in mains {
        let mut src = UnitSource {
            name,
            ..UnitSource::default()
        };
        match fs::read_to_string(&file) {
            Ok(text) => src.text = text,
            Err(e) => src
                .read_errors
                .push(LoadError::ReadFile(e).at(&file, Some(&src.name))),
        }
        for (_, path) in dropins.remove(&src.name).unwrap_or_default() {
            match fs::read_to_string(&path) {
                Ok(text) => src.dropins.push((path, text)),
                Err(e) => src
                    .read_errors
                    .push(LoadError::ReadFile(e).at(&path, Some(&src.name))),
            }
        }
        src.file = file;
        sources.push(src);
    }
    for name in &masked {
        dropins.remove(name);
    }
    for (name, orphans) in dropins {
        if let Some(path) = orphans.values().next() {
            diagnostics.push(LoadError::OrphanDropin(name).at(path, None));
        }
    }
    let mut loaded = resolve_masked(sources, masked.into_iter().collect());
    loaded.diagnostics.extend(diagnostics);
    loaded.diagnostics.sort();
    loaded
}

/// Whether `path` is a symbolic link to /dev/null (a masked unit).
fn links_to_null(path: &Path) -> bool {
    fs::read_link(path).is_ok_and(|t| t == Path::new("/dev/null"))
}

/// The entries of `dir`, sorted by file name.
fn sorted_entries(dir: &Path) -> io::Result<Vec<(OsString, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        out.push((entry.file_name(), entry.path()));
    }
    out.sort();
    Ok(out)
}
