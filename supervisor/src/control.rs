//! The control socket: a unix stream socket speaking JSON lines. One request
//! per connection (`{"op":"status","unit":"etcd"}`), one reply; `logs` with
//! `"follow": true` keeps the connection and streams new lines. Callers are
//! identified with SO_PEERCRED: anyone may read (status, logs), only root
//! may change state (start, stop, restart, reload, poweroff, reboot, halt).

use crate::runtime::{Request, Supervisor, TOKEN_CONN};
use crate::service::{Event, State};
use crate::timeline::Mark;
use keel_kernel::clock::boottime;
use keel_kernel::socket::{peer_cred, Cred};
use serde_json::{json, Value};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

/// A request longer than this is refused.
const MAX_REQUEST: usize = 64 * 1024;

/// Binds the control socket (replacing a stale one), readable and writable
/// by everyone: the peer's credentials decide what it may do.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path)?;
    l.set_nonblocking(true)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(l)
}

/// One client connection.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: UnixStream,
    cred: Cred,
    buf: Vec<u8>,
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Status(Option<String>),
    Start(String),
    Stop(String),
    Restart(String),
    Reload(String),
    /// Reread the unit directories.
    ReloadUnits,
    Logs {
        unit: String,
        lines: usize,
        follow: bool,
    },
    Power(String),
}

impl Op {
    /// Parses one request line.
    pub fn parse(line: &str) -> Result<Op, String> {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("bad request: {e}"))?;
        let op = v
            .get("op")
            .and_then(Value::as_str)
            .ok_or("request without \"op\"")?;
        let unit = v.get("unit").and_then(Value::as_str).map(str::to_string);
        let need = || unit.clone().ok_or_else(|| format!("{op} needs a unit"));
        Ok(match op {
            "status" => Op::Status(unit),
            "start" => Op::Start(need()?),
            "stop" => Op::Stop(need()?),
            "restart" => Op::Restart(need()?),
            "reload" => match unit {
                Some(u) => Op::Reload(u),
                None => Op::ReloadUnits,
            },
            "logs" => Op::Logs {
                unit: need()?,
                lines: v.get("lines").and_then(Value::as_u64).unwrap_or(0) as usize,
                follow: v.get("follow").and_then(Value::as_bool).unwrap_or(false),
            },
            "poweroff" | "reboot" | "halt" => Op::Power(op.to_string()),
            other => return Err(format!("unknown op {other:?}")),
        })
    }

    /// Whether the op changes state (root only).
    pub fn mutates(&self) -> bool {
        !matches!(self, Op::Status(_) | Op::Logs { .. })
    }
}

