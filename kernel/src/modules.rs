//! Loading kernel modules with finit_module(2): no modprobe, no udev. The
//! order comes from modules.dep (parsed in `keel_image::modules`); this only
//! loads one file and says how it went.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// What happened to one module.
#[derive(Debug, PartialEq, Eq)]
pub enum Loaded {
    Loaded,
    AlreadyLoaded,
}

/// A module that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("cannot open module {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot load module {path}: {source}")]
    Load { path: PathBuf, source: io::Error },
}

/// Loads the module file at `path` with `params` (e.g. "" or "foo=1").
/// Compressed modules are handed to the kernel, which decompresses them
/// when built with CONFIG_MODULE_DECOMPRESS.
pub fn load(path: &Path, params: &str) -> Result<Loaded, ModuleError> {
    let file = File::open(path).map_err(|source| ModuleError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let params = CString::new(params).unwrap_or_default();
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let flags = if matches!(ext, "xz" | "zst" | "gz") {
        // MODULE_INIT_COMPRESSED_FILE
        4
    } else {
        0
    };
    // SAFETY: the fd is open for the call; `params` is a valid C string.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            params.as_ptr(),
            flags,
        )
    };
    if rc == 0 {
        return Ok(Loaded::Loaded);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EEXIST) {
        return Ok(Loaded::AlreadyLoaded);
    }
    Err(ModuleError::Load {
        path: path.to_path_buf(),
        source: e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_named() {
        let e = load(Path::new("/nonexistent/x.ko"), "").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x.ko"), "{e}");
    }
}
