//! Which file system a device holds, read from its superblock: the type to
//! mount it with (no trying every type in turn) and its UUID and label for
//! `keel.root=UUID=…|LABEL=…`. Pure: it looks at the first bytes only.

/// Bytes to read from the start of a device for [`probe`].
pub const HEAD: usize = 4096;

/// A recognised file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The type mount(2) takes: `erofs`, `ext4` or `squashfs`.
    pub fstype: &'static str,
    /// The file system UUID, lower case with dashes, where it has one.
    pub uuid: Option<String>,
    /// The label (erofs volume name, ext4 label), where it has one.
    pub label: Option<String>,
}

fn uuid(b: &[u8]) -> Option<String> {
    if b.len() != 16 || b.iter().all(|&x| x == 0) {
        return None;
    }
    let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    Some(format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    ))
}

fn label(b: &[u8]) -> Option<String> {
    let end = b.iter().position(|&x| x == 0).unwrap_or(b.len());
    let s = String::from_utf8_lossy(&b[..end]).trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Recognises erofs, ext2/3/4 (mounted as ext4) and squashfs.
pub fn probe(head: &[u8]) -> Option<Probe> {
    const SB: usize = 1024;
    if le32(head, SB) == Some(0xE0F5_E1E2) {
        return Some(Probe {
            fstype: "erofs",
            uuid: uuid(head.get(SB + 48..SB + 64)?),
            label: label(head.get(SB + 64..SB + 80)?),
        });
    }
    if head.get(SB + 0x38..SB + 0x3A) == Some(&[0x53, 0xEF]) {
        return Some(Probe {
            fstype: "ext4",
            uuid: uuid(head.get(SB + 0x68..SB + 0x78)?),
            label: label(head.get(SB + 0x78..SB + 0x88)?),
        });
    }
    if head.get(0..4) == Some(b"hsqs") {
        return Some(Probe {
            fstype: "squashfs",
            uuid: None,
            label: None,
        });
    }
    None
}

/// Reads the head of `dev` and probes it.
pub fn probe_device(dev: &std::path::Path) -> Option<Probe> {
    use std::io::Read;
    let mut head = vec![0u8; HEAD];
    let mut f = std::fs::File::open(dev).ok()?;
    f.read_exact(&mut head).ok()?;
    probe(&head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_each_type() {
        let mut e = vec![0u8; HEAD];
        e[1024..1028].copy_from_slice(&0xE0F5_E1E2u32.to_le_bytes());
        e[1024 + 48] = 0xab;
        e[1024 + 64..1024 + 68].copy_from_slice(b"root");
        let p = probe(&e).unwrap();
        assert_eq!(p.fstype, "erofs");
        assert_eq!(
            p.uuid.as_deref(),
            Some("ab000000-0000-0000-0000-000000000000")
        );
        assert_eq!(p.label.as_deref(), Some("root"));

        let mut x = vec![0u8; HEAD];
        x[1024 + 0x38..1024 + 0x3A].copy_from_slice(&[0x53, 0xEF]);
        x[1024 + 0x78..1024 + 0x82].copy_from_slice(b"KEEL-STATE");
        let p = probe(&x).unwrap();
        assert_eq!(
            (p.fstype, p.uuid, p.label.as_deref()),
            ("ext4", None, Some("KEEL-STATE"))
        );

        let mut s = vec![0u8; HEAD];
        s[..4].copy_from_slice(b"hsqs");
        assert_eq!(probe(&s).unwrap().fstype, "squashfs");
        assert_eq!(probe(&vec![0u8; HEAD]), None);
        assert_eq!(probe(&[]), None);
    }

    /// What the real tools write: mkfs.erofs with a UUID (Debian 12's 1.5
    /// has no label option) and mke2fs with a label and a UUID, read back by
    /// `probe_device` (what `keel.root=LABEL=`/`UUID=` match against).
    #[test]
    fn reads_what_mkfs_writes() {
        let dir = std::env::temp_dir().join(format!("keel-probe-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("tree")).unwrap();
        std::fs::write(dir.join("tree/hello"), "hi\n").unwrap();
        let run = |cmd: &mut std::process::Command| {
            let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
            assert!(out.status.success(), "{cmd:?}: {out:?}");
        };
        let uuid = "0fd1a2b3-c4d5-4e6f-8a9b-0c1d2e3f4a5b";
        let erofs = dir.join("root.erofs");
        run(std::process::Command::new("mkfs.erofs")
            .args([&format!("-U{uuid}"), "--quiet"])
            .arg(&erofs)
            .arg(dir.join("tree")));
        let p = probe_device(&erofs).unwrap();
        assert_eq!(
            (p.fstype, p.uuid.as_deref(), p.label.as_deref()),
            ("erofs", Some(uuid), None)
        );
        let ext4 = dir.join("state.ext4");
        std::fs::File::create(&ext4)
            .unwrap()
            .set_len(4 << 20)
            .unwrap();
        run(std::process::Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-L", "KEEL-STATE", "-U", uuid])
            .arg(&ext4));
        let p = probe_device(&ext4).unwrap();
        assert_eq!(
            (p.fstype, p.uuid.as_deref(), p.label.as_deref()),
            ("ext4", Some(uuid), Some("KEEL-STATE"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
