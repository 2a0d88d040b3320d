//! `keel update apply|status|rollback|mark-good`: A/B updates of the root.
//!
//! `apply IMAGE --sha256 HEX` writes a root image to the slot that is not
//! running, in an order where a power cut at any point leaves a valid GPT
//! and a machine that boots:
//!
//! 1. refuse, touching nothing: a malformed or wrong hash (the image is
//!    hashed before anything is written), an image larger than the slot,
//!    a target that is the running slot or is mounted;
//! 2. mark the target unbootable (priority 0, tries 0, successful 0; both
//!    GPT copies, backup first, each fsynced): from here on a half-written
//!    slot is never chosen;
//! 3. write the image, fsync, read it back past the page cache (O_DIRECT)
//!    and compare the hash;
//! 4. give the target a higher priority than the running slot, tries 1,
//!    successful 0 (backup, fsync, primary, fsync). The next boot tries it
//!    once; only blessing makes it stay.
//!
//! Until step 4's primary header is whole, the old table is the valid one
//! (stage 1 repairs the other copy); after it, the new one.
//! `KEEL_UPDATE_PAUSE=STEP` (tests only: `unbootable`, `writing`, `written`,
//! `backup`) stops the command at that point so a test can cut the power.

use crate::exit;
use crate::slots::{self, Paths};
use crate::stage1::slot::{choose, Slot, SlotDisk, SlotError, Table};
use keel_image::gpt::SlotAttrs;
use keel_image::sha256::Sha256;
use keel_kernel::block;
use serde_json::{json, Value};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

const USAGE: &str = "usage: keel update <command>

  keel update apply IMAGE --sha256 HEX [--slot a|b]
                                         write IMAGE to the slot not running; it boots next, once
  keel update status [--json]            both slots, which one booted and why, the last failed boot
  keel update rollback [--force]         boot the other (blessed) slot next
  keel update mark-good                  mark the running slot successful by hand";

/// Bytes per write and read.
const CHUNK: usize = 1 << 20;
/// O_DIRECT alignment.
const ALIGN: usize = 4096;

/// A step of `keel update` that failed or was refused.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("{0}\n{USAGE}")]
    Usage(String),
    #[error(transparent)]
    Slot(#[from] SlotError),
    #[error("--sha256 {0:?}: not 64 hex digits")]
    BadHash(String),
    #[error("cannot read the image {path}: {source}")]
    Image {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("refused: the image {path} has sha256 {actual}, not {expected}; nothing was written")]
    HashMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error(
        "refused: the image {path} is {size} bytes, larger than slot {slot} ({slot_size} bytes); \
         nothing was written"
    )]
    TooLarge {
        path: PathBuf,
        size: u64,
        slot: &'static str,
        slot_size: u64,
    },
    #[error("refused: slot {slot} ({node}) is the running root; nothing was written")]
    Running { slot: &'static str, node: PathBuf },
    #[error("which slot is running is unknown (not booted with keel.root=slot, and / is not on {a} or {b})")]
    UnknownBoot { a: PathBuf, b: PathBuf },
    #[error("writing slot {slot} ({node}): {source}; the slot stays unbootable")]
    Write {
        slot: &'static str,
        node: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "slot {slot} ({node}) reads back with sha256 {actual}, not {expected}; the slot stays \
         unbootable"
    )]
    Verify {
        slot: &'static str,
        node: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("refused: slot {slot} {why}; use --force to try it once anyway")]
    Rollback { slot: &'static str, why: String },
}

/// Entry point: `keel update ARGS`.
pub fn main(args: &[String]) -> u8 {
    // Warnings of the steps below (a table repaired, a lock waited for) on
    // stderr.
    keel_kernel::kmsg::init(&keel_kernel::kmsg::LogConfig {
        kmsg: false,
        level: log::LevelFilter::Warn,
    });
    let r = match args.first().map(String::as_str) {
        Some("apply") => apply_cmd(&args[1..]),
        Some("status") => status(args.iter().any(|a| a == "--json")),
        Some("rollback") => rollback(args.iter().any(|a| a == "--force")),
        Some("mark-good") => mark_good(),
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            return exit::OK;
        }
        _ => Err(UpdateError::Usage("keel update: which command?".into())),
    };
    match r {
        Ok(()) => exit::OK,
        Err(e @ UpdateError::Usage(_)) => {
            eprintln!("{e}");
            exit::USAGE
        }
        Err(e) => {
            eprintln!("keel update: {e}");
            exit::FAILED
        }
    }
}

