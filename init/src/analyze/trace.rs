//! `trace`: the record as Chrome trace event JSON (the "JSON Array/Object
//! format" that Perfetto and chrome://tracing open). One process, "boot";
//! a track for the kernel, one for stage 1, one for keel itself and one per
//! unit. Complete ("X") events for spans, instant ("i") events for the
//! kernel's milestones and boot complete, counters ("C") for the bootchart.
//! Timestamps are microseconds of CLOCK_BOOTTIME, as in the record.

use crate::record::Record;
use serde_json::{json, Value};

const PID: u64 = 1;
const KERNEL: u64 = 1;
const STAGE1: u64 = 2;
const KEEL: u64 = 3;
const FIRST_UNIT: u64 = 10;

fn span(name: &str, tid: u64, start: u64, end: u64, args: Value) -> Value {
    json!({
        "name": name, "cat": "boot", "ph": "X", "pid": PID, "tid": tid,
        "ts": start, "dur": end.saturating_sub(start), "args": args,
    })
}

fn instant(name: &str, tid: u64, at: u64, scope: &str, args: Value) -> Value {
    json!({
        "name": name, "cat": "boot", "ph": "i", "s": scope, "pid": PID, "tid": tid,
        "ts": at, "args": args,
    })
}

fn thread(tid: u64, name: &str) -> [Value; 2] {
    [
        json!({"name": "thread_name", "ph": "M", "pid": PID, "tid": tid, "ts": 0,
               "args": {"name": name}}),
        json!({"name": "thread_sort_index", "ph": "M", "pid": PID, "tid": tid, "ts": 0,
               "args": {"sort_index": tid}}),
    ]
}

pub fn trace(r: &Record) -> Value {
    let end = r.end_us();
    let mut ev = vec![
        json!({"name": "process_name", "ph": "M", "pid": PID, "tid": 0, "ts": 0,
                              "args": {"name": "boot"}}),
    ];
    ev.extend(thread(KERNEL, "kernel"));
    ev.push(span("kernel", KERNEL, 0, r.init_us, json!({})));
    for m in &r.kernel {
        ev.push(instant(
            &m.name,
            KERNEL,
            m.at_us,
            "t",
            json!({"message": m.message}),
        ));
    }
    if let Some(s) = &r.stage1 {
        ev.extend(thread(STAGE1, "stage 1"));
        for p in &s.phases {
            ev.push(span(&p.name, STAGE1, p.start_us, p.end_us, json!({})));
        }
    }
    ev.extend(thread(KEEL, "keel"));
    if let Some(c) = r.complete_us {
        ev.push(span(
            "boot",
            KEEL,
            r.init_us,
            c,
            json!({"failed": r.failed.len()}),
        ));
        ev.push(instant(
            "boot complete",
            KEEL,
            c,
            "g",
            json!({"problems": r.problems}),
        ));
    }
    if let Some(b) = r.blessed_us {
        ev.push(instant("blessed", KEEL, b, "g", json!({})));
    }
    if let Some(s) = &r.shutdown {
        ev.push(span(&s.action, KEEL, s.begin_us, s.end_us, json!({})));
    }
    for (tid, u) in (FIRST_UNIT..).zip(&r.units) {
        let Some(start) = u.started_us else { continue };
        ev.extend(thread(tid, &u.name));
        let args = json!({"waited_for": u.waited_for, "type": u.kind, "pid": u.pid,
                          "restarts": u.restarts, "failure": u.failure});
        let settled = u.settled_us().unwrap_or(u.stopping_us.unwrap_or(end));
        let what = if u.failed_first() { "failed" } else { "start" };
        ev.push(span(
            &format!("{} {what}", u.name),
            tid,
            start,
            settled,
            args,
        ));
        if let Some(x) = u.execd_us.filter(|x| *x > start && *x <= settled) {
            ev.push(span("fork to exec", tid, start, x, json!({})));
        }
        if let Some(ready) = u.ready_us.filter(|_| !u.failed_first()) {
            let up_end = u.stopping_us.or(u.failed_us).unwrap_or(end);
            ev.push(span(
                &format!("{} up", u.name),
                tid,
                ready,
                up_end.max(ready),
                json!({}),
            ));
        }
        if let (Some(a), Some(b)) = (u.stopping_us, u.stopped_us) {
            ev.push(span(
                &format!("{} stopping", u.name),
                tid,
                a,
                b.max(a),
                json!({}),
            ));
        }
        if let Some(f) = u.failed_us {
            ev.push(instant("failed", tid, f, "t", json!({"reason": u.failure})));
        }
    }
    if let Some(b) = &r.bootchart {
        for w in b.samples.windows(2) {
            let (a, c) = (&w[0], &w[1]);
            let d = |i: usize| c.cpu[i].saturating_sub(a.cpu[i]) as f64;
            let total: f64 = (0..4).map(d).sum();
            let pct = |i: usize| {
                if total > 0.0 {
                    d(i) * 100.0 / total
                } else {
                    0.0
                }
            };
            let secs = c.at_us.saturating_sub(a.at_us).max(1) as f64 / 1e6;
            let rate = |i: usize| c.disk_kb[i].saturating_sub(a.disk_kb[i]) as f64 / secs;
            let counter = |name: &str, args: Value| json!({"name": name, "ph": "C", "pid": PID, "tid": 0, "ts": c.at_us, "args": args});
            ev.push(counter(
                "cpu %",
                json!({"user": pct(0), "system": pct(1), "iowait": pct(3)}),
            ));
            ev.push(counter(
                "disk KiB/s",
                json!({"read": rate(0), "written": rate(1)}),
            ));
            ev.push(counter(
                "memory used MiB",
                json!({"used": c.mem_kb[0].saturating_sub(c.mem_kb[1]) as f64 / 1024.0}),
            ));
        }
    }
    json!({
        "traceEvents": ev,
        "displayTimeUnit": "ms",
        "otherData": {"boot_id": r.boot_id, "kernel": r.kernel_release, "keel": r.keel},
    })
}
