//! The one console line with which keel reports a finished boot, and its parser.
//!
//! ```text
//! keel: boot complete in 812 ms (kernel 540 ms + userspace 272 ms)
//! keel: boot complete in 812 ms (kernel 540 ms + initramfs 61 ms + userspace 211 ms)
//! keel: boot complete in 812 ms (kernel 540 ms + userspace 272 ms), degraded: unit web failed
//! ```
//!
//! The times are the guest's CLOCK_BOOTTIME in milliseconds. The line may come
//! with a prefix (the kernel's `[    1.234567] ` when it goes through
//! /dev/kmsg), so the parser looks for [`BOOT_LINE_PREFIX`] anywhere in it.
//! Unit failures appear as their own lines containing [`UNIT_FAILED_MARKER`]
//! (`keel: unit NAME failed: REASON`).

use std::fmt;

/// What every boot line contains; tools may match on it alone.
pub const BOOT_LINE_PREFIX: &str = "keel: boot complete in ";

/// Start of the line keel logs when a unit fails: `keel: unit NAME failed: REASON`.
pub const UNIT_FAILED_MARKER: &str = "keel: unit ";

/// The parsed boot line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootLine {
    /// Guest uptime when boot completed.
    pub total_ms: u64,
    /// Kernel start to keel's first instruction.
    pub kernel_ms: u64,
    /// Stage 1 in the initramfs, when keel reports it separately.
    pub initramfs_ms: Option<u64>,
    /// keel's start (or stage 2's) to every unit started.
    pub userspace_ms: u64,
    /// Whether keel said the boot is degraded.
    pub degraded: bool,
    /// The reason after `degraded:`, if one was given.
    pub degraded_reason: Option<String>,
}

impl BootLine {
    /// Parses the boot line out of `line`; `None` if `line` is not one.
    pub fn parse(line: &str) -> Option<BootLine> {
        let at = line.find(BOOT_LINE_PREFIX)?;
        let rest = line[at + BOOT_LINE_PREFIX.len()..].trim_end();
        let (total, rest) = rest.split_once(" ms")?;
        let total_ms = total.parse().ok()?;
        let rest = rest.strip_prefix(" (")?;
        let (terms, rest) = rest.split_once(')')?;
        let (mut kernel_ms, mut initramfs_ms, mut userspace_ms) = (None, None, None);
        for term in terms.split(" + ") {
            let (label, value) = term.trim().split_once(' ')?;
            let value: u64 = value.strip_suffix(" ms")?.parse().ok()?;
            match label {
                "kernel" => kernel_ms = Some(value),
                "initramfs" => initramfs_ms = Some(value),
                "userspace" => userspace_ms = Some(value),
                // Later versions may split the time further.
                _ => {}
            }
        }
        let (degraded, degraded_reason) = match rest.strip_prefix(", degraded") {
            Some(reason) => {
                let reason = reason.strip_prefix(':').unwrap_or(reason).trim();
                (true, (!reason.is_empty()).then(|| reason.to_owned()))
            }
            None => (false, None),
        };
        Some(BootLine {
            total_ms,
            kernel_ms: kernel_ms?,
            initramfs_ms,
            userspace_ms: userspace_ms?,
            degraded,
            degraded_reason,
        })
    }
}

impl fmt::Display for BootLine {
    /// Writes the line as keel prints it (without any kernel prefix).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{BOOT_LINE_PREFIX}{} ms (kernel {} ms",
            self.total_ms, self.kernel_ms
        )?;
        if let Some(ms) = self.initramfs_ms {
            write!(f, " + initramfs {ms} ms")?;
        }
        write!(f, " + userspace {} ms)", self.userspace_ms)?;
        match (&self.degraded, &self.degraded_reason) {
            (true, Some(reason)) => write!(f, ", degraded: {reason}"),
            (true, None) => write!(f, ", degraded"),
            (false, _) => Ok(()),
        }
    }
}

/// The unit name of a `keel: unit NAME failed: REASON` line, with the reason.
pub fn parse_unit_failure(line: &str) -> Option<(&str, &str)> {
    let at = line.find(UNIT_FAILED_MARKER)?;
    let rest = &line[at + UNIT_FAILED_MARKER.len()..];
    let (name, reason) = rest.split_once(" failed")?;
    if name.is_empty() || name.contains(' ') {
        return None;
    }
    let reason = reason.strip_prefix(':').unwrap_or(reason).trim();
    Some((name, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_prefixed_and_degraded_lines() {
        let line =
            BootLine::parse("keel: boot complete in 812 ms (kernel 540 ms + userspace 272 ms)")
                .unwrap();
        assert_eq!(
            line,
            BootLine {
                total_ms: 812,
                kernel_ms: 540,
                initramfs_ms: None,
                userspace_ms: 272,
                degraded: false,
                degraded_reason: None
            }
        );
        let line = BootLine::parse(
            "[    1.234567] keel: boot complete in 9 ms (kernel 5 ms + initramfs 1 ms + userspace 3 ms)\r",
        )
        .unwrap();
        assert_eq!((line.total_ms, line.initramfs_ms), (9, Some(1)));
        let line = BootLine::parse(
            "keel: boot complete in 9 ms (kernel 5 ms + userspace 4 ms), degraded: unit web failed",
        )
        .unwrap();
        assert!(line.degraded);
        assert_eq!(line.degraded_reason.as_deref(), Some("unit web failed"));
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "keel: boot complete in 812 ms (kernel 540 ms + userspace 272 ms)",
            "keel: boot complete in 8 ms (kernel 5 ms + initramfs 1 ms + userspace 2 ms), degraded: x",
        ] {
            assert_eq!(BootLine::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn rejects_other_lines() {
        for text in [
            "",
            "keel: boot complete in",
            "keel: boot complete in x ms (kernel 1 ms + userspace 2 ms)",
            "keel: boot complete in 3 ms",
            "keel: boot complete in 3 ms (kernel 1 ms)",
            "keel: boot complete in 3 ms (kernel one ms + userspace 2 ms)",
        ] {
            assert_eq!(BootLine::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn unit_failures() {
        assert_eq!(
            parse_unit_failure("[ 1.0] keel: unit web failed: exit status 1"),
            Some(("web", "exit status 1"))
        );
        assert_eq!(parse_unit_failure("keel: unit web started"), None);
    }
}