/// The slot disk and which slot is running.
struct Context {
    disk: SlotDisk,
    booted: Option<Slot>,
    reason: Option<String>,
    paths: Paths,
}

fn context() -> Result<Context, UpdateError> {
    let paths = Paths::default();
    let stage1: Value = std::fs::read_to_string(paths.run.join("stage1.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let disk = SlotDisk::scan(Path::new("/sys"), Path::new("/dev"))?;
    let booted = stage1["slot"]
        .as_str()
        .and_then(Slot::parse)
        .or_else(|| Slot::BOTH.into_iter().find(|s| mounted(disk.node(*s))));
    Ok(Context {
        disk,
        booted,
        reason: stage1["slot_reason"].as_str().map(String::from),
        paths,
    })
}

/// Whether `node` is mounted anywhere (by /proc/self/mountinfo).
fn mounted(node: &Path) -> bool {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = node.to_string_lossy();
    text.lines().any(|l| {
        l.split(" - ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().nth(1))
            == Some(want.as_ref())
    })
}

fn apply_cmd(args: &[String]) -> Result<(), UpdateError> {
    let mut image = None;
    let mut hash = None;
    let mut slot = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--sha256" => hash = it.next().cloned(),
            "--slot" => {
                let v = it.next().map(String::as_str).unwrap_or_default();
                slot = Some(
                    Slot::parse(v)
                        .ok_or_else(|| UpdateError::Usage(format!("--slot {v:?}: a or b")))?,
                );
            }
            s if s.starts_with("--sha256=") => hash = Some(s["--sha256=".len()..].to_string()),
            s if !s.starts_with('-') && image.is_none() => image = Some(PathBuf::from(s)),
            other => return Err(UpdateError::Usage(format!("unexpected {other:?}"))),
        }
    }
    let image = image.ok_or_else(|| UpdateError::Usage("apply: which IMAGE?".into()))?;
    let hash = hash.ok_or_else(|| UpdateError::Usage("apply: --sha256 HEX is required".into()))?;
    let ctx = context()?;
    let running = ctx.booted.ok_or_else(|| UpdateError::UnknownBoot {
        a: ctx.disk.a.clone(),
        b: ctx.disk.b.clone(),
    })?;
    let target = slot.unwrap_or(running.other());
    let started = Instant::now();
    let report = apply(&ctx.disk, running, target, &image, &hash, &pause_from_env)?;
    println!(
        "keel update: slot {} written ({} bytes, sha256 {}) and verified in {} ms; \
         the next boot tries it once (priority {}, tries 1): keel reboot",
        target.name(),
        report.bytes,
        report.sha256,
        started.elapsed().as_millis(),
        report.priority
    );
    Ok(())
}

fn pause_from_env(step: &str) {
    if std::env::var("KEEL_UPDATE_PAUSE").as_deref() == Ok(step) {
        println!("keel update: paused at {step} (KEEL_UPDATE_PAUSE)");
        let _ = std::io::stdout().flush();
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// What [`apply`] did.
#[derive(Debug)]
pub struct Applied {
    pub bytes: u64,
    pub sha256: String,
    pub priority: u8,
}

/// Writes `image` to `target`, which must not be `running` (see the module
/// docs for the order). `pause` is called at each named step (tests).
pub fn apply(
    disk: &SlotDisk,
    running: Slot,
    target: Slot,
    image: &Path,
    expected: &str,
    pause: &dyn Fn(&str),
) -> Result<Applied, UpdateError> {
    let expected = expected.trim().to_ascii_lowercase();
    if expected.len() != 64 || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(UpdateError::BadHash(expected));
    }
    let node = disk.node(target).to_path_buf();
    if target == running {
        return Err(UpdateError::Running {
            slot: target.name(),
            node,
        });
    }
    let img_err = |source| UpdateError::Image {
        path: image.to_path_buf(),
        source,
    };
    let mut src = File::open(image).map_err(img_err)?;
    let size = block::size_bytes(&src).map_err(img_err)?;
    let mut table = Table::open(&disk.disk)?;
    let slot_size = table.gpt.find(target.label()).map_or(0, |(_, p)| p.size());
    if size > slot_size {
        return Err(UpdateError::TooLarge {
            path: image.to_path_buf(),
            size,
            slot: target.name(),
            slot_size,
        });
    }
    if mounted(&node) {
        return Err(UpdateError::Running {
            slot: target.name(),
            node,
        });
    }
    // The whole image is checked before a byte is written.
    let actual = hash_reader(&mut src, size).map_err(img_err)?;
    if actual != expected {
        return Err(UpdateError::HashMismatch {
            path: image.to_path_buf(),
            expected,
            actual,
        });
    }

    // 2. Unbootable while it is being written.
    let off = SlotAttrs::default();
    if table.attrs(target) != off {
        table.set(target, off);
        table.commit()?;
    }
    pause("unbootable");

    // 3. Write, fsync, read back.
    let write_err = |source| UpdateError::Write {
        slot: target.name(),
        node: node.clone(),
        source,
    };
    src.seek(SeekFrom::Start(0)).map_err(img_err)?;
    let mut dst = OpenOptions::new()
        .write(true)
        .open(&node)
        .map_err(write_err)?;
    let mut written = Sha256::default();
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    let mut paused = false;
    while done < size {
        let n = usize::try_from(size - done).unwrap_or(CHUNK).min(CHUNK);
        src.read_exact(&mut buf[..n]).map_err(img_err)?;
        written.update(&buf[..n]);
        dst.write_all(&buf[..n]).map_err(write_err)?;
        done += n as u64;
        if !paused && done * 2 >= size {
            paused = true;
            pause("writing");
        }
    }
    dst.sync_all().map_err(write_err)?;
    drop(dst);
    // The image could have changed between the check and the copy.
    let written = written.hex();
    if written != expected {
        return Err(UpdateError::HashMismatch {
            path: image.to_path_buf(),
            expected,
            actual: written,
        });
    }
    let back = read_back(&node, size).map_err(write_err)?;
    if back != expected {
        return Err(UpdateError::Verify {
            slot: target.name(),
            node,
            expected,
            actual: back,
        });
    }
    pause("written");

    // 4. Try it next, once.
    let priority = promote(&mut table, target);
    table.set(
        target,
        SlotAttrs {
            priority,
            tries: 1,
            successful: false,
        },
    );
    let dev = table.disk.clone();
    let mut syncs = 0;
    table
        .gpt
        .commit(&mut table.file, |f| {
            f.sync_all()?;
            syncs += 1;
            if syncs == 1 {
                pause("backup");
            }
            Ok(())
        })
        .map_err(|source| SlotError::Gpt { disk: dev, source })?;
    Ok(Applied {
        bytes: size,
        sha256: expected,
        priority,
    })
}

/// The priority that puts `target` above the other slot; when that would
/// pass 15, the other slot is lowered first (in memory, committed with it).
fn promote(table: &mut Table, target: Slot) -> u8 {
    let other = table.attrs(target.other());
    if other.priority < 15 {
        return other.priority + 1;
    }
    table.set(
        target.other(),
        SlotAttrs {
            priority: 1,
            ..other
        },
    );
    2
}

fn hash_reader(r: &mut File, size: u64) -> std::io::Result<String> {
    let mut h = Sha256::default();
    let mut buf = vec![0u8; CHUNK];
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
        r.read_exact(&mut buf[..n])?;
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(h.hex())
}

/// The hash of the first `size` bytes of `node`, read with O_DIRECT so it
/// is what the device holds, not the page cache (buffered where O_DIRECT
/// is refused).
fn read_back(node: &Path, size: u64) -> std::io::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let direct = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(node);
    let mut f = match direct {
        Ok(f) => f,
        Err(_) => return hash_reader(&mut File::open(node)?, size),
    };
    let mut raw = vec![0u8; CHUNK + ALIGN];
    let skew = raw.as_ptr() as usize % ALIGN;
    let start = (ALIGN - skew) % ALIGN;
    let buf = &mut raw[start..start + CHUNK];
    let mut h = Sha256::default();
    let mut left = size;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
        let aligned = want.div_ceil(ALIGN) * ALIGN;
        let mut got = 0;
        while got < aligned {
            match f.read(&mut buf[got..aligned]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && got == 0 && left == size => {
                    return hash_reader(&mut File::open(node)?, size);
                }
                Err(e) => return Err(e),
            }
        }
        if got < want {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "{} ends after {} bytes",
                    node.display(),
                    size - left + got as u64
                ),
            ));
        }
        h.update(&buf[..want]);
        left -= want as u64;
    }
    Ok(h.hex())
}

