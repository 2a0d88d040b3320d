//! The GUID partition table (UEFI 2.x, chapter 5), read and written by Keel
//! itself: a protective MBR, a primary header and entry array at LBA 1 and 2,
//! and the backup entry array and header at the end of the disk, each with
//! its CRC32. Formats only (no host feature): `keel` links it to find its
//! partitions at boot, and `keel update` (the slots issue) to change the
//! slot attribute bits of `KEEL-A` and `KEEL-B`.
//!
//! Sectors are 512 bytes (virtio-blk and every disk image Keel writes); the
//! entry array is the standard 128 entries of 128 bytes (32 sectors), so
//! `sgdisk`, `cgpt` and the kernel read what this writes.
//!
//! Writing is split into [`Gpt::write_backup`], [`Gpt::write_primary`] and
//! [`Gpt::write_protective_mbr`] so that an updater can order the writes
//! (backup first, flush, then primary): whenever the power goes, one of the
//! two copies is whole and valid, and [`Gpt::read`] falls back to the backup
//! when the primary is not.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// Bytes per logical sector.
pub const SECTOR: u64 = 512;
/// Entries in the partition entry array.
pub const ENTRIES: u32 = 128;
/// Bytes per entry.
pub const ENTRY_SIZE: u32 = 128;
/// Sectors the entry array takes (128 * 128 / 512).
pub const ENTRY_SECTORS: u64 = (ENTRIES as u64 * ENTRY_SIZE as u64) / SECTOR;
/// Partitions are aligned to 1 MiB, as every partitioning tool does.
pub const ALIGN_SECTORS: u64 = 2048;
/// UTF-16 code units in a partition name.
pub const NAME_UNITS: usize = 36;

const SIGNATURE: &[u8; 8] = b"EFI PART";
const REVISION: u32 = 0x0001_0000;
const HEADER_SIZE: u32 = 92;

/// Why a partition table could not be read or built.
#[derive(Debug, thiserror::Error)]
pub enum GptError {
    /// Reading or writing the device failed.
    #[error("GPT {what}: {source}")]
    Io {
        /// Which step.
        what: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// Neither copy of the table is valid; each reason is given.
    #[error("no valid GPT: primary: {primary}; backup: {backup}")]
    Invalid {
        /// Why the primary header (LBA 1) was rejected.
        primary: String,
        /// Why the backup header (last LBA) was rejected.
        backup: String,
    },
    /// The disk is too small for the table or the partitions asked for.
    #[error("disk of {sectors} sectors is too small: {what}")]
    TooSmall {
        /// The disk's size.
        sectors: u64,
        /// What did not fit.
        what: String,
    },
    /// A partition name is longer than 36 UTF-16 units.
    #[error("partition name {0:?} is longer than 36 UTF-16 units")]
    NameTooLong(String),
    /// Every entry is in use.
    #[error("all {ENTRIES} partition entries are in use")]
    Full,
    /// A GUID string is not `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX`.
    #[error("not a GUID: {0:?}")]
    BadGuid(String),
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> GptError {
    move |source| GptError::Io { what, source }
}

/// A GUID in its on-disk byte order (the first three fields little-endian).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// The all-zero GUID: an unused entry's type.
    pub const ZERO: Guid = Guid([0; 16]);

    /// Parses the textual form (either case), e.g.
    /// `4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709`.
    pub fn parse(text: &str) -> Result<Guid, GptError> {
        let bad = || GptError::BadGuid(text.to_owned());
        let groups: Vec<&str> = text.split('-').collect();
        let lens = [8, 4, 4, 4, 12];
        if groups.len() != 5 || groups.iter().zip(lens).any(|(g, l)| g.len() != l) {
            return Err(bad());
        }
        let hex: String = groups.concat();
        let mut be = [0u8; 16];
        for (i, b) in be.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
                .map_err(|_| bad())?;
        }
        Ok(Guid::from_big_endian(be))
    }

    /// From the 16 bytes in the order the text shows them.
    pub fn from_big_endian(be: [u8; 16]) -> Guid {
        let mut d = be;
        d[0..4].reverse();
        d[4..6].reverse();
        d[6..8].reverse();
        Guid(d)
    }

