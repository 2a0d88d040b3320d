//! `plot`: the boot as an SVG Gantt chart, written by hand (no crate):
//! the kernel and its milestones, stage 1's steps, one row per unit
//! (spawn, start to ready, up, stop; the boot-complete chain outlined), a
//! line at keel's start, at boot complete and at the shutdown, and under it
//! the bootchart when the record has one (CPU, disk, memory, the busiest
//! processes).

#![allow(clippy::write_with_newline)] // one element per line, by hand

use super::chain::critical_chain;
use super::fmt_us;
use crate::record::{Bootchart, Record};
use serde_json::{json, Value};
use std::fmt::Write;

const LABEL_W: f64 = 190.0;
const NOTE_W: f64 = 280.0;
const ROW_H: f64 = 18.0;
const TOP: f64 = 74.0;
const PANEL_H: f64 = 70.0;
/// Width of the squeezed start of a long kernel phase.
const CUT_W: f64 = 120.0;
const FONT: &str = "font-family=\"DejaVu Sans,Helvetica,Arial,sans-serif\" font-size=\"11\"";

/// What a bar is; its colour and its legend entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Kernel,
    Stage1,
    Spawn,
    Start,
    Up,
    Failed,
    Stop,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Kernel => "kernel",
            Kind::Stage1 => "stage 1",
            Kind::Spawn => "fork to exec",
            Kind::Start => "exec to ready",
            Kind::Up => "up",
            Kind::Failed => "failed",
            Kind::Stop => "stopping",
        }
    }

    fn color(self) -> &'static str {
        match self {
            Kind::Kernel => "#9aa5b1",
            Kind::Stage1 => "#b48ead",
            Kind::Spawn => "#f2c14e",
            Kind::Start => "#3f7fbf",
            Kind::Up => "#d6e6f5",
            Kind::Failed => "#d64545",
            Kind::Stop => "#f08a24",
        }
    }
}

struct Row {
    label: String,
    bars: Vec<(u64, u64, Kind)>,
    mark: Option<u64>,
    note: String,
    critical: bool,
}

fn rows(r: &Record) -> Vec<Row> {
    let end = r.end_us();
    let mut rows = vec![Row {
        label: "kernel".into(),
        bars: vec![(0, r.init_us, Kind::Kernel)],
        mark: None,
        note: fmt_us(r.init_us),
        critical: false,
    }];
    rows.extend(r.kernel.iter().map(|m| Row {
        label: m.name.clone(),
        bars: Vec::new(),
        mark: Some(m.at_us),
        note: format!("@{}", fmt_us(m.at_us)),
        critical: false,
    }));
    if let Some(s) = &r.stage1 {
        rows.extend(s.phases.iter().map(|p| Row {
            label: p.name.clone(),
            bars: vec![(p.start_us, p.end_us, Kind::Stage1)],
            mark: None,
            note: fmt_us(p.end_us.saturating_sub(p.start_us)),
            critical: false,
        }));
    }
    let chain: Vec<String> = critical_chain(r, None)
        .map(|c| c.links.into_iter().map(|l| l.unit).collect())
        .unwrap_or_default();
    for u in &r.units {
        let Some(start) = u.started_us else { continue };
        let mut bars = Vec::new();
        let execd = u.execd_us.unwrap_or(start);
        if execd > start {
            bars.push((start, execd, Kind::Spawn));
        }
        let note = match (u.settled_us(), u.failed_first()) {
            (Some(f), true) => {
                bars.push((execd.min(f), f, Kind::Failed));
                format!("failed: {}", u.failure.as_deref().unwrap_or("?"))
            }
            (Some(ready), false) => {
                bars.push((execd.min(ready), ready, Kind::Start));
                let up_end = u.stopping_us.or(u.failed_us).unwrap_or(end);
                if up_end > ready {
                    bars.push((ready, up_end, Kind::Up));
                }
                format!("+{}", fmt_us(ready.saturating_sub(start)))
            }
            (None, _) => {
                bars.push((execd, u.stopping_us.unwrap_or(end), Kind::Start));
                "never ready".into()
            }
        };
        if let (Some(a), Some(b)) = (u.stopping_us, u.stopped_us) {
            bars.push((a, b.max(a), Kind::Stop));
        }
        rows.push(Row {
            label: u.name.clone(),
            bars,
            mark: None,
            note,
            critical: chain.contains(&u.name),
        });
    }
    rows
}

