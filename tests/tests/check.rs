//! `keel check` on the real binary: diagnostics like a compiler, the start
//! order, and the exit status tools rely on.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use keel_tests::{keel_bin, run_with_timeout, workspace};
use std::process::Command;
use std::time::Duration;

fn check(args: &[&str]) -> keel_tests::Output {
    let mut cmd = Command::new(keel_bin());
    cmd.arg("check").args(args).current_dir(workspace());
    run_with_timeout(cmd, Duration::from_secs(30))
}

#[test]
fn clean_units_exit_0_with_levels() {
    let out = check(&["images/minimal/units"]);
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert!(
        out.stdout.contains("level 0: hello ticker"),
        "{}",
        out.all()
    );
    assert!(out.stdout.contains("level 1: after-hello"), "{}", out.all());
}

#[test]
fn a_malformed_unit_exits_1_naming_file_line_and_column() {
    let out = check(&["tests/images/bad/units"]);
    assert_eq!(out.code, Some(1), "{}", out.all());
    let all = out.all();
    assert!(
        all.contains("tests/images/bad/units/malformed.toml:2:1: error:"),
        "{all}"
    );
    let json = check(&["--json", "tests/images/bad/units"]);
    assert_eq!(json.code, Some(1));
    assert!(json.stdout.trim_start().starts_with('{'), "{}", json.all());
    assert!(json.stdout.contains("malformed"), "{}", json.all());
}