    /// A deterministic version-4-shaped GUID derived from `seed` (the image
    /// name and the partition's label), so that the same manifest always
    /// gives the same disk.
    pub fn derived(seed: &str) -> Guid {
        let mut be = [0u8; 16];
        for (i, chunk) in be.chunks_mut(4).enumerate() {
            let word = crc32(format!("keel-guid-{i}:{seed}").as_bytes());
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        be[6] = (be[6] & 0x0f) | 0x40;
        be[8] = (be[8] & 0x3f) | 0x80;
        Guid::from_big_endian(be)
    }

    /// Whether this is the zero GUID.
    pub fn is_zero(&self) -> bool {
        *self == Guid::ZERO
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.0;
        write!(
            f,
            "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-",
            d[3], d[2], d[1], d[0], d[5], d[4], d[7], d[6]
        )?;
        write!(f, "{:02X}{:02X}-", d[8], d[9])?;
        d[10..].iter().try_for_each(|b| write!(f, "{b:02X}"))
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Partition type GUIDs Keel uses.
pub mod types {
    use super::Guid;

    const fn g(be: [u8; 16]) -> Guid {
        Guid([
            be[3], be[2], be[1], be[0], be[5], be[4], be[7], be[6], be[8], be[9], be[10], be[11],
            be[12], be[13], be[14], be[15],
        ])
    }

    /// Root file system, x86-64 (the Discoverable Partitions Specification):
    /// the type of `KEEL-A` and `KEEL-B`.
    /// 4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709.
    pub const LINUX_ROOT_X86_64: Guid = g([
        0x4F, 0x68, 0xBC, 0xE3, 0xE8, 0xCD, 0x4D, 0xB1, 0x96, 0xE7, 0xFB, 0xCA, 0xF9, 0x84, 0xB7,
        0x09,
    ]);
    /// /var (Discoverable Partitions Specification): the type of `KEEL-STATE`.
    /// 4D21B016-B534-45C2-A9FB-5C16E091FD2D.
    pub const LINUX_VAR: Guid = g([
        0x4D, 0x21, 0xB0, 0x16, 0xB5, 0x34, 0x45, 0xC2, 0xA9, 0xFB, 0x5C, 0x16, 0xE0, 0x91, 0xFD,
        0x2D,
    ]);
    /// Generic Linux file system data. 0FC63DAF-8483-4772-8E79-3D69D8477DE4.
    pub const LINUX_DATA: Guid = g([
        0x0F, 0xC6, 0x3D, 0xAF, 0x84, 0x83, 0x47, 0x72, 0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D,
        0xE4,
    ]);
}

/// The ChromeOS/CoreOS slot bits in an entry's attributes (bits 48-56):
/// priority 48-51, tries 52-55, successful 56. `cgpt show` reads them.
pub mod slot_bits {
    /// Shift of the 4-bit priority.
    pub const PRIORITY_SHIFT: u32 = 48;
    /// Shift of the 4-bit tries counter.
    pub const TRIES_SHIFT: u32 = 52;
    /// The successful bit.
    pub const SUCCESSFUL: u64 = 1 << 56;
    /// Every bit the three fields use (48-56).
    pub const MASK: u64 = (0xFF << PRIORITY_SHIFT) | SUCCESSFUL;
}

/// A root slot's boot state, as the ChromeOS/CoreOS bits hold it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotAttrs {
    /// 0-15; 0 means never boot it, the highest bootable one boots.
    pub priority: u8,
    /// 0-15: boots left before the slot is given up, while not successful.
    pub tries: u8,
    /// A boot of this slot was blessed.
    pub successful: bool,
}

impl SlotAttrs {
    /// The fields of an entry's attribute bits.
    pub fn of(attributes: u64) -> SlotAttrs {
        let nibble = |shift: u32| ((attributes >> shift) & 0xF) as u8;
        SlotAttrs {
            priority: nibble(slot_bits::PRIORITY_SHIFT),
            tries: nibble(slot_bits::TRIES_SHIFT),
            successful: attributes & slot_bits::SUCCESSFUL != 0,
        }
    }

    /// `attributes` with these fields written in (values above 15 are
    /// clamped); the other bits are kept.
    pub fn apply(self, attributes: u64) -> u64 {
        let p = u64::from(self.priority.min(15)) << slot_bits::PRIORITY_SHIFT;
        let t = u64::from(self.tries.min(15)) << slot_bits::TRIES_SHIFT;
        let s = if self.successful {
            slot_bits::SUCCESSFUL
        } else {
            0
        };
        (attributes & !slot_bits::MASK) | p | t | s
    }

    /// Whether a boot may pick it: a priority, and blessed or tries left.
    pub fn bootable(&self) -> bool {
        self.priority > 0 && (self.successful || self.tries > 0)
    }
}

impl fmt::Display for SlotAttrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "priority {}, tries {}, successful {}",
            self.priority,
            self.tries,
            u8::from(self.successful)
        )
    }
}