/// `plot --json`: the rows the chart draws.
pub fn rows_json(r: &Record) -> Value {
    Value::Array(
        rows(r)
            .iter()
            .map(|row| {
                json!({
                    "label": row.label,
                    "bars": row.bars.iter().map(|(a, b, k)| json!({
                        "start_us": a, "end_us": b, "kind": k.name(),
                    })).collect::<Vec<_>>(),
                    "mark_us": row.mark,
                    "note": row.note,
                    "critical": row.critical,
                })
            })
            .collect(),
    )
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round tick step (1, 2 or 5 times a power of ten, in µs) at least
/// `min_px` apart.
fn tick_step(px_per_us: f64, min_px: f64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            if (step * m) as f64 * px_per_us >= min_px {
                return step * m;
            }
        }
        step *= 10;
    }
}

pub fn plot(r: &Record) -> String {
    let rows = rows(r);
    let end = r.end_us().max(1);
    // When the kernel takes most of the boot (a cloud kernel under QEMU:
    // 2 s of kernel, 200 ms of units), its first part is squeezed into
    // CUT_W px so that the units get the width; the axis says where.
    let cut = cut_at(r.init_us, end);
    let lead = if cut > 0 { CUT_W + 12.0 } else { 0.0 };
    // 1.5 px per ms, kept between 1000 and 3600 px of timeline.
    let span = end - cut;
    let chart_w = (span as f64 / 1000.0 * 1.5).clamp(1000.0, 3600.0);
    let px = chart_w / span.max(1) as f64;
    let chart_w = chart_w + lead;
    let x = |us: u64| {
        if us < cut {
            LABEL_W + us as f64 / cut as f64 * CUT_W
        } else {
            LABEL_W + lead + (us - cut) as f64 * px
        }
    };
    let rows_h = rows.len() as f64 * ROW_H;
    let legend_y = TOP + rows_h + 16.0;
    let chart = r.bootchart.as_ref().filter(|b| b.samples.len() >= 2);
    let busiest = chart.map(busiest).unwrap_or_default();
    let panels_h = chart.map_or(0.0, |_| {
        3.0 * (PANEL_H + 24.0) + 24.0 + busiest.len() as f64 * ROW_H
    });
    let width = LABEL_W + chart_w + NOTE_W;
    let height = legend_y + 30.0 + panels_h;
    let mut s = String::new();
    let _ = write!(
        s,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {width:.0} {height:.0}\" {FONT}>\n\
         <rect x=\"0\" y=\"0\" width=\"{width:.0}\" height=\"{height:.0}\" fill=\"#ffffff\"/>\n"
    );
    let title = match chain_phases(r) {
        Some(p) => format!("keel boot: complete in {p}"),
        None => "keel boot: not complete".into(),
    };
    let sub = format!(
        "{} · keel {} · {}",
        r.kernel_release.as_deref().unwrap_or("kernel ?"),
        r.keel,
        r.boot_id.as_deref().unwrap_or("")
    );
    let _ = write!(
        s,
        "<text x=\"10\" y=\"22\" font-size=\"16\" font-weight=\"bold\">{}</text>\n\
         <text x=\"10\" y=\"40\" fill=\"#555\">{}</text>\n",
        esc(&title),
        esc(&sub)
    );
    // Time axis and grid.
    let step = tick_step(px, 70.0);
    let grid_bottom = TOP + rows_h;
    if cut > 0 {
        let (a, b) = (LABEL_W + CUT_W, LABEL_W + lead);
        let _ = write!(
            s,
            "<text x=\"{LABEL_W}\" y=\"{0}\" fill=\"#555\">0</text>\
             <path d=\"M{a:.1} {1} l4 -6 l4 12 l4 -6\" stroke=\"#555\" fill=\"none\"/>\
             <text x=\"{b:.1}\" y=\"{2}\" fill=\"#555\" text-anchor=\"middle\">(axis cut)</text>\n",
            TOP - 12.0,
            TOP - 10.0,
            TOP - 24.0
        );
    }
    let mut t = cut.div_ceil(step) * step;
    while t <= end {
        let _ = write!(
            s,
            "<line x1=\"{0:.1}\" y1=\"{1}\" x2=\"{0:.1}\" y2=\"{grid_bottom:.1}\" stroke=\"#e4e4e4\"/>\
             <text x=\"{0:.1}\" y=\"{2}\" text-anchor=\"middle\" fill=\"#555\">{3}</text>\n",
            x(t),
            TOP - 8.0,
            TOP - 12.0,
            fmt_us(t)
        );
        t += step;
    }
    for (i, row) in rows.iter().enumerate() {
        let y = TOP + i as f64 * ROW_H;
        if i % 2 == 1 {
            let _ = write!(
                s,
                "<rect x=\"0\" y=\"{y:.1}\" width=\"{width:.0}\" height=\"{ROW_H}\" fill=\"#000\" fill-opacity=\"0.03\"/>\n"
            );
        }
        let weight = if row.critical {
            " font-weight=\"bold\""
        } else {
            ""
        };
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\"{weight}>{}</text>\n",
            LABEL_W - 8.0,
            y + 13.0,
            esc(&row.label)
        );
        let mut right = LABEL_W;
        for (a, b, kind) in &row.bars {
            let (x0, x1) = (x(*a), x(*b).max(x(*a) + 1.0));
            right = right.max(x1);
            let outline = if row.critical && *kind != Kind::Up {
                " stroke=\"#111\" stroke-width=\"1.2\""
            } else {
                ""
            };
            let _ = write!(
                s,
                "<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"12\" fill=\"{}\"{outline}>\
                 <title>{} {}: {} to {}</title></rect>\n",
                y + 3.0,
                x1 - x0,
                kind.color(),
                esc(&row.label),
                kind.name(),
                fmt_us(*a),
                fmt_us(*b)
            );
        }
        if let Some(m) = row.mark {
            let (mx, my) = (x(m), y + 9.0);
            right = right.max(mx + 5.0);
            let _ = write!(
                s,
                "<path d=\"M{:.1} {my:.1} l5 -5 l5 5 l-5 5 z\" fill=\"#4c566a\"/>\n",
                mx - 5.0
            );
        }
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#333\">{}</text>\n",
            right + 5.0,
            y + 13.0,
            esc(&row.note)
        );
    }
    let mut vline = |at: u64, label: &str, color: &str| {
        let _ = write!(
            s,
            "<line x1=\"{0:.1}\" y1=\"{1}\" x2=\"{0:.1}\" y2=\"{grid_bottom:.1}\" stroke=\"{color}\" \
             stroke-dasharray=\"4 3\"/><text x=\"{2:.1}\" y=\"{3}\" fill=\"{color}\">{4}</text>\n",
            x(at),
            TOP - 4.0,
            x(at) + 3.0,
            TOP + 10.0 + rows_h,
            esc(label)
        );
    };
    vline(r.init_us, "keel", "#4c566a");
    if let Some(c) = r.complete_us {
        vline(c, &format!("boot complete {}", fmt_us(c)), "#bf3030");
    }
    if let Some(sd) = &r.shutdown {
        vline(sd.begin_us, &format!("{} requested", sd.action), "#f08a24");
    }
    let mut lx = 10.0;
    for k in [
        Kind::Kernel,
        Kind::Stage1,
        Kind::Spawn,
        Kind::Start,
        Kind::Up,
        Kind::Failed,
        Kind::Stop,
    ] {
        let _ = write!(
            s,
            "<rect x=\"{lx:.1}\" y=\"{legend_y:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
            k.color(),
            lx + 16.0,
            legend_y + 10.0,
            k.name()
        );
        lx += 30.0 + k.name().len() as f64 * 6.5;
    }
    let _ = write!(
        s,
        "<text x=\"{lx:.1}\" y=\"{:.1}\" fill=\"#555\">bold: the critical chain of boot complete</text>\n",
        legend_y + 10.0
    );
    if let Some(b) = chart {
        bootchart(&mut s, b, &busiest, legend_y + 30.0, &x);
    }
    s.push_str("</svg>\n");
    s
}

