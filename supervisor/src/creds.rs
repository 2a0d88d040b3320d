//! Users and groups by name, read from the image's /etc/passwd and
//! /etc/group (no NSS in a static PID 1). The files are parameters so tests
//! can hand in their own.

use std::path::{Path, PathBuf};

/// A user or group that could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum CredsError {
    #[error("unknown user {name:?} (not in {file})")]
    UnknownUser { name: String, file: PathBuf },
    #[error("unknown group {name:?} (not in {file})")]
    UnknownGroup { name: String, file: PathBuf },
}

/// A resolved identity for a child process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

fn field_lines(file: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').map(str::to_string).collect())
        .collect()
}

/// Looks up `name` (or a numeric id) in a passwd file: (uid, primary gid).
pub fn lookup_user(passwd: &Path, name: &str) -> Result<(u32, u32), CredsError> {
    for f in field_lines(passwd) {
        if f.len() >= 4 && (f[0] == name || f[2] == name) {
            if let (Ok(uid), Ok(gid)) = (f[2].parse(), f[3].parse()) {
                return Ok((uid, gid));
            }
        }
    }
    if let Ok(uid) = name.parse::<u32>() {
        return Ok((uid, uid));
    }
    Err(CredsError::UnknownUser {
        name: name.to_string(),
        file: passwd.to_path_buf(),
    })
}

/// Looks up a group by name or number.
pub fn lookup_group(group: &Path, name: &str) -> Result<u32, CredsError> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    for f in field_lines(group) {
        if f.len() >= 3 && f[0] == name {
            if let Ok(gid) = f[2].parse() {
                return Ok(gid);
            }
        }
    }
    Err(CredsError::UnknownGroup {
        name: name.to_string(),
        file: group.to_path_buf(),
    })
}

/// The groups that list `user` as a member (supplementary groups).
pub fn member_groups(group: &Path, user: &str) -> Vec<u32> {
    field_lines(group)
        .into_iter()
        .filter(|f| f.len() >= 4 && f[3].split(',').any(|m| m == user))
        .filter_map(|f| f[2].parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_users_and_groups() {
        let d = std::env::temp_dir().join(format!("keel-creds-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("passwd"),
            "root:x:0:0:root:/root:/bin/sh\netcd:x:101:102::/var/lib/etcd:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            d.join("group"),
            "root:x:0:\netcd:x:102:\ndisk:x:6:etcd,bob\n",
        )
        .unwrap();
        assert_eq!(lookup_user(&d.join("passwd"), "etcd").unwrap(), (101, 102));
        assert_eq!(lookup_user(&d.join("passwd"), "0").unwrap(), (0, 0));
        assert_eq!(
            lookup_user(&d.join("passwd"), "4242").unwrap(),
            (4242, 4242)
        );
        let e = lookup_user(&d.join("passwd"), "nobody").unwrap_err();
        assert!(e.to_string().contains("nobody") && e.to_string().contains("passwd"));
        assert_eq!(lookup_group(&d.join("group"), "disk").unwrap(), 6);
        assert!(lookup_group(&d.join("group"), "wheel").is_err());
        assert_eq!(member_groups(&d.join("group"), "etcd"), vec![6]);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
