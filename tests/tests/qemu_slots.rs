//! A/B slots under QEMU (Debian cloud kernel): boot counting in stage 1,
//! blessing on readiness, `keel update`, rollback, the watchdog (softdog),
//! and power cuts during an update. The disk is built from
//! tests/images/slots.toml (slot A); update images are the erofs roots of
//! slots-b.toml (good) and slots-bad.toml (never ready), given to the guest
//! as a second virtio disk (/dev/vdb). After every boot the host reads the
//! slot bits with `cgpt show -i N -P|-T|-S` and checks the table with
//! `sgdisk -v`. The guest's `driver` unit does what `test.do=` says.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use keel_image::build::{build_initramfs, BuildOptions};
use keel_image::disk::build_disk;
use keel_image::kernel::HostRoots;
use keel_image::manifest::Manifest;
use keel_image::qemu::{self, BootConfig, BootOutcome};
use keel_image::rootfs::build_rootfs;
use keel_tests::{keel_bin, workspace, TempDir};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Slot bits as cgpt reads them: (priority, tries, successful).
type Bits = (u32, u32, u32);

struct Rig {
    dir: TempDir,
    manifest: Manifest,
    kernel: PathBuf,
}

fn manifest(name: &str) -> Manifest {
    Manifest::load(&workspace().join(name)).unwrap_or_else(|e| panic!("{e}"))
}

impl Rig {
    /// The slot-A disk and initramfs, and the update images named.
    fn build(updates: &[(&str, &str)]) -> Rig {
        let m = manifest("tests/images/slots.toml");
        let dir = TempDir::new("qemu-slots");
        let opts = BuildOptions::new(keel_bin()).unwrap();
        let ird = build_initramfs(&m, &opts).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("initrd.img"), &ird.bytes).unwrap();
        build_disk(&m, &keel_bin(), &dir.path().join("disk.img")).unwrap_or_else(|e| panic!("{e}"));
        for (file, toml) in updates {
            let root = build_rootfs(&manifest(toml), &keel_bin()).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(dir.path().join(file), &root.bytes).unwrap();
        }
        let kernel = HostRoots::default()
            .kernel(&m.kernel, m.base_dir())
            .unwrap_or_else(|e| panic!("{e}"))
            .image;
        Rig {
            dir,
            manifest: m,
            kernel,
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn config(&self, append: &str, images: &[&str]) -> BootConfig {
        let cmdline = format!("{} {append}", self.manifest.kernel.cmdline);
        let mut cfg = BootConfig::new(self.kernel.clone(), self.path("initrd.img"), cmdline);
        cfg.timeout = Duration::from_secs(120);
        let mut drives = vec![format!(
            "file={},if=virtio,format=raw",
            self.path("disk.img").display()
        )];
        for i in images {
            drives.push(format!(
                "file={},if=virtio,format=raw,readonly=on",
                self.path(i).display()
            ));
        }
        cfg.extra_args = drives
            .into_iter()
            .flat_map(|d| ["-drive".into(), d.into()])
            .collect();
        cfg
    }

    /// One boot until QEMU exits (power off, reboot or reset: -no-reboot).
    fn boot(&self, append: &str, images: &[&str]) -> BootOutcome {
        let out = qemu::boot(&self.config(append, images)).unwrap_or_else(|e| panic!("{e}"));
        let c = &out.console;
        assert!(!out.timed_out, "QEMU timed out:\n{c}");
        assert!(out.fatal_line.is_none(), "{:?}\n{c}", out.fatal_line);
        out
    }

    /// One boot, QEMU killed (SIGKILL: a power cut) `delay` after a
    /// console line contains `marker`. Returns the console.
    fn boot_and_cut(&self, append: &str, images: &[&str], marker: &str, delay: Duration) -> String {
        let cfg = self.config(append, images);
        let mut child = Command::new(&cfg.qemu)
            .args(cfg.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + cfg.timeout;
        let mut console = String::new();
        let mut cut = false;
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line.unwrap_or_default()).is_err() {
                    break;
                }
            }
        });
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    console.push_str(&line);
                    console.push('\n');
                    if line.contains(marker) {
                        std::thread::sleep(delay);
                        child.kill().unwrap();
                        cut = true;
                        break;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(_) => break,
            }
        }
        let _ = child.kill();
        child.wait().unwrap();
        assert!(cut, "never saw {marker:?}:\n{console}");
        console
    }

    /// (priority, tries, successful) of partition `n` by cgpt.
    fn cgpt(&self, n: u32) -> Bits {
        let get = |flag: &str| -> u32 {
            let out = Command::new("cgpt")
                .args(["show", "-i", &n.to_string(), flag])
                .arg(self.path("disk.img"))
                .output()
                .expect("cgpt (cgpt package)");
            let text = String::from_utf8_lossy(&out.stdout);
            text.trim()
                .parse()
                .unwrap_or_else(|_| panic!("cgpt show -i {n} {flag}: {text:?}"))
        };
        (get("-P"), get("-T"), get("-S"))
    }

    /// `sgdisk -v` finds no problem.
    fn sgdisk_clean(&self) -> Result<(), String> {
        let out = Command::new("sgdisk")
            .arg("-v")
            .arg(self.path("disk.img"))
            .output()
            .expect("sgdisk (gdisk package)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && text.contains("No problems found") {
            Ok(())
        } else {
            Err(text)
        }
    }

    fn assert_slots(&self, a: Bits, b: Bits, when: &str) {
        assert_eq!((self.cgpt(1), self.cgpt(2)), (a, b), "cgpt {when}");
        if let Err(e) = self.sgdisk_clean() {
            panic!("sgdisk -v {when}:\n{e}");
        }
    }

    fn sha256(&self, file: &str) -> String {
        let out = Command::new("sha256sum")
            .arg(self.path(file))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    }
}

