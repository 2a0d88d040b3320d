//! Signals by name or number (`"SIGTERM"`, `"TERM"`, `"15"`), with the
//! Linux numbering, without calling into libc: this crate stays pure.

use std::fmt;

use crate::values::ValueError;

/// A signal number (Linux, x86-64/aarch64 numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Signal(i32);

/// The standard signals, by number (index + 1).
const NAMES: [&str; 31] = [
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
    "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
    "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
];

/// The kernel's real-time signals start at 32, but glibc keeps 32 and 33
/// for itself, so programs (and their documentation) see `SIGRTMIN` as 34.
/// We name them the way programs do: `SIGRTMIN+3` is 37.
const RTMIN: i32 = 34;
const RTMAX: i32 = 64;

impl Signal {
    pub const HUP: Signal = Signal(1);
    pub const INT: Signal = Signal(2);
    pub const QUIT: Signal = Signal(3);
    pub const ABRT: Signal = Signal(6);
    pub const KILL: Signal = Signal(9);
    pub const USR1: Signal = Signal(10);
    pub const USR2: Signal = Signal(12);
    pub const TERM: Signal = Signal(15);
    pub const CHLD: Signal = Signal(17);
    pub const CONT: Signal = Signal(18);
    pub const STOP: Signal = Signal(19);
    pub const PWR: Signal = Signal(30);

    /// The signal with this number, if it is one (1..=64).
    pub fn from_number(n: i32) -> Option<Signal> {
        (1..=RTMAX).contains(&n).then_some(Signal(n))
    }

    /// Parses `"SIGTERM"`, `"TERM"`, `"15"`, `"SIGRTMIN+2"`, `"RTMAX-1"`.
    pub fn parse(text: &str) -> Result<Signal, ValueError> {
        let bare = text.strip_prefix("SIG").unwrap_or(text);
        if let Ok(n) = bare.parse::<i32>() {
            return Signal::from_number(n).ok_or(ValueError::UnknownSignal);
        }
        if let Some(i) = NAMES.iter().position(|&n| n == bare) {
            return i32::try_from(i + 1)
                .map(Signal)
                .map_err(|_| ValueError::UnknownSignal);
        }
        let rt = |base: i32, rest: &str, sign: i32| -> Option<Signal> {
            let offset = if rest.is_empty() {
                0
            } else {
                rest.get(1..)?.parse::<i32>().ok()?
            };
            let n = base + sign * offset;
            (RTMIN..=RTMAX).contains(&n).then_some(Signal(n))
        };
        let found = match (bare.strip_prefix("RTMIN"), bare.strip_prefix("RTMAX")) {
            (Some(rest), _) if rest.is_empty() || rest.starts_with('+') => rt(RTMIN, rest, 1),
            (_, Some(rest)) if rest.is_empty() || rest.starts_with('-') => rt(RTMAX, rest, -1),
            _ => None,
        };
        found.ok_or(ValueError::UnknownSignal)
    }

    /// The number, for kill(2).
    pub fn number(self) -> i32 {
        self.0
    }

    /// `"SIGTERM"`, or `"SIGRTMIN+n"` for real-time signals.
    pub fn name(self) -> String {
        let standard = usize::try_from(self.0 - 1).ok().and_then(|i| NAMES.get(i));
        match standard {
            Some(n) => format!("SIG{n}"),
            None if self.0 >= RTMIN => format!("SIGRTMIN+{}", self.0 - RTMIN),
            None => format!("SIG{}", self.0),
        }
    }

    /// Every signal name, for "did you mean".
    pub(crate) fn names() -> impl Iterator<Item = &'static str> {
        NAMES.iter().copied()
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_prefixes() {
        assert_eq!(Signal::parse("SIGTERM"), Ok(Signal::TERM));
        assert_eq!(Signal::parse("TERM"), Ok(Signal::TERM));
        assert_eq!(Signal::parse("15"), Ok(Signal::TERM));
        assert_eq!(Signal::parse("SIGKILL").map(Signal::number), Ok(9));
        assert_eq!(Signal::parse("SIGSYS").map(Signal::number), Ok(31));
        assert_eq!(Signal::parse("SIGRTMIN+2").map(Signal::number), Ok(36));
        assert_eq!(Signal::parse("RTMAX-1").map(Signal::number), Ok(63));
        assert_eq!(Signal::parse("SIGRTMIN+40"), Err(ValueError::UnknownSignal));
        assert_eq!(Signal::parse("sigterm"), Err(ValueError::UnknownSignal));
        assert_eq!(Signal::parse("0"), Err(ValueError::UnknownSignal));
        assert_eq!(Signal::parse("65"), Err(ValueError::UnknownSignal));
        assert_eq!(Signal::parse("SIG"), Err(ValueError::UnknownSignal));
    }

    #[test]
    fn every_number_round_trips_through_its_name() {
        for n in 1..=64 {
            let s = Signal::from_number(n).unwrap();
            assert_eq!(Signal::parse(&s.name()), Ok(s), "{n}");
        }
        assert_eq!(Signal::TERM.to_string(), "SIGTERM");
    }
}
