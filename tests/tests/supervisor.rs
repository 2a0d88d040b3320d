//! The supervisor through the real binary (`keel supervise`) and its
//! control socket, with real clients: crash loops and backoff, stop
//! timeouts, permissions, raw sd_notify datagrams (EXTEND_TIMEOUT_USEC,
//! the watchdog, the fd store), probes and health checks, bounded logs and
//! a fork storm.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use keel_tests::{free_port, keel_bin, run_with_timeout, toml_string, write_unit, TempDir};
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `keel supervise`.
struct Running {
    child: Child,
    out: Arc<Mutex<String>>,
    control: std::path::PathBuf,
    dir: TempDir,
}

impl Running {
    fn start(tag: &str, units: &[(&str, &str)]) -> Running {
        let dir = TempDir::new(tag);
        let udir = dir.path().join("units");
        for (name, text) in units {
            write_unit(&udir, name, text);
        }
        let run = dir.path().join("run");
        let mut child = Command::new(keel_bin())
            .arg("supervise")
            .arg("--units")
            .arg(&udir)
            .arg("--runtime-dir")
            .arg(&run)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        for mut pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let out = out.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    out.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let control = run.join("control.sock");
        let start = Instant::now();
        while !control.exists() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        Running {
            child,
            out,
            control,
            dir,
        }
    }