/// One partition entry in use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// What the partition is (see [`types`]).
    pub type_guid: Guid,
    /// This partition's own GUID (`PARTUUID=`).
    pub unique_guid: Guid,
    /// First sector.
    pub first_lba: u64,
    /// Last sector, inclusive.
    pub last_lba: u64,
    /// Attribute bits (0 required, 1 no block I/O, 2 legacy boot, 48-63 type-specific).
    pub attributes: u64,
    /// The label (`PARTLABEL=`), up to 36 UTF-16 units.
    pub name: String,
}

impl Partition {
    /// Size in sectors.
    pub fn sectors(&self) -> u64 {
        self.last_lba + 1 - self.first_lba
    }

    /// Byte offset of the partition on the disk.
    pub fn offset(&self) -> u64 {
        self.first_lba * SECTOR
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.sectors() * SECTOR
    }

    fn encode(&self, out: &mut [u8]) {
        out[0..16].copy_from_slice(&self.type_guid.0);
        out[16..32].copy_from_slice(&self.unique_guid.0);
        out[32..40].copy_from_slice(&self.first_lba.to_le_bytes());
        out[40..48].copy_from_slice(&self.last_lba.to_le_bytes());
        out[48..56].copy_from_slice(&self.attributes.to_le_bytes());
        for (i, unit) in self.name.encode_utf16().take(NAME_UNITS).enumerate() {
            out[56 + 2 * i..58 + 2 * i].copy_from_slice(&unit.to_le_bytes());
        }
    }

    fn decode(raw: &[u8]) -> Option<Partition> {
        let type_guid = Guid(raw[0..16].try_into().ok()?);
        if type_guid.is_zero() {
            return None;
        }
        let units: Vec<u16> = raw[56..128]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        Some(Partition {
            type_guid,
            unique_guid: Guid(raw[16..32].try_into().ok()?),
            first_lba: le64(&raw[32..40]),
            last_lba: le64(&raw[40..48]),
            attributes: le64(&raw[48..56]),
            name: String::from_utf16_lossy(&units),
        })
    }
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

/// Which copy a table was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableCopy {
    /// LBA 1 and its entries: the normal case.
    Primary,
    /// The last LBA: the primary was damaged (the reason is in [`Gpt::damage`]).
    Backup,
}

/// A partition table: the disk's geometry and its entries by index
/// (`entries[0]` is partition 1; `None` is an unused entry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gpt {
    /// The disk's GUID.
    pub disk_guid: Guid,
    /// The disk's size in sectors.
    pub disk_sectors: u64,
    /// First sector a partition may use.
    pub first_usable: u64,
    /// Last sector a partition may use.
    pub last_usable: u64,
    /// The 128 entries.
    pub entries: Vec<Option<Partition>>,
    /// Which copy this was read from ([`TableCopy::Primary`] for a new table).
    pub read_from: TableCopy,
    /// Why the other copy was not used or does not agree, if it was not or
    /// does not: a table with damage should be rewritten whole.
    pub damage: Option<String>,
}

impl Gpt {
    /// An empty table for a disk of `disk_bytes` (rounded down to sectors).
    pub fn new(disk_bytes: u64, disk_guid: Guid) -> Result<Gpt, GptError> {
        let disk_sectors = disk_bytes / SECTOR;
        // MBR, header and entries at each end, and one aligned MiB.
        if disk_sectors < 2 * (2 + ENTRY_SECTORS) + ALIGN_SECTORS {
            return Err(GptError::TooSmall {
                sectors: disk_sectors,
                what: "the two tables".into(),
            });
        }
        Ok(Gpt {
            disk_guid,
            disk_sectors,
            first_usable: 2 + ENTRY_SECTORS,
            last_usable: disk_sectors - 2 - ENTRY_SECTORS,
            entries: vec![None; ENTRIES as usize],
            read_from: TableCopy::Primary,
            damage: None,
        })
    }