fn chain_phases(r: &Record) -> Option<String> {
    let p = super::chain::phases(r).ok()?;
    let total = p.iter().find(|(n, _)| *n == "total")?.1;
    let parts: Vec<String> = p
        .iter()
        .filter(|(n, _)| !matches!(*n, "total" | "shutdown"))
        .map(|(n, us)| format!("{n} {}", fmt_us(*us)))
        .collect();
    Some(format!("{} ({})", fmt_us(total), parts.join(" + ")))
}

/// Where to cut the axis: a little before keel's start when the kernel took
/// over 40% of what the record spans, else nowhere (0).
fn cut_at(init_us: u64, end: u64) -> u64 {
    if init_us * 10 <= end * 4 {
        return 0;
    }
    init_us.saturating_sub((end - init_us) / 8)
}

/// The ten processes that used the most CPU while sampled.
fn busiest(b: &Bootchart) -> Vec<(i64, String, u64)> {
    let mut total: Vec<(i64, String, u64)> = Vec::new();
    for s in b.samples.iter().skip(1) {
        for (pid, comm, t) in &s.procs {
            match total.iter_mut().find(|(p, c, _)| p == pid && c == comm) {
                Some(e) => e.2 += t,
                None => total.push((*pid, comm.clone(), *t)),
            }
        }
    }
    crate::record::sort_by(&mut total, |a, b| (b.2, a.0) < (a.2, b.0));
    total.truncate(10);
    total
}

