//! Building an initramfs from a manifest, and writing it atomically.
//!
//! The archive always holds the skeleton keel expects before anything is
//! mounted: `/init` (the keel binary, 0755), the mount points `/proc /sys /dev
//! /run /tmp /var`, `/etc/keel/units`, and `/dev/console` (c 5 1, 0600) so the
//! kernel can open the console before devtmpfs exists. Then the manifest's unit
//! files (to `/etc/keel/units/`), files, symlinks and directories, and its
//! kernel modules with their dependencies under `/lib/modules/<release>/`, with
//! a `modules.dep` (and `modules.order`) filtered to the included modules and a
//! copy of `modules.builtin`, so that keel can load them in order at boot.
//!
//! Output is deterministic: the same manifest and inputs give the same bytes
//! (mtime 0, or `SOURCE_DATE_EPOCH`; the gzip header carries no name or time).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cpio::{Archive, CpioError};
use crate::kernel::{HostRoots, KernelError};
use crate::manifest::{Compression, Manifest};
use crate::modules::{ModuleDb, ModulesError};

/// Where keel's release build lands, relative to the workspace root.
pub const DEFAULT_KEEL_PATH: &str = "target/x86_64-unknown-linux-musl/release/keel";

/// Why an initramfs could not be built or written.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The keel binary to put in as /init does not exist.
    #[error(
        "keel binary {path} not found: run `make keel` (or pass --keel PATH, or set KEEL_BIN)"
    )]
    MissingKeel {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// `SOURCE_DATE_EPOCH` is not a number of seconds that fits newc's mtime.
    #[error("SOURCE_DATE_EPOCH={value:?} is not a number of seconds below 2^32")]
    SourceDateEpoch {
        /// The variable's value.
        value: String,
    },
    /// The units directory could not be listed.
    #[error("cannot list units directory {path}: {source}")]
    ReadUnits {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An entry could not be added (missing source file, bad or clashing path).
    #[error(transparent)]
    Entry(#[from] CpioError),
    /// The kernel could not be found.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// Modules could not be read or resolved.
    #[error(transparent)]
    Modules(#[from] ModulesError),
    /// The output could not be written; nothing was left behind.
    #[error("cannot write {path}: {source}")]
    WriteOutput {
        /// The output file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Inputs of a build besides the manifest.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The keel binary that becomes /init.
    pub keel: PathBuf,
    /// Where the host's kernels and modules are.
    pub roots: HostRoots,
    /// The mtime of every entry.
    pub mtime: u32,
}

impl BuildOptions {
    /// Options with the default host roots and the mtime from the environment.
    pub fn new(keel: PathBuf) -> Result<Self, BuildError> {
        Ok(BuildOptions {
            keel,
            roots: HostRoots::default(),
            mtime: mtime_from_env()?,
        })
    }
}

/// The keel binary to use: `explicit` (from `--keel`), else `$KEEL_BIN`, else
/// [`DEFAULT_KEEL_PATH`] relative to the current directory.
pub fn keel_path(explicit: Option<&Path>) -> PathBuf {
    match (explicit, std::env::var_os("KEEL_BIN")) {
        (Some(path), _) => path.to_owned(),
        (None, Some(env)) if !env.is_empty() => PathBuf::from(env),
        _ => PathBuf::from(DEFAULT_KEEL_PATH),
    }
}

/// `SOURCE_DATE_EPOCH` if set (and non-empty), else 0.
pub fn mtime_from_env() -> Result<u32, BuildError> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) if !value.is_empty() => value
            .trim()
            .parse()
            .map_err(|_| BuildError::SourceDateEpoch { value }),
        _ => Ok(0),
    }
}

/// A built initramfs.
#[derive(Clone, Debug)]
pub struct Initramfs {
    /// The archive's content.
    pub archive: Archive,
    /// The bytes to write: the archive, compressed as the manifest asks.
    pub bytes: Vec<u8>,
    /// Size of the uncompressed archive.
    pub archive_len: usize,
    /// The kernel release modules were taken from, if any were.
    pub release: Option<String>,
    /// Names of the included modules, in load order.
    pub modules: Vec<String>,
}

/// Builds the initramfs that `manifest` describes.
pub fn build_initramfs(manifest: &Manifest, opts: &BuildOptions) -> Result<Initramfs, BuildError> {
    let mut archive = Archive::with_mtime(opts.mtime);
    if !opts.keel.is_file() {
        return Err(BuildError::MissingKeel {
            path: opts.keel.clone(),
        });
    }
    archive.add_file_from_path("/init", &opts.keel, Some(0o755))?;
    for dir in ["/proc", "/sys", "/dev", "/run", "/var", "/etc/keel/units"] {
        archive.add_dir(dir, 0o755)?;
    }
    archive.add_dir("/tmp", 0o1777)?;
    archive.add_char_device("/dev/console", 0o600, 5, 1)?;

    let spec = &manifest.initramfs;
    if let Some(units) = &spec.units {
        add_units(&mut archive, &manifest.resolve(units))?;
    }
    for file in &spec.files {
        archive.add_file_from_path(&file.dest, &manifest.resolve(&file.src), file.mode)?;
    }
    for link in &spec.symlinks {
        archive.add_symlink(&link.dest, &link.target)?;
    }
    for dir in &spec.dirs {
        archive.add_dir(&dir.dest, dir.mode.unwrap_or(0o755))?;
    }

    let (mut release, mut modules) = (None, Vec::new());
    if !spec.modules.is_empty() {
        let r = opts.roots.release(&manifest.kernel)?;
        modules = add_modules(&mut archive, &opts.roots.modules_dir(&r), &r, &spec.modules)?;
        release = Some(r);
    }

    let raw = archive.to_bytes();
    let archive_len = raw.len();
    let bytes = match spec.compress {
        Compression::None => raw,
        Compression::Gzip => gzip(&raw),
    };
    Ok(Initramfs {
        archive,
        bytes,
        archive_len,
        release,
        modules,
    })
}

/// Every `*.toml` directly in `dir`, to `/etc/keel/units/`, mode 0644.
fn add_units(archive: &mut Archive, dir: &Path) -> Result<(), BuildError> {
    let read_err = |source| BuildError::ReadUnits {
        path: dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(".toml") && path.is_file() {
            archive.add_file_from_path(&format!("/etc/keel/units/{name}"), &path, Some(0o644))?;
        }
    }
    Ok(())
}

/// The modules `names` and their dependencies, with filtered metadata.
fn add_modules(
    archive: &mut Archive,
    dir: &Path,
    release: &str,
    names: &[String],
) -> Result<Vec<String>, BuildError> {
    let db = ModuleDb::load(dir, release)?;
    let order = db.resolve(names)?;
    let dest_dir = format!("/lib/modules/{release}");
    for module in &order {
        let dest = format!("{dest_dir}/{}", module.path);
        archive.add_file_from_path(&dest, &dir.join(&module.path), Some(0o644))?;
    }
    archive.add_file(
        &format!("{dest_dir}/modules.dep"),
        db.render_dep(&order),
        0o644,
    )?;
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).ok();
    if let Some(builtin) = read("modules.builtin") {
        archive.add_file(&format!("{dest_dir}/modules.builtin"), builtin, 0o644)?;
    }
    if let Some(all) = read("modules.order") {
        let included: std::collections::BTreeSet<&str> =
            order.iter().map(|m| m.path.as_str()).collect();
        let filtered: String = all
            .lines()
            .filter(|l| included.contains(l.trim()))
            .map(|l| format!("{}\n", l.trim()))
            .collect();
        archive.add_file(&format!("{dest_dir}/modules.order"), filtered, 0o644)?;
    }
    Ok(order.into_iter().map(|m| m.name.clone()).collect())
}

/// gzip with a fixed header (no file name, mtime 0), so output is reproducible.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(data);
    encoder.finish().unwrap_or_default()
}

/// Writes `bytes` to `path` atomically: into a temporary file in the same
/// directory, then renamed over `path`. On error neither file is left behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    let err = |source| BuildError::WriteOutput {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".keel-image-")
        .tempfile_in(dir)
        .map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out.img");
        write_atomic(&out, b"one").unwrap();
        write_atomic(&out, b"two").unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["out.img"]);
        let missing_dir = tmp.path().join("nope/out.img");
        assert!(
            matches!(write_atomic(&missing_dir, b"x"), Err(BuildError::WriteOutput { path, .. }) if path == missing_dir)
        );
    }

    #[test]
    fn gzip_is_deterministic() {
        assert_eq!(gzip(b"abc"), gzip(b"abc"));
        assert_eq!(&gzip(b"abc")[..2], &[0x1f, 0x8b]);
    }
}
