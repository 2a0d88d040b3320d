//! `keel-image`: build a Keel initramfs from a manifest, or build and boot it
//! under QEMU.
//!
//! ```text
//! keel-image initramfs MANIFEST -o FILE [--keel PATH]
//! keel-image rootfs MANIFEST -o FILE [--keel PATH]
//! keel-image disk MANIFEST -o FILE [--keel PATH]
//! keel-image oci MANIFEST -o FILE [--name NAME]
//! keel-image boot MANIFEST [--timeout SECS] [--keel PATH] [--append ARGS] [--initramfs FILE]
//!                          [--disk FILE] [--machine M] [--cpu C] [--qemu-arg ARG]...
//!                          [--profile DIR] [--repeat N]
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
  keel-image rootfs MANIFEST -o FILE [--keel PATH]     the [rootfs] tree as an erofs image
  keel-image disk MANIFEST -o FILE [--keel PATH]       GPT disk: KEEL-A, KEEL-B, KEEL-STATE
  keel-image oci MANIFEST -o FILE [--name NAME]        a [[rootfs.oci]] image as an OCI layout tar
  keel-image boot MANIFEST [--timeout SECS] [--keel PATH] [--append ARGS] [--initramfs FILE]
                           [--disk FILE] [--machine M] [--cpu C] [--qemu-arg ARG]...
                           [--profile DIR] [--repeat N]

--profile DIR boots with keel.report=console, takes the boot record off the
console and writes it to DIR with `keel analyze`'s time, blame,
critical-chain, SVG plot and trace (made by the --keel binary, which runs on
the host too); --repeat N boots N times and prints each phase's median, min
and max (DIR/1, DIR/2, ... with --profile).

A manifest with a [disk] section boots from its disk, attached as virtio-blk:
a fresh one in a temporary directory, or --disk FILE (built there first if
FILE does not exist, so that state persists from one boot to the next).

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
        Some("rootfs") => Options::parse(&args[1..]).and_then(|o| rootfs(&o)),
        Some("disk") => Options::parse(&args[1..]).and_then(|o| disk(&o)),
        Some("oci") => Options::parse(&args[1..]).and_then(|o| oci(&o)),
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
    disk: Option<PathBuf>,
    machine: Option<String>,
    cpu: Option<String>,
    qemu_args: Vec<String>,
    profile: Option<PathBuf>,
    repeat: Option<usize>,
    name: Option<String>,
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
                "--disk" => opts.disk = Some(value()?.into()),
                "--append" => opts.append.push(value()?),
                "--machine" => opts.machine = Some(value()?),
                "--cpu" => opts.cpu = Some(value()?),
                "--qemu-arg" => opts.qemu_args.push(value()?),
                "--profile" => opts.profile = Some(value()?.into()),
                "--name" => opts.name = Some(value()?),
                "--repeat" => {
                    let v = value()?;
                    match v.parse() {
                        Ok(n) if n > 0 => opts.repeat = Some(n),
                        _ => return Err(Failure::Usage(format!("--repeat {v:?} is not a count"))),
                    }
                }
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

/// Only -o and --keel make sense for the image builders.
fn builder_output<'a>(opts: &'a Options, what: &str) -> Result<&'a Path, Failure> {
    if opts.timeout.is_some()
        || opts.initramfs.is_some()
        || opts.disk.is_some()
        || !opts.append.is_empty()
    {
        return Err(Failure::Usage(
            "--timeout, --append, --initramfs and --disk are for boot".into(),
        ));
    }
    opts.output
        .as_deref()
        .ok_or_else(|| Failure::Usage(format!("{what} needs -o FILE")))
}

fn rootfs(opts: &Options) -> Result<(), Failure> {
    let output = builder_output(opts, "rootfs")?;
    let manifest = opts.manifest()?;
    let keel = build::keel_path(opts.keel.as_deref());
    let image = keel_image::rootfs::build_rootfs(&manifest, &keel)
        .map_err(|e| Failure::Error(format!("{}: {e}", manifest.path.display())))?;
    build::write_atomic(output, &image.bytes).map_err(error)?;
    eprintln!(
        "keel-image: wrote {}: erofs, {} bytes, UUID {}",
        output.display(),
        image.bytes.len(),
        image.uuid
    );
    Ok(())
}

