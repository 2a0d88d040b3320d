//! The `keel-image` binary: building the real manifests in `images/`, and its
//! behaviour on bad input (an error naming the culprit, a non-zero exit, and no
//! output or temporary file left behind).

// Helpers outside #[test] functions panic on failure, as the tests do.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use keel_image::cpio::{self, ReadEntry, S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG};

const BIN: &str = env!("CARGO_BIN_EXE_keel-image");

fn images() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../images")
}

fn keel_image(args: &[&str], cwd: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env_remove("KEEL_BIN")
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Builds `manifest` with busybox standing in for keel; returns the entries.
fn build(manifest: &Path, out_dir: &Path) -> (Vec<ReadEntry>, Vec<u8>) {
    let out = out_dir.join("initramfs.img");
    let result = keel_image(
        &[
            "initramfs",
            manifest.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--keel",
            "/bin/busybox",
        ],
        out_dir,
    );
    assert!(result.status.success(), "{}", stderr(&result));
    assert!(stderr(&result).contains("entries"), "{}", stderr(&result));
    let gz = std::fs::read(&out).unwrap();
    let raw = Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -dc < {}", out.display()))
        .output()
        .unwrap();
    assert!(raw.status.success());
    (cpio::read(&raw.stdout).unwrap(), gz)
}

fn entry<'a>(entries: &'a [ReadEntry], path: &str) -> &'a ReadEntry {
    entries
        .iter()
        .find(|e| e.path == path)
        .unwrap_or_else(|| panic!("{path} not in the archive"))
}

#[test]
fn minimal_image_has_init_units_busybox_and_console() {
    let tmp = tempfile::tempdir().unwrap();
    let (entries, bytes) = build(&images().join("minimal.toml"), tmp.path());

    let init = entry(&entries, "init");
    assert_eq!(init.mode, S_IFREG | 0o755);
    assert_eq!(init.data, std::fs::read("/bin/busybox").unwrap());
    let console = entry(&entries, "dev/console");
    assert_eq!((console.mode, console.rdev), (S_IFCHR | 0o600, (5, 1)));
    for dir in ["proc", "sys", "dev", "run", "var", "etc/keel/units"] {
        assert_eq!(entry(&entries, dir).mode, S_IFDIR | 0o755, "{dir}");
    }
    assert_eq!(entry(&entries, "tmp").mode, S_IFDIR | 0o1777);
    let sh = entry(&entries, "bin/sh");
    assert_eq!(
        (sh.mode, sh.data.as_slice()),
        (S_IFLNK | 0o777, &b"busybox"[..])
    );
    for unit in ["hello", "after-hello", "ticker"] {
        let path = format!("etc/keel/units/{unit}.toml");
        let e = entry(&entries, &path);
        assert_eq!(e.mode, S_IFREG | 0o644);
        let src = images().join(format!("minimal/units/{unit}.toml"));
        assert_eq!(e.data, std::fs::read(src).unwrap());
    }
    assert!(!entries.iter().any(|e| e.path.starts_with("lib/modules")));
    assert!(entries
        .iter()
        .all(|e| e.mtime == 0 && e.uid == 0 && e.gid == 0));

    // Deterministic: a second build writes the same bytes.
    let again = tempfile::tempdir().unwrap();
    assert_eq!(build(&images().join("minimal.toml"), again.path()).1, bytes);
}

