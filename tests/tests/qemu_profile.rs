//! Boot profiling in a real boot: tests/images/chain.toml (a, which says
//! READY=1 300 ms after it starts, then b, then c; a fast unit beside them)
//! prints its boot record on the console (keel.report=console, with a
//! bootchart), and the host-run keel analyzes it: the critical chain of boot
//! complete is c, b, a with times that agree with each other, and blame
//! puts a first. Then `keel-image boot --profile DIR --repeat 2`'s code path
//! renders two boots and the per-phase summary.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use keel_image::manifest::Manifest;
use keel_image::qemu::{self, BootConfig, Verdict};
use keel_tests::{initramfs_boot_config, keel_bin, run_with_timeout, workspace, TempDir};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const IMAGE: &str = "tests/images/chain.toml";

fn config(dir: &Path) -> BootConfig {
    let m = Manifest::load(&workspace().join(IMAGE)).unwrap_or_else(|e| panic!("{e}"));
    initramfs_boot_config(&m, dir)
}

fn analyze(args: &[&str], record: &Path) -> String {
    let mut cmd = Command::new(keel_bin());
    cmd.arg("analyze").args(args).arg("--record").arg(record);
    let out = run_with_timeout(cmd, Duration::from_secs(30));
    assert_eq!(out.code, Some(0), "keel analyze {args:?}:\n{}", out.all());
    out.stdout
}

fn json(args: &[&str], record: &Path) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    serde_json::from_str(&analyze(&a, record)).unwrap()
}

#[test]
fn the_chain_a_b_c_is_the_critical_chain_and_a_is_to_blame() {
    let dir = TempDir::new("qemu-profile");
    let out = qemu::boot(&config(dir.path())).unwrap_or_else(|e| panic!("{e}"));
    let c = &out.console;
    assert_eq!(out.verdict(), Verdict::Success, "console:\n{c}");
    let text = keel_image::profile::extract(c).unwrap_or_else(|e| panic!("{e}:\n{c}"));
    let record = dir.path().join("boot.json");
    std::fs::write(&record, &text).unwrap();
    let r: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["version"], 1);

    // The record agrees with the boot line (both are CLOCK_BOOTTIME).
    let line = out.boot_line.as_ref().unwrap();
    let complete = r["complete_us"].as_u64().unwrap();
    assert_eq!(complete / 1000, line.total_ms, "{line:?}");
    assert_eq!(r["init_us"].as_u64().unwrap() / 1000, line.kernel_ms);
    // The kernel's milestones came from /dev/kmsg, before keel started.
    let kernel = r["kernel"].as_array().unwrap();
    let run_init = kernel
        .iter()
        .find(|m| m["name"] == "run init")
        .unwrap_or_else(|| panic!("no `run init` milestone: {kernel:?}"));
    assert!(run_init["at_us"].as_u64().unwrap() <= r["init_us"].as_u64().unwrap());
    // The sampler ran while the units started.
    let samples = r["bootchart"]["samples"].as_array().unwrap();
    assert!(samples.len() >= 5, "{} samples", samples.len());

    let chain = json(&["critical-chain"], &record);
    let links = chain["chain"].as_array().unwrap();
    let names: Vec<&str> = links.iter().map(|l| l["unit"].as_str().unwrap()).collect();
    assert_eq!(names, ["c", "b", "a"], "{chain:#}");
    assert_eq!(chain["at_us"].as_u64(), Some(complete));
    // Consistent: each unit starts after what it waited for was ready,
    // is ready after it starts, and the last one is ready by boot complete.
    let at = |i: usize, k: &str| links[i][k].as_u64().unwrap();
    assert!(at(0, "at_us") <= complete);
    for i in 0..3 {
        assert!(at(i, "started_us") <= at(i, "at_us"), "{chain:#}");
        if i + 1 < 3 {
            assert!(at(i + 1, "at_us") <= at(i, "started_us"), "{chain:#}");
        }
    }
    assert!(at(2, "started_us") >= chain["keel_us"].as_u64().unwrap());
    assert!(
        at(2, "us") >= 300_000,
        "a sleeps 300 ms before READY=1: {chain:#}"
    );

    let blame = json(&["blame"], &record);
    assert_eq!(blame[0]["unit"], "a", "{blame:#}");
    let text = analyze(&["critical-chain"], &record);
    eprintln!(
        "{}\n{text}\n{}",
        analyze(&["time"], &record),
        analyze(&["blame"], &record)
    );
    assert!(
        text.contains("└─c @") && text.contains("    └─a @"),
        "{text}"
    );
    let side = json(&["critical-chain", "side"], &record);
    assert_eq!(side["chain"].as_array().unwrap().len(), 1);
    let svg = analyze(&["plot"], &record);
    assert!(svg.contains("<svg") && svg.contains(">a</text>"), "{svg}");
}

#[test]
fn profile_and_repeat_render_each_boot_and_summarize_the_phases() {
    let dir = TempDir::new("qemu-profile");
    let out = dir.path().join("profile");
    keel_image::profile::run(&config(dir.path()), &keel_bin(), Some(&out), 2)
        .unwrap_or_else(|e| panic!("{e}"));
    for boot in ["1", "2"] {
        for file in [
            "boot.json",
            "time.txt",
            "blame.txt",
            "critical-chain.txt",
            "boot.svg",
            "trace.json",
        ] {
            let p = out.join(boot).join(file);
            assert!(
                std::fs::metadata(&p).map(|m| m.len() > 0).unwrap_or(false),
                "{} missing or empty",
                p.display()
            );
        }
    }
    let blame = std::fs::read_to_string(out.join("1/blame.txt")).unwrap();
    assert!(blame.lines().next().unwrap().ends_with(" a"), "{blame}");
    let summary = std::fs::read_to_string(out.join("repeat.txt")).unwrap();
    eprintln!("{summary}");
    for phase in ["kernel", "userspace", "total", "unit a"] {
        assert!(
            summary.lines().any(|l| l.starts_with(phase)),
            "{phase} missing:\n{summary}"
        );
    }
    assert!(summary.contains("(2 boots)"), "{summary}");
}
