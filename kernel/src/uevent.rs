//! Kernel uevents over netlink (NETLINK_KOBJECT_UEVENT, multicast group 1):
//! how stage 1 learns that a disk or partition appeared without udev. The
//! socket is opened before modules are loaded, so no event is missed
//! between a scan of /sys/class/block and the wait.

use crate::{cvt, owned};
use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// One kernel event, e.g. `add` of `/devices/.../block/vda/vda1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uevent {
    /// `add`, `remove`, `change`, `bind`, ...
    pub action: String,
    /// The sysfs path below /sys.
    pub devpath: String,
    /// Every `KEY=value` of the message (SUBSYSTEM, DEVNAME, DEVTYPE, PARTNAME, ...).
    pub vars: BTreeMap<String, String>,
}

impl Uevent {
    /// A variable's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }
}

/// Parses one kernel uevent datagram: `ACTION@DEVPATH\0KEY=value\0...`.
/// Messages from udev (`libudev\0` + binary header) are not kernel events
/// and give `None`.
pub fn parse(buf: &[u8]) -> Option<Uevent> {
    let mut fields = buf.split(|&b| b == 0).filter(|f| !f.is_empty());
    let head = std::str::from_utf8(fields.next()?).ok()?;
    let (action, devpath) = head.split_once('@')?;
    let vars = fields
        .filter_map(|f| std::str::from_utf8(f).ok())
        .filter_map(|f| f.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Some(Uevent {
        action: action.to_string(),
        devpath: devpath.to_string(),
        vars,
    })
}

/// A non-blocking netlink socket subscribed to kernel uevents.
pub struct UeventSocket {
    fd: OwnedFd,
}

impl UeventSocket {
    /// Opens and binds the socket (any process may listen).
    pub fn open() -> io::Result<UeventSocket> {
        // SAFETY: socket(2) with constant arguments.
        let fd = cvt(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_KOBJECT_UEVENT,
            )
        })?;
        let fd = owned(fd);
        // A burst of events at module load must not overflow the queue.
        let size: libc::c_int = 1 << 20;
        // SAFETY: the option value points to a c_int of the given length.
        let _ = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        // SAFETY: sockaddr_nl is plain data; all-zero is valid.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = 1;
        // SAFETY: `addr` is a valid sockaddr_nl of the given length.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        })?;
        Ok(UeventSocket { fd })
    }

    /// Waits up to `timeout_ms` for the next event. `Ok(None)`: none came.
    pub fn recv(&self, timeout_ms: i32) -> io::Result<Option<Uevent>> {
        loop {
            if let Some(ev) = self.try_recv()? {
                return Ok(Some(ev));
            }
            if !crate::fs::wait_readable(self.fd.as_raw_fd(), timeout_ms)? {
                return Ok(None);
            }
            if let Some(ev) = self.try_recv()? {
                return Ok(Some(ev));
            }
            // Readable but not a kernel event (or it raced): wait again,
            // but do not extend the caller's bound by more than one round.
            if timeout_ms == 0 {
                return Ok(None);
            }
        }
    }

    /// One event if one is queued.
    fn try_recv(&self) -> io::Result<Option<Uevent>> {
        let mut buf = vec![0u8; 8192];
        loop {
            // SAFETY: `buf` is valid and writable for its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            match cvt(n) {
                Ok(n) => {
                    if let Some(ev) = parse(&buf[..n as usize]) {
                        return Ok(Some(ev));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // ENOBUFS: events were dropped; the caller rescans sysfs anyway.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_kernel_event() {
        let msg = b"add@/devices/pci0000:00/0000:00:03.0/virtio0/block/vda/vda1\0\
            ACTION=add\0DEVPATH=/devices/x\0SUBSYSTEM=block\0DEVNAME=vda1\0\
            DEVTYPE=partition\0PARTN=1\0PARTNAME=KEEL-A\0SEQNUM=812\0";
        let ev = parse(msg).unwrap();
        assert_eq!(ev.action, "add");
        assert!(ev.devpath.ends_with("/vda/vda1"));
        assert_eq!(ev.get("PARTNAME"), Some("KEEL-A"));
        assert_eq!(ev.get("SUBSYSTEM"), Some("block"));
        assert_eq!(parse(b"libudev\0\xfe\xed"), None);
        assert_eq!(parse(b""), None);
    }

    #[test]
    fn a_synthetic_event_arrives() {
        let s = UeventSocket::open().unwrap();
        let _ = s.recv(0).unwrap();
        // As root, writing "change" to a device's uevent file makes the
        // kernel send an event; where sysfs is read-only there is none.
        let path = "/sys/devices/virtual/mem/null/uevent";
        if crate::fs::write_file(std::path::Path::new(path), "change").is_err() {
            return;
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Some(ev) = s.recv(500).unwrap() {
                if ev.get("DEVNAME") == Some("null") {
                    assert_eq!(ev.action, "change");
                    return;
                }
            }
        }
        panic!("no uevent for /dev/null after writing {path}");
    }
}
