//! Finding the host's kernel: its release, its image under `/boot` and its
//! modules under `/lib/modules/<release>`.
//!
//! `release = "auto"` picks the newest release (compared as versions, so
//! 6.10 is newer than 6.9) that has both `/boot/vmlinuz-<release>` and
//! `/lib/modules/<release>`. Both roots are parameters ([`HostRoots`]) so that
//! tests can point them at a temporary tree.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use crate::manifest::KernelSpec;

/// Why no kernel could be found.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A directory could not be listed.
    #[error("cannot list {path}: {source}")]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `release = "auto"` found nothing.
    #[error("no kernel found: no {boot_dir}/vmlinuz-<release> with a matching {modules_root}/<release> (install linux-image-cloud-amd64, or set kernel.release and kernel.image)")]
    NoKernel {
        /// Where images were looked for.
        boot_dir: PathBuf,
        /// Where module trees were looked for.
        modules_root: PathBuf,
    },
    /// The kernel image does not exist.
    #[error("kernel image {path} of release {release} not found")]
    MissingImage {
        /// The image path.
        path: PathBuf,
        /// The release it was meant to be.
        release: String,
    },
}

/// Where the host keeps kernels and modules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostRoots {
    /// Kernel images, `vmlinuz-<release>`: normally `/boot`.
    pub boot_dir: PathBuf,
    /// Module trees, `<release>/modules.dep`: normally `/lib/modules`.
    pub modules_root: PathBuf,
}

impl Default for HostRoots {
    fn default() -> Self {
        HostRoots {
            boot_dir: PathBuf::from("/boot"),
            modules_root: PathBuf::from("/lib/modules"),
        }
    }
}

impl HostRoots {
    /// The module tree of `release`.
    pub fn modules_dir(&self, release: &str) -> PathBuf {
        self.modules_root.join(release)
    }

    /// The default kernel image of `release`.
    pub fn image(&self, release: &str) -> PathBuf {
        self.boot_dir.join(format!("vmlinuz-{release}"))
    }

    /// The newest release with both an image and a module tree.
    pub fn newest_release(&self) -> Result<String, KernelError> {
        let entries = std::fs::read_dir(&self.boot_dir).map_err(|source| KernelError::ReadDir {
            path: self.boot_dir.clone(),
            source,
        })?;
        let mut releases: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                Some(name.strip_prefix("vmlinuz-")?.to_owned())
            })
            .filter(|r| !r.is_empty() && self.modules_dir(r).is_dir())
            .collect();
        releases.sort_by(|a, b| compare_releases(a, b));
        releases.pop().ok_or_else(|| KernelError::NoKernel {
            boot_dir: self.boot_dir.clone(),
            modules_root: self.modules_root.clone(),
        })
    }

    /// The release a manifest asks for: itself, or the newest for `"auto"`.
    pub fn release(&self, spec: &KernelSpec) -> Result<String, KernelError> {
        match spec.release.as_str() {
            "auto" => self.newest_release(),
            release => Ok(release.to_owned()),
        }
    }

    /// The kernel a manifest boots; `base` anchors a relative `kernel.image`.
    pub fn kernel(&self, spec: &KernelSpec, base: &Path) -> Result<HostKernel, KernelError> {
        let release = self.release(spec)?;
        let image = match &spec.image {
            Some(image) => base.join(image),
            None => self.image(&release),
        };
        if !image.is_file() {
            return Err(KernelError::MissingImage {
                path: image,
                release,
            });
        }
        Ok(HostKernel {
            modules_dir: self.modules_dir(&release),
            release,
            image,
        })
    }
}

/// A kernel on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostKernel {
    /// Its release, as `uname -r` would say.
    pub release: String,
    /// The bootable image (bzImage).
    pub image: PathBuf,
    /// Its module tree (may not exist for a kernel without modules).
    pub modules_dir: PathBuf,
}

/// Orders kernel releases as versions: runs of digits compare as numbers,
/// everything else as text.
pub fn compare_releases(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> impl Iterator<Item = &str> {
        let mut rest = s;
        std::iter::from_fn(move || {
            let first = rest.chars().next()?;
            let digit = first.is_ascii_digit();
            let end = rest
                .find(|c: char| c.is_ascii_digit() != digit)
                .unwrap_or(rest.len());
            let (chunk, tail) = rest.split_at(end);
            rest = tail;
            Some(chunk)
        })
    }
    let mut a = chunks(a);
    let mut b = chunks(b);
    loop {
        match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => x.cmp(y),
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_compare_as_versions() {
        assert_eq!(
            compare_releases("6.10.0-1-amd64", "6.9.0-1-amd64"),
            Ordering::Greater
        );
        assert_eq!(
            compare_releases("6.1.0-56-cloud", "6.1.0-9-cloud"),
            Ordering::Greater
        );
        assert_eq!(compare_releases("6.1.0", "6.1.0"), Ordering::Equal);
        assert_eq!(compare_releases("6.1", "6.1.0"), Ordering::Less);
    }

    #[test]
    fn auto_picks_the_newest_release_with_modules() {
        let tmp = tempfile::tempdir().unwrap();
        let roots = HostRoots {
            boot_dir: tmp.path().join("boot"),
            modules_root: tmp.path().join("modules"),
        };
        for (release, modules) in [("6.9.0-1", true), ("6.10.0-1", true), ("6.11.0-1", false)] {
            std::fs::create_dir_all(&roots.boot_dir).unwrap();
            std::fs::write(roots.image(release), b"bzImage").unwrap();
            if modules {
                std::fs::create_dir_all(roots.modules_dir(release)).unwrap();
            }
        }
        let spec = KernelSpec::default();
        let kernel = roots.kernel(&spec, Path::new("/")).unwrap();
        assert_eq!(kernel.release, "6.10.0-1");
        assert_eq!(kernel.image, roots.boot_dir.join("vmlinuz-6.10.0-1"));

        let spec = KernelSpec {
            release: "7.0".into(),
            ..KernelSpec::default()
        };
        assert!(matches!(
            roots.kernel(&spec, Path::new("/")),
            Err(KernelError::MissingImage { release, .. }) if release == "7.0"
        ));

        std::fs::remove_dir_all(&roots.modules_root).unwrap();
        assert!(matches!(
            roots.newest_release(),
            Err(KernelError::NoKernel { .. })
        ));
    }
}
