//! The boot record: the whole boot as one timeline against CLOCK_BOOTTIME,
//! in microseconds, from the kernel's start to the last unit's readiness
//! (and, once the machine goes down, through the shutdown).
//!
//! Schema version 1 (`/run/keel/boot.json`; one file per boot under
//! `/var/log/keel/boots/` when /var is there; on the console between
//! markers with `keel.report=console`). Every time is `*_us` since the
//! kernel started; absent times are `null`:
//!
//! ```text
//! { "version": 1, "keel": "0.1.0", "boot_id": "…", "kernel_release": "…",
//!   "cmdline": "…",
//!   "init_us": N,                        keel's first instruction
//!   "kernel": [ {"name", "at_us", "message"} ],   milestones from /dev/kmsg
//!   "stage1": { "phases": [ {"name", "start_us", "end_us"} ],
//!               "root": "…"|null, "slot": "a"|null } | null,
//!   "units": [ {"name", "type", "boot_critical", "requires", "wants", "after",
//!               "waited_for": UNIT|null, "started_us", "execd_us", "pid",
//!               "ready_us", "failed_us", "failure", "restarts",
//!               "stopping_us", "stopped_us"} ],
//!   "events": [ {"at_us", "unit", "mark", "detail"} ],
//!   "complete_us": N|null,  "blessed_us": N|null,
//!   "failed": [ {"unit", "reason"} ],  "problems": [ "…" ],
//!   "shutdown": { "action", "begin_us", "end_us" } | null,
//!   "bootchart": { "interval_us", "hz", "samples": [ {"at_us",
//!       "cpu": [user, system, idle, iowait],       cumulative ticks
//!       "disk_kb": [read, written],                cumulative
//!       "mem_kb": [total, available],
//!       "procs": [[pid, "comm", ticks since the previous sample]] } ] } | null }
//! ```
//!
//! A unit's `waited_for` is the dependency whose readiness came last before
//! it started: the link that `keel analyze critical-chain` follows.
//! `mark` is one of started, execd, ready, exited, failed, restarting,
//! stopping, stopped. This module is the model and its JSON; `collect`
//! gathers it in PID 1 and `bootchart` samples /proc.

pub mod bootchart;
pub mod collect;

use serde_json::{json, Map, Value};

/// The schema version this keel writes and the newest it reads.
pub const VERSION: u64 = 1;

/// Where the running system's record is.
pub const RUN_PATH: &str = "/run/keel/boot.json";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    pub keel: String,
    pub boot_id: Option<String>,
    pub kernel_release: Option<String>,
    pub cmdline: Option<String>,
    pub init_us: u64,
    pub kernel: Vec<Milestone>,
    pub stage1: Option<Stage1>,
    pub units: Vec<UnitRecord>,
    pub events: Vec<EventRecord>,
    pub complete_us: Option<u64>,
    pub blessed_us: Option<u64>,
    pub failed: Vec<(String, String)>,
    pub problems: Vec<String>,
    pub shutdown: Option<Shutdown>,
    pub bootchart: Option<Bootchart>,
}

/// A kernel log line that marks a step of the kernel's own boot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Milestone {
    pub name: String,
    pub at_us: u64,
    pub message: String,
}

/// A step of stage 1 (a mount, a module load, the device wait, …).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Phase {
    pub name: String,
    pub start_us: u64,
    pub end_us: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stage1 {
    pub phases: Vec<Phase>,
    pub root: Option<String>,
    pub slot: Option<String>,
}

impl Stage1 {
    /// When stage 1 ended: its last phase's end.
    pub fn end_us(&self) -> Option<u64> {
        self.phases.iter().map(|p| p.end_us).max()
    }
}

/// One unit's life during the boot (first start, first exec, first ready,
/// first failure) and its stop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitRecord {
    pub name: String,
    pub kind: String,
    pub boot_critical: bool,
    pub requires: Vec<String>,
    pub wants: Vec<String>,
    pub after: Vec<String>,
    pub waited_for: Option<String>,
    pub started_us: Option<u64>,
    pub execd_us: Option<u64>,
    pub pid: Option<i64>,
    pub ready_us: Option<u64>,
    pub failed_us: Option<u64>,
    pub failure: Option<String>,
    pub restarts: u64,
    pub stopping_us: Option<u64>,
    pub stopped_us: Option<u64>,
}

impl UnitRecord {
    /// When it settled for the boot: ready, or failed, whichever came first.
    pub fn settled_us(&self) -> Option<u64> {
        match (self.ready_us, self.failed_us) {
            (Some(r), Some(f)) => Some(r.min(f)),
            (r, f) => r.or(f),
        }
    }