fn write_disk(manifest: &Manifest, opts: &Options, output: &Path) -> Result<(), Failure> {
    let keel = build::keel_path(opts.keel.as_deref());
    let built = keel_image::disk::build_disk(manifest, &keel, output)
        .map_err(|e| Failure::Error(format!("{}: {e}", manifest.path.display())))?;
    let parts: Vec<String> = built
        .gpt
        .partitions()
        .map(|(n, p)| format!("{n} {} {} MiB", p.name, p.size() >> 20))
        .collect();
    eprintln!(
        "keel-image: wrote {}: {} MiB GPT ({}), root image {} bytes (UUID {})",
        output.display(),
        built.size >> 20,
        parts.join(", "),
        built.root_bytes,
        built.root_uuid
    );
    Ok(())
}

fn disk(opts: &Options) -> Result<(), Failure> {
    let output = builder_output(opts, "disk")?;
    write_disk(&opts.manifest()?, opts, output)
}

/// Writes one of the manifest's `[[rootfs.oci]]` images (`--name`, or the
/// only one) as an image-layout archive.
fn oci(opts: &Options) -> Result<(), Failure> {
    let output = builder_output(opts, "oci")?;
    let manifest = opts.manifest()?;
    let images = manifest.rootfs.as_ref().map_or(&[][..], |r| &r.oci[..]);
    let names = || {
        images
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let spec = match (&opts.name, images) {
        (Some(name), _) => images.iter().find(|o| &o.name == name).ok_or_else(|| {
            Failure::Error(format!(
                "{}: no [[rootfs.oci]] named {name:?} (there are: {})",
                manifest.path.display(),
                names()
            ))
        })?,
        (None, [one]) => one,
        (None, []) => {
            return Err(Failure::Error(format!(
                "{}: no [[rootfs.oci]] image",
                manifest.path.display()
            )))
        }
        (None, _) => {
            return Err(Failure::Usage(format!(
                "{} has several OCI images ({}): pick one with --name",
                manifest.path.display(),
                names()
            )))
        }
    };
    let mtime = build::mtime_from_env().map_err(error)?;
    let image = keel_image::oci::build_oci(&manifest, spec, mtime.into()).map_err(error)?;
    build::write_atomic(output, &image.bytes).map_err(error)?;
    eprintln!(
        "keel-image: wrote {}: OCI image {} (manifest {}), {} bytes",
        output.display(),
        spec.name,
        image.manifest_digest,
        image.bytes.len()
    );
    Ok(())
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
    if (opts.profile.is_some() || opts.repeat.is_some()) && !cmdline.contains("keel.report=console")
    {
        cmdline += " keel.report=console";
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
    if manifest.disk.is_some() || opts.disk.is_some() {
        let path = match &opts.disk {
            Some(path) if path.exists() => path.clone(),
            Some(path) => {
                write_disk(&manifest, opts, path)?;
                path.clone()
            }
            None => {
                let path = workdir.path().join("disk.img");
                write_disk(&manifest, opts, &path)?;
                path
            }
        };
        let mut drive = std::ffi::OsString::from("file=");
        drive.push(&path);
        drive.push(",if=virtio,format=raw");
        config.extra_args.push("-drive".into());
        config.extra_args.push(drive);
    }
    if let Some(secs) = opts.timeout {
        config.timeout = Duration::from_secs(secs);
    }
    eprintln!(
        "keel-image: booting {} (kernel {}) with a {:?} timeout",
        manifest.name, kernel.release, config.timeout
    );
    if opts.profile.is_some() || opts.repeat.is_some() {
        let keel = build::keel_path(opts.keel.as_deref());
        let (dir, n) = (opts.profile.as_deref(), opts.repeat.unwrap_or(1));
        return keel_image::profile::run(&config, &keel, dir, n).map_err(|e| match e {
            e if e.is_boot_failure() => Failure::BootFailed(e.to_string()),
            e => Failure::Error(e.to_string()),
        });
    }
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
