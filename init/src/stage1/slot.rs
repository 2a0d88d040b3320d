//! A/B root slots: which of `KEEL-A` and `KEEL-B` boots, from the
//! ChromeOS/CoreOS bits in their GPT entries (priority, tries, successful).
//!
//! The rule: among the slots that are bootable (priority > 0, and
//! successful or with tries left) the highest priority boots, ties going
//! to A; `keel.slot=a|b` forces one. A slot that is not yet successful has
//! its tries decremented and written to both GPT copies *before* its root
//! is mounted, so a boot that never gets blessed (a crash, a hang that the
//! watchdog resets, a unit that never becomes ready) has used its try, and
//! the next boot falls back to the other slot. When nothing is bootable the
//! highest priority (A on a tie) is tried anyway: a machine with a root is
//! better than none.
//!
//! Pure choice ([`choose`]) plus the one disk step stage 1 takes
//! ([`count_boot`]); `keel update` uses both as well.

use keel_image::gpt::{Gpt, GptError, SlotAttrs};
use keel_kernel::block::{self, BlockDevice};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// One of the two root slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    /// Both, A first (the tie-breaker).
    pub const BOTH: [Slot; 2] = [Slot::A, Slot::B];

    /// The partition label.
    pub fn label(self) -> &'static str {
        match self {
            Slot::A => "KEEL-A",
            Slot::B => "KEEL-B",
        }
    }

    /// `a` or `b`, as the command line and stage1.json say it.
    pub fn id(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }

    /// `A` or `B`, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "A",
            Slot::B => "B",
        }
    }

    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// `a`/`b` (either case), or `KEEL-A`/`KEEL-B`.
    pub fn parse(s: &str) -> Option<Slot> {
        match s.to_ascii_lowercase().as_str() {
            "a" | "keel-a" => Some(Slot::A),
            "b" | "keel-b" => Some(Slot::B),
            _ => None,
        }
    }
}

/// What stage 1 decided, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub slot: Slot,
    /// One line for the console and the boot record.
    pub reason: String,
    /// The chosen slot's fields as they must be on disk before mounting
    /// (tries decremented), if they change.
    pub write: Option<SlotAttrs>,
}

fn describe(slot: Slot, s: SlotAttrs) -> String {
    if s.priority == 0 {
        format!("{} has priority 0", slot.name())
    } else if s.successful {
        format!("{} (priority {}) is successful", slot.name(), s.priority)
    } else if s.tries > 0 {
        format!(
            "{} (priority {}) has {} tries left",
            slot.name(),
            s.priority,
            s.tries
        )
    } else {
        format!(
            "{} (priority {}) has no tries left and was never blessed",
            slot.name(),
            s.priority
        )
    }
}

/// Chooses the slot to boot from A's and B's fields; `forced` is
/// `keel.slot=`.
pub fn choose(a: SlotAttrs, b: SlotAttrs, forced: Option<Slot>) -> Choice {
    let attrs = |s: Slot| if s == Slot::A { a } else { b };
    let counted = |slot: Slot, reason: String| {
        let s = attrs(slot);
        let write = (!s.successful && s.tries > 0).then(|| SlotAttrs {
            tries: s.tries - 1,
            ..s
        });
        let reason = match write {
            Some(w) => format!(
                "{reason}; trying it ({} tries left after this one)",
                w.tries
            ),
            None => reason,
        };
        Choice {
            slot,
            reason,
            write,
        }
    };
    if let Some(slot) = forced {
        return counted(
            slot,
            format!("forced by keel.slot={} ({})", slot.id(), attrs(slot)),
        );
    }
    // Highest priority first; `max_by_key` keeps the last of equals, so
    // B comes first in the list to let A win ties.
    let best = [Slot::B, Slot::A]
        .into_iter()
        .filter(|s| attrs(*s).bootable())
        .max_by_key(|s| attrs(*s).priority);
    let both = format!("{}; {}", describe(Slot::A, a), describe(Slot::B, b));
    match best {
        Some(slot) => counted(slot, both),
        None => {
            let slot = if b.priority > a.priority {
                Slot::B
            } else {
                Slot::A
            };
            Choice {
                slot,
                reason: format!(
                    "no slot is bootable ({both}): trying {} anyway",
                    slot.name()
                ),
                write: None,
            }
        }
    }
}

/// A slot step on the disk that failed.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error("no disk has both KEEL-A and KEEL-B partitions; block devices: {0}")]
    NoSlotDisk(String),
    #[error("cannot open {disk}: {source}")]
    Open {
        disk: PathBuf,
        source: std::io::Error,
    },
    #[error("{disk}: {source}")]
    Gpt { disk: PathBuf, source: GptError },
    #[error("{disk} has no {label} partition")]
    NoSlot { disk: PathBuf, label: &'static str },
    #[error("{disk}: the partition table is locked by another process (a `keel update` command)")]
    Busy { disk: PathBuf },
}

