//! Image manifests: one TOML file describing a kernel and an initramfs.
//!
//! ```toml
//! name = "minimal"
//!
//! [kernel]
//! release = "auto"        # newest /boot/vmlinuz-* with /lib/modules/<release>; or e.g. "6.1.0-56-cloud-amd64"
//! image = ""              # optional kernel image; default /boot/vmlinuz-<release>
//! cmdline = "console=ttyS0 panic=-1 keel.after-boot=poweroff"
//!
//! [initramfs]
//! compress = "gzip"       # gzip | none
//! modules = ["virtio_blk"] # plus their dependencies from modules.dep
//! units = "minimal/units" # its *.toml go to /etc/keel/units/
//!
//! [[initramfs.files]]
//! src = "/bin/busybox"    # host path; relative = to the manifest's directory
//! dest = "/bin/busybox"
//! mode = 0o755            # optional, default: the source's permission bits
//!
//! [[initramfs.symlinks]]
//! dest = "/bin/sh"
//! target = "busybox"
//!
//! [[initramfs.dirs]]
//! dest = "/var/lib/data"
//! mode = 0o700            # optional, default 0o755
//!
//! [rootfs]                # optional: a read-only root image (erofs)
//! units = "disk/units"    # its *.toml go to /usr/lib/keel/units/
//! [[rootfs.files]]        # and rootfs.symlinks, rootfs.dirs: as for the initramfs
//! src = "/bin/busybox"
//! dest = "/bin/busybox"
//!
//! [[rootfs.binaries]]     # a dynamic program with its ELF interpreter and libraries
//! src = "/usr/bin/etcd"   # dest = "/usr/bin/etcd" by default
//! [[rootfs.oci]]          # an OCI image-layout archive built from host files
//! name = "keel.local/hello:1"
//! dest = "/usr/share/keel/oci/hello.tar"
//! cmd = ["/bin/sh", "-c", "echo hello"]   # and entrypoint, env, working-dir
//! [[rootfs.oci.files]]    # and rootfs.oci.symlinks, rootfs.oci.dirs
//! src = "/bin/busybox"
//! dest = "/bin/busybox"
//!
//! [disk]                  # optional: a GPT disk with KEEL-A, KEEL-B, KEEL-STATE
//! slot-mib = 64           # size of KEEL-A and of KEEL-B
//! state-mib = 64          # size of KEEL-STATE (ext4, /var)
//! slot-b = "empty"        # empty | copy (B holds the same root as A)
//! ```
//!
//! Every table rejects unknown keys; errors name the manifest file (and, for
//! syntax and schema errors, the line and column). Every section and field but
//! `name` is optional. Relative paths are resolved against the manifest's
//! directory, so a manifest can be used from any working directory.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a manifest could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read manifest {}: {source}", path.display())]
    Read {
        /// The manifest file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not fit the schema (unknown key,
    /// wrong type, missing `name`).
    #[error("manifest {}:{line}:{column}: {message}", path.display())]
    Parse {
        /// The manifest file.
        path: PathBuf,
        /// 1-based line of the error (1 if TOML gave no position).
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong, on one line.
        message: String,
    },
    /// A value is well-typed but unusable.
    #[error("manifest {}: {field}: {reason}", path.display())]
    Invalid {
        /// The manifest file.
        path: PathBuf,
        /// Which field, e.g. `initramfs.files[2].dest`.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

/// A parsed manifest, with the file it came from.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Manifest {
    /// The image's name.
    pub name: String,
    /// Which kernel boots the image.
    #[serde(default)]
    pub kernel: KernelSpec,
    /// What goes into the initramfs.
    #[serde(default)]
    pub initramfs: InitramfsSpec,
    /// The read-only root image, if the image has one.
    #[serde(default)]
    pub rootfs: Option<RootfsSpec>,
    /// The disk layout, if the image is a disk (needs `[rootfs]`).
    #[serde(default)]
    pub disk: Option<DiskSpec>,
    /// The manifest file (set by [`Manifest::load`] and [`Manifest::parse`]).
    #[serde(skip)]
    pub path: PathBuf,
}

/// The `[kernel]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KernelSpec {
    /// `"auto"` or an explicit release such as `6.1.0-56-cloud-amd64`.
    #[serde(default = "auto")]
    pub release: String,
    /// Kernel image; empty or absent means `/boot/vmlinuz-<release>`.
    #[serde(default)]
    pub image: Option<PathBuf>,
    /// The kernel command line used by `keel-image boot`.
    #[serde(default = "default_cmdline")]
    pub cmdline: String,
}

