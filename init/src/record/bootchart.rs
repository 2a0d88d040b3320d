//! The bootchart sampler (`keel.bootchart=INTERVAL`): CPU per process, the
//! whole machine's CPU, disk traffic and memory, read from /proc every
//! INTERVAL from keel's start until boot complete.
//!
//! It reads the five /proc files itself rather than through the procfs
//! crate: procfs (with rustix) added 64 KiB to a static musl build, and
//! keel's budget is 1 MiB for everything.
//!
//! It runs on its own thread, which blocks every signal first (so that the
//! supervisor's signalfd still sees them all) and never forks; the
//! supervisor's loop stays single-threaded in what it does, and its children
//! only make async-signal-safe calls between fork and exec, which is what
//! makes a second thread safe. A timerfd in the supervisor's epoll set would
//! have put /proc walks inside the loop that starts units, and taken the
//! supervisor's code for a profiling feature.

use super::{Bootchart, Sample};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// At most this many samples (e.g. a minute at 20 ms): a boot that never
/// completes does not grow PID 1 without bound.
pub const MAX_SAMPLES: usize = 3000;

/// /proc's CPU counters are in USER_HZ, which is 100 on every Linux ABI
/// keel runs on.
pub const USER_HZ: u64 = 100;

pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Sample>>,
    interval: Duration,
}

impl Sampler {
    pub fn start(proc_root: PathBuf, interval: Duration) -> std::io::Result<Sampler> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        // park_timeout/unpark rather than a channel: the same prompt stop
        // for a fraction of the code.
        let thread = std::thread::Builder::new()
            .name("bootchart".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                let _ = keel_kernel::signal::block_all();
                let mut samples = Vec::new();
                let mut last = HashMap::new();
                while samples.len() < MAX_SAMPLES {
                    samples.push(sample(&proc_root, &mut last));
                    let deadline = std::time::Instant::now() + interval;
                    loop {
                        if stopped.load(Ordering::Acquire) {
                            return samples;
                        }
                        let now = std::time::Instant::now();
                        if now >= deadline {
                            break;
                        }
                        std::thread::park_timeout(deadline - now);
                    }
                }
                samples
            })?;
        Ok(Sampler {
            stop,
            thread,
            interval,
        })
    }

    /// Stops sampling and returns what was sampled.
    pub fn finish(self) -> Bootchart {
        self.stop.store(true, Ordering::Release);
        self.thread.thread().unpark();
        let samples = self.thread.join().unwrap_or_default();
        Bootchart {
            interval_us: u64::try_from(self.interval.as_micros()).unwrap_or(u64::MAX),
            hz: USER_HZ,
            samples,
        }
    }
}

/// One sample of `proc` (normally /proc). `last` holds each process's CPU
/// ticks at the previous sample; processes that used none since are left out.
pub fn sample(proc: &Path, last: &mut HashMap<i64, u64>) -> Sample {
    let at_us = u64::try_from(keel_kernel::clock::boottime().as_micros()).unwrap_or(0);
    let read = |name: &str| std::fs::read_to_string(proc.join(name)).unwrap_or_default();
    let mut procs = Vec::new();
    let mut seen = HashMap::new();
    if let Ok(dir) = std::fs::read_dir(proc) {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i64>().ok())
            else {
                continue;
            };
            let Some((comm, ticks)) = std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|s| proc_stat(&s))
            else {
                continue;
            };
            let delta = ticks.saturating_sub(last.get(&pid).copied().unwrap_or(0));
            if delta > 0 {
                procs.push((pid, comm, delta));
            }
            seen.insert(pid, ticks);
        }
    }
    *last = seen;
    Sample {
        at_us,
        cpu: cpu_ticks(&read("stat")),
        disk_kb: disk_kb(&read("diskstats")),
        mem_kb: mem_kb(&read("meminfo")),
        procs,
    }
}

/// `/proc/PID/stat`: the command name and utime + stime.
pub fn proc_stat(text: &str) -> Option<(String, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let mut fields = text.get(close + 1..)?.split_whitespace();
    // After the name: state is field 0, utime 11, stime 12.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((comm, utime + stime))
}

