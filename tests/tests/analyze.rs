//! `keel analyze` on synthetic boot records with known answers: the real
//! binary, `--record FILE`. The critical chain through parallel branches,
//! behind a slow dependency and ending in a failed unit; blame's order;
//! time and compare; the SVG parsed as XML and rendered to a PNG that is
//! not blank (rsvg-convert); the trace has the fields the Chrome trace event
//! format requires.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use keel_tests::{keel_bin, run_with_timeout, Output, TempDir};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A unit that started at `start` ms, settled at `end` ms (ready, or
/// failed with `failure`), after waiting for `waited`.
fn unit(name: &str, start: u64, end: u64, waited: Option<&str>, failure: Option<&str>) -> Value {
    let (ready, failed) = match failure {
        Some(_) => (Value::Null, json!(end * 1000)),
        None => (json!(end * 1000), Value::Null),
    };
    json!({
        "name": name, "type": "simple", "boot_critical": true,
        "requires": waited.map(|w| vec![w]).unwrap_or_default(), "wants": [], "after": [],
        "waited_for": waited, "started_us": start * 1000, "execd_us": start * 1000 + 200,
        "pid": 100, "ready_us": ready, "failed_us": failed, "failure": failure,
        "restarts": 0, "stopping_us": null, "stopped_us": null,
    })
}

/// A record: keel started at 1000 ms, boot complete at `complete` ms.
fn record(units: Vec<Value>, complete: u64) -> Value {
    let failed: Vec<Value> = units
        .iter()
        .filter(|u| !u["failure"].is_null())
        .map(|u| json!({"unit": u["name"], "reason": u["failure"]}))
        .collect();
    json!({
        "version": 1, "keel": "0.1.0", "boot_id": "test", "kernel_release": "6.1.0-test",
        "cmdline": "quiet", "init_us": 1_000_000,
        "kernel": [
            {"name": "initramfs unpack start", "at_us": 400_000, "message": "Trying to unpack rootfs image as initramfs..."},
            {"name": "run init", "at_us": 990_000, "message": "Run /init as init process"},
        ],
        "stage1": null, "units": units, "events": [], "complete_us": complete * 1000,
        "blessed_us": null, "failed": failed, "problems": [], "shutdown": null,
        "bootchart": null,
    })
}

fn save(dir: &Path, name: &str, v: &Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, v.to_string()).unwrap();
    p
}

fn analyze(args: &[&str]) -> Output {
    let mut cmd = Command::new(keel_bin());
    cmd.arg("analyze").args(args);
    let out = run_with_timeout(cmd, Duration::from_secs(20));
    assert_eq!(out.code, Some(0), "keel analyze {args:?}:\n{}", out.all());
    out
}

fn analyze_json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = analyze(&a);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{}", out.stdout))
}

