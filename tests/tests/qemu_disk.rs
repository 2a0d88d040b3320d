//! Booting from a disk under QEMU (Debian cloud kernel, whose virtio, erofs
//! and overlay are modules): stage 1 loads them, mounts the erofs root
//! read-only, KEEL-STATE on /var and the /etc overlay, switches root and
//! execs the root's keel; stage 3 unmounts and powers off. The disk is
//! built by keel-image from tests/images/disk*.toml.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use keel_image::disk::STATE;
use keel_image::gpt::Gpt;
use keel_image::manifest::Manifest;
use keel_image::qemu::{self, BootConfig, BootOutcome, Verdict};
use keel_image::rootfs::root_uuid;
use keel_tests::{build_disk_image, workspace, TempDir};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Duration;

/// A built image: its initramfs, kernel and disk in a temporary directory.
struct Image {
    dir: TempDir,
    manifest: Manifest,
    kernel: PathBuf,
}

impl Image {
    fn build(manifest: &str) -> Image {
        let m = Manifest::load(&workspace().join(manifest)).unwrap_or_else(|e| panic!("{e}"));
        let dir = TempDir::new("qemu-disk");
        let kernel = build_disk_image(&m, dir.path());
        Image {
            dir,
            manifest: m,
            kernel,
        }
    }

    fn disk(&self) -> PathBuf {
        self.dir.path().join("disk.img")
    }

    fn boot(&self, append: &str) -> BootOutcome {
        let cmdline = format!("{} {append}", self.manifest.kernel.cmdline);
        let mut cfg = BootConfig::new(
            self.kernel.clone(),
            self.dir.path().join("initrd.img"),
            cmdline,
        );
        cfg.timeout = Duration::from_secs(180);
        let drive = format!("file={},if=virtio,format=raw", self.disk().display());
        cfg.extra_args = vec!["-drive".into(), drive.into()];
        qemu::boot(&cfg).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `e2fsck -n` on KEEL-STATE, found with our own GPT reader.
    fn check_state(&self) -> (bool, String) {
        let disk = self.disk();
        let mut f = std::fs::File::open(&disk).unwrap();
        let size = f.metadata().unwrap().len();
        let gpt = Gpt::read(&mut f, size).unwrap();
        assert!(gpt.damage.is_none(), "{:?}", gpt.damage);
        let (_, p) = gpt.find(STATE).unwrap();
        let mut buf = vec![0u8; p.size() as usize];
        f.seek(SeekFrom::Start(p.offset())).unwrap();
        f.read_exact(&mut buf).unwrap();
        let fs = self.dir.path().join("state.ext4");
        std::fs::write(&fs, buf).unwrap();
        let out = std::process::Command::new("e2fsck")
            .arg("-n")
            .arg(&fs)
            .output()
            .expect("e2fsck (e2fsprogs)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}

fn no_panic(out: &BootOutcome) {
    let c = &out.console;
    assert!(out.fatal_line.is_none(), "{:?}\n{c}", out.fatal_line);
    assert!(
        !c.contains("Kernel panic") && !c.contains("Attempted to kill init"),
        "{c}"
    );
    assert!(out.exited && !out.timed_out, "QEMU exited by itself:\n{c}");
}

/// The value after `key` on its console line.
/// The first console line containing `needle`.
fn line_of<'a>(console: &'a str, needle: &str) -> Option<&'a str> {
    console.lines().find(|l| l.contains(needle))
}

fn value<'a>(console: &'a str, key: &str) -> Option<&'a str> {
    console
        .lines()
        .find_map(|l| l.split_once(key).map(|(_, v)| v.trim()))
}

/// The kernel's timestamp of the first console line containing `needle`.
fn stamp(console: &str, needle: &str) -> Option<f64> {
    let line = console.lines().find(|l| l.contains(needle))?;
    let inner = line.trim_start().strip_prefix('[')?.split(']').next()?;
    inner.trim().parse().ok()
}

