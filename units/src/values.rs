//! The typed values of unit files, parsed from their text: durations
//! (`"1m30s"`), sizes (`"512M"`), users and groups, addresses and URLs.
//! Signals live in [`crate::signal`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use thiserror::Error;

/// Why a value's text was rejected. The text reads as the end of a sentence
/// that starts with the value: `"10 parsecs": unknown unit ...`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValueError {
    #[error("empty value")]
    Empty,
    #[error("missing unit after `{0}`")]
    MissingUnit(String),
    #[error("unknown unit `{0}`")]
    UnknownUnit(String),
    #[error("expected a number at `{0}`")]
    ExpectedNumber(String),
    #[error("fractions are not supported")]
    Fraction,
    #[error("too large")]
    Overflow,
    #[error("unknown size suffix `{0}`")]
    UnknownSuffix(String),
    #[error("use letters, digits, `_`, `-` and `.` (at most 32)")]
    BadName,
    #[error("not an `address:port` pair")]
    BadSocketAddr,
    #[error("only http:// URLs are supported")]
    NotHttp,
    #[error("not a valid http URL")]
    BadUrl,
    #[error("the host must be an IP address or `localhost`")]
    HostNotIp,
    #[error("not an octal mode of at most 0777")]
    BadMode,
    #[error("unknown signal")]
    UnknownSignal,
}

/// Parses a duration: one or more `NUMBER UNIT` pairs, units `us`, `ms`,
/// `s`, `m` (or `min`), `h`, `d`: `"100ms"`, `"1m30s"`, `"2h"`, `"0"`.
pub fn parse_duration(text: &str) -> Result<Duration, ValueError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ValueError::Empty);
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.contains(['.', ',']) {
        return Err(ValueError::Fraction);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(ValueError::ExpectedNumber(rest.to_owned()));
        }
        let (number, tail) = rest.split_at(digits);
        let n: u64 = number.parse().map_err(|_| ValueError::Overflow)?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let part = match unit.trim() {
            "" => return Err(ValueError::MissingUnit(number.to_owned())),
            "us" | "µs" => Some(Duration::from_micros(n)),
            "ms" => Some(Duration::from_millis(n)),
            "s" | "sec" => Some(Duration::from_secs(n)),
            "m" | "min" => n.checked_mul(60).map(Duration::from_secs),
            "h" => n.checked_mul(3600).map(Duration::from_secs),
            "d" => n.checked_mul(86_400).map(Duration::from_secs),
            other => return Err(ValueError::UnknownUnit(other.to_owned())),
        };
        total = part
            .and_then(|p| total.checked_add(p))
            .ok_or(ValueError::Overflow)?;
        rest = tail.trim_start();
    }
    Ok(total)
}

/// Formats a duration the way [`parse_duration`] reads it (`"1m30s"`).
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0".to_owned();
    }
    let mut out = String::new();
    let mut secs = d.as_secs();
    for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= len {
            out.push_str(&format!("{}{unit}", secs / len));
            secs %= len;
        }
    }
    let micros = d.subsec_micros();
    let (ms, us) = (micros / 1000, micros % 1000);
    if us == 0 && ms > 0 {
        out.push_str(&format!("{ms}ms"));
    } else if micros > 0 {
        out.push_str(&format!("{micros}us"));
    }
    out
}

/// Parses a size in bytes: `"4096"`, `"64K"`, `"512M"`, `"1G"`, `"2T"`
/// (powers of 1024; `KiB`-style suffixes too). `"infinity"` and `"max"` are
/// `None`: no limit.
pub fn parse_size(text: &str) -> Result<Option<u64>, ValueError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ValueError::Empty);
    }
    if text == "infinity" || text == "max" {
        return Ok(None);
    }
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if digits == 0 {
        return Err(ValueError::ExpectedNumber(text.to_owned()));
    }
    let (number, suffix) = text.split_at(digits);
    let n: u64 = number.parse().map_err(|_| ValueError::Overflow)?;
    let shift = match suffix.trim() {
        "" | "B" => 0,
        "K" | "k" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        "T" | "TiB" => 40,
        other => return Err(ValueError::UnknownSuffix(other.to_owned())),
    };
    n.checked_mul(1 << shift)
        .map(Some)
        .ok_or(ValueError::Overflow)
}

/// A user or a group: by name or by numeric id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ident {
    /// Looked up in the root's /etc/passwd or /etc/group at start.
    Name(String),
    /// Used as is.
    Id(u32),
}

impl Ident {
    /// A name, or an id when the text is all digits (`"0"` is root).
    pub fn parse(text: &str) -> Result<Ident, ValueError> {
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text
                .parse()
                .map(Ident::Id)
                .map_err(|_| ValueError::Overflow);
        }
        let valid = !text.is_empty()
            && text.len() <= 32
            && !text.starts_with('-')
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.$".contains(&b));
        if valid {
            Ok(Ident::Name(text.to_owned()))
        } else {
            Err(ValueError::BadName)
        }
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ident::Name(n) => f.write_str(n),
            Ident::Id(id) => write!(f, "{id}"),
        }
    }
}

/// `IP:PORT` or `[IPv6]:PORT`; `localhost:PORT` means 127.0.0.1. Probes run
/// in PID 1, which does no name resolution.
pub fn parse_socket_addr(text: &str) -> Result<SocketAddr, ValueError> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    match text.rsplit_once(':') {
        Some(("localhost", port)) => port
            .parse()
            .map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p))
            .map_err(|_| ValueError::BadSocketAddr),
        Some((host, _)) if host.parse::<IpAddr>().is_err() && !host.starts_with('[') => {
            Err(ValueError::HostNotIp)
        }
        _ => Err(ValueError::BadSocketAddr),
    }
}

