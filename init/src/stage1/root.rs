//! Finding the root device without udev: `keel.root=` names it
//! (`PARTLABEL=`, `PARTUUID=`, `LABEL=`, `UUID=` or a `/dev` path); stage 1
//! scans /sys/class/block and, until the device is there, waits for kernel
//! uevents, bounded by `keel.root-timeout=`. On timeout the error lists every
//! block device seen, so the console says what the machine did have.

use super::probe::{probe_device, Probe};
use keel_image::gpt::{Gpt, Guid};
use keel_kernel::block::{self, BlockDevice};
use keel_kernel::clock::boottime;
use keel_kernel::uevent::UeventSocket;
use std::path::PathBuf;
use std::time::Duration;

/// How a device is named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    PartLabel(String),
    PartUuid(Guid),
    Label(String),
    Uuid(String),
    Path(PathBuf),
}

impl DeviceSpec {
    /// Parses `PARTLABEL=KEEL-A`, `UUID=…`, `/dev/vda1`, ….
    pub fn parse(s: &str) -> Result<DeviceSpec, String> {
        let (k, v) = s.split_once('=').unwrap_or(("", s));
        let nonempty = |v: &str| {
            if v.is_empty() {
                Err(format!("{s:?}: empty value"))
            } else {
                Ok(v.to_string())
            }
        };
        match k {
            "PARTLABEL" => Ok(DeviceSpec::PartLabel(nonempty(v)?)),
            "LABEL" => Ok(DeviceSpec::Label(nonempty(v)?)),
            "UUID" => Ok(DeviceSpec::Uuid(nonempty(v)?.to_lowercase())),
            "PARTUUID" => Guid::parse(v)
                .map(DeviceSpec::PartUuid)
                .map_err(|e| e.to_string()),
            "" if v.starts_with('/') => Ok(DeviceSpec::Path(PathBuf::from(v))),
            _ => Err(format!(
                "{s:?} is not PARTLABEL=, PARTUUID=, LABEL=, UUID= or a /dev path"
            )),
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::PartLabel(v) => write!(f, "PARTLABEL={v}"),
            DeviceSpec::PartUuid(v) => write!(f, "PARTUUID={v}"),
            DeviceSpec::Label(v) => write!(f, "LABEL={v}"),
            DeviceSpec::Uuid(v) => write!(f, "UUID={v}"),
            DeviceSpec::Path(v) => write!(f, "{}", v.display()),
        }
    }
}

/// A device that matched, with what is on it.
#[derive(Debug, Clone)]
pub struct Found {
    /// `/dev/vda1`.
    pub node: PathBuf,
    /// Its file system, if recognised.
    pub probe: Option<Probe>,
}

/// Where the kernel's trees are (parameters for tests).
#[derive(Debug, Clone)]
pub struct Roots {
    pub sys: PathBuf,
    pub dev: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            sys: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
        }
    }
}

/// The partition GUID of `d` from its disk's GPT (no sysfs attribute has it).
fn part_uuid(d: &BlockDevice, roots: &Roots) -> Option<Guid> {
    let disk = roots.dev.join(d.disk.as_ref()?);
    let mut f = std::fs::File::open(&disk).ok()?;
    let size = block::size_bytes(&f).ok()?;
    let gpt = Gpt::read(&mut f, size).ok()?;
    let index = usize::try_from(d.partn?.checked_sub(1)?).ok()?;
    gpt.entries.get(index)?.as_ref().map(|p| p.unique_guid)
}

/// Looks for `spec` among the devices present now.
pub fn find(spec: &DeviceSpec, devices: &[BlockDevice], roots: &Roots) -> Option<Found> {
    let found = |d: &BlockDevice| {
        let node = d.node(&roots.dev);
        Found {
            probe: probe_device(&node),
            node,
        }
    };
    match spec {
        DeviceSpec::Path(p) => {
            let name = p.strip_prefix("/dev").ok()?.to_string_lossy().into_owned();
            devices.iter().find(|d| d.name == name).map(found)
        }
        DeviceSpec::PartLabel(l) => devices
            .iter()
            .find(|d| d.partname.as_deref() == Some(l))
            .map(found),
        DeviceSpec::PartUuid(g) => devices
            .iter()
            .filter(|d| d.partn.is_some())
            .find(|d| part_uuid(d, roots).as_ref() == Some(g))
            .map(found),
        DeviceSpec::Label(_) | DeviceSpec::Uuid(_) => devices.iter().map(found).find(|f| {
            let p = f.probe.as_ref();
            match spec {
                DeviceSpec::Label(l) => p.and_then(|p| p.label.as_ref()) == Some(l),
                DeviceSpec::Uuid(u) => p.and_then(|p| p.uuid.as_ref()) == Some(u),
                _ => false,
            }
        }),
    }
}

