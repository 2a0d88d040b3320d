//! OCI images built from a manifest's `[[rootfs.oci]]` entries: one layer
//! made of host files, written as an OCI image-layout archive (what
//! `ctr images import` and `podman load` read), so that an image can carry
//! its containers without any registry.
//!
//! ```text
//! oci-layout                         {"imageLayoutVersion":"1.0.0"}
//! index.json                         -> the manifest, named by annotation
//! blobs/sha256/<manifest>            -> config + layer, digests and sizes
//! blobs/sha256/<config>              architecture, os, Cmd, Env, diff_ids
//! blobs/sha256/<layer>               gzip of a ustar archive of the tree
//! ```
//!
//! Reproducible: entries sorted, uid/gid 0, one mtime (`SOURCE_DATE_EPOCH`
//! or 0) in the layer and in the archive, gzip without a name or time, JSON
//! with sorted keys and no creation date.

use crate::sha256;
pub mod tar;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use serde_json::json;

use crate::manifest::{Manifest, OciSpec};
use tar::Entry;

/// The media types this writer uses.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// An image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// An image configuration.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// An image index.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// Why an OCI image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// A host file of the layer could not be read.
    #[error("OCI image {image}: cannot read {} for {dest}: {source}", src.display())]
    Read {
        /// The image's name.
        image: String,
        /// The host path.
        src: PathBuf,
        /// Its path in the image.
        dest: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An entry does not fit the tar format.
    #[error("OCI image {image}: {source}")]
    Tar {
        /// The image's name.
        image: String,
        /// What did not fit.
        source: tar::TarError,
    },
    /// gzip failed (in memory: only on allocation trouble).
    #[error("OCI image {image}: gzip: {source}")]
    Gzip {
        /// The image's name.
        image: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// A built image-layout archive and what it holds.
#[derive(Clone, Debug)]
pub struct OciImage {
    /// The archive (a tar of the image layout).
    pub bytes: Vec<u8>,
    /// The manifest's digest (`sha256:…`): the image's identity.
    pub manifest_digest: String,
    /// The layer's digest (compressed).
    pub layer_digest: String,
    /// The layer's diff ID (digest of the uncompressed tar).
    pub diff_id: String,
}

/// A blob's descriptor.
fn descriptor(media_type: &str, data: &[u8]) -> serde_json::Value {
    json!({"mediaType": media_type, "digest": sha256::digest(data), "size": data.len()})
}

/// The layer's entries: the spec's dirs, files and symlinks, with every
/// missing parent directory (0755), sorted by path.
fn layer_entries(manifest: &Manifest, spec: &OciSpec) -> Result<Vec<Entry>, OciError> {
    let mut tree = BTreeMap::<String, Entry>::new();
    let rel = |dest: &str| dest.trim_matches('/').to_owned();
    let parents = |tree: &mut BTreeMap<String, Entry>, path: &str| {
        let mut at = 0;
        while let Some(i) = path[at..].find('/') {
            let dir = &path[..at + i];
            tree.entry(dir.to_owned()).or_insert_with(|| Entry::Dir {
                path: dir.to_owned(),
                mode: 0o755,
            });
            at += i + 1;
        }
    };
    for d in &spec.dirs {
        let path = rel(&d.dest);
        parents(&mut tree, &path);
        let mode = d.mode.unwrap_or(0o755);
        tree.insert(path.clone(), Entry::Dir { path, mode });
    }
    for f in &spec.files {
        use std::os::unix::fs::PermissionsExt;
        let src = manifest.resolve(&f.src);
        let read_err = |source| OciError::Read {
            image: spec.name.clone(),
            src: src.clone(),
            dest: f.dest.clone(),
            source,
        };
        let data = std::fs::read(&src).map_err(read_err)?;
        let mode = match f.mode {
            Some(m) => m,
            None => {
                std::fs::metadata(&src)
                    .map_err(read_err)?
                    .permissions()
                    .mode()
                    & 0o7777
            }
        };
        let path = rel(&f.dest);
        parents(&mut tree, &path);
        tree.insert(path.clone(), Entry::File { path, mode, data });
    }
    for l in &spec.symlinks {
        let path = rel(&l.dest);
        parents(&mut tree, &path);
        let target = l.target.clone();
        tree.insert(path.clone(), Entry::Symlink { path, target });
    }
    Ok(tree.into_values().collect())
}

/// Builds the image-layout archive of `spec`, every timestamp `mtime`.
pub fn build_oci(manifest: &Manifest, spec: &OciSpec, mtime: u64) -> Result<OciImage, OciError> {
    let tar_err = |source| OciError::Tar {
        image: spec.name.clone(),
        source,
    };
    let layer_tar = tar::write(&layer_entries(manifest, spec)?, mtime).map_err(tar_err)?;
    let diff_id = sha256::digest(&layer_tar);
    // No file name and mtime 0 in the gzip header; OS byte "unknown".
    let mut gz = flate2::GzBuilder::new()
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::best());
    let gz_err = |source| OciError::Gzip {
        image: spec.name.clone(),
        source,
    };
    gz.write_all(&layer_tar).map_err(gz_err)?;
    let layer = gz.finish().map_err(gz_err)?;

    let mut env = spec.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
        );
    }
    let mut config = json!({"Env": env, "WorkingDir": spec.working_dir.as_deref().unwrap_or("/")});
    if !spec.cmd.is_empty() {
        config["Cmd"] = json!(spec.cmd);
    }
    if !spec.entrypoint.is_empty() {
        config["Entrypoint"] = json!(spec.entrypoint);
    }
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "keel-image", "comment": spec.name}],
    });
    let config = to_json(&config);
    let image_manifest = to_json(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": descriptor(CONFIG_MEDIA_TYPE, &config),
        "layers": [descriptor(LAYER_MEDIA_TYPE, &layer)],
    }));
    let (repo_tag, tag) = image_ref(&spec.name);
    let mut man_desc = descriptor(MANIFEST_MEDIA_TYPE, &image_manifest);
    man_desc["annotations"] = json!({
        "io.containerd.image.name": repo_tag,
        "org.opencontainers.image.ref.name": tag,
    });
    man_desc["platform"] = json!({"architecture": "amd64", "os": "linux"});
    let index = to_json(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [man_desc],
    }));

    let manifest_digest = sha256::digest(&image_manifest);
    let layer_digest = sha256::digest(&layer);
    let mut blobs = BTreeMap::new();
    for blob in [config, image_manifest, layer] {
        let name = sha256::digest(&blob).replace("sha256:", "blobs/sha256/");
        blobs.insert(name, blob);
    }
    let mut entries = vec![
        Entry::Dir {
            path: "blobs".into(),
            mode: 0o755,
        },
        Entry::Dir {
            path: "blobs/sha256".into(),
            mode: 0o755,
        },
    ];
    for (path, data) in blobs {
        entries.push(Entry::File {
            path,
            mode: 0o644,
            data,
        });
    }
    entries.push(Entry::File {
        path: "index.json".into(),
        mode: 0o644,
        data: index,
    });
    entries.push(Entry::File {
        path: "oci-layout".into(),
        mode: 0o644,
        data: to_json(&json!({"imageLayoutVersion": "1.0.0"})),
    });
    let bytes = tar::write(&entries, mtime).map_err(tar_err)?;
    Ok(OciImage {
        bytes,
        manifest_digest,
        layer_digest,
        diff_id,
    })
}

