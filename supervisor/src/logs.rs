//! Service output: each service's stdout and stderr go into one pipe that
//! the loop reads. Lines go into a bounded per-unit ring (what `keel logs`
//! and a crash-loop report show; PID 1's memory stays flat whatever a
//! service writes), to the logger (kmsg and console, prefixed with the
//! unit's name, rate-limited), and to `LOG_DIR/UNIT.log` with size-based
//! rotation once that directory is writable.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Bytes of recent output kept per unit.
pub const RING_BYTES: usize = 64 * 1024;
/// A line longer than this is cut into pieces.
pub const MAX_LINE: usize = 4096;
/// Lines mirrored to the logger per unit: a burst, then this many a second.
pub const MIRROR_BURST: u32 = 200;
pub const MIRROR_PER_SEC: u32 = 50;
/// A log file is rotated (to `.1`) when it passes this size.
pub const ROTATE_BYTES: u64 = 1024 * 1024;

/// One unit's output.
#[derive(Debug)]
pub struct UnitLog {
    unit: String,
    ring: VecDeque<String>,
    ring_bytes: usize,
    partial: Vec<u8>,
    tokens: u32,
    refilled: Duration,
    suppressed: u64,
    file: Option<File>,
    file_bytes: u64,
    next_open_try: Duration,
    total_lines: u64,
}

/// Where log files go (None: no files).
#[derive(Debug, Clone, Default)]
pub struct LogFiles {
    pub dir: Option<PathBuf>,
}

impl UnitLog {
    pub fn new(unit: &str) -> UnitLog {
        UnitLog {
            unit: unit.to_string(),
            ring: VecDeque::new(),
            ring_bytes: 0,
            partial: Vec::new(),
            tokens: MIRROR_BURST,
            refilled: Duration::ZERO,
            suppressed: 0,
            file: None,
            file_bytes: 0,
            next_open_try: Duration::ZERO,
            total_lines: 0,
        }
    }

    /// Takes a chunk read from the pipe; returns the complete lines in it
    /// (for followers).
    pub fn feed(&mut self, data: &[u8], now: Duration, files: &LogFiles) -> Vec<String> {
        let mut lines = Vec::new();
        for &b in data {
            if b == b'\n' || self.partial.len() >= MAX_LINE {
                let line = String::from_utf8_lossy(&self.partial).into_owned();
                self.partial.clear();
                if b != b'\n' {
                    self.partial.push(b);
                }
                lines.push(line);
            } else {
                self.partial.push(b);
            }
        }
        for l in &lines {
            self.line(l, now, files);
        }
        lines
    }

    /// The pipe closed: a last line without a newline still counts.
    pub fn flush(&mut self, now: Duration, files: &LogFiles) -> Option<String> {
        if self.partial.is_empty() {
            return None;
        }
        let line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        self.line(&line, now, files);
        Some(line)
    }

    fn line(&mut self, line: &str, now: Duration, files: &LogFiles) {
        self.total_lines += 1;
        self.ring_bytes += line.len();
        self.ring.push_back(line.to_string());
        while self.ring_bytes > RING_BYTES {
            match self.ring.pop_front() {
                Some(old) => self.ring_bytes -= old.len(),
                None => break,
            }
        }
        self.mirror(line, now);
        self.write_file(line, now, files);
    }

    fn mirror(&mut self, line: &str, now: Duration) {
        let elapsed = now.saturating_sub(self.refilled);
        let refill = (elapsed.as_millis() * u128::from(MIRROR_PER_SEC) / 1000) as u64;
        if refill > 0 {
            self.tokens = (u64::from(self.tokens) + refill).min(u64::from(MIRROR_BURST)) as u32;
            self.refilled = now;
        }
        let target = format!("unit:{}", self.unit);
        if self.tokens == 0 {
            self.suppressed += 1;
            return;
        }
        if self.suppressed > 0 {
            log::warn!(target: &target, "({} lines not mirrored: rate limit)", self.suppressed);
            self.suppressed = 0;
        }
        self.tokens -= 1;
        log::info!(target: &target, "{line}");
    }

