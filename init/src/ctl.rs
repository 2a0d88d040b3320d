//! The control client: `keel status|start|stop|restart|reload|logs|
//! poweroff|reboot|halt` talk to the supervisor over its control socket
//! (`$KEEL_CONTROL`, `--control PATH`, or /run/keel/control.sock).

use crate::exit;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

const DEFAULT_SOCKET: &str = "/run/keel/control.sock";

struct Args {
    socket: PathBuf,
    json: bool,
    follow: bool,
    lines: usize,
    rest: Vec<String>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        socket: std::env::var_os("KEEL_CONTROL")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET)),
        json: false,
        follow: false,
        lines: 0,
        rest: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(s) = it.next() {
        match s.as_str() {
            "--control" => a.socket = PathBuf::from(it.next().ok_or("--control needs a path")?),
            "--json" => a.json = true,
            "-f" | "--follow" => a.follow = true,
            "-n" | "--lines" => {
                a.lines = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or("-n needs a number")?
            }
            other => a.rest.push(other.to_string()),
        }
    }
    Ok(a)
}

/// Runs a control command (`op` is the subcommand).
pub fn main(op: &str, args: &[String]) -> u8 {
    let a = match parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("keel {op}: {e}");
            return exit::USAGE;
        }
    };
    let unit = a.rest.first().cloned();
    let needs_unit = matches!(op, "start" | "stop" | "restart" | "logs");
    if needs_unit && unit.is_none() {
        eprintln!("usage: keel {op} UNIT");
        return exit::USAGE;
    }
    let mut req = json!({ "op": op });
    if let Some(u) = &unit {
        req["unit"] = json!(u);
    }
    if op == "logs" {
        req["follow"] = json!(a.follow);
        req["lines"] = json!(a.lines);
    }
    let stream = match UnixStream::connect(&a.socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("keel {op}: cannot connect to {}: {e}", a.socket.display());
            return exit::SYSTEM;
        }
    };
    let mut line = req.to_string();
    line.push('\n');
    if let Err(e) = (&stream).write_all(line.as_bytes()) {
        eprintln!("keel {op}: cannot send the request: {e}");
        return exit::SYSTEM;
    }
    let mut reader = BufReader::new(&stream);
    let mut first = String::new();
    if reader.read_line(&mut first).unwrap_or(0) == 0 {
        eprintln!("keel {op}: no answer from {}", a.socket.display());
        return exit::SYSTEM;
    }
    let reply: Value = match serde_json::from_str(&first) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("keel {op}: bad answer: {e}");
            return exit::SYSTEM;
        }
    };
    if reply["ok"] != json!(true) {
        let err = reply["error"].as_str().unwrap_or("refused");
        eprintln!("keel {op}: {err}");
        return exit::FAILED;
    }
    if a.json {
        println!("{reply}");
    } else {
        match op {
            "status" => print_status(&reply, unit.is_some()),
            "logs" => {
                for l in reply["lines"].as_array().into_iter().flatten() {
                    println!("{}", l.as_str().unwrap_or(""));
                }
            }
            "reload" if unit.is_none() => {
                for key in ["added", "removed", "changed"] {
                    let names: Vec<&str> = reply[key]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    println!("{key}: {}", names.join(" "));
                }
                for p in reply["problems"].as_array().into_iter().flatten() {
                    eprintln!("{}", p.as_str().unwrap_or(""));
                }
            }
            _ => println!(
                "{}: {}",
                unit.as_deref().unwrap_or(op),
                reply["state"].as_str().unwrap_or("ok")
            ),
        }
    }
    if op == "logs" && a.follow {
        for l in reader.lines() {
            let Ok(l) = l else { break };
            let v: Value = serde_json::from_str(&l).unwrap_or(Value::Null);
            if a.json {
                println!("{v}");
            } else {
                println!("{}", v["line"].as_str().unwrap_or(""));
            }
        }
    }
    exit::OK
}

fn print_status(reply: &Value, detail: bool) {
    let now = reply["now_ms"].as_f64().unwrap_or(0.0);
    println!(
        "{:<20} {:<11} {:>7} {:>10} {:>8}  STATUS",
        "UNIT", "STATE", "PID", "SINCE", "RESTARTS"
    );
    for u in reply["units"].as_array().into_iter().flatten() {
        let since = u["since_ms"]
            .as_f64()
            .map(|s| format!("{:.1}s ago", (now - s) / 1000.0))
            .unwrap_or_else(|| "-".into());
        let pid = u["pid"].as_i64().map_or("-".into(), |p| p.to_string());
        let text = u["status"].as_str().or(u["reason"].as_str()).unwrap_or("");
        println!(
            "{:<20} {:<11} {:>7} {:>10} {:>8}  {}",
            u["name"].as_str().unwrap_or("?"),
            u["state"].as_str().unwrap_or("?"),
            pid,
            since,
            u["restarts"],
            text
        );
        if detail {
            if let Some(e) = u["last_exit"].as_str() {
                println!("  last exit: {e}");
            }
            if let (Some(n), Some(text)) = (u["errno"].as_i64(), u["error"].as_str()) {
                println!("  error (ERRNO=): {n} ({text})");
            }
            for ev in u["events"].as_array().into_iter().flatten() {
                println!(
                    "  {:>10.3} ms  {}{}",
                    ev["at_ms"].as_f64().unwrap_or(0.0),
                    ev["event"].as_str().unwrap_or(""),
                    ev["info"]
                        .as_str()
                        .map(|i| format!(" ({i})"))
                        .unwrap_or_default()
                );
            }
            let tail = u["log_tail"].as_array().cloned().unwrap_or_default();
            if !tail.is_empty() {
                println!("  last output:");
                for l in tail {
                    println!("    {}", l.as_str().unwrap_or(""));
                }
            }
        }
    }
}
