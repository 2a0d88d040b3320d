//! Unix sockets with credentials: the sd_notify datagram socket (each
//! datagram carries the sender's pid/uid/gid via SCM_CREDENTIALS and may
//! carry file descriptors via SCM_RIGHTS) and SO_PEERCRED for the control
//! socket's stream connections.

use crate::cvt;
use std::ffi::OsStr;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A process's credentials as the kernel reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// One received datagram.
#[derive(Debug)]
pub struct Datagram {
    pub data: Vec<u8>,
    pub cred: Option<Cred>,
    pub fds: Vec<OwnedFd>,
}

/// A non-blocking SOCK_DGRAM unix socket with SO_PASSCRED on.
pub struct NotifySocket {
    fd: OwnedFd,
}

/// Builds a sockaddr_un for a path, or an abstract name when it starts with
/// `@` (as NOTIFY_SOCKET writes it).
fn sockaddr(name: &OsStr) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = name.as_bytes();
    let (bytes, abstract_) = match bytes.first() {
        Some(b'@') => (&bytes[1..], true),
        _ => (bytes, false),
    };
    let offset = usize::from(abstract_);
    if bytes.len() + offset >= addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path too long",
        ));
    }
    for (i, b) in bytes.iter().enumerate() {
        addr.sun_path[i + offset] = *b as libc::c_char;
    }
    let base = size_of::<libc::sa_family_t>();
    let len = base + offset + bytes.len() + usize::from(!abstract_);
    Ok((addr, len as libc::socklen_t))
}

impl NotifySocket {
    /// Binds a datagram socket at `name` (a path, replaced if it exists, or
    /// `@abstract`).
    pub fn bind(name: &Path) -> io::Result<NotifySocket> {
        if !name.as_os_str().as_bytes().starts_with(b"@") {
            let _ = std::fs::remove_file(name);
        }
        // SAFETY: socket takes constants only; the fd is new.
        let fd = crate::owned(cvt(unsafe {
            libc::socket(
                libc::AF_UNIX,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        })?);
        let (addr, len) = sockaddr(name.as_os_str())?;
        // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                len,
            )
        })?;
        let one: libc::c_int = 1;
        // SAFETY: SO_PASSCRED takes an int; the pointer and size match it.
        cvt(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PASSCRED,
                (&one as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        })?;
        Ok(NotifySocket { fd })
    }

    /// Receives one datagram, or `None` when there is none waiting.
    pub fn recv(&self) -> io::Result<Option<Datagram>> {
        let mut buf = vec![0u8; 4096];
        // Room for one ucred and up to 32 fds.
        let mut cbuf = [0u64; 64];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain data; all-zero is valid before we fill it.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
        // SAFETY: every pointer in `msg` points into live buffers of the
        // lengths given.
        let n = unsafe {
            libc::recvmsg(
                self.fd.as_raw_fd(),
                &mut msg,
                libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC | libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(None),
                io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        let n = usize::try_from(n).unwrap_or(0).min(buf.len());
        buf.truncate(n);
        let mut cred = None;
        let mut fds = Vec::new();
        // SAFETY: the CMSG_* macros walk the control buffer the kernel
        // filled, within msg_controllen; each payload is read unaligned.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                let h = &*c;
                let data = libc::CMSG_DATA(c);
                if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_CREDENTIALS {
                    let u: libc::ucred = std::ptr::read_unaligned(data.cast());
                    cred = Some(Cred {
                        pid: u.pid,
                        uid: u.uid,
                        gid: u.gid,
                    });
                } else if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_RIGHTS {
                    let payload = h.cmsg_len as usize - (data as usize - c as usize);
                    for i in 0..payload / size_of::<RawFd>() {
                        let fd: RawFd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                        fds.push(crate::owned(fd));
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        Ok(Some(Datagram {
            data: buf,
            cred,
            fds,
        }))
    }
}

impl AsRawFd for NotifySocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Sends one datagram to the unix socket `to` (a path or `@abstract`),
/// passing `fds` along with SCM_RIGHTS. The sender's credentials go with it
/// (the receiver has SO_PASSCRED on).
pub fn send_datagram(to: &Path, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    // SAFETY: socket takes constants only; the fd is new.
    let sock = crate::owned(cvt(unsafe {
        libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
    })?);
    let (mut addr, addr_len) = sockaddr(to.as_os_str())?;
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut cbuf = [0u64; 32];
    // SAFETY: msghdr is plain data; all-zero is valid before we fill it.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = (&mut addr as *mut libc::sockaddr_un).cast();
    msg.msg_namelen = addr_len;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let payload = std::mem::size_of_val(fds);
        // SAFETY: CMSG_SPACE is a pure size computation.
        let space = unsafe { libc::CMSG_SPACE(payload as u32) } as usize;
        if space > std::mem::size_of_val(&cbuf) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many fds"));
        }
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: the control buffer has room for one header with `payload`
        // bytes (checked above); the fds are copied into it unaligned.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(payload as u32) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(c), payload);
        }
    }
    // SAFETY: `msg` points into live buffers of the lengths given.
    cvt(unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) })?;
    Ok(())
}

