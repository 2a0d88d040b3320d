//! `time`, `blame` and `critical-chain`: the record's numbers as text or
//! JSON. Every time is measured to ready (notify: READY=1; oneshot:
//! finished), not to spawn.

use super::{fmt_us, pretty};
use crate::record::{object, Record, UnitRecord};
use serde_json::{json, Value};

/// The boot's phases in order: kernel, initramfs (when stage 1 left its
/// phases), userspace, total, and shutdown when the record has one.
pub fn phases(r: &Record) -> Result<Vec<(&'static str, u64)>, String> {
    let complete = r
        .complete_us
        .ok_or("the record has no boot complete (the boot did not finish)")?;
    let mut out = vec![("kernel", r.init_us)];
    let userspace_from = match r.stage1.as_ref().and_then(|s| s.end_us()) {
        Some(end) => {
            out.push(("initramfs", end.saturating_sub(r.init_us)));
            end
        }
        None => r.init_us,
    };
    out.push(("userspace", complete.saturating_sub(userspace_from)));
    out.push(("total", complete));
    if let Some(s) = &r.shutdown {
        out.push(("shutdown", s.end_us.saturating_sub(s.begin_us)));
    }
    Ok(out)
}

pub fn time(r: &Record, json: bool) -> Result<String, String> {
    let phases = phases(r)?;
    let units: Vec<&UnitRecord> = r
        .units
        .iter()
        .filter(|u| u.activation_us().is_some())
        .collect();
    if json {
        return Ok(pretty(&object(vec![
            ("complete_us", json!(r.complete_us)),
            (
                "phases",
                phases
                    .iter()
                    .map(|(n, us)| json!({"name": n, "us": us}))
                    .collect(),
            ),
            (
                "units",
                units
                    .iter()
                    .map(|u| json!({"name": u.name, "us": u.activation_us(), "ready_us": u.settled_us()}))
                    .collect(),
            ),
            (
                "kernel",
                r.kernel
                    .iter()
                    .map(|m| json!({"name": m.name, "at_us": m.at_us}))
                    .collect(),
            ),
            ("degraded", degraded(r).into()),
        ])));
    }
    let get = |name: &str| phases.iter().find(|(n, _)| *n == name).map(|p| p.1);
    let parts: Vec<String> = phases
        .iter()
        .filter(|(n, _)| !matches!(*n, "total" | "shutdown"))
        .map(|(n, us)| format!("{} ({n})", fmt_us(*us)))
        .collect();
    let mut out = format!(
        "Boot complete in {} = {}, to ready (not to spawn)\n",
        fmt_us(get("total").unwrap_or(0)),
        parts.join(" + ")
    );
    if !r.kernel.is_empty() {
        let marks: Vec<String> = r
            .kernel
            .iter()
            .map(|m| format!("{} @{}", m.name, fmt_us(m.at_us)))
            .collect();
        out += &format!("kernel:   {}\n", marks.join(", "));
    }
    if let Some(s) = &r.stage1 {
        let slot = s
            .slot
            .as_deref()
            .map(|x| format!(", slot {x}"))
            .unwrap_or_default();
        out += &format!("stage 1:  {} steps{slot}\n", s.phases.len());
    }
    let slowest = units.iter().max_by_key(|u| u.activation_us());
    let last = units.iter().max_by_key(|u| u.settled_us());
    out += &format!(
        "keel:     started @{}, {} units",
        fmt_us(r.init_us),
        units.len()
    );
    if let Some(u) = slowest {
        out += &format!(
            ", slowest {} +{}",
            u.name,
            fmt_us(u.activation_us().unwrap_or(0))
        );
    }
    if let Some(u) = last {
        out += &format!(", last {} @{}", u.name, fmt_us(u.settled_us().unwrap_or(0)));
    }
    out.push('\n');
    for d in degraded(r) {
        out += &format!("degraded: {d}\n");
    }
    if let (Some(s), Some(us)) = (&r.shutdown, get("shutdown")) {
        out += &format!(
            "shutdown: {} took {} (@{})\n",
            s.action,
            fmt_us(us),
            fmt_us(s.end_us)
        );
    }
    Ok(out)
}

fn degraded(r: &Record) -> Vec<String> {
    let mut out = r.problems.clone();
    out.extend(
        r.failed
            .iter()
            .map(|(u, why)| format!("unit {u} failed ({why})")),
    );
    out
}

pub fn blame(r: &Record, json: bool) -> Result<String, String> {
    let mut units: Vec<&UnitRecord> = r
        .units
        .iter()
        .filter(|u| u.activation_us().is_some())
        .collect();
    crate::record::sort_by(&mut units, |a, b| {
        (b.activation_us(), &a.name) < (a.activation_us(), &b.name)
    });
    if json {
        return Ok(pretty(&Value::Array(
            units
                .iter()
                .map(|u| {
                    json!({
                        "unit": u.name, "us": u.activation_us(),
                        "started_us": u.started_us, "ready_us": u.settled_us(),
                        "failed": u.failed_first(), "failure": u.failure,
                    })
                })
                .collect(),
        )));
    }
    let width = units
        .iter()
        .map(|u| fmt_us(u.activation_us().unwrap_or(0)).len())
        .max()
        .unwrap_or(0);
    Ok(units
        .iter()
        .map(|u| {
            let t = fmt_us(u.activation_us().unwrap_or(0));
            let failed = match (u.failed_first(), &u.failure) {
                (true, Some(why)) => format!(" (failed: {why})"),
                (true, None) => " (failed)".to_string(),
                _ => String::new(),
            };
            format!("{t:>width$} {}{failed}\n", u.name)
        })
        .collect())
}