fn auto() -> String {
    "auto".to_owned()
}

fn default_cmdline() -> String {
    "console=ttyS0 panic=-1".to_owned()
}

impl Default for KernelSpec {
    fn default() -> Self {
        KernelSpec {
            release: auto(),
            image: None,
            cmdline: default_cmdline(),
        }
    }
}

/// How the initramfs is compressed.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    /// gzip, which every kernel can unpack.
    #[default]
    Gzip,
    /// A plain newc archive.
    None,
}

/// The `[initramfs]` table.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct InitramfsSpec {
    /// Compression of the written archive.
    #[serde(default)]
    pub compress: Compression,
    /// Kernel modules to include, dependencies added from modules.dep.
    #[serde(default)]
    pub modules: Vec<String>,
    /// Directory whose `*.toml` files go to `/etc/keel/units/`.
    #[serde(default)]
    pub units: Option<PathBuf>,
    /// Host files to copy in.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// Symbolic links to create.
    #[serde(default)]
    pub symlinks: Vec<SymlinkSpec>,
    /// Extra directories to create.
    #[serde(default)]
    pub dirs: Vec<DirSpec>,
}

/// The `[rootfs]` table: the tree of the read-only root image. keel itself
/// goes to `/usr/lib/keel/keel` and the mount points are always there.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RootfsSpec {
    /// Directory whose `*.toml` files go to `/usr/lib/keel/units/`.
    #[serde(default)]
    pub units: Option<PathBuf>,
    /// Host files to copy in.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// Symbolic links to create.
    #[serde(default)]
    pub symlinks: Vec<SymlinkSpec>,
    /// Extra directories to create.
    #[serde(default)]
    pub dirs: Vec<DirSpec>,
    /// Dynamically linked programs, copied with their ELF interpreter and
    /// the shared libraries they need (as the host's `ldd` resolves them).
    #[serde(default)]
    pub binaries: Vec<BinarySpec>,
    /// OCI images built from host files, each written as an image-layout
    /// archive into the root.
    #[serde(default)]
    pub oci: Vec<OciSpec>,
}

/// One `[[rootfs.binaries]]` entry: a program and its library closure.
/// The libraries and the interpreter go to the same paths as on the host.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BinarySpec {
    /// Host path of the program (absolute, or relative to the manifest).
    pub src: PathBuf,
    /// Its path in the root; default: the same as `src` (which must then be absolute).
    #[serde(default)]
    pub dest: Option<String>,
}

/// One `[[rootfs.oci]]` entry: an OCI image of one layer, made of host
/// files, written as an image-layout archive (`ctr images import` reads it).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OciSpec {
    /// The image's reference, e.g. `keel.local/hello:1` (`:latest` if no tag).
    pub name: String,
    /// Where the archive goes in the root.
    pub dest: String,
    /// The image's default command (`Cmd`).
    #[serde(default)]
    pub cmd: Vec<String>,
    /// The image's `Entrypoint`.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// `KEY=VALUE` environment; a standard PATH is added if none is given.
    #[serde(default)]
    pub env: Vec<String>,
    /// The working directory (default `/`).
    #[serde(default)]
    pub working_dir: Option<String>,
    /// Host files to put into the layer.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// Symbolic links in the layer.
    #[serde(default)]
    pub symlinks: Vec<SymlinkSpec>,
    /// Directories in the layer.
    #[serde(default)]
    pub dirs: Vec<DirSpec>,
}

/// What slot B holds on a new disk.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SlotB {
    /// Nothing (zeros): the first update writes it.
    #[default]
    Empty,
    /// The same root image as slot A.
    Copy,
}

/// The `[disk]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DiskSpec {
    /// Size of each root slot (`KEEL-A`, `KEEL-B`) in MiB.
    #[serde(default = "default_slot_mib")]
    pub slot_mib: u64,
    /// Size of `KEEL-STATE` in MiB.
    #[serde(default = "default_state_mib")]
    pub state_mib: u64,
    /// What slot B holds.
    #[serde(default)]
    pub slot_b: SlotB,
}

fn default_slot_mib() -> u64 {
    64
}

fn default_state_mib() -> u64 {
    64
}

/// One `[[initramfs.files]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileSpec {
    /// Host path, relative to the manifest's directory unless absolute.
    pub src: PathBuf,
    /// Absolute path in the initramfs.
    pub dest: String,
    /// Permission bits; default: the source's.
    #[serde(default)]
    pub mode: Option<u32>,
}

