//! Shared helpers for Keel's integration tests (in `tests/`): where the
//! real binaries are, temporary directories, unit files, and running a
//! command with a deadline. The tests themselves run the real `keel` as a
//! subreaper, as PID 1 of a PID namespace, and under QEMU.

#![forbid(unsafe_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The static keel binary: `$KEEL_BIN`, else `build/keel` (made by
/// `make keel`). Panics with a hint when it is missing.
pub fn keel_bin() -> PathBuf {
    let p = std::env::var_os("KEEL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("build/keel"));
    assert!(
        p.is_file(),
        "{} is missing: run `make keel` (or set KEEL_BIN)",
        p.display()
    );
    p
}

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "keel-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for a daemon or a
/// probe target the test starts).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr()
        .expect("a bound socket has an address")
        .port()
}

/// `s` as a TOML basic string, quotes included (for unit files that embed
/// a shell command).
pub fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes `dir/name.toml`.
pub fn write_unit(dir: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(dir).expect("create unit dir");
    std::fs::write(dir.join(format!("{name}.toml")), text).expect("write unit");
}

/// What a command printed and how it ended.
#[derive(Debug)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    /// Exit code, or None when killed by a signal.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
}

impl Output {
    /// Both streams, for assertions and failure messages.
    pub fn all(&self) -> String {
        format!("--- stdout\n{}--- stderr\n{}", self.stdout, self.stderr)
    }
}

/// Runs `cmd` to completion, killing it after `timeout`.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    use std::os::unix::process::ExitStatusExt;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > timeout {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait after kill");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
        code: status.code(),
        signal: status.signal(),
        timed_out,
    }
}

/// A QEMU boot of `m`'s kernel with an initramfs built from `m` (written
/// into `dir`), the manifest's command line and a 180 s limit: what every
/// initramfs boot test starts from.
pub fn initramfs_boot_config(
    m: &keel_image::manifest::Manifest,
    dir: &Path,
) -> keel_image::qemu::BootConfig {
    use keel_image::build::{build_initramfs, BuildOptions};
    let opts = BuildOptions::new(keel_bin()).unwrap_or_else(|e| panic!("{e}"));
    let ird = build_initramfs(m, &opts).unwrap_or_else(|e| panic!("{e}"));
    let initrd = dir.join("initrd.cpio.gz");
    std::fs::write(&initrd, &ird.bytes).expect("write the initramfs");
    let kernel = keel_image::kernel::HostRoots::default()
        .kernel(&m.kernel, m.base_dir())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut cfg = keel_image::qemu::BootConfig::new(kernel.image, initrd, m.kernel.cmdline.clone());
    cfg.timeout = Duration::from_secs(180);
    cfg
}

/// How many console lines contain `needle`.
pub fn count_lines(console: &str, needle: &str) -> usize {
    console.lines().filter(|l| l.contains(needle)).count()
}

/// What every clean initramfs boot shows: one boot line that adds up, a
/// poweroff, QEMU exiting by itself, no panic.
pub fn assert_clean_boot(out: &keel_image::qemu::BootOutcome) {
    let c = &out.console;
    assert_eq!(
        out.verdict(),
        keel_image::qemu::Verdict::Success,
        "console:\n{c}"
    );
    assert_eq!(
        count_lines(c, "keel: boot complete in"),
        1,
        "exactly one boot line:\n{c}"
    );
    let line = out.boot_line.as_ref().expect("boot line");
    assert!(!line.degraded);
    assert_eq!(
        line.kernel_ms + line.userspace_ms,
        line.total_ms,
        "{line:?}"
    );
    assert!(
        line.kernel_ms > 0,
        "the kernel's share is measured: {line:?}"
    );
    assert!(c.contains("powering off"), "{c}");
    assert!(out.exited && !out.timed_out, "QEMU exited by itself");
    assert!(out.fatal_line.is_none(), "no panic: {:?}", out.fatal_line);
    assert!(
        !c.contains("Kernel panic") && !c.contains("Attempted to kill init"),
        "{c}"
    );
}

/// Builds `m`'s initramfs (`dir/initrd.img`) and GPT disk (`dir/disk.img`),
/// the way every disk-boot test starts; returns the kernel image to boot.
pub fn build_disk_image(m: &keel_image::manifest::Manifest, dir: &Path) -> PathBuf {
    use keel_image::build::{build_initramfs, BuildOptions};
    let opts = BuildOptions::new(keel_bin()).unwrap_or_else(|e| panic!("{e}"));
    let ird = build_initramfs(m, &opts).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("initrd.img"), &ird.bytes).expect("write the initramfs");
    keel_image::disk::build_disk(m, &keel_bin(), &dir.join("disk.img"))
        .unwrap_or_else(|e| panic!("{e}"));
    keel_image::kernel::HostRoots::default()
        .kernel(&m.kernel, m.base_dir())
        .unwrap_or_else(|e| panic!("{e}"))
        .image
}

/// The checks of `tests/images/boot.toml`, on whichever kernel booted it:
/// oneshot output, the simple service up at boot complete, the orphan
/// reaped, oneshots finished before boot complete.
pub fn assert_boot_scenario(out: &keel_image::qemu::BootOutcome) {
    let c = &out.console;
    assert!(
        c.contains("hello from a keel oneshot"),
        "oneshot output:\n{c}"
    );
    assert!(
        c.contains("ticker is running"),
        "simple service up at boot:\n{c}"
    );
    assert!(c.contains("forked-orphan"), "{c}");
    assert!(c.contains("zombies=0"), "an orphan was left a zombie:\n{c}");
    let boot_at = c.find("keel: boot complete").unwrap_or(0);
    assert!(
        c.find("zombies=0").unwrap_or(usize::MAX) < boot_at,
        "oneshots finish before boot completes"
    );
}