/// One unit on a critical chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub unit: String,
    pub started_us: u64,
    /// When it became ready (or failed).
    pub at_us: u64,
    pub failed: bool,
    pub failure: Option<String>,
}

/// The chain of waits behind `target`: `links[0]` is what the target
/// waited for last, each next link what the previous one waited for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub target: String,
    pub at_us: u64,
    pub links: Vec<Link>,
    /// keel's start, where every chain begins.
    pub keel_us: u64,
}

/// The chain for `unit`, or for boot complete: the boot-critical unit
/// that settled last, then each unit's `waited_for`.
pub fn critical_chain(r: &Record, unit: Option<&str>) -> Result<Chain, String> {
    let (target, at_us, first) = match unit {
        None => {
            let at = r.complete_us.ok_or("the record has no boot complete")?;
            let gate = r
                .units
                .iter()
                .filter(|u| u.boot_critical && u.settled_us().is_some_and(|s| s <= at))
                .max_by_key(|u| (u.settled_us(), u.started_us));
            (
                "boot complete".to_string(),
                at,
                gate.map(|u| u.name.clone()),
            )
        }
        Some(name) => {
            let u = r
                .unit(name)
                .ok_or_else(|| format!("no unit {name:?} in the record"))?;
            let at = u
                .settled_us()
                .ok_or_else(|| format!("unit {name} never became ready or failed"))?;
            (name.to_string(), at, Some(name.to_string()))
        }
    };
    let mut links: Vec<Link> = Vec::new();
    let mut next = first;
    while let Some(name) = next.take() {
        if links.iter().any(|l| l.unit == name) {
            break;
        }
        let Some(u) = r.unit(&name) else { break };
        let (Some(started_us), Some(at)) = (u.started_us, u.settled_us()) else {
            break;
        };
        links.push(Link {
            unit: name,
            started_us,
            at_us: at,
            failed: u.failed_first(),
            failure: u.failure.clone(),
        });
        next = u.waited_for.clone();
    }
    Ok(Chain {
        target,
        at_us,
        links,
        keel_us: r.init_us,
    })
}

impl Chain {
    pub fn to_text(&self) -> String {
        let mut out = String::from(
            "The time when a unit became ready is printed after \"@\", \
             the time it took to become ready after \"+\".\n\n",
        );
        out += &format!("{} @{}\n", self.target, fmt_us(self.at_us));
        let mut indent = String::new();
        for l in &self.links {
            let failed = match (&l.failed, &l.failure) {
                (true, Some(why)) => format!(" (failed: {why})"),
                (true, None) => " (failed)".into(),
                _ => String::new(),
            };
            out += &format!(
                "{indent}└─{} @{} +{}{failed}\n",
                l.unit,
                fmt_us(l.at_us),
                fmt_us(l.at_us.saturating_sub(l.started_us))
            );
            indent += "  ";
        }
        out += &format!("{indent}└─keel @{}\n", fmt_us(self.keel_us));
        out
    }

    pub fn to_json(&self) -> Value {
        json!({
            "target": self.target,
            "at_us": self.at_us,
            "chain": self.links.iter().map(|l| json!({
                "unit": l.unit, "started_us": l.started_us, "at_us": l.at_us,
                "us": l.at_us.saturating_sub(l.started_us),
                "failed": l.failed, "failure": l.failure,
            })).collect::<Vec<_>>(),
            "keel_us": self.keel_us,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Stage1;

    pub fn unit(name: &str, start: u64, ready: u64, waited: Option<&str>) -> UnitRecord {
        UnitRecord {
            name: name.into(),
            boot_critical: true,
            started_us: Some(start),
            ready_us: Some(ready),
            waited_for: waited.map(Into::into),
            ..UnitRecord::default()
        }
    }

    #[test]
    fn the_chain_follows_the_last_wait_and_skips_the_faster_branch() {
        // root -> {fast, slow} -> join; join waited for slow.
        let r = Record {
            init_us: 1000,
            complete_us: Some(900_000),
            units: vec![
                unit("root", 2000, 10_000, None),
                unit("fast", 11_000, 20_000, Some("root")),
                unit("slow", 11_000, 800_000, Some("root")),
                unit("join", 801_000, 900_000, Some("slow")),
            ],
            ..Record::default()
        };
        let c = critical_chain(&r, None).expect("chain");
        let names: Vec<&str> = c.links.iter().map(|l| l.unit.as_str()).collect();
        assert_eq!(names, ["join", "slow", "root"]);
        let fast = critical_chain(&r, Some("fast")).expect("chain");
        assert_eq!(fast.links.len(), 2);
        assert!(critical_chain(&r, Some("nope")).is_err());
        let text = c.to_text();
        assert!(
            text.contains("boot complete @900.0ms\n└─join @900.0ms +99.0ms\n  └─slow"),
            "{text}"
        );
    }

    #[test]
    fn phases_add_up_with_and_without_stage1() {
        let mut r = Record {
            init_us: 1_000_000,
            complete_us: Some(1_300_000),
            ..Record::default()
        };
        assert_eq!(
            phases(&r).expect("phases"),
            [
                ("kernel", 1_000_000),
                ("userspace", 300_000),
                ("total", 1_300_000)
            ]
        );
        r.stage1 = Some(Stage1 {
            phases: vec![crate::record::Phase {
                name: "mount root".into(),
                start_us: 1_000_100,
                end_us: 1_100_000,
            }],
            ..Stage1::default()
        });
        let p = phases(&r).expect("phases");
        assert_eq!(p[1], ("initramfs", 100_000));
        assert_eq!(p[2], ("userspace", 200_000));
        r.complete_us = None;
        assert!(phases(&r).is_err());
    }
}
