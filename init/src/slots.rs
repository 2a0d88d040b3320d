//! Stage 2's side of the A/B slots: blessing, the watchdog, and keeping the
//! logs of a boot that was not blessed.
//!
//! - Blessing: the supervisor calls `Host::blessed` once every boot-critical
//!   unit has stayed ready and healthy for `keel.bless-grace=` (default
//!   10 s); only then is the booted slot marked successful (tries 0) in both
//!   GPT copies. Never on a timer alone.
//! - Watchdog (`keel.watchdog=off|until-blessed|keep`, default
//!   `until-blessed` for a slot boot where /dev/watchdog exists, else off;
//!   `keel.watchdog-timeout=SECS`, default 30): stage 1 opens and arms it,
//!   the exec to stage 2 closes it without the magic character (so it keeps
//!   running), stage 2 opens it again and pets it on every tick. Once
//!   blessed it is disarmed (magic close) or, with `keep`, petted for the
//!   machine's life. A hung PID 1 stops petting, so the machine resets.
//! - Deadline (`keel.bless-deadline=`, default 300 s of uptime): a boot not
//!   blessed by then is given up: with a watchdog keel stops petting it and
//!   the hardware resets the machine; without one keel reboots. The slot's
//!   tries (counted by stage 1) do the rest.
//! - Failed-boot logs: while a boot is not blessed, every tick appends the
//!   new kernel log records and copies keel's record (/run/keel/boot.json,
//!   else stage1.json) to `/var/log/keel/boot-in-progress/` and fsyncs them.
//!   Blessing removes it. The next boot finds it, moves it to
//!   `/var/log/keel/failed-boots/NNNN-slot-X/` (the last 10 are kept) and
//!   says `previous boot of slot X failed: REASON`.
//!
//! State for `keel update status` is in `/run/keel/slot.json`.

use crate::stage1::slot::{Slot, SlotError, Table};
use keel_kernel::clock::boottime;
use keel_kernel::cmdline::Cmdline;
use keel_kernel::watchdog::Watchdog;
use serde_json::{json, Value};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default `keel.bless-grace=`.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// Default `keel.bless-deadline=` (of uptime).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(300);
/// Default `keel.watchdog-timeout=` in seconds.
pub const DEFAULT_WATCHDOG_TIMEOUT: u32 = 30;
/// Failed boots kept under /var/log/keel/failed-boots.
pub const KEEP_FAILED: usize = 10;
/// Where stage 2 says what it knows about the slot.
pub const STATE_FILE: &str = "slot.json";
/// The directory a boot writes into until it is blessed.
pub const IN_PROGRESS: &str = "boot-in-progress";
/// Where the logs of failed boots are kept (below the log directory).
pub const FAILED: &str = "failed-boots";

/// What happens to the watchdog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchdogMode {
    Off,
    /// Petted until the boot is blessed, then disarmed.
    UntilBlessed,
    /// Petted for as long as keel runs.
    Keep,
}

impl WatchdogMode {
    pub fn name(self) -> &'static str {
        match self {
            WatchdogMode::Off => "off",
            WatchdogMode::UntilBlessed => "until-blessed",
            WatchdogMode::Keep => "keep",
        }
    }
}

/// The settings from the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotConfig {
    pub watchdog: WatchdogMode,
    pub watchdog_timeout: u32,
    pub watchdog_device: PathBuf,
    pub grace: Duration,
    pub deadline: Duration,
}

