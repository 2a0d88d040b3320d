//! `keel agent`: the machine takes its units from etcd. It reads and then
//! watches the prefix `/keel/hosts/HOSTNAME/units/` through etcd's v3 JSON
//! gateway on loopback, writes each valid unit to the units directory
//! (/run/keel/units), removes the ones deleted from etcd, and asks keel to
//! reload. An invalid unit is reported with its key and its diagnostics and
//! changes nothing.
//!
//! The HTTP/1.1 and base64 it needs are written out here (a few dozen
//! lines) rather than pulled in as crates: this runs inside the static PID 1
//! binary.

use crate::exit;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

/// The file listing the units this agent wrote (so it never removes files
/// it did not write).
const MANAGED: &str = ".keel-agent";

struct Options {
    endpoint: String,
    prefix: String,
    units_dir: PathBuf,
    control: PathBuf,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut endpoint = "127.0.0.1:2379".to_string();
    let mut hostname = None;
    let mut units_dir = PathBuf::from("/run/keel/units");
    let mut control = PathBuf::from("/run/keel/control.sock");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--endpoint" => endpoint = val()?,
            "--hostname" => hostname = Some(val()?),
            "--units-dir" => units_dir = PathBuf::from(val()?),
            "--control" => control = PathBuf::from(val()?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let hostname = match hostname {
        Some(h) => h,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("cannot read the hostname: {e}"))?,
    };
    Ok(Options {
        endpoint,
        prefix: format!("/keel/hosts/{hostname}/units/"),
        units_dir,
        control,
    })
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        if c == b'=' {
            break;
        }
        let v = B64.iter().position(|x| *x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The end of the key range `prefix*` (the prefix with its last byte + 1).
fn range_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

/// POSTs JSON and returns a reader positioned at the body (chunked
/// encoding decoded).
fn post(endpoint: &str, path: &str, body: &Value) -> Result<Box<dyn BufRead>, String> {
    // An address, not a name: PID 1 resolves no names (and so links no
    // resolver).
    let addr: std::net::SocketAddr = endpoint
        .parse()
        .map_err(|_| format!("{endpoint}: not an IP address and port"))?;
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {endpoint}: {e}"))?;
    let body = body.to_string();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {endpoint}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("send to {endpoint}: {e}"))?;
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).map_err(|e| e.to_string())?;
    if !status
        .split_whitespace()
        .nth(1)
        .is_some_and(|c| c.starts_with('2'))
    {
        return Err(format!("{path}: {}", status.trim()));
    }
    let mut chunked = false;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).map_err(|e| e.to_string())? == 0 || h.trim().is_empty() {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    if chunked {
        Ok(Box::new(BufReader::new(Chunked {
            inner: r,
            left: 0,
            done: false,
        })))
    } else {
        Ok(Box::new(r))
    }
}

/// A reader of HTTP/1.1 chunked transfer encoding.
struct Chunked<R> {
    inner: R,
    left: usize,
    done: bool,
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            self.inner.read_line(&mut line)?;
            if line.trim().is_empty() {
                // The CRLF after a chunk.
                line.clear();
                self.inner.read_line(&mut line)?;
            }
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk"))?;
            if size == 0 {
                self.done = true;
                return Ok(0);
            }
            self.left = size;
        }
        let n = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..n])?;
        self.left -= n;
        Ok(n)
    }
}

struct Agent {
    o: Options,
    managed: BTreeSet<String>,
}

impl Agent {
    /// The unit name a key stands for, if it is one.
    fn unit_of(&self, key: &str) -> Option<String> {
        let name = key.strip_prefix(&self.o.prefix)?;
        let name = name.strip_suffix(".toml").unwrap_or(name);
        keel_units::valid_unit_name(name).then(|| name.to_string())
    }