fn chain_units(chain: &Value) -> Vec<String> {
    chain["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["unit"].as_str().unwrap().to_string())
        .collect()
}

/// root -> {fast, slow} -> join, and a side unit; join waited for slow.
fn parallel() -> Value {
    record(
        vec![
            unit("root", 1005, 1020, None, None),
            unit("side", 1005, 1006, None, None),
            unit("fast", 1021, 1030, Some("root"), None),
            unit("slow", 1021, 1400, Some("root"), None),
            unit("join", 1401, 1450, Some("slow"), None),
        ],
        1450,
    )
}

#[test]
fn critical_chain_follows_the_slow_branch_of_parallel_ones() {
    let dir = TempDir::new("analyze");
    let rec = save(dir.path(), "r.json", &parallel());
    let r = rec.to_str().unwrap();
    let c = analyze_json(&["critical-chain", "--record", r]);
    assert_eq!(c["target"], "boot complete");
    assert_eq!(c["at_us"], 1_450_000);
    assert_eq!(chain_units(&c), ["join", "slow", "root"]);
    assert_eq!(c["chain"][1]["us"], 379_000, "slow: 1021 ms to 1400 ms");
    // A unit on the fast branch has its own chain.
    let fast = analyze_json(&["critical-chain", "fast", "--record", r]);
    assert_eq!(chain_units(&fast), ["fast", "root"]);
    let text = analyze(&["critical-chain", "--record", r]).stdout;
    assert!(
        text.contains("boot complete @1.450s\n└─join @1.450s +49.0ms\n  └─slow @1.400s +379.0ms\n    └─root @1.020s +15.0ms\n      └─keel @1.000s"),
        "{text}"
    );
}

#[test]
fn critical_chain_and_blame_name_a_slow_dependency() {
    // app requires db and cache; db is slow, so app waited for db.
    let dir = TempDir::new("analyze");
    let rec = save(
        dir.path(),
        "r.json",
        &record(
            vec![
                unit("cache", 1002, 1010, None, None),
                unit("db", 1002, 1802, None, None),
                unit("app", 1803, 1900, Some("db"), None),
            ],
            1900,
        ),
    );
    let r = rec.to_str().unwrap();
    assert_eq!(
        chain_units(&analyze_json(&["critical-chain", "--record", r])),
        ["app", "db"]
    );
    let blame = analyze_json(&["blame", "--record", r]);
    let order: Vec<&str> = blame
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["unit"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["db", "app", "cache"]);
    assert_eq!(blame[0]["us"], 800_000);
    let text = analyze(&["blame", "--record", r]).stdout;
    assert_eq!(text.lines().next().unwrap().trim(), "800.0ms db", "{text}");
}

#[test]
fn a_failed_unit_ends_the_chain_and_is_marked() {
    let dir = TempDir::new("analyze");
    let rec = save(
        dir.path(),
        "r.json",
        &record(
            vec![
                unit("net", 1002, 1100, None, None),
                unit("broken", 1101, 1250, Some("net"), Some("exit status 3")),
            ],
            1250,
        ),
    );
    let r = rec.to_str().unwrap();
    let c = analyze_json(&["critical-chain", "--record", r]);
    assert_eq!(chain_units(&c), ["broken", "net"]);
    assert_eq!(c["chain"][0]["failed"], true);
    assert_eq!(c["chain"][0]["failure"], "exit status 3");
    let text = analyze(&["critical-chain", "--record", r]).stdout;
    assert!(
        text.contains("└─broken @1.250s +149.0ms (failed: exit status 3)"),
        "{text}"
    );
    let time = analyze(&["time", "--record", r]).stdout;
    assert!(
        time.contains("degraded: unit broken failed (exit status 3)"),
        "{time}"
    );
    let blame = analyze(&["blame", "--record", r]).stdout;
    assert!(blame.contains("broken (failed: exit status 3)"), "{blame}");
}

#[test]
fn time_and_compare_add_up() {
    let dir = TempDir::new("analyze");
    let a = save(dir.path(), "a.json", &parallel());
    let mut faster = parallel();
    faster["units"][3] = unit("slow", 1021, 1100, Some("root"), None);
    faster["units"][4] = unit("join", 1101, 1150, Some("slow"), None);
    faster["complete_us"] = json!(1_150_000);
    let b = save(dir.path(), "b.json", &faster);
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let t = analyze_json(&["time", "--record", a]);
    let phases: Vec<(String, u64)> = t["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().into(),
                p["us"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        phases,
        [
            ("kernel".into(), 1_000_000),
            ("userspace".into(), 450_000),
            ("total".into(), 1_450_000)
        ]
    );
    let text = analyze(&["time", "--record", a]).stdout;
    assert!(
        text.starts_with("Boot complete in 1.450s = 1.000s (kernel) + 450.0ms (userspace)"),
        "{text}"
    );
    assert!(text.contains("run init @990.0ms"), "{text}");
    let c = analyze_json(&["compare", a, b]);
    assert_eq!(c["phases"][2]["name"], "total");
    assert_eq!(c["phases"][2]["delta_us"], -300_000);
    assert_eq!(c["units"][0]["unit"], "slow", "the biggest change first");
    assert_eq!(c["units"][0]["delta_us"], -300_000);
    assert!(analyze(&["compare", a, b]).stdout.contains("-300.0ms"));
}

#[test]
fn bad_input_is_refused_with_the_reason() {
    let dir = TempDir::new("analyze");
    let newer = save(dir.path(), "n.json", &json!({"version": 9}));
    let mut cmd = Command::new(keel_bin());
    cmd.args(["analyze", "time", "--record"]).arg(&newer);
    let out = run_with_timeout(cmd, Duration::from_secs(20));
    assert_eq!(out.code, Some(111), "{}", out.all());
    assert!(out.stderr.contains("record version 9"), "{}", out.all());
    let mut cmd = Command::new(keel_bin());
    cmd.args(["analyze", "frobnicate", "--record"]).arg(&newer);
    assert_eq!(
        run_with_timeout(cmd, Duration::from_secs(20)).code,
        Some(100)
    );
    let rec = save(dir.path(), "r.json", &parallel());
    let mut cmd = Command::new(keel_bin());
    cmd.args(["analyze", "critical-chain", "nope", "--record"])
        .arg(&rec);
    let out = run_with_timeout(cmd, Duration::from_secs(20));
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(out.stderr.contains("no unit \"nope\""), "{}", out.all());
}

/// A record with a bootchart and a shutdown, for the renderers.
fn full() -> Value {
    let mut r = parallel();
    let samples: Vec<Value> = (0..30u64)
        .map(|i| {
            json!({
                "at_us": 1_000_000 + i * 20_000,
                "cpu": [i * 3, i, 100 + i, i / 2],
                "disk_kb": [i * 40, i * 4],
                "mem_kb": [1_000_000, 900_000 - i * 1000],
                "procs": [[1, "keel", 1], [100 + i % 3, "sh", 2]],
            })
        })
        .collect();
    r["bootchart"] = json!({"interval_us": 20_000, "hz": 100, "samples": samples});
    r["shutdown"] = json!({"action": "poweroff", "begin_us": 1_600_000, "end_us": 1_650_000});
    r["units"][4]["stopping_us"] = json!(1_600_000);
    r["units"][4]["stopped_us"] = json!(1_640_000);
    r["stage1"] = json!({"phases": [{"name": "mount /proc", "start_us": 1_000_100, "end_us": 1_000_300}],
                          "root": null, "slot": null});
    r
}

/// Decodes an 8-bit RGB(A) PNG and prints "WIDTH HEIGHT NON_WHITE COLOURS".
const PNG_STATS: &str = r#"
import struct, sys, zlib
d = open(sys.argv[1], 'rb').read()
assert d[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG'
pos, idat = 8, b''
while pos < len(d):
    n, = struct.unpack('>I', d[pos:pos + 4]); kind = d[pos + 4:pos + 8]; body = d[pos + 8:pos + 8 + n]
    pos += 12 + n
    if kind == b'IHDR': w, h, depth, ctype, _, _, inter = struct.unpack('>IIBBBBB', body)
    elif kind == b'IDAT': idat += body
assert depth == 8 and inter == 0 and ctype in (2, 6), (depth, ctype, inter)
bpp = 4 if ctype == 6 else 3
raw, stride, i = zlib.decompress(idat), w * bpp, 0
prev, non_white, colours = bytearray(stride), 0, set()
for y in range(h):
    f = raw[i]; i += 1; line = bytearray(raw[i:i + stride]); i += stride
    for x in range(stride):
        a = line[x - bpp] if x >= bpp else 0; b = prev[x]; c = prev[x - bpp] if x >= bpp else 0
        if f == 1: line[x] = (line[x] + a) & 255
        elif f == 2: line[x] = (line[x] + b) & 255
        elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    for x in range(0, stride, bpp):
        px = bytes(line[x:x + bpp])
        colours.add(px)
        if px[:3] != b'\xff\xff\xff' and (bpp == 3 or px[3] > 0): non_white += 1
    prev = line
print(w, h, non_white, len(colours))
"#;

#[test]
fn the_plot_is_valid_svg_that_renders_to_a_picture() {
    let dir = TempDir::new("analyze");
    let rec = save(dir.path(), "r.json", &full());
    let svg = analyze(&["plot", "--record", rec.to_str().unwrap()]).stdout;
    let svg_path = dir.path().join("boot.svg");
    std::fs::write(&svg_path, &svg).unwrap();
    for name in [
        "join",
        "slow",
        "run init",
        "mount /proc",
        "boot complete",
        "CPU",
        "Busiest processes",
    ] {
        assert!(svg.contains(name), "{name} missing from the SVG");
    }
    // Well-formed XML, with the SVG namespace, parsed by a real parser.
    let mut cmd = Command::new("python3");
    cmd.args([
        "-c",
        "import sys, xml.etree.ElementTree as E; r = E.parse(sys.argv[1]).getroot(); \
         print(r.tag, len(list(r.iter())))",
    ])
    .arg(&svg_path);
    let out = run_with_timeout(cmd, Duration::from_secs(30));
    assert_eq!(out.code, Some(0), "not XML:\n{}", out.all());
    assert!(
        out.stdout.starts_with("{http://www.w3.org/2000/svg}svg "),
        "{}",
        out.stdout
    );
    // A real renderer draws it, and the picture is not blank.
    let png = dir.path().join("boot.png");
    let mut cmd = Command::new("rsvg-convert");
    cmd.args(["-w", "900", "-o"]).arg(&png).arg(&svg_path);
    let out = run_with_timeout(cmd, Duration::from_secs(60));
    assert_eq!(
        out.code,
        Some(0),
        "rsvg-convert (librsvg2-bin, scripts/deps):\n{}",
        out.all()
    );
    let mut cmd = Command::new("python3");
    cmd.args(["-c", PNG_STATS]).arg(&png);
    let out = run_with_timeout(cmd, Duration::from_secs(120));
    assert_eq!(out.code, Some(0), "{}", out.all());
    let n: Vec<u64> = out
        .stdout
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    let (w, h, non_white, colours) = (n[0], n[1], n[2], n[3]);
    assert_eq!(w, 900);
    assert!(
        non_white * 50 > w * h,
        "under 2% of the picture is drawn: {non_white} of {}",
        w * h
    );
    assert!(colours >= 8, "only {colours} colours");
    // plot --json: the rows behind the picture.
    let rows = analyze_json(&["plot", "--record", rec.to_str().unwrap()]);
    let join = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["label"] == "join")
        .unwrap();
    assert_eq!(join["critical"], true);
    assert!(join["bars"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["kind"] == "stopping"));
}

#[test]
fn the_trace_has_what_the_trace_event_format_requires() {
    let dir = TempDir::new("analyze");
    let rec = save(dir.path(), "r.json", &full());
    let out = analyze(&["trace", "--record", rec.to_str().unwrap()]);
    let t: Value = serde_json::from_str(&out.stdout).unwrap();
    let events = t["traceEvents"].as_array().unwrap();
    assert!(events.len() > 20);
    for e in events {
        for key in ["ph", "ts", "pid", "tid", "name"] {
            assert!(!e[key].is_null(), "{key} missing: {e}");
        }
        assert!(e["ts"].is_number() && e["pid"].is_number() && e["tid"].is_number());
        match e["ph"].as_str().unwrap() {
            "X" => assert!(e["dur"].is_u64(), "X without dur: {e}"),
            "i" => assert!(matches!(e["s"].as_str(), Some("g" | "p" | "t")), "{e}"),
            "C" => assert!(e["args"]
                .as_object()
                .unwrap()
                .values()
                .all(Value::is_number)),
            "M" => assert!(e["args"]["name"].is_string() || e["args"]["sort_index"].is_number()),
            other => panic!("unexpected phase {other}"),
        }
    }
    let slow = events
        .iter()
        .find(|e| e["name"] == "slow start")
        .expect("a span for slow");
    assert_eq!(
        (slow["ts"].as_u64(), slow["dur"].as_u64()),
        (Some(1_021_000), Some(379_000))
    );
    assert!(events
        .iter()
        .any(|e| e["name"] == "boot complete" && e["ph"] == "i"));
    assert!(events
        .iter()
        .any(|e| e["ph"] == "C" && e["name"] == "cpu %"));
    assert!(events
        .iter()
        .any(|e| e["ph"] == "M" && e["args"]["name"] == "join"));
    // Every command's --json output is JSON.
    for cmd in ["time", "blame", "critical-chain", "plot", "trace"] {
        analyze_json(&[cmd, "--record", rec.to_str().unwrap()]);
    }
}
