//! A bootable disk image: GPT with the two root slots and the state
//! partition, the root image in slot A, the state partition formatted ext4.
//!
//! ```text
//! LBA 0        protective MBR
//! LBA 1-33     primary GPT header and entries
//! 1 MiB        KEEL-A      root slot A (erofs)     type 4F68BCE3-… (root, x86-64)
//! +slot-mib    KEEL-B      root slot B (empty)     type 4F68BCE3-…
//! +slot-mib    KEEL-STATE  /var, ext4              type 4D21B016-… (/var)
//! last 1 MiB   backup GPT entries and header
//! ```
//!
//! The partitions' GUIDs, the disk GUID and the ext4 UUID are derived from the
//! manifest's name, and mkfs.ext4 runs with a fixed time, so one manifest
//! gives one disk. Slot A starts with priority 1 and successful=1 (the
//! ChromeOS/CoreOS attribute bits), slot B with all zero: with
//! `keel.root=slot` stage 1 boots A, and `keel update apply` fills B and
//! gives it the higher priority (DESIGN.md, "Images and A/B slots").

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::{mtime_from_env, BuildError};
use crate::gpt::{self, slot_bits, Gpt, GptError, Guid};
use crate::manifest::{Manifest, SlotB};
use crate::rootfs::{build_rootfs, RootImage, RootfsError};

/// Labels of the partitions (`PARTLABEL=` on the kernel command line).
pub const SLOT_A: &str = "KEEL-A";
/// Slot B's label.
pub const SLOT_B: &str = "KEEL-B";
/// The state partition's label (also its ext4 label).
pub const STATE: &str = "KEEL-STATE";

const MIB: u64 = 1 << 20;

/// Why a disk could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The manifest has no `[disk]` section.
    #[error("manifest {0} has no [disk] section")]
    NoDisk(PathBuf),
    /// The root image is larger than a slot.
    #[error("the root image ({size} bytes) does not fit a slot of {slot_mib} MiB")]
    RootTooBig {
        /// The image's size.
        size: u64,
        /// The slot size.
        slot_mib: u64,
    },
    /// The root image could not be built.
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    /// The partition table could not be built or written.
    #[error(transparent)]
    Gpt(#[from] GptError),
    /// The disk file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// mkfs.ext4 could not be run or failed.
    #[error("mkfs.ext4 on {STATE} failed: {0}")]
    Mkfs(String),
    /// Temporary files or `SOURCE_DATE_EPOCH`.
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// What was written.
#[derive(Clone, Debug)]
pub struct BuiltDisk {
    /// The partition table.
    pub gpt: Gpt,
    /// The root image's size and UUID.
    pub root_bytes: u64,
    /// The root file system's UUID.
    pub root_uuid: Guid,
    /// The disk's size in bytes.
    pub size: u64,
}

/// The partition table of `manifest`'s disk (without contents).
pub fn layout(manifest: &Manifest) -> Result<Gpt, DiskError> {
    let spec = manifest
        .disk
        .as_ref()
        .ok_or_else(|| DiskError::NoDisk(manifest.path.clone()))?;
    let size = MIB + 2 * spec.slot_mib * MIB + spec.state_mib * MIB + MIB;
    let seed = |what: &str| Guid::derived(&format!("{}:{what}", manifest.name));
    let mut g = Gpt::new(size, seed("disk"))?;
    let slot = spec.slot_mib * MIB;
    g.add(SLOT_A, gpt::types::LINUX_ROOT_X86_64, seed(SLOT_A), slot)?;
    g.add(SLOT_B, gpt::types::LINUX_ROOT_X86_64, seed(SLOT_B), slot)?;
    g.add(
        STATE,
        gpt::types::LINUX_VAR,
        seed(STATE),
        spec.state_mib * MIB,
    )?;
    if let Some(a) = g.find_mut(SLOT_A) {
        a.attributes = (1 << slot_bits::PRIORITY_SHIFT) | slot_bits::SUCCESSFUL;
    }
    Ok(g)
}

/// Builds `manifest`'s disk into `output` (atomically: a temporary file in
/// the same directory, renamed when complete), with `keel` as the root's init.
pub fn build_disk(manifest: &Manifest, keel: &Path, output: &Path) -> Result<BuiltDisk, DiskError> {
    let g = layout(manifest)?;
    let spec = manifest
        .disk
        .as_ref()
        .ok_or_else(|| DiskError::NoDisk(manifest.path.clone()))?;
    let root = build_rootfs(manifest, keel)?;
    let root_bytes = root.bytes.len() as u64;
    if root_bytes > spec.slot_mib * MIB {
        return Err(DiskError::RootTooBig {
            size: root_bytes,
            slot_mib: spec.slot_mib,
        });
    }
    let err = |source| DiskError::Write {
        path: output.to_owned(),
        source,
    };
    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".keel-disk-")
        .tempfile_in(dir)
        .map_err(err)?;
    let size = g.disk_sectors * gpt::SECTOR;
    tmp.as_file().set_len(size).map_err(err)?;
    let mut file = tmp.as_file().try_clone().map_err(err)?;
    g.write(&mut file)?;
    let slots = [(SLOT_A, true), (SLOT_B, spec.slot_b == SlotB::Copy)];
    for (label, filled) in slots {
        if let (true, Some((_, p))) = (filled, g.find(label)) {
            write_at(&mut file, p.offset(), &root).map_err(err)?;
        }
    }
    if let Some((_, state)) = g.find(STATE) {
        mkfs_state(manifest, tmp.path(), state.offset(), state.size())?;
    }
    file.sync_all().map_err(err)?;
    tmp.persist(output).map_err(|e| err(e.error))?;
    Ok(BuiltDisk {
        gpt: g,
        root_bytes,
        root_uuid: root.uuid,
        size,
    })
}

