//! Benchmark (not a test): load, validate and order 1,000 and 10,000
//! generated units. Prints a table and one `BENCH_JSON {...}` line.
//!
//! `cargo run --release -p keel-units --example bench_units [RUNS]`
#![allow(clippy::unwrap_used)] // a benchmark: a panic is a failure

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use keel_units::{load, resolve, Graph, UnitSource};

/// A realistic unit: a few dependencies on earlier units, probes, limits;
/// every tenth unit has a drop-in in a second directory.
fn generate(dir: &Path, n: usize) {
    let (lib, etc) = (dir.join("lib"), dir.join("etc"));
    fs::create_dir_all(&lib).unwrap();
    fs::create_dir_all(&etc).unwrap();
    for i in 0..n {
        let mut text = String::new();
        let _ = writeln!(text, "description = \"generated service {i}\"");
        let _ = writeln!(
            text,
            "exec = [\"/usr/bin/svc\", \"--id={i}\", \"--verbose\"]"
        );
        let kind = ["simple", "notify", "oneshot"][i % 3];
        let _ = writeln!(text, "type = \"{kind}\"");
        let deps: Vec<String> = [1, 7, 31]
            .iter()
            .filter(|&&d| i >= d)
            .map(|d| format!("\"svc{:05}\"", i - d))
            .collect();
        let _ = writeln!(text, "requires = [{}]", deps.join(", "));
        if i >= 3 {
            let _ = writeln!(
                text,
                "wants = [\"svc{:05}\"]\nafter = [\"svc{:05}\"]",
                i - 3,
                i / 2
            );
        }
        let _ = writeln!(
            text,
            "restart-delay = \"100ms\"\nrestart-delay-max = \"30s\""
        );
        let _ = writeln!(text, "start-limit = {{ burst = 5, interval = \"10s\" }}");
        let _ = writeln!(
            text,
            "stop-signal = \"SIGTERM\"\nstop-timeout = \"10s\"\nuser = \"svc\""
        );
        let _ = writeln!(text, "environment = {{ ID = \"{i}\", MODE = \"bench\" }}");
        if kind == "simple" {
            let _ = writeln!(
                text,
                "ready = {{ tcp = \"127.0.0.1:{}\" }}",
                10_000 + i % 50_000
            );
        }
        if kind != "oneshot" {
            let _ = writeln!(
                text,
                "health = {{ http = \"http://127.0.0.1:{}/health\", interval = \"10s\", failures = 3 }}",
                10_000 + i % 50_000
            );
        }
        let _ = writeln!(
            text,
            "[limits]\nmemory-max = \"512M\"\ncpu-weight = 100\npids-max = 1024\nnofile = 65536"
        );
        fs::write(lib.join(format!("svc{i:05}.toml")), text).unwrap();
        if i % 10 == 0 {
            let d = etc.join(format!("svc{i:05}.d"));
            fs::create_dir_all(&d).unwrap();
            fs::write(
                d.join("10-tune.toml"),
                "limits.memory-max = \"1G\"\nenvironment.MODE = \"tuned\"\n",
            )
            .unwrap();
        }
    }
}

fn vm_hwm_kib() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct Row {
    units: usize,
    median: Duration,
    min: Duration,
    /// The same work from texts already in memory: no filesystem.
    pure_median: Duration,
    levels: usize,
    hwm_kib: Option<u64>,
}

fn bench(n: usize, runs: usize) -> Row {
    let tmp = tempfile::tempdir().unwrap();
    generate(tmp.path(), n);
    let dirs = [tmp.path().join("lib"), tmp.path().join("etc")];
    let mut times = Vec::with_capacity(runs);
    let mut levels = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let loaded = load(&dirs);
        let graph = Graph::new(&loaded.units).unwrap();
        let order = graph.start_levels();
        let stop = graph.stop_levels();
        times.push(start.elapsed());
        assert_eq!(loaded.units.len(), n, "{:?}", loaded.diagnostics.first());
        assert!(!loaded.has_errors());
        assert_eq!(order.len(), stop.len());
        levels = order.len();
    }
    times.sort();
    let sources: Vec<UnitSource> = load(&dirs)
        .units
        .into_values()
        .map(|u| UnitSource {
            name: u.name.clone(),
            text: fs::read_to_string(&u.source).unwrap(),
            dropins: u
                .dropins
                .iter()
                .map(|d| (d.clone(), fs::read_to_string(d).unwrap()))
                .collect(),
            file: u.source,
            read_errors: Vec::new(),
        })
        .collect();
    let mut pure = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let loaded = resolve(sources.clone());
        let graph = Graph::new(&loaded.units).unwrap();
        let _ = (graph.start_levels(), graph.stop_levels());
        pure.push(start.elapsed());
    }
    pure.sort();
    Row {
        units: n,
        median: times[times.len() / 2],
        min: times[0],
        pure_median: pure[pure.len() / 2],
        levels,
        hwm_kib: vm_hwm_kib(),
    }
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let base = vm_hwm_kib();
    let rows: Vec<Row> = [1_000, 10_000]
        .into_iter()
        .map(|n| bench(n, runs))
        .collect();
    println!("load + validate + order (median of {runs} runs, files in the page cache)");
    println!(
        "{:>7}  {:>11}  {:>9}  {:>15}  {:>7}  {:>14}",
        "units", "median ms", "min ms", "no-I/O median", "levels", "peak RSS KiB"
    );
    for r in &rows {
        println!(
            "{:>7}  {:>11.2}  {:>9.2}  {:>15.2}  {:>7}  {:>14}",
            r.units,
            r.median.as_secs_f64() * 1e3,
            r.min.as_secs_f64() * 1e3,
            r.pure_median.as_secs_f64() * 1e3,
            r.levels,
            r.hwm_kib.map_or("?".to_owned(), |k| k.to_string())
        );
    }
    let results: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{{\"units\":{},\"median_ms\":{:.3},\"min_ms\":{:.3},\"no_io_median_ms\":{:.3},\"runs\":{runs},\"levels\":{},\"vm_hwm_kib\":{}}}",
                r.units,
                r.median.as_secs_f64() * 1e3,
                r.min.as_secs_f64() * 1e3,
                r.pure_median.as_secs_f64() * 1e3,
                r.levels,
                r.hwm_kib.map_or("null".to_owned(), |k| k.to_string())
            )
        })
        .collect();
    let base = base.map_or("null".to_owned(), |k| k.to_string());
    println!(
        "BENCH_JSON {{\"bench\":\"units_load\",\"baseline_vm_hwm_kib\":{base},\"results\":[{}]}}",
        results.join(",")
    );
}
