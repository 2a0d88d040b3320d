//! The read-only root image: a manifest's `[rootfs]` tree, staged in a
//! temporary directory and packed with `mkfs.erofs`, reproducibly.
//!
//! Every root holds keel itself at `/usr/lib/keel/keel` (the same static
//! binary as the initramfs's `/init`: after switch_root, stage 1 execs the
//! root's own keel, so an updated root updates the init), `/sbin/init` linking
//! to it, the unit directory `/usr/lib/keel/units`, and the mount points
//! stage 1 uses: `/proc /sys /dev /run /tmp /var /etc`, with `/etc/keel/units`.
//!
//! Reproducible: the same manifest and inputs give the same bytes. Every file
//! gets an explicit mode, mkfs.erofs gets `-T` (every timestamp:
//! `SOURCE_DATE_EPOCH` or 0), `-U` (a UUID derived from the image name),
//! `--all-root` and `-x -1` (no xattrs from the build host).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::{mtime_from_env, BuildError};
use crate::gpt::Guid;
use crate::manifest::{Manifest, RootfsSpec};

/// Where keel lives in a root image.
pub const KEEL_PATH: &str = "/usr/lib/keel/keel";
/// Where the root image's units live.
pub const UNITS_DIR: &str = "/usr/lib/keel/units";

