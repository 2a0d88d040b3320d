//! Mounting: the early API file systems and whatever stage 1 mounts later.
//! A target that is already a mount point is left alone, so the same code
//! runs as the machine's PID 1 and as PID 1 of a test's PID namespace.

use crate::cvt;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub use libc::{MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_RELATIME};

/// A mount that failed, naming what and where.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot create mount point {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot mount {fstype} on {target}: {source}")]
    Mount {
        fstype: String,
        target: PathBuf,
        source: io::Error,
    },
    #[error("path contains a NUL byte: {0}")]
    Nul(PathBuf),
}

/// One mount to make.
#[derive(Debug, Clone)]
pub struct Mount<'a> {
    pub source: &'a str,
    pub target: &'a Path,
    pub fstype: &'a str,
    pub flags: libc::c_ulong,
    pub data: &'a str,
}

fn cstr(p: &Path) -> Result<CString, MountError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| MountError::Nul(p.to_path_buf()))
}

/// Whether `path` is a mount point: its device differs from its parent's,
/// or it is `/`. (Bind mounts of the same file system are not detected,
/// which is fine for the API file systems this guards.)
pub fn is_mount_point(path: &Path) -> io::Result<bool> {
    let meta = std::fs::metadata(path)?;
    let parent = path.parent().unwrap_or(Path::new("/"));
    if parent == path || path == Path::new("/") {
        return Ok(true);
    }
    let pmeta = std::fs::metadata(parent)?;
    Ok(meta.dev() != pmeta.dev() || meta.ino() == pmeta.ino())
}

/// Mounts `m`, creating the target directory first. Returns `Ok(false)`
/// when the target was already a mount point and was left alone.
pub fn mount_once(m: &Mount<'_>) -> Result<bool, MountError> {
    std::fs::create_dir_all(m.target).map_err(|source| MountError::CreateDir {
        path: m.target.to_path_buf(),
        source,
    })?;
    if is_mount_point(m.target).unwrap_or(false) {
        return Ok(false);
    }
    mount(m)?;
    Ok(true)
}

/// mount(2), unconditionally.
pub fn mount(m: &Mount<'_>) -> Result<(), MountError> {
    let err = |source| MountError::Mount {
        fstype: m.fstype.to_string(),
        target: m.target.to_path_buf(),
        source,
    };
    let src = CString::new(m.source).map_err(|_| MountError::Nul(PathBuf::from(m.source)))?;
    let target = cstr(m.target)?;
    let fstype = CString::new(m.fstype).map_err(|_| MountError::Nul(PathBuf::from(m.fstype)))?;
    let data = CString::new(m.data).map_err(|_| MountError::Nul(PathBuf::from(m.data)))?;
    // SAFETY: every pointer is a valid NUL-terminated string that outlives
    // the call.
    cvt(unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            m.flags,
            data.as_ptr().cast(),
        )
    })
    .map_err(err)?;
    Ok(())
}

/// umount2(2) with the given flags (e.g. MNT_DETACH).
pub fn umount(target: &Path, flags: i32) -> Result<(), MountError> {
    let t = cstr(target)?;
    // SAFETY: `t` is a valid C string.
    cvt(unsafe { libc::umount2(t.as_ptr(), flags) }).map_err(|source| MountError::Mount {
        fstype: "umount".into(),
        target: target.to_path_buf(),
        source,
    })?;
    Ok(())
}

/// The API file systems PID 1 mounts first, under `root` (normally `/`).
pub fn api_filesystems(
    root: &Path,
) -> Vec<(
    PathBuf,
    &'static str,
    &'static str,
    libc::c_ulong,
    &'static str,
)> {
    let nsn = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    vec![
        (root.join("proc"), "proc", "proc", nsn, ""),
        (root.join("sys"), "sysfs", "sysfs", nsn, ""),
        (
            root.join("dev"),
            "devtmpfs",
            "devtmpfs",
            MS_NOSUID,
            "mode=0755",
        ),
        (
            root.join("run"),
            "tmpfs",
            "tmpfs",
            MS_NOSUID | MS_NODEV,
            "mode=0755",
        ),
        (
            root.join("sys/fs/cgroup"),
            "cgroup2",
            "cgroup2",
            nsn,
            "nsdelegate",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_proc_are_mount_points_tmp_subdir_is_not() {
        assert!(is_mount_point(Path::new("/")).unwrap());
        assert!(is_mount_point(Path::new("/proc")).unwrap());
        let d = std::env::temp_dir().join(format!("keel-mnt-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        assert!(!is_mount_point(&d).unwrap());
        std::fs::remove_dir(&d).unwrap();
    }

    #[test]
    fn api_filesystem_table_is_rooted() {
        let t = api_filesystems(Path::new("/x"));
        assert_eq!(t[0].0, PathBuf::from("/x/proc"));
        assert_eq!(t.last().unwrap().2, "cgroup2");
    }
}
