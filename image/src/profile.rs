//! The boot record on the console (`keel.report=console`), and what the host
//! does with it (`keel-image boot --profile DIR --repeat N`).
//!
//! keel prints the record framed so that the host can take it out of a
//! serial console that the kernel also writes to:
//!
//! ```text
//! ----- keel boot record v1: 5123 bytes, fnv1a 0x1c2d3e4f -----
//! KREC {"version":1,"keel":"0.1.0",...
//! KREC ...
//! ----- end of keel boot record -----
//! ```
//!
//! The JSON is cut into lines of at most [`CHUNK`] bytes, each behind
//! `KREC `; a kernel line that lands between them is skipped, and the byte
//! count and FNV-1a hash in the header catch one that lands inside one.
//! The framing is formats-only (keel links it); the rest is behind `host`.

/// Bytes of JSON per console line.
pub const CHUNK: usize = 96;
const BEGIN: &str = "----- keel boot record v1: ";
const END: &str = "----- end of keel boot record -----";
const LINE: &str = "KREC ";

/// FNV-1a (32 bit): enough to notice a console line that was cut into.
pub fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// `json` framed for the console, ending in a newline.
pub fn frame(json: &str) -> String {
    let mut out = format!(
        "{BEGIN}{} bytes, fnv1a {:#010x} -----\n",
        json.len(),
        fnv1a(json.as_bytes())
    );
    let mut rest = json;
    while !rest.is_empty() {
        let mut cut = rest.len().min(CHUNK);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push_str(LINE);
        out.push_str(&rest[..cut]);
        out.push('\n');
        rest = &rest[cut..];
    }
    out.push_str(END);
    out.push('\n');
    out
}

/// Why no record could be taken out of a console.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    #[error("no keel boot record on the console (was keel.report=console on the command line?)")]
    Missing,
    #[error("the boot record on the console is cut short (no end marker)")]
    Unterminated,
    #[error("the boot record on the console is damaged: {0}")]
    Damaged(String),
}

/// Every complete record on `console`, in order (a console may hold one per
/// boot). Each is checked against its header's length and hash.
pub fn extract_all(console: &str) -> Vec<Result<String, ExtractError>> {
    let mut found = Vec::new();
    let mut current: Option<(usize, u32, String)> = None;
    for line in console.lines() {
        let line = line.trim_end_matches(['\r', '\n']);
        if let Some(at) = line.find(BEGIN) {
            if current.is_some() {
                found.push(Err(ExtractError::Unterminated));
            }
            current = Some(
                parse_header(&line[at + BEGIN.len()..])
                    .map_or((usize::MAX, 0, String::new()), |(len, hash)| {
                        (len, hash, String::new())
                    }),
            );
        } else if line.contains(END) {
            if let Some((len, hash, json)) = current.take() {
                found.push(check(len, hash, json));
            }
        } else if let (Some((_, _, json)), Some(at)) = (current.as_mut(), line.find(LINE)) {
            json.push_str(&line[at + LINE.len()..]);
        }
    }
    if current.is_some() {
        found.push(Err(ExtractError::Unterminated));
    }
    found
}

/// The last record on `console`.
pub fn extract(console: &str) -> Result<String, ExtractError> {
    extract_all(console)
        .pop()
        .unwrap_or(Err(ExtractError::Missing))
}

fn parse_header(rest: &str) -> Option<(usize, u32)> {
    let (len, rest) = rest.split_once(" bytes, fnv1a 0x")?;
    let hash = rest.split_whitespace().next()?;
    Some((len.parse().ok()?, u32::from_str_radix(hash, 16).ok()?))
}

fn check(len: usize, hash: u32, json: String) -> Result<String, ExtractError> {
    if len == usize::MAX {
        return Err(ExtractError::Damaged("unreadable header".into()));
    }
    if json.len() != len {
        return Err(ExtractError::Damaged(format!(
            "{} bytes instead of {len}",
            json.len()
        )));
    }
    if fnv1a(json.as_bytes()) != hash {
        return Err(ExtractError::Damaged("hash mismatch".into()));
    }
    Ok(json)
}

#[cfg(feature = "host")]
pub use host::*;

#[cfg(feature = "host")]
mod host {
    use crate::qemu::BootConfig;
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// What `--profile DIR` writes: the record and the renderings of it
    /// by the host-built keel (`keel analyze`), which runs on the host.
    pub const RENDERINGS: &[(&str, &[&str])] = &[
        ("time.txt", &["time"]),
        ("blame.txt", &["blame"]),
        ("critical-chain.txt", &["critical-chain"]),
        ("boot.svg", &["plot"]),
        ("trace.json", &["trace"]),
        ("time.json", &["time", "--json"]),
    ];

