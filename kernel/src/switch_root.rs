//! Leaving the initramfs: move the API mounts into the new root, delete the
//! initramfs's files (its memory goes back to the kernel; without crossing
//! into any mount, the new root included), make the new root `/` with
//! MS_MOVE, and chroot into it. This is what busybox's switch_root and
//! systemd do; pivot_root(2) is not possible from the initramfs (rootfs
//! cannot be unmounted).

use crate::cvt;
use crate::mount::{self, MountError};
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// ramfs: the initramfs when the kernel has no tmpfs for rootfs.
pub const RAMFS_MAGIC: i64 = 0x8584_58f6;
/// tmpfs: the initramfs on most kernels.
pub const TMPFS_MAGIC: i64 = 0x0102_1994;

/// A step of switch_root that failed.
#[derive(Debug, thiserror::Error)]
pub enum SwitchRootError {
    #[error("/ is not an initramfs (file system magic {magic:#x}); refusing to delete it")]
    NotInitramfs { magic: i64 },
    #[error("new root {path} is not a mount point")]
    NotMountPoint { path: PathBuf },
    #[error("cannot move {from} to {to}: {source}")]
    Move {
        from: PathBuf,
        to: PathBuf,
        source: MountError,
    },
    #[error("cannot {step} {path}: {source}")]
    Step {
        step: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// What deleting the initramfs removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Freed {
    /// Files, links and directories removed.
    pub entries: u64,
    /// Bytes of regular files removed.
    pub bytes: u64,
}

/// statfs(2): the file system's magic number.
pub fn fs_magic(path: &Path) -> io::Result<i64> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: statfs is plain data; all-zero is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a writable statfs.
    cvt(unsafe { libc::statfs(c.as_ptr(), &mut st) })?;
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_type as i64)
}

/// chroot(2).
pub fn chroot(path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid C string.
    cvt(unsafe { libc::chroot(c.as_ptr()) })?;
    Ok(())
}

/// Deletes everything under `dir` that is on `dir`'s own file system,
/// never descending into another mount (the new root, moved API mounts).
/// Errors on single entries are skipped: freeing is best effort.
pub fn delete_same_fs(dir: &Path) -> Freed {
    let mut freed = Freed::default();
    if let Ok(meta) = std::fs::symlink_metadata(dir) {
        delete_children(dir, meta.dev(), &mut freed);
    }
    freed
}

fn delete_children(dir: &Path, dev: u64, freed: &mut Freed) {
    let Ok(list) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in list.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.dev() != dev {
            continue;
        }
        if meta.is_dir() {
            delete_children(&path, dev, freed);
            // A directory that still holds a mount point stays.
            if std::fs::remove_dir(&path).is_ok() {
                freed.entries += 1;
            }
        } else if std::fs::remove_file(&path).is_ok() {
            freed.entries += 1;
            if meta.is_file() {
                freed.bytes += meta.len();
            }
        }
    }
}

/// Moves the mount at `from` to `to` (MS_MOVE).
pub fn move_mount(from: &Path, to: &Path) -> Result<(), MountError> {
    mount::mount(&mount::Mount {
        source: &from.to_string_lossy(),
        target: to,
        fstype: "",
        flags: libc::MS_MOVE,
        data: "",
    })
}

/// Switches from the initramfs at `/` to the file system mounted at
/// `new_root`: moves each of `moves` (e.g. `/dev`, `/proc`, `/sys`, `/run`)
/// that is a mount point below the new root (detaching it if the new root
/// has no directory for it), deletes the initramfs's files, moves the new
/// root onto `/` and chroots into it. On return the process's root and
/// working directory are the new root.
pub fn switch_root(new_root: &Path, moves: &[&str]) -> Result<Freed, SwitchRootError> {
    let magic = fs_magic(Path::new("/")).map_err(|source| SwitchRootError::Step {
        step: "statfs",
        path: "/".into(),
        source,
    })?;
    if magic != RAMFS_MAGIC && magic != TMPFS_MAGIC {
        return Err(SwitchRootError::NotInitramfs { magic });
    }
    switch_root_at(Path::new("/"), new_root, moves)
}