fn bootchart(
    s: &mut String,
    b: &Bootchart,
    busiest: &[(i64, String, u64)],
    top: f64,
    x: &dyn Fn(u64) -> f64,
) {
    let pairs: Vec<_> = b.samples.windows(2).map(|w| (&w[0], &w[1])).collect();
    let mut y = top;
    let mut panel = |s: &mut String,
                     title: &str,
                     series: &[(&str, Vec<f64>)],
                     max: f64,
                     unit: &str| {
        let _ = write!(
            s,
            "<text x=\"10\" y=\"{:.1}\" font-weight=\"bold\">{}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555\">{max:.0} {unit}</text>\
             <line x1=\"{LABEL_W}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\"/>\n",
            y + 14.0,
            esc(title),
            LABEL_W - 8.0,
            y + 28.0,
            y + 20.0 + PANEL_H,
            x(b.samples.last().map_or(0, |l| l.at_us)),
            y + 20.0 + PANEL_H
        );
        let base = y + 20.0 + PANEL_H;
        let mut stack = vec![0.0; pairs.len()];
        for (color, values) in series {
            for (i, (a, c)) in pairs.iter().enumerate() {
                let h = if max > 0.0 {
                    values[i] / max * PANEL_H
                } else {
                    0.0
                };
                if h <= 0.0 {
                    continue;
                }
                let _ = write!(
                    s,
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{color}\"/>\n",
                    x(a.at_us),
                    base - stack[i] - h,
                    (x(c.at_us) - x(a.at_us)).max(0.5)
                );
                stack[i] += h;
            }
        }
        y += PANEL_H + 24.0;
    };
    let d = |f: &dyn Fn(&crate::record::Sample) -> u64| -> Vec<f64> {
        pairs
            .iter()
            .map(|(a, c)| f(c).saturating_sub(f(a)) as f64)
            .collect()
    };
    let total = d(&|s| s.cpu.iter().sum());
    let pct = |v: Vec<f64>| -> Vec<f64> {
        v.iter()
            .zip(&total)
            .map(|(a, t)| if *t > 0.0 { a * 100.0 / t } else { 0.0 })
            .collect()
    };
    let cpu = [
        ("#3f7fbf", pct(d(&|s| s.cpu[0]))),
        ("#d64545", pct(d(&|s| s.cpu[1]))),
        ("#9aa5b1", pct(d(&|s| s.cpu[3]))),
    ];
    panel(s, "CPU (user, system, iowait)", &cpu, 100.0, "%");
    let secs: Vec<f64> = pairs
        .iter()
        .map(|(a, c)| c.at_us.saturating_sub(a.at_us).max(1) as f64 / 1e6)
        .collect();
    let rate = |v: Vec<f64>| -> Vec<f64> { v.iter().zip(&secs).map(|(k, t)| k / t).collect() };
    let disk = [
        ("#3f7fbf", rate(d(&|s| s.disk_kb[0]))),
        ("#f08a24", rate(d(&|s| s.disk_kb[1]))),
    ];
    let disk_max = (0..pairs.len())
        .map(|i| disk[0].1[i] + disk[1].1[i])
        .fold(0.0, f64::max);
    panel(s, "Disk (read, written)", &disk, disk_max, "KiB/s");
    let mem: Vec<f64> = pairs
        .iter()
        .map(|(_, c)| c.mem_kb[0].saturating_sub(c.mem_kb[1]) as f64 / 1024.0)
        .collect();
    let mem_max = mem.iter().copied().fold(0.0, f64::max);
    panel(s, "Memory used", &[("#b48ead", mem)], mem_max, "MiB");
    let _ = write!(
        s,
        "<text x=\"10\" y=\"{:.1}\" font-weight=\"bold\">Busiest processes (CPU share per sample)</text>\n",
        y + 14.0
    );
    y += 24.0;
    let hz = b.hz.max(1) as f64;
    for (i, (pid, comm, ticks)) in busiest.iter().enumerate() {
        let row_y = y + i as f64 * ROW_H;
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{} ({pid}) {}</text>\n",
            LABEL_W - 8.0,
            row_y + 13.0,
            esc(comm),
            fmt_us((*ticks as f64 / hz * 1e6) as u64)
        );
        for (a, c) in &pairs {
            let Some((_, _, t)) = c.procs.iter().find(|(p, n, _)| p == pid && n == comm) else {
                continue;
            };
            let span = c.at_us.saturating_sub(a.at_us).max(1) as f64 / 1e6 * hz;
            let share = (*t as f64 / span).clamp(0.15, 1.0);
            let _ = write!(
                s,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"12\" fill=\"#3f7fbf\" fill-opacity=\"{share:.2}\"/>\n",
                x(a.at_us),
                row_y + 3.0,
                (x(c.at_us) - x(a.at_us)).max(0.5)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_far_enough_apart() {
        assert_eq!(tick_step(0.001, 70.0), 100_000);
        assert_eq!(tick_step(0.0015, 70.0), 50_000);
        assert_eq!(cut_at(100, 1000), 0, "a short kernel phase is drawn whole");
        assert_eq!(cut_at(2_000_000, 2_800_000), 1_900_000);
        assert_eq!(esc("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