/// The console line "keel: root slot X is …", i.e. which slot booted.
fn booted(console: &str) -> Option<char> {
    console
        .lines()
        .find_map(|l| l.split_once("root slot ")?.1.chars().next())
}

fn line_with<'a>(console: &'a str, needle: &str) -> &'a str {
    console
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?}:\n{console}"))
}

const A_GOOD: Bits = (1, 0, 1);
const B_EMPTY: Bits = (0, 0, 0);

#[test]
fn update_to_b_boots_b_blesses_it_and_rolls_back_on_request() {
    let rig = Rig::build(&[("b.img", "tests/images/slots-b.toml")]);
    let sha = rig.sha256("b.img");
    rig.assert_slots(A_GOOD, B_EMPTY, "on the new disk");

    // Boot 1 (A): once blessed, apply B and reboot.
    let out = rig.boot(&format!("test.do=update test.sha={sha}"), &["b.img"]);
    let c = &out.console;
    assert_eq!(booted(c), Some('A'), "{c}");
    assert!(c.contains("slot-version: A"), "{c}");
    assert!(
        line_with(c, "slot A (/dev/vda1): A (priority 1) is successful")
            .contains("B has priority 0"),
        "{c}"
    );
    let blessed = line_with(c, "boot blessed at");
    assert!(blessed.contains("slot A was already successful"), "{c}");
    let applied = line_with(c, "keel update: slot B written");
    assert!(applied.contains(&sha), "{applied}");
    assert!(c.contains("status: next boot: slot B"), "{c}");
    assert!(c.contains("rebooting"), "{c}");
    rig.assert_slots(A_GOOD, (2, 1, 0), "after the update");
    let ms = |l: &str| -> u64 {
        l.split("verified in ")
            .nth(1)
            .and_then(|r| r.split(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    eprintln!(
        "update apply of {} bytes: {} ms",
        std::fs::metadata(rig.path("b.img")).unwrap().len(),
        ms(applied)
    );

    // Boot 2 (B): tried once (tries 1 -> 0 before mounting), then blessed.
    let out = rig.boot("test.do=rollback", &[]);
    let c = &out.console;
    assert_eq!(booted(c), Some('B'), "{c}");
    assert!(c.contains("slot-version: B"), "{c}");
    assert!(
        c.contains("B (priority 2) has 1 tries left; trying it (0 tries left after this one)"),
        "{c}"
    );
    let complete = line_with(c, "boot complete in");
    let blessed = line_with(c, "boot blessed at");
    assert!(blessed.contains("slot B marked successful"), "{blessed}");
    assert!(c.contains("status: blessed at"), "{c}");
    let b_lines: Vec<&str> = c.lines().filter(|l| l.contains("status: slot B")).collect();
    assert!(
        b_lines
            .iter()
            .any(|l| l.contains("slot B /dev/vda2: priority 2, tries 0, successful 1 (booted)")),
        "{b_lines:?}\n{c}"
    );
    let at = |l: &str, key: &str| -> u64 {
        l.split(key)
            .nth(1)
            .and_then(|r| r.split(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{key} in {l}"))
    };
    let (complete, blessed) = (at(complete, "complete in "), at(blessed, "blessed at "));
    assert!(
        blessed >= complete + 1000,
        "never before the grace period: {complete} {blessed}"
    );
    eprintln!("slot B: boot complete at {complete} ms, blessed at {blessed} ms (grace 1 s)");
    // Then `keel update rollback`: A (blessed) is next.
    assert!(
        c.contains("rollback: keel update: the next boot is slot A"),
        "{c}"
    );
    assert!(c.contains("status: next boot: slot A"), "{c}");
    rig.assert_slots((3, 0, 1), (2, 0, 1), "after blessing B and rolling back");
}

#[test]
fn refused_updates_leave_the_slots_untouched() {
    let rig = Rig::build(&[("b.img", "tests/images/slots-b.toml")]);
    // A corrupted copy: one byte flipped in the middle.
    let mut bytes = std::fs::read(rig.path("b.img")).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(rig.path("corrupt.img"), &bytes).unwrap();
    let sha = rig.sha256("b.img");
    // vdb: the corrupted image with the good image's hash; vdc: 17 MiB (a
    // 16 MiB slot). The driver also tries writing the running slot A.
    let big = std::fs::File::create(rig.path("big.img")).unwrap();
    big.set_len(17 << 20).unwrap();
    drop(big);
    let out = rig.boot(
        &format!("test.do=refuse test.sha={sha}"),
        &["corrupt.img", "big.img"],
    );
    let c = &out.console;
    assert_eq!(booted(c), Some('A'), "{c}");
    let bad = line_with(
        c,
        "apply: keel update: refused: the image /dev/vdb has sha256",
    );
    assert!(
        bad.contains(&format!("not {sha}; nothing was written")),
        "{bad}"
    );
    assert!(
        c.contains(
            "refused: the image /dev/vdc is 17825792 bytes, larger than slot B (16777216 bytes)"
        ),
        "{c}"
    );
    assert!(
        c.contains("refused: slot A (/dev/vda1) is the running root"),
        "{c}"
    );
    let before = line_with(c, "attrs-before:")
        .split_once("attrs-before:")
        .unwrap()
        .1;
    let after = line_with(c, "attrs-after:")
        .split_once("attrs-after:")
        .unwrap()
        .1;
    assert_eq!(before, after);
    rig.assert_slots(A_GOOD, B_EMPTY, "after the refusals");
    // Slot B was not written at all.
    let disk = std::fs::read(rig.path("disk.img")).unwrap();
    let b = &disk[17 << 20..33 << 20];
    assert!(b.iter().all(|x| *x == 0), "slot B was written to");
}

#[test]
fn a_power_cut_anywhere_in_an_update_leaves_a_valid_table_and_a_on_the_next_boot() {
    let rig = Rig::build(&[("b.img", "tests/images/slots-b.toml")]);
    let sha = rig.sha256("b.img");
    // Each boot is also the "next boot" of the cut before it.
    for (i, step) in ["unbootable", "writing", "written", "backup"]
        .iter()
        .enumerate()
    {
        let c = rig.boot_and_cut(
            &format!("test.do=pause test.pause={step} test.sha={sha}"),
            &["b.img"],
            &format!("paused at {step}"),
            Duration::ZERO,
        );
        assert_eq!(
            booted(&c),
            Some('A'),
            "boot {i} (before the cut at {step}):\n{c}"
        );
        assert!(!c.contains("rewriting both GPT copies"), "{c}");
        // B is never bootable mid-update.
        let b = rig.cgpt(2);
        assert_eq!((b.0, b.2), (0, 0), "after a cut at {step}");
        assert_eq!(rig.cgpt(1), A_GOOD, "after a cut at {step}");
        match (*step, rig.sgdisk_clean()) {
            (_, Ok(())) => {}
            // Backup new, primary old: sgdisk may well say so; the next
            // boot must repair it.
            ("backup", Err(e)) => eprintln!("sgdisk -v right after the cut at backup:\n{e}"),
            (_, Err(e)) => panic!("sgdisk -v after a cut at {step}:\n{e}"),
        }
    }
    // The last cut left the new backup and the old primary: the next boot
    // takes the primary (the update did not happen), repairs the backup,
    // and boots A. That boot is cut too, this time by the clock: 300 ms
    // after `keel update apply` started (it takes 500-700 ms here).
    let c = rig.boot_and_cut(
        &format!("test.do=pause test.pause=none test.sha={sha}"),
        &["b.img"],
        "apply-start",
        Duration::from_millis(300),
    );
    assert_eq!(booted(&c), Some('A'), "{c}");
    assert!(c.contains("rewriting both GPT copies"), "{c}");
    let b = rig.cgpt(2);
    eprintln!("slot B after the timed cut: {b:?}");
    assert!(
        b == B_EMPTY || b == (2, 1, 0),
        "old or new, never between: {b:?}"
    );
    // Whatever the cut left, the next boot comes up: on A, or on B for its
    // one try if the update had committed.
    let out = rig.boot("test.do=status", &[]);
    let c = &out.console;
    let expect = if b == B_EMPTY { 'A' } else { 'B' };
    assert_eq!(booted(c), Some(expect), "{c}");
    assert!(
        c.contains("status: slot A /dev/vda1: priority 1, tries 0, successful 1"),
        "{c}"
    );
    if let Err(e) = rig.sgdisk_clean() {
        panic!("sgdisk -v after the boot that followed the cuts:\n{e}");
    }
}

/// Boots A with `append_b` for B's boot: A applies the bad image and
/// reboots, B never becomes ready and must end (how depends on the test),
/// A comes back and says why. Returns B's and the last boot's consoles.
fn bad_update(append_b: &str) -> (String, String, Rig) {
    let rig = Rig::build(&[("bad.img", "tests/images/slots-bad.toml")]);
    let sha = rig.sha256("bad.img");
    let out = rig.boot(&format!("test.do=update test.sha={sha}"), &["bad.img"]);
    assert!(
        out.console.contains("keel update: slot B written"),
        "{}",
        out.console
    );
    rig.assert_slots(A_GOOD, (2, 1, 0), "after the bad update");

    let out = rig.boot(&format!("test.do=nothing {append_b}"), &[]);
    let b = out.console;
    assert_eq!(booted(&b), Some('B'), "{b}");
    assert!(b.contains("slot-version: B"), "{b}");
    assert!(!b.contains("boot blessed"), "{b}");
    assert!(b.contains("is given up: not blessed within 8000 ms"), "{b}");
    rig.assert_slots(A_GOOD, (2, 0, 0), "after B's one try");

    let out = rig.boot("test.do=status", &[]);
    let c = out.console;
    assert_eq!(booted(&c), Some('A'), "{c}");
    assert!(
        c.contains("B (priority 2) has no tries left and was never blessed"),
        "{c}"
    );
    let prev = line_with(&c, "previous boot of slot B failed:");
    assert!(
        prev.contains("boot never completed: a boot-critical unit never became ready"),
        "{prev}"
    );
    let status = line_with(&c, "status: last failed boot: slot B failed:");
    assert!(status.contains("not blessed within 8000 ms"), "{status}");
    assert!(
        status.contains("/var/log/keel/failed-boots/0001-slot-b"),
        "{status}"
    );
    rig.assert_slots(A_GOOD, (2, 0, 0), "back on A");
    (b, c, rig)
}

#[test]
fn an_update_that_never_gets_ready_is_tried_once_then_a_boots_and_says_why() {
    let (b, _, _) = bad_update("keel.watchdog=off keel.bless-deadline=8s");
    assert!(b.contains("rebooting"), "keel rebooted by itself:\n{b}");
}

#[test]
fn a_hang_before_blessing_with_the_softdog_watchdog_resets_and_rolls_back() {
    let (b, _, _) =
        bad_update("keel.watchdog=until-blessed keel.watchdog-timeout=3 keel.bless-deadline=8s");
    assert!(b.contains("watchdog /dev/watchdog armed: 3 s"), "{b}");
    assert!(b.contains("no longer petting the watchdog"), "{b}");
    assert!(
        b.contains("softdog: Initiating system reboot"),
        "the watchdog reset the machine:\n{b}"
    );
    assert!(!b.contains("rebooting"), "keel itself did not reboot:\n{b}");
}