fn status(as_json: bool) -> Result<(), UpdateError> {
    let ctx = context()?;
    let table = Table::read(&ctx.disk.disk)?;
    let state: Value = std::fs::read_to_string(ctx.paths.run.join(slots::STATE_FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let next = choose(table.attrs(Slot::A), table.attrs(Slot::B), None);
    let failure = slots::last_failure(&ctx.paths.log);
    let blessed_ms = state["blessed_us"].as_u64().map(|us| us / 1000);
    if as_json {
        let slot = |s: Slot| {
            let a = table.attrs(s);
            json!({"device": ctx.disk.node(s).display().to_string(), "priority": a.priority,
                   "tries": a.tries, "successful": a.successful,
                   "booted": ctx.booted == Some(s)})
        };
        let v = json!({
            "disk": ctx.disk.disk.display().to_string(),
            "table_damage": table.gpt.damage,
            "a": slot(Slot::A), "b": slot(Slot::B),
            "booted": ctx.booted.map(Slot::id), "reason": ctx.reason,
            "blessed_ms": blessed_ms, "slot_marked": state["slot_marked"],
            "given_up": state["given_up"],
            "watchdog": state["watchdog"], "watchdog_armed": state["watchdog_armed"],
            "next": next.slot.id(), "next_reason": next.reason,
            "last_failure": failure.as_ref().map(|f| json!({"slot": f.slot, "reason": f.reason,
                "dir": f.dir.display().to_string()})),
        });
        out(&format!("{v}\n"));
        return Ok(());
    }
    let mut text = format!("disk {}\n", ctx.disk.disk.display());
    if let Some(damage) = &table.gpt.damage {
        text += &format!(
            "partition table: {damage}; showing the {:?} copy (the next writer repairs it)\n",
            table.gpt.read_from
        );
    }
    for s in Slot::BOTH {
        text += &format!(
            "slot {} {}: {}{}\n",
            s.name(),
            ctx.disk.node(s).display(),
            table.attrs(s),
            if ctx.booted == Some(s) {
                " (booted)"
            } else {
                ""
            }
        );
    }
    match (ctx.booted, &ctx.reason) {
        (Some(s), Some(r)) => text += &format!("booted: slot {}: {r}\n", s.name()),
        (Some(s), None) => text += &format!("booted: slot {} (by the mounted root)\n", s.name()),
        (None, _) => text += "booted: not from a slot\n",
    }
    match (blessed_ms, state["given_up"].as_str()) {
        (Some(ms), _) if state["slot_marked"] == false => {
            text += &format!(
                "blessed at {ms} ms (the slot is marked successful once `keel update` \
                 releases the partition table)\n"
            )
        }
        (Some(ms), _) => text += &format!("blessed at {ms} ms\n"),
        (None, Some(why)) => text += &format!("not blessed: given up: {why}\n"),
        (None, None) => {
            text += &format!(
                "not blessed yet (grace {} ms, deadline {} ms of uptime)\n",
                state["bless_grace_ms"], state["bless_deadline_ms"]
            )
        }
    }
    if let Some(f) = &failure {
        text += &format!(
            "last failed boot: slot {} failed: {} (logs: {})\n",
            f.slot.to_uppercase(),
            f.reason,
            f.dir.display()
        );
    }
    text += &format!("next boot: slot {}: {}\n", next.slot.name(), next.reason);
    out(&text);
    Ok(())
}

/// Writes to stdout, ignoring a reader that went away (`| grep -q`).
fn out(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn rollback(force: bool) -> Result<(), UpdateError> {
    let ctx = context()?;
    let running = ctx.booted.ok_or_else(|| UpdateError::UnknownBoot {
        a: ctx.disk.a.clone(),
        b: ctx.disk.b.clone(),
    })?;
    let target = running.other();
    let mut table = Table::open(&ctx.disk.disk)?;
    let a = table.attrs(target);
    if !a.successful && !force {
        let why = if a.priority == 0 {
            "has priority 0 (empty, or an update was interrupted)".to_string()
        } else {
            format!("was never blessed ({a})")
        };
        return Err(UpdateError::Rollback {
            slot: target.name(),
            why,
        });
    }
    let priority = promote(&mut table, target);
    table.set(
        target,
        SlotAttrs {
            priority,
            tries: if a.successful { a.tries } else { 1 },
            ..a
        },
    );
    table.commit()?;
    println!(
        "keel update: the next boot is slot {} ({}); slot {} stays as it is",
        target.name(),
        table.attrs(target),
        running.name()
    );
    Ok(())
}

fn mark_good() -> Result<(), UpdateError> {
    let ctx = context()?;
    let running = ctx.booted.ok_or_else(|| UpdateError::UnknownBoot {
        a: ctx.disk.a.clone(),
        b: ctx.disk.b.clone(),
    })?;
    let changed = slots::mark_successful(&ctx.disk.disk, running, true)?;
    println!(
        "keel update: slot {} {}",
        running.name(),
        if changed {
            "marked successful"
        } else {
            "was already successful"
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_image::gpt::{types, Gpt, Guid};

    struct Fixture {
        dir: PathBuf,
        disk: SlotDisk,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// A disk image and two "partition" files standing in for the nodes.
    fn fixture(name: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("keel-update-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut g = Gpt::new(8 << 20, Guid::derived("d")).unwrap();
        for l in ["KEEL-A", "KEEL-B"] {
            g.add(l, types::LINUX_ROOT_X86_64, Guid::derived(l), 2 << 20)
                .unwrap();
        }
        g.set_slot(
            "KEEL-A",
            SlotAttrs {
                priority: 1,
                tries: 0,
                successful: true,
            },
        );
        let mut f = File::create(dir.join("disk")).unwrap();
        f.set_len(8 << 20).unwrap();
        g.write(&mut f).unwrap();
        for p in ["a", "b"] {
            File::create(dir.join(p)).unwrap().set_len(2 << 20).unwrap();
        }
        Fixture {
            disk: SlotDisk {
                disk: dir.join("disk"),
                a: dir.join("a"),
                b: dir.join("b"),
            },
            dir,
        }
    }

    fn hex(data: &[u8]) -> String {
        let mut h = Sha256::default();
        h.update(data);
        h.hex()
    }

    fn attrs(f: &Fixture) -> (SlotAttrs, SlotAttrs) {
        let t = Table::open(&f.disk.disk).unwrap();
        (t.attrs(Slot::A), t.attrs(Slot::B))
    }

    #[test]
    fn apply_writes_the_other_slot_then_gives_it_one_try() {
        let f = fixture("ok");
        let img: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(f.dir.join("img"), &img).unwrap();
        let steps = std::cell::RefCell::new(Vec::new());
        let r = apply(
            &f.disk,
            Slot::A,
            Slot::B,
            &f.dir.join("img"),
            &hex(&img),
            &|s| {
                steps.borrow_mut().push(s.to_string());
            },
        )
        .unwrap();
        assert_eq!(r.bytes, img.len() as u64);
        assert_eq!(
            steps.into_inner(),
            ["unbootable", "writing", "written", "backup"]
        );
        let b = std::fs::read(&f.disk.b).unwrap();
        assert_eq!(&b[..img.len()], &img[..]);
        let (a, b) = attrs(&f);
        assert_eq!(
            a,
            SlotAttrs {
                priority: 1,
                tries: 0,
                successful: true
            }
        );
        assert_eq!(
            b,
            SlotAttrs {
                priority: 2,
                tries: 1,
                successful: false
            }
        );
        assert_eq!(choose(a, b, None).slot, Slot::B);
    }

    #[test]
    fn refusals_leave_the_attributes_untouched() {
        let f = fixture("refuse");
        let img = vec![7u8; 4096];
        std::fs::write(f.dir.join("img"), &img).unwrap();
        let before = attrs(&f);
        let none = &|_: &str| {};
        let e = apply(
            &f.disk,
            Slot::A,
            Slot::B,
            &f.dir.join("img"),
            &"0".repeat(64),
            none,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("refused: the image") && e.to_string().contains("not 0000"),
            "{e}"
        );
        let e = apply(&f.disk, Slot::A, Slot::B, &f.dir.join("img"), "abc", none).unwrap_err();
        assert!(matches!(e, UpdateError::BadHash(_)), "{e}");
        let big = vec![0u8; 3 << 20];
        std::fs::write(f.dir.join("big"), &big).unwrap();
        let e = apply(
            &f.disk,
            Slot::A,
            Slot::B,
            &f.dir.join("big"),
            &hex(&big),
            none,
        )
        .unwrap_err();
        assert!(e.to_string().contains("larger than slot B"), "{e}");
        let e = apply(
            &f.disk,
            Slot::A,
            Slot::A,
            &f.dir.join("img"),
            &hex(&img),
            none,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("slot A") && e.to_string().contains("running root"),
            "{e}"
        );
        assert_eq!(attrs(&f), before);
        assert!(
            std::fs::read(&f.disk.b).unwrap().iter().all(|b| *b == 0),
            "nothing written"
        );
    }

    #[test]
    fn priorities_stay_within_four_bits() {
        let f = fixture("prio");
        let mut t = Table::open(&f.disk.disk).unwrap();
        t.set(
            Slot::A,
            SlotAttrs {
                priority: 15,
                tries: 0,
                successful: true,
            },
        );
        assert_eq!(promote(&mut t, Slot::B), 2);
        assert_eq!(t.attrs(Slot::A).priority, 1);
        assert!(t.attrs(Slot::A).successful);
    }
}
