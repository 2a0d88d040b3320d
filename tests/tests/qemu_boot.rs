//! Real boots: the Debian cloud kernel runs the real keel as PID 1 from an
//! initramfs written by keel-image, under QEMU (TCG). One boot per scenario,
//! with every check of that scenario on its console.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use keel_image::manifest::Manifest;
use keel_image::qemu::{self, BootOutcome, Verdict};
use keel_tests::{
    assert_boot_scenario, assert_clean_boot, initramfs_boot_config, workspace, TempDir,
};

fn boot(manifest: &str) -> BootOutcome {
    boot_with(manifest, &[])
}

fn boot_with(manifest: &str, extra: &[&str]) -> BootOutcome {
    let m = Manifest::load(&workspace().join(manifest)).unwrap_or_else(|e| panic!("{e}"));
    let dir = TempDir::new("qemu");
    let mut cfg = initramfs_boot_config(&m, dir.path());
    cfg.extra_args = extra.iter().map(Into::into).collect();
    qemu::boot(&cfg).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn minimal_boot_runs_units_reaps_orphans_and_powers_off() {
    let out = boot("tests/images/boot.toml");
    assert_clean_boot(&out);
    assert_boot_scenario(&out);
}

#[test]
fn bad_units_are_named_and_the_boot_completes_degraded() {
    let out = boot("tests/images/bad.toml");
    let c = &out.console;
    assert!(
        c.contains("the good unit ran"),
        "the other units still start:\n{c}"
    );
    assert!(
        c.contains("/etc/keel/units/malformed.toml:2:1: error"),
        "the file and line are named:\n{c}"
    );
    assert!(
        c.contains("keel: unit missing failed") && c.contains("/usr/bin/not-installed"),
        "the unit and its program are named:\n{c}"
    );
    let line = out
        .boot_line
        .as_ref()
        .unwrap_or_else(|| panic!("no boot line:\n{c}"));
    assert!(line.degraded, "{c}");
    assert!(
        matches!(
            out.verdict(),
            Verdict::Degraded(_) | Verdict::UnitFailed { .. }
        ),
        "{:?}",
        out.verdict()
    );
    assert!(
        out.exited && out.fatal_line.is_none(),
        "still a clean poweroff:\n{c}"
    );
}

#[test]
fn requested_modules_are_loaded_with_their_dependencies() {
    let dir = TempDir::new("disk");
    let disk = dir.path().join("disk.raw");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let drive = format!("file={},if=virtio,format=raw", disk.display());
    let out = boot_with("tests/images/modules.toml", &["-drive", &drive]);
    let c = &out.console;
    assert_eq!(out.verdict(), Verdict::Success, "console:\n{c}");
    for m in ["virtio_pci", "virtio_blk"] {
        assert!(c.contains(&format!("loaded module {m} in")), "{m}:\n{c}");
    }
    assert!(c.contains("module-virtio_blk-loaded"), "{c}");
    assert!(
        c.contains("disk-vda-present"),
        "the driver found the disk:\n{c}"
    );
}

#[test]
fn cgroup_limits_are_enforced_in_the_guest() {
    let out = boot("tests/images/cgroups.toml");
    let c = &out.console;
    assert!(
        c.contains("cgroup=0::/units/limited"),
        "its own cgroup:\n{c}"
    );
    assert!(
        c.contains("memory.max=33554432 pids.max=8 cpu.weight=50"),
        "limits written:\n{c}"
    );
    assert!(
        c.contains("can't fork") && c.contains("fork-refused"),
        "pids.max stopped the fork bomb:\n{c}"
    );
    assert!(c.contains("limited: done"), "{c}");
    assert!(
        c.contains("daemon-procs=2"),
        "the daemon and its escaped child:\n{c}"
    );
    assert!(
        out.exited && out.fatal_line.is_none(),
        "stop killed the whole cgroup and powered off:\n{c}"
    );
}

/// `keel.break=stage2`: keel stops before the units with /bin/sh on the
/// console; what is typed there runs, and leaving the shell continues the
/// boot.
#[test]
fn keel_break_gives_a_shell_on_the_console_then_the_boot_continues() {
    let m =
        Manifest::load(&workspace().join("images/minimal.toml")).unwrap_or_else(|e| panic!("{e}"));
    let dir = TempDir::new("qemu-break");
    let mut cfg = initramfs_boot_config(&m, dir.path());
    cfg.cmdline.push_str(" keel.break=stage2");
    cfg.console_input = vec![(
        "starting /bin/sh (exit it to continue)".into(),
        "echo broke-in-$((6 * 7)) pid=$$; exit 3\n".into(),
    )];
    let out = qemu::boot(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let c = &out.console;
    assert_eq!(out.verdict(), Verdict::Success, "{c}");
    let shell = c
        .find("keel.break=stage2: before the units start; starting /bin/sh")
        .expect(c);
    let typed = c
        .find("broke-in-42 pid=")
        .expect("the shell ran what was typed");
    let ended = c.find("keel.break=stage2: shell ended").expect(c);
    let complete = c.find("keel: boot complete in").expect(c);
    assert!(shell < typed && typed < ended && ended < complete, "{c}");
    assert!(
        c[ended..].lines().next().unwrap().contains("3"),
        "exit status 3:\n{c}"
    );
}