/// An `http://HOST[:PORT][/PATH]` URL for an HTTP probe, HOST being an IP
/// address or `localhost`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpUrl {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The host as written, for the `Host:` header.
    pub host: String,
    /// The path and query, starting with `/`.
    pub path: String,
}

impl HttpUrl {
    /// Parses an http URL; https is refused (PID 1 carries no TLS).
    pub fn parse(text: &str) -> Result<HttpUrl, ValueError> {
        let Some(rest) = text.strip_prefix("http://") else {
            return Err(if text.contains("://") {
                ValueError::NotHttp
            } else {
                ValueError::BadUrl
            });
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') || path.contains(char::is_whitespace) {
            return Err(ValueError::BadUrl);
        }
        let with_port = if authority.ends_with(']') || !authority.contains(':') {
            format!("{authority}:80")
        } else {
            authority.to_owned()
        };
        let addr = parse_socket_addr(&with_port).map_err(|e| match e {
            ValueError::HostNotIp => e,
            _ => ValueError::BadUrl,
        })?;
        Ok(HttpUrl {
            addr,
            host: authority.to_owned(),
            path: path.to_owned(),
        })
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.host, self.path)
    }
}

/// A umask given as an octal string: `"0022"`, `"077"`.
pub fn parse_mode(text: &str) -> Result<u32, ValueError> {
    if text.is_empty() || text.len() > 4 {
        return Err(ValueError::BadMode);
    }
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|&m| m <= 0o777)
        .ok_or(ValueError::BadMode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("100ms"), Ok(ms(100)));
        assert_eq!(parse_duration("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("2h"), Ok(ms(7_200_000)));
        assert_eq!(parse_duration("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("10s"), Ok(ms(10_000)));
        assert_eq!(parse_duration("1d 2h"), Ok(Duration::from_secs(93_600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(
            parse_duration("10"),
            Err(ValueError::MissingUnit("10".into()))
        );
        assert_eq!(
            parse_duration("5 parsecs"),
            Err(ValueError::UnknownUnit("parsecs".into()))
        );
        assert_eq!(
            parse_duration("s"),
            Err(ValueError::ExpectedNumber("s".into()))
        );
        assert_eq!(parse_duration("1.5s"), Err(ValueError::Fraction));
        assert_eq!(
            parse_duration("99999999999999999999s"),
            Err(ValueError::Overflow)
        );
        assert_eq!(
            parse_duration("999999999999999999d"),
            Err(ValueError::Overflow)
        );
    }

    #[test]
    fn durations_round_trip() {
        for text in ["0", "1m30s", "100ms", "500us", "2h", "1d1h1m1s"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d), text);
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(Some(4096)));
        assert_eq!(parse_size("64K"), Ok(Some(65_536)));
        assert_eq!(parse_size("512M"), Ok(Some(512 << 20)));
        assert_eq!(parse_size("1G"), Ok(Some(1 << 30)));
        assert_eq!(parse_size("2GiB"), Ok(Some(2 << 30)));
        assert_eq!(parse_size("infinity"), Ok(None));
        assert_eq!(parse_size("max"), Ok(None));
        assert_eq!(
            parse_size("12Q"),
            Err(ValueError::UnknownSuffix("Q".into()))
        );
        assert_eq!(parse_size("99999999999T"), Err(ValueError::Overflow));
        assert_eq!(parse_size("G"), Err(ValueError::ExpectedNumber("G".into())));
    }

    #[test]
    fn idents() {
        assert_eq!(Ident::parse("etcd"), Ok(Ident::Name("etcd".into())));
        assert_eq!(Ident::parse("0"), Ok(Ident::Id(0)));
        assert_eq!(Ident::parse("a:b"), Err(ValueError::BadName));
        assert_eq!(Ident::parse("99999999999"), Err(ValueError::Overflow));
    }

    #[test]
    fn addresses_and_urls() {
        assert_eq!(
            parse_socket_addr("localhost:80"),
            Ok("127.0.0.1:80".parse().unwrap())
        );
        assert_eq!(
            parse_socket_addr("[::1]:80"),
            Ok("[::1]:80".parse().unwrap())
        );
        assert_eq!(
            parse_socket_addr("example.com:80"),
            Err(ValueError::HostNotIp)
        );
        assert_eq!(
            parse_socket_addr("127.0.0.1"),
            Err(ValueError::BadSocketAddr)
        );
        let url = HttpUrl::parse("http://127.0.0.1:2379/health").unwrap();
        assert_eq!(url.addr, "127.0.0.1:2379".parse().unwrap());
        assert_eq!(url.path, "/health");
        assert_eq!(url.to_string(), "http://127.0.0.1:2379/health");
        let url = HttpUrl::parse("http://[::1]").unwrap();
        assert_eq!(url.addr, "[::1]:80".parse().unwrap());
        assert_eq!(url.path, "/");
        assert_eq!(HttpUrl::parse("https://x/"), Err(ValueError::NotHttp));
        assert_eq!(
            HttpUrl::parse("http://etcd:2379/"),
            Err(ValueError::HostNotIp)
        );
        assert_eq!(HttpUrl::parse("127.0.0.1"), Err(ValueError::BadUrl));
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0022"), Ok(0o22));
        assert_eq!(parse_mode("77"), Ok(0o77));
        assert_eq!(parse_mode("0800"), Err(ValueError::BadMode));
        assert_eq!(parse_mode("01777"), Err(ValueError::BadMode));
    }
}