    fn output(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// Waits until the output contains `needle`.
    fn wait_for(&self, needle: &str, limit: Duration) {
        let start = Instant::now();
        while !self.output().contains(needle) {
            assert!(
                start.elapsed() < limit,
                "no {needle:?} within {limit:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ctl(&self, args: &[&str]) -> keel_tests::Output {
        let mut cmd = Command::new(keel_bin());
        cmd.args(args).arg("--control").arg(&self.control);
        run_with_timeout(cmd, Duration::from_secs(20))
    }

    fn status_json(&self, unit: &str) -> String {
        let out = self.ctl(&["status", unit, "--json"]);
        assert_eq!(out.code, Some(0), "{}", out.all());
        out.stdout
    }

    /// Waits until `keel status UNIT` reports `state`.
    fn wait_state(&self, unit: &str, state: &str, limit: Duration) {
        let start = Instant::now();
        let needle = format!("\"state\":\"{state}\"");
        loop {
            let s = self.status_json(unit);
            if s.contains(&needle) {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "{unit} never {state}: {s}\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit status and the whole output.
    fn stop(mut self) -> (Option<i32>, String) {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> (Option<i32>, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        let code = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st.code();
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(50));
        (code, self.output())
    }
}

#[test]
fn crash_loop_backs_off_then_stops_and_a_manual_start_works() {
    let r = Running::start(
        "crashloop",
        &[(
            "crasher",
            r#"
exec = ["/bin/sh", "-c", "echo crashing now; exit 3"]
restart = "always"
restart-delay = "100ms"
restart-delay-max = "1s"
start-limit = { burst = 4, interval = "30s" }
"#,
        )],
    );
    r.wait_state("crasher", "crash-loop", Duration::from_secs(15));
    let s = r.status_json("crasher");
    // The restarts were announced with doubling delays.
    assert!(s.contains("\"info\":\"100ms\""), "{s}");
    assert!(s.contains("\"info\":\"200ms\""), "{s}");
    assert!(s.contains("\"info\":\"400ms\""), "{s}");
    assert!(
        s.contains("start limit reached (4 starts within 30s)"),
        "{s}"
    );
    assert!(
        s.contains("exit status 3"),
        "the last exit status is shown: {s}"
    );
    assert!(s.contains("crashing now"), "the last output is shown: {s}");
    // The gaps between starts grow (status timestamps).
    let starts: Vec<f64> = s
        .split("{\"at_ms\":")
        .skip(1)
        .filter(|e| e.contains("\"event\":\"started\""))
        .filter_map(|e| e.split(',').next()?.parse().ok())
        .collect();
    assert_eq!(starts.len(), 4, "{s}");
    let gaps: Vec<f64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps[0] >= 100.0 && gaps[1] >= 200.0 && gaps[2] >= 400.0,
        "{gaps:?}"
    );
    assert!(gaps[1] > gaps[0] && gaps[2] > gaps[1], "{gaps:?}");
    // The human view says crash-loop too.
    let human = r.ctl(&["status"]);
    assert!(human.stdout.contains("crash-loop"), "{}", human.all());
    // A manual start always works and resets the limit.
    let start = r.ctl(&["start", "crasher"]);
    assert_eq!(start.code, Some(0), "{}", start.all());
    r.wait_state("crasher", "backoff", Duration::from_secs(5));
    let (code, out) = r.stop();
    assert_eq!(code, Some(0), "nothing was failed when it stopped:\n{out}");
}

#[test]
fn a_service_ignoring_sigterm_is_killed_after_stop_timeout_and_named() {
    let r = Running::start(
        "stubborn",
        &[(
            "stubborn",
            r#"
exec = ["/bin/sh", "-c", "trap '' TERM; echo ignoring-term; while :; do sleep 0.05; done"]
stop-timeout = "500ms"
"#,
        )],
    );
    r.wait_for("ignoring-term", Duration::from_secs(10));
    let (_, out) = r.stop();
    assert!(
        out.contains(
            "unit stubborn failed: did not stop within its stop-timeout of 500ms; sending SIGKILL"
        ),
        "{out}"
    );
    assert!(out.contains("all units stopped"), "{out}");
}

#[test]
fn nobody_may_read_status_but_not_stop() {
    let r = Running::start("perm", &[("svc", "exec = [\"/bin/sleep\", \"100\"]\n")]);
    r.wait_state("svc", "ready", Duration::from_secs(10));
    let as_nobody = |args: &[&str]| {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(keel_bin())
            .args(args)
            .arg("--control")
            .arg(&r.control);
        run_with_timeout(cmd, Duration::from_secs(20))
    };
    let status = as_nobody(&["status"]);
    assert_eq!(status.code, Some(0), "{}", status.all());
    assert!(status.stdout.contains("svc"), "{}", status.all());
    let stop = as_nobody(&["stop", "svc"]);
    assert_eq!(stop.code, Some(1), "{}", stop.all());
    assert!(stop.stderr.contains("permission denied"), "{}", stop.all());
    r.wait_state("svc", "ready", Duration::from_secs(2));
    let root_stop = r.ctl(&["stop", "svc"]);
    assert_eq!(root_stop.code, Some(0), "{}", root_stop.all());
    r.wait_state("svc", "exited", Duration::from_secs(10));
    r.stop();
}

/// A raw sd_notify client in Python, as a daemon would write it.
const PY_NOTIFY: &str = r#"
import os, socket, sys, time
def notify(msg, fds=()):
    addr = os.environ["NOTIFY_SOCKET"]
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.connect(addr)
    if fds:
        socket.send_fds(s, [msg.encode()], list(fds))
    else:
        s.send(msg.encode())
"#;

fn py_unit(body: &str, extra: &str) -> String {
    let script = format!("{PY_NOTIFY}\n{body}");
    format!(
        "type = \"notify\"\nexec = [\"/usr/bin/python3\", \"-c\", {}]\n{extra}",
        toml_string(&script)
    )
}

impl Drop for Running {
    /// A failed test must not leave its supervisor (and its units) running.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop_inner();
        }
    }
}

#[test]
fn extend_timeout_usec_extends_the_ready_timeout() {
    let slow = py_unit(
        "notify('EXTEND_TIMEOUT_USEC=3000000')\ntime.sleep(1.5)\nnotify('READY=1\\nSTATUS=late but fine')\ntime.sleep(100)",
        "ready-timeout = \"1s\"",
    );
    let r = Running::start("extend", &[("slow", &slow)]);
    r.wait_state("slow", "ready", Duration::from_secs(10));
    let s = r.status_json("slow");
    assert!(s.contains("late but fine"), "STATUS= is shown: {s}");
    r.stop();
}

#[test]
fn a_missed_watchdog_ping_kills_with_sigabrt_and_restarts() {
    let dog = py_unit(
        "notify('READY=1')\nfor i in range(3):\n    time.sleep(0.1)\n    notify('WATCHDOG=1')\nprint('stopping pings', flush=True)\ntime.sleep(100)",
        "watchdog = \"500ms\"\nrestart = \"never\"",
    );
    let r = Running::start("watchdog", &[("dog", &dog)]);
    r.wait_for("stopping pings", Duration::from_secs(10));
    r.wait_for(
        "watchdog timeout: no WATCHDOG=1 within 500ms; sending SIGABRT",
        Duration::from_secs(5),
    );
    r.wait_state("dog", "ready", Duration::from_secs(10));
    let s = r.status_json("dog");
    assert!(s.contains("killed by SIGABRT"), "{s}");
    assert!(s.contains("\"restarts\":1"), "{s}");
    r.stop();
}

#[test]
fn stored_fds_come_back_as_listen_fds_on_restart() {
    let body = r#"
if os.environ.get("LISTEN_FDS") == "1":
    assert os.environ["LISTEN_PID"] == str(os.getpid())
    f = os.fdopen(3, "r")
    print("got fd", os.environ["LISTEN_FDNAMES"], f.read().strip(), flush=True)
    notify("READY=1")
    time.sleep(100)
else:
    r, w = os.pipe()
    os.write(w, b"kept-across-restart\n")
    os.close(w)
    notify("FDSTORE=1\nFDNAME=state", [r])
    notify("READY=1")
    time.sleep(0.3)
    sys.exit(7)
"#;
    let unit = py_unit(body, "restart = \"on-failure\"");
    let r = Running::start("fdstore", &[("keeper", &unit)]);
    r.wait_for("got fd state kept-across-restart", Duration::from_secs(15));
    r.stop();
}

#[test]
fn probes_gate_readiness_and_failing_health_checks_restart() {
    let port = free_port();
    let server = format!(
        "import http.server, socketserver, time, os\n\
         time.sleep(0.5)\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   def do_GET(self):\n\
         \x20       ok = not os.path.exists('/tmp/keel-health-fail-{port}')\n\
         \x20       self.send_response(200 if ok else 500); self.end_headers()\n\
         \x20   def log_message(self, *a): pass\n\
         socketserver.TCPServer.allow_reuse_address = True\n\
         print('listening', flush=True)\n\
         socketserver.TCPServer(('127.0.0.1', {port}), H).serve_forever()\n"
    );
    let web = format!(
        "exec = [\"/usr/bin/python3\", \"-c\", {}]\nready = {{ tcp = \"127.0.0.1:{port}\" }}\nhealth = {{ http = \"http://127.0.0.1:{port}/health\", interval = \"200ms\", failures = 2 }}\nrestart = \"never\"\n",
        toml_string(&server)
    );
    let after =
        "type = \"oneshot\"\nrequires = [\"web\"]\nexec = [\"/bin/echo\", \"after-web-ready\"]\n";
    let flag = format!("/tmp/keel-health-fail-{port}");
    let _ = std::fs::remove_file(&flag);
    let r = Running::start("probes", &[("web", &web), ("after", after)]);
    r.wait_for("after-web-ready", Duration::from_secs(15));
    let out = r.output();
    let listening = out.find("listening").unwrap();
    assert!(
        out.find("after-web-ready").unwrap() > listening,
        "ready came from the probe:\n{out}"
    );
    std::fs::write(&flag, "").unwrap();
    r.wait_for(
        "health check failed 2 times in a row",
        Duration::from_secs(10),
    );
    std::fs::remove_file(&flag).unwrap();
    r.wait_state("web", "ready", Duration::from_secs(15));
    let s = r.status_json("web");
    assert!(s.contains("\"restarts\":1"), "{s}");
    r.stop();
}

#[test]
fn a_flood_of_output_leaves_the_supervisor_small() {
    let r = Running::start(
        "flood",
        &[(
            "flood",
            "type = \"oneshot\"\nexec = [\"/bin/sh\", \"-c\", \"head -c 1000000000 /dev/zero | tr '\\\\0' 'x' | fold -w 100; echo; echo flood-done\"]\n",
        )],
    );
    r.wait_state("flood", "exited", Duration::from_secs(120));
    let pid = r.child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hwm_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap();
    // 1 GB went through; the ring keeps 64 KiB.
    assert!(
        hwm_kb < 16 * 1024,
        "peak RSS {hwm_kb} KiB after 1 GB of output"
    );
    let logs = r.ctl(&["logs", "flood", "-n", "1"]);
    assert_eq!(logs.stdout.trim(), "flood-done", "{}", logs.all());
    let out = r.output();
    assert!(
        out.contains("lines not mirrored: rate limit"),
        "the console was spared"
    );
    r.stop();
}

#[test]
fn a_fork_storm_leaves_no_zombie() {
    let r = Running::start(
        "storm",
        &[(
            "storm",
            "type = \"oneshot\"\nexec = [\"/bin/sh\", \"-c\", \"i=0; while [ $i -lt 500 ]; do (sleep 0.01 &) ; i=$((i+1)); done; echo storm-done\"]\n",
        )],
    );
    r.wait_for("storm-done", Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    let me = r.child.id();
    let children = std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")).unwrap();
    let zombies = children
        .split_whitespace()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .map(|s| {
                    s.rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z')
                })
                .unwrap_or(false)
        })
        .count();
    assert_eq!(zombies, 0, "children: {children}");
    let (code, out) = r.stop();
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn logs_follow_and_poweroff_over_the_control_socket() {
    let r = Running::start(
        "follow",
        &[(
            "ticker",
            "exec = [\"/bin/sh\", \"-c\", \"i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.1; done\"]\n",
        )],
    );
    r.wait_for("tick 2", Duration::from_secs(10));
    let mut cmd = Command::new(keel_bin());
    cmd.args(["logs", "ticker", "-f", "--control"])
        .arg(&r.control);
    let out = run_with_timeout(cmd, Duration::from_millis(1500));
    let ticks = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("tick "))
        .count();
    assert!(ticks >= 5, "followed lines keep coming:\n{}", out.all());
    // poweroff over the control socket stops keel supervise in order.
    let p = r.ctl(&["poweroff"]);
    assert_eq!(p.code, Some(0), "{}", p.all());
    r.wait_for("all units stopped", Duration::from_secs(10));
    r.stop();
}

/// Blessing waits for every boot-critical unit to be ready and healthy for
/// the whole grace period: never on a timer alone.
#[test]
fn blessing_needs_readiness_for_the_whole_grace_period() {
    let start = |tag: &str, units: &[(&str, &str)]| {
        let dir = TempDir::new(tag);
        let udir = dir.path().join("units");
        for (n, t) in units {
            write_unit(&udir, n, t);
        }
        let mut cmd = Command::new(keel_bin());
        cmd.arg("supervise")
            .arg("--units")
            .arg(&udir)
            .arg("--runtime-dir")
            .arg(dir.path().join("run"))
            .args(["--bless-after", "1s"]);
        (dir, cmd)
    };
    // Ready and staying up: blessed.
    let (_d1, mut cmd) = start("bless-ok", &[("svc", "exec = [\"/bin/sleep\", \"100\"]\n")]);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t0 = Instant::now();
    let mut out = String::new();
    let mut buf = [0u8; 1024];
    while !out.contains("boot blessed") && t0.elapsed() < Duration::from_secs(10) {
        let n = err.read(&mut buf).unwrap();
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().unwrap();
    assert!(out.contains("boot blessed"), "{out}");
    assert!(
        t0.elapsed() >= Duration::from_secs(1),
        "not before the grace period"
    );
    // A notify unit that never says READY=1: no blessing, ever.
    let (_d2, mut cmd) = start(
        "bless-never",
        &[
            ("svc", "exec = [\"/bin/sleep\", \"100\"]\n"),
            (
                "mute",
                "type = \"notify\"\nexec = [\"/bin/sleep\", \"100\"]\n",
            ),
        ],
    );
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let pid = child.id().to_string();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    std::thread::sleep(Duration::from_secs(3));
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let out = waiter.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("boot blessed"), "{err}");
}

/// `keel reload`: new units start, removed ones stop and go, changed ones
/// restart, unchanged ones are left alone, a broken file changes nothing.
#[test]
fn reload_applies_the_difference() {
    let r = Running::start(
        "reload",
        &[
            ("keep", "exec = [\"/bin/sleep\", \"100\"]\n"),
            ("change", "exec = [\"/bin/sleep\", \"100\"]\n"),
            ("remove", "exec = [\"/bin/sleep\", \"100\"]\n"),
        ],
    );
    for u in ["keep", "change", "remove"] {
        r.wait_state(u, "ready", Duration::from_secs(10));
    }
    let pid_of = |u: &str| -> String {
        let s = r.status_json(u);
        s.split("\"pid\":")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .to_string()
    };
    let (keep_pid, change_pid) = (pid_of("keep"), pid_of("change"));
    let units = r.dir.path().join("units");
    write_unit(&units, "change", "exec = [\"/bin/sleep\", \"200\"]\n");
    std::fs::remove_file(units.join("remove.toml")).unwrap();
    write_unit(&units, "added", "exec = [\"/bin/sleep\", \"100\"]\n");
    let out = r.ctl(&["reload"]);
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert!(out.stdout.contains("added: added"), "{}", out.all());
    assert!(out.stdout.contains("removed: remove"), "{}", out.all());
    assert!(out.stdout.contains("changed: change"), "{}", out.all());
    r.wait_state("added", "ready", Duration::from_secs(10));
    r.wait_state("change", "ready", Duration::from_secs(10));
    assert_eq!(pid_of("keep"), keep_pid, "unchanged units are left alone");
    assert_ne!(pid_of("change"), change_pid, "changed units restart");
    let gone = r.ctl(&["status", "remove"]);
    assert_eq!(
        gone.code,
        Some(1),
        "removed units are forgotten: {}",
        gone.all()
    );
    // A broken file: reported, and the unit keeps its old definition.
    std::fs::write(units.join("keep.toml"), "exec = [\"/bin/sleep\"\n").unwrap();
    let out = r.ctl(&["reload"]);
    assert!(out.stderr.contains("keep.toml:2:1: error"), "{}", out.all());
    assert_eq!(pid_of("keep"), keep_pid, "a broken file disturbs nothing");
    r.stop();
}

/// The execution environment a unit file asks for reaches the process:
/// user and groups, working directory, environment, umask, rlimits,
/// no_new_privs, the capability bounding set, oom_score_adj.
#[test]
fn the_unit_environment_reaches_the_process() {
    let r = Running::start(
        "environment",
        &[(
            "env",
            r#"
type = "oneshot"
user = "nobody"
group = "nogroup"
working-directory = "/tmp"
environment = { GREETING = "hello there" }
umask = "0027"
limits = { nofile = 1234 }
no-new-privileges = true
capabilities = ["CAP_NET_BIND_SERVICE"]
oom-score-adj = 500
exec = ["/bin/sh", "-c", "echo id=$(id -u):$(id -g) pwd=$(pwd) greeting=\"$GREETING\" umask=$(umask) nofile=$(ulimit -n) $(grep -E '^(NoNewPrivs|CapBnd)' /proc/self/status | tr -d '\\t' | tr '\\n' ' ') oom=$(cat /proc/self/oom_score_adj)"]
"#,
        )],
    );
    r.wait_state("env", "exited", Duration::from_secs(10));
    let out = r.output();
    let line = out
        .lines()
        .find(|l| l.contains("id="))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("id=65534:65534"), "{line}");
    assert!(line.contains("pwd=/tmp"), "{line}");
    assert!(line.contains("greeting=hello there"), "{line}");
    assert!(line.contains("umask=0027"), "{line}");
    assert!(line.contains("nofile=1234"), "{line}");
    assert!(line.contains("NoNewPrivs:1"), "{line}");
    assert!(line.contains("CapBnd:0000000000000400"), "{line}");
    assert!(line.contains("oom=500"), "{line}");
    r.stop();
}

/// STOPPING=1 and ERRNO= from Debian's `systemd-notify`: the unit shows as
/// stopping and its error while it drains; its clean exit then follows the
/// restart policy (on-failure: stays down), and one that says STOPPING=1
/// but never exits is killed after its stop-timeout and restarted.
#[test]
fn stopping_and_errno_from_systemd_notify() {
    let leaving = r#"
type = "notify"
restart = "on-failure"
exec = ["/bin/sh", "-c", "systemd-notify --ready; sleep 0.3; systemd-notify STOPPING=1 ERRNO=5 STATUS=draining; sleep 3; echo drained; exit 0"]
"#;
    let stuck = r#"
type = "notify"
restart = "on-failure"
stop-timeout = "1s"
exec = ["/bin/sh", "-c", "systemd-notify --ready; sleep 0.3; systemd-notify STOPPING=1; echo said-stopping; exec sleep 100"]
"#;
    let r = Running::start("stopping", &[("leaving", leaving), ("stuck", stuck)]);
    r.wait_state("leaving", "stopping", Duration::from_secs(10));
    let s = r.status_json("leaving");
    assert!(s.contains("draining"), "{s}");
    assert!(s.contains("\"errno\":5"), "{s}");
    let text = r.ctl(&["status", "leaving"]).stdout;
    assert!(text.contains("error (ERRNO=): 5 ("), "{text}");
    r.wait_state("leaving", "exited", Duration::from_secs(10));
    let s = r.status_json("leaving");
    assert!(
        s.contains("\"restarts\":0"),
        "a clean exit after STOPPING=1: {s}"
    );
    assert!(r.output().contains("drained"), "{}", r.output());

    r.wait_for(
        "said STOPPING=1 but did not stop within its stop-timeout of 1s; sending SIGKILL",
        Duration::from_secs(10),
    );
    r.wait_state("stuck", "ready", Duration::from_secs(10));
    let s = r.status_json("stuck");
    assert!(
        !s.contains("\"restarts\":0"),
        "restarted after the kill: {s}"
    );
    assert!(s.contains("killed by SIGKILL"), "{s}");
    r.stop();
}

/// An exec probe runs as the unit's main process would: its user, its
/// environment and working directory; its output goes to the unit's log.
#[test]
fn exec_probes_run_as_the_unit() {
    let guarded = r#"
user = "nobody"
group = "nogroup"
working-directory = "/tmp"
environment = { GREETING = "hi" }
exec = ["/bin/sleep", "100"]
ready = { exec = ["/bin/sh", "-c", "echo probe id=$(id -u) pwd=$(pwd) greeting=$GREETING path=$PATH; [ $(id -u) = 65534 ] && [ \"$GREETING\" = hi ]"] }
"#;
    let r = Running::start("exec-probe", &[("guarded", guarded)]);
    r.wait_state("guarded", "ready", Duration::from_secs(10));
    let logs = r.ctl(&["logs", "guarded"]);
    let line = logs
        .stdout
        .lines()
        .find(|l| l.contains("probe id="))
        .unwrap_or_else(|| panic!("the probe's output is in the unit's log:\n{}", logs.all()));
    assert!(
        line.contains("probe id=65534 pwd=/tmp greeting=hi"),
        "{line}"
    );
    assert!(line.contains("path=/usr/local/sbin:"), "{line}");
    r.stop();
}