    /// Adds a partition of `bytes` (rounded up to sectors) at the first
    /// 1 MiB-aligned free space after the last partition; `bytes == 0` takes
    /// the rest of the disk. Returns its number (1-based).
    pub fn add(
        &mut self,
        name: &str,
        type_guid: Guid,
        unique_guid: Guid,
        bytes: u64,
    ) -> Result<u32, GptError> {
        if name.encode_utf16().count() > NAME_UNITS {
            return Err(GptError::NameTooLong(name.to_owned()));
        }
        let end = self
            .partitions()
            .map(|(_, p)| p.last_lba + 1)
            .max()
            .unwrap_or(self.first_usable);
        let first = end.div_ceil(ALIGN_SECTORS) * ALIGN_SECTORS;
        let last = if bytes == 0 {
            self.last_usable
        } else {
            first + bytes.div_ceil(SECTOR) - 1
        };
        if last > self.last_usable || first > last {
            return Err(GptError::TooSmall {
                sectors: self.disk_sectors,
                what: format!("partition {name} of {bytes} bytes at sector {first}"),
            });
        }
        let slot = self
            .entries
            .iter()
            .position(Option::is_none)
            .ok_or(GptError::Full)?;
        self.entries[slot] = Some(Partition {
            type_guid,
            unique_guid,
            first_lba: first,
            last_lba: last,
            attributes: 0,
            name: name.to_owned(),
        });
        Ok(slot as u32 + 1)
    }