/// One line per device: `vda (64 MiB)`, `vda1 (8 MiB, PARTLABEL=KEEL-A)`.
pub fn describe(devices: &[BlockDevice]) -> String {
    if devices.is_empty() {
        return "none".into();
    }
    devices
        .iter()
        .map(|d| {
            let mib = d.sectors / 2048;
            match &d.partname {
                Some(l) => format!("{} ({mib} MiB, PARTLABEL={l})", d.name),
                None => format!("{} ({mib} MiB)", d.name),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The device did not appear in time.
#[derive(Debug, thiserror::Error)]
#[error("root device {spec} did not appear within {} ms; block devices seen: {seen}", waited.as_millis())]
pub struct NotFound {
    pub spec: String,
    pub waited: Duration,
    pub seen: String,
}

/// Waits until `spec` is present, at most `timeout`. `events` is a uevent
/// socket opened before the drivers were loaded (None: poll sysfs).
pub fn wait_for(
    spec: &DeviceSpec,
    timeout: Duration,
    events: Option<&UeventSocket>,
    roots: &Roots,
) -> Result<Found, NotFound> {
    let start = boottime();
    let mut logged = false;
    loop {
        let devices = block::list(&roots.sys).unwrap_or_default();
        if let Some(f) = find(spec, &devices, roots) {
            return Ok(f);
        }
        let waited = boottime().saturating_sub(start);
        if waited >= timeout {
            return Err(NotFound {
                spec: spec.to_string(),
                waited,
                seen: describe(&devices),
            });
        }
        if !logged {
            log::info!(
                "waiting up to {} ms for root device {spec}",
                timeout.as_millis()
            );
            logged = true;
        }
        // Rescan on any block event; at least every 250 ms in case an
        // event was lost (ENOBUFS) or the socket could not be opened.
        let slice = (timeout - waited).min(Duration::from_millis(250));
        let ms = i32::try_from(slice.as_millis()).unwrap_or(250).max(1);
        match events {
            Some(s) => {
                if let Ok(Some(ev)) = s.recv(ms) {
                    log::debug!("uevent {} {}", ev.action, ev.devpath);
                }
            }
            None => std::thread::sleep(slice),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn specs_parse_and_print() {
        for s in [
            "PARTLABEL=KEEL-A",
            "LABEL=root",
            "UUID=ab-cd",
            "/dev/vda1",
            "PARTUUID=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
        ] {
            assert_eq!(DeviceSpec::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(
            DeviceSpec::parse("UUID=AB").unwrap(),
            DeviceSpec::Uuid("ab".into())
        );
        for bad in ["vda1", "FOO=x", "LABEL=", "PARTUUID=nope"] {
            assert!(DeviceSpec::parse(bad).is_err(), "{bad}");
        }
    }

    fn dev(name: &str, partname: Option<&str>) -> BlockDevice {
        BlockDevice {
            name: name.into(),
            partn: partname.map(|_| 1),
            partname: partname.map(Into::into),
            disk: None,
            sectors: 131072,
        }
    }

    #[test]
    fn finds_by_partlabel_and_path_and_lists_what_it_saw() {
        let roots = Roots {
            sys: "/nonexistent".into(),
            dev: "/nonexistent/dev".into(),
        };
        let devs = [dev("vda", None), dev("vda1", Some("KEEL-A"))];
        let f = find(&DeviceSpec::PartLabel("KEEL-A".into()), &devs, &roots).unwrap();
        assert_eq!(f.node, Path::new("/nonexistent/dev/vda1"));
        assert!(find(&DeviceSpec::Path("/dev/vda".into()), &devs, &roots).is_some());
        assert!(find(&DeviceSpec::PartLabel("KEEL-B".into()), &devs, &roots).is_none());
        assert_eq!(
            describe(&devs),
            "vda (64 MiB), vda1 (64 MiB, PARTLABEL=KEEL-A)"
        );
        assert_eq!(describe(&[]), "none");
    }

    #[test]
    fn waiting_is_bounded_and_names_what_was_seen() {
        let d = std::env::temp_dir().join(format!("keel-root-{}", std::process::id()));
        std::fs::create_dir_all(d.join("class/block")).unwrap();
        let roots = Roots {
            sys: d.clone(),
            dev: d.join("dev"),
        };
        let e = wait_for(
            &DeviceSpec::PartLabel("KEEL-A".into()),
            Duration::from_millis(50),
            None,
            &roots,
        )
        .unwrap_err();
        std::fs::remove_dir_all(&d).unwrap();
        let msg = e.to_string();
        assert!(
            msg.contains("PARTLABEL=KEEL-A") && msg.contains("seen: none"),
            "{msg}"
        );
        assert!(e.waited >= Duration::from_millis(50));
    }
}