    /// Failed before it was ever ready.
    pub fn failed_first(&self) -> bool {
        self.failed_us.is_some() && self.settled_us() == self.failed_us
    }

    /// From its start to settling: what `blame` sorts by.
    pub fn activation_us(&self) -> Option<u64> {
        Some(self.settled_us()?.saturating_sub(self.started_us?))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventRecord {
    pub at_us: u64,
    pub unit: String,
    pub mark: String,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shutdown {
    pub action: String,
    pub begin_us: u64,
    pub end_us: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bootchart {
    pub interval_us: u64,
    /// Clock ticks per second of the /proc CPU counters (USER_HZ).
    pub hz: u64,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sample {
    pub at_us: u64,
    /// Cumulative ticks: user (+nice), system (+irq, softirq), idle, iowait.
    pub cpu: [u64; 4],
    /// Cumulative KiB read and written by whole disks.
    pub disk_kb: [u64; 2],
    /// MemTotal and MemAvailable.
    pub mem_kb: [u64; 2],
    /// (pid, comm, CPU ticks since the previous sample), non-zero only.
    pub procs: Vec<(i64, String, u64)>,
}

/// Why a record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot read the boot record {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0} is not JSON: {1}")]
    Json(String, serde_json::Error),
    #[error("{0} is not a keel boot record (no \"version\")")]
    NotARecord(String),
    #[error("{path} has record version {found}; this keel reads up to {VERSION}")]
    TooNew { path: String, found: u64 },
}

impl Record {
    /// Reads and parses the record at `path`.
    pub fn load(path: &str) -> Result<Record, RecordError> {
        let text = std::fs::read_to_string(path).map_err(|e| RecordError::Read(path.into(), e))?;
        let v: Value =
            serde_json::from_str(&text).map_err(|e| RecordError::Json(path.into(), e))?;
        Record::from_json(&v).map_err(|e| match e {
            RecordError::NotARecord(_) => RecordError::NotARecord(path.into()),
            RecordError::TooNew { found, .. } => RecordError::TooNew {
                path: path.into(),
                found,
            },
            other => other,
        })
    }

    pub fn from_json(v: &Value) -> Result<Record, RecordError> {
        let version = v
            .get("version")
            .and_then(Value::as_u64)
            .ok_or_else(|| RecordError::NotARecord(String::new()))?;
        if version > VERSION {
            return Err(RecordError::TooNew {
                path: String::new(),
                found: version,
            });
        }
        Ok(Record {
            keel: st(v, "keel").unwrap_or_default(),
            boot_id: st(v, "boot_id"),
            kernel_release: st(v, "kernel_release"),
            cmdline: st(v, "cmdline"),
            init_us: us(v, "init_us").unwrap_or(0),
            kernel: arr(v, "kernel")
                .map(|m| Milestone {
                    name: st(m, "name").unwrap_or_default(),
                    at_us: us(m, "at_us").unwrap_or(0),
                    message: st(m, "message").unwrap_or_default(),
                })
                .collect(),
            stage1: v.get("stage1").filter(|s| !s.is_null()).map(|s| Stage1 {
                phases: arr(s, "phases")
                    .map(|p| Phase {
                        name: st(p, "name").unwrap_or_default(),
                        start_us: us(p, "start_us").unwrap_or(0),
                        end_us: us(p, "end_us").unwrap_or(0),
                    })
                    .collect(),
                root: st(s, "root"),
                slot: st(s, "slot"),
            }),
            units: arr(v, "units").map(unit_from_json).collect(),
            events: arr(v, "events")
                .map(|e| EventRecord {
                    at_us: us(e, "at_us").unwrap_or(0),
                    unit: st(e, "unit").unwrap_or_default(),
                    mark: st(e, "mark").unwrap_or_default(),
                    detail: st(e, "detail"),
                })
                .collect(),
            complete_us: us(v, "complete_us"),
            blessed_us: us(v, "blessed_us"),
            failed: arr(v, "failed")
                .map(|f| {
                    (
                        st(f, "unit").unwrap_or_default(),
                        st(f, "reason").unwrap_or_default(),
                    )
                })
                .collect(),
            problems: strings(v, "problems"),
            shutdown: v
                .get("shutdown")
                .filter(|s| !s.is_null())
                .map(|s| Shutdown {
                    action: st(s, "action").unwrap_or_default(),
                    begin_us: us(s, "begin_us").unwrap_or(0),
                    end_us: us(s, "end_us").unwrap_or(0),
                }),
            bootchart: v
                .get("bootchart")
                .filter(|b| !b.is_null())
                .map(|b| Bootchart {
                    interval_us: us(b, "interval_us").unwrap_or(0),
                    hz: us(b, "hz").unwrap_or(100),
                    samples: arr(b, "samples").map(sample_from_json).collect(),
                }),
        })
    }

    pub fn to_json(&self) -> Value {
        json!({
            "version": VERSION,
            "keel": self.keel,
            "boot_id": self.boot_id,
            "kernel_release": self.kernel_release,
            "cmdline": self.cmdline,
            "init_us": self.init_us,
            "kernel": self.kernel.iter().map(|m| json!({
                "name": m.name, "at_us": m.at_us, "message": m.message,
            })).collect::<Vec<_>>(),
            "stage1": self.stage1.as_ref().map(|s| json!({
                "phases": s.phases.iter().map(|p| json!({
                    "name": p.name, "start_us": p.start_us, "end_us": p.end_us,
                })).collect::<Vec<_>>(),
                "root": s.root,
                "slot": s.slot,
            })),
            "units": self.units.iter().map(unit_to_json).collect::<Vec<_>>(),
            "events": self.events.iter().map(|e| json!({
                "at_us": e.at_us, "unit": e.unit, "mark": e.mark, "detail": e.detail,
            })).collect::<Vec<_>>(),
            "complete_us": self.complete_us,
            "blessed_us": self.blessed_us,
            "failed": self.failed.iter().map(|(u, r)| json!({"unit": u, "reason": r}))
                .collect::<Vec<_>>(),
            "problems": self.problems,
            "shutdown": self.shutdown.as_ref().map(|s| json!({
                "action": s.action, "begin_us": s.begin_us, "end_us": s.end_us,
            })),
            "bootchart": self.bootchart.as_ref().map(|b| json!({
                "interval_us": b.interval_us,
                "hz": b.hz,
                "samples": b.samples.iter().map(|s| json!({
                    "at_us": s.at_us, "cpu": s.cpu, "disk_kb": s.disk_kb, "mem_kb": s.mem_kb,
                    "procs": s.procs.iter().map(|(p, c, t)| json!([p, c, t]))
                        .collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })),
        })
    }

    pub fn unit(&self, name: &str) -> Option<&UnitRecord> {
        self.units.iter().find(|u| u.name == name)
    }

    /// The last moment the record knows of.
    pub fn end_us(&self) -> u64 {
        let events = self.events.iter().map(|e| e.at_us);
        let samples = self
            .bootchart
            .iter()
            .flat_map(|b| b.samples.iter().map(|s| s.at_us));
        let stage1 = self.stage1.iter().filter_map(Stage1::end_us);
        let kernel = self.kernel.iter().map(|m| m.at_us);
        events
            .chain(samples)
            .chain(stage1)
            .chain(kernel)
            .chain(self.complete_us)
            .chain(self.blessed_us)
            .chain(self.shutdown.as_ref().map(|s| s.end_us))
            .fold(self.init_us, u64::max)
    }
}

fn unit_to_json(u: &UnitRecord) -> Value {
    json!({
        "name": u.name, "type": u.kind, "boot_critical": u.boot_critical,
        "requires": u.requires, "wants": u.wants, "after": u.after,
        "waited_for": u.waited_for,
        "started_us": u.started_us, "execd_us": u.execd_us, "pid": u.pid,
        "ready_us": u.ready_us, "failed_us": u.failed_us, "failure": u.failure,
        "restarts": u.restarts, "stopping_us": u.stopping_us, "stopped_us": u.stopped_us,
    })
}

fn unit_from_json(u: &Value) -> UnitRecord {
    UnitRecord {
        name: st(u, "name").unwrap_or_default(),
        kind: st(u, "type").unwrap_or_default(),
        boot_critical: u
            .get("boot_critical")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        requires: strings(u, "requires"),
        wants: strings(u, "wants"),
        after: strings(u, "after"),
        waited_for: st(u, "waited_for"),
        started_us: us(u, "started_us"),
        execd_us: us(u, "execd_us"),
        pid: u.get("pid").and_then(Value::as_i64),
        ready_us: us(u, "ready_us"),
        failed_us: us(u, "failed_us"),
        failure: st(u, "failure"),
        restarts: us(u, "restarts").unwrap_or(0),
        stopping_us: us(u, "stopping_us"),
        stopped_us: us(u, "stopped_us"),
    }
}

fn sample_from_json(s: &Value) -> Sample {
    let nums = |key: &str| -> Vec<u64> { arr(s, key).map(|n| n.as_u64().unwrap_or(0)).collect() };
    let four = nums("cpu");
    let disk = nums("disk_kb");
    let mem = nums("mem_kb");
    let at = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
    Sample {
        at_us: us(s, "at_us").unwrap_or(0),
        cpu: [at(&four, 0), at(&four, 1), at(&four, 2), at(&four, 3)],
        disk_kb: [at(&disk, 0), at(&disk, 1)],
        mem_kb: [at(&mem, 0), at(&mem, 1)],
        procs: arr(s, "procs")
            .filter_map(|p| {
                Some((
                    p.get(0)?.as_i64()?,
                    p.get(1)?.as_str()?.to_string(),
                    p.get(2)?.as_u64()?,
                ))
            })
            .collect(),
    }
}

fn st(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn us(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

fn arr<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    arr(v, key)
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// A stable sort with far less code than std's (one small merge sort per
/// use instead of driftsort's ~25 KiB of instances): keel's size budget.
/// `less(a, b)`: a sorts before b.
pub fn sort_by<T>(v: &mut Vec<T>, less: impl Fn(&T, &T) -> bool) {
    let n = v.len();
    let mut idx: Vec<usize> = (0..n).collect();
    let mut tmp = idx.clone();
    let mut width = 1;
    while width < n {
        let mut start = 0;
        while start < n {
            let mid = (start + width).min(n);
            let end = (start + 2 * width).min(n);
            let (mut a, mut b) = (start, mid);
            for slot in &mut tmp[start..end] {
                let take_a = a < mid && (b >= end || !less(&v[idx[b]], &v[idx[a]]));
                *slot = if take_a { idx[a] } else { idx[b] };
                if take_a {
                    a += 1;
                } else {
                    b += 1;
                }
            }
            start = end;
        }
        std::mem::swap(&mut idx, &mut tmp);
        width *= 2;
    }
    let mut items: Vec<Option<T>> = v.drain(..).map(Some).collect();
    v.extend(idx.into_iter().filter_map(|i| items[i].take()));
}

/// A JSON object from pairs, for the `--json` outputs.
pub fn object(pairs: Vec<(&str, Value)>) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<Map<_, _>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_through_json() {
        let r = Record {
            keel: "0.1.0".into(),
            init_us: 1_500_000,
            kernel: vec![Milestone {
                name: "run /init".into(),
                at_us: 1_490_000,
                message: "Run /init as init process".into(),
            }],
            stage1: Some(Stage1 {
                phases: vec![Phase {
                    name: "mount /proc".into(),
                    start_us: 1_500_100,
                    end_us: 1_500_200,
                }],
                root: None,
                slot: Some("a".into()),
            }),
            units: vec![UnitRecord {
                name: "a".into(),
                kind: "notify".into(),
                boot_critical: true,
                requires: vec!["b".into()],
                started_us: Some(1_600_000),
                ready_us: Some(1_900_000),
                pid: Some(42),
                ..UnitRecord::default()
            }],
            complete_us: Some(1_900_000),
            failed: vec![("x".into(), "exit status 1".into())],
            shutdown: Some(Shutdown {
                action: "poweroff".into(),
                begin_us: 2_000_000,
                end_us: 2_100_000,
            }),
            bootchart: Some(Bootchart {
                interval_us: 20_000,
                hz: 100,
                samples: vec![Sample {
                    at_us: 1_600_000,
                    cpu: [1, 2, 3, 4],
                    disk_kb: [5, 6],
                    mem_kb: [7, 8],
                    procs: vec![(1, "init".into(), 3)],
                }],
            }),
            ..Record::default()
        };
        let back = Record::from_json(&r.to_json()).expect("parses");
        assert_eq!(back, r);
        assert_eq!(r.end_us(), 2_100_000);
        assert_eq!(r.units[0].activation_us(), Some(300_000));
    }

    #[test]
    fn sort_by_is_a_stable_sort() {
        for n in 0..40u32 {
            let mut v: Vec<(u32, u32)> = (0..n).map(|i| ((i * 7919) % 5, i)).collect();
            let mut want = v.clone();
            want.sort_by_key(|p| p.0);
            sort_by(&mut v, |a, b| a.0 < b.0);
            assert_eq!(v, want);
        }
    }

    #[test]
    fn newer_and_foreign_documents_are_refused() {
        assert!(matches!(
            Record::from_json(&json!({"version": 2})),
            Err(RecordError::TooNew { found: 2, .. })
        ));
        assert!(matches!(
            Record::from_json(&json!({"traceEvents": []})),
            Err(RecordError::NotARecord(_))
        ));
    }
}