/// Why a root image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// The manifest has no `[rootfs]` section.
    #[error("manifest {0} has no [rootfs] section")]
    NoRootfs(PathBuf),
    /// The keel binary is missing.
    #[error("keel binary {0} not found: run `make keel` (or pass --keel PATH, or set KEEL_BIN)")]
    MissingKeel(PathBuf),
    /// A file or directory could not be put into the staging tree.
    #[error("cannot stage {dest} (from {src}): {source}")]
    Stage {
        /// The path in the image.
        dest: String,
        /// Where it came from on the host (or "-").
        src: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// mkfs.erofs could not be run.
    #[error("cannot run mkfs.erofs (install erofs-utils): {0}")]
    MkfsSpawn(std::io::Error),
    /// mkfs.erofs failed.
    #[error("mkfs.erofs failed ({status}): {stderr}")]
    Mkfs {
        /// Its exit status.
        status: String,
        /// What it said.
        stderr: String,
    },
    /// The shared libraries of a `[[rootfs.binaries]]` program could not be found.
    #[error("cannot find the libraries of {}: {reason}", binary.display())]
    Libraries {
        /// The program.
        binary: PathBuf,
        /// What ldd said, or why it could not be run.
        reason: String,
    },
    /// An `[[rootfs.oci]]` image could not be built.
    #[error(transparent)]
    Oci(#[from] crate::oci::OciError),
    /// The temporary directory or the output could not be written.
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// A built root image.
#[derive(Clone, Debug)]
pub struct RootImage {
    /// The erofs bytes.
    pub bytes: Vec<u8>,
    /// The file system UUID (`UUID=` on the kernel command line).
    pub uuid: Guid,
}

/// The file system UUID of `manifest`'s root image.
pub fn root_uuid(manifest: &Manifest) -> Guid {
    Guid::derived(&format!("{}:rootfs", manifest.name))
}

/// Builds the root image of `manifest` with `keel` as its init.
pub fn build_rootfs(manifest: &Manifest, keel: &Path) -> Result<RootImage, RootfsError> {
    let spec = manifest
        .rootfs
        .as_ref()
        .ok_or_else(|| RootfsError::NoRootfs(manifest.path.clone()))?;
    if !keel.is_file() {
        return Err(RootfsError::MissingKeel(keel.to_owned()));
    }
    let mtime = mtime_from_env()?;
    let work = tempfile::Builder::new()
        .prefix("keel-rootfs-")
        .tempdir()
        .map_err(|source| stage_err("/", Path::new("-"), source))?;
    let tree = work.path().join("root");
    stage(manifest, spec, keel, &tree, mtime.into())?;
    let out = work.path().join("root.erofs");
    let uuid = root_uuid(manifest);
    let output = Command::new("mkfs.erofs")
        .arg(format!("-T{mtime}"))
        .arg(format!("-U{}", uuid.to_string().to_lowercase()))
        .args(["--all-root", "-x-1", "--quiet"])
        .arg(&out)
        .arg(&tree)
        .env("SOURCE_DATE_EPOCH", mtime.to_string())
        .output()
        .map_err(RootfsError::MkfsSpawn)?;
    if !output.status.success() {
        return Err(RootfsError::Mkfs {
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    let bytes = std::fs::read(&out).map_err(|source| stage_err("-", &out, source))?;
    Ok(RootImage { bytes, uuid })
}

fn stage_err(dest: &str, src: &Path, source: std::io::Error) -> RootfsError {
    RootfsError::Stage {
        dest: dest.to_owned(),
        src: src.to_owned(),
        source,
    }
}

/// Writes the tree of the root image under `tree` (`mtime`: the OCI
/// archives' timestamps).
pub fn stage(
    manifest: &Manifest,
    spec: &RootfsSpec,
    keel: &Path,
    tree: &Path,
    mtime: u64,
) -> Result<(), RootfsError> {
    for (dir, mode) in [
        ("/proc", 0o555),
        ("/sys", 0o555),
        ("/dev", 0o755),
        ("/run", 0o755),
        ("/tmp", 0o1777),
        ("/var", 0o755),
        ("/etc", 0o755),
        ("/etc/keel/units", 0o755),
        (UNITS_DIR, 0o755),
    ] {
        make_dir(tree, dir, mode)?;
    }
    copy_file(tree, KEEL_PATH, keel, Some(0o755))?;
    make_symlink(tree, "/sbin/init", "../usr/lib/keel/keel")?;
    if let Some(units) = &spec.units {
        let dir = manifest.resolve(units);
        let list = std::fs::read_dir(&dir).map_err(|e| stage_err(UNITS_DIR, &dir, e))?;
        for entry in list {
            let path = entry.map_err(|e| stage_err(UNITS_DIR, &dir, e))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.ends_with(".toml") && path.is_file() {
                copy_file(tree, &format!("{UNITS_DIR}/{name}"), &path, Some(0o644))?;
            }
        }
    }
    for d in &spec.dirs {
        make_dir(tree, &d.dest, d.mode.unwrap_or(0o755))?;
    }
    for f in &spec.files {
        copy_file(tree, &f.dest, &manifest.resolve(&f.src), f.mode)?;
    }
    for l in &spec.symlinks {
        make_symlink(tree, &l.dest, &l.target)?;
    }
    let mut libraries = std::collections::BTreeSet::new();
    for b in &spec.binaries {
        let src = manifest.resolve(&b.src);
        let dest = b
            .dest
            .clone()
            .unwrap_or_else(|| b.src.display().to_string());
        copy_file(tree, &dest, &src, None)?;
        libraries.extend(shared_libraries(&src)?);
    }
    for lib in &libraries {
        copy_file(tree, lib, Path::new(lib), None)?;
    }
    for o in &spec.oci {
        let image = crate::oci::build_oci(manifest, o, mtime)?;
        let path = host_path(tree, &o.dest);
        make_parents(tree, &path, &o.dest)?;
        std::fs::write(&path, &image.bytes).map_err(|e| stage_err(&o.dest, Path::new("-"), e))?;
        set_mode(&path, &o.dest, 0o644)?;
    }
    Ok(())
}

/// The ELF interpreter and shared libraries `binary` loads, as absolute
/// host paths, from the host's `ldd`. A static program has none.
pub fn shared_libraries(binary: &Path) -> Result<Vec<String>, RootfsError> {
    let err = |reason: String| RootfsError::Libraries {
        binary: binary.to_owned(),
        reason,
    };
    if !binary.is_file() {
        return Err(err("no such file".into()));
    }
    let out = Command::new("ldd")
        .arg(binary)
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| err(format!("cannot run ldd: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if text.contains("not a dynamic executable") || stderr.contains("not a dynamic executable")
        {
            return Ok(Vec::new());
        }
        return Err(err(format!("ldd failed: {}", stderr.trim())));
    }
    parse_ldd(&text).map_err(err)
}

/// The paths in `ldd` output: `name => /path (0x…)` and `/interp (0x…)`;
/// the vDSO has no file and is skipped; `=> not found` is an error.
fn parse_ldd(text: &str) -> Result<Vec<String>, String> {
    let mut paths = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.contains("statically linked") {
            continue;
        }
        let path = match line.split_once("=>") {
            Some((name, rest)) => {
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    return Err(format!("{} not found", name.trim()));
                }
                rest.split(" (").next().unwrap_or("").trim()
            }
            None => line.split(" (").next().unwrap_or("").trim(),
        };
        if path.starts_with('/') {
            paths.push(path.to_owned());
        }
    }
    Ok(paths)
}

fn host_path(tree: &Path, dest: &str) -> PathBuf {
    tree.join(dest.trim_start_matches('/'))
}

fn set_mode(path: &Path, dest: &str, mode: u32) -> Result<(), RootfsError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| stage_err(dest, Path::new("-"), e))
}

/// Creates `dest` and its missing parents (0755), then gives it `mode`.
fn make_dir(tree: &Path, dest: &str, mode: u32) -> Result<(), RootfsError> {
    let path = host_path(tree, dest);
    make_parents(tree, &path, dest)?;
    if !path.is_dir() {
        std::fs::create_dir(&path).map_err(|e| stage_err(dest, Path::new("-"), e))?;
    }
    set_mode(&path, dest, mode)
}

fn make_parents(tree: &Path, path: &Path, dest: &str) -> Result<(), RootfsError> {
    let mut missing = Vec::new();
    let mut p = path.parent();
    while let Some(dir) = p {
        if dir.is_dir() || dir == tree.parent().unwrap_or(tree) {
            break;
        }
        missing.push(dir.to_owned());
        p = dir.parent();
    }
    for dir in missing.iter().rev() {
        std::fs::create_dir(dir).map_err(|e| stage_err(dest, Path::new("-"), e))?;
        set_mode(dir, dest, 0o755)?;
    }
    Ok(())
}

fn copy_file(tree: &Path, dest: &str, src: &Path, mode: Option<u32>) -> Result<(), RootfsError> {
    use std::os::unix::fs::PermissionsExt;
    let path = host_path(tree, dest);
    make_parents(tree, &path, dest)?;
    let meta = std::fs::metadata(src).map_err(|e| stage_err(dest, src, e))?;
    std::fs::copy(src, &path).map_err(|e| stage_err(dest, src, e))?;
    set_mode(
        &path,
        dest,
        mode.unwrap_or(meta.permissions().mode() & 0o7777),
    )
}

fn make_symlink(tree: &Path, dest: &str, target: &str) -> Result<(), RootfsError> {
    let path = host_path(tree, dest);
    make_parents(tree, &path, dest)?;
    let _ = std::fs::remove_file(&path);
    std::os::unix::fs::symlink(target, &path).map_err(|e| stage_err(dest, Path::new(target), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(dir: &Path) -> Manifest {
        std::fs::create_dir_all(dir.join("units")).unwrap();
        std::fs::write(dir.join("units/a.toml"), "exec = [\"/bin/true\"]\n").unwrap();
        std::fs::write(dir.join("units/notes.txt"), "not a unit").unwrap();
        std::fs::write(dir.join("hello"), "hello\n").unwrap();
        let text = "name = \"r\"\n[rootfs]\nunits = \"units\"\n\
            [[rootfs.files]]\nsrc = \"hello\"\ndest = \"/usr/share/hello\"\nmode = 0o640\n\
            [[rootfs.symlinks]]\ndest = \"/bin/sh\"\ntarget = \"busybox\"\n\
            [[rootfs.dirs]]\ndest = \"/var/lib/x\"\nmode = 0o700\n";
        Manifest::parse(text, &dir.join("r.toml")).unwrap()
    }

    #[test]
    fn the_tree_has_keel_units_mount_points_and_the_manifest_entries() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let m = manifest(tmp.path());
        let keel = tmp.path().join("keel");
        std::fs::write(&keel, "#!keel").unwrap();
        let tree = tmp.path().join("tree");
        stage(&m, m.rootfs.as_ref().unwrap(), &keel, &tree, 0).unwrap();
        let mode = |p: &str| {
            std::fs::symlink_metadata(tree.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(
            std::fs::read(tree.join("usr/lib/keel/keel")).unwrap(),
            b"#!keel"
        );
        assert_eq!(mode("usr/lib/keel/keel"), 0o755);
        assert!(tree.join("usr/lib/keel/units/a.toml").is_file());
        assert!(!tree.join("usr/lib/keel/units/notes.txt").exists());
        assert_eq!(mode("usr/share/hello"), 0o640);
        assert_eq!(mode("usr/share"), 0o755);
        assert_eq!(mode("tmp"), 0o1777);
        assert_eq!(mode("var/lib/x"), 0o700);
        for d in ["proc", "sys", "dev", "run", "var", "etc/keel/units"] {
            assert!(tree.join(d).is_dir(), "{d}");
        }
        assert_eq!(
            std::fs::read_link(tree.join("sbin/init")).unwrap(),
            Path::new("../usr/lib/keel/keel")
        );
        assert_eq!(
            std::fs::read_link(tree.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
    }

    #[test]
    fn ldd_output_to_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007ffc1d1f0000)\n\
            \tlibseccomp.so.2 => /lib/x86_64-linux-gnu/libseccomp.so.2 (0x00007f0000000000)\n\
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0000100000)\n\
            \t/lib64/ld-linux-x86-64.so.2 (0x00007f0000200000)\n";
        assert_eq!(
            parse_ldd(text).unwrap(),
            [
                "/lib/x86_64-linux-gnu/libseccomp.so.2",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
        assert_eq!(
            parse_ldd("\tlibfoo.so.1 => not found\n").unwrap_err(),
            "libfoo.so.1 not found"
        );
        assert!(parse_ldd("\tstatically linked\n").unwrap().is_empty());
    }

    #[test]
    fn a_binary_comes_with_its_interpreter_and_libraries() {
        // /bin/sh on the build host is dynamic (dash or bash): its closure
        // holds libc and the interpreter, copied to the host's paths.
        let tmp = tempfile::tempdir().unwrap();
        let text = "name = \"b\"\n[rootfs]\n[[rootfs.binaries]]\nsrc = \"/bin/sh\"\ndest = \"/bin/hostsh\"\n\
            [[rootfs.binaries]]\nsrc = \"/bin/busybox\"\n";
        let m = Manifest::parse(text, &tmp.path().join("b.toml")).unwrap();
        let keel = tmp.path().join("keel");
        std::fs::write(&keel, "#!keel").unwrap();
        let tree = tmp.path().join("tree");
        stage(&m, m.rootfs.as_ref().unwrap(), &keel, &tree, 0).unwrap();
        assert!(tree.join("bin/hostsh").is_file());
        assert!(tree.join("bin/busybox").is_file());
        let libs = shared_libraries(Path::new("/bin/sh")).unwrap();
        assert!(libs.iter().any(|l| l.contains("libc.so")), "{libs:?}");
        assert!(libs.iter().any(|l| l.contains("ld-linux")), "{libs:?}");
        for lib in &libs {
            let copied = tree.join(lib.trim_start_matches('/'));
            assert!(copied.is_file() && !copied.is_symlink(), "{lib}");
        }
        // A static program has no closure.
        assert!(shared_libraries(Path::new("/bin/busybox"))
            .unwrap()
            .is_empty());
        let e = shared_libraries(Path::new("/nonexistent")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent"), "{e}");
    }

    #[test]
    fn no_rootfs_section_is_named() {
        let m = Manifest::parse("name = \"x\"", Path::new("/m/x.toml")).unwrap();
        let e = build_rootfs(&m, Path::new("/bin/true")).unwrap_err();
        assert!(e.to_string().contains("/m/x.toml has no [rootfs]"), "{e}");
    }
}
