//! `compare A B`: what got faster or slower between two boots, phase by
//! phase and unit by unit (time to ready after start), biggest change first.

use super::chain::phases;
use super::{fmt_delta, fmt_us, pretty};
use crate::record::{object, Record};
use serde_json::{json, Value};

/// One compared quantity; `None` where a boot did not have it.
struct Row {
    name: String,
    a: Option<u64>,
    b: Option<u64>,
}

impl Row {
    fn delta(&self) -> Option<i64> {
        Some(i64::try_from(self.b?).ok()? - i64::try_from(self.a?).ok()?)
    }

    fn to_json(&self, key: &str) -> Value {
        json!({key: self.name, "a_us": self.a, "b_us": self.b, "delta_us": self.delta()})
    }

    fn to_text(&self, width: usize) -> String {
        let t = |v: Option<u64>| v.map_or_else(|| "-".to_string(), fmt_us);
        let change = match (self.delta(), self.a) {
            (Some(d), Some(a)) if a > 0 => {
                format!("{} ({:+.1}%)", fmt_delta(d), d as f64 * 100.0 / a as f64)
            }
            (Some(d), _) => fmt_delta(d),
            (None, _) => "only in one boot".to_string(),
        };
        format!(
            "  {:width$}  {:>10}  {:>10}  {change}\n",
            self.name,
            t(self.a),
            t(self.b)
        )
    }
}

pub fn run(a: &Record, b: &Record, json: bool) -> Result<String, String> {
    let pa = phases(a).map_err(|e| format!("A: {e}"))?;
    let pb = phases(b).map_err(|e| format!("B: {e}"))?;
    let mut phase_rows: Vec<Row> = pa
        .iter()
        .map(|(n, us)| Row {
            name: (*n).to_string(),
            a: Some(*us),
            b: pb.iter().find(|(m, _)| m == n).map(|p| p.1),
        })
        .collect();
    for (n, us) in &pb {
        if !pa.iter().any(|(m, _)| m == n) {
            phase_rows.push(Row {
                name: (*n).to_string(),
                a: None,
                b: Some(*us),
            });
        }
    }
    let mut names: Vec<&str> = a
        .units
        .iter()
        .chain(&b.units)
        .map(|u| u.name.as_str())
        .collect();
    crate::record::sort_by(&mut names, |x, y| x < y);
    names.dedup();
    let mut unit_rows: Vec<Row> = names
        .into_iter()
        .map(|n| Row {
            name: n.to_string(),
            a: a.unit(n).and_then(|u| u.activation_us()),
            b: b.unit(n).and_then(|u| u.activation_us()),
        })
        .filter(|r| r.a.is_some() || r.b.is_some())
        .collect();
    let size = |r: &Row| r.delta().map_or(i64::MAX, i64::abs);
    crate::record::sort_by(&mut unit_rows, |x, y| size(x) > size(y));
    if json {
        return Ok(pretty(&object(vec![
            (
                "phases",
                phase_rows.iter().map(|r| r.to_json("name")).collect(),
            ),
            (
                "units",
                unit_rows.iter().map(|r| r.to_json("unit")).collect(),
            ),
        ])));
    }
    let width = phase_rows
        .iter()
        .chain(&unit_rows)
        .map(|r| r.name.len())
        .max()
        .unwrap_or(0)
        .max(5);
    let mut out = format!("  {:width$}  {:>10}  {:>10}  change\n", "phase", "A", "B");
    out.extend(phase_rows.iter().map(|r| r.to_text(width)));
    if !unit_rows.is_empty() {
        out += &format!(
            "\n  {:width$}  {:>10}  {:>10}  (start to ready)\n",
            "unit", "A", "B"
        );
        out.extend(unit_rows.iter().map(|r| r.to_text(width)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::UnitRecord;

    fn boot(kernel: u64, units: &[(&str, u64)]) -> Record {
        Record {
            init_us: kernel,
            complete_us: Some(kernel + 100_000),
            units: units
                .iter()
                .map(|(n, us)| UnitRecord {
                    name: (*n).into(),
                    started_us: Some(kernel),
                    ready_us: Some(kernel + us),
                    ..UnitRecord::default()
                })
                .collect(),
            ..Record::default()
        }
    }

    #[test]
    fn biggest_unit_change_comes_first() {
        let a = boot(1_000_000, &[("x", 10_000), ("y", 50_000), ("gone", 1)]);
        let b = boot(900_000, &[("x", 12_000), ("y", 5_000)]);
        let v: Value = serde_json::from_str(&run(&a, &b, true).expect("json")).expect("parse");
        assert_eq!(v["phases"][0]["delta_us"], json!(-100_000));
        assert_eq!(
            v["units"][0]["unit"], "gone",
            "missing in one boot sorts first"
        );
        assert_eq!(v["units"][1]["unit"], "y");
        assert_eq!(v["units"][1]["delta_us"], json!(-45_000));
        let text = run(&a, &b, false).expect("text");
        assert!(text.contains("-100.0ms (-10.0%)"), "{text}");
    }
}