/// `/proc/stat`'s first line: user+nice, system+irq+softirq, idle, iowait.
pub fn cpu_ticks(text: &str) -> [u64; 4] {
    let n: Vec<u64> = text
        .lines()
        .next()
        .filter(|l| l.starts_with("cpu "))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let f = |i: usize| n.get(i).copied().unwrap_or(0);
    [f(0) + f(1), f(2) + f(5) + f(6), f(3), f(4)]
}

/// `/proc/diskstats`: KiB read and written by whole disks (partitions, loop
/// and ram devices left out, so nothing is counted twice).
pub fn disk_kb(text: &str) -> [u64; 2] {
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let names: Vec<&str> = rows.iter().filter_map(|r| r.get(2).copied()).collect();
    let mut total = [0u64; 2];
    for r in &rows {
        let Some(name) = r.get(2) else { continue };
        let partition = name.ends_with(|c: char| c.is_ascii_digit())
            && names.iter().any(|n| n != name && name.starts_with(n));
        if partition || name.starts_with("loop") || name.starts_with("ram") {
            continue;
        }
        let field = |i: usize| r.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        total[0] += field(5) / 2;
        total[1] += field(9) / 2;
    }
    total
}

/// `/proc/meminfo`: MemTotal and MemAvailable, in KiB.
pub fn mem_kb(text: &str) -> [u64; 2] {
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    [get("MemTotal:"), get("MemAvailable:")]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_proc_files() {
        let stat = "1 (keel init) S 0 1 1 0 -1 4194560 200 0 0 0 7 5 0 0 20 0 1 0 2 3 4\n";
        assert_eq!(proc_stat(stat), Some(("keel init".into(), 12)));
        assert_eq!(
            cpu_ticks("cpu  10 1 20 300 4 2 3 0 0 0\ncpu0 1 2 3 4 5 6 7\n"),
            [11, 25, 300, 4]
        );
        let disks = " 253       0 vda 10 0 800 5 2 0 64 1 0 6 6\n\
                     253       1 vda1 9 0 700 5 2 0 60 1 0 6 6\n\
                       7       0 loop0 9 0 700 5 2 0 60 1 0 6 6\n\
                     259       0 nvme0n1 1 0 200 5 2 0 16 1 0 6 6\n\
                     259       1 nvme0n1p1 1 0 200 5 2 0 16 1 0 6 6\n";
        assert_eq!(disk_kb(disks), [500, 40]);
        assert_eq!(
            mem_kb("MemTotal:     2000 kB\nMemFree: 5 kB\nMemAvailable:   1500 kB\n"),
            [2000, 1500]
        );
    }

    #[test]
    fn samples_a_fake_proc_tree_and_reports_only_processes_that_ran() {
        let root = std::env::temp_dir().join(format!("keel-bootchart-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (pid, ticks) in [(1, 3), (42, 0)] {
            let d = root.join(pid.to_string());
            std::fs::create_dir_all(&d).expect("dir");
            let line = format!("{pid} (p{pid}) S 0 0 0 0 0 0 0 0 0 0 {ticks} 0 0 0\n");
            std::fs::write(d.join("stat"), line).expect("stat");
        }
        std::fs::write(root.join("stat"), "cpu  1 0 1 10 0 0 0\n").expect("stat");
        let mut last = HashMap::new();
        let first = sample(&root, &mut last);
        assert_eq!(first.procs, vec![(1, "p1".to_string(), 3)]);
        assert_eq!(first.cpu, [1, 1, 10, 0]);
        let again = sample(&root, &mut last);
        assert!(
            again.procs.is_empty(),
            "no CPU used since: {:?}",
            again.procs
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn the_thread_samples_until_finished() {
        let s = Sampler::start(PathBuf::from("/proc"), Duration::from_millis(5)).expect("start");
        std::thread::sleep(Duration::from_millis(30));
        let chart = s.finish();
        assert!(chart.samples.len() >= 2, "{}", chart.samples.len());
        assert!(chart.samples.windows(2).all(|w| w[0].at_us <= w[1].at_us));
        assert!(chart.samples[0].mem_kb[0] > 0);
    }
}