    fn write_file(&mut self, line: &str, now: Duration, files: &LogFiles) {
        let Some(dir) = &files.dir else { return };
        if self.file.is_none() {
            if now < self.next_open_try {
                return;
            }
            let path = dir.join(format!("{}.log", self.unit));
            let opened = std::fs::create_dir_all(dir)
                .and_then(|_| OpenOptions::new().create(true).append(true).open(&path));
            match opened {
                Ok(f) => {
                    self.file_bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
                    self.file = Some(f);
                }
                Err(_) => {
                    // Not writable yet (/var not mounted): try again later.
                    self.next_open_try = now + Duration::from_secs(5);
                    return;
                }
            }
        }
        if self.file_bytes >= ROTATE_BYTES {
            let path = dir.join(format!("{}.log", self.unit));
            let _ = std::fs::rename(&path, dir.join(format!("{}.log.1", self.unit)));
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .ok();
            self.file_bytes = 0;
        }
        if let Some(f) = self.file.as_mut() {
            if f.write_all(line.as_bytes())
                .and_then(|_| f.write_all(b"\n"))
                .is_ok()
            {
                self.file_bytes += line.len() as u64 + 1;
            } else {
                self.file = None;
            }
        }
    }

    /// The last `n` lines (all kept ones when `n` is 0).
    pub fn tail(&self, n: usize) -> Vec<String> {
        let skip = if n == 0 {
            0
        } else {
            self.ring.len().saturating_sub(n)
        };
        self.ring.iter().skip(skip).cloned().collect()
    }

    /// Bytes held in memory for this unit.
    pub fn memory(&self) -> usize {
        self.ring_bytes + self.partial.capacity()
    }

    pub fn total_lines(&self) -> u64 {
        self.total_lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(1);

    #[test]
    fn splits_lines_across_chunks_and_flushes_the_last() {
        let mut l = UnitLog::new("u");
        let f = LogFiles::default();
        assert_eq!(l.feed(b"hel", T, &f), Vec::<String>::new());
        assert_eq!(l.feed(b"lo\nwor", T, &f), vec!["hello".to_string()]);
        assert_eq!(l.feed(b"ld", T, &f), Vec::<String>::new());
        assert_eq!(l.flush(T, &f), Some("world".to_string()));
        assert_eq!(l.flush(T, &f), None, "nothing is left after a flush");
        assert_eq!(l.tail(0), vec!["hello", "world"]);
        assert_eq!(l.tail(1), vec!["world"]);
    }

    #[test]
    fn the_ring_stays_bounded_whatever_comes_in() {
        let mut l = UnitLog::new("u");
        let f = LogFiles::default();
        let chunk = vec![b'x'; 1000]
            .into_iter()
            .chain(std::iter::once(b'\n'))
            .collect::<Vec<u8>>()
            .repeat(100);
        for i in 0..200 {
            l.feed(&chunk, T + Duration::from_millis(i), &f);
        }
        assert_eq!(l.total_lines(), 20_000);
        assert!(l.memory() <= RING_BYTES + MAX_LINE * 2, "{}", l.memory());
        let long = vec![b'y'; MAX_LINE * 3];
        l.feed(&long, T, &f);
        assert!(l.memory() <= RING_BYTES + MAX_LINE * 2);
    }

    #[test]
    fn files_rotate() {
        let d = std::env::temp_dir().join(format!("keel-logs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let f = LogFiles {
            dir: Some(d.clone()),
        };
        let mut l = UnitLog::new("svc");
        let line = [b'z'; 1023];
        let mut chunk = line.to_vec();
        chunk.push(b'\n');
        for _ in 0..1100 {
            l.feed(&chunk, T, &f);
        }
        let cur = std::fs::metadata(d.join("svc.log")).unwrap().len();
        let old = std::fs::metadata(d.join("svc.log.1")).unwrap().len();
        assert_eq!(old, ROTATE_BYTES);
        assert_eq!(cur, 1100 * 1024 - ROTATE_BYTES);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