#[test]
fn boots_from_disk_read_only_root_and_state_survives_a_reboot() {
    let image = Image::build("tests/images/disk.toml");
    let out = image.boot("");
    let c = &out.console;
    assert_eq!(out.verdict(), Verdict::Success, "console:\n{c}");
    no_panic(&out);
    for m in ["virtio_blk", "erofs", "overlay"] {
        assert!(c.contains(&format!("loaded module {m} in")), "{m}:\n{c}");
    }
    assert!(
        c.contains("root PARTLABEL=KEEL-A is /dev/vda1 (erofs), mounted read-only"),
        "{c}"
    );
    assert!(c.contains("state /dev/vda3 mounted on /var"), "{c}");
    assert!(
        value(c, "usr-write:").is_some_and(|v| v.contains("Read-only file system")),
        "writing under /usr must fail with EROFS:\n{c}"
    );
    assert!(c.contains("report: mount: / erofs ro"), "{c}");
    assert!(c.contains("report: mount: /var ext4 rw"), "{c}");
    assert!(c.contains("report: mount: /etc overlay rw"), "{c}");
    assert!(c.contains("report: mount: /tmp tmpfs rw"), "{c}");
    assert_eq!(value(c, "var-boots-before="), Some("0"), "{c}");
    assert_eq!(value(c, "etc-marker="), Some("none"), "{c}");
    assert!(c.contains("persist-written"), "{c}");
    assert!(
        value(c, "initramfs-left:").is_some_and(|v| v.contains("No such file")),
        "the initramfs's /init is gone after switch_root:\n{c}"
    );
    // Stage 1's record, as the boot record will read it.
    let json: serde_json::Value =
        serde_json::from_str(value(c, "stage1-json:").expect("stage1.json")).unwrap();
    assert_eq!(json["version"], 1);
    assert_eq!(json["root"], "/dev/vda1");
    assert!(json["slot"].is_null());
    let phases = json["phases"].as_array().unwrap();
    let names: Vec<&str> = phases.iter().map(|p| p["name"].as_str().unwrap()).collect();
    for n in [
        "mount /proc",
        "load modules",
        "wait for PARTLABEL=KEEL-A",
        "mount root",
        "mount /var",
        "switch_root",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    for p in phases {
        assert!(
            p["start_us"].as_u64().unwrap() <= p["end_us"].as_u64().unwrap(),
            "{p}"
        );
    }
    assert!(
        json["memory"]["initramfs_freed_bytes"].as_u64().unwrap() > 1 << 20,
        "{json}"
    );
    let returned = value(c, "initramfs memory returned:").expect("memory line");
    eprintln!("boot 1: {returned}; {:?}", out.boot_line);
    // The boot line has stage 1's own term, and the parts add up.
    let line = out.boot_line.as_ref().expect("boot line");
    let initramfs = line
        .initramfs_ms
        .expect("an initramfs term after a switch_root");
    assert!(initramfs > 0, "{line:?}");
    assert_eq!(
        line.kernel_ms + initramfs + line.userspace_ms,
        line.total_ms,
        "{line:?}"
    );
    // Stage 3 took /etc and /var down before powering off.
    let (etc, var, off) = (
        c.find("unmounted /etc").expect(c),
        c.find("unmounted /var").expect(c),
        c.find("powering off").expect(c),
    );
    assert!(etc < var && var < off, "{c}");
    let (clean, fsck) = image.check_state();
    assert!(clean, "e2fsck -n after boot 1:\n{fsck}");

    // The same disk again, the root named by its file system's UUID this
    // time: /var and /etc kept what boot 1 wrote.
    let uuid = root_uuid(&image.manifest).to_string().to_lowercase();
    let out = image.boot(&format!("keel.root=UUID={uuid}"));
    let c = &out.console;
    assert_eq!(out.verdict(), Verdict::Success, "console:\n{c}");
    assert!(
        c.contains(&format!(
            "root UUID={uuid} is /dev/vda1 (erofs), mounted read-only"
        )),
        "{c}"
    );
    assert_eq!(value(c, "var-boots-before="), Some("1"), "{c}");
    assert_eq!(value(c, "etc-marker="), Some("from-the-last-boot"), "{c}");
    let (clean, fsck) = image.check_state();
    assert!(clean, "e2fsck -n after boot 2:\n{fsck}");
}

/// `keel.break=stage1` where the initramfs has no /bin/sh: said, and the
/// boot goes on.
#[test]
fn keel_break_without_a_shell_says_so_and_boots() {
    let image = Image::build("tests/images/disk.toml");
    let out = image.boot("keel.break=stage1");
    let c = &out.console;
    assert_eq!(out.verdict(), Verdict::Success, "console:\n{c}");
    assert!(
        c.contains("keel.break=stage1: no /bin/sh in this image; continuing"),
        "{c}"
    );
}

/// A state partition that will not mount (its superblock zeroed): /var is
/// a tmpfs, said loudly, and the boot goes on with /etc still an overlay.
#[test]
fn an_unmountable_state_partition_leaves_a_tmpfs_var_and_a_booted_machine() {
    let image = Image::build("tests/images/disk.toml");
    let disk = image.disk();
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&disk)
        .unwrap();
    let size = f.metadata().unwrap().len();
    let gpt = Gpt::read(&mut f, size).unwrap();
    let (_, p) = gpt.find(STATE).unwrap();
    f.seek(SeekFrom::Start(p.offset() + 1024)).unwrap();
    f.write_all(&[0u8; 1024]).unwrap();
    drop(f);
    let out = image.boot("");
    let c = &out.console;
    no_panic(&out);
    assert!(out.boot_line.is_some(), "the boot completed:\n{c}");
    let said = line_of(c, "/var is a tmpfs (").expect(c);
    assert!(
        said.contains("nothing written to /var or /etc will survive a reboot"),
        "{said}"
    );
    assert!(c.contains("report: mount: /var tmpfs rw"), "{c}");
    assert!(c.contains("report: mount: /etc overlay rw"), "{c}");
    assert!(c.contains("persist-written"), "{c}");
}