    /// Writes one unit from etcd, if valid. Returns whether anything changed.
    fn put(&mut self, key: &str, value: &[u8]) -> bool {
        let Some(name) = self.unit_of(key) else {
            log::error!("key {key}: not a valid unit name; ignored");
            return false;
        };
        let path = self.o.units_dir.join(format!("{name}.toml"));
        let text = String::from_utf8_lossy(value).into_owned();
        if let Err(diags) = keel_units::parse_unit(&name, &path, &text) {
            for d in diags.iter().filter(|d| d.is_error()) {
                log::error!("key {key}: {d}");
            }
            return false;
        }
        if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
            self.managed.insert(name);
            return false;
        }
        let tmp = path.with_extension("toml.tmp");
        let written = std::fs::create_dir_all(&self.o.units_dir)
            .and_then(|_| std::fs::write(&tmp, &text))
            .and_then(|_| std::fs::rename(&tmp, &path));
        match written {
            Ok(()) => {
                log::info!("unit {name} from {key}");
                self.managed.insert(name);
                true
            }
            Err(e) => {
                log::error!("cannot write {}: {e}", path.display());
                false
            }
        }
    }

    fn delete(&mut self, name: &str) -> bool {
        if !self.managed.remove(name) {
            return false;
        }
        let path = self.o.units_dir.join(format!("{name}.toml"));
        log::info!("unit {name} deleted from etcd");
        std::fs::remove_file(path).is_ok()
    }

    fn save_managed(&self) {
        let list: Vec<&str> = self.managed.iter().map(String::as_str).collect();
        let _ = std::fs::write(self.o.units_dir.join(MANAGED), list.join("\n"));
    }

    fn reload(&self) {
        let req = json!({"op": "reload"}).to_string() + "\n";
        let answer = std::os::unix::net::UnixStream::connect(&self.o.control).and_then(|mut s| {
            s.write_all(req.as_bytes())?;
            let mut line = String::new();
            BufReader::new(s).read_line(&mut line)?;
            Ok(line)
        });
        match answer {
            Ok(a) => log::info!("reloaded: {}", a.trim()),
            Err(e) => log::error!(
                "cannot ask keel to reload ({}): {e}",
                self.o.control.display()
            ),
        }
    }

    /// Reads the whole prefix, makes the directory match, returns the
    /// revision to watch from.
    fn sync(&mut self) -> Result<i64, String> {
        let body = json!({
            "key": b64_encode(self.o.prefix.as_bytes()),
            "range_end": b64_encode(&range_end(&self.o.prefix)),
        });
        let mut r = post(&self.o.endpoint, "/v3/kv/range", &body)?;
        let mut text = String::new();
        r.read_to_string(&mut text).map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("range: {e}"))?;
        let rev = v["header"]["revision"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        let mut changed = false;
        let mut seen = BTreeSet::new();
        for kv in v["kvs"].as_array().into_iter().flatten() {
            let key = kv["key"].as_str().and_then(b64_decode).unwrap_or_default();
            let key = String::from_utf8_lossy(&key).into_owned();
            let value = kv["value"]
                .as_str()
                .and_then(b64_decode)
                .unwrap_or_default();
            if let Some(name) = self.unit_of(&key) {
                seen.insert(name);
            }
            changed |= self.put(&key, &value);
        }
        let stale: Vec<String> = self.managed.difference(&seen).cloned().collect();
        for name in stale {
            changed |= self.delete(&name);
        }
        self.save_managed();
        if changed {
            self.reload();
        }
        Ok(rev)
    }

    /// Watches from `rev` until the stream ends.
    fn watch(&mut self, rev: i64) -> Result<(), String> {
        let body = json!({"create_request": {
            "key": b64_encode(self.o.prefix.as_bytes()),
            "range_end": b64_encode(&range_end(&self.o.prefix)),
            "start_revision": (rev + 1).to_string(),
        }});
        let r = post(&self.o.endpoint, "/v3/watch", &body)?;
        for line in r.lines() {
            let line = line.map_err(|e| e.to_string())?;
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let mut changed = false;
            for ev in v["result"]["events"].as_array().into_iter().flatten() {
                let key = ev["kv"]["key"]
                    .as_str()
                    .and_then(b64_decode)
                    .unwrap_or_default();
                let key = String::from_utf8_lossy(&key).into_owned();
                if ev["type"].as_str() == Some("DELETE") {
                    if let Some(name) = self.unit_of(&key) {
                        changed |= self.delete(&name);
                    }
                } else {
                    let value = ev["kv"]["value"]
                        .as_str()
                        .and_then(b64_decode)
                        .unwrap_or_default();
                    changed |= self.put(&key, &value);
                }
            }
            if changed {
                self.save_managed();
                self.reload();
            }
        }
        Ok(())
    }
}

pub fn main(args: &[String]) -> u8 {
    keel_kernel::kmsg::init(&keel_kernel::kmsg::LogConfig {
        kmsg: false,
        level: log::LevelFilter::Info,
    });
    let o = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("keel agent: {e}");
            return exit::USAGE;
        }
    };
    let managed = std::fs::read_to_string(o.units_dir.join(MANAGED))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .filter(|s| !s.is_empty())
        .collect();
    let mut agent = Agent { o, managed };
    log::info!("watching {} on {}", agent.o.prefix, agent.o.endpoint);
    loop {
        match agent.sync().and_then(|rev| agent.watch(rev)) {
            Ok(()) => log::warn!("the watch ended; starting again"),
            Err(e) => log::error!("{e}; retrying in 1s"),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for s in ["", "a", "ab", "abc", "/keel/hosts/h/units/", "x\u{0}y"] {
            assert_eq!(b64_decode(&b64_encode(s.as_bytes())).unwrap(), s.as_bytes());
        }
        assert_eq!(b64_encode(b"/keel"), "L2tlZWw=");
        assert_eq!(range_end("/a/"), b"/a0".to_vec());
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        let raw = b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n";
        let mut c = Chunked {
            inner: BufReader::new(&raw[..]),
            left: 0,
            done: false,
        };
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello, world");
    }
}
