//! Stage 1's mounts below the new root (`/sysroot`): the root read-only with
//! the type its superblock names; the state partition read-write on /var
//! (or, when it is missing or will not mount, a tmpfs, said loudly); /etc as
//! an overlay whose upper layer lives on /var, so /etc changes persist; /tmp
//! as a tmpfs. /dev, /proc, /sys and /run come along at switch_root.

use super::probe::Probe;
use keel_kernel::mount::{self, Mount, MountError, MS_NODEV, MS_NOSUID, MS_RDONLY};
use std::path::{Path, PathBuf};

/// Where the new root is mounted before switch_root.
pub const SYSROOT: &str = "/sysroot";
/// Upper and work directories of the /etc overlay, relative to /var.
pub const ETC_UPPER: &str = "lib/keel/etc/upper";
pub const ETC_WORK: &str = "lib/keel/etc/work";

/// Mounting the root failed.
#[derive(Debug, thiserror::Error)]
pub enum RootMountError {
    #[error("{node}: no erofs, ext4 or squashfs superblock found")]
    Unknown { node: PathBuf },
    #[error(transparent)]
    Mount(#[from] MountError),
}

/// Mounts the root device read-only on `target`. Returns its type.
pub fn mount_root(
    node: &Path,
    probe: Option<&Probe>,
    target: &Path,
) -> Result<&'static str, RootMountError> {
    let fstype = probe.map(|p| p.fstype).ok_or(RootMountError::Unknown {
        node: node.to_path_buf(),
    })?;
    std::fs::create_dir_all(target).map_err(|source| MountError::CreateDir {
        path: target.to_path_buf(),
        source,
    })?;
    mount::mount(&Mount {
        source: &node.to_string_lossy(),
        target,
        fstype,
        flags: MS_RDONLY,
        data: "",
    })?;
    Ok(fstype)
}

/// What /var ended up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    /// The state partition.
    State(PathBuf),
    /// A tmpfs: nothing will persist; the reason is given.
    Tmpfs(String),
}

/// Mounts the state partition (`node`, ext4) on `var`, or a tmpfs when
/// there is none or it will not mount.
pub fn mount_var(node: Option<(&Path, Option<&Probe>)>, var: &Path) -> Var {
    let why = match node {
        None => "no state partition".to_string(),
        Some((node, probe)) => {
            let fstype = probe.map(|p| p.fstype).unwrap_or("ext4");
            let m = Mount {
                source: &node.to_string_lossy(),
                target: var,
                fstype,
                flags: MS_NOSUID | MS_NODEV,
                data: "",
            };
            match mount::mount(&m) {
                Ok(()) => return Var::State(node.to_path_buf()),
                Err(e) => e.to_string(),
            }
        }
    };
    let tmp = Mount {
        source: "tmpfs",
        target: var,
        fstype: "tmpfs",
        flags: MS_NOSUID | MS_NODEV,
        data: "mode=0755",
    };
    match mount::mount(&tmp) {
        Ok(()) => Var::Tmpfs(why),
        Err(e) => Var::Tmpfs(format!("{why}; and no tmpfs either: {e}")),
    }
}

/// Mounts the /etc overlay: lower the image's /etc, upper and work on /var.
pub fn mount_etc(sysroot: &Path) -> Result<(), MountError> {
    let etc = sysroot.join("etc");
    let var = sysroot.join("var");
    let (upper, work) = (var.join(ETC_UPPER), var.join(ETC_WORK));
    for d in [&upper, &work] {
        std::fs::create_dir_all(d).map_err(|source| MountError::CreateDir {
            path: d.clone(),
            source,
        })?;
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        etc.display(),
        upper.display(),
        work.display()
    );
    mount::mount(&Mount {
        source: "overlay",
        target: &etc,
        fstype: "overlay",
        flags: MS_NOSUID | MS_NODEV,
        data: &data,
    })
}

/// Mounts a tmpfs on /tmp (mode 1777).
pub fn mount_tmp(sysroot: &Path) -> Result<(), MountError> {
    mount::mount(&Mount {
        source: "tmpfs",
        target: &sysroot.join("tmp"),
        fstype: "tmpfs",
        flags: MS_NOSUID | MS_NODEV,
        data: "mode=1777",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unrecognised_root_is_named() {
        let e = mount_root(Path::new("/dev/vdz9"), None, Path::new("/nonexistent/x")).unwrap_err();
        assert!(e.to_string().contains("/dev/vdz9: no erofs"), "{e}");
    }
}
