//! The newc ("070701") cpio format, as the Linux kernel unpacks an initramfs.
//!
//! [`Archive`] collects entries (regular files, directories, symlinks, device
//! nodes) keyed by their path and writes them sorted by path, so that every
//! parent precedes its children and identical input gives identical bytes:
//! inode numbers are assigned in that order, the mtime is one fixed value for
//! the whole archive, uid and gid are 0, and missing parent directories are
//! created implicitly with mode 0755. [`read`] parses an archive back into
//! entries; tests use it, and so can `keel` to inspect its own initramfs.
//!
//! The format: each entry is a 110-byte ASCII header (the magic, then 13
//! eight-digit hex fields), the NUL-terminated name padded to a multiple of 4,
//! then the data padded to a multiple of 4. The archive ends with an entry
//! named `TRAILER!!!`.

mod reader;

pub use reader::{read, ReadEntry, ReadError};

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The six-byte magic of a newc header without checksums.
pub const MAGIC: &[u8; 6] = b"070701";
/// The name of the entry that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";
/// Length of a newc header: the magic and 13 eight-digit hex fields.
pub const HEADER_LEN: usize = 110;

/// File-type bits of `st_mode`.
pub const S_IFMT: u32 = 0o170_000;
/// Regular file.
pub const S_IFREG: u32 = 0o100_000;
/// Directory.
pub const S_IFDIR: u32 = 0o040_000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120_000;
/// Character device.
pub const S_IFCHR: u32 = 0o020_000;
/// Block device.
pub const S_IFBLK: u32 = 0o060_000;

/// Why an entry could not be added to an [`Archive`].
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    /// A source file for a regular-file entry could not be read.
    #[error("cannot read {path}: {source}")]
    ReadFile {
        /// The host path that was being read.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The path is empty, has `.`/`..` components, or is too long.
    #[error("invalid archive path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two non-directory entries, or a directory and a non-directory, share a path.
    #[error("archive path /{path} is added twice")]
    Duplicate {
        /// The normalised path (without the leading slash).
        path: String,
    },
    /// A parent of the path already exists as something other than a directory.
    #[error("archive path /{path} needs /{parent} to be a directory, but it is not")]
    ParentNotDirectory {
        /// The path being added.
        path: String,
        /// The parent that is a file, symlink or device.
        parent: String,
    },
    /// A file is larger than the 32-bit size field of newc allows.
    #[error("archive path /{path} is {size} bytes, more than newc's 4 GiB limit")]
    TooLarge {
        /// The path being added.
        path: String,
        /// Its size in bytes.
        size: usize,
    },
}

/// What an entry is, with its content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file with its bytes.
    File(Vec<u8>),
    /// A directory.
    Dir,
    /// A symbolic link with its target, stored verbatim.
    Symlink(String),
    /// A character device node.
    CharDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// A block device node.
    BlockDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
}

impl EntryKind {
    /// The `S_IF*` type bits of this kind.
    pub fn type_bits(&self) -> u32 {
        match self {
            EntryKind::File(_) => S_IFREG,
            EntryKind::Dir => S_IFDIR,
            EntryKind::Symlink(_) => S_IFLNK,
            EntryKind::CharDevice { .. } => S_IFCHR,
            EntryKind::BlockDevice { .. } => S_IFBLK,
        }
    }
}

/// One entry: its kind and permission bits (`0o7777` at most).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// What the entry is.
    pub kind: EntryKind,
    /// Permission bits, including setuid/setgid/sticky.
    pub mode: u32,
}

/// A newc archive being assembled in memory.
#[derive(Clone, Debug, Default)]
pub struct Archive {
    /// Keyed by the normalised path (no leading slash); the map's order is the
    /// order of the written archive, so parents come before their children.
    entries: BTreeMap<String, Entry>,
    mtime: u32,
}