/// The credentials of the peer of a connected unix stream socket.
pub fn peer_cred(fd: RawFd) -> io::Result<Cred> {
    // SAFETY: ucred is plain data; all-zero is valid.
    let mut u: libc::ucred = unsafe { zeroed() };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `u` and `len` describe a writable ucred, as SO_PEERCRED needs.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut u as *mut libc::ucred).cast(),
            &mut len,
        )
    })?;
    Ok(Cred {
        pid: u.pid,
        uid: u.uid,
        gid: u.gid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::{UnixDatagram, UnixStream};

    #[test]
    fn datagrams_carry_the_senders_credentials() {
        let dir = std::env::temp_dir().join(format!("keel-sock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let s = NotifySocket::bind(&path).unwrap();
        assert!(s.recv().unwrap().is_none());
        let c = UnixDatagram::unbound().unwrap();
        c.send_to(b"READY=1\nSTATUS=ok", &path).unwrap();
        let d = s.recv().unwrap().unwrap();
        assert_eq!(d.data, b"READY=1\nSTATUS=ok");
        let cred = d.cred.unwrap();
        assert_eq!(cred.pid, std::process::id() as i32);
        assert_eq!(cred.uid, crate::getuid());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn abstract_names_work() {
        let name = format!("@keel-test-{}", std::process::id());
        let s = NotifySocket::bind(Path::new(&name)).unwrap();
        let c = UnixDatagram::unbound().unwrap();
        let (addr, _) = sockaddr(OsStr::new(&name)).unwrap();
        assert_eq!(addr.sun_path[0], 0);
        use std::os::linux::net::SocketAddrExt;
        let a = std::os::unix::net::SocketAddr::from_abstract_name(&name.as_bytes()[1..]).unwrap();
        c.send_to_addr(b"X=1", &a).unwrap();
        assert_eq!(s.recv().unwrap().unwrap().data, b"X=1");
    }

    #[test]
    fn sent_fds_arrive() {
        let name = format!("@keel-test-fds-{}", std::process::id());
        let s = NotifySocket::bind(Path::new(&name)).unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        send_datagram(Path::new(&name), b"FDSTORE=1", &[a.as_raw_fd()]).unwrap();
        let d = s.recv().unwrap().unwrap();
        assert_eq!(d.data, b"FDSTORE=1");
        assert_eq!(d.fds.len(), 1);
        assert_eq!(d.cred.unwrap().pid, std::process::id() as i32);
    }

    #[test]
    fn peer_cred_of_a_socketpair_is_us() {
        let (a, _b) = UnixStream::pair().unwrap();
        let c = peer_cred(a.as_raw_fd()).unwrap();
        assert_eq!(c.pid, std::process::id() as i32);
    }
}
