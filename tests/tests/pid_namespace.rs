//! keel as PID 1 of a PID namespace (`unshare --pid --fork --mount-proc`):
//! the same code path as the machine's init, minus the mounts that are
//! already there. Orphans must be reaped, and poweroff must end the
//! namespace.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use keel_tests::{keel_bin, run_with_timeout, write_unit, TempDir};
use std::process::Command;
use std::time::Duration;

fn unshare_keel(units: &std::path::Path) -> keel_tests::Output {
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "--"])
        .arg(keel_bin())
        .arg(format!("keel.units={}", units.display()))
        .arg("keel.after-boot=poweroff")
        .arg("keel.log=console");
    run_with_timeout(cmd, Duration::from_secs(60))
}

#[test]
fn double_forked_orphans_are_reaped_and_poweroff_ends_the_namespace() {
    let t = TempDir::new("pidns");
    let units = t.path().join("units");
    // The grandchild `sleep` is orphaned at once and re-parented to keel.
    write_unit(
        &units,
        "doublefork",
        r#"
type = "oneshot"
exec = ["/bin/sh", "-c", "(sleep 0.3 &) ; echo forked-orphan"]
"#,
    );
    // After the orphan has exited, nothing may be left as a zombie.
    write_unit(
        &units,
        "zombies",
        r#"
type = "oneshot"
after = ["doublefork"]
exec = ["/bin/sh", "-c", "sleep 1; n=0; for f in /proc/[0-9]*/stat; do s=$(cut -d')' -f2 $f 2>/dev/null | cut -d' ' -f2); [ \"$s\" = Z ] && n=$((n+1)); done; echo zombies=$n; echo pid1=$(cat /proc/1/comm)"]
"#,
    );
    write_unit(
        &units,
        "service",
        r#"
exec = ["/bin/sleep", "3600"]
"#,
    );
    let out = unshare_keel(&units);
    let all = out.all();
    assert!(
        !out.timed_out,
        "keel did not power off the namespace\n{all}"
    );
    assert!(all.contains("forked-orphan"), "{all}");
    assert!(all.contains("pid1=keel"), "keel is PID 1 there\n{all}");
    assert!(
        all.contains("zombies=0"),
        "an orphan was left a zombie\n{all}"
    );
    let boot_lines = out
        .stderr
        .lines()
        .filter(|l| l.contains("keel: boot complete in"))
        .count();
    assert_eq!(boot_lines, 1, "exactly one boot line\n{all}");
    assert!(!out.stderr.contains("degraded"), "{all}");
    assert!(out.stderr.contains("powering off"), "{all}");
    // reboot(2) in a PID namespace ends its init with SIGINT for poweroff;
    // unshare passes that on.
    assert!(
        out.signal == Some(libc::SIGINT) || out.code == Some(128 + libc::SIGINT),
        "unexpected end: {:?}/{:?}\n{all}",
        out.code,
        out.signal
    );
}

#[test]
fn bad_units_degrade_the_boot_but_the_others_start() {
    let t = TempDir::new("pidns-bad");
    let units = t.path().join("units");
    write_unit(
        &units,
        "good",
        "type = \"oneshot\"\nexec = [\"/bin/echo\", \"good-ran\"]\n",
    );
    write_unit(&units, "malformed", "exec = [\"/bin/true\"\n");
    write_unit(&units, "missing", "exec = [\"/nonexistent/daemon\"]\n");
    let out = unshare_keel(&units);
    let all = out.all();
    assert!(!out.timed_out, "{all}");
    assert!(
        all.contains("good: good-ran"),
        "unit output carries its name\n{all}"
    );
    assert!(
        out.stderr.contains("malformed.toml"),
        "the malformed file is named\n{all}"
    );
    assert!(
        out.stderr.contains("unit missing failed") && out.stderr.contains("/nonexistent/daemon"),
        "the missing program is named with its unit\n{all}"
    );
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("keel: boot complete in"))
        .unwrap_or_else(|| panic!("no boot line\n{all}"));
    assert!(line.contains("degraded"), "{line}");
    assert!(line.contains("unit missing failed"), "{line}");
}

/// SIGTERM to PID 1 reboots (the sysvinit convention): the units are
/// stopped first, and reboot(2) in a PID namespace ends its init with SIGHUP.
#[test]
fn sigterm_stops_the_units_and_reboots() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let t = TempDir::new("pidns-term");
    let units = t.path().join("units");
    write_unit(
        &units,
        "service",
        "exec = [\"/bin/sh\", \"-c\", \"trap 'echo service-got-term; exit 0' TERM; echo trap-set; while :; do sleep 0.1; done\"]\n",
    );
    let mut child = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--"])
        .arg(keel_bin())
        .arg(format!("keel.units={}", units.display()))
        .arg("keel.log=console")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let unshare_pid = child.id();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        seen.push_str(&line);
        // The service's output reaches keel's stderr through its log pipe.
        if seen.contains("boot complete") && seen.contains("trap-set") {
            break;
        }
        line.clear();
    }
    assert!(seen.contains("boot complete"), "{seen}");
    // keel is unshare's child; SIGTERM it from outside the namespace.
    let children =
        std::fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children"))
            .unwrap();
    let keel_pid: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    // std has no kill(2); the `kill` command does it.
    let st = Command::new("kill")
        .args(["-TERM", &keel_pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    let status = child.wait().unwrap();
    let all = format!("{seen}{rest}\n--- stdout\n{stdout}");
    assert!(rest.contains("SIGTERM from pid"), "{all}");
    assert!(
        all.contains("service-got-term"),
        "the unit was stopped first\n{all}"
    );
    assert!(rest.contains("rebooting"), "{all}");
    use std::os::unix::process::ExitStatusExt;
    assert!(
        status.signal() == Some(libc::SIGHUP) || status.code() == Some(128 + libc::SIGHUP),
        "reboot in a PID namespace ends init with SIGHUP: {status:?}\n{all}"
    );
}

/// A 500-process fork-and-exit storm with keel as PID 1: no zombie left.
#[test]
fn a_fork_storm_leaves_no_zombie_in_the_namespace() {
    let t = TempDir::new("pidns-storm");
    let units = t.path().join("units");
    write_unit(
        &units,
        "storm",
        "type = \"oneshot\"\nexec = [\"/bin/sh\", \"-c\", \"i=0; while [ $i -lt 500 ]; do (sleep 0.01 &) ; i=$((i+1)); done; echo storm-done\"]\n",
    );
    write_unit(
        &units,
        "count",
        "type = \"oneshot\"\nafter = [\"storm\"]\nexec = [\"/bin/sh\", \"-c\", \"sleep 1; n=0; for f in /proc/[0-9]*/stat; do s=$(cut -d')' -f2 $f 2>/dev/null | cut -d' ' -f2); [ \\\"$s\\\" = Z ] && n=$((n+1)); done; echo zombies=$n\"]\n",
    );
    let out = unshare_keel(&units);
    let all = out.all();
    assert!(all.contains("storm-done"), "{all}");
    assert!(all.contains("zombies=0"), "{all}");
}
