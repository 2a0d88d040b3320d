//! `keel-image`: build a Keel initramfs from a manifest, or build and boot it
//! under QEMU.
//!
//! ```text
//! keel-image initramfs MANIFEST -o FILE [--keel PATH]
//! keel-image boot MANIFEST [--timeout SECS] [--keel PATH] [--append ARGS] [--initramfs FILE]
//!                          [--machine M] [--cpu C] [--qemu-arg ARG]...
//! ```
//!
//! Exit status: 0 success; 1 the boot failed (the reason is printed on one
//! line); 2 usage error; 3 the image could not be built or QEMU not run.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use keel_image::build::{self, BuildOptions};
use keel_image::manifest::Manifest;
use keel_image::qemu::{self, BootConfig};

const USAGE: &str = "usage:
  keel-image initramfs MANIFEST -o FILE [--keel PATH]
  keel-image boot MANIFEST [--timeout SECS] [--keel PATH] [--append ARGS] [--initramfs FILE]
                           [--machine M] [--cpu C] [--qemu-arg ARG]...

--append adds to the manifest's kernel command line; --machine and --cpu
override the QEMU machine type (default q35) and CPU model (default qemu64);
--qemu-arg passes one extra argument to QEMU (repeat it).

The keel binary (/init) is --keel PATH, else $KEEL_BIN, else
target/x86_64-unknown-linux-musl/release/keel.";

/// A failure, and the exit status it maps to.
enum Failure {
    Usage(String),
    BootFailed(String),
    Error(String),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("initramfs") => Options::parse(&args[1..]).and_then(|o| initramfs(&o)),
        Some("boot") => Options::parse(&args[1..]).and_then(|o| boot(&o)),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(Failure::Usage(format!("unknown command {other:?}"))),
        None => Err(Failure::Usage("missing command".into())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => {
            eprintln!("keel-image: {msg}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::BootFailed(msg)) => {
            eprintln!("keel-image: boot failed: {msg}");
            ExitCode::from(1)
        }
        Err(Failure::Error(msg)) => {
            eprintln!("keel-image: {msg}");
            ExitCode::from(3)
        }
    }
}

#[derive(Default)]
struct Options {
    manifest: Option<PathBuf>,
    output: Option<PathBuf>,
    keel: Option<PathBuf>,
    timeout: Option<u64>,
    append: Vec<String>,
    initramfs: Option<PathBuf>,
    machine: Option<String>,
    cpu: Option<String>,
    qemu_args: Vec<String>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, Failure> {
        let mut opts = Options::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
                _ => (arg.as_str(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| it.next().cloned())
                    .ok_or_else(|| Failure::Usage(format!("{flag} needs a value")))
            };
            match flag {
                "-o" | "--output" => opts.output = Some(value()?.into()),
                "--keel" => opts.keel = Some(value()?.into()),
                "--initramfs" => opts.initramfs = Some(value()?.into()),
                "--append" => opts.append.push(value()?),
                "--machine" => opts.machine = Some(value()?),
                "--cpu" => opts.cpu = Some(value()?),
                "--qemu-arg" => opts.qemu_args.push(value()?),
                "--timeout" => {
                    let v = value()?;
                    let secs = v.parse().map_err(|_| {
                        Failure::Usage(format!("--timeout {v:?} is not a number of seconds"))
                    })?;
                    opts.timeout = Some(secs);
                }
                f if f.starts_with('-') => {
                    return Err(Failure::Usage(format!("unknown option {f}")))
                }
                _ if opts.manifest.is_none() => opts.manifest = Some(arg.into()),
                _ => return Err(Failure::Usage(format!("unexpected argument {arg:?}"))),
            }
        }
        Ok(opts)
    }

    fn manifest(&self) -> Result<Manifest, Failure> {
        let path = self
            .manifest
            .as_deref()
            .ok_or_else(|| Failure::Usage("missing MANIFEST".into()))?;
        Manifest::load(path).map_err(|e| Failure::Error(e.to_string()))
    }

    fn build_options(&self) -> Result<BuildOptions, Failure> {
        BuildOptions::new(build::keel_path(self.keel.as_deref())).map_err(error)
    }
}

fn error(e: impl std::fmt::Display) -> Failure {
    Failure::Error(e.to_string())
}

/// Builds the manifest's initramfs and writes it atomically to `output`.
fn write_initramfs(manifest: &Manifest, opts: &Options, output: &Path) -> Result<(), Failure> {
    let built = build::build_initramfs(manifest, &opts.build_options()?)
        .map_err(|e| Failure::Error(format!("{}: {e}", manifest.path.display())))?;
    build::write_atomic(output, &built.bytes).map_err(error)?;
    let mut summary = format!(
        "keel-image: wrote {}: {} entries, {} bytes ({} uncompressed)",
        output.display(),
        built.archive.len() + 1,
        built.bytes.len(),
        built.archive_len,
    );
    if let Some(release) = &built.release {
        summary += &format!(", modules for {release}: {}", built.modules.join(" "));
    }
    eprintln!("{summary}");
    Ok(())
}

fn initramfs(opts: &Options) -> Result<(), Failure> {
    let output = opts
        .output
        .as_deref()
        .ok_or_else(|| Failure::Usage("initramfs needs -o FILE".into()))?;
    if opts.timeout.is_some() || opts.initramfs.is_some() || !opts.append.is_empty() {
        return Err(Failure::Usage(
            "--timeout, --append and --initramfs are for boot".into(),
        ));
    }
    write_initramfs(&opts.manifest()?, opts, output)
}

fn boot(opts: &Options) -> Result<(), Failure> {
    if opts.output.is_some() {
        return Err(Failure::Usage("boot does not take -o".into()));
    }
    let manifest = opts.manifest()?;
    let kernel = build::BuildOptions::new(PathBuf::new())
        .map_err(error)?
        .roots
        .kernel(&manifest.kernel, manifest.base_dir())
        .map_err(|e| Failure::Error(format!("{}: {e}", manifest.path.display())))?;
    let workdir = tempfile::Builder::new()
        .prefix("keel-image-boot-")
        .tempdir()
        .map_err(|e| Failure::Error(format!("cannot create a temporary directory: {e}")))?;
    let initramfs = match &opts.initramfs {
        Some(path) => path.clone(),
        None => {
            let path = workdir.path().join("initramfs.img");
            write_initramfs(&manifest, opts, &path)?;
            path
        }
    };
    let mut cmdline = manifest.kernel.cmdline.clone();
    for extra in &opts.append {
        cmdline = format!("{cmdline} {extra}");
    }
    let mut config = BootConfig::new(kernel.image.clone(), initramfs, cmdline);
    config.echo = true;
    if let Some(machine) = &opts.machine {
        config.machine = machine.clone();
    }
    if let Some(cpu) = &opts.cpu {
        config.cpu = cpu.clone();
    }
    config.extra_args = opts.qemu_args.iter().map(Into::into).collect();
    if let Some(secs) = opts.timeout {
        config.timeout = Duration::from_secs(secs);
    }
    eprintln!(
        "keel-image: booting {} (kernel {}) with a {:?} timeout",
        manifest.name, kernel.release, config.timeout
    );
    let outcome = qemu::boot(&config).map_err(error)?;
    let verdict = outcome.verdict();
    if !verdict.is_success() {
        return Err(Failure::BootFailed(verdict.to_string()));
    }
    if let Some(line) = &outcome.boot_line {
        eprintln!(
            "keel-image: {line} [guest uptime {} ms, wall {} ms]",
            line.total_ms,
            outcome.wall.as_millis()
        );
    }
    Ok(())
}