/// The disk with the slots and its two partitions' device nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotDisk {
    /// `/dev/vda`.
    pub disk: PathBuf,
    /// `/dev/vda1`, `/dev/vda2`.
    pub a: PathBuf,
    pub b: PathBuf,
}

impl SlotDisk {
    /// Finds the disk that has both `KEEL-A` and `KEEL-B` among `devices`.
    pub fn find(devices: &[BlockDevice], dev: &Path) -> Option<SlotDisk> {
        let part = |disk: &str, label: &str| {
            devices
                .iter()
                .find(|d| d.disk.as_deref() == Some(disk) && d.partname.as_deref() == Some(label))
        };
        devices
            .iter()
            .filter(|d| d.partname.as_deref() == Some(Slot::A.label()))
            .find_map(|d| {
                let disk = d.disk.as_deref()?;
                let b = part(disk, Slot::B.label())?;
                Some(SlotDisk {
                    disk: dev.join(disk),
                    a: d.node(dev),
                    b: b.node(dev),
                })
            })
    }

    /// Scans `sys` (normally /sys) for the slot disk.
    pub fn scan(sys: &Path, dev: &Path) -> Result<SlotDisk, SlotError> {
        let devices = block::list(sys).unwrap_or_default();
        SlotDisk::find(&devices, dev)
            .ok_or_else(|| SlotError::NoSlotDisk(super::root::describe(&devices)))
    }

    /// The partition node of `slot`.
    pub fn node(&self, slot: Slot) -> &Path {
        match slot {
            Slot::A => &self.a,
            Slot::B => &self.b,
        }
    }
}

/// An open slot disk and its partition table.
#[derive(Debug)]
pub struct Table {
    pub disk: PathBuf,
    pub file: File,
    pub gpt: Gpt,
}

/// How [`Table`] takes the disk's lock (`flock` on the disk's node).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    /// Read-write, exclusive, waiting for it: `keel update`, stage 1.
    Write,
    /// Read-write, exclusive, or [`SlotError::Busy`]: PID 1, which must
    /// never wait on another process.
    TryWrite,
    /// Read-only, no lock, no repair: `keel update status`.
    Read,
}

impl Table {
    /// Opens `disk` read-write, holding its lock until the table is
    /// dropped, and reads its GPT. A table whose copies disagree or where
    /// one is damaged (a power cut during an update) is rewritten whole from
    /// the copy that was read, so both are valid again. The lock is what
    /// tells that damage from a commit in progress in another process:
    /// every writer holds it from reading the table to its last fsync.
    pub fn open(disk: &Path) -> Result<Table, SlotError> {
        Table::open_as(disk, Access::Write)
    }

    /// [`Table::open`], or [`SlotError::Busy`] at once when another process
    /// holds the lock.
    pub fn try_open(disk: &Path) -> Result<Table, SlotError> {
        Table::open_as(disk, Access::TryWrite)
    }

    /// Reads `disk`'s GPT without writing anything: damage stays in
    /// `gpt.damage` for the caller to report. A read during another
    /// process's commit sees either copy whole (each has its CRC).
    pub fn read(disk: &Path) -> Result<Table, SlotError> {
        Table::open_as(disk, Access::Read)
    }

    fn open_as(disk: &Path, access: Access) -> Result<Table, SlotError> {
        let open_err = |source| SlotError::Open {
            disk: disk.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(access != Access::Read)
            .open(disk)
            .map_err(open_err)?;
        if access != Access::Read {
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) if access == Access::TryWrite => {
                    return Err(SlotError::Busy {
                        disk: disk.to_path_buf(),
                    })
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    log::warn!(
                        "{}: waiting for another `keel update` command to release the \
                         partition table",
                        disk.display()
                    );
                    file.lock().map_err(open_err)?;
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(open_err(e)),
            }
        }
        let size = block::size_bytes(&file).map_err(open_err)?;
        let gpt = Gpt::read(&mut file, size).map_err(|source| SlotError::Gpt {
            disk: disk.to_path_buf(),
            source,
        })?;
        let mut t = Table {
            disk: disk.to_path_buf(),
            file,
            gpt,
        };
        if access != Access::Read {
            if let Some(damage) = t.gpt.damage.take() {
                log::warn!(
                    "{}: {damage}; rewriting both GPT copies from the {:?} copy",
                    disk.display(),
                    t.gpt.read_from
                );
                t.commit()?;
            }
        }
        for slot in Slot::BOTH {
            if t.gpt.find(slot.label()).is_none() {
                return Err(SlotError::NoSlot {
                    disk: disk.to_path_buf(),
                    label: slot.label(),
                });
            }
        }
        Ok(t)
    }