impl SlotConfig {
    /// `slotted`: this boot chose an A/B slot (`keel.root=slot`).
    pub fn from_cmdline(c: &Cmdline, slotted: bool) -> SlotConfig {
        let device = PathBuf::from("/dev/watchdog");
        let watchdog = match c.get("keel.watchdog") {
            Some("off" | "0" | "no") => WatchdogMode::Off,
            Some("keep") => WatchdogMode::Keep,
            Some("until-blessed" | "on" | "1" | "yes") => WatchdogMode::UntilBlessed,
            Some(other) => {
                log::warn!(
                    "keel.watchdog={other}: not off, until-blessed or keep; using until-blessed"
                );
                WatchdogMode::UntilBlessed
            }
            None if slotted => WatchdogMode::UntilBlessed,
            None => WatchdogMode::Off,
        };
        let dur = |key, default| {
            c.get(key)
                .and_then(crate::stage1::parse_duration)
                .unwrap_or(default)
        };
        SlotConfig {
            watchdog,
            watchdog_timeout: c
                .get("keel.watchdog-timeout")
                .and_then(|v| v.trim_end_matches('s').parse().ok())
                .filter(|v| *v > 0)
                .unwrap_or(DEFAULT_WATCHDOG_TIMEOUT),
            watchdog_device: device,
            grace: dur("keel.bless-grace", DEFAULT_GRACE),
            deadline: dur("keel.bless-deadline", DEFAULT_DEADLINE),
        }
    }

    /// How often stage 2 ticks: every second, or a third of a shorter
    /// watchdog timeout.
    pub fn tick(&self) -> Duration {
        let third = Duration::from_millis(u64::from(self.watchdog_timeout) * 1000 / 3);
        third.clamp(Duration::from_millis(200), Duration::from_secs(1))
    }
}

/// Opens and arms the watchdog (stage 1, and stage 2 again after the exec).
/// None when the mode is off or there is no device (said once).
pub fn arm_watchdog(config: &SlotConfig) -> Option<Watchdog> {
    if config.watchdog == WatchdogMode::Off {
        return None;
    }
    if !config.watchdog_device.exists() {
        log::info!(
            "keel.watchdog={}: no {}; booting without a watchdog",
            config.watchdog.name(),
            config.watchdog_device.display()
        );
        return None;
    }
    let mut w = match Watchdog::open(&config.watchdog_device) {
        Ok(w) => w,
        Err(e) => {
            log::error!("{e}; booting without a watchdog");
            return None;
        }
    };
    match w.set_timeout(config.watchdog_timeout) {
        Ok(t) => log::info!(
            "watchdog {} armed: {t} s, {}",
            w.path().display(),
            config.watchdog.name()
        ),
        Err(e) => log::warn!("{e}; keeping the driver's timeout"),
    }
    if let Err(e) = w.keepalive() {
        log::warn!("{e}");
    }
    Some(w)
}

/// A failed boot found at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreviousFailure {
    pub slot: String,
    pub reason: String,
    pub dir: PathBuf,
}

/// Where things are (parameters for tests).
#[derive(Clone, Debug)]
pub struct Paths {
    /// /run/keel.
    pub run: PathBuf,
    /// /var/log/keel.
    pub log: PathBuf,
    /// /dev/kmsg.
    pub kmsg: PathBuf,
}

impl Default for Paths {
    fn default() -> Paths {
        Paths {
            run: PathBuf::from("/run/keel"),
            log: PathBuf::from("/var/log/keel"),
            kmsg: PathBuf::from("/dev/kmsg"),
        }
    }
}

/// Stage 2's slot state: what PID 1's host delegates `blessed` and `tick` to.
#[derive(Debug)]
pub struct Slots {
    pub config: SlotConfig,
    paths: Paths,
    /// The booted slot and its disk, when stage 1 chose one.
    slot: Option<(Slot, PathBuf)>,
    reason: String,
    watchdog: Option<Watchdog>,
    journal: Option<Journal>,
    previous: Option<PreviousFailure>,
    blessed_at: Option<Duration>,
    /// Blessed, but the slot's GPT entry is not written yet (its lock was
    /// held by a `keel update` command).
    unmarked: bool,
    gave_up: Option<String>,
}

