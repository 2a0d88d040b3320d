//! Gathering the boot record in PID 1: the kernel's milestones from
//! /dev/kmsg, stage 1's phases from `/run/keel/stage1.json`, every unit's
//! events from the supervisor's timeline, and the bootchart samples; then
//! writing it to /run/keel/boot.json, /var/log/keel/boots/ and, with
//! `keel.report=console`, the console. Nothing here can stop a boot: a
//! record that cannot be written is a warning.

use super::bootchart::Sampler;
use super::{EventRecord, Milestone, Phase, Record, Shutdown, Stage1, UnitRecord, VERSION};
use keel_kernel::cmdline::Cmdline;
use keel_supervisor::timeline::{Mark, Timeline};
use keel_supervisor::BootReport;
use keel_units::{ServiceType, Unit};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Kernel log lines that mark the kernel's own boot, and their names in the
/// record. The first line containing each needle counts.
const MILESTONES: &[(&str, &str)] = &[
    ("Linux version ", "kernel start"),
    (
        "Trying to unpack rootfs image as initramfs",
        "initramfs unpack start",
    ),
    ("Freeing initrd memory", "initramfs unpacked"),
    ("Freeing unused kernel image", "kernel init done"),
    ("as init process", "run init"),
];

/// How many per-boot files /var/log/keel/boots keeps.
const KEEP_BOOTS: usize = 50;

/// What PID 1 keeps for the record between its start and its end.
pub struct Recorder {
    units: Vec<UnitRecord>,
    /// keel.report=console
    console: bool,
    /// The machine's init (not keel.log=console in a test's namespace):
    /// read /dev/kmsg and keep a copy under /var.
    machine: bool,
    sampler: Option<Sampler>,
    record: Option<Record>,
    run_dir: PathBuf,
    saved: Option<PathBuf>,
}

impl Recorder {
    /// Notes the units' static facts and starts the bootchart sampler when
    /// `keel.bootchart[=INTERVAL]` asks for it.
    pub fn start(cmdline: &Cmdline, units: &BTreeMap<String, Unit>) -> Recorder {
        let units = units
            .values()
            .map(|u| UnitRecord {
                name: u.name.clone(),
                kind: match u.kind {
                    ServiceType::Simple => "simple",
                    ServiceType::Notify => "notify",
                    ServiceType::Oneshot => "oneshot",
                }
                .to_string(),
                boot_critical: u.boot_critical,
                requires: u.requires.clone(),
                wants: u.wants.clone(),
                after: u.after.clone(),
                ..UnitRecord::default()
            })
            .collect();
        let sampler = bootchart_interval(cmdline).and_then(|interval| {
            Sampler::start(PathBuf::from("/proc"), interval)
                .map_err(|e| log::warn!("keel.bootchart: cannot start the sampler: {e}"))
                .ok()
        });
        Recorder {
            units,
            console: cmdline.get("keel.report") == Some("console"),
            machine: cmdline.get("keel.log") != Some("console"),
            sampler,
            record: None,
            run_dir: PathBuf::from("/run/keel"),
            saved: None,
        }
    }

    /// At boot complete: assemble the record, write it, and print it when
    /// asked to.
    pub fn boot_complete(
        &mut self,
        started: Duration,
        report: &BootReport,
        timeline: &Timeline,
        problems: &[String],
    ) {
        let mut r = Record {
            keel: env!("CARGO_PKG_VERSION").to_string(),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
            kernel_release: read_trimmed("/proc/sys/kernel/osrelease"),
            cmdline: read_trimmed("/proc/cmdline"),
            init_us: micros(started),
            complete_us: Some(micros(report.at)),
            failed: report.failed.clone(),
            problems: problems.to_vec(),
            ..Record::default()
        };
        if self.machine {
            r.kernel = read_kmsg(Path::new("/dev/kmsg"));
        }
        r.stage1 = read_stage1(&self.run_dir.join("stage1.json"));
        r.bootchart = self.sampler.take().map(Sampler::finish);
        fill_units(&mut r, &self.units, timeline);
        self.save(&r);
        if self.console {
            let json = r.to_json().to_string();
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(keel_image::profile::frame(&json).as_bytes());
        }
        self.record = Some(r);
    }

