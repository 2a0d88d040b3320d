//! What happened to each unit and when (CLOCK_BOOTTIME), for the boot
//! record and `keel analyze`: forked, exec'd, ready, exited, failed,
//! stopping, stopped, and which dependency a unit waited for last. Bounded:
//! after [`MAX_EVENTS`] the oldest events after boot are dropped.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// At most this many events are kept.
pub const MAX_EVENTS: usize = 20_000;

/// One thing that happened to a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// Its dependencies were satisfied and it was started (before fork).
    Started,
    /// exec succeeded.
    Execd { pid: i32 },
    /// Ready (simple: exec'd; notify: READY=1; oneshot: exited 0).
    Ready,
    /// The main process exited.
    Exited { status: String },
    /// Failed for good (or is crash-looping).
    Failed { reason: String },
    /// Will be restarted after `delay`.
    Restarting { delay: Duration },
    /// Its stop began.
    Stopping,
    /// Down after a stop.
    Stopped,
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub at: Duration,
    pub unit: String,
    pub mark: Mark,
}

/// Every unit's events in order, plus what each start waited for.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    pub events: VecDeque<Event>,
    /// For each started unit: the dependency whose readiness came last
    /// before it started (None: it waited for nothing).
    pub waited_for: BTreeMap<String, Option<String>>,
}

impl Timeline {
    pub fn push(&mut self, at: Duration, unit: &str, mark: Mark) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(Event {
            at,
            unit: unit.to_string(),
            mark,
        });
    }

    /// When `unit` first reached `pred`, if it did.
    pub fn first(&self, unit: &str, pred: impl Fn(&Mark) -> bool) -> Option<Duration> {
        self.events
            .iter()
            .find(|e| e.unit == unit && pred(&e.mark))
            .map(|e| e.at)
    }

    /// When `unit` was first ready (or finished, for a oneshot).
    pub fn ready_at(&self, unit: &str) -> Option<Duration> {
        self.first(unit, |m| matches!(m, Mark::Ready))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_finds_marks_and_stays_bounded() {
        let mut t = Timeline::default();
        t.push(Duration::from_millis(5), "a", Mark::Started);
        t.push(Duration::from_millis(7), "a", Mark::Ready);
        t.push(Duration::from_millis(9), "a", Mark::Ready);
        assert_eq!(t.ready_at("a"), Some(Duration::from_millis(7)));
        assert_eq!(t.ready_at("b"), None);
        for i in 0..MAX_EVENTS {
            t.push(Duration::from_millis(i as u64), "x", Mark::Stopping);
        }
        assert_eq!(t.events.len(), MAX_EVENTS);
    }
}
