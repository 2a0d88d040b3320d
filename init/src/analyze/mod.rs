//! `keel analyze`: the boot record read back. `time` (to ready, not to
//! spawn), `blame`, `critical-chain [UNIT]`, `plot` (SVG), `trace` (Chrome
//! trace event JSON, for Perfetto) and `compare A B`; `--json` on each.
//! Reads the running system's record (/run/keel/boot.json) or `--record
//! FILE`; runs on any Linux host, so `keel-image boot --profile` uses it
//! on the record a guest printed.

mod chain;
mod compare;
mod svg;
mod trace;

use crate::exit;
use crate::record::{Record, RUN_PATH};
use serde_json::Value;

const USAGE: &str = "usage: keel analyze COMMAND [--json] [--record FILE]

  time                   kernel, initramfs and userspace until boot complete (ready)
  blame                  each unit's time from start to ready, slowest first
  critical-chain [UNIT]  the chain of waits that decided when UNIT (default:
                         boot complete) happened
  plot                   an SVG chart of phases, units and the bootchart
  trace                  Chrome trace event JSON (open it in Perfetto)
  compare A.json B.json  what got faster or slower between two boots

--record FILE reads a saved record instead of /run/keel/boot.json.";

pub fn main(args: &[String]) -> u8 {
    let mut json = false;
    let mut record: Option<String> = None;
    let mut words: Vec<&str> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => json = true,
            "--record" => match it.next() {
                Some(f) => record = Some(f.clone()),
                None => return usage("--record needs a FILE"),
            },
            s if s.starts_with("--record=") => record = Some(s[9..].to_string()),
            "-h" | "--help" => {
                println!("{USAGE}");
                return exit::OK;
            }
            s if s.starts_with('-') => return usage(&format!("unknown option {s}")),
            s => words.push(s),
        }
    }
    let Some((&command, rest)) = words.split_first() else {
        return usage("missing command");
    };
    if command == "compare" {
        let [a, b] = rest else {
            return usage("compare needs two records: compare A.json B.json");
        };
        return match (load(a), load(b)) {
            (Ok(ra), Ok(rb)) => emit(compare::run(&ra, &rb, json)),
            (Err(e), _) | (_, Err(e)) => e,
        };
    }
    if !matches!(
        command,
        "time" | "blame" | "critical-chain" | "plot" | "trace"
    ) {
        return usage(&format!("unknown command {command:?}"));
    }
    let expected = usize::from(command == "critical-chain");
    if rest.len() > expected {
        return usage(&format!("unexpected argument {:?}", rest[expected]));
    }
    let path = record.as_deref().unwrap_or(RUN_PATH);
    let r = match load(path) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let out = match command {
        "time" => chain::time(&r, json),
        "blame" => chain::blame(&r, json),
        "critical-chain" => match chain::critical_chain(&r, rest.first().copied()) {
            Ok(c) => Ok(if json {
                pretty(&c.to_json())
            } else {
                c.to_text()
            }),
            Err(e) => Err(e),
        },
        "plot" => Ok(if json {
            pretty(&svg::rows_json(&r))
        } else {
            svg::plot(&r)
        }),
        _ => Ok(trace::trace(&r).to_string()),
    };
    emit(out)
}

fn usage(msg: &str) -> u8 {
    eprintln!("keel analyze: {msg}\n{USAGE}");
    exit::USAGE
}

fn load(path: &str) -> Result<Record, u8> {
    Record::load(path).map_err(|e| {
        if path == RUN_PATH && matches!(e, crate::record::RecordError::Read(..)) {
            eprintln!(
                "keel analyze: {e} (has the boot completed? use --record FILE for a saved one)"
            );
        } else {
            eprintln!("keel analyze: {e}");
        }
        exit::SYSTEM
    })
}

fn emit(out: Result<String, String>) -> u8 {
    match out {
        Ok(text) => {
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("keel analyze: {e}");
            exit::FAILED
        }
    }
}

pub(crate) fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// `1.234s`, `305.2ms`, `87us`: how systemd-analyze prints times.
pub(crate) fn fmt_us(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.3}s", us as f64 / 1e6)
    } else if us >= 1000 {
        format!("{:.1}ms", us as f64 / 1e3)
    } else {
        format!("{us}us")
    }
}

/// A signed difference, `+12.0ms` or `-3.1ms`.
pub(crate) fn fmt_delta(d: i64) -> String {
    let sign = if d < 0 { '-' } else { '+' };
    format!("{sign}{}", fmt_us(d.unsigned_abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_like_systemd_analyze() {
        assert_eq!(fmt_us(2_093_456), "2.093s");
        assert_eq!(fmt_us(305_240), "305.2ms");
        assert_eq!(fmt_us(87), "87us");
        assert_eq!(fmt_delta(-3_100), "-3.1ms");
        assert_eq!(fmt_delta(12_000), "+12.0ms");
    }
}
