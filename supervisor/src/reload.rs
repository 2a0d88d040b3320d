//! `keel reload`: reread the unit directories and apply the difference:
//! start new units, stop (then forget) removed ones, restart changed ones,
//! leave unchanged ones alone. A unit whose new file is broken keeps
//! running on its old definition; the problem is reported.

use crate::runtime::{policy_of, waits_of, Supervisor, TimerKind};
use crate::service::{Event, Service, State};
use keel_units::Unit;
use std::collections::BTreeMap;

/// What a reload did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// Diagnostics and exclusions, one line each.
    pub problems: Vec<String>,
}

/// The parts of a unit that decide how it runs (not where it was read
/// from, nor the positions of its dependency strings).
fn same_definition(a: &Unit, b: &Unit) -> bool {
    let strip = |u: &Unit| {
        let mut u = u.clone();
        u.source = Default::default();
        u.dropins = Vec::new();
        u.dep_locs = Default::default();
        u
    };
    strip(a) == strip(b)
}

impl Supervisor {
    /// Rereads `Config::unit_dirs` and applies the difference.
    pub fn reload_from_dirs(&mut self) -> ReloadSummary {
        let loaded = keel_units::load(&self.config.unit_dirs);
        let mut problems: Vec<String> = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
        let mut units = loaded.units;
        for x in &loaded.excluded {
            problems.push(format!("unit {} not loaded: {}", x.unit, x.reason));
            if let Some(old) = self.units.get(&x.unit) {
                log::warn!("{}: keeps running its previous definition", x.unit);
                units.insert(x.unit.clone(), old.clone());
            }
        }
        for p in &problems {
            log::error!("reload: {p}");
        }
        let mut s = self.reload_units(units);
        s.problems = problems;
        log::info!(
            "reload: {} added, {} removed, {} changed",
            s.added.len(),
            s.removed.len(),
            s.changed.len()
        );
        s
    }

    /// Applies a new set of units.
    pub fn reload_units(&mut self, new: BTreeMap<String, Unit>) -> ReloadSummary {
        let mut s = ReloadSummary::default();
        for (name, unit) in &new {
            match self.units.get(name) {
                None => {
                    let p = policy_of(unit);
                    self.services.insert(name.clone(), Service::new(&p));
                    self.policies.insert(name.clone(), p);
                    self.logs
                        .insert(name.clone(), crate::logs::UnitLog::new(name));
                    self.units.insert(name.clone(), unit.clone());
                    self.removing.remove(name);
                    s.added.push(name.clone());
                }
                Some(old) if !same_definition(old, unit) => {
                    self.units.insert(name.clone(), unit.clone());
                    self.policies.insert(name.clone(), policy_of(unit));
                    self.removing.remove(name);
                    s.changed.push(name.clone());
                }
                Some(_) => {}
            }
        }
        let gone: Vec<String> = self
            .units
            .keys()
            .filter(|n| !new.contains_key(*n))
            .cloned()
            .collect();
        for name in &gone {
            self.removing.insert(name.clone());
            s.removed.push(name.clone());
        }
        self.waits = self
            .units
            .keys()
            .map(|n| (n.clone(), waits_of(&self.units, n)))
            .collect();
        for name in &s.changed {
            let state = self.services.get(name).map(|x| x.state.clone());
            match state {
                Some(st) if st.pid().is_some() => {
                    self.restart_pending.insert(name.clone());
                    self.feed(name, Event::Stop);
                }
                Some(State::Inactive) | None => {}
                Some(_) => self.feed(name, Event::Start { manual: true }),
            }
        }
        for name in &gone {
            self.restart_pending.remove(name);
            self.feed(name, Event::Stop);
            self.forget_if_down(name);
        }
        s
    }

    /// Drops a removed unit once it is down.
    pub(crate) fn forget_if_down(&mut self, name: &str) {
        if !self.removing.contains(name) {
            return;
        }
        let down = self
            .services
            .get(name)
            .is_none_or(|s| s.state.pid().is_none() && s.state != State::Backoff);
        if !down {
            return;
        }
        self.removing.remove(name);
        self.units.remove(name);
        self.policies.remove(name);
        self.services.remove(name);
        self.logs.remove(name);
        self.status.remove(name);
        self.errno.remove(name);
        self.fdstore.remove(name);
        self.waits.remove(name);
        for k in [
            TimerKind::State,
            TimerKind::Probe,
            TimerKind::Health,
            TimerKind::Watchdog,
            TimerKind::ProbeTimeout,
        ] {
            self.timers.remove(&(name.to_string(), k));
        }
        if let Some(cg) = self.cgroups.remove(name) {
            let _ = cg.remove();
        }
        log::info!("{name}: removed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_compare_without_their_origin() {
        let a = Unit::new("x", vec!["/bin/true".into()]);
        let mut b = a.clone();
        b.source = "/etc/keel/units/x.toml".into();
        assert!(same_definition(&a, &b));
        b.exec = vec!["/bin/false".into()];
        assert!(!same_definition(&a, &b));
    }
}