impl Archive {
    /// An empty archive whose entries all carry mtime 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty archive whose entries all carry `mtime` (seconds since the epoch,
    /// e.g. from `SOURCE_DATE_EPOCH`).
    pub fn with_mtime(mtime: u32) -> Self {
        Archive {
            entries: BTreeMap::new(),
            mtime,
        }
    }

    /// The mtime written into every entry.
    pub fn mtime(&self) -> u32 {
        self.mtime
    }

    /// Number of entries, implicit parent directories included, trailer excluded.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the archive has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in archive order, with their normalised paths (no leading slash).
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(p, e)| (p.as_str(), e))
    }

    /// The entry at `path` (with or without a leading slash), if any.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path.trim_start_matches('/'))
    }

    /// Adds a regular file with the given bytes and permission bits.
    pub fn add_file(
        &mut self,
        path: &str,
        data: impl Into<Vec<u8>>,
        mode: u32,
    ) -> Result<(), CpioError> {
        let data = data.into();
        if u32::try_from(data.len()).is_err() {
            return Err(CpioError::TooLarge {
                path: path.to_owned(),
                size: data.len(),
            });
        }
        self.insert(path, EntryKind::File(data), mode)
    }

    /// Adds a regular file read from the host path `src`; `mode` defaults to the
    /// source's permission bits.
    pub fn add_file_from_path(
        &mut self,
        path: &str,
        src: &Path,
        mode: Option<u32>,
    ) -> Result<(), CpioError> {
        let read_err = |source| CpioError::ReadFile {
            path: src.to_owned(),
            source,
        };
        let data = std::fs::read(src).map_err(read_err)?;
        let mode = match mode {
            Some(mode) => mode,
            None => {
                use std::os::unix::fs::PermissionsExt;
                std::fs::metadata(src)
                    .map_err(read_err)?
                    .permissions()
                    .mode()
            }
        };
        self.add_file(path, data, mode)
    }

    /// Adds a directory; adding one that exists (implicitly or not) sets its mode.
    pub fn add_dir(&mut self, path: &str, mode: u32) -> Result<(), CpioError> {
        self.insert(path, EntryKind::Dir, mode)
    }

    /// Adds a symbolic link to `target` (mode 0777, as symlinks have).
    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<(), CpioError> {
        self.insert(path, EntryKind::Symlink(target.to_owned()), 0o777)
    }

    /// Adds a character device node, such as `/dev/console` (5, 1).
    pub fn add_char_device(
        &mut self,
        path: &str,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        self.insert(path, EntryKind::CharDevice { major, minor }, mode)
    }

    fn insert(&mut self, path: &str, kind: EntryKind, mode: u32) -> Result<(), CpioError> {
        let path = normalize(path)?;
        let mut parent = path.as_str();
        let mut parents = Vec::new();
        while let Some((p, _)) = parent.rsplit_once('/') {
            parents.push(p);
            parent = p;
        }
        for p in parents.into_iter().rev() {
            match self.entries.get(p) {
                Some(Entry {
                    kind: EntryKind::Dir,
                    ..
                }) => {}
                Some(_) => {
                    return Err(CpioError::ParentNotDirectory {
                        path: path.clone(),
                        parent: p.to_owned(),
                    })
                }
                None => {
                    let dir = Entry {
                        kind: EntryKind::Dir,
                        mode: 0o755,
                    };
                    self.entries.insert(p.to_owned(), dir);
                }
            }
        }
        let mode = mode & 0o7777;
        match self.entries.get_mut(&path) {
            Some(existing) if existing.kind == EntryKind::Dir && kind == EntryKind::Dir => {
                existing.mode = mode;
            }
            Some(_) => return Err(CpioError::Duplicate { path }),
            None => {
                self.entries.insert(path, Entry { kind, mode });
            }
        }
        Ok(())
    }

    /// Writes the archive, trailer included, and returns the number of bytes written.
    pub fn write_to<W: Write>(&self, out: &mut W) -> io::Result<u64> {
        let mut out = Counter { inner: out, n: 0 };
        for (ino, (path, entry)) in (1u32..).zip(&self.entries) {
            let (data, rdev): (&[u8], (u32, u32)) = match &entry.kind {
                EntryKind::File(data) => (data, (0, 0)),
                EntryKind::Symlink(target) => (target.as_bytes(), (0, 0)),
                EntryKind::Dir => (&[], (0, 0)),
                EntryKind::CharDevice { major, minor }
                | EntryKind::BlockDevice { major, minor } => (&[], (*major, *minor)),
            };
            let header = Header {
                ino,
                mode: entry.kind.type_bits() | entry.mode,
                nlink: self.nlink(path, entry),
                mtime: self.mtime,
                rdev,
            };
            header.write(&mut out, path, data)?;
        }
        let trailer = Header {
            ino: 0,
            mode: 0,
            nlink: 1,
            mtime: 0,
            rdev: (0, 0),
        };
        trailer.write(&mut out, TRAILER, &[])?;
        Ok(out.n)
    }

    /// The archive as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.write_to(&mut out);
        out
    }

    /// A directory has 2 links plus one per subdirectory (each one's `..`).
    fn nlink(&self, path: &str, entry: &Entry) -> u32 {
        if entry.kind != EntryKind::Dir {
            return 1;
        }
        let prefix = format!("{path}/");
        let subdirs = self
            .entries
            .range::<str, _>((
                std::ops::Bound::Excluded(prefix.as_str()),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(p, _)| p.starts_with(&prefix))
            .filter(|(p, e)| e.kind == EntryKind::Dir && !p[prefix.len()..].contains('/'))
            .count();
        2 + u32::try_from(subdirs).unwrap_or(u32::MAX - 2)
    }
}

