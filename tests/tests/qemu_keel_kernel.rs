//! Real boots on Keel's own kernel (kernel/config/keel.config, built by
//! `make kernel` into build/kernel/bzImage): the minimal image, the boot
//! scenario of qemu_boot.rs with the same checks, and one boot that looks for
//! every built-in feature the issue asks of the kernel (virtio disk, network,
//! console, GPT, the watchdog, file systems, cgroup controllers, namespaces,
//! netfilter, printk timestamps). Nothing is timed.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use keel_image::manifest::Manifest;
use keel_image::qemu::{self, BootOutcome};
use keel_tests::{
    assert_boot_scenario, assert_clean_boot as assert_clean, initramfs_boot_config, workspace,
    TempDir,
};
use std::path::{Path, PathBuf};

/// Keel's kernel; `make test` builds it first (`make kernel`, cached).
fn keel_kernel() -> PathBuf {
    let p = workspace().join("build/kernel/bzImage");
    assert!(p.is_file(), "{} is missing: run `make kernel`", p.display());
    p
}

/// Boots `m` on Keel's kernel, whatever kernel the manifest names.
fn boot_on_keel_kernel(mut m: Manifest, extra: &[&str]) -> BootOutcome {
    m.kernel.image = Some(keel_kernel());
    let dir = TempDir::new("qemu-keel-kernel");
    let mut cfg = initramfs_boot_config(&m, dir.path());
    assert_eq!(cfg.kernel, keel_kernel());
    cfg.extra_args = extra.iter().map(Into::into).collect();
    qemu::boot(&cfg).unwrap_or_else(|e| panic!("{e}"))
}

