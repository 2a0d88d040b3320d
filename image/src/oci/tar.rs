//! A POSIX ustar writer: directories, regular files and symbolic links, with
//! uid/gid 0 and one fixed mtime, in the order given (the caller sorts).
//! That is all an OCI layer or an OCI image-layout archive needs, and it
//! keeps the bytes reproducible.

/// One entry of an archive. Paths are relative (`bin/busybox`), without a
/// leading `/`; a directory's path gets its trailing `/` when written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A directory.
    Dir {
        /// Its path.
        path: String,
        /// Permission bits.
        mode: u32,
    },
    /// A regular file.
    File {
        /// Its path.
        path: String,
        /// Permission bits.
        mode: u32,
        /// Its contents.
        data: Vec<u8>,
    },
    /// A symbolic link.
    Symlink {
        /// Its path.
        path: String,
        /// What it points to.
        target: String,
    },
}

impl Entry {
    /// The entry's path.
    pub fn path(&self) -> &str {
        match self {
            Entry::Dir { path, .. } | Entry::File { path, .. } | Entry::Symlink { path, .. } => {
                path
            }
        }
    }
}

/// Why an entry cannot be written as ustar.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TarError {
    /// The path does not fit ustar's 100-byte name and 155-byte prefix.
    #[error("path {0:?} is too long for a ustar header")]
    PathTooLong(String),
    /// A link target longer than 100 bytes.
    #[error("link target {0:?} is too long for a ustar header")]
    TargetTooLong(String),
}

/// Writes `value` as a NUL-terminated, zero-padded octal field of `field.len()` bytes.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

/// Splits `path` into ustar's (prefix, name).
fn split(path: &str) -> Result<(&str, &str), TarError> {
    if path.len() <= 100 {
        return Ok(("", path));
    }
    // The prefix ends at a '/', which is not stored.
    for (i, _) in path.match_indices('/') {
        let (prefix, name) = (&path[..i], &path[i + 1..]);
        if prefix.len() <= 155 && name.len() <= 100 && !name.is_empty() {
            return Ok((prefix, name));
        }
    }
    Err(TarError::PathTooLong(path.to_owned()))
}

fn header(
    path: &str,
    mode: u32,
    size: u64,
    kind: u8,
    link: &str,
    mtime: u64,
) -> Result<[u8; 512], TarError> {
    let mut h = [0u8; 512];
    let (prefix, name) = split(path)?;
    if link.len() > 100 {
        return Err(TarError::TargetTooLong(link.to_owned()));
    }
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], u64::from(mode & 0o7777));
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime);
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    octal(&mut h[329..337], 0);
    octal(&mut h[337..345], 0);
    h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    // The checksum is computed with its own field as eight spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    octal(&mut h[148..155], sum);
    h[155] = b' ';
    Ok(h)
}

/// The ustar archive of `entries`, in their order, each with `mtime`.
pub fn write(entries: &[Entry], mtime: u64) -> Result<Vec<u8>, TarError> {
    let mut out = Vec::new();
    for e in entries {
        match e {
            Entry::Dir { path, mode } => {
                let p = format!("{}/", path.trim_end_matches('/'));
                out.extend_from_slice(&header(&p, *mode, 0, b'5', "", mtime)?);
            }
            Entry::File { path, mode, data } => {
                out.extend_from_slice(&header(path, *mode, data.len() as u64, b'0', "", mtime)?);
                out.extend_from_slice(data);
                out.resize(out.len().next_multiple_of(512), 0);
            }
            Entry::Symlink { path, target } => {
                out.extend_from_slice(&header(path, 0o777, 0, b'2', target, mtime)?);
            }
        }
    }
    // Two zero blocks end the archive.
    out.resize(out.len() + 1024, 0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<Entry> {
        let deep = format!("{}/file", "d".repeat(120));
        vec![
            Entry::Dir {
                path: "bin".into(),
                mode: 0o755,
            },
            Entry::File {
                path: "bin/hello".into(),
                mode: 0o644,
                data: b"hello\n".to_vec(),
            },
            Entry::Symlink {
                path: "bin/sh".into(),
                target: "busybox".into(),
            },
            Entry::File {
                path: deep,
                mode: 0o600,
                data: vec![1; 600],
            },
        ]
    }

    #[test]
    fn gnu_tar_reads_it_back() {
        let bytes = write(&entries(), 1_700_000_000).unwrap();
        assert_eq!(bytes.len() % 512, 0);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.tar");
        std::fs::write(&file, &bytes).unwrap();
        let out = std::process::Command::new("tar")
            .args(["--numeric-owner", "-tvf"])
            .arg(&file)
            .output()
            .expect("tar");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("drwxr-xr-x 0/0 "), "{text}");
        assert!(lines[0].ends_with(" bin/"), "{text}");
        assert!(lines[1].starts_with("-rw-r--r-- 0/0 "), "{text}");
        assert!(lines[1].contains(" 6 2023-11-14 "), "{text}");
        assert!(lines[2].ends_with("bin/sh -> busybox"), "{text}");
        assert!(
            lines[3].ends_with(&format!("{}/file", "d".repeat(120))),
            "{text}"
        );
        let x = dir.path().join("x");
        std::fs::create_dir(&x).unwrap();
        let st = std::process::Command::new("tar")
            .arg("-xf")
            .arg(&file)
            .arg("-C")
            .arg(&x)
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(std::fs::read(x.join("bin/hello")).unwrap(), b"hello\n");
    }

    #[test]
    fn same_entries_same_bytes_and_long_paths_are_errors() {
        assert_eq!(write(&entries(), 0).unwrap(), write(&entries(), 0).unwrap());
        let long = Entry::File {
            path: "x".repeat(101),
            mode: 0o644,
            data: vec![],
        };
        assert!(matches!(write(&[long], 0), Err(TarError::PathTooLong(_))));
    }
}
