//! Mounting: the early API file systems and whatever stage 1 mounts later.
//! A target that is already a mount point is left alone, so the same code
//! runs as the machine's PID 1 and as PID 1 of a test's PID namespace.

use crate::cvt;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub use libc::{
    MS_BIND, MS_MOVE, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_RELATIME, MS_REMOUNT,
};

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

/// Remounts the mount at `target` read-only, keeping its other flags
/// (what stage 3 does to what it cannot unmount).
pub fn remount_readonly(target: &Path) -> Result<(), MountError> {
    mount(&Mount {
        source: "",
        target,
        fstype: "",
        flags: MS_REMOUNT | MS_RDONLY,
        data: "",
    })
}

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub id: u32,
    pub parent: u32,
    pub target: PathBuf,
    pub fstype: String,
    pub source: String,
    pub read_only: bool,
}

/// Undoes mountinfo's octal escapes (`\040` is a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |a, d| a * 8 + u32::from(d - b'0'));
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses /proc/self/mountinfo (see proc(5)); bad lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            Some(MountInfo {
                id: l.first()?.parse().ok()?,
                parent: l.get(1)?.parse().ok()?,
                target: PathBuf::from(unescape(l.get(4)?)),
                read_only: l.get(5)?.split(',').any(|o| o == "ro"),
                fstype: r.first()?.to_string(),
                source: unescape(r.get(1)?),
            })
        })
        .collect()
}

/// The mounts stage 3 takes down, in the order to do it: every mount but
/// `/` and the API file systems (`keep` and everything below them), the
/// most recently mounted first (so children go before their parents).
pub fn unmount_order(mounts: &[MountInfo], keep: &[&str]) -> Vec<PathBuf> {
    mounts
        .iter()
        .rev()
        .filter(|m| m.target != Path::new("/"))
        .filter(|m| !keep.iter().any(|k| m.target.starts_with(k)))
        .map(|m| m.target.clone())
        .collect()
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
    fn mountinfo_and_the_unmount_order() {
        let text = "\
22 1 254:1 / / ro,relatime shared:1 - erofs /dev/vda1 ro,user_xattr
23 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs devtmpfs rw,size=1k
24 22 0:21 / /proc rw,nosuid,nodev,noexec - proc proc rw
25 22 0:22 / /sys rw - sysfs sysfs rw
26 25 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
27 22 0:24 / /run rw - tmpfs tmpfs rw
28 22 254:3 / /var rw,nosuid,nodev - ext4 /dev/vda3 rw
29 22 0:30 / /etc rw - overlay overlay rw,lowerdir=/etc
30 22 0:31 / /tmp rw - tmpfs tmpfs rw
31 28 0:32 / /var/my\\040dir rw - tmpfs a\\040b rw
garbage line
";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 10);
        assert!(m[0].read_only && m[0].fstype == "erofs");
        assert_eq!(m[9].target, PathBuf::from("/var/my dir"));
        assert_eq!(m[9].source, "a b");
        let order = unmount_order(&m, &["/dev", "/proc", "/sys", "/run"]);
        let names: Vec<_> = order
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["/var/my dir", "/tmp", "/etc", "/var"]);
    }

    #[test]
    fn own_mountinfo_parses() {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let m = parse_mountinfo(&text);
        assert!(m.iter().any(|m| m.target == Path::new("/proc")), "{text}");
    }

    #[test]
    fn api_filesystem_table_is_rooted() {
        let t = api_filesystems(Path::new("/x"));
        assert_eq!(t[0].0, PathBuf::from("/x/proc"));
        assert_eq!(t.last().unwrap().2, "cgroup2");
    }
}
