//! The cpio writer against GNU cpio: what `cpio -idm` extracts from our archive
//! is the tree we put in (bytes, directories, modes, symlink targets, mtimes),
//! identical input gives identical bytes, and our gzip is what `gzip -dc` reads.

// Helpers outside #[test] functions panic on failure, as the tests do.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use keel_image::cpio::Archive;

#[derive(Debug, PartialEq, Eq)]
enum Node {
    File { mode: u32, data: Vec<u8> },
    Dir { mode: u32 },
    Symlink { target: String },
}

/// Every path under `root` (relative, without `root` itself).
fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let node = if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                Node::Symlink {
                    target: target.to_str().unwrap().to_owned(),
                }
            } else if meta.is_dir() {
                stack.push(path.clone());
                Node::Dir { mode }
            } else {
                Node::File {
                    mode,
                    data: std::fs::read(&path).unwrap(),
                }
            };
            out.insert(rel, node);
        }
    }
    out
}

/// A tree with padding edge cases (0 to 5 bytes), odd modes, nesting and links.
fn make_tree(root: &Path) {
    let files: &[(&str, &[u8], u32)] = &[
        ("bin/tool", b"\x7fELF\x02\x01", 0o755),
        ("etc/one", b"1", 0o644),
        ("etc/empty", b"", 0o600),
        ("etc/three", b"abc", 0o640),
        ("etc/four", b"abcd", 0o444),
        ("etc/five", b"abcde", 0o4755),
        ("deep/a/b/c/leaf", b"leaf\n", 0o644),
        (
            "a-name-long-enough-to-need-padding-in-the-header.conf",
            b"x=1\n",
            0o644,
        ),
    ];
    for (path, data, mode) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    std::fs::create_dir(root.join("private")).unwrap();
    std::fs::set_permissions(root.join("private"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(root.join("deep/a"), std::fs::Permissions::from_mode(0o750)).unwrap();
    symlink("tool", root.join("bin/sh")).unwrap();
    symlink("/etc/one", root.join("abs-link")).unwrap();
    symlink("../nowhere", root.join("etc/dangling")).unwrap();
}

/// Adds everything under `root`, in `read_dir` order (deliberately unsorted).
fn add_tree(archive: &mut Archive, root: &Path) {
    for (rel, node) in snapshot(root) {
        let dest = format!("/{rel}");
        match node {
            Node::File { mode, .. } => archive
                .add_file_from_path(&dest, &root.join(&rel), Some(mode))
                .unwrap(),
            Node::Dir { mode } => archive.add_dir(&dest, mode).unwrap(),
            Node::Symlink { target } => archive.add_symlink(&dest, &target).unwrap(),
        }
    }
}

fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Vec<u8> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn gnu_cpio_extracts_the_input_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    make_tree(&src);

    let mut archive = Archive::with_mtime(1_700_000_000);
    add_tree(&mut archive, &src);
    let bytes = archive.to_bytes();
    run_with_stdin(
        Command::new("sh")
            .args([
                "-c",
                "umask 0 && exec cpio -idm --no-absolute-filenames --quiet",
            ])
            .current_dir(&dst),
        &bytes,
    );

    let (want, got) = (snapshot(&src), snapshot(&dst));
    assert_eq!(want.len(), 18, "{want:#?}");
    assert_eq!(got, want);
    let meta = std::fs::metadata(dst.join("etc/one")).unwrap();
    assert_eq!(meta.mtime(), 1_700_000_000);

    // GNU cpio lists the entries in our (sorted) order.
    let listing = run_with_stdin(Command::new("cpio").args(["-t", "--quiet"]), &bytes);
    let listing: Vec<String> = String::from_utf8(listing)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let mut sorted = listing.clone();
    sorted.sort();
    assert_eq!(listing, sorted);
    assert_eq!(listing.len(), want.len());
}

#[test]
fn identical_input_gives_identical_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    make_tree(tmp.path());
    let mut first = Archive::new();
    add_tree(&mut first, tmp.path());

    // Same content, added in reverse order and with parents left implicit
    // where their mode is the default.
    let mut second = Archive::new();
    let entries: Vec<_> = first
        .entries()
        .map(|(p, e)| (p.to_owned(), e.clone()))
        .collect();
    for (path, entry) in entries.into_iter().rev() {
        use keel_image::cpio::EntryKind;
        match entry.kind {
            EntryKind::File(data) => second.add_file(&path, data, entry.mode).unwrap(),
            EntryKind::Dir if entry.mode == 0o755 => {}
            EntryKind::Dir => second.add_dir(&path, entry.mode).unwrap(),
            EntryKind::Symlink(target) => second.add_symlink(&path, &target).unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(first.to_bytes(), second.to_bytes());

    let mut changed = Archive::new();
    add_tree(&mut changed, tmp.path());
    changed
        .add_file("/etc/extra", b"x".to_vec(), 0o644)
        .unwrap();
    assert_ne!(first.to_bytes(), changed.to_bytes());
}

#[test]
fn gzip_output_decompresses_to_the_archive() {
    let tmp = tempfile::tempdir().unwrap();
    make_tree(tmp.path());
    let mut archive = Archive::new();
    add_tree(&mut archive, tmp.path());
    let raw = archive.to_bytes();
    let gz = keel_image::build::gzip(&raw);
    assert!(gz.len() < raw.len());
    assert_eq!(gz, keel_image::build::gzip(&raw), "gzip is deterministic");
    let out = run_with_stdin(Command::new("gzip").arg("-dc"), &gz);
    assert_eq!(out, raw);
}
