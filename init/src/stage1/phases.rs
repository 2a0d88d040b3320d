//! Stage 1's own record: each step's start and end on CLOCK_BOOTTIME (µs),
//! the root it chose, and what freeing the initramfs returned, written to
//! `/run/keel/stage1.json` before stage 2 starts. The boot record (stage 2)
//! reads it from there:
//!
//! ```json
//! {"version":1,"phases":[{"name":"mount /proc","start_us":1850123,"end_us":1850170}],
//!  "root":"/dev/vda1","slot":null,"memory":{...}}
//! ```
//!
//! With `keel.root=slot`, `slot` is `"a"` or `"b"`, `slot_reason` says why
//! (`"A (priority 1) is successful; B (priority 2) has no tries left and was
//! never blessed"`) and `slot_disk` names the disk (`"/dev/vda"`); all three
//! are null otherwise.

use keel_kernel::clock::boottime;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

/// Where stage 1 leaves its record (on the /run that stage 2 inherits).
pub const PATH: &str = "/run/keel/stage1.json";

/// One timed step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    pub name: String,
    pub start_us: u64,
    pub end_us: u64,
}

/// The steps so far and what stage 1 decided.
#[derive(Debug, Default, Clone)]
pub struct Record {
    pub phases: Vec<Phase>,
    pub root: Option<String>,
    pub slot: Option<String>,
    /// Why that slot (`keel.root=slot` only).
    pub slot_reason: Option<String>,
    /// The disk holding the slots.
    pub slot_disk: Option<String>,
    /// (key, value) pairs for the "memory" object, in kB or bytes as named.
    pub memory: Vec<(&'static str, u64)>,
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Record {
    /// Runs `f` as the phase `name`.
    pub fn time<T>(&mut self, name: impl Into<String>, f: impl FnOnce() -> T) -> T {
        let start = boottime();
        let out = f();
        self.push(name, start, boottime());
        out
    }

    /// Adds a phase measured elsewhere.
    pub fn push(&mut self, name: impl Into<String>, start: Duration, end: Duration) {
        self.phases.push(Phase {
            name: name.into(),
            start_us: us(start),
            end_us: us(end),
        });
    }

    /// The JSON document.
    pub fn to_json(&self) -> Value {
        let phases: Vec<Value> = self
            .phases
            .iter()
            .map(|p| json!({"name": p.name, "start_us": p.start_us, "end_us": p.end_us}))
            .collect();
        let memory: serde_json::Map<String, Value> = self
            .memory
            .iter()
            .map(|(k, v)| ((*k).to_string(), json!(v)))
            .collect();
        json!({
            "version": 1,
            "phases": phases,
            "root": self.root,
            "slot": self.slot,
            "slot_reason": self.slot_reason,
            "slot_disk": self.slot_disk,
            "memory": memory,
        })
    }

    /// Writes the record to `path` (creating its directory).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, format!("{}\n", self.to_json()))
    }
}

/// /proc/meminfo, after folding the per-CPU counters into the totals
/// (vm.stat_refresh): otherwise a change of a few MiB shows up to a second late.
pub fn meminfo() -> String {
    let _ = keel_kernel::fs::write_file(Path::new("/proc/sys/vm/stat_refresh"), "1");
    std::fs::read_to_string("/proc/meminfo").unwrap_or_default()
}

/// Stage 2's view of what switch_root returned: the memory now against
/// stage 1's figures before it, once the old keel's pages are gone too.
pub fn memory_returned(record: &Value, now: &str) -> Option<String> {
    let m = &record["memory"];
    let free_before = m["memfree_before_kb"].as_u64()?;
    let shmem_before = m["shmem_before_kb"].as_u64()?;
    let free_now = meminfo_kb(now, "MemFree")?;
    let shmem_now = meminfo_kb(now, "Shmem")?;
    Some(format!(
        "initramfs memory returned: MemFree {free_before} -> {free_now} kB ({:+} kB), \
         Shmem {shmem_before} -> {shmem_now} kB ({:+} kB)",
        i128::from(free_now) - i128::from(free_before),
        i128::from(shmem_now) - i128::from(shmem_before),
    ))
}

/// A field of /proc/meminfo in kB (`MemFree`, `Shmem`, ...).
pub fn meminfo_kb(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_agreed_shape() {
        let mut r = Record::default();
        r.push(
            "mount /proc",
            Duration::from_micros(10),
            Duration::from_micros(25),
        );
        let x = r.time("load modules", || 7);
        assert_eq!(x, 7);
        r.root = Some("/dev/vda1".into());
        r.memory.push(("memfree_before_kb", 100));
        let v = r.to_json();
        assert_eq!(v["version"], 1);
        assert_eq!(v["phases"][0]["name"], "mount /proc");
        assert_eq!(v["phases"][0]["start_us"], 10);
        assert_eq!(v["phases"][0]["end_us"], 25);
        assert!(v["phases"][1]["end_us"].as_u64() >= v["phases"][1]["start_us"].as_u64());
        assert_eq!(v["root"], "/dev/vda1");
        assert!(v["slot"].is_null());
        assert_eq!(v["memory"]["memfree_before_kb"], 100);
    }

    #[test]
    fn memory_returned_compares_with_stage1() {
        let r = json!({"memory": {"memfree_before_kb": 1000, "shmem_before_kb": 3000}});
        let line = memory_returned(&r, "MemFree: 3500 kB\nShmem: 500 kB\n").unwrap();
        assert!(
            line.contains("MemFree 1000 -> 3500 kB (+2500 kB)"),
            "{line}"
        );
        assert!(line.contains("Shmem 3000 -> 500 kB (-2500 kB)"), "{line}");
        assert_eq!(memory_returned(&json!({}), ""), None);
    }

    #[test]
    fn meminfo_fields() {
        let t = "MemTotal:        500000 kB\nMemFree:          12345 kB\nShmem:  77 kB\n";
        assert_eq!(meminfo_kb(t, "MemFree"), Some(12345));
        assert_eq!(meminfo_kb(t, "Shmem"), Some(77));
        assert_eq!(meminfo_kb(t, "Mem"), None);
    }
}