/// One `[[initramfs.symlinks]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SymlinkSpec {
    /// Absolute path of the link in the initramfs.
    pub dest: String,
    /// What it points to, stored verbatim (relative targets are relative to the link).
    pub target: String,
}

/// One `[[initramfs.dirs]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DirSpec {
    /// Absolute path in the initramfs.
    pub dest: String,
    /// Permission bits; default 0o755.
    #[serde(default)]
    pub mode: Option<u32>,
}

/// Whether `path` is absolute and has no `..` component.
fn absolute_plain(path: &str) -> bool {
    path.starts_with('/') && !path.split('/').any(|c| c == "..")
}

impl Manifest {
    /// Reads and validates the manifest at `path`.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates manifest text; `path` names it in errors and anchors
    /// relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
        let mut manifest: Manifest = toml::from_str(text).map_err(|e: toml::de::Error| {
            let at = e.span().map_or(0, |span| span.start.min(text.len()));
            let before = &text[..at];
            ManifestError::Parse {
                path: path.to_owned(),
                line: before.matches('\n').count() + 1,
                column: before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1,
                message: e.message().trim().replace('\n', " "),
            }
        })?;
        manifest.path = path.to_owned();
        if manifest.kernel.image.as_deref() == Some(Path::new("")) {
            manifest.kernel.image = None;
        }
        manifest.validate()?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<(), ManifestError> {
        let invalid = |field: String, reason: &str| ManifestError::Invalid {
            path: self.path.clone(),
            field,
            reason: reason.to_owned(),
        };
        if self.name.trim().is_empty() {
            return Err(invalid("name".into(), "must not be empty"));
        }
        if self.kernel.release.trim().is_empty() || self.kernel.release.contains('/') {
            return Err(invalid(
                "kernel.release".into(),
                "must be \"auto\" or a release such as 6.1.0-56-cloud-amd64",
            ));
        }
        let ramfs = &self.initramfs;
        for (i, name) in ramfs.modules.iter().enumerate() {
            if name.is_empty() || name.contains(['/', ' ']) {
                return Err(invalid(
                    format!("initramfs.modules[{i}]"),
                    "not a module name",
                ));
            }
        }
        let dests = ramfs
            .files
            .iter()
            .map(|f| (&f.dest, f.mode, "files"))
            .chain(ramfs.symlinks.iter().map(|s| (&s.dest, None, "symlinks")))
            .chain(ramfs.dirs.iter().map(|d| (&d.dest, d.mode, "dirs")));
        let mut index = std::collections::BTreeMap::<&str, usize>::new();
        for (dest, mode, table) in dests {
            let i = index.entry(table).or_default();
            let field = format!("initramfs.{table}[{i}]");
            *i += 1;
            if !dest.starts_with('/') {
                return Err(invalid(format!("{field}.dest"), "must be an absolute path"));
            }
            if mode.is_some_and(|m| m > 0o7777) {
                return Err(invalid(
                    format!("{field}.mode"),
                    "must be permission bits (at most 0o7777)",
                ));
            }
        }
        for (i, link) in ramfs.symlinks.iter().enumerate() {
            if link.target.is_empty() {
                return Err(invalid(
                    format!("initramfs.symlinks[{i}].target"),
                    "must not be empty",
                ));
            }
        }
        if let Some(root) = &self.rootfs {
            for (i, f) in root.files.iter().enumerate() {
                if !f.dest.starts_with('/') || f.dest.split('/').any(|c| c == "..") {
                    return Err(invalid(
                        format!("rootfs.files[{i}].dest"),
                        "must be an absolute path without ..",
                    ));
                }
            }
            for (i, l) in root.symlinks.iter().enumerate() {
                if !l.dest.starts_with('/') || l.dest.split('/').any(|c| c == "..") {
                    return Err(invalid(
                        format!("rootfs.symlinks[{i}].dest"),
                        "must be an absolute path without ..",
                    ));
                }
            }
            for (i, d) in root.dirs.iter().enumerate() {
                if !d.dest.starts_with('/') || d.dest.split('/').any(|c| c == "..") {
                    return Err(invalid(
                        format!("rootfs.dirs[{i}].dest"),
                        "must be an absolute path without ..",
                    ));
                }
            }
            for (i, b) in root.binaries.iter().enumerate() {
                let dest = match &b.dest {
                    Some(d) => d.clone(),
                    None if b.src.is_absolute() => b.src.display().to_string(),
                    None => {
                        return Err(invalid(
                            format!("rootfs.binaries[{i}].dest"),
                            "needed when src is a relative path",
                        ))
                    }
                };
                if !absolute_plain(&dest) {
                    return Err(invalid(
                        format!("rootfs.binaries[{i}].dest"),
                        "must be an absolute path without ..",
                    ));
                }
            }
            for (i, o) in root.oci.iter().enumerate() {
                let field = format!("rootfs.oci[{i}]");
                if o.name.is_empty() || o.name.contains(char::is_whitespace) {
                    return Err(invalid(
                        format!("{field}.name"),
                        "must be an image reference such as keel.local/hello:1",
                    ));
                }
                let paths = std::iter::once(("dest".to_owned(), &o.dest))
                    .chain(
                        o.files
                            .iter()
                            .enumerate()
                            .map(|(j, f)| (format!("files[{j}].dest"), &f.dest)),
                    )
                    .chain(
                        o.symlinks
                            .iter()
                            .enumerate()
                            .map(|(j, l)| (format!("symlinks[{j}].dest"), &l.dest)),
                    )
                    .chain(
                        o.dirs
                            .iter()
                            .enumerate()
                            .map(|(j, d)| (format!("dirs[{j}].dest"), &d.dest)),
                    );
                for (what, dest) in paths {
                    if !absolute_plain(dest) || dest == "/" {
                        return Err(invalid(
                            format!("{field}.{what}"),
                            "must be an absolute path without ..",
                        ));
                    }
                }
            }
        }
        if let Some(disk) = &self.disk {
            if self.rootfs.is_none() {
                return Err(invalid("disk".into(), "a disk needs a [rootfs] section"));
            }
            if disk.slot_mib == 0 || disk.state_mib < 8 {
                return Err(invalid(
                    "disk".into(),
                    "slot-mib must be at least 1 and state-mib at least 8",
                ));
            }
        }
        Ok(())
    }