fn ms(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

fn mark_name(m: &Mark) -> (&'static str, Option<String>) {
    match m {
        Mark::Started => ("started", None),
        Mark::Execd { pid } => ("execd", Some(pid.to_string())),
        Mark::Ready => ("ready", None),
        Mark::Exited { status } => ("exited", Some(status.clone())),
        Mark::Failed { reason } => ("failed", Some(reason.clone())),
        Mark::Restarting { delay } => ("restarting", Some(keel_units::format_duration(*delay))),
        Mark::Stopping => ("stopping", None),
        Mark::Stopped => ("stopped", None),
    }
}

impl Supervisor {
    pub(crate) fn on_accept(&mut self) {
        loop {
            let Some(l) = &self.control else { return };
            let stream = match l.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::warn!("control socket: accept failed: {e}");
                    return;
                }
            };
            let Ok(cred) = peer_cred(stream.as_raw_fd()) else {
                continue;
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            if self.epoll.add(stream.as_raw_fd(), TOKEN_CONN | id).is_err() {
                continue;
            }
            self.conns.insert(
                id,
                Conn {
                    stream,
                    cred,
                    buf: Vec::new(),
                },
            );
        }
    }

    /// A connection is readable: read the request, answer it.
    pub(crate) fn on_conn(&mut self, id: u64, host: &mut dyn crate::Host) -> Option<Request> {
        let mut chunk = [0u8; 4096];
        let mut eof = false;
        {
            let conn = self.conns.get_mut(&id)?;
            loop {
                match conn.stream.read(&mut chunk) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => conn.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        eof = true;
                        break;
                    }
                }
                if conn.buf.len() > MAX_REQUEST {
                    break;
                }
            }
        }
        let following = self.followers.iter().any(|(_, c)| *c == id);
        let conn = self.conns.get(&id)?;
        let Some(nl) = conn.buf.iter().position(|b| *b == b'\n') else {
            if eof || conn.buf.len() > MAX_REQUEST || following {
                self.close_conn(id);
            }
            return None;
        };
        if following {
            return None;
        }
        let line = String::from_utf8_lossy(&conn.buf[..nl]).into_owned();
        let cred = conn.cred;
        let (reply, follow, power) = match Op::parse(&line) {
            Err(e) => (json!({"ok": false, "error": e}), None, None),
            Ok(op) if op.mutates() && cred.uid != 0 => (
                json!({"ok": false, "error": format!("permission denied: uid {} may only read status and logs", cred.uid)}),
                None,
                None,
            ),
            Ok(op) => self.handle(op, host),
        };
        let mut text = reply.to_string();
        text.push('\n');
        let conn = self.conns.get_mut(&id)?;
        let _ = conn.stream.set_nonblocking(false);
        let _ = conn.stream.set_write_timeout(Some(Duration::from_secs(1)));
        let sent = conn.stream.write_all(text.as_bytes()).is_ok();
        match follow {
            Some(unit) if sent => {
                let _ = conn.stream.set_nonblocking(true);
                conn.buf.clear();
                self.followers.push((unit, id));
            }
            _ => self.close_conn(id),
        }
        power
    }

    fn close_conn(&mut self, id: u64) {
        if let Some(c) = self.conns.remove(&id) {
            let _ = self.epoll.delete(c.stream.as_raw_fd());
        }
        self.followers.retain(|(_, c)| *c != id);
    }

    /// New lines of `unit` to its followers; a follower that cannot keep up
    /// is dropped, never waited for.
    pub(crate) fn send_to_followers(&mut self, unit: &str, lines: &[String]) {
        let ids: Vec<u64> = self
            .followers
            .iter()
            .filter(|(u, _)| u == unit)
            .map(|(_, c)| *c)
            .collect();
        for id in ids {
            let mut text = String::new();
            for l in lines {
                text.push_str(&json!({ "line": l }).to_string());
                text.push('\n');
            }
            let ok = self
                .conns
                .get_mut(&id)
                .is_some_and(|c| c.stream.write_all(text.as_bytes()).is_ok());
            if !ok {
                self.close_conn(id);
            }
        }
    }

    fn handle(
        &mut self,
        op: Op,
        host: &mut dyn crate::Host,
    ) -> (Value, Option<String>, Option<Request>) {
        let known = |s: &Self, u: &str| s.units.contains_key(u);
        match op {
            Op::Status(None) => {
                let units: Vec<Value> = self
                    .units
                    .keys()
                    .map(|n| self.unit_status(n, false))
                    .collect();
                (
                    json!({"ok": true, "now_ms": ms(boottime()), "units": units}),
                    None,
                    None,
                )
            }
            Op::Status(Some(u)) if known(self, &u) => (
                json!({"ok": true, "now_ms": ms(boottime()), "units": [self.unit_status(&u, true)]}),
                None,
                None,
            ),
            Op::Start(u) if known(self, &u) => {
                self.restart_pending.remove(&u);
                self.feed(&u, Event::Start { manual: true });
                (
                    json!({"ok": true, "state": self.state_name(&u)}),
                    None,
                    None,
                )
            }
            Op::Stop(u) if known(self, &u) => {
                self.restart_pending.remove(&u);
                self.fdstore.remove(&u);
                self.feed(&u, Event::Stop);
                (
                    json!({"ok": true, "state": self.state_name(&u)}),
                    None,
                    None,
                )
            }
            Op::Restart(u) if known(self, &u) => {
                let running = self
                    .services
                    .get(&u)
                    .is_some_and(|s| s.state.pid().is_some());
                if running {
                    self.restart_pending.insert(u.clone());
                    self.feed(&u, Event::Stop);
                } else {
                    self.feed(&u, Event::Start { manual: true });
                }
                (
                    json!({"ok": true, "state": self.state_name(&u)}),
                    None,
                    None,
                )
            }
            Op::Reload(u) if known(self, &u) => {
                self.feed(&u, Event::Reload);
                (
                    json!({"ok": true, "state": self.state_name(&u)}),
                    None,
                    None,
                )
            }
            Op::ReloadUnits => {
                let s = self.reload_from_dirs();
                (
                    json!({"ok": true, "added": s.added, "removed": s.removed,
                           "changed": s.changed, "problems": s.problems}),
                    None,
                    None,
                )
            }
            Op::Logs {
                unit,
                lines,
                follow,
            } if known(self, &unit) => {
                let tail = self
                    .logs
                    .get(&unit)
                    .map(|l| l.tail(lines))
                    .unwrap_or_default();
                (
                    json!({"ok": true, "lines": tail}),
                    follow.then_some(unit),
                    None,
                )
            }
            Op::Power(action) => {
                let req = host.power(&action);
                (json!({"ok": req.is_some(), "action": action}), None, req)
            }
            Op::Status(Some(u))
            | Op::Start(u)
            | Op::Stop(u)
            | Op::Restart(u)
            | Op::Reload(u)
            | Op::Logs { unit: u, .. } => (
                json!({"ok": false, "error": format!("no unit named {u:?}")}),
                None,
                None,
            ),
        }
    }

    fn state_name(&self, unit: &str) -> &'static str {
        self.services
            .get(unit)
            .map_or("unknown", |s| s.state.name())
    }

    /// A unit's status as JSON; `detail` adds its events and last log lines.
    pub fn unit_status(&self, name: &str, detail: bool) -> Value {
        let svc = self.services.get(name);
        let unit = self.units.get(name);
        let state = svc.map(|s| &s.state);
        let reason = match state {
            Some(State::Failed { reason } | State::CrashLoop { reason }) => Some(reason.clone()),
            _ => None,
        };
        let mut v = json!({
            "name": name,
            "description": unit.and_then(|u| u.description.clone()),
            "state": state.map_or("unknown", State::name),
            "pid": state.and_then(State::pid),
            "since_ms": self.changed.get(name).map(|d| ms(*d)),
            "restarts": svc.map_or(0, |s| s.restarts),
            "last_exit": svc.and_then(|s| s.last_exit.clone()),
            "status": self.status.get(name),
            "errno": self.errno.get(name),
            "error": self.errno.get(name).map(|&e| keel_kernel::errno_text(e)),
            "reason": reason,
            "ready_ms": self.timeline.ready_at(name).map(ms),
            "waited_for": self.timeline.waited_for.get(name).cloned().flatten(),
        });
        if detail {
            let events: Vec<Value> = self
                .timeline
                .events
                .iter()
                .filter(|e| e.unit == name)
                .map(|e| {
                    let (what, info) = mark_name(&e.mark);
                    json!({"at_ms": ms(e.at), "event": what, "info": info})
                })
                .collect();
            let tail = self.logs.get(name).map(|l| l.tail(10)).unwrap_or_default();
            v["events"] = json!(events);
            v["log_tail"] = json!(tail);
            v["cgroup"] = json!(self.cgroups.get(name).map(|c| c.path.display().to_string()));
        }
        v
    }

    /// Continues a `keel restart` once the unit is down.
    pub(crate) fn continue_restart(&mut self, name: &str) {
        let down = self
            .services
            .get(name)
            .is_some_and(|s| s.state.pid().is_none());
        if down && self.restart_pending.remove(name) {
            self.feed(name, Event::Start { manual: true });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        assert_eq!(Op::parse(r#"{"op":"status"}"#), Ok(Op::Status(None)));
        assert_eq!(
            Op::parse(r#"{"op":"logs","unit":"etcd","lines":5,"follow":true}"#),
            Ok(Op::Logs {
                unit: "etcd".into(),
                lines: 5,
                follow: true
            })
        );
        assert_eq!(
            Op::parse(r#"{"op":"stop"}"#),
            Err("stop needs a unit".into())
        );
        assert!(Op::parse("not json").is_err());
        assert!(Op::parse(r#"{"op":"explode"}"#).is_err());
        assert!(Op::parse(r#"{"op":"stop","unit":"x"}"#).unwrap().mutates());
        assert!(!Op::parse(r#"{"op":"status"}"#).unwrap().mutates());
        assert!(Op::parse(r#"{"op":"poweroff"}"#).unwrap().mutates());
    }
}