    /// The entries in use, with their numbers (1-based).
    pub fn partitions(&self) -> impl Iterator<Item = (u32, &Partition)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.as_ref().map(|p| (i as u32 + 1, p)))
    }

    /// The partition labelled `name`, with its number.
    pub fn find(&self, name: &str) -> Option<(u32, &Partition)> {
        self.partitions().find(|(_, p)| p.name == name)
    }

    /// The partition labelled `name`, to change (e.g. its attributes).
    pub fn find_mut(&mut self, name: &str) -> Option<&mut Partition> {
        self.entries.iter_mut().flatten().find(|p| p.name == name)
    }

    /// The entry array as it is written (128 * 128 bytes).
    pub fn entry_array(&self) -> Vec<u8> {
        let mut out = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
        for (i, e) in self.entries.iter().enumerate().take(ENTRIES as usize) {
            if let Some(p) = e {
                let at = i * ENTRY_SIZE as usize;
                p.encode(&mut out[at..at + ENTRY_SIZE as usize]);
            }
        }
        out
    }

    /// The last sector of the disk, where the backup header lives.
    pub fn last_lba(&self) -> u64 {
        self.disk_sectors - 1
    }

    /// One header sector: `primary` at LBA 1 (entries at 2), or the backup
    /// at the last LBA (entries just before it).
    pub fn header(&self, primary: bool) -> [u8; SECTOR as usize] {
        let (my, alternate, entries_lba) = if primary {
            (1, self.last_lba(), 2)
        } else {
            (self.last_lba(), 1, self.last_lba() - ENTRY_SECTORS)
        };
        let mut h = [0u8; SECTOR as usize];
        h[0..8].copy_from_slice(SIGNATURE);
        h[8..12].copy_from_slice(&REVISION.to_le_bytes());
        h[12..16].copy_from_slice(&HEADER_SIZE.to_le_bytes());
        h[24..32].copy_from_slice(&u64::to_le_bytes(my));
        h[32..40].copy_from_slice(&u64::to_le_bytes(alternate));
        h[40..48].copy_from_slice(&self.first_usable.to_le_bytes());
        h[48..56].copy_from_slice(&self.last_usable.to_le_bytes());
        h[56..72].copy_from_slice(&self.disk_guid.0);
        h[72..80].copy_from_slice(&u64::to_le_bytes(entries_lba));
        h[80..84].copy_from_slice(&ENTRIES.to_le_bytes());
        h[84..88].copy_from_slice(&ENTRY_SIZE.to_le_bytes());
        h[88..92].copy_from_slice(&crc32(&self.entry_array()).to_le_bytes());
        let crc = crc32(&h[..HEADER_SIZE as usize]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// The protective MBR (LBA 0): one partition of type 0xEE over the disk.
    pub fn protective_mbr(&self) -> [u8; SECTOR as usize] {
        let mut m = [0u8; SECTOR as usize];
        let e = &mut m[446..462];
        e[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
        e[4] = 0xEE;
        e[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
        e[8..12].copy_from_slice(&1u32.to_le_bytes());
        let size = u32::try_from(self.disk_sectors - 1).unwrap_or(u32::MAX);
        e[12..16].copy_from_slice(&size.to_le_bytes());
        m[510] = 0x55;
        m[511] = 0xAA;
        m
    }

    /// Writes the protective MBR.
    pub fn write_protective_mbr<W: Write + Seek>(&self, dev: &mut W) -> Result<(), GptError> {
        write_at(dev, 0, &self.protective_mbr(), "write the protective MBR")
    }

    /// Writes the primary header (LBA 1) and its entry array (LBA 2-33).
    pub fn write_primary<W: Write + Seek>(&self, dev: &mut W) -> Result<(), GptError> {
        write_at(
            dev,
            2 * SECTOR,
            &self.entry_array(),
            "write primary entries",
        )?;
        write_at(dev, SECTOR, &self.header(true), "write primary header")
    }

    /// Writes the backup entry array and the backup header (the last LBA).
    pub fn write_backup<W: Write + Seek>(&self, dev: &mut W) -> Result<(), GptError> {
        let entries_at = (self.last_lba() - ENTRY_SECTORS) * SECTOR;
        write_at(dev, entries_at, &self.entry_array(), "write backup entries")?;
        write_at(
            dev,
            self.last_lba() * SECTOR,
            &self.header(false),
            "write backup header",
        )
    }

    /// Writes everything: backup, then primary, then the protective MBR.
    /// (Callers that must survive a power cut flush between the steps.)
    pub fn write<W: Write + Seek>(&self, dev: &mut W) -> Result<(), GptError> {
        self.write_backup(dev)?;
        self.write_primary(dev)?;
        self.write_protective_mbr(dev)?;
        dev.flush().map_err(io_err("flush"))
    }

    /// Writes the table so that a power cut at any moment leaves a valid
    /// copy: the backup (entries, then header), `sync`, the primary
    /// (entries, then header), `sync`. Until the primary header is whole the
    /// old primary is still valid (its CRC covers the old entries, which a
    /// torn write fails), and once it is, the new one is; a torn primary
    /// falls back to the new backup. The protective MBR is rewritten only
    /// when it is not what it should be. `sync` is `File::sync_all` on a
    /// device; tests pass a recorder.
    pub fn commit<D: Read + Write + Seek>(
        &self,
        dev: &mut D,
        mut sync: impl FnMut(&mut D) -> io::Result<()>,
    ) -> Result<(), GptError> {
        self.write_backup(dev)?;
        dev.flush().map_err(io_err("flush the backup"))?;
        sync(dev).map_err(io_err("sync the backup"))?;
        self.write_primary(dev)?;
        dev.flush().map_err(io_err("flush the primary"))?;
        sync(dev).map_err(io_err("sync the primary"))?;
        let mbr = read_at(dev, 0, SECTOR as usize).map_err(io_err("read the protective MBR"))?;
        if mbr[446..] != self.protective_mbr()[446..] {
            self.write_protective_mbr(dev)?;
            dev.flush().map_err(io_err("flush the protective MBR"))?;
            sync(dev).map_err(io_err("sync the protective MBR"))?;
        }
        Ok(())
    }

    /// The slot fields of the partition labelled `name`.
    pub fn slot(&self, name: &str) -> Option<SlotAttrs> {
        self.find(name).map(|(_, p)| SlotAttrs::of(p.attributes))
    }

    /// Sets the slot fields of the partition labelled `name`; false if
    /// there is none.
    pub fn set_slot(&mut self, name: &str, attrs: SlotAttrs) -> bool {
        match self.find_mut(name) {
            Some(p) => {
                p.attributes = attrs.apply(p.attributes);
                true
            }
            None => false,
        }
    }

    /// Reads the table of a disk of `disk_bytes`: the primary copy if it is
    /// valid, else the backup. [`Gpt::damage`] says what was wrong with the
    /// other copy, if anything.
    pub fn read<R: Read + Seek>(dev: &mut R, disk_bytes: u64) -> Result<Gpt, GptError> {
        let disk_sectors = disk_bytes / SECTOR;
        if disk_sectors < 2 * (2 + ENTRY_SECTORS) {
            return Err(GptError::TooSmall {
                sectors: disk_sectors,
                what: "a GPT".into(),
            });
        }
        let primary = read_copy(dev, 1, disk_sectors);
        let backup = read_copy(dev, disk_sectors - 1, disk_sectors);
        match (primary, backup) {
            (Ok(mut p), Ok(b)) => {
                if p.entries != b.entries || p.disk_guid != b.disk_guid {
                    p.damage = Some("the backup table differs from the primary".into());
                }
                Ok(p)
            }
            (Ok(mut p), Err(why)) => {
                p.damage = Some(format!("backup: {why}"));
                Ok(p)
            }
            (Err(why), Ok(mut b)) => {
                b.read_from = TableCopy::Backup;
                b.damage = Some(format!("primary: {why}"));
                Ok(b)
            }
            (Err(primary), Err(backup)) => Err(GptError::Invalid { primary, backup }),
        }
    }
}

fn write_at<W: Write + Seek>(
    dev: &mut W,
    at: u64,
    bytes: &[u8],
    what: &'static str,
) -> Result<(), GptError> {
    dev.seek(SeekFrom::Start(at)).map_err(io_err(what))?;
    dev.write_all(bytes).map_err(io_err(what))
}

fn read_at<R: Read + Seek>(dev: &mut R, at: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    dev.seek(SeekFrom::Start(at))?;
    dev.read_exact(&mut buf)?;
    Ok(buf)
}

/// Reads and checks the header at `lba` and its entries; the error is the
/// reason, for [`GptError::Invalid`] and [`Gpt::damage`].
fn read_copy<R: Read + Seek>(dev: &mut R, lba: u64, disk_sectors: u64) -> Result<Gpt, String> {
    let h = read_at(dev, lba * SECTOR, SECTOR as usize)
        .map_err(|e| format!("cannot read LBA {lba}: {e}"))?;
    if &h[0..8] != SIGNATURE {
        return Err(format!("no \"EFI PART\" signature at LBA {lba}"));
    }
    let size = le32(&h[12..16]);
    if !(HEADER_SIZE..=SECTOR as u32).contains(&size) {
        return Err(format!("header size {size}"));
    }
    let mut check = h[..size as usize].to_vec();
    check[16..20].fill(0);
    if crc32(&check) != le32(&h[16..20]) {
        return Err(format!("header CRC mismatch at LBA {lba}"));
    }
    if le64(&h[24..32]) != lba {
        return Err(format!(
            "header at LBA {lba} says it is at {}",
            le64(&h[24..32])
        ));
    }
    let (first_usable, last_usable) = (le64(&h[40..48]), le64(&h[48..56]));
    let entries_lba = le64(&h[72..80]);
    let (count, entry_size) = (le32(&h[80..84]), le32(&h[84..88]));
    if entry_size < 128 || entry_size % 8 != 0 || count == 0 || count > 1024 {
        return Err(format!("{count} entries of {entry_size} bytes"));
    }
    let array_len = count as usize * entry_size as usize;
    if last_usable >= disk_sectors || first_usable > last_usable {
        return Err(format!(
            "usable sectors {first_usable}-{last_usable} do not fit a disk of {disk_sectors}"
        ));
    }
    let array = read_at(dev, entries_lba * SECTOR, array_len)
        .map_err(|e| format!("cannot read entries at LBA {entries_lba}: {e}"))?;
    if crc32(&array) != le32(&h[88..92]) {
        return Err(format!("entry array CRC mismatch at LBA {entries_lba}"));
    }
    let entries = array
        .chunks(entry_size as usize)
        .map(Partition::decode)
        .collect();
    Ok(Gpt {
        disk_guid: Guid(h[56..72].try_into().map_err(|_| "short header")?),
        disk_sectors,
        first_usable,
        last_usable,
        entries,
        read_from: TableCopy::Primary,
        damage: None,
    })
}

/// CRC-32 (IEEE 802.3, reflected, as UEFI and zlib use it).
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !0u32;
    for &b in data {
        c = TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn disk(mib: u64) -> (Gpt, Cursor<Vec<u8>>) {
        let mut g = Gpt::new(mib << 20, Guid::derived("disk")).unwrap();
        g.add(
            "KEEL-A",
            types::LINUX_ROOT_X86_64,
            Guid::derived("a"),
            8 << 20,
        )
        .unwrap();
        g.add(
            "KEEL-B",
            types::LINUX_ROOT_X86_64,
            Guid::derived("b"),
            8 << 20,
        )
        .unwrap();
        g.add("KEEL-STATE", types::LINUX_VAR, Guid::derived("s"), 0)
            .unwrap();
        let mut dev = Cursor::new(vec![0u8; (mib << 20) as usize]);
        g.write(&mut dev).unwrap();
        (g, dev)
    }

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn guid_text_round_trip_and_byte_order() {
        let t = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
        let g = Guid::parse(t).unwrap();
        assert_eq!(g, types::LINUX_ROOT_X86_64);
        assert_eq!(g.to_string(), t);
        assert_eq!(&g.0[..4], &[0xE3, 0xBC, 0x68, 0x4F]);
        assert_eq!(Guid::parse(&t.to_lowercase()).unwrap(), g);
        for bad in [
            "",
            "4F68BCE3E8CD4DB196E7FBCAF984B709",
            "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B7ZZ",
        ] {
            assert!(Guid::parse(bad).is_err(), "{bad}");
        }
        let d = Guid::derived("x").to_string();
        assert_eq!(&d[14..15], "4", "{d}");
        assert_eq!(Guid::derived("x"), Guid::derived("x"));
        assert_ne!(Guid::derived("x"), Guid::derived("y"));
    }

    #[test]
    fn layout_is_aligned_and_fills_the_disk() {
        let (g, _) = disk(32);
        let parts: Vec<_> = g.partitions().collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].1.first_lba, 2048);
        assert_eq!(parts[0].1.size(), 8 << 20);
        assert_eq!(parts[1].1.first_lba, 2048 + 16384);
        assert_eq!(parts[2].1.last_lba, g.last_usable);
        assert_eq!(g.last_usable, (32 << 11) - 34);
    }

    #[test]
    fn write_then_read_round_trips_with_attributes() {
        let (mut g, mut dev) = disk(32);
        g.find_mut("KEEL-B").unwrap().attributes =
            (15 << slot_bits::PRIORITY_SHIFT) | (1 << slot_bits::TRIES_SHIFT);
        g.write(&mut dev).unwrap();
        let r = Gpt::read(&mut dev, 32 << 20).unwrap();
        assert_eq!(r, g);
        assert_eq!(r.find("KEEL-STATE").unwrap().0, 3);
        assert_eq!(
            r.find("KEEL-B").unwrap().1.attributes >> 48,
            0x1F,
            "priority 15, tries 1"
        );
        let mbr = &dev.get_ref()[..512];
        assert_eq!(mbr[450], 0xEE);
        assert_eq!(&mbr[510..], &[0x55, 0xAA]);
    }

    #[test]
    fn a_damaged_primary_falls_back_to_the_backup() {
        let (g, mut dev) = disk(32);
        dev.get_mut()[2 * 512 + 5] ^= 0xFF; // the primary entry array
        let r = Gpt::read(&mut dev, 32 << 20).unwrap();
        assert_eq!(r.read_from, TableCopy::Backup);
        assert!(
            r.damage.as_deref().unwrap().contains("entry array CRC"),
            "{r:?}"
        );
        assert_eq!(r.entries, g.entries);
        // Both gone: both reasons named.
        let last = (32 << 20) - 512;
        dev.get_mut()[last] = 0;
        let e = Gpt::read(&mut dev, 32 << 20).unwrap_err().to_string();
        assert!(
            e.contains("primary: entry array CRC") && e.contains("signature"),
            "{e}"
        );
    }

    #[test]
    fn a_stale_backup_is_reported() {
        let (mut g, mut dev) = disk(32);
        g.find_mut("KEEL-A").unwrap().attributes = 1 << 56;
        g.write_primary(&mut dev).unwrap();
        let r = Gpt::read(&mut dev, 32 << 20).unwrap();
        assert_eq!(r.read_from, TableCopy::Primary);
        assert!(r.damage.is_some());
        assert_eq!(r.find("KEEL-A").unwrap().1.attributes, 1 << 56);
    }

    #[test]
    fn slot_fields_round_trip_and_keep_other_bits() {
        let a = SlotAttrs {
            priority: 2,
            tries: 1,
            successful: false,
        };
        let bits = a.apply(1 | (1 << 60));
        assert_eq!(bits, 1 | (1 << 60) | (2 << 48) | (1 << 52));
        assert_eq!(SlotAttrs::of(bits), a);
        assert!(a.bootable());
        let good = SlotAttrs {
            priority: 15,
            tries: 0,
            successful: true,
        };
        assert_eq!(good.apply(0), (15 << 48) | (1 << 56));
        assert_eq!(SlotAttrs::of(good.apply(!0)), good);
        assert!(good.bootable());
        assert!(!SlotAttrs::default().bootable());
        assert!(!SlotAttrs {
            priority: 0,
            tries: 3,
            successful: true
        }
        .bootable());
        assert_eq!(
            good.to_string(),
            "priority 15, tries 0, successful 1",
            "cgpt's words"
        );
    }

    /// A device that records the order of writes and syncs, and can lose
    /// power: after `budget` bytes nothing more reaches it.
    struct Recorder {
        disk: Cursor<Vec<u8>>,
        budget: usize,
        log: Vec<String>,
    }

    impl Read for Recorder {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.disk.read(buf)
        }
    }
    impl Seek for Recorder {
        fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
            self.disk.seek(pos)
        }
    }
    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let at = self.disk.position();
            let n = buf.len().min(self.budget);
            self.budget -= n;
            self.disk.write_all(&buf[..n])?;
            self.disk.set_position(at + buf.len() as u64);
            self.log.push(format!("write {}", at / SECTOR));
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn commit_orders_backup_sync_primary_sync() {
        let (mut g, dev) = disk(32);
        g.set_slot(
            "KEEL-B",
            SlotAttrs {
                priority: 2,
                tries: 1,
                successful: false,
            },
        );
        let mut r = Recorder {
            disk: dev,
            budget: usize::MAX,
            log: Vec::new(),
        };
        g.commit(&mut r, |d| {
            d.log.push("sync".into());
            Ok(())
        })
        .unwrap();
        let last = (32 << 11) - 1;
        assert_eq!(
            r.log,
            [
                format!("write {}", last - 32),
                format!("write {last}"),
                "sync".into(),
                "write 2".into(),
                "write 1".into(),
                "sync".into(),
            ]
        );
        let back = Gpt::read(&mut r.disk, 32 << 20).unwrap();
        assert_eq!(back.damage, None);
        assert_eq!(back.slot("KEEL-B").unwrap().priority, 2);
    }

    #[test]
    fn a_power_cut_anywhere_in_commit_leaves_the_old_or_the_new_table() {
        let (old, dev) = disk(32);
        let mut new = old.clone();
        new.set_slot(
            "KEEL-B",
            SlotAttrs {
                priority: 2,
                tries: 1,
                successful: false,
            },
        );
        let total = 2 * (ENTRY_SECTORS as usize + 1) * SECTOR as usize;
        // Every sector boundary and a few torn sectors.
        let cuts =
            (0..=total)
                .step_by(SECTOR as usize)
                .chain([100, 16384 + 7, 16896 + 300, 16896 + 1000]);
        for budget in cuts {
            let mut r = Recorder {
                disk: dev.clone(),
                budget,
                log: Vec::new(),
            };
            new.commit(&mut r, |_| Ok(())).unwrap();
            let got = Gpt::read(&mut r.disk, 32 << 20)
                .unwrap_or_else(|e| panic!("cut after {budget} bytes: {e}"));
            assert!(
                got.entries == old.entries || got.entries == new.entries,
                "cut after {budget} bytes: a mix"
            );
        }
    }

    #[test]
    fn too_small_and_too_long() {
        assert!(matches!(
            Gpt::new(64 * 512, Guid::ZERO),
            Err(GptError::TooSmall { .. })
        ));
        let mut g = Gpt::new(4 << 20, Guid::ZERO).unwrap();
        assert!(matches!(
            g.add("x".repeat(37).as_str(), types::LINUX_DATA, Guid::ZERO, 0),
            Err(GptError::NameTooLong(_))
        ));
        assert!(matches!(
            g.add("big", types::LINUX_DATA, Guid::ZERO, 8 << 20),
            Err(GptError::TooSmall { .. })
        ));
    }
}