    /// A step of `--profile` that failed.
    #[derive(Debug, thiserror::Error)]
    pub enum ProfileError {
        #[error("{0}")]
        Qemu(#[from] crate::qemu::QemuError),
        #[error("boot {0}: {1}")]
        Boot(usize, String),
        #[error("boot {0}: {1}")]
        Extract(usize, super::ExtractError),
        #[error("`keel analyze time --json` printed no JSON: {0}")]
        Json(serde_json::Error),
        #[error("cannot write {0}: {1}")]
        Write(PathBuf, std::io::Error),
        #[error("cannot run {0} analyze: {1}")]
        Run(PathBuf, std::io::Error),
        #[error("{keel} analyze {what} failed: {stderr}")]
        Analyze {
            keel: PathBuf,
            what: String,
            stderr: String,
        },
    }

    impl ProfileError {
        /// The guest's fault rather than the host's.
        pub fn is_boot_failure(&self) -> bool {
            matches!(self, ProfileError::Boot(..) | ProfileError::Extract(..))
        }
    }

    /// `keel-image boot --profile DIR --repeat N`: boots `config` `repeat`
    /// times (its command line must carry `keel.report=console`), takes
    /// each boot's record off the console and, with `dir`, renders it there
    /// (`dir/N/` for each of several boots); with several boots, prints
    /// each phase's median, min and max and writes them to `dir/repeat.txt`.
    /// A degraded boot is still profiled; one without a record is an error.
    pub fn run(
        config: &BootConfig,
        keel: &Path,
        dir: Option<&Path>,
        repeat: usize,
    ) -> Result<(), ProfileError> {
        let repeat = repeat.max(1);
        let scratch = std::env::temp_dir().join(format!("keel-profile-{}", std::process::id()));
        let mut times = Vec::new();
        for i in 1..=repeat {
            let mut config = config.clone();
            config.echo = config.echo && repeat == 1;
            let outcome = crate::qemu::boot(&config)?;
            let verdict = outcome.verdict();
            let record = match crate::profile::extract(&outcome.console) {
                Ok(r) => r,
                Err(e) if verdict.is_success() => return Err(ProfileError::Extract(i, e)),
                Err(_) => return Err(ProfileError::Boot(i, verdict.to_string())),
            };
            let line = outcome
                .boot_line
                .as_ref()
                .map_or(String::new(), |l| l.to_string());
            eprintln!(
                "keel-image: boot {i}/{repeat}: {line} [wall {} ms]{}",
                outcome.wall.as_millis(),
                if verdict.is_success() {
                    String::new()
                } else {
                    format!(" ({verdict})")
                }
            );
            let target = match dir {
                Some(d) if repeat == 1 => d.to_path_buf(),
                Some(d) => d.join(i.to_string()),
                None => scratch.join(i.to_string()),
            };
            render(keel, &record, &target)?;
            if repeat == 1 {
                for file in ["time.txt", "critical-chain.txt", "blame.txt"] {
                    let text = std::fs::read_to_string(target.join(file)).unwrap_or_default();
                    println!("{text}");
                }
                if let Some(d) = dir {
                    eprintln!(
                        "keel-image: profile in {} (boot.json, boot.svg, trace.json, …)",
                        d.display()
                    );
                }
            }
            let time = std::fs::read_to_string(target.join("time.json")).unwrap_or_default();
            times.push(serde_json::from_str(&time).map_err(ProfileError::Json)?);
        }
        let _ = std::fs::remove_dir_all(&scratch);
        if repeat > 1 {
            let table = stats_table(&phase_stats(&times), repeat);
            print!("{table}");
            if let Some(d) = dir {
                let p = d.join("repeat.txt");
                std::fs::write(&p, &table).map_err(|e| ProfileError::Write(p, e))?;
            }
        }
        Ok(())
    }

    /// Writes `record` to `dir/boot.json` and each of [`RENDERINGS`] next
    /// to it, made by `keel analyze ... --record dir/boot.json`.
    pub fn render(keel: &Path, record: &str, dir: &Path) -> Result<(), ProfileError> {
        std::fs::create_dir_all(dir).map_err(|e| ProfileError::Write(dir.to_path_buf(), e))?;
        let path = dir.join("boot.json");
        std::fs::write(&path, record).map_err(|e| ProfileError::Write(path.clone(), e))?;
        for (file, args) in RENDERINGS {
            let out = analyze(keel, args, &path)?;
            let target = dir.join(file);
            std::fs::write(&target, out).map_err(|e| ProfileError::Write(target, e))?;
        }
        Ok(())
    }

