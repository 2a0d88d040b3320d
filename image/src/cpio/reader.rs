//! Reading a newc archive back: enough to check what the writer produced and
//! to list an initramfs, not a general-purpose extractor.

use super::{HEADER_LEN, MAGIC, TRAILER};

/// One entry as read from an archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadEntry {
    /// The name as stored (the writer stores paths without a leading slash).
    pub path: String,
    /// Inode number.
    pub ino: u32,
    /// Full `st_mode`: type bits and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Link count.
    pub nlink: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: u32,
    /// Device number of a device node (major, minor).
    pub rdev: (u32, u32),
    /// File content, or a symlink's target.
    pub data: Vec<u8>,
}

/// Why an archive could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The archive ends inside a header, name or data, or before the trailer.
    #[error("cpio archive truncated at byte {offset}")]
    Truncated {
        /// Where the missing bytes should have been.
        offset: usize,
    },
    /// A header does not start with `070701`.
    #[error("no newc magic 070701 at byte {offset}")]
    BadMagic {
        /// Start of the header.
        offset: usize,
    },
    /// A header field is not eight hex digits.
    #[error("header field {field} at byte {offset} is not hex")]
    BadField {
        /// Start of the header.
        offset: usize,
        /// Index of the field after the magic (0 = ino).
        field: usize,
    },
    /// A name is not NUL-terminated UTF-8.
    #[error("entry name at byte {offset} is not NUL-terminated UTF-8")]
    BadName {
        /// Start of the name.
        offset: usize,
    },
}

/// Parses `bytes` up to the trailer; anything after it (padding, or a further
/// concatenated archive) is ignored.
pub fn read(bytes: &[u8]) -> Result<Vec<ReadEntry>, ReadError> {
    let mut entries = Vec::new();
    let mut pos = 0;
    loop {
        let start = pos;
        let header = bytes
            .get(pos..pos + HEADER_LEN)
            .ok_or(ReadError::Truncated { offset: pos })?;
        if &header[..6] != MAGIC {
            return Err(ReadError::BadMagic { offset: start });
        }
        let mut fields = [0u32; 13];
        for (i, field) in fields.iter_mut().enumerate() {
            let hex = std::str::from_utf8(&header[6 + 8 * i..14 + 8 * i]).ok();
            *field =
                hex.and_then(|h| u32::from_str_radix(h, 16).ok())
                    .ok_or(ReadError::BadField {
                        offset: start,
                        field: i,
                    })?;
        }
        let [ino, mode, uid, gid, nlink, mtime, filesize, _, _, rmaj, rmin, namesize, _] = fields;
        pos += HEADER_LEN;
        let name_at = pos;
        let name = bytes
            .get(pos..pos + namesize as usize)
            .ok_or(ReadError::Truncated { offset: pos })?;
        let name = name
            .strip_suffix(&[0])
            .and_then(|n| std::str::from_utf8(n).ok())
            .ok_or(ReadError::BadName { offset: name_at })?;
        pos = (pos + namesize as usize).next_multiple_of(4);
        if name == TRAILER {
            return Ok(entries);
        }
        let data = bytes
            .get(pos..pos + filesize as usize)
            .ok_or(ReadError::Truncated { offset: pos })?;
        pos = (pos + filesize as usize).next_multiple_of(4);
        entries.push(ReadEntry {
            path: name.to_owned(),
            ino,
            mode,
            uid,
            gid,
            nlink,
            mtime,
            rdev: (rmaj, rmin),
            data: data.to_vec(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Archive, S_IFCHR, S_IFLNK};
    use super::*;

    #[test]
    fn round_trip() {
        let mut a = Archive::with_mtime(7);
        a.add_file("/bin/tool", b"\x7fELF".to_vec(), 0o755).unwrap();
        a.add_symlink("/bin/sh", "tool").unwrap();
        a.add_char_device("/dev/console", 0o600, 5, 1).unwrap();
        let entries = read(&a.to_bytes()).unwrap();
        let paths: Vec<_> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["bin", "bin/sh", "bin/tool", "dev", "dev/console"]);
        let inos: Vec<_> = entries.iter().map(|e| e.ino).collect();
        assert_eq!(inos, [1, 2, 3, 4, 5]);
        assert!(entries
            .iter()
            .all(|e| e.mtime == 7 && e.uid == 0 && e.gid == 0));
        assert_eq!(entries[1].mode, S_IFLNK | 0o777);
        assert_eq!(entries[1].data, b"tool");
        assert_eq!(entries[2].data, b"\x7fELF");
        assert_eq!(entries[4].mode, S_IFCHR | 0o600);
        assert_eq!(entries[4].rdev, (5, 1));
    }

    #[test]
    fn truncation_and_garbage_are_errors() {
        let mut a = Archive::new();
        a.add_file("/f", b"data".to_vec(), 0o644).unwrap();
        let bytes = a.to_bytes();
        for cut in [0, 50, HEADER_LEN + 1, bytes.len() - 4] {
            assert!(
                matches!(read(&bytes[..cut]), Err(ReadError::Truncated { .. })),
                "cut at {cut}"
            );
        }
        let mut bad = bytes.clone();
        bad[0] = b'1';
        assert_eq!(read(&bad), Err(ReadError::BadMagic { offset: 0 }));
        let mut bad = bytes;
        bad[6] = b'g';
        assert_eq!(
            read(&bad),
            Err(ReadError::BadField {
                offset: 0,
                field: 0
            })
        );
    }
}
