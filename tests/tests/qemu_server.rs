//! The server image (images/server.toml) under QEMU, Debian cloud kernel,
//! in one boot: etcd and containerd READY by sd_notify, the container built
//! by keel-image running and printing, `etcdctl endpoint health` in the
//! guest, the boot line (and the blessing, with slots) only after both
//! daemons were ready; containerd restarted under a running container; and
//! `keel agent` starting, keeping and stopping a unit as etcd says.
//!
//! The guest side is tests/images/server/check.sh, a oneshot added to the
//! image's root by this test: it prints `check: KEY: VALUE` lines and powers
//! the machine off.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use keel_image::manifest::{FileSpec, Manifest};
use keel_image::qemu::{self, BootConfig, BootOutcome, Verdict};
use keel_tests::{build_disk_image, workspace, TempDir};
use std::path::PathBuf;
use std::time::Duration;

/// images/server.toml with the test's guest side in its root.
fn build(dir: &TempDir) -> (Manifest, PathBuf) {
    let mut m =
        Manifest::load(&workspace().join("images/server.toml")).unwrap_or_else(|e| panic!("{e}"));
    let test = workspace().join("tests/images/server");
    let root = m.rootfs.as_mut().unwrap();
    for (src, dest) in [
        ("check.toml", "/usr/lib/keel/units/check.toml"),
        ("check.sh", "/usr/lib/keel/check/check.sh"),
    ] {
        root.files.push(FileSpec {
            src: test.join(src),
            dest: dest.into(),
            mode: Some(0o644),
        });
    }
    let kernel = build_disk_image(&m, dir.path());
    (m, kernel)
}

fn boot(dir: &TempDir, m: &Manifest, kernel: PathBuf) -> BootOutcome {
    // A short grace so that the blessing lands while check.sh still runs.
    let cmdline = format!("{} keel.bless-grace=1s", m.kernel.cmdline);
    let mut cfg = BootConfig::new(kernel, dir.path().join("initrd.img"), cmdline);
    cfg.timeout = Duration::from_secs(400);
    let drive = format!(
        "file={},if=virtio,format=raw",
        dir.path().join("disk.img").display()
    );
    cfg.extra_args = ["-drive", &drive, "-nic", "user,model=virtio-net-pci"]
        .iter()
        .map(Into::into)
        .collect();
    qemu::boot(&cfg).unwrap_or_else(|e| panic!("{e}"))
}

/// The value of the guest's `check: KEY: VALUE` line.
fn check<'a>(console: &'a str, key: &str) -> &'a str {
    let prefix = format!("check: {key}: ");
    console
        .lines()
        .find_map(|l| l.split_once(&prefix).map(|(_, v)| v.trim()))
        .unwrap_or_else(|| panic!("no `{prefix}` line:\n{console}"))
}

/// The console line index of the first line containing `needle`.
fn line_of(console: &str, needle: &str) -> Option<usize> {
    console.lines().position(|l| l.contains(needle))
}

