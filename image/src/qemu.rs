//! Booting an image under QEMU (TCG) and judging the boot from its console.
//!
//! [`boot`] starts `qemu-system-x86_64` with the serial console on its stdout,
//! streams the console live (if [`BootConfig::echo`]), watches it line by line
//! and returns a [`BootOutcome`]: the whole console, the parsed
//! [`BootLine`], unit failures, whether QEMU exited by itself and how long it
//! all took. [`BootOutcome::verdict`] says whether that is a good boot: the
//! boot line without `degraded`, then QEMU exiting by itself (the guest powered
//! off; `-no-reboot` turns a reboot or panic into an exit too).
//!
//! On a fatal console line (`Kernel panic`, `Attempted to kill init`) QEMU gets
//! [`FATAL_GRACE`] to print the rest of the trace and is then killed; on the
//! timeout it is killed at once. QEMU never outlives [`boot`].

use std::ffi::OsString;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::bootline::parse_unit_failure;
pub use crate::bootline::BootLine;
use crate::build::{build_initramfs, write_atomic, BuildError, BuildOptions};
use crate::manifest::Manifest;

/// How long QEMU may keep running after a fatal console line.
pub const FATAL_GRACE: Duration = Duration::from_secs(2);

/// Why QEMU could not be run at all (a failed boot is a [`Verdict`], not this).
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    /// The QEMU binary could not be started.
    #[error("cannot start {qemu} (install qemu-system-x86): {source}")]
    Spawn {
        /// The binary.
        qemu: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Waiting for or killing QEMU failed.
    #[error("cannot wait for {qemu}: {source}")]
    Wait {
        /// The binary.
        qemu: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// What to boot and how.
#[derive(Clone, Debug)]
pub struct BootConfig {
    /// The QEMU binary; default `qemu-system-x86_64` from `$PATH`.
    pub qemu: PathBuf,
    /// Kernel image (bzImage).
    pub kernel: PathBuf,
    /// Initramfs (newc, optionally compressed).
    pub initramfs: PathBuf,
    /// Kernel command line.
    pub cmdline: String,
    /// Guest memory in MiB; default 512.
    pub memory_mib: u32,
    /// QEMU machine type; default [`DEFAULT_MACHINE`].
    pub machine: String,
    /// QEMU CPU model; default [`DEFAULT_CPU`].
    pub cpu: String,
    /// Wall-clock limit for the whole run; QEMU is killed when it passes.
    pub timeout: Duration,
    /// Extra QEMU arguments (e.g. `-drive ...`), appended last.
    pub extra_args: Vec<OsString>,
    /// Copy the console to this process's stdout as it arrives.
    pub echo: bool,
    /// Typed on the serial console, in order: once the console has shown a
    /// whole line containing the first text, the second is sent (tests of
    /// `keel.break=`'s shell). Empty: the console's input is closed.
    pub console_input: Vec<(String, String)>,
}

/// The machine type that boots fastest under TCG here (see `images/README.md`).
pub const DEFAULT_MACHINE: &str = "q35";
/// The CPU model used by default (see `images/README.md`).
pub const DEFAULT_CPU: &str = "qemu64";

impl BootConfig {
    /// A configuration with the defaults: 512 MiB, 60 s timeout, echo off.
    pub fn new(kernel: PathBuf, initramfs: PathBuf, cmdline: impl Into<String>) -> Self {
        BootConfig {
            qemu: PathBuf::from("qemu-system-x86_64"),
            kernel,
            initramfs,
            cmdline: cmdline.into(),
            memory_mib: 512,
            machine: DEFAULT_MACHINE.to_owned(),
            cpu: DEFAULT_CPU.to_owned(),
            timeout: Duration::from_secs(60),
            extra_args: Vec::new(),
            echo: false,
            console_input: Vec::new(),
        }
    }

    /// Builds `manifest`'s initramfs into the file `initramfs` (atomically) and
    /// returns the configuration that boots it with the manifest's kernel and
    /// command line; the caller may then set the timeout, echo or extra args.
    pub fn from_manifest(
        manifest: &Manifest,
        opts: &BuildOptions,
        initramfs: &Path,
    ) -> Result<BootConfig, BuildError> {
        let kernel = opts.roots.kernel(&manifest.kernel, manifest.base_dir())?;
        let built = build_initramfs(manifest, opts)?;
        write_atomic(initramfs, &built.bytes)?;
        Ok(BootConfig::new(
            kernel.image,
            initramfs.to_owned(),
            manifest.kernel.cmdline.clone(),
        ))
    }

    /// The QEMU arguments (without the binary).
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = [
            "-accel",
            "tcg",
            "-M",
            &self.machine,
            "-cpu",
            &self.cpu,
            "-m",
            &self.memory_mib.to_string(),
            "-nodefaults",
            "-no-user-config",
            "-nographic",
            "-no-reboot",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-kernel",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        args.push(self.kernel.clone().into());
        args.push("-initrd".into());
        args.push(self.initramfs.clone().into());
        args.push("-append".into());
        args.push(self.cmdline.clone().into());
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// What happened during a boot.
#[derive(Clone, Debug)]
pub struct BootOutcome {
    /// Everything the guest wrote to the serial console (`\r` removed).
    pub console: String,
    /// QEMU's own stderr.
    pub stderr: String,
    /// The boot line, if one appeared.
    pub boot_line: Option<BootLine>,
    /// `(unit, reason)` of each `keel: unit NAME failed: REASON` line.
    pub failed_units: Vec<(String, String)>,
    /// The first `Kernel panic` or `Attempted to kill init` line.
    pub fatal_line: Option<String>,
    /// Whether QEMU exited by itself (rather than being killed).
    pub exited: bool,
    /// QEMU's exit status.
    pub status: Option<ExitStatus>,
    /// Whether the timeout passed before QEMU exited.
    pub timed_out: bool,
    /// The configured timeout.
    pub timeout: Duration,
    /// From QEMU's start to its end.
    pub wall: Duration,
}

/// The judgement of a boot, with the reason when it failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Boot complete, not degraded, and the guest powered off.
    Success,
    /// `Attempted to kill init`: PID 1 exited.
    InitKilled(String),
    /// `Kernel panic`.
    KernelPanic(String),
    /// The boot line said `degraded`.
    Degraded(String),
    /// A unit failed (keel logged `keel: unit NAME failed`).
    UnitFailed {
        /// The unit.
        unit: String,
        /// Why, as keel said.
        reason: String,
    },
    /// The timeout passed; `boot_complete` says whether the boot line came.
    Timeout {
        /// The timeout.
        after: Duration,
        /// Whether the boot line had appeared.
        boot_complete: bool,
    },
    /// QEMU exited without the guest reporting boot complete.
    ExitedBeforeBoot {
        /// QEMU's exit status and the start of its stderr.
        detail: String,
    },
}

impl Verdict {
    /// Whether the boot was good.
    pub fn is_success(&self) -> bool {
        *self == Verdict::Success
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Success => write!(f, "boot complete and powered off"),
            Verdict::InitKilled(line) => write!(f, "PID 1 exited: {line}"),
            Verdict::KernelPanic(line) => write!(f, "kernel panic: {line}"),
            Verdict::Degraded(reason) => write!(f, "boot degraded: {reason}"),
            Verdict::UnitFailed { unit, reason } => write!(f, "unit {unit} failed: {reason}"),
            Verdict::Timeout {
                after,
                boot_complete: true,
            } => write!(
                f,
                "timeout after {after:?}: boot completed but the guest did not power off"
            ),
            Verdict::Timeout { after, .. } => {
                write!(f, "timeout after {after:?} without `keel: boot complete`")
            }
            Verdict::ExitedBeforeBoot { detail } => {
                write!(f, "QEMU exited before `keel: boot complete` ({detail})")
            }
        }
    }
}

impl BootOutcome {
    /// Judges the boot; the most specific failure wins.
    pub fn verdict(&self) -> Verdict {
        if let Some(line) = &self.fatal_line {
            return if line.contains("Attempted to kill init") {
                Verdict::InitKilled(line.clone())
            } else {
                Verdict::KernelPanic(line.clone())
            };
        }
        if let Some(line) = self.boot_line.as_ref().filter(|l| l.degraded) {
            let reason = line.degraded_reason.clone();
            return Verdict::Degraded(reason.unwrap_or_else(|| "no reason given".to_owned()));
        }
        if let Some((unit, reason)) = self.failed_units.first() {
            return Verdict::UnitFailed {
                unit: unit.clone(),
                reason: reason.clone(),
            };
        }
        if self.timed_out {
            return Verdict::Timeout {
                after: self.timeout,
                boot_complete: self.boot_line.is_some(),
            };
        }
        if self.boot_line.is_none() || !self.exited {
            let status = match self.status {
                Some(status) => status.to_string(),
                None => "killed".to_owned(),
            };
            let stderr = self.stderr.lines().next().unwrap_or("").trim();
            let detail = if stderr.is_empty() {
                status
            } else {
                format!("{status}: {stderr}")
            };
            return Verdict::ExitedBeforeBoot { detail };
        }
        Verdict::Success
    }
}

/// Boots `config` and watches the console until QEMU exits, a fatal line's
/// grace period ends, or the timeout passes.
pub fn boot(config: &BootConfig) -> Result<BootOutcome, QemuError> {
    let start = Instant::now();
    let mut child = Command::new(&config.qemu)
        .args(config.args())
        .stdin(if config.console_input.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| QemuError::Spawn {
            qemu: config.qemu.clone(),
            source,
        })?;
    let rx = pipe_reader(child.stdout.take());
    let stderr_rx = pipe_reader(child.stderr.take());

    let mut watch = Watch::default();
    let mut input = child.stdin.take();
    let mut typed = 0;
    let mut deadline = start + config.timeout;
    let mut timed_out = false;
    let mut eof = false;
    while !eof {
        let now = Instant::now();
        if now >= deadline {
            timed_out = watch.fatal_line.is_none();
            break;
        }
        match rx.recv_timeout(deadline - now) {
            Ok(chunk) => {
                if watch.take(&chunk, config.echo) {
                    deadline = deadline.min(Instant::now() + FATAL_GRACE);
                }
                while let (Some((after, text)), Some(stdin)) =
                    (config.console_input.get(typed), input.as_mut())
                {
                    if !watch.console.contains(after.as_str()) {
                        break;
                    }
                    // A guest that stopped reading is the test's to judge.
                    let _ = stdin
                        .write_all(text.as_bytes())
                        .and_then(|()| stdin.flush());
                    typed += 1;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // QEMU closed its stdout: it is exiting.
            Err(mpsc::RecvTimeoutError::Disconnected) => eof = true,
        }
    }
    // After EOF QEMU is on its way out; after a timeout or a fatal line's grace
    // it is killed at once.
    let status = finish(
        &mut child,
        if eof { deadline } else { Instant::now() },
        config,
    )?;
    // The pipes are closed now that QEMU is gone, so these end.
    for chunk in rx.iter() {
        watch.take(&chunk, config.echo);
    }
    watch.flush();
    let stderr: Vec<u8> = stderr_rx.iter().flatten().collect();
    Ok(BootOutcome {
        console: watch.console,
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        boot_line: watch.boot_line,
        failed_units: watch.failed_units,
        fatal_line: watch.fatal_line,
        exited: status.is_some(),
        status,
        timed_out,
        timeout: config.timeout,
        wall: start.elapsed(),
    })
}

/// Waits for QEMU to exit until `deadline`, then kills it. Returns its status
/// if it exited by itself.
fn finish(
    child: &mut Child,
    deadline: Instant,
    config: &BootConfig,
) -> Result<Option<ExitStatus>, QemuError> {
    let wait_err = |source| QemuError::Wait {
        qemu: config.qemu.clone(),
        source,
    };
    loop {
        if let Some(status) = child.try_wait().map_err(wait_err)? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Killing can race with a natural exit; the wait below settles it.
    let _ = child.kill();
    child.wait().map_err(wait_err)?;
    Ok(None)
}

/// Reads a pipe on a thread, sending chunks until EOF.
fn pipe_reader<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
    }
    rx
}

/// The console so far, scanned line by line.
#[derive(Default)]
struct Watch {
    console: String,
    partial: Vec<u8>,
    boot_line: Option<BootLine>,
    failed_units: Vec<(String, String)>,
    fatal_line: Option<String>,
}

impl Watch {
    /// Echoes a chunk if asked to, then feeds it.
    fn take(&mut self, chunk: &[u8], echo: bool) -> bool {
        if echo {
            let mut stdout = std::io::stdout().lock();
            // Echo is best effort: a closed stdout must not stop the boot.
            let _ = stdout.write_all(chunk).and_then(|()| stdout.flush());
        }
        self.feed(chunk)
    }

    /// Takes a chunk; returns true if it completed the first fatal line.
    fn feed(&mut self, chunk: &[u8]) -> bool {
        let mut fatal = false;
        for &byte in chunk {
            if byte == b'\n' {
                fatal |= self.line();
            } else if byte != b'\r' {
                self.partial.push(byte);
            }
        }
        fatal
    }

    /// Ends the last line, if the console stopped in the middle of one.
    fn flush(&mut self) {
        if !self.partial.is_empty() {
            self.line();
            self.console.pop();
        }
    }

    fn line(&mut self) -> bool {
        let line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        self.console.push_str(&line);
        self.console.push('\n');
        if self.boot_line.is_none() {
            self.boot_line = BootLine::parse(&line);
        }
        if let Some((unit, reason)) = parse_unit_failure(&line) {
            self.failed_units.push((unit.to_owned(), reason.to_owned()));
        }
        let fatal = line.contains("Kernel panic") || line.contains("Attempted to kill init");
        if fatal && self.fatal_line.is_none() {
            self.fatal_line = Some(line.trim().to_owned());
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(console: &str, exited: bool, timed_out: bool) -> BootOutcome {
        let mut watch = Watch::default();
        watch.feed(console.as_bytes());
        watch.flush();
        BootOutcome {
            console: watch.console,
            stderr: String::new(),
            boot_line: watch.boot_line,
            failed_units: watch.failed_units,
            fatal_line: watch.fatal_line,
            exited,
            status: None,
            timed_out,
            timeout: Duration::from_secs(5),
            wall: Duration::ZERO,
        }
    }

    const GOOD: &str = "[    0.5] Run /init as init process\r\nhello\r\n\
        keel: boot complete in 812 ms (kernel 540 ms + userspace 272 ms)\r\n\
        [    0.9] reboot: Power down\r\n";

    #[test]
    fn verdicts() {
        let good = outcome(GOOD, true, false);
        assert_eq!(good.verdict(), Verdict::Success);
        assert_eq!(good.boot_line.as_ref().unwrap().total_ms, 812);
        assert!(good.console.contains("hello\nkeel: boot"));

        let v = outcome(GOOD, false, true).verdict();
        assert!(
            matches!(
                v,
                Verdict::Timeout {
                    boot_complete: true,
                    ..
                }
            ),
            "{v:?}"
        );
        let v = outcome("hello\n", false, true).verdict();
        assert!(
            matches!(
                v,
                Verdict::Timeout {
                    boot_complete: false,
                    ..
                }
            ),
            "{v:?}"
        );
        let v = outcome("hello\n", true, false).verdict();
        assert!(matches!(v, Verdict::ExitedBeforeBoot { .. }), "{v:?}");

        let panic = "[ 1.0] Kernel panic - not syncing: Attempted to kill init! exitcode=0x100\n";
        assert!(matches!(
            outcome(panic, true, false).verdict(),
            Verdict::InitKilled(_)
        ));
        let panic = "[ 1.0] Kernel panic - not syncing: VFS: Unable to mount root fs\n";
        assert!(matches!(
            outcome(panic, true, false).verdict(),
            Verdict::KernelPanic(_)
        ));

        let degraded =
            "keel: boot complete in 8 ms (kernel 5 ms + userspace 3 ms), degraded: bad unit\n";
        assert_eq!(
            outcome(degraded, true, false).verdict(),
            Verdict::Degraded("bad unit".into())
        );
        let failed = format!("keel: unit web failed: exit status 1\n{GOOD}");
        assert!(matches!(
            outcome(&failed, true, false).verdict(),
            Verdict::UnitFailed { unit, .. } if unit == "web"
        ));
    }

    #[test]
    fn lines_split_across_chunks_are_joined() {
        let mut watch = Watch::default();
        let (a, b) = GOOD.split_at(GOOD.find("boot complete").unwrap() + 4);
        assert!(!watch.feed(a.as_bytes()));
        assert!(watch.boot_line.is_none());
        watch.feed(b.as_bytes());
        assert!(watch.boot_line.is_some());
        assert!(watch.feed(b"Kernel panic - x\n"));
        assert!(!watch.feed(b"Kernel panic - again\n"));
    }

    #[test]
    fn args_carry_the_essentials() {
        let mut config = BootConfig::new("/k".into(), "/i".into(), "console=ttyS0");
        config.extra_args = vec!["-drive".into(), "file=x".into()];
        let args: Vec<String> = config
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let joined = args.join(" ");
        assert!(joined.starts_with("-accel tcg -M q35"), "{joined}");
        assert!(joined.contains("-no-reboot") && joined.contains("-serial stdio"));
        assert!(joined.ends_with("-kernel /k -initrd /i -append console=ttyS0 -drive file=x"));
    }

    #[test]
    fn missing_qemu_is_a_spawn_error() {
        let mut config = BootConfig::new("/k".into(), "/i".into(), "");
        config.qemu = "/nonexistent/qemu".into();
        assert!(matches!(boot(&config), Err(QemuError::Spawn { .. })));
    }
}