    /// The directory relative paths are resolved against.
    pub fn base_dir(&self) -> &Path {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        }
    }

    /// `path` resolved against the manifest's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.base_dir().join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(text, Path::new("/images/test.toml"))
    }

    #[test]
    fn minimal_manifest_gets_defaults() {
        let m = parse("name = \"x\"").unwrap();
        assert_eq!(m.kernel.release, "auto");
        assert_eq!(m.initramfs.compress, Compression::Gzip);
        assert!(m.initramfs.units.is_none());
        assert_eq!(m.resolve(Path::new("u")), Path::new("/images/u"));
        assert_eq!(
            Manifest::parse("name = \"x\"", Path::new("x.toml"))
                .unwrap()
                .resolve(Path::new("u")),
            Path::new("./u")
        );
    }

    #[test]
    fn full_manifest() {
        let m = parse(
            r#"
name = "m"
[kernel]
release = "6.1.0-56-cloud-amd64"
image = ""
cmdline = "console=ttyS0"
[initramfs]
compress = "none"
modules = ["virtio_blk"]
units = "m/units"
[[initramfs.files]]
src = "/bin/busybox"
dest = "/bin/busybox"
mode = 0o755
[[initramfs.symlinks]]
dest = "/bin/sh"
target = "busybox"
[[initramfs.dirs]]
dest = "/data"
"#,
        )
        .unwrap();
        assert_eq!(m.kernel.image, None);
        assert_eq!(m.initramfs.compress, Compression::None);
        assert_eq!(m.initramfs.files[0].mode, Some(0o755));
        assert_eq!(m.initramfs.symlinks[0].target, "busybox");
        assert_eq!(m.initramfs.dirs[0].mode, None);
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_file() {
        for text in [
            "name = \"x\"\ncolour = 1",
            "name = \"x\"\n[kernel]\nrelase = \"auto\"",
            "name = \"x\"\n[[initramfs.files]]\nsrc = \"a\"\ndest = \"/a\"\nmod = 1",
            "name = \"x\"\n[initramfs]\ncompress = \"xz\"",
            "[kernel]",
        ] {
            let err = parse(text).unwrap_err();
            assert!(
                matches!(err, ManifestError::Parse { .. }),
                "{text:?}: {err}"
            );
            assert!(err.to_string().contains("/images/test.toml:"), "{err}");
            assert_eq!(err.to_string().lines().count(), 1, "{err}");
        }
        let err = parse("name = \"x\"\n[kernel]\nrelase = \"auto\"").unwrap_err();
        assert!(
            matches!(&err, ManifestError::Parse { line: 3, column: 1, message, .. }
                if message.contains("relase")),
            "{err:?}"
        );
    }

    #[test]
    fn rootfs_and_disk_sections() {
        let m = parse(
            "name = \"d\"\n[rootfs]\nunits = \"u\"\n[[rootfs.files]]\nsrc = \"a\"\ndest = \"/a\"\n[disk]\nslot-mib = 32\nslot-b = \"copy\"",
        )
        .unwrap();
        let disk = m.disk.unwrap();
        assert_eq!(
            (disk.slot_mib, disk.state_mib, disk.slot_b),
            (32, 64, SlotB::Copy)
        );
        assert_eq!(m.rootfs.unwrap().files[0].dest, "/a");
        assert!(parse("name = \"x\"").unwrap().disk.is_none());
        match parse("name = \"d\"\n[disk]") {
            Err(ManifestError::Invalid { field, .. }) => assert_eq!(field, "disk"),
            other => panic!("{other:?}"),
        }
        match parse("name = \"d\"\n[rootfs]\n[[rootfs.dirs]]\ndest = \"/a/../b\"") {
            Err(ManifestError::Invalid { field, .. }) => assert_eq!(field, "rootfs.dirs[0].dest"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse("name = \"d\"\n[rootfs]\n[disk]\nslots = 3"),
            Err(ManifestError::Parse { .. })
        ));
    }

    #[test]
    fn rootfs_binaries_and_oci_images() {
        let m = parse(
            "name = \"s\"\n[rootfs]\n[[rootfs.binaries]]\nsrc = \"/usr/bin/etcd\"\n\
             [[rootfs.oci]]\nname = \"keel.local/hello:1\"\ndest = \"/oci/hello.tar\"\ncmd = [\"/bin/sh\"]\n\
             [[rootfs.oci.files]]\nsrc = \"/bin/busybox\"\ndest = \"/bin/busybox\"",
        )
        .unwrap();
        let root = m.rootfs.unwrap();
        assert_eq!(root.binaries[0].src, Path::new("/usr/bin/etcd"));
        assert_eq!(root.oci[0].files[0].dest, "/bin/busybox");
        for (text, field) in [
            ("[[rootfs.binaries]]\nsrc = \"etcd\"", "rootfs.binaries[0].dest"),
            (
                "[[rootfs.binaries]]\nsrc = \"/a\"\ndest = \"b\"",
                "rootfs.binaries[0].dest",
            ),
            ("[[rootfs.oci]]\nname = \"\"\ndest = \"/a\"", "rootfs.oci[0].name"),
            ("[[rootfs.oci]]\nname = \"x\"\ndest = \"a\"", "rootfs.oci[0].dest"),
            (
                "[[rootfs.oci]]\nname = \"x\"\ndest = \"/a\"\n[[rootfs.oci.dirs]]\ndest = \"/../x\"",
                "rootfs.oci[0].dirs[0].dest",
            ),
        ] {
            match parse(&format!("name = \"s\"\n[rootfs]\n{text}")) {
                Err(ManifestError::Invalid { field: f, .. }) => assert_eq!(f, field, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
        assert!(matches!(
            parse(
                "name = \"s\"\n[rootfs]\n[[rootfs.oci]]\nname = \"x\"\ndest = \"/a\"\ncommand = []"
            ),
            Err(ManifestError::Parse { .. })
        ));
    }

    #[test]
    fn invalid_values_name_the_field() {
        for (text, field) in [
            ("name = \"\"", "name"),
            (
                "name = \"x\"\n[[initramfs.files]]\nsrc = \"a\"\ndest = \"a\"",
                "initramfs.files[0].dest",
            ),
            (
                "name = \"x\"\n[[initramfs.dirs]]\ndest = \"/a\"\nmode = 0o17777",
                "initramfs.dirs[0].mode",
            ),
            (
                "name = \"x\"\n[initramfs]\nmodules = [\"a b\"]",
                "initramfs.modules[0]",
            ),
            (
                "name = \"x\"\n[[initramfs.symlinks]]\ndest = \"/a\"\ntarget = \"\"",
                "initramfs.symlinks[0].target",
            ),
        ] {
            match parse(text) {
                Err(ManifestError::Invalid { field: f, .. }) => assert_eq!(f, field, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }
}