/// `ms` from a `... at N ms` / `... in N ms` line.
fn ms_after(line: &str, word: &str) -> Option<f64> {
    line.split_once(word)?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn server_image_etcd_containerd_container_restart_and_agent() {
    let dir = TempDir::new("qemu-server");
    let (m, kernel) = build(&dir);
    let out = boot(&dir, &m, kernel);
    let c = &out.console;
    for l in c
        .lines()
        .filter(|l| l.contains("check: ") && !l.contains("status-json"))
    {
        eprintln!("{l}");
    }
    assert!(out.fatal_line.is_none(), "{:?}\n{c}", out.fatal_line);
    assert!(!c.contains("Kernel panic"), "{c}");
    assert_eq!(out.verdict(), Verdict::Success, "console:\n{c}");

    // Networking: loopback, and the NIC QEMU gave the guest.
    assert!(
        c.contains("network: lo up, eth0 10.0.2.15/24, hostname keel-server"),
        "{c}"
    );

    // etcd and containerd READY (sd_notify), and the boot line after both.
    let status: serde_json::Value = serde_json::from_str(check(c, "status-json")).unwrap();
    let unit = |name: &str| {
        status["units"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == name)
            .unwrap_or_else(|| panic!("no unit {name} in {status}"))
            .clone()
    };
    let ready = |name: &str| {
        let u = unit(name);
        assert_eq!(u["state"], "ready", "{name}: {u}");
        u["ready_ms"]
            .as_f64()
            .unwrap_or_else(|| panic!("{name} never ready: {u}"))
    };
    let (etcd, containerd) = (ready("etcd"), ready("containerd"));
    let line = out.boot_line.as_ref().expect("boot line");
    assert!(!line.degraded, "{:?}", line.degraded_reason);
    let total = line.total_ms as f64;
    assert!(
        total >= etcd && total >= containerd,
        "boot complete at {total} ms, etcd ready at {etcd}, containerd at {containerd}"
    );
    eprintln!("server boot: etcd ready {etcd:.0} ms, containerd ready {containerd:.0} ms, boot line {total} ms");
    // Blessing: the slot is marked successful only after both are ready.
    let blessed = c
        .lines()
        .find(|l| l.contains("boot blessed at"))
        .unwrap_or_else(|| panic!("the boot was never blessed:\n{c}"));
    assert!(
        blessed.contains("slot A marked successful")
            || blessed.contains("slot A was already successful"),
        "{blessed}"
    );
    let at = ms_after(blessed, "blessed at ").unwrap();
    assert!(
        at >= etcd.max(containerd),
        "{blessed}: etcd {etcd}, containerd {containerd}"
    );
    assert!(
        line_of(c, "boot blessed at") > line_of(c, "keel: boot complete in"),
        "{c}"
    );

    // The container, from the OCI image keel-image built into the root.
    assert!(
        c.contains("container hello: hello from a container: busybox on Linux"),
        "{c}"
    );
    // etcdctl in the guest: the image's own oneshot, and check.sh.
    assert!(c.contains("etcd-health: 127.0.0.1:2379 is healthy"), "{c}");
    assert_eq!(check(c, "etcd-health"), "ok");

    // containerd restarted (kill-mode = "process"): the container lives on.
    let before = check(c, "container-before");
    let pid: u32 = before
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("{before}"));
    assert!(before.contains("RUNNING"), "{before}");
    let restarted = check(c, "containerd-restarted");
    assert!(
        restarted.ends_with(", ready") && restarted.contains(" -> "),
        "{restarted}"
    );
    let after = check(c, "container-after");
    assert!(
        after.starts_with(&format!(
            "pid {pid} alive yes task {pid} RUNNING heartbeat "
        )),
        "{after}"
    );
    let beats: Vec<u64> = after
        .rsplit_once("heartbeat ")
        .unwrap()
        .1
        .split(" -> ")
        .map(|s| s.parse().unwrap_or_else(|_| panic!("{after}")))
        .collect();
    assert!(
        beats[1] > beats[0],
        "the container's heartbeat goes on: {after}"
    );

    // The agent: put, malformed over it, deleted.
    let key = check(c, "agent-key");
    assert_eq!(key, "/keel/hosts/keel-server/units/from-etcd.toml");
    let put = check(c, "agent-put");
    assert!(put.starts_with("from-etcd ready pid "), "{put}");
    let upid = put.rsplit(' ').next().unwrap();
    assert!(c.contains("from-etcd: started"), "{c}");
    assert_eq!(
        check(c, "agent-malformed"),
        format!("reported, from-etcd ready pid {upid} (was {upid})")
    );
    assert!(
        c.lines()
            .any(|l| l.contains(&format!("key {key}: ")) && l.contains("error")),
        "the agent names the key and the error:\n{c}"
    );
    assert_eq!(
        check(c, "agent-del"),
        format!("from-etcd gone, pid {upid} gone")
    );
    assert!(c.contains("check: done"), "{c}");

    // Stage 3: the container's init (PID 1 of its namespace, no SIGTERM
    // handler) outlives containerd by design; keel kills it at once rather
    // than waiting out the 3 s for processes SIGTERM cannot stop.
    let killed = line_of(
        c,
        "a PID namespace's init without a SIGTERM handler: SIGKILL",
    );
    assert!(killed.is_some(), "{c}");
    assert!(!c.contains("processes still running"), "{c}");
}
