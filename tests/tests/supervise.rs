//! `keel supervise`: the supervisor as a subreaper, with a real sd_notify
//! client (Debian's `systemd-notify`) and a stranger whose READY=1 must be
//! ignored.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use keel_tests::{keel_bin, run_with_timeout, toml_string, write_unit, TempDir};
use std::process::Command;
use std::time::Duration;

fn supervise(units: &std::path::Path, runtime: &std::path::Path) -> keel_tests::Output {
    let mut cmd = Command::new(keel_bin());
    cmd.arg("supervise")
        .arg("--units")
        .arg(units)
        .arg("--runtime-dir")
        .arg(runtime)
        .args(["--after-boot", "exit"]);
    run_with_timeout(cmd, Duration::from_secs(60))
}

#[test]
fn systemd_notify_readiness_gates_the_dependent() {
    let t = TempDir::new("supervise-notify");
    let units = t.path().join("units");
    write_unit(
        &units,
        "notifier",
        r#"
type = "notify"
exec = ["/bin/sh", "-c", "sleep 0.3; echo notifier-ready; systemd-notify --ready --status=serving; exec sleep 100"]
"#,
    );
    write_unit(
        &units,
        "dependent",
        r#"
type = "oneshot"
requires = ["notifier"]
exec = ["/bin/sh", "-c", "echo dependent-ran"]
"#,
    );
    let out = supervise(&units, &t.path().join("run"));
    let all = out.all();
    assert_eq!(out.code, Some(0), "{all}");
    let ready = all.find("notifier-ready").expect("notifier ran");
    let dep = all.find("dependent-ran").expect("dependent ran");
    assert!(ready < dep, "the dependent waited for READY=1\n{all}");
    assert!(out.stderr.contains("units ready in"), "{all}");
    assert!(!out.stderr.contains("degraded"), "{all}");
}

/// `keel notify --ready` returns only once keel has taken READY=1 in (its
/// BARRIER): right after it, `keel status` already says ready. The
/// dependent waits for that check, so the order is causal, not a race of
/// two pipes.
#[test]
fn keel_notify_is_a_client_too() {
    let t = TempDir::new("supervise-keel-notify");
    let units = t.path().join("units");
    let run = t.path().join("run");
    let checked = t.path().join("checked");
    let keel = keel_bin();
    let svc = format!(
        "sleep 0.2; {keel} notify --ready --status=up && echo notify-sent; \
         {keel} status svc --json --control {sock} | grep -o '\"state\":\"[a-z-]*\"'; \
         touch {checked}; exec sleep 100",
        keel = keel.display(),
        sock = run.join("control.sock").display(),
        checked = checked.display(),
    );
    write_unit(
        &units,
        "svc",
        &format!(
            "type = \"notify\"\nexec = [\"/bin/sh\", \"-c\", {}]\n",
            toml_string(&svc)
        ),
    );
    let after = format!(
        "while [ ! -e {} ]; do sleep 0.05; done; echo after-ran",
        checked.display()
    );
    write_unit(
        &units,
        "after",
        &format!(
            "type = \"oneshot\"\nrequires = [\"svc\"]\nexec = [\"/bin/sh\", \"-c\", {}]\n",
            toml_string(&after)
        ),
    );
    let out = supervise(&units, &run);
    let all = out.all();
    assert_eq!(out.code, Some(0), "{all}");
    assert!(
        all.contains("svc: notify-sent"),
        "keel notify exited 0:\n{all}"
    );
    assert!(
        all.contains("svc: \"state\":\"ready\""),
        "ready as soon as keel notify returned:\n{all}"
    );
    assert!(all.contains("after: after-ran"), "{all}");
}

#[test]
fn a_stranger_cannot_make_a_unit_ready_and_ready_timeout_names_it() {
    let t = TempDir::new("supervise-stranger");
    let units = t.path().join("units");
    let run = t.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    write_unit(
        &units,
        "silent",
        r#"
type = "notify"
ready-timeout = "2s"
exec = ["/bin/sleep", "100"]
"#,
    );
    // A process that is not the unit's sends READY=1 while it waits.
    let sock = run.join("notify");
    let stranger = std::thread::spawn(move || {
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(100));
            let s = std::os::unix::net::UnixDatagram::unbound().unwrap();
            let _ = s.send_to(b"READY=1", &sock);
        }
    });
    let out = supervise(&units, &run);
    stranger.join().unwrap();
    let all = out.all();
    assert_eq!(
        out.code,
        Some(1),
        "the unit failed, so keel supervise exits 1\n{all}"
    );
    assert!(all.contains("unit silent failed"), "{all}");
    assert!(all.contains("ready-timeout of 2s"), "{all}");
}

/// `systemd-notify --pid=` hands the main process over (MAINPID=): keel
/// then follows the new pid.
#[test]
fn systemd_notify_pid_moves_the_main_process() {
    let t = TempDir::new("supervise-mainpid");
    let units = t.path().join("units");
    write_unit(
        &units,
        "forker",
        r#"
type = "notify"
exec = ["/bin/sh", "-c", "sleep 100 & echo child=$!; systemd-notify --ready --pid=$! --status=handed-over; exit 0"]
"#,
    );
    let mut cmd = Command::new(keel_bin());
    let run = t.path().join("run");
    cmd.arg("supervise")
        .arg("--units")
        .arg(&units)
        .arg("--runtime-dir")
        .arg(&run);
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let control = run.join("control.sock");
    let mut status = String::new();
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(50));
        let out = run_with_timeout(
            {
                let mut c = Command::new(keel_bin());
                c.args(["status", "forker", "--json", "--control"])
                    .arg(&control);
                c
            },
            Duration::from_secs(5),
        );
        status = out.stdout;
        if status.contains("handed-over") && status.contains("\"state\":\"ready\"") {
            break;
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    child.wait().unwrap();
    assert!(status.contains("\"state\":\"ready\""), "{status}\n{err}");
    let child_pid = err
        .split("child=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        status.contains(&format!("\"pid\":{child_pid}")),
        "the main pid is now the sleep: {status}"
    );
}
