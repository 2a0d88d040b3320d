//! Real daemons under `keel supervise`, speaking sd_notify unchanged:
//! Debian's etcd and containerd as `type = "notify"` units, a dependent
//! that starts only once both are READY, and an orderly stop that leaves
//! nothing running.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use keel_tests::{free_port, keel_bin, run_with_timeout, write_unit, TempDir};
use std::process::Command;
use std::time::Duration;

fn running(pattern: &str) -> bool {
    Command::new("pgrep")
        .args(["-f", pattern])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn etcd_and_containerd_ready_by_sd_notify_then_the_dependent() {
    for bin in ["/usr/bin/etcd", "/usr/bin/containerd", "/usr/bin/etcdctl"] {
        assert!(
            std::path::Path::new(bin).exists(),
            "{bin} is missing: scripts/deps installs etcd-server, etcd-client and containerd"
        );
    }
    let t = TempDir::new("daemons");
    let d = t.path();
    let units = d.join("units");
    let (client, peer) = (free_port(), free_port());
    let etcd_dir = d.join("etcd");
    write_unit(
        &units,
        "etcd",
        &format!(
            r#"
type = "notify"
ready-timeout = "60s"
exec = ["/usr/bin/etcd", "--name", "keel-test", "--data-dir", "{data}",
        "--listen-client-urls", "http://127.0.0.1:{client}",
        "--advertise-client-urls", "http://127.0.0.1:{client}",
        "--listen-peer-urls", "http://127.0.0.1:{peer}",
        "--initial-advertise-peer-urls", "http://127.0.0.1:{peer}",
        "--initial-cluster", "keel-test=http://127.0.0.1:{peer}"]
"#,
            data = etcd_dir.display()
        ),
    );
    let cd = d.join("containerd");
    std::fs::create_dir_all(&cd).unwrap();
    std::fs::write(cd.join("config.toml"), "version = 2\n").unwrap();
    write_unit(
        &units,
        "containerd",
        &format!(
            r#"
type = "notify"
kill-mode = "process"
ready-timeout = "60s"
exec = ["/usr/bin/containerd", "--config", "{dir}/config.toml", "--root", "{dir}/root",
        "--state", "{dir}/state", "--address", "{dir}/containerd.sock"]
"#,
            dir = cd.display()
        ),
    );
    write_unit(
        &units,
        "dependent",
        &format!(
            "type = \"oneshot\"\nrequires = [\"etcd\", \"containerd\"]\nexec = [\"/bin/sh\", \"-c\", \"ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:{client} endpoint health && test -S {dir}/containerd.sock && echo both-ready\"]\n",
            dir = cd.display()
        ),
    );
    let mut cmd = Command::new(keel_bin());
    cmd.arg("supervise")
        .arg("--units")
        .arg(&units)
        .arg("--runtime-dir")
        .arg(d.join("run"))
        .args(["--after-boot", "exit"]);
    let out = run_with_timeout(cmd, Duration::from_secs(180));
    let all = out.all();
    assert!(!out.timed_out, "{all}");
    assert!(all.contains("dependent: both-ready"), "{all}");
    assert!(
        all.contains("is healthy"),
        "etcdctl endpoint health passed:\n{all}"
    );
    assert_eq!(out.code, Some(0), "{all}");
    assert!(!all.contains("degraded"), "{all}");
    let data = etcd_dir.display().to_string();
    assert!(!running(&data), "etcd still running after keel stopped");
    assert!(
        !running(&cd.display().to_string()),
        "containerd still running"
    );
}
