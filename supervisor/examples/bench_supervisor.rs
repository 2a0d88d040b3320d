//! Supervisor micro-benchmarks on the real `keel supervise` (figures, not
//! assertions): crash to new exec, READY=1 to dependent spawned, 1,000
//! independent units and a 1,000-unit chain, PID 1 RSS with 1,000 units,
//! and wake-ups per idle minute; each beside a bare fork+exec baseline
//! measured in the same run. Times come from keel's own timeline
//! (CLOCK_BOOTTIME, via `keel status --json`).
//!
//! `cargo run --release -p keel-supervisor --example bench_supervisor`
//! (uses `$KEEL_BIN`, else build/keel).

use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn keel() -> PathBuf {
    std::env::var_os("KEEL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/keel"))
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

struct Sup {
    child: Child,
    dir: PathBuf,
    err: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Sup {
    fn start(tag: &str, units: &[(String, String)]) -> Sup {
        let dir = std::env::temp_dir().join(format!("keel-bench-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("units")).expect("temp dir");
        for (n, t) in units {
            std::fs::write(dir.join("units").join(format!("{n}.toml")), t).expect("unit");
        }
        let mut child = Command::new(keel())
            .arg("supervise")
            .arg("--units")
            .arg(dir.join("units"))
            .arg("--runtime-dir")
            .arg(dir.join("run"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("keel supervise");
        let err = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("stderr");
        let e2 = err.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut e) = e2.lock() {
                    e.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        Sup { child, dir, err }
    }

    /// Waits for "units ready in N ms" and returns N.
    fn ready_ms(&self) -> f64 {
        let start = Instant::now();
        loop {
            let e = self.err.lock().map(|e| e.clone()).unwrap_or_default();
            if let Some(rest) = e.split("units ready in ").nth(1) {
                return rest
                    .split(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(f64::NAN);
            }
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "never ready:\n{e}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn status(&self, unit: &str) -> Value {
        let out = Command::new(keel())
            .args(["status", unit, "--json", "--control"])
            .arg(self.dir.join("run/control.sock"))
            .output()
            .expect("keel status");
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    fn proc_field(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn events(v: &Value) -> Vec<(f64, String)> {
    v["units"][0]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["at_ms"].as_f64().unwrap_or(0.0),
                e["event"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn bare_fork_exec_us(n: usize) -> f64 {
    let mut v: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            let mut c = Command::new("/bin/true").spawn().expect("true");
            let spawned = t.elapsed();
            let _ = c.wait();
            spawned.as_secs_f64() * 1e6
        })
        .collect();
    median(&mut v)
}

fn main() {
    let mut json = serde_json::Map::new();
    let bare = bare_fork_exec_us(300);
    println!("baseline: bare fork+exec (std Command::spawn of /bin/true): median {bare:.0} us");
    json.insert("bare_fork_exec_us".into(), bare.into());

    // Crash to new exec, restart-delay 0.
    let s = Sup::start(
        "crash",
        &[(
            "crasher".into(),
            "exec = [\"/bin/false\"]\nrestart = \"always\"\nrestart-delay = \"0\"\nstart-limit = { burst = 0, interval = \"1s\" }\nboot-critical = false\n".into(),
        )],
    );
    std::thread::sleep(Duration::from_millis(1500));
    let ev = events(&s.status("crasher"));
    s.stop();
    let mut crash: Vec<f64> = ev
        .windows(2)
        .filter(|w| w[0].1 == "exited")
        .filter_map(|w| {
            ev.iter()
                .find(|e| e.0 >= w[0].0 && e.1 == "execd")
                .map(|e| (e.0 - w[0].0) * 1000.0)
        })
        .collect();
    let crash_med = median(&mut crash);
    println!("crash -> new exec (restart-delay 0): median {crash_med:.0} us over {} restarts (bare fork+exec {bare:.0} us)", crash.len());
    json.insert("crash_to_exec_us".into(), crash_med.into());

    // READY=1 -> dependent spawned.
    let mut units = Vec::new();
    for i in 0..20 {
        units.push((
            format!("a{i}"),
            format!("type = \"notify\"\nexec = [\"/bin/sh\", \"-c\", \"{} notify --ready; exec sleep 1000\"]\n", keel().display()),
        ));
        // a{i} waits for b{i-1}: one readiness at a time, so each figure is
        // one READY=1 and one spawn, not a batch.
        if let (Some(u), true) = (units.last_mut(), i > 0) {
            u.1.push_str(&format!("after = [\"b{}\"]\n", i - 1));
        }
        units.push((
            format!("b{i}"),
            format!("requires = [\"a{i}\"]\nexec = [\"/bin/sleep\", \"1000\"]\n"),
        ));
    }
    let s = Sup::start("ready", &units);
    s.ready_ms();
    let mut to_start = Vec::new();
    let mut to_exec = Vec::new();
    for i in 0..20 {
        let a = events(&s.status(&format!("a{i}")));
        let b = events(&s.status(&format!("b{i}")));
        let ready = a.iter().find(|e| e.1 == "ready").map(|e| e.0);
        let started = b.iter().find(|e| e.1 == "started").map(|e| e.0);
        let execd = b.iter().find(|e| e.1 == "execd").map(|e| e.0);
        if let (Some(r), Some(s0), Some(x)) = (ready, started, execd) {
            to_start.push((s0 - r) * 1000.0);
            to_exec.push((x - r) * 1000.0);
        }
    }
    s.stop();
    let (m1, m2) = (median(&mut to_start), median(&mut to_exec));
    println!("READY=1 -> dependent started: median {m1:.0} us; -> dependent exec'd: median {m2:.0} us (bare fork+exec {bare:.0} us)");
    json.insert("ready_to_dependent_started_us".into(), m1.into());
    json.insert("ready_to_dependent_execd_us".into(), m2.into());

    // 1,000 independent units, then a 1,000-unit chain.
    let indep: Vec<(String, String)> = (0..1000)
        .map(|i| {
            (
                format!("u{i:04}"),
                "exec = [\"/bin/sleep\", \"1000\"]\n".to_string(),
            )
        })
        .collect();
    let t = Instant::now();
    let s = Sup::start("indep", &indep);
    let ms = s.ready_ms();
    let wall = t.elapsed().as_secs_f64() * 1000.0;
    let rss = s.proc_field("VmRSS:");
    let hwm = s.proc_field("VmHWM:");
    // Idle wake-ups: context switches of the supervisor over 10 s.
    let cs = |s: &Sup| {
        s.proc_field("voluntary_ctxt_switches:") + s.proc_field("nonvoluntary_ctxt_switches:")
    };
    std::thread::sleep(Duration::from_millis(500));
    let c0 = cs(&s);
    std::thread::sleep(Duration::from_secs(10));
    let wakeups = (cs(&s) - c0) * 6;
    s.stop();
    let t = Instant::now();
    let mut kids: Vec<Child> = (0..1000)
        .map(|_| {
            Command::new("/bin/sleep")
                .arg("1000")
                .spawn()
                .expect("sleep")
        })
        .collect();
    let bare_1000 = t.elapsed().as_secs_f64() * 1000.0;
    for k in &mut kids {
        let _ = k.kill();
        let _ = k.wait();
    }
    println!("1,000 independent units ready: {ms:.0} ms (wall {wall:.0} ms); bare spawn of 1,000 sleeps: {bare_1000:.0} ms");
    println!("supervisor RSS with 1,000 units: {rss} KiB (peak {hwm} KiB)");
    println!("idle wake-ups of the supervisor: {wakeups} per minute (a bare sleeping process: 0)");
    json.insert("independent_1000_ready_ms".into(), ms.into());
    json.insert("bare_spawn_1000_ms".into(), bare_1000.into());
    json.insert("rss_1000_units_kib".into(), rss.into());
    json.insert("idle_wakeups_per_min".into(), wakeups.into());

    let chain: Vec<(String, String)> = (0..1000)
        .map(|i| {
            let after = if i == 0 {
                String::new()
            } else {
                format!("after = [\"c{:04}\"]\n", i - 1)
            };
            (
                format!("c{i:04}"),
                format!("{after}exec = [\"/bin/sleep\", \"1000\"]\n"),
            )
        })
        .collect();
    let s = Sup::start("chain", &chain);
    let chain_ms = s.ready_ms();
    s.stop();
    println!("1,000-unit chain ready: {chain_ms:.0} ms (bare spawn of 1,000: {bare_1000:.0} ms)");
    json.insert("chain_1000_ready_ms".into(), chain_ms.into());
    println!("BENCH_JSON {}", Value::Object(json));
}