#[test]
fn modules_come_with_dependencies_and_a_filtered_modules_dep() {
    let tmp = tempfile::tempdir().unwrap();
    let (entries, _) = build(&images().join("virtio-blk.toml"), tmp.path());
    let dep = entries
        .iter()
        .find(|e| e.path.starts_with("lib/modules/") && e.path.ends_with("/modules.dep"))
        .expect("modules.dep in the archive");
    let base = dep.path.trim_end_matches("modules.dep").to_owned();
    let release = base
        .trim_start_matches("lib/modules/")
        .trim_end_matches('/');
    let text = String::from_utf8(dep.data.clone()).unwrap();
    let db = keel_image::modules::ModuleDb::parse(release, &text, None).unwrap();
    let order = db.resolve(&["virtio_blk"]).unwrap();
    assert_eq!(db.len(), order.len(), "only the closure: {text}");
    assert_eq!(order.last().unwrap().name, "virtio_blk");
    for module in &order {
        let file = entry(&entries, &format!("{base}{}", module.path));
        let host = Path::new("/lib/modules").join(release).join(&module.path);
        assert_eq!(file.data, std::fs::read(host).unwrap(), "{}", module.path);
    }
    assert!(entries
        .iter()
        .any(|e| e.path == format!("{base}modules.builtin")));
    let order_file = entry(&entries, &format!("{base}modules.order"));
    assert_eq!(
        String::from_utf8_lossy(&order_file.data).lines().count(),
        order.len()
    );
}

/// Runs `initramfs` on a manifest that must fail; checks exit, message, and
/// that the output directory stays empty.
fn assert_fails(manifest_text: &str, keel: Option<&str>, expect: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = tmp.path().join("bad.toml");
    std::fs::write(&manifest, manifest_text).unwrap();
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("initramfs.img");
    let mut args = vec![
        "initramfs",
        manifest.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    if let Some(keel) = keel {
        args.extend(["--keel", keel]);
    }
    let result = keel_image(&args, tmp.path());
    let err = stderr(&result);
    assert_eq!(result.status.code(), Some(3), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    for needle in expect {
        let needle = needle.replace("$MANIFEST", manifest.to_str().unwrap());
        assert!(err.contains(&needle), "{needle:?} not in {err:?}");
    }
    let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

const BUSYBOX: &str =
    "name = \"t\"\n[[initramfs.files]]\nsrc = \"/bin/busybox\"\ndest = \"/bin/busybox\"\n";

#[test]
fn bad_input_names_the_culprit_and_leaves_nothing() {
    let keel = Some("/bin/busybox");
    assert_fails(
        "name = \"t\"\ncompresion = \"gzip\"",
        keel,
        &["$MANIFEST", "unknown field", "compresion"],
    );
    assert_fails(
        "name = \"t\"\n[initramfs]\nunits = 3",
        keel,
        &["$MANIFEST:3:9", "expected path string"],
    );
    assert_fails(
        "name = \"t\"\n[[initramfs.files]]\nsrc = \"/no/such/file\"\ndest = \"/x\"",
        keel,
        &["$MANIFEST", "/no/such/file"],
    );
    assert_fails(
        "name = \"t\"\n[initramfs]\nunits = \"no-such-units\"",
        keel,
        &["no-such-units"],
    );
    assert_fails(
        "name = \"t\"\n[initramfs]\nmodules = [\"virtio_blk\", \"no_such_module_xyz\"]",
        keel,
        &["no_such_module_xyz", "kernel"],
    );
    assert_fails(
        &format!("{BUSYBOX}[[initramfs.symlinks]]\ndest = \"/bin/busybox\"\ntarget = \"x\""),
        keel,
        &["/bin/busybox", "twice"],
    );
    // No --keel, no KEEL_BIN, and no target/ in the working directory.
    assert_fails(
        BUSYBOX,
        None,
        &["target/x86_64-unknown-linux-musl/release/keel", "make keel"],
    );
    assert_fails(BUSYBOX, Some("/no/keel"), &["/no/keel", "make keel"]);
}

#[test]
fn missing_manifest_and_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = keel_image(&["initramfs", "/no/such.toml", "-o", "x.img"], tmp.path());
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("/no/such.toml"), "{}", stderr(&out));

    let manifest = images().join("minimal.toml");
    let manifest = manifest.to_str().unwrap();
    for args in [
        &["initramfs", manifest][..],
        &["initramfs", manifest, "-o"],
        &["initramfs", manifest, "-o", "x", "--bogus"],
        &["boot", manifest, "--timeout", "soon"],
        &["frobnicate"],
        &[],
    ] {
        let out = keel_image(args, tmp.path());
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}