#[test]
fn a_missing_root_device_lists_the_devices_and_runs_the_emergency_action() {
    let image = Image::build("tests/images/disk.toml");
    let out = image.boot("keel.root=PARTLABEL=NOPE keel.root-timeout=2");
    let c = &out.console;
    no_panic(&out);
    let line = c
        .lines()
        .find(|l| l.contains("emergency: stage 1: root device PARTLABEL=NOPE did not appear"))
        .unwrap_or_else(|| panic!("no emergency line:\n{c}"));
    assert!(line.contains("within 2"), "{line}");
    for seen in [
        "vda (66 MiB)",
        "vda1 (16 MiB, PARTLABEL=KEEL-A)",
        "vda3 (32 MiB, PARTLABEL=KEEL-STATE)",
    ] {
        assert!(line.contains(seen), "{seen} in {line}");
    }
    assert!(out.boot_line.is_none(), "{c}");
    assert!(
        c.contains("reboot: Power down"),
        "keel.emergency=poweroff ran:\n{c}"
    );
}

#[test]
fn shutdown_with_a_service_ignoring_sigterm_is_bounded_and_leaves_state_clean() {
    let image = Image::build("tests/images/disk-shutdown.toml");
    let out = image.boot("");
    let c = &out.console;
    no_panic(&out);
    assert!(c.contains("stubborn: stubborn-up"), "{c}");
    let line = out
        .boot_line
        .as_ref()
        .unwrap_or_else(|| panic!("no boot line:\n{c}"));
    assert!(
        c.contains("unit stubborn failed: did not stop within"),
        "{c}"
    );
    assert!(
        c.contains("unmounted /var") && c.contains("powering off"),
        "{c}"
    );
    let off = stamp(c, "reboot: Power down").unwrap_or_else(|| panic!("{c}"));
    let stage3 = off - line.total_ms as f64 / 1000.0;
    eprintln!("stage 3 took {stage3:.2} s (stop-timeout 2 s, bound 20 s)");
    assert!(stage3 < 20.0, "stage 3 took {stage3} s:\n{c}");
    let (clean, fsck) = image.check_state();
    assert!(clean, "e2fsck -n:\n{fsck}");
}