/// Strips leading slashes and rejects paths that the kernel would not create
/// where the manifest meant.
fn normalize(path: &str) -> Result<String, CpioError> {
    let invalid = |reason| CpioError::InvalidPath {
        path: path.to_owned(),
        reason,
    };
    let rel = path.trim_start_matches('/');
    if rel.is_empty() {
        return Err(invalid("empty (the archive root is implicit)"));
    }
    if rel.ends_with('/') {
        return Err(invalid("trailing slash"));
    }
    if rel.contains('\0') {
        return Err(invalid("NUL byte"));
    }
    for part in rel.split('/') {
        match part {
            "" => return Err(invalid("empty component")),
            "." | ".." => return Err(invalid("`.` or `..` component")),
            _ => {}
        }
    }
    if rel.len() >= 4096 {
        return Err(invalid("longer than PATH_MAX"));
    }
    Ok(rel.to_owned())
}

/// The fields of a header that vary; the rest are 0 (uid, gid, device of the
/// archive, check) or derived from the name and data.
struct Header {
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    rdev: (u32, u32),
}

impl Header {
    fn write<W: Write>(&self, out: &mut Counter<W>, name: &str, data: &[u8]) -> io::Result<()> {
        let namesize = name.len() + 1;
        let fields = [
            self.ino,
            self.mode,
            0, // uid
            0, // gid
            self.nlink,
            self.mtime,
            len32(data.len())?,
            0, // devmajor
            0, // devminor
            self.rdev.0,
            self.rdev.1,
            len32(namesize)?,
            0, // check
        ];
        let mut header = Vec::with_capacity(HEADER_LEN + namesize + 3);
        header.extend_from_slice(MAGIC);
        for field in fields {
            header.extend_from_slice(format!("{field:08X}").as_bytes());
        }
        header.extend_from_slice(name.as_bytes());
        header.push(0);
        header.resize(header.len().next_multiple_of(4), 0);
        out.write_all(&header)?;
        out.write_all(data)?;
        out.write_all(&[0; 3][..data.len().next_multiple_of(4) - data.len()])
    }
}

fn len32(len: usize) -> io::Result<u32> {
    u32::try_from(len).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "entry over 4 GiB"))
}