    /// The boot was blessed (every boot-critical unit stayed ready and
    /// healthy for the grace period): note when, and write it again.
    pub fn blessed(&mut self, at: Duration) {
        if let Some(mut r) = self.record.take() {
            r.blessed_us = Some(micros(at));
            self.save(&r);
            self.record = Some(r);
        }
    }

    /// After every unit stopped: add the stops and the shutdown to the
    /// record and write it again (the console copy is the boot's only).
    pub fn shutdown(&mut self, timeline: &Timeline, action: &str) {
        let Some(mut r) = self.record.take() else {
            return;
        };
        let end_us = micros(keel_kernel::clock::boottime());
        let after = r.complete_us.unwrap_or(0);
        let begin_us = timeline
            .events
            .iter()
            .filter(|e| micros(e.at) >= after && matches!(e.mark, Mark::Stopping))
            .map(|e| micros(e.at))
            .min()
            .unwrap_or(end_us);
        r.shutdown = Some(Shutdown {
            action: action.to_string(),
            begin_us,
            end_us,
        });
        fill_units(&mut r, &self.units, timeline);
        self.save(&r);
        self.record = Some(r);
    }

    fn save(&mut self, r: &Record) {
        let text = r.to_json().to_string();
        let run = self.run_dir.join("boot.json");
        if let Err(e) = write_atomic(&run, &text) {
            log::warn!("cannot write the boot record {}: {e}", run.display());
        }
        if !self.machine || !Path::new("/var").is_dir() {
            return;
        }
        let path = self.saved.get_or_insert_with(|| {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let id: String = r.boot_id.as_deref().unwrap_or("").chars().take(8).collect();
            Path::new("/var/log/keel/boots").join(format!("{secs:012}-{id}.json"))
        });
        let dir = path.parent().unwrap_or(Path::new("/"));
        match std::fs::create_dir_all(dir).and_then(|()| write_atomic(path, &text)) {
            Ok(()) => prune(dir, KEEP_BOOTS),
            Err(e) => log::debug!("not keeping the boot record under {}: {e}", dir.display()),
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// `keel.bootchart` alone samples every 20 ms; `keel.bootchart=50ms` (or a
/// plain number of milliseconds) sets the interval, at least 5 ms.
pub fn bootchart_interval(cmdline: &Cmdline) -> Option<Duration> {
    if !cmdline.has("keel.bootchart") {
        return None;
    }
    let interval = match cmdline.get("keel.bootchart") {
        None | Some("") | Some("1") | Some("yes") => Duration::from_millis(20),
        Some("0") | Some("no") => return None,
        Some(v) => match v.parse::<u64>() {
            Ok(ms) => Duration::from_millis(ms),
            Err(_) => match keel_units::parse_duration(v) {
                Ok(d) => d,
                Err(e) => {
                    log::warn!("keel.bootchart={v}: {e}; sampling every 20 ms");
                    Duration::from_millis(20)
                }
            },
        },
    };
    Some(interval.max(Duration::from_millis(5)))
}

/// The units' boot from the timeline: first start, exec, ready, failure,
/// restarts, and the stop; plus every event.
pub fn fill_units(r: &mut Record, known: &[UnitRecord], timeline: &Timeline) {
    // Inserted one by one: collect() into a BTreeMap brings a sort along.
    let mut units: BTreeMap<String, UnitRecord> = BTreeMap::new();
    for u in known {
        units.insert(u.name.clone(), u.clone());
    }
    r.events.clear();
    for e in &timeline.events {
        let at = micros(e.at);
        let u = units.entry(e.unit.clone()).or_insert_with(|| UnitRecord {
            name: e.unit.clone(),
            boot_critical: true,
            ..UnitRecord::default()
        });
        let (mark, detail) = match &e.mark {
            Mark::Started => {
                u.started_us.get_or_insert(at);
                ("started", None)
            }
            Mark::Execd { pid } => {
                if u.execd_us.is_none() {
                    u.execd_us = Some(at);
                    u.pid = Some(i64::from(*pid));
                }
                ("execd", Some(pid.to_string()))
            }
            Mark::Ready => {
                u.ready_us.get_or_insert(at);
                ("ready", None)
            }
            Mark::Exited { status } => ("exited", Some(status.clone())),
            Mark::Failed { reason } => {
                if u.failed_us.is_none() {
                    u.failed_us = Some(at);
                    u.failure = Some(reason.clone());
                }
                ("failed", Some(reason.clone()))
            }
            Mark::Restarting { delay } => {
                u.restarts += 1;
                ("restarting", Some(format!("{}us", micros(*delay))))
            }
            Mark::Stopping => {
                u.stopping_us = Some(at);
                ("stopping", None)
            }
            Mark::Stopped => {
                u.stopped_us = Some(at);
                ("stopped", None)
            }
        };
        r.events.push(EventRecord {
            at_us: at,
            unit: e.unit.clone(),
            mark: mark.to_string(),
            detail,
        });
    }
    for (name, dep) in &timeline.waited_for {
        if let Some(u) = units.get_mut(name) {
            u.waited_for.clone_from(dep);
        }
    }
    let mut list: Vec<UnitRecord> = units.into_values().collect();
    // By name already (a BTreeMap); stable, so ties stay by name.
    super::sort_by(&mut list, |a, b| {
        a.started_us.unwrap_or(u64::MAX) < b.started_us.unwrap_or(u64::MAX)
    });
    r.units = list;
}

/// The kernel's milestones, read without blocking from the start of the
/// kernel's log (`prio,seq,usec,flags;message` records).
pub fn read_kmsg(path: &Path) -> Vec<Milestone> {
    let Ok(mut f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut buf = vec![0u8; 8192];
    // A record overwritten while we read (EPIPE) is skipped; the bound
    // keeps a log that grows as fast as we read from holding us.
    for _ in 0..100_000 {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                if let Some(m) = milestone(&text, &found) {
                    found.push(m);
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(_) => break,
        }
    }
    found
}

/// The milestone one kmsg record is, if it is one not seen yet.
pub fn milestone(record: &str, seen: &[Milestone]) -> Option<Milestone> {
    let (header, message) = record.split_once(';')?;
    let usec: u64 = header.split(',').nth(2)?.parse().ok()?;
    let message = message.lines().next()?.trim();
    let (_, name) = MILESTONES
        .iter()
        .find(|(needle, name)| message.contains(needle) && !seen.iter().any(|m| m.name == *name))?;
    Some(Milestone {
        name: (*name).to_string(),
        at_us: usec,
        message: message.to_string(),
    })
}

/// Stage 1's phases, as stage 1 left them before switch_root.
pub fn read_stage1(path: &Path) -> Option<Stage1> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            log::warn!("ignoring {}: {e}", path.display());
            return None;
        }
    };
    if v.get("version").and_then(serde_json::Value::as_u64) != Some(VERSION) {
        log::warn!("ignoring {}: not version {VERSION}", path.display());
        return None;
    }
    let rec = Record::from_json(&serde_json::json!({"version": VERSION, "stage1": v})).ok()?;
    rec.stage1.map(|mut s| {
        s.phases.retain(|p: &Phase| p.end_us >= p.start_us);
        s
    })
}

fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Keeps the newest `keep` files of `dir` (their names sort by time).
fn prune(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    super::sort_by(&mut names, |a, b| a < b);
    let excess = names.len().saturating_sub(keep);
    for old in names.into_iter().take(excess) {
        let _ = std::fs::remove_file(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn kmsg_records_become_milestones_once_each() {
        let mut seen = Vec::new();
        for rec in [
            "5,0,0,-;Linux version 6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org)\n",
            "6,301,412345,-;Trying to unpack rootfs image as initramfs...\n",
            "6,302,412400,-;random: crng init done\n",
            "6,330,802001,-;Freeing initrd memory: 4096K\n",
            "6,331,1960000,-;Run /init as init process\n SUBSYSTEM=x\n",
            "6,332,1960100,-;Run /init as init process\n",
        ] {
            if let Some(m) = milestone(rec, &seen) {
                seen.push(m);
            }
        }
        let names: Vec<(&str, u64)> = seen.iter().map(|m| (m.name.as_str(), m.at_us)).collect();
        assert_eq!(
            names,
            [
                ("kernel start", 0),
                ("initramfs unpack start", 412_345),
                ("initramfs unpacked", 802_001),
                ("run init", 1_960_000)
            ]
        );
        assert_eq!(seen[3].message, "Run /init as init process");
        assert!(milestone("garbage", &[]).is_none());
    }

    #[test]
    fn the_timeline_becomes_per_unit_times_and_events() {
        let mut t = Timeline::default();
        t.push(ms(10), "a", Mark::Started);
        t.push(ms(11), "a", Mark::Execd { pid: 7 });
        t.push(ms(300), "a", Mark::Ready);
        t.push(ms(301), "b", Mark::Started);
        t.push(
            ms(302),
            "b",
            Mark::Failed {
                reason: "exec: ENOENT".into(),
            },
        );
        t.push(ms(400), "a", Mark::Stopping);
        t.push(ms(420), "a", Mark::Stopped);
        t.waited_for.insert("a".into(), None);
        t.waited_for.insert("b".into(), Some("a".into()));
        let known = vec![UnitRecord {
            name: "never".into(),
            ..UnitRecord::default()
        }];
        let mut r = Record::default();
        fill_units(&mut r, &known, &t);
        let names: Vec<&str> = r.units.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "never"], "by start, unstarted last");
        let a = &r.units[0];
        assert_eq!(
            (a.started_us, a.execd_us, a.pid, a.ready_us, a.stopped_us),
            (
                Some(10_000),
                Some(11_000),
                Some(7),
                Some(300_000),
                Some(420_000)
            )
        );
        let b = &r.units[1];
        assert_eq!(b.waited_for.as_deref(), Some("a"));
        assert!(b.failed_first());
        assert_eq!(r.events.len(), 7);
        assert_eq!(r.events[4].detail.as_deref(), Some("exec: ENOENT"));
    }

    #[test]
    fn stage1_file_is_read_when_present_and_sane() {
        let dir = std::env::temp_dir().join(format!("keel-stage1-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join("stage1.json");
        assert!(read_stage1(&p).is_none());
        std::fs::write(
            &p,
            r#"{"version":1,"phases":[{"name":"mount /proc","start_us":5,"end_us":9}],"root":"PARTLABEL=KEEL-A","slot":"a"}"#,
        )
        .expect("write");
        let s = read_stage1(&p).expect("read");
        assert_eq!(s.phases[0].name, "mount /proc");
        assert_eq!((s.end_us(), s.slot.as_deref()), (Some(9), Some("a")));
        std::fs::write(&p, "{").expect("write");
        assert!(read_stage1(&p).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bootchart_parameter() {
        let c = |s: &str| bootchart_interval(&Cmdline::parse(s));
        assert_eq!(c("quiet"), None);
        assert_eq!(c("keel.bootchart"), Some(ms(20)));
        assert_eq!(c("keel.bootchart=50ms"), Some(ms(50)));
        assert_eq!(c("keel.bootchart=100"), Some(ms(100)));
        assert_eq!(c("keel.bootchart=1ms"), Some(ms(5)));
        assert_eq!(c("keel.bootchart=0"), None);
    }
}
