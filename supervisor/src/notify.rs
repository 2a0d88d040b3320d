//! The sd_notify protocol, as systemd documents it: a datagram of
//! newline-separated `KEY=VALUE` assignments sent to `$NOTIFY_SOCKET`.
//! Parsing is pure; the loop in `runtime` checks the sender's credentials
//! and turns the message into state-machine events.

use std::time::Duration;

/// What one datagram said. Unknown keys are ignored, as systemd does.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Message {
    pub ready: bool,
    pub reloading: bool,
    pub stopping: bool,
    pub status: Option<String>,
    pub errno: Option<i32>,
    pub main_pid: Option<i32>,
    pub watchdog_ping: bool,
    pub watchdog_trigger: bool,
    pub watchdog_usec: Option<Duration>,
    pub extend_timeout: Option<Duration>,
    pub fdstore: bool,
    pub fdstore_remove: bool,
    pub fdname: Option<String>,
    pub barrier: bool,
}

/// Parses a datagram. Lines that are not `KEY=VALUE`, or values that do not
/// parse, are skipped; the rest of the message still counts.
pub fn parse(data: &[u8]) -> Message {
    let mut m = Message::default();
    let text = String::from_utf8_lossy(data);
    for line in text.split('\n') {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let usec = || value.parse::<u64>().ok().map(Duration::from_micros);
        match key {
            "READY" => m.ready |= value == "1",
            "RELOADING" => m.reloading |= value == "1",
            "STOPPING" => m.stopping |= value == "1",
            "STATUS" => m.status = Some(value.to_string()),
            "ERRNO" => m.errno = value.parse().ok(),
            "MAINPID" => m.main_pid = value.parse().ok().filter(|p: &i32| *p > 0),
            "WATCHDOG" if value == "1" => m.watchdog_ping = true,
            "WATCHDOG" if value == "trigger" => m.watchdog_trigger = true,
            "WATCHDOG_USEC" => m.watchdog_usec = usec(),
            "EXTEND_TIMEOUT_USEC" => m.extend_timeout = usec(),
            "FDSTORE" => m.fdstore |= value == "1",
            "FDSTOREREMOVE" => m.fdstore_remove |= value == "1",
            "FDNAME" => m.fdname = Some(value.to_string()),
            "BARRIER" => m.barrier |= value == "1",
            _ => {}
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: Vec<(&[u8], Message)> = vec![
            (b"", Message::default()),
            (
                b"READY=1",
                Message {
                    ready: true,
                    ..Default::default()
                },
            ),
            (
                b"READY=1\nSTATUS=serving on :2379\nMAINPID=42\n",
                Message {
                    ready: true,
                    status: Some("serving on :2379".into()),
                    main_pid: Some(42),
                    ..Default::default()
                },
            ),
            (b"READY=0", Message::default()),
            (b"MAINPID=-3\nMAINPID", Message::default()),
            (
                b"STATUS=a=b",
                Message {
                    status: Some("a=b".into()),
                    ..Default::default()
                },
            ),
            (
                b"RELOADING=1\nSTOPPING=1\nERRNO=2",
                Message {
                    reloading: true,
                    stopping: true,
                    errno: Some(2),
                    ..Default::default()
                },
            ),
            (
                b"WATCHDOG=1\nWATCHDOG_USEC=500000\nEXTEND_TIMEOUT_USEC=1000",
                Message {
                    watchdog_ping: true,
                    watchdog_usec: Some(Duration::from_millis(500)),
                    extend_timeout: Some(Duration::from_millis(1)),
                    ..Default::default()
                },
            ),
            (
                b"WATCHDOG=trigger",
                Message {
                    watchdog_trigger: true,
                    ..Default::default()
                },
            ),
            (
                b"FDSTORE=1\nFDNAME=listen\nBARRIER=1",
                Message {
                    fdstore: true,
                    fdname: Some("listen".into()),
                    barrier: true,
                    ..Default::default()
                },
            ),
            (
                b"FDSTOREREMOVE=1\nFDNAME=old",
                Message {
                    fdstore_remove: true,
                    fdname: Some("old".into()),
                    ..Default::default()
                },
            ),
            (b"\xff\xfeREADY=1", Message::default()),
            (
                b"garbage\nREADY=1",
                Message {
                    ready: true,
                    ..Default::default()
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input), want, "{:?}", String::from_utf8_lossy(input));
        }
    }
}