/// Counts the bytes written through it.
struct Counter<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Counter<W> {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf)?;
        self.n += buf.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_implicit_and_sorted_first() {
        let mut a = Archive::new();
        a.add_file("/usr/bin/x", b"x".to_vec(), 0o755).unwrap();
        a.add_symlink("/bin", "usr/bin").unwrap();
        let paths: Vec<_> = a.entries().map(|(p, _)| p.to_owned()).collect();
        assert_eq!(paths, ["bin", "usr", "usr/bin", "usr/bin/x"]);
        assert_eq!(a.get("/usr").unwrap().mode, 0o755);
    }

    #[test]
    fn explicit_dir_sets_mode_of_implicit_one() {
        let mut a = Archive::new();
        a.add_file("/tmp/x", Vec::new(), 0o644).unwrap();
        a.add_dir("/tmp", 0o1777).unwrap();
        assert_eq!(a.get("tmp").unwrap().mode, 0o1777);
    }

    #[test]
    fn conflicts_are_errors() {
        let mut a = Archive::new();
        a.add_file("/etc/x", Vec::new(), 0o644).unwrap();
        assert!(matches!(
            a.add_file("/etc/x", Vec::new(), 0o644),
            Err(CpioError::Duplicate { path }) if path == "etc/x"
        ));
        assert!(matches!(
            a.add_dir("/etc/x/y", 0o755),
            Err(CpioError::ParentNotDirectory { parent, .. }) if parent == "etc/x"
        ));
        assert!(matches!(a.add_dir("/etc", 0o755), Ok(())));
        assert!(matches!(
            a.add_file("/etc", Vec::new(), 0o644),
            Err(CpioError::Duplicate { .. })
        ));
    }

    #[test]
    fn bad_paths_are_rejected() {
        let mut a = Archive::new();
        for p in ["", "/", "a/../b", "./a", "a//b", "a/"] {
            assert!(
                matches!(a.add_dir(p, 0o755), Err(CpioError::InvalidPath { .. })),
                "{p:?}"
            );
        }
        assert!(a.is_empty());
    }

    #[test]
    fn header_layout_and_padding() {
        let mut a = Archive::with_mtime(0x1234);
        a.add_file("/ab", b"hello".to_vec(), 0o640).unwrap();
        let bytes = a.to_bytes();
        // Header, "ab\0" padded from 113 to 116, 5 data bytes padded to 8.
        let first = &bytes[..HEADER_LEN];
        assert_eq!(&first[..6], MAGIC);
        let field = |i: usize| std::str::from_utf8(&first[6 + 8 * i..14 + 8 * i]).unwrap();
        assert_eq!(field(0), "00000001"); // ino
        assert_eq!(field(1), "000081A0"); // S_IFREG | 0640
        assert_eq!(field(4), "00000001"); // nlink
        assert_eq!(field(5), "00001234"); // mtime
        assert_eq!(field(6), "00000005"); // filesize
        assert_eq!(field(11), "00000003"); // namesize
        assert_eq!(&bytes[HEADER_LEN..HEADER_LEN + 3], b"ab\0");
        assert_eq!(&bytes[116..121], b"hello");
        assert_eq!(&bytes[121..124], &[0, 0, 0]);
        assert_eq!(&bytes[124..130], MAGIC);
        assert_eq!(bytes.len() % 4, 0);
        assert!(bytes.ends_with(b"TRAILER!!!\0\0\0\0"));
    }

    #[test]
    fn nlink_counts_subdirectories() {
        let mut a = Archive::new();
        a.add_dir("/a/b", 0o755).unwrap();
        a.add_dir("/a/c/d", 0o755).unwrap();
        a.add_file("/a/f", Vec::new(), 0o644).unwrap();
        a.add_dir("/ab", 0o755).unwrap();
        let entries = read(&a.to_bytes()).unwrap();
        let nlink = |p: &str| entries.iter().find(|e| e.path == p).unwrap().nlink;
        assert_eq!(nlink("a"), 4);
        assert_eq!(nlink("a/c"), 3);
        assert_eq!(nlink("a/b"), 2);
        assert_eq!(nlink("a/f"), 1);
    }
}
