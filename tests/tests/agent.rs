//! `keel agent` against a real etcd: a unit put into etcd starts on the
//! machine; deleted, it stops; a malformed one is reported with its key and
//! changes nothing.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use keel_tests::{free_port, keel_bin, run_with_timeout, write_unit, TempDir};
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn units_come_and_go_with_etcd() {
    let t = TempDir::new("agent");
    let d = t.path();
    let (client, peer) = (free_port(), free_port());
    let base = d.join("base");
    let agent_dir = d.join("agent-units");
    std::fs::create_dir_all(&agent_dir).unwrap();
    let control = d.join("control.sock");
    write_unit(
        &base,
        "etcd",
        &format!(
            r#"
type = "notify"
exec = ["/usr/bin/etcd", "--name", "a", "--data-dir", "{data}",
        "--listen-client-urls", "http://127.0.0.1:{client}",
        "--advertise-client-urls", "http://127.0.0.1:{client}",
        "--listen-peer-urls", "http://127.0.0.1:{peer}",
        "--initial-advertise-peer-urls", "http://127.0.0.1:{peer}",
        "--initial-cluster", "a=http://127.0.0.1:{peer}"]
"#,
            data = d.join("etcd").display()
        ),
    );
    write_unit(
        &base,
        "agent",
        &format!(
            "requires = [\"etcd\"]\nexec = [\"{keel}\", \"agent\", \"--endpoint\", \"127.0.0.1:{client}\", \"--hostname\", \"node1\", \"--units-dir\", \"{dir}\", \"--control\", \"{control}\"]\n",
            keel = keel_bin().display(),
            dir = agent_dir.display(),
            control = control.display()
        ),
    );
    write_unit(&base, "bystander", "exec = [\"/bin/sleep\", \"1000\"]\n");
    let mut child = Command::new(keel_bin())
        .arg("supervise")
        .arg("--units")
        .arg(&base)
        .arg("--units")
        .arg(&agent_dir)
        .arg("--control")
        .arg(&control)
        .arg("--runtime-dir")
        .arg(d.join("run"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Stops keel (and so etcd) even when an assertion fails.
    struct Guard(u32);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.to_string()])
                .status();
        }
    }
    let _guard = Guard(child.id());
    let out = Arc::new(Mutex::new(String::new()));
    let mut err = child.stderr.take().unwrap();
    let o2 = out.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            o2.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let wait_for = |needle: &str| {
        let start = Instant::now();
        while !out.lock().unwrap().contains(needle) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no {needle:?}:\n{}",
                out.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let etcdctl = |args: &[&str]| {
        let mut c = Command::new("etcdctl");
        c.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints=127.0.0.1:{client}"))
            .args(args);
        let o = run_with_timeout(c, Duration::from_secs(20));
        assert_eq!(o.code, Some(0), "etcdctl {args:?}: {}", o.all());
    };
    let status = |unit: &str| {
        let mut c = Command::new(keel_bin());
        c.args(["status", unit, "--json", "--control"])
            .arg(&control);
        run_with_timeout(c, Duration::from_secs(10))
    };
    wait_for("watching /keel/hosts/node1/units/");
    let bystander_before = status("bystander").stdout;

    etcdctl(&[
        "put",
        "/keel/hosts/node1/units/hello",
        "exec = [\"/bin/sh\", \"-c\", \"echo hello-from-etcd; exec sleep 1000\"]",
    ]);
    wait_for("hello: hello-from-etcd");
    assert!(agent_dir.join("hello.toml").exists());
    assert!(status("hello").stdout.contains("\"state\":\"ready\""));

    etcdctl(&[
        "put",
        "/keel/hosts/node1/units/broken",
        "exec = \"not an array\"",
    ]);
    wait_for("key /keel/hosts/node1/units/broken:");
    assert!(
        !agent_dir.join("broken.toml").exists(),
        "a malformed unit is not written"
    );
    assert!(
        status("hello").stdout.contains("\"state\":\"ready\""),
        "nothing else disturbed"
    );

    etcdctl(&["del", "/keel/hosts/node1/units/hello"]);
    let start = Instant::now();
    while status("hello").code == Some(0) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "hello never went away"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!agent_dir.join("hello.toml").exists());
    let bystander_after = status("bystander").stdout;
    let pid = |s: &str| {
        s.split("\"pid\":")
            .nth(1)
            .map(|r| r.split(',').next().unwrap_or("").to_string())
    };
    assert_eq!(
        pid(&bystander_before),
        pid(&bystander_after),
        "the bystander kept running"
    );

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().unwrap();
}