    /// The fields of `slot`.
    pub fn attrs(&self, slot: Slot) -> SlotAttrs {
        self.gpt.slot(slot.label()).unwrap_or_default()
    }

    /// Sets `slot`'s fields in memory (call [`Table::commit`]).
    pub fn set(&mut self, slot: Slot, attrs: SlotAttrs) {
        self.gpt.set_slot(slot.label(), attrs);
    }

    /// Writes the table: backup, fsync, primary, fsync (see `Gpt::commit`).
    pub fn commit(&mut self) -> Result<(), SlotError> {
        let disk = self.disk.clone();
        self.gpt
            .commit(&mut self.file, |f| f.sync_all())
            .map_err(|source| SlotError::Gpt { disk, source })
    }
}

/// Stage 1's step: reads the slots, chooses, and when the choice uses a
/// try, writes it to both copies before returning.
pub fn count_boot(disk: &Path, forced: Option<Slot>) -> Result<Choice, SlotError> {
    let mut t = Table::open(disk)?;
    let choice = choose(t.attrs(Slot::A), t.attrs(Slot::B), forced);
    if let Some(w) = choice.write {
        t.set(choice.slot, w);
        t.commit()?;
    }
    Ok(choice)
}

/// A 32 MiB disk image with 8 MiB `KEEL-A` and `KEEL-B` partitions
/// carrying `a` and `b` (tests of the table and of the blessing).
#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a panic is a failed test
pub(crate) fn write_test_disk(path: &Path, a: SlotAttrs, b: SlotAttrs) {
    use keel_image::gpt::{types, Guid};
    let mut g = Gpt::new(32 << 20, Guid::derived("d")).unwrap();
    for l in ["KEEL-A", "KEEL-B"] {
        g.add(l, types::LINUX_ROOT_X86_64, Guid::derived(l), 8 << 20)
            .unwrap();
    }
    g.set_slot("KEEL-A", a);
    g.set_slot("KEEL-B", b);
    let mut f = File::create(path).unwrap();
    f.set_len(32 << 20).unwrap();
    g.write(&mut f).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(priority: u8, tries: u8, successful: bool) -> SlotAttrs {
        SlotAttrs {
            priority,
            tries,
            successful,
        }
    }

    #[test]
    fn the_choice_table() {
        let good = |p| s(p, 0, true);
        // (A, B, forced) -> (slot, decrement to, reason contains)
        type Case = (
            SlotAttrs,
            SlotAttrs,
            Option<Slot>,
            Slot,
            Option<u8>,
            &'static str,
        );
        let cases: &[Case] = &[
            // A fresh disk: A, nothing written.
            (
                good(1),
                s(0, 0, false),
                None,
                Slot::A,
                None,
                "A (priority 1) is successful",
            ),
            // An update: B has the higher priority and one try.
            (
                good(1),
                s(2, 1, false),
                None,
                Slot::B,
                Some(0),
                "B (priority 2) has 1 tries left",
            ),
            // B's try was used and never blessed: back on A.
            (
                good(1),
                s(2, 0, false),
                None,
                Slot::A,
                None,
                "B (priority 2) has no tries left",
            ),
            // B blessed: B, nothing written.
            (
                good(1),
                good(2),
                None,
                Slot::B,
                None,
                "B (priority 2) is successful",
            ),
            // Ties go to A.
            (good(3), good(3), None, Slot::A, None, ""),
            (s(3, 2, false), s(3, 2, false), None, Slot::A, Some(1), ""),
            // Priority 0 never boots, even when successful.
            (
                s(0, 0, true),
                good(1),
                None,
                Slot::B,
                None,
                "A has priority 0",
            ),
            // Forced: the one asked for, tries still counted.
            (
                good(2),
                s(1, 0, false),
                Some(Slot::B),
                Slot::B,
                None,
                "forced by keel.slot=b",
            ),
            (
                good(2),
                s(1, 3, false),
                Some(Slot::B),
                Slot::B,
                Some(2),
                "forced",
            ),
            // Nothing bootable: the highest priority anyway, A on a tie.
            (
                s(1, 0, false),
                s(2, 0, false),
                None,
                Slot::B,
                None,
                "no slot is bootable",
            ),
            (
                s(0, 0, false),
                s(0, 0, false),
                None,
                Slot::A,
                None,
                "trying A anyway",
            ),
        ];
        for (i, (a, b, forced, slot, tries, why)) in cases.iter().enumerate() {
            let c = choose(*a, *b, *forced);
            assert_eq!(c.slot, *slot, "case {i}: {c:?}");
            assert_eq!(c.write.map(|w| w.tries), *tries, "case {i}: {c:?}");
            assert!(c.reason.contains(why), "case {i}: {}", c.reason);
            if let Some(w) = c.write {
                let before = if *slot == Slot::A { a } else { b };
                assert_eq!((w.priority, w.successful), (before.priority, false));
            }
        }
    }

    #[test]
    fn slot_names() {
        assert_eq!(Slot::parse("B"), Some(Slot::B));
        assert_eq!(Slot::parse("keel-a"), Some(Slot::A));
        assert_eq!(Slot::parse("c"), None);
        assert_eq!(Slot::A.other(), Slot::B);
        assert_eq!((Slot::B.label(), Slot::B.id()), ("KEEL-B", "b"));
    }

    fn dev(name: &str, disk: Option<&str>, partname: Option<&str>) -> BlockDevice {
        BlockDevice {
            name: name.into(),
            partn: partname.map(|_| 1),
            partname: partname.map(Into::into),
            disk: disk.map(Into::into),
            sectors: 2048,
        }
    }

    #[test]
    fn the_slot_disk_needs_both_slots_on_one_disk() {
        let devs = [
            dev("vda", None, None),
            dev("vda1", Some("vda"), Some("KEEL-A")),
            dev("vdb1", Some("vdb"), Some("KEEL-B")),
        ];
        assert_eq!(SlotDisk::find(&devs, Path::new("/dev")), None);
        let devs = [
            dev("vda1", Some("vda"), Some("KEEL-A")),
            dev("vda2", Some("vda"), Some("KEEL-B")),
            dev("vda3", Some("vda"), Some("KEEL-STATE")),
        ];
        let d = SlotDisk::find(&devs, Path::new("/dev")).unwrap();
        assert_eq!(d.disk, Path::new("/dev/vda"));
        assert_eq!(d.node(Slot::B), Path::new("/dev/vda2"));
    }

    #[test]
    fn counting_a_boot_writes_both_copies_before_returning() {
        use keel_image::gpt::TableCopy;
        let dir = std::env::temp_dir().join(format!("keel-slot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("disk.img");
        write_test_disk(&path, s(1, 0, true), s(2, 1, false));

        let c = count_boot(&path, None).unwrap();
        assert_eq!(c.slot, Slot::B);
        let mut f = File::open(&path).unwrap();
        let back = Gpt::read(&mut f, 32 << 20).unwrap();
        assert_eq!(back.damage, None, "both copies agree");
        assert_eq!(back.slot("KEEL-B").unwrap(), s(2, 0, false));
        // The next boot: B has no try left, so A; nothing is written.
        let c = count_boot(&path, None).unwrap();
        assert_eq!(c.slot, Slot::A);
        assert!(c.reason.contains("no tries left"), "{}", c.reason);
        assert_eq!(c.write, None);

        // A stale backup (a power cut between the copies) is repaired.
        let mut newer = back.clone();
        newer.set_slot("KEEL-B", s(3, 1, false));
        let mut f = OpenOptions::new().write(true).open(&path).unwrap();
        newer.write_backup(&mut f).unwrap();
        drop(f);
        // A reader (`keel update status`) only reports it: the copies may
        // differ because another process is between them.
        let before = std::fs::read(&path).unwrap();
        let r = Table::read(&path).unwrap();
        assert_eq!(r.attrs(Slot::B), s(2, 0, false));
        assert!(r.gpt.damage.is_some());
        assert!(std::fs::read(&path).unwrap() == before, "a read wrote");
        // While a writer holds the lock, PID 1's try is refused at once;
        // after it, the table is the writer's.
        let mut w = Table::open(&path).unwrap();
        assert!(matches!(
            Table::try_open(&path),
            Err(SlotError::Busy { disk }) if disk == path
        ));
        // Another writer (a second `keel update`) waits for it.
        let released = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let waiter = {
            let (path, released) = (path.clone(), released.clone());
            std::thread::spawn(move || {
                let t = Table::open(&path).unwrap();
                assert!(released.load(std::sync::atomic::Ordering::SeqCst));
                drop(t);
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        w.set(Slot::A, s(1, 0, true));
        w.commit().unwrap();
        released.store(true, std::sync::atomic::Ordering::SeqCst);
        drop(w);
        waiter.join().unwrap();
        let t = Table::try_open(&path).unwrap();
        assert_eq!(t.gpt.read_from, TableCopy::Primary);
        assert_eq!(t.gpt.damage, None);
        let mut f = File::open(&path).unwrap();
        let fixed = Gpt::read(&mut f, 32 << 20).unwrap();
        assert_eq!(fixed.damage, None);
        assert_eq!(
            fixed.slot("KEEL-B").unwrap(),
            s(2, 0, false),
            "the primary won"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