fn to_json(v: &serde_json::Value) -> Vec<u8> {
    // serde_json's map is a BTreeMap here: keys come out sorted.
    v.to_string().into_bytes()
}

/// `name` as (full reference, tag): `keel.local/hello:1` gives
/// (`keel.local/hello:1`, `1`); without a tag, `latest` is added.
pub fn image_ref(name: &str) -> (String, String) {
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.rsplit_once(':') {
        Some((_, tag)) if !tag.is_empty() => (name.to_owned(), tag.to_owned()),
        _ => (format!("{name}:latest"), "latest".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn manifest(dir: &Path) -> Manifest {
        std::fs::write(dir.join("hello.sh"), "echo hello\n").unwrap();
        let text = r#"name = "t"
[rootfs]
[[rootfs.oci]]
name = "keel.local/hello:1"
dest = "/usr/share/keel/oci/hello.tar"
cmd = ["/bin/sh", "/app/hello.sh"]
env = ["GREETING=hi"]
[[rootfs.oci.files]]
src = "hello.sh"
dest = "/app/hello.sh"
mode = 0o755
[[rootfs.oci.symlinks]]
dest = "/bin/sh"
target = "busybox"
[[rootfs.oci.dirs]]
dest = "/tmp"
mode = 0o1777
"#;
        Manifest::parse(text, &dir.join("t.toml")).unwrap()
    }

    fn unpack(bytes: &[u8], dir: &Path) {
        let file = dir.join("image.tar");
        std::fs::write(&file, bytes).unwrap();
        let out = dir.join("layout");
        std::fs::create_dir(&out).unwrap();
        let st = std::process::Command::new("tar")
            .arg("-xf")
            .arg(&file)
            .arg("-C")
            .arg(&out)
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn blob(layout: &Path, digest: &str) -> Vec<u8> {
        let data = std::fs::read(layout.join("blobs/sha256").join(&digest[7..])).unwrap();
        assert_eq!(
            sha256::digest(&data),
            digest,
            "the blob's name is its digest"
        );
        data
    }

    fn parse(data: &[u8]) -> serde_json::Value {
        serde_json::from_slice(data).unwrap()
    }

    #[test]
    fn a_layout_whose_digests_and_sizes_check_out() {
        let tmp = tempfile::tempdir().unwrap();
        let m = manifest(tmp.path());
        let spec = &m.rootfs.as_ref().unwrap().oci[0];
        let image = build_oci(&m, spec, 0).unwrap();
        unpack(&image.bytes, tmp.path());
        let layout = tmp.path().join("layout");
        assert_eq!(
            parse(&std::fs::read(layout.join("oci-layout")).unwrap()),
            json!({"imageLayoutVersion": "1.0.0"})
        );
        let index = parse(&std::fs::read(layout.join("index.json")).unwrap());
        let desc = &index["manifests"][0];
        assert_eq!(desc["digest"], image.manifest_digest.as_str());
        assert_eq!(
            desc["annotations"]["io.containerd.image.name"],
            "keel.local/hello:1"
        );
        assert_eq!(
            desc["annotations"]["org.opencontainers.image.ref.name"],
            "1"
        );
        let man_bytes = blob(&layout, desc["digest"].as_str().unwrap());
        assert_eq!(desc["size"], man_bytes.len());
        let man = parse(&man_bytes);
        assert_eq!(man["schemaVersion"], 2);
        let config_bytes = blob(&layout, man["config"]["digest"].as_str().unwrap());
        assert_eq!(man["config"]["size"], config_bytes.len());
        let config = parse(&config_bytes);
        assert_eq!(config["config"]["Cmd"], json!(["/bin/sh", "/app/hello.sh"]));
        assert_eq!(config["config"]["Env"][1], "GREETING=hi");
        assert_eq!(config["rootfs"]["diff_ids"][0], image.diff_id.as_str());
        let layer = blob(&layout, man["layers"][0]["digest"].as_str().unwrap());
        assert_eq!(man["layers"][0]["size"], layer.len());
        assert_eq!(man["layers"][0]["digest"], image.layer_digest.as_str());
        // The diff ID is the digest of the uncompressed layer, which holds the tree.
        let mut tar = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&layer[..]), &mut tar)
            .unwrap();
        assert_eq!(sha256::digest(&tar), image.diff_id);
        let x = tmp.path().join("layer");
        std::fs::create_dir(&x).unwrap();
        std::fs::write(tmp.path().join("layer.tar"), &tar).unwrap();
        let listing = std::process::Command::new("tar")
            .args(["--numeric-owner", "-tvf"])
            .arg(tmp.path().join("layer.tar"))
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&listing.stdout);
        let names: Vec<&str> = listing
            .lines()
            .map(|l| l.split_whitespace().nth(5).unwrap())
            .collect();
        assert_eq!(names, ["app/", "app/hello.sh", "bin/", "bin/sh", "tmp/"]);
        assert!(listing.contains("-rwxr-xr-x 0/0"), "{listing}");
        assert!(listing.contains("drwxrwxrwt 0/0"), "{listing}");
    }

    #[test]
    fn the_same_inputs_give_the_same_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let m = manifest(tmp.path());
        let spec = &m.rootfs.as_ref().unwrap().oci[0];
        let a = build_oci(&m, spec, 0).unwrap();
        let b = build_oci(&m, spec, 0).unwrap();
        assert_eq!(a.bytes, b.bytes);
        assert_ne!(a.bytes, build_oci(&m, spec, 1).unwrap().bytes);
    }

    #[test]
    fn a_missing_file_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let m = manifest(tmp.path());
        std::fs::remove_file(tmp.path().join("hello.sh")).unwrap();
        let e = build_oci(&m, &m.rootfs.as_ref().unwrap().oci[0], 0).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("keel.local/hello:1") && text.contains("hello.sh"),
            "{text}"
        );
    }

    #[test]
    fn references() {
        assert_eq!(image_ref("a/b:1"), ("a/b:1".into(), "1".into()));
        assert_eq!(image_ref("a/b"), ("a/b:latest".into(), "latest".into()));
        assert_eq!(
            image_ref("host:5000/b"),
            ("host:5000/b:latest".into(), "latest".into())
        );
    }
}