fn write_at(file: &mut File, at: u64, root: &RootImage) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(at))?;
    file.write_all(&root.bytes)
}

/// The state partition's ext4 UUID.
pub fn state_uuid(manifest: &Manifest) -> Guid {
    Guid::derived(&format!("{}:state-fs", manifest.name))
}

/// Formats the state partition in place (`mkfs.ext4 -E offset=`), labelled
/// `KEEL-STATE`, with a fixed UUID, hash seed and time.
fn mkfs_state(manifest: &Manifest, disk: &Path, offset: u64, size: u64) -> Result<(), DiskError> {
    let uuid = state_uuid(manifest).to_string().to_lowercase();
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-L", STATE, "-U", &uuid])
        .arg("-E")
        .arg(format!(
            "offset={offset},hash_seed={uuid},root_owner=0:0,lazy_itable_init=0,nodiscard"
        ))
        .arg(disk)
        .arg(format!("{}k", size / 1024))
        .env("E2FSPROGS_FAKE_TIME", mtime_from_env()?.max(1).to_string())
        .env("MKE2FS_CONFIG", "/etc/mke2fs.conf")
        .output()
        .map_err(|e| DiskError::Mkfs(format!("cannot run mkfs.ext4 (install e2fsprogs): {e}")))?;
    if !out.status.success() {
        return Err(DiskError::Mkfs(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_a_manifest() {
        let m = Manifest::parse(
            "name = \"d\"\n[rootfs]\n[disk]\nslot-mib = 16\nstate-mib = 32",
            Path::new("/x/d.toml"),
        )
        .unwrap();
        let g = layout(&m).unwrap();
        let names: Vec<_> = g.partitions().map(|(n, p)| (n, p.name.clone())).collect();
        assert_eq!(
            names,
            [(1, SLOT_A.into()), (2, SLOT_B.into()), (3, STATE.into())]
        );
        let (_, a) = g.find(SLOT_A).unwrap();
        assert_eq!(a.offset(), MIB);
        assert_eq!(a.size(), 16 * MIB);
        assert_eq!(a.attributes >> 48, 0x101, "priority 1, successful");
        let (_, s) = g.find(STATE).unwrap();
        assert_eq!(s.offset(), 33 * MIB);
        assert_eq!(s.size(), 32 * MIB);
        assert_eq!(g.disk_sectors * 512, 66 * MIB);
        assert_eq!(layout(&m).unwrap(), g, "deterministic");
        let none = Manifest::parse("name = \"d\"", Path::new("/x/d.toml")).unwrap();
        assert!(matches!(layout(&none), Err(DiskError::NoDisk(_))));
    }
}
