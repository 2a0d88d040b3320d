//! What a Keel image is, and how to build and boot one.
//!
//! Without the `host` feature this crate is formats only, small enough to link
//! into the static PID 1: [`cpio`] (the newc archive an initramfs is),
//! [`modules`] (a kernel's `modules.dep` and load order) and [`bootline`] (the
//! `keel: boot complete in N ms` line that keel prints and tools parse), and
//! [`gpt`] (the partition table, read at boot and by `keel update`).
//!
//! With `host` (the default, and what the `keel-image` binary uses) it adds
//! [`manifest`] (the TOML description of an image), [`kernel`] (finding the
//! host's kernel image and modules), [`build`] (manifest to initramfs, written
//! atomically), [`rootfs`] (the erofs root image), [`disk`] (the GPT disk with
//! the root slots and the state partition), [`oci`] (OCI image-layout
//! archives built from host files) and [`qemu`] (booting an image
//! under QEMU and judging the boot from its serial console).

#![forbid(unsafe_code)]

pub mod bootline;
pub mod cpio;
pub mod gpt;
pub mod modules;
pub mod profile;
pub mod sha256;

#[cfg(feature = "host")]
pub mod build;
#[cfg(feature = "host")]
pub mod disk;
#[cfg(feature = "host")]
pub mod kernel;
#[cfg(feature = "host")]
pub mod manifest;
#[cfg(feature = "host")]
pub mod oci;
#[cfg(feature = "host")]
pub mod qemu;
#[cfg(feature = "host")]
pub mod rootfs;
