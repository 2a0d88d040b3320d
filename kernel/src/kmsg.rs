//! Keel's logger: every record goes to /dev/kmsg (so `dmesg` has the whole
//! boot in one timeline) and to the console, exactly once. The kernel itself
//! echoes a kmsg line to the console when its level is below the console log
//! level (`quiet` lowers it), so Keel writes to the console directly only
//! the records the kernel will not echo.
//!
//! Records whose target starts with `unit:` are a service's output and are
//! prefixed with the unit's name instead of `keel`.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

/// Where the logger writes.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Write to /dev/kmsg (PID 1 of a machine). Off in tests and in
    /// `keel supervise`, where the console is the only sink.
    pub kmsg: bool,
    pub level: LevelFilter,
}

struct Logger {
    kmsg: Mutex<Option<File>>,
    /// Records at syslog priorities below this are echoed by the kernel.
    echo_below: AtomicU8,
    level: LevelFilter,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Installs the logger. Safe to call more than once (later calls only
/// reopen /dev/kmsg, e.g. once devtmpfs is mounted).
pub fn init(config: &LogConfig) {
    let logger = LOGGER.get_or_init(|| Logger {
        kmsg: Mutex::new(None),
        echo_below: AtomicU8::new(0),
        level: config.level,
    });
    if config.kmsg {
        reopen(Path::new("/dev/kmsg"), Path::new("/proc/sys/kernel"));
    }
    if log::set_logger(logger).is_ok() {
        log::set_max_level(config.level);
    }
}

/// (Re)opens the kmsg device and rereads the kernel's console settings from
/// `sysctl_kernel` (normally /proc/sys/kernel). Turns off the kernel's rate
/// limit on /dev/kmsg writers, as PID 1 owns the machine's logging.
pub fn reopen(kmsg: &Path, sysctl_kernel: &Path) {
    let Some(logger) = LOGGER.get() else { return };
    let file = OpenOptions::new().write(true).open(kmsg).ok();
    let devkmsg_on = crate::fs::write_file(&sysctl_kernel.join("printk_devkmsg"), "on\n").is_ok()
        || std::fs::read_to_string(sysctl_kernel.join("printk_devkmsg"))
            .map(|s| s.trim() == "on")
            .unwrap_or(false);
    let console_level = std::fs::read_to_string(sysctl_kernel.join("printk"))
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|n| n.parse::<u8>().ok())
        })
        .unwrap_or(0);
    let echo = if file.is_some() && devkmsg_on {
        console_level
    } else {
        0
    };
    logger.echo_below.store(echo, Ordering::Relaxed);
    if let Ok(mut k) = logger.kmsg.lock() {
        *k = file;
    }
}

/// Writes one line to the console (stderr) and to kmsg, bypassing levels.
/// Used for the boot line, which must appear exactly once.
pub fn announce(message: &str) {
    log::info!("{message}");
    if LOGGER.get().is_none() {
        let _ = writeln!(io::stderr(), "keel: {message}");
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let prefix = record.target().strip_prefix("unit:").unwrap_or("keel");
        let pri = priority(record.level());
        let mut echoed = false;
        if let Ok(mut guard) = self.kmsg.lock() {
            if let Some(k) = guard.as_mut() {
                // LOG_DAEMON facility; one write is one kmsg record.
                let line = format!("<{}>{prefix}: {}\n", 24 + u32::from(pri), record.args());
                if k.write_all(line.as_bytes()).is_ok() {
                    echoed = pri < self.echo_below.load(Ordering::Relaxed);
                }
            }
        }
        if !echoed {
            let line = format!("{prefix}: {}\n", record.args());
            let _ = io::stderr().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_follow_syslog() {
        assert_eq!(priority(Level::Error), 3);
        assert_eq!(priority(Level::Warn), 4);
        assert_eq!(priority(Level::Info), 6);
        assert_eq!(priority(Level::Debug), 7);
    }
}
