//! Block devices: their size (BLKGETSIZE64) and the kernel's view of them
//! in sysfs (`/sys/class/block/NAME/uevent`: DEVNAME, DEVTYPE, PARTN,
//! PARTNAME), which is how stage 1 finds the root without udev.

use crate::cvt;
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// `_IOR(0x12, 114, size_t)`: the device's size in bytes.
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;

/// The size of `file` in bytes: BLKGETSIZE64 for a block device, the length
/// for a regular file (a disk image).
pub fn size_bytes(file: &File) -> io::Result<u64> {
    use std::os::unix::fs::FileTypeExt;
    let meta = file.metadata()?;
    if !meta.file_type().is_block_device() {
        return Ok(meta.len());
    }
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which is
    // valid and writable for the call.
    cvt(unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64 as _, &mut size as *mut u64) })?;
    Ok(size)
}

/// One block device as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    /// The kernel's name, e.g. `vda1` (`/dev/<name>`).
    pub name: String,
    /// Partition number, for a partition.
    pub partn: Option<u32>,
    /// The GPT partition name (PARTNAME), if the kernel read one.
    pub partname: Option<String>,
    /// For a partition: the whole disk it is on (`vda`).
    pub disk: Option<String>,
    /// Size in 512-byte sectors.
    pub sectors: u64,
}

impl BlockDevice {
    /// `/dev/<name>` under `dev`.
    pub fn node(&self, dev: &Path) -> PathBuf {
        dev.join(&self.name)
    }
}

/// Parses a sysfs `uevent` file (`KEY=value` lines).
pub fn parse_uevent_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Lists the block devices under `sys` (normally `/sys`), sorted by name.
/// Devices that vanish while being read are skipped.
pub fn list(sys: &Path) -> io::Result<Vec<BlockDevice>> {
    let class = sys.join("class/block");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&class)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let dir = class.join(&name);
        let Ok(text) = std::fs::read_to_string(dir.join("uevent")) else {
            continue;
        };
        let vars = parse_uevent_file(&text);
        let sectors = std::fs::read_to_string(dir.join("size"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let is_part = vars.get("DEVTYPE").map(String::as_str) == Some("partition");
        // A partition's sysfs directory sits inside its disk's.
        let disk = if is_part {
            std::fs::canonicalize(&dir)
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        } else {
            None
        };
        out.push(BlockDevice {
            name: vars.get("DEVNAME").cloned().unwrap_or(name),
            partn: vars.get("PARTN").and_then(|p| p.parse().ok()),
            partname: vars.get("PARTNAME").cloned(),
            disk,
            sectors,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fake_sysfs_tree_is_listed() {
        let d = std::env::temp_dir().join(format!("keel-blk-{}", std::process::id()));
        let vda = d.join("devices/pci0/virtio1/block/vda");
        std::fs::create_dir_all(vda.join("vda1")).unwrap();
        std::fs::write(vda.join("uevent"), "MAJOR=254\nDEVNAME=vda\nDEVTYPE=disk\n").unwrap();
        std::fs::write(vda.join("size"), "131072\n").unwrap();
        std::fs::write(
            vda.join("vda1/uevent"),
            "DEVNAME=vda1\nDEVTYPE=partition\nPARTN=1\nPARTNAME=KEEL-A\n",
        )
        .unwrap();
        std::fs::write(vda.join("vda1/size"), "2048\n").unwrap();
        std::fs::create_dir_all(d.join("class/block")).unwrap();
        std::os::unix::fs::symlink(&vda, d.join("class/block/vda")).unwrap();
        std::os::unix::fs::symlink(vda.join("vda1"), d.join("class/block/vda1")).unwrap();
        let l = list(&d).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].name, "vda");
        assert_eq!(l[0].sectors, 131072);
        assert_eq!(l[0].disk, None);
        assert_eq!(l[1].partname.as_deref(), Some("KEEL-A"));
        assert_eq!(l[1].partn, Some(1));
        assert_eq!(l[1].disk.as_deref(), Some("vda"));
        assert_eq!(l[1].node(Path::new("/dev")), Path::new("/dev/vda1"));
    }

    #[test]
    fn size_of_a_regular_file_and_of_a_real_block_device() {
        let f = File::open("/proc/self/exe").unwrap();
        assert!(size_bytes(&f).unwrap() > 0);
        // Where the host has a block device we may open, the ioctl agrees with sysfs.
        for dev in list(Path::new("/sys")).unwrap_or_default() {
            if let Ok(f) = File::open(dev.node(Path::new("/dev"))) {
                assert_eq!(size_bytes(&f).unwrap(), dev.sectors * 512, "{dev:?}");
                break;
            }
        }
    }
}