fn load(manifest: &Path) -> Manifest {
    Manifest::load(manifest).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn minimal_image_boots_on_keels_kernel() {
    let out = boot_on_keel_kernel(
        load(&workspace().join("images/minimal-keel-kernel.toml")),
        &[],
    );
    let c = &out.console;
    assert_clean(&out);
    assert!(
        c.contains("hello from a keel oneshot"),
        "oneshot output:\n{c}"
    );
    assert!(
        c.contains("after-hello: runs once hello has finished"),
        "ordered oneshot:\n{c}"
    );
    let hello = c.find("hello from a keel oneshot").unwrap();
    assert!(
        c.find("after-hello: runs").unwrap() > hello,
        "after-hello runs after hello:\n{c}"
    );
}

#[test]
fn boot_scenario_runs_units_reaps_orphans_and_powers_off_on_keels_kernel() {
    let out = boot_on_keel_kernel(load(&workspace().join("tests/images/boot.toml")), &[]);
    assert_clean(&out);
    assert_boot_scenario(&out);
}

/// Each line `TOKEN PATH`: the guest prints `feature: TOKEN` when PATH exists.
const PATHS: &[(&str, &str)] = &[
    ("disk-vda", "/dev/vda"),
    ("gpt-vda1", "/dev/vda1"),
    ("net-eth0", "/sys/class/net/eth0"),
    ("net-lo", "/sys/class/net/lo"),
    ("console-hvc0", "/dev/hvc0"),
    ("watchdog", "/dev/watchdog0"),
    ("kmsg", "/dev/kmsg"),
    ("inet", "/proc/net/tcp"),
    ("inet6", "/proc/net/tcp6"),
    ("unix", "/proc/net/unix"),
    ("iptables", "/proc/net/ip_tables_names"),
    ("ip6tables", "/proc/net/ip6_tables_names"),
    ("conntrack", "/proc/sys/net/netfilter/nf_conntrack_max"),
    (
        "br-netfilter",
        "/proc/sys/net/bridge/bridge-nf-call-iptables",
    ),
    ("smaps-rollup", "/proc/1/smaps_rollup"),
    ("ns-user", "/proc/self/ns/user"),
    ("ns-pid", "/proc/self/ns/pid"),
    ("ns-net", "/proc/self/ns/net"),
    ("ns-ipc", "/proc/self/ns/ipc"),
    ("ns-uts", "/proc/self/ns/uts"),
    ("ns-mnt", "/proc/self/ns/mnt"),
    ("ns-cgroup", "/proc/self/ns/cgroup"),
];

/// Words that must be in /proc/filesystems and in cgroup.controllers.
const FILESYSTEMS: &[&str] = &[
    "erofs", "ext4", "overlay", "tmpfs", "devtmpfs", "cgroup2", "proc", "sysfs",
];
const CONTROLLERS: &[&str] = &["cpu", "memory", "pids", "cpuset"];

fn feature_script() -> String {
    let mut s = String::from("#!/bin/sh\n");
    for (token, path) in PATHS {
        s += &format!("[ -e {path} ] && echo \"feature: {token}\"\n");
    }
    for fs in FILESYSTEMS {
        s += &format!("busybox grep -qw {fs} /proc/filesystems && echo \"feature: fs-{fs}\"\n");
    }
    for c in CONTROLLERS {
        s += &format!(
            "busybox grep -qw {c} /sys/fs/cgroup/cgroup.controllers && echo \"feature: cgroup-{c}\"\n"
        );
    }
    s += "case $(busybox uname -r) in *-keel) echo \"feature: release-keel\";; esac\n";
    s
}

#[test]
fn keels_kernel_has_every_feature_built_in() {
    let dir = TempDir::new("keel-kernel-features");
    let d = dir.path();
    std::fs::create_dir_all(d.join("units")).unwrap();
    std::fs::write(d.join("features"), feature_script()).unwrap();
    std::fs::write(
        d.join("units/features.toml"),
        "description = \"print the kernel features that are there\"\n\
         type = \"oneshot\"\nexec = [\"/bin/features\"]\n",
    )
    .unwrap();
    let manifest = "name = \"keel-kernel-features\"\n\n[kernel]\nrelease = \"auto\"\n\
         cmdline = \"console=ttyS0 quiet panic=-1 keel.after-boot=poweroff\"\n\n\
         [initramfs]\ncompress = \"gzip\"\nunits = \"units\"\n\n\
         [[initramfs.files]]\nsrc = \"/bin/busybox\"\ndest = \"/bin/busybox\"\nmode = 0o755\n\n\
         [[initramfs.files]]\nsrc = \"features\"\ndest = \"/bin/features\"\nmode = 0o755\n\n\
         [[initramfs.symlinks]]\ndest = \"/bin/sh\"\ntarget = \"busybox\"\n";
    let path = d.join("features.toml");
    std::fs::write(&path, manifest).unwrap();

    // A 4 MiB disk with a GPT and one partition: the kernel must see vda1.
    let disk = d.join("disk.raw");
    std::fs::write(&disk, vec![0u8; 4 << 20]).unwrap();
    let st = std::process::Command::new("sgdisk")
        .args(["-n", "1:2048:0", "-c", "1:KEEL-STATE"])
        .arg(&disk)
        .output()
        .unwrap_or_else(|e| panic!("sgdisk (package gdisk, scripts/deps): {e}"));
    assert!(st.status.success(), "sgdisk: {st:?}");
    let drive = format!("file={},if=virtio,format=raw", disk.display());
    let extra = [
        "-drive",
        &drive,
        "-netdev",
        "user,id=n0",
        "-device",
        "virtio-net-pci,netdev=n0,romfile=",
        "-device",
        "i6300esb",
        "-chardev",
        "null,id=vc0",
        "-device",
        "virtio-serial-pci",
        "-device",
        "virtconsole,chardev=vc0",
    ];
    let out = boot_on_keel_kernel(load(&path), &extra);
    let c = &out.console;
    assert_clean(&out);
    let mut want: Vec<String> = PATHS.iter().map(|(t, _)| (*t).to_owned()).collect();
    want.extend(FILESYSTEMS.iter().map(|f| format!("fs-{f}")));
    want.extend(CONTROLLERS.iter().map(|k| format!("cgroup-{k}")));
    want.push("release-keel".into());
    let missing: Vec<&String> = want
        .iter()
        .filter(|t| {
            let want = format!("feature: {t}");
            !c.lines().any(|l| l.trim_end().ends_with(&want))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "missing in Keel's kernel: {missing:?}\n{c}"
    );
    // printk timestamps (CONFIG_PRINTK_TIME): the kernel's own last line.
    assert!(
        c.lines()
            .any(|l| l.starts_with('[') && l.contains("] reboot: Power down")),
        "a timestamped kernel line:\n{c}"
    );
}

/// The hardware watchdog on Keel's kernel: `-device i6300esb` (built-in
/// driver), armed by keel, petted while the boot waits for a boot-critical
/// unit that never becomes ready, and no longer once the boot is given up
/// at its deadline: the watchdog resets the machine (QEMU's -no-reboot
/// then ends it), not keel.
#[test]
fn an_unblessed_boot_is_reset_by_the_i6300esb_watchdog() {
    let dir = TempDir::new("keel-kernel-i6300esb");
    let d = dir.path();
    std::fs::create_dir_all(d.join("units")).unwrap();
    std::fs::write(
        d.join("units/never.toml"),
        "description = \"never ready\"\ntype = \"notify\"\nexec = [\"/bin/busybox\", \"sleep\", \"1000\"]\n",
    )
    .unwrap();
    let manifest = "name = \"keel-kernel-i6300esb\"\n\n[kernel]\nrelease = \"auto\"\n\
         cmdline = \"console=ttyS0 quiet panic=-1 keel.watchdog=until-blessed \
         keel.watchdog-timeout=2 keel.bless-deadline=4s\"\n\n\
         [initramfs]\ncompress = \"gzip\"\nunits = \"units\"\n\n\
         [[initramfs.files]]\nsrc = \"/bin/busybox\"\ndest = \"/bin/busybox\"\nmode = 0o755\n";
    let path = d.join("i6300esb.toml");
    std::fs::write(&path, manifest).unwrap();
    let out = boot_on_keel_kernel(load(&path), &["-device", "i6300esb"]);
    let c = &out.console;
    assert!(out.fatal_line.is_none(), "{c}");
    assert!(
        c.contains("watchdog /dev/watchdog armed: 2 s, until-blessed"),
        "{c}"
    );
    let gave_up = c.find("is given up: not blessed within 4000 ms").expect(c);
    assert!(
        c[gave_up..].contains("no longer petting the watchdog"),
        "{c}"
    );
    assert!(
        out.exited,
        "QEMU ended by itself (the reset, with -no-reboot):\n{c}"
    );
    assert!(out.boot_line.is_none(), "{c}");
    for keel_did in ["rebooting", "powering off", "reboot: Restarting system"] {
        assert!(
            !c.contains(keel_did),
            "{keel_did:?}: keel did it, not the watchdog:\n{c}"
        );
    }
}
