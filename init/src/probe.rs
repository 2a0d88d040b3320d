//! `keel probe`: the tcp and http readiness and health probes, run by the
//! supervisor as child processes so that PID 1 never waits on a peer.
//! Exit 0 when the probe passed, 1 when it failed (with the reason on
//! stderr), 100 on bad usage.
//!
//! - `keel probe tcp ADDR TIMEOUT_MS`: a TCP connection can be made.
//! - `keel probe http ADDR HOST PATH TIMEOUT_MS`: `GET PATH` answers 2xx/3xx.

use crate::exit;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

fn tcp(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))
}

fn http(addr: SocketAddr, host: &str, path: &str, timeout: Duration) -> Result<u16, String> {
    let mut s = tcp(addr, timeout)?;
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    let req = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: keel-probe\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut head = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(format!("read from {addr}: {e}")),
        }
    }
    parse_status(&head[..got]).ok_or_else(|| format!("{addr}: not an HTTP response"))
}

/// The status code of an HTTP/1.x status line.
fn parse_status(head: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(head).ok()?;
    let mut parts = text.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.get(..3)?.parse().ok()
}

pub fn main(args: &[String]) -> u8 {
    let ms = |s: &String| s.parse::<u64>().ok().map(Duration::from_millis);
    let result = match args {
        [kind, addr, t] if kind == "tcp" => match (addr.parse(), ms(t)) {
            (Ok(a), Some(t)) => tcp(a, t).map(|_| ()),
            _ => return exit::USAGE,
        },
        [kind, addr, host, path, t] if kind == "http" => match (addr.parse(), ms(t)) {
            (Ok(a), Some(t)) => http(a, host, path, t).and_then(|code| {
                if (200..400).contains(&code) {
                    Ok(())
                } else {
                    Err(format!("GET http://{host}{path} answered {code}"))
                }
            }),
            _ => return exit::USAGE,
        },
        _ => {
            eprintln!("usage: keel probe tcp ADDR MS | keel probe http ADDR HOST PATH MS");
            return exit::USAGE;
        }
    };
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("keel probe: {e}");
            exit::FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.0 503 Service"), Some(503));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH"), None);
    }

    #[test]
    fn probes_a_real_listener() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 512];
            let n = s.read(&mut buf).unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("GET /health HTTP/1.0"));
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        });
        assert_eq!(
            http(addr, "localhost", "/health", Duration::from_secs(2)),
            Ok(204)
        );
        server.join().unwrap();
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(tcp(closed, Duration::from_millis(500)).is_err());
    }
}