/// [`switch_root`] without the initramfs check, from `old_root` (the tests
/// run it on a tmpfs in a private mount namespace).
pub fn switch_root_at(
    old_root: &Path,
    new_root: &Path,
    moves: &[&str],
) -> Result<Freed, SwitchRootError> {
    if !mount::is_mount_point(new_root).unwrap_or(false) {
        return Err(SwitchRootError::NotMountPoint {
            path: new_root.to_path_buf(),
        });
    }
    for m in moves {
        let from = old_root.join(m.trim_start_matches('/'));
        if !mount::is_mount_point(&from).unwrap_or(false) {
            continue;
        }
        let to = new_root.join(m.trim_start_matches('/'));
        if to.is_dir() {
            move_mount(&from, &to).map_err(|source| SwitchRootError::Move {
                from: from.clone(),
                to,
                source,
            })?;
        } else {
            log::warn!(
                "{} has no {m}; detaching it instead of moving it",
                new_root.display()
            );
            let _ = mount::umount(&from, libc::MNT_DETACH);
        }
    }
    let step = |step: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| SwitchRootError::Step { step, path, source }
    };
    std::env::set_current_dir(new_root).map_err(step("chdir to", new_root))?;
    let freed = delete_same_fs(old_root);
    move_mount(new_root, old_root).map_err(|source| SwitchRootError::Move {
        from: new_root.to_path_buf(),
        to: old_root.to_path_buf(),
        source,
    })?;
    chroot(Path::new(".")).map_err(step("chroot to", new_root))?;
    std::env::set_current_dir("/").map_err(step("chdir to", Path::new("/")))?;
    Ok(freed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mount::Mount;

    /// Runs `f` in a forked child with its own mount namespace; the child's
    /// exit status is the verdict. (unshare(CLONE_NEWNS) is refused to a
    /// multi-threaded process such as the test harness.)
    fn in_child_mount_ns(f: impl FnOnce() -> Result<(), String>) {
        // SAFETY: the child only runs `f` and then _exit()s; the harness's
        // other threads are not used in it.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: unshare and mount with constant arguments.
            let ok = unsafe {
                libc::unshare(libc::CLONE_NEWNS) == 0
                    && libc::mount(
                        c"none".as_ptr(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ) == 0
            };
            let code = if !ok {
                // No privilege for namespaces here: nothing to test.
                77
            } else {
                match f() {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("child: {e}");
                        1
                    }
                }
            };
            // SAFETY: _exit ends the child without running the parent's
            // atexit handlers or destructors.
            unsafe { libc::_exit(code) };
        }
        let status = crate::process::waitpid_blocking(pid).unwrap();
        match status {
            crate::process::ExitStatus::Exited(0 | 77) => {}
            other => panic!("child failed: {other}"),
        }
    }

    fn tmpfs(at: &Path) -> Result<(), String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        mount::mount(&Mount {
            source: "tmpfs",
            target: at,
            fstype: "tmpfs",
            flags: 0,
            data: "",
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn delete_same_fs_does_not_cross_mounts() {
        in_child_mount_ns(|| {
            let d = std::env::temp_dir().join(format!("keel-del-{}", std::process::id()));
            tmpfs(&d)?;
            let w = |p: &str, s: &str| std::fs::write(d.join(p), s).map_err(|e| e.to_string());
            std::fs::create_dir_all(d.join("a/b")).map_err(|e| e.to_string())?;
            w("a/b/file", "12345")?;
            w("top", "x")?;
            tmpfs(&d.join("mnt"))?;
            w("mnt/keep", "k")?;
            let freed = delete_same_fs(&d);
            let left: Vec<_> = std::fs::read_dir(&d)
                .map_err(|e| e.to_string())?
                .map(|e| e.map(|e| e.file_name()).unwrap_or_default())
                .collect();
            if left != ["mnt"] || !d.join("mnt/keep").exists() {
                return Err(format!("left {left:?}"));
            }
            if freed.bytes != 6 || freed.entries != 4 {
                return Err(format!("{freed:?}"));
            }
            Ok(())
        });
    }

    #[test]
    fn switch_root_moves_mounts_frees_the_old_root_and_chroots() {
        in_child_mount_ns(|| {
            let old = std::env::temp_dir().join(format!("keel-sr-{}", std::process::id()));
            tmpfs(&old)?;
            let e = |e: std::io::Error| e.to_string();
            std::fs::write(old.join("initramfs-file"), vec![0u8; 4096]).map_err(e)?;
            tmpfs(&old.join("run"))?;
            std::fs::write(old.join("run/stage1.json"), "{}").map_err(e)?;
            tmpfs(&old.join("sysroot"))?;
            std::fs::create_dir_all(old.join("sysroot/run")).map_err(e)?;
            std::fs::write(old.join("sysroot/marker"), "new root").map_err(e)?;
            let freed = switch_root_at(&old, &old.join("sysroot"), &["/run", "/proc"])
                .map_err(|e| e.to_string())?;
            if freed.bytes != 4096 {
                return Err(format!("{freed:?}"));
            }
            // We are chrooted into the new root, which now sits on `old`.
            let marker = std::fs::read_to_string("/marker").map_err(e)?;
            let moved = std::fs::read_to_string("/run/stage1.json").map_err(e)?;
            if marker != "new root" || moved != "{}" {
                return Err(format!("{marker:?} {moved:?}"));
            }
            Ok(())
        });
    }

    #[test]
    fn refuses_to_switch_from_a_real_root() {
        // The test host's / is not an initramfs.
        if matches!(fs_magic(Path::new("/")), Ok(m) if m != RAMFS_MAGIC && m != TMPFS_MAGIC) {
            let e = switch_root(Path::new("/nonexistent"), &[]).unwrap_err();
            assert!(matches!(e, SwitchRootError::NotInitramfs { .. }), "{e}");
        }
        assert!(fs_magic(Path::new("/proc")).unwrap() == 0x9fa0);
    }
}