impl Slots {
    /// Stage 2's start: reads stage 1's record, keeps the previous boot's
    /// logs if it was not blessed, starts this boot's, and takes the
    /// watchdog over. None when this boot has neither a slot nor a watchdog.
    pub fn start(cmdline: &Cmdline, paths: Paths) -> Option<Slots> {
        let stage1: Value = std::fs::read_to_string(paths.run.join("stage1.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        let slot = stage1["slot"].as_str().and_then(Slot::parse);
        let disk = stage1["slot_disk"].as_str().map(PathBuf::from);
        let slot = slot.zip(disk);
        let config = SlotConfig::from_cmdline(cmdline, slot.is_some());
        if slot.is_none() && config.watchdog == WatchdogMode::Off {
            return None;
        }
        let reason = stage1["slot_reason"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let previous = collect_previous(&paths.log);
        if let Some(p) = &previous {
            log::error!(
                "previous boot of slot {} failed: {} (its logs: {})",
                p.slot.to_uppercase(),
                p.reason,
                p.dir.display()
            );
        }
        let journal = slot.as_ref().and_then(|(s, _)| {
            Journal::open(&paths, s.id())
                .map_err(|e| log::error!("cannot keep this boot's logs until it is blessed: {e}"))
                .ok()
        });
        let mut s = Slots {
            watchdog: arm_watchdog(&config),
            config,
            paths,
            slot,
            reason,
            journal,
            previous,
            blessed_at: None,
            unmarked: false,
            gave_up: None,
        };
        if let Some((slot, _)) = &s.slot {
            log::info!(
                "booted slot {}; blessed once every boot-critical unit stays ready for {} ms, \
                 given up at {} ms of uptime",
                slot.name(),
                s.config.grace.as_millis(),
                s.config.deadline.as_millis()
            );
        }
        s.save_state();
        s.tick();
        Some(s)
    }

    /// The supervisor's grace period and tick for this configuration.
    pub fn grace(&self) -> Duration {
        self.config.grace
    }

    /// Every boot-critical unit stayed ready and healthy for the grace
    /// period: mark the slot successful, settle the watchdog, drop the
    /// in-progress logs.
    pub fn blessed(&mut self, at: Duration) {
        if self.blessed_at.is_some() {
            return;
        }
        if self.gave_up.is_some() {
            log::warn!(
                "blessed at {} ms, after the deadline: the machine is already going down",
                at.as_millis()
            );
            return;
        }
        self.blessed_at = Some(at);
        if self.slot.is_some() {
            self.unmarked = true;
            self.mark(at);
        } else {
            log::info!("boot blessed at {} ms", at.as_millis());
        }
        if self.config.watchdog == WatchdogMode::UntilBlessed {
            if let Some(w) = self.watchdog.take() {
                match w.disarm() {
                    Ok(()) => log::info!("watchdog disarmed (keel.watchdog=until-blessed)"),
                    Err(e) => log::error!("{e}"),
                }
            }
        }
        if let Some(j) = self.journal.take() {
            j.remove();
        }
        self.save_state();
    }

    /// Writes the blessing to the slot's GPT entry. PID 1 never waits for
    /// the table's lock: while a `keel update` command holds it, the next
    /// tick tries again.
    fn mark(&mut self, at: Duration) {
        let Some((slot, disk)) = &self.slot else {
            self.unmarked = false;
            return;
        };
        let slot = *slot;
        match mark_successful(disk, slot, false) {
            Ok(true) => log::info!(
                "boot blessed at {} ms: slot {} marked successful",
                at.as_millis(),
                slot.name()
            ),
            Ok(false) => log::info!(
                "boot blessed at {} ms: slot {} was already successful",
                at.as_millis(),
                slot.name()
            ),
            Err(SlotError::Busy { disk }) => {
                log::info!(
                    "boot blessed at {} ms: {} is locked by a `keel update` command; \
                     marking slot {} successful once it is released",
                    at.as_millis(),
                    disk.display(),
                    slot.name()
                );
                return;
            }
            Err(e) => log::error!(
                "boot blessed at {} ms, but slot {} cannot be marked successful: {e}",
                at.as_millis(),
                slot.name()
            ),
        }
        self.unmarked = false;
    }

    /// The periodic tick: pet the watchdog, keep the logs, and give the
    /// boot up at the deadline. False once there is nothing left to do.
    pub fn tick(&mut self) -> bool {
        let now = boottime();
        if self.gave_up.is_none() {
            if let Some(w) = &mut self.watchdog {
                if let Err(e) = w.keepalive() {
                    log::error!("{e}");
                }
            }
        }
        if self.blessed_at.is_none() && self.gave_up.is_none() && now >= self.config.deadline {
            self.give_up(now);
        }
        if let Some(j) = &mut self.journal {
            j.flush(&self.paths, now);
        }
        if let (true, Some(at)) = (self.unmarked, self.blessed_at) {
            self.mark(at);
            if !self.unmarked {
                self.save_state();
            }
        }
        self.blessed_at.is_none() || self.watchdog.is_some() || self.unmarked
    }

    fn give_up(&mut self, now: Duration) {
        let slot = self.slot.as_ref().map_or("this boot".into(), |(s, _)| {
            format!("the boot of slot {}", s.name())
        });
        let booted = std::fs::read_to_string(self.paths.run.join("boot.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok());
        let complete = booted.as_ref().and_then(|b| b["complete_us"].as_u64());
        let why = match complete {
            Some(us) => format!(
                "boot completed at {} ms but the boot-critical units did not stay ready \
                 and healthy for {} ms",
                us / 1000,
                self.config.grace.as_millis()
            ),
            None => "boot never completed: a boot-critical unit never became ready".into(),
        };
        let reason = format!(
            "not blessed within {} ms (keel.bless-deadline): {why}",
            self.config.deadline.as_millis()
        );
        if let Some(j) = &mut self.journal {
            j.set_reason(&reason);
        }
        if self.watchdog.is_some() {
            log::error!(
                "{slot} is given up: {reason}; no longer petting the watchdog, the machine \
                 resets within {} s",
                self.config.watchdog_timeout
            );
        } else {
            log::error!("{slot} is given up: {reason}; rebooting");
            // The supervisor's own signal path does the orderly reboot.
            if let Err(e) = keel_kernel::process::kill(keel_kernel::getpid(), libc::SIGTERM) {
                log::error!("cannot ask for a reboot: {e}");
            }
        }
        self.gave_up = Some(reason);
        self.save_state();
        let _ = now;
    }

    /// Stage 3 of a boot that was not blessed: says so in its logs.
    pub fn shutdown(&mut self, action: &str) {
        if self.blessed_at.is_some() || self.gave_up.is_some() {
            return;
        }
        if let Some(j) = &mut self.journal {
            j.set_reason(&format!(
                "{action} at {} ms, before the boot was blessed",
                boottime().as_millis()
            ));
            j.flush(&self.paths, boottime());
        }
    }

    fn save_state(&self) {
        let v = json!({
            "slot": self.slot.as_ref().map(|(s, _)| s.id()),
            "disk": self.slot.as_ref().map(|(_, d)| d.display().to_string()),
            "reason": self.reason,
            "blessed_us": self.blessed_at.map(|d| d.as_micros() as u64),
            "slot_marked": self.blessed_at.is_some() && !self.unmarked,
            "given_up": self.gave_up,
            "watchdog": self.config.watchdog.name(),
            "watchdog_armed": self.watchdog.is_some(),
            "bless_grace_ms": self.config.grace.as_millis() as u64,
            "bless_deadline_ms": self.config.deadline.as_millis() as u64,
            "previous_failure": self.previous.as_ref().map(|p| json!({
                "slot": p.slot, "reason": p.reason, "dir": p.dir.display().to_string(),
            })),
        });
        let path = self.paths.run.join(STATE_FILE);
        if let Err(e) = std::fs::write(&path, format!("{v}\n")) {
            log::error!("cannot write {}: {e}", path.display());
        }
    }
}

/// Marks `slot` successful (tries 0) on `disk`; false if it already was.
/// Without `wait`, a table locked by another process is
/// [`SlotError::Busy`](crate::stage1::slot::SlotError::Busy) at once.
pub fn mark_successful(
    disk: &Path,
    slot: Slot,
    wait: bool,
) -> Result<bool, crate::stage1::slot::SlotError> {
    let mut t = if wait {
        Table::open(disk)?
    } else {
        Table::try_open(disk)?
    };
    let a = t.attrs(slot);
    if a.successful && a.tries == 0 {
        return Ok(false);
    }
    t.set(
        slot,
        keel_image::gpt::SlotAttrs {
            successful: true,
            tries: 0,
            ..a
        },
    );
    t.commit()?;
    Ok(true)
}

/// The logs of a boot that is not blessed yet.
#[derive(Debug)]
struct Journal {
    dir: PathBuf,
    kmsg: Option<File>,
    out: File,
}

impl Journal {
    fn open(paths: &Paths, slot: &str) -> std::io::Result<Journal> {
        let dir = paths.log.join(IN_PROGRESS);
        std::fs::create_dir_all(&dir)?;
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .unwrap_or_default()
            .trim()
            .to_string();
        let meta =
            json!({"slot": slot, "boot_id": boot_id, "started_ms": boottime().as_millis() as u64});
        // Synced, with the directory: a reset seconds later must find them.
        write_synced(&dir.join("meta.json"), format!("{meta}\n").as_bytes())?;
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("kmsg.log"))?;
        let kmsg = {
            use std::os::unix::fs::OpenOptionsExt;
            OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&paths.kmsg)
                .map_err(|e| {
                    log::warn!(
                        "{}: {e}; no kernel log in the failed-boot logs",
                        paths.kmsg.display()
                    )
                })
                .ok()
        };
        out.sync_all()?;
        File::open(&dir)?.sync_all()?;
        if let Some(parent) = dir.parent() {
            File::open(parent)?.sync_all()?;
        }
        Ok(Journal { dir, kmsg, out })
    }

    /// Appends the new kernel records, copies keel's record and the time,
    /// and fsyncs: what a reset a moment later still leaves on disk.
    fn flush(&mut self, paths: &Paths, now: Duration) {
        if let Some(k) = &mut self.kmsg {
            let mut text = String::new();
            let mut buf = vec![0u8; 8192];
            loop {
                match k.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => text.push_str(&format_kmsg(&String::from_utf8_lossy(&buf[..n]))),
                    // Records overwritten before we read them: go on.
                    Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                    Err(_) => break,
                }
            }
            if !text.is_empty() {
                let _ = self.out.write_all(text.as_bytes());
            }
        }
        let _ = self.out.sync_data();
        let record = ["boot.json", "stage1.json"]
            .iter()
            .map(|n| paths.run.join(n))
            .find(|p| p.is_file());
        if let Some(r) = record {
            if let Ok(bytes) = std::fs::read(&r) {
                let _ = write_synced(&self.dir.join("record.json"), &bytes);
            }
        }
        let _ = write_synced(
            &self.dir.join("alive"),
            format!("{}\n", now.as_millis()).as_bytes(),
        );
    }

    fn set_reason(&mut self, reason: &str) {
        let _ = write_synced(&self.dir.join("reason"), format!("{reason}\n").as_bytes());
    }

    fn remove(self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            log::warn!("cannot remove {}: {e}", self.dir.display());
        }
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_data()
}

/// `6,339,5140900,-;text\n KEY=v\n` records as `[    5.140900] text` lines.
pub fn format_kmsg(raw: &str) -> String {
    let mut out = String::new();
    for line in raw.lines() {
        if line.starts_with(' ') {
            continue; // dictionary continuation
        }
        let Some((head, text)) = line.split_once(';') else {
            continue;
        };
        let us: u64 = head
            .split(',')
            .nth(2)
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        out.push_str(&format!(
            "[{:5}.{:06}] {text}\n",
            us / 1_000_000,
            us % 1_000_000
        ));
    }
    out
}

/// Moves the previous boot's in-progress logs, if any, to failed-boots/
/// and says why that boot failed.
pub fn collect_previous(log_dir: &Path) -> Option<PreviousFailure> {
    let src = log_dir.join(IN_PROGRESS);
    if !src.is_dir() {
        return None;
    }
    let read = |n: &str| std::fs::read_to_string(src.join(n)).ok();
    let meta: Value = read("meta.json")
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let slot = meta["slot"].as_str().unwrap_or("?").to_string();
    let reason = match (read("reason"), read("alive")) {
        (Some(r), _) => r.trim().to_string(),
        (None, Some(ms)) => format!(
            "the machine reset before the boot was blessed (watchdog, crash or power \
             loss); last sign of life at {} ms of uptime",
            ms.trim()
        ),
        (None, None) => "the machine reset before the boot was blessed".into(),
    };
    let failed = log_dir.join(FAILED);
    if let Err(e) = std::fs::create_dir_all(&failed) {
        log::error!("cannot create {}: {e}", failed.display());
        return None;
    }
    let mut names: Vec<String> = std::fs::read_dir(&failed)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let next = names
        .last()
        .and_then(|n| n.split('-').next()?.parse::<u32>().ok())
        .map_or(1, |n| n + 1);
    let dir = failed.join(format!("{next:04}-slot-{slot}"));
    let _ = std::fs::write(src.join("reason"), format!("{reason}\n"));
    if let Err(e) = std::fs::rename(&src, &dir) {
        log::error!("cannot move {} to {}: {e}", src.display(), dir.display());
        return None;
    }
    names.push(dir.file_name()?.to_string_lossy().into_owned());
    while names.len() > KEEP_FAILED {
        let old = names.remove(0);
        let _ = std::fs::remove_dir_all(failed.join(old));
    }
    Some(PreviousFailure { slot, reason, dir })
}

/// The most recent failed boot on record (for `keel update status`).
pub fn last_failure(log_dir: &Path) -> Option<PreviousFailure> {
    let failed = log_dir.join(FAILED);
    let mut names: Vec<String> = std::fs::read_dir(&failed)
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let name = names.pop()?;
    let dir = failed.join(&name);
    let reason = std::fs::read_to_string(dir.join("reason"))
        .unwrap_or_default()
        .trim()
        .to_string();
    let slot = name.rsplit('-').next().unwrap_or("?").to_string();
    Some(PreviousFailure { slot, reason, dir })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("keel-slots-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn config_defaults_depend_on_a_slot_boot() {
        let c = SlotConfig::from_cmdline(&Cmdline::parse(""), true);
        assert_eq!(c.watchdog, WatchdogMode::UntilBlessed);
        assert_eq!((c.grace, c.deadline), (DEFAULT_GRACE, DEFAULT_DEADLINE));
        assert_eq!(c.tick(), Duration::from_secs(1));
        let c = SlotConfig::from_cmdline(&Cmdline::parse(""), false);
        assert_eq!(c.watchdog, WatchdogMode::Off);
        let c = SlotConfig::from_cmdline(
            &Cmdline::parse(
                "keel.watchdog=keep keel.watchdog-timeout=2 keel.bless-grace=500ms keel.bless-deadline=20s",
            ),
            false,
        );
        assert_eq!(c.watchdog, WatchdogMode::Keep);
        assert_eq!(c.watchdog_timeout, 2);
        assert_eq!(c.grace, Duration::from_millis(500));
        assert_eq!(c.deadline, Duration::from_secs(20));
        assert_eq!(c.tick(), Duration::from_millis(666));
    }

    #[test]
    fn kmsg_records_become_lines() {
        let raw = "6,339,5140900,-;keel: boot complete\n SUBSYSTEM=x\n";
        assert_eq!(format_kmsg(raw), "[    5.140900] keel: boot complete\n");
    }

    #[test]
    fn an_unblessed_boot_is_kept_and_explained_next_time() {
        let d = tmp("journal");
        let paths = Paths {
            run: d.join("run"),
            log: d.join("log"),
            kmsg: d.join("no-kmsg"),
        };
        std::fs::create_dir_all(&paths.run).unwrap();
        std::fs::write(paths.run.join("stage1.json"), "{\"slot\":\"b\"}").unwrap();
        // Boot 1 writes its journal and then "resets".
        let mut j = Journal::open(&paths, "b").unwrap();
        j.flush(&paths, Duration::from_millis(4321));
        drop(j);
        let p = collect_previous(&paths.log).unwrap();
        assert_eq!(p.slot, "b");
        assert!(
            p.reason.contains("last sign of life at 4321 ms"),
            "{}",
            p.reason
        );
        assert!(p.dir.ends_with("failed-boots/0001-slot-b"), "{p:?}");
        assert!(p.dir.join("record.json").is_file());
        assert!(!paths.log.join(IN_PROGRESS).exists());
        assert_eq!(collect_previous(&paths.log), None, "only once");
        // Boot 2 gives up with a reason.
        let mut j = Journal::open(&paths, "a").unwrap();
        j.set_reason("not blessed within 8000 ms");
        drop(j);
        let p = collect_previous(&paths.log).unwrap();
        assert_eq!(p.reason, "not blessed within 8000 ms");
        assert!(p.dir.ends_with("0002-slot-a"));
        assert_eq!(last_failure(&paths.log), Some(p));
        // Only the last KEEP_FAILED are kept.
        for _ in 0..KEEP_FAILED + 2 {
            Journal::open(&paths, "b").unwrap();
            collect_previous(&paths.log).unwrap();
        }
        let n = std::fs::read_dir(paths.log.join(FAILED)).unwrap().count();
        assert_eq!(n, KEEP_FAILED);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_blessing_waits_for_a_locked_table_without_blocking() {
        use keel_image::gpt::SlotAttrs;
        let d = tmp("locked");
        let disk = d.join("disk.img");
        let tried = SlotAttrs {
            priority: 2,
            tries: 0,
            successful: false,
        };
        crate::stage1::slot::write_test_disk(&disk, SlotAttrs::default(), tried);
        let paths = Paths {
            run: d.join("run"),
            log: d.join("log"),
            kmsg: d.join("no-kmsg"),
        };
        std::fs::create_dir_all(&paths.run).unwrap();
        let stage1 = json!({"slot": "b", "slot_disk": disk.display().to_string()});
        std::fs::write(paths.run.join("stage1.json"), stage1.to_string()).unwrap();
        let mut s = Slots::start(
            &Cmdline::parse("keel.watchdog=off keel.bless-deadline=100000h"),
            paths,
        )
        .unwrap();

        let held = Table::open(&disk).unwrap();
        s.blessed(Duration::from_secs(3));
        assert!(s.unmarked);
        let state = || -> Value {
            let text = std::fs::read_to_string(d.join("run").join(STATE_FILE)).unwrap();
            serde_json::from_str(&text).unwrap()
        };
        assert_eq!(state()["slot_marked"], false);
        assert!(s.tick(), "the tick keeps trying");
        assert_eq!(Table::read(&disk).unwrap().attrs(Slot::B), tried);
        drop(held);
        assert!(!s.tick(), "nothing left to do once marked");
        assert!(!s.unmarked);
        assert_eq!(state()["slot_marked"], true);
        let b = Table::read(&disk).unwrap().attrs(Slot::B);
        assert_eq!((b.priority, b.tries, b.successful), (2, 0, true));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