    /// Runs `keel analyze ARGS --record RECORD` and returns its stdout.
    pub fn analyze(keel: &Path, args: &[&str], record: &Path) -> Result<String, ProfileError> {
        let out = Command::new(keel)
            .arg("analyze")
            .args(args)
            .arg("--record")
            .arg(record)
            .output()
            .map_err(|e| ProfileError::Run(keel.to_path_buf(), e))?;
        if !out.status.success() {
            return Err(ProfileError::Analyze {
                keel: keel.to_path_buf(),
                what: args.join(" "),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Median, minimum and maximum of each phase over several boots, from
    /// each boot's `keel analyze time --json` (`{"phases": [{"name":
    /// "kernel", "us": N}, ...], "units": [...]}`; units become `unit NAME`),
    /// in the order they first appear. Values are microseconds.
    pub fn phase_stats(times: &[serde_json::Value]) -> Vec<(String, Stats)> {
        let mut order: Vec<String> = Vec::new();
        let mut values: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for t in times {
            let list = |key: &str| {
                t.get(key)
                    .and_then(|p| p.as_array())
                    .cloned()
                    .unwrap_or_default()
            };
            let phases = list("phases").into_iter().map(|p| (String::new(), p));
            let units = list("units").into_iter().map(|u| ("unit ".to_string(), u));
            for (prefix, p) in phases.chain(units) {
                let (Some(name), Some(us)) = (
                    p.get("name").and_then(|n| n.as_str()),
                    p.get("us").and_then(serde_json::Value::as_u64),
                ) else {
                    continue;
                };
                let name = format!("{prefix}{name}");
                let name = name.as_str();
                if !values.contains_key(name) {
                    order.push(name.to_string());
                }
                values.entry(name.to_string()).or_default().push(us);
            }
        }
        order
            .into_iter()
            .filter_map(|name| {
                let v = values.remove(&name)?;
                Some((name, Stats::of(v)))
            })
            .collect()
    }

    /// Summary of one phase over the boots that had it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Stats {
        pub median: u64,
        pub min: u64,
        pub max: u64,
        pub n: usize,
    }

    impl Stats {
        /// Of a non-empty list (the median of an even count is the mean
        /// of the middle two).
        pub fn of(mut v: Vec<u64>) -> Stats {
            v.sort_unstable();
            let n = v.len();
            let median = match n {
                0 => 0,
                _ if n % 2 == 1 => v[n / 2],
                _ => (v[n / 2 - 1] + v[n / 2]) / 2,
            };
            Stats {
                median,
                min: v.first().copied().unwrap_or(0),
                max: v.last().copied().unwrap_or(0),
                n,
            }
        }
    }

    /// The `--repeat` table: one line per phase, in milliseconds.
    pub fn stats_table(stats: &[(String, Stats)], boots: usize) -> String {
        let width = stats.iter().map(|(n, _)| n.len()).max().unwrap_or(5).max(5);
        let mut out = format!(
            "{:width$}  {:>10}  {:>10}  {:>10}   ({boots} boots)\n",
            "phase", "median", "min", "max"
        );
        for (name, s) in stats {
            let ms = |us: u64| format!("{:.1} ms", us as f64 / 1000.0);
            out += &format!(
                "{name:width$}  {:>10}  {:>10}  {:>10}{}\n",
                ms(s.median),
                ms(s.min),
                ms(s.max),
                if s.n == boots {
                    String::new()
                } else {
                    format!("   (in {} boots)", s.n)
                }
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_framed_record_survives_kernel_lines_and_carriage_returns() {
        let json = format!("{{\"version\":1,\"x\":\"{}é\"}}", "y".repeat(300));
        let framed = frame(&json);
        assert!(framed.lines().all(|l| l.len() <= CHUNK + LINE.len() + 1));
        let mut console = String::from("[    1.0] booting\r\n");
        for (i, line) in framed.lines().enumerate() {
            console += line;
            console += "\r\n";
            if i == 2 {
                console += "[    2.1] random: crng init done\r\n";
            }
        }
        assert_eq!(extract(&console), Ok(json.clone()));
        // Two boots on one console: the last one wins.
        let two = format!("{console}{}", frame("{\"version\":1}"));
        assert_eq!(extract(&two), Ok("{\"version\":1}".to_string()));
        assert_eq!(extract_all(&two).len(), 2);
    }

    #[test]
    fn damage_and_absence_are_reported() {
        assert_eq!(extract("no record here"), Err(ExtractError::Missing));
        let framed = frame("{\"version\":1,\"units\":[]}");
        let cut: String = framed.lines().take(2).map(|l| format!("{l}\n")).collect();
        assert_eq!(extract(&cut), Err(ExtractError::Unterminated));
        let garbled = framed.replace("units", "unitz");
        assert!(matches!(extract(&garbled), Err(ExtractError::Damaged(_))));
    }

    #[cfg(feature = "host")]
    #[test]
    fn repeat_stats_are_median_min_max_per_phase() {
        let t = |k: u64, u: u64| serde_json::json!({"phases": [{"name": "kernel", "us": k}, {"name": "userspace", "us": u}]});
        let stats = phase_stats(&[t(30, 5), t(10, 7), t(20, 6)]);
        assert_eq!(stats[0].0, "kernel");
        assert_eq!(
            stats[0].1,
            Stats {
                median: 20,
                min: 10,
                max: 30,
                n: 3
            }
        );
        assert_eq!(stats[1].1.median, 6);
        assert_eq!(Stats::of(vec![4, 1, 3, 2]).median, 2);
        let table = stats_table(&stats, 3);
        assert!(
            table.contains("kernel") && table.contains("0.0 ms"),
            "{table}"
        );
    }
}
