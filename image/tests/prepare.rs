//! `BootConfig::from_manifest`, the one call the QEMU integration tests need
//! before `qemu::boot`: it writes the initramfs and picks the manifest's kernel.

// Helpers outside #[test] functions panic on failure, as the tests do.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use keel_image::build::BuildOptions;
use keel_image::manifest::Manifest;
use keel_image::qemu::BootConfig;

#[test]
fn from_manifest_writes_the_initramfs_and_uses_the_manifest_kernel() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/minimal.toml");
    let manifest = Manifest::load(&manifest).unwrap();
    let opts = BuildOptions::new("/bin/busybox".into()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let initramfs = tmp.path().join("initramfs.img");
    let config = BootConfig::from_manifest(&manifest, &opts, &initramfs).unwrap();
    assert_eq!(config.cmdline, manifest.kernel.cmdline);
    assert!(config.kernel.is_file(), "{}", config.kernel.display());
    assert!(config
        .kernel
        .to_str()
        .unwrap()
        .starts_with("/boot/vmlinuz-"));
    assert_eq!(config.initramfs, initramfs);
    assert_eq!(&std::fs::read(&initramfs).unwrap()[..2], &[0x1f, 0x8b]);

    let missing = BuildOptions::new(tmp.path().join("no-keel")).unwrap();
    let err =
        BootConfig::from_manifest(&manifest, &missing, &tmp.path().join("x.img")).unwrap_err();
    assert!(err.to_string().contains("make keel"), "{err}");
    assert!(!tmp.path().join("x.img").exists());
}
