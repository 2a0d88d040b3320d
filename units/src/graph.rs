//! The dependency graph: who waits for whom, the start order as levels of
//! units that may start in parallel, the stop order (its reverse), and the
//! cycles, each reported as the cycle itself (`a -> b -> c -> a`).
//!
//! An edge "a waits for b" comes from `a.requires`, `a.wants` or `a.after`
//! naming b, or from `b.before` naming a. Names of units that are not in
//! the map are ignored here (`load` reports the ones that matter).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use crate::unit::Unit;

/// Why one unit waits for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DepKind {
    /// `requires`: hard; fails if the dependency fails.
    Requires,
    /// `wants`: soft.
    Wants,
    /// `after`: ordering only.
    After,
    /// The other unit said `before = [this one]`: ordering only.
    Before,
}

impl DepKind {
    /// The key that declares it.
    pub fn key(self) -> &'static str {
        match self {
            DepKind::Requires => "requires",
            DepKind::Wants => "wants",
            DepKind::After => "after",
            DepKind::Before => "before",
        }
    }
}

/// One unit that another waits for (or that waits for it), and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dep {
    pub unit: String,
    pub kind: DepKind,
}

/// A dependency cycle: `units[i]` waits for `units[i + 1]` (because of
/// `kinds[i]`), and the last waits for the first. Starts at the cycle's
/// smallest name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cycle {
    pub units: Vec<String>,
    pub kinds: Vec<DepKind>,
}

impl fmt::Display for Cycle {
    /// `a -> b -> c -> a`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for unit in &self.units {
            write!(f, "{unit} -> ")?;
        }
        f.write_str(self.units.first().map_or("", String::as_str))
    }
}

/// An acyclic dependency graph over a set of units.
#[derive(Debug, Clone)]
pub struct Graph {
    names: Vec<String>,
    index: BTreeMap<String, usize>,
    /// `waits[a]`: the units a waits for, each with the strongest kind.
    waits: Vec<Vec<(usize, DepKind)>>,
    levels: Vec<Vec<usize>>,
}

impl Graph {
    /// Builds the graph, or returns every cycle (one per strongly connected
    /// group of units).
    pub fn new(units: &BTreeMap<String, Unit>) -> Result<Graph, Vec<Cycle>> {
        let names: Vec<String> = units.keys().cloned().collect();
        let index: BTreeMap<String, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let mut waits = vec![Vec::new(); names.len()];
        for (i, unit) in units.values().enumerate() {
            let own = [
                (DepKind::Requires, &unit.requires),
                (DepKind::Wants, &unit.wants),
                (DepKind::After, &unit.after),
            ];
            for (kind, list) in own {
                for j in list.iter().filter_map(|d| index.get(d)) {
                    waits[i].push((*j, kind));
                }
            }
            for j in unit.before.iter().filter_map(|d| index.get(d)) {
                waits[*j].push((i, DepKind::Before));
            }
        }
        for list in &mut waits {
            // Sorting by (unit, kind) puts the strongest kind first.
            list.sort_unstable();
            list.dedup_by_key(|(j, _)| *j);
        }
        let mut graph = Graph {
            names,
            index,
            waits,
            levels: Vec::new(),
        };
        let cycles = graph.cycles();
        if !cycles.is_empty() {
            return Err(cycles);
        }
        graph.levels = graph.compute_levels();
        Ok(graph)
    }

    /// Levels of units that may start in parallel: every unit comes after
    /// all the units it waits for. Each level is sorted by name.
    pub fn start_levels(&self) -> Vec<Vec<String>> {
        self.named(self.levels.iter())
    }

    /// The start levels reversed: a unit stops before what it waits for.
    pub fn stop_levels(&self) -> Vec<Vec<String>> {
        self.named(self.levels.iter().rev())
    }

    /// What `unit` waits for, each once with its strongest kind, by name.
    pub fn dependencies_of(&self, unit: &str) -> Vec<Dep> {
        let Some(&i) = self.index.get(unit) else {
            return Vec::new();
        };
        self.waits[i]
            .iter()
            .map(|&(j, kind)| self.dep(j, kind))
            .collect()
    }

    /// The units that wait for `unit`, each with the kind of the wait.
    pub fn dependents_of(&self, unit: &str) -> Vec<Dep> {
        let Some(&i) = self.index.get(unit) else {
            return Vec::new();
        };
        let waiting = self.waits.iter().enumerate();
        waiting
            .filter_map(|(a, list)| {
                list.iter()
                    .find(|(j, _)| *j == i)
                    .map(|&(_, k)| self.dep(a, k))
            })
            .collect()
    }

    /// The units in the graph, sorted.
    pub fn units(&self) -> &[String] {
        &self.names
    }

    fn dep(&self, j: usize, kind: DepKind) -> Dep {
        Dep {
            unit: self.names[j].clone(),
            kind,
        }
    }

    fn named<'a>(&self, levels: impl Iterator<Item = &'a Vec<usize>>) -> Vec<Vec<String>> {
        levels
            .map(|l| l.iter().map(|&i| self.names[i].clone()).collect())
            .collect()
    }

    /// Longest-path layering (Kahn's algorithm): a unit's level is one more
    /// than the highest level among what it waits for.
    fn compute_levels(&self) -> Vec<Vec<usize>> {
        let n = self.names.len();
        let mut waited_by = vec![Vec::new(); n];
        let mut pending: Vec<usize> = self.waits.iter().map(Vec::len).collect();
        for (a, list) in self.waits.iter().enumerate() {
            for &(b, _) in list {
                waited_by[b].push(a);
            }
        }
        let mut level = vec![0usize; n];
        let mut queue: VecDeque<usize> = (0..n).filter(|&i| pending[i] == 0).collect();
        let mut levels: Vec<Vec<usize>> = Vec::new();
        while let Some(b) = queue.pop_front() {
            if levels.len() <= level[b] {
                levels.resize(level[b] + 1, Vec::new());
            }
            levels[level[b]].push(b);
            for &a in &waited_by[b] {
                level[a] = level[a].max(level[b] + 1);
                pending[a] -= 1;
                if pending[a] == 0 {
                    queue.push_back(a);
                }
            }
        }
        for l in &mut levels {
            l.sort_unstable();
        }
        levels
    }

    /// One cycle per non-trivial strongly connected component.
    fn cycles(&self) -> Vec<Cycle> {
        let mut cycles: Vec<Cycle> = strongly_connected(&self.waits)
            .into_iter()
            .filter(|scc| scc.len() > 1 || self.waits[scc[0]].iter().any(|&(j, _)| j == scc[0]))
            .map(|scc| self.cycle_in(&scc))
            .collect();
        cycles.sort();
        cycles
    }

    /// The shortest cycle through the smallest unit of a strongly connected
    /// component (breadth-first, within the component).
    fn cycle_in(&self, scc: &[usize]) -> Cycle {
        let start = scc.iter().copied().min().unwrap_or_default();
        let mut member = vec![false; self.names.len()];
        for &i in scc {
            member[i] = true;
        }
        let mut parent: Vec<Option<(usize, DepKind)>> = vec![None; self.names.len()];
        let mut queue = VecDeque::from([start]);
        let mut closing = None;
        'search: while let Some(a) = queue.pop_front() {
            for &(b, kind) in &self.waits[a] {
                if b == start {
                    closing = Some((a, kind));
                    break 'search;
                }
                if member[b] && parent[b].is_none() {
                    parent[b] = Some((a, kind));
                    queue.push_back(b);
                }
            }
        }
        let mut units = Vec::new();
        let mut kinds = Vec::new();
        if let Some((mut a, kind)) = closing {
            kinds.push(kind);
            while a != start {
                units.push(a);
                let Some((p, k)) = parent[a] else { break };
                kinds.push(k);
                a = p;
            }
            units.push(start);
        }
        units.reverse();
        kinds.reverse();
        Cycle {
            units: units.into_iter().map(|i| self.names[i].clone()).collect(),
            kinds,
        }
    }
}

/// Tarjan's algorithm, iterative: a 10,000-unit chain must not overflow
/// PID 1's stack.
fn strongly_connected(adj: &[Vec<(usize, DepKind)>]) -> Vec<Vec<usize>> {
    const UNSEEN: usize = usize::MAX;
    let n = adj.len();
    let (mut index, mut low) = (vec![UNSEEN; n], vec![0; n]);
    let mut on_stack = vec![false; n];
    let (mut stack, mut out, mut next) = (Vec::new(), Vec::new(), 0);
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        let mut calls = vec![(root, 0usize)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&(v, child)) = calls.last() {
            if let Some(&(w, _)) = adj[v].get(child) {
                if let Some(top) = calls.last_mut() {
                    top.1 += 1;
                }
                if index[w] == UNSEEN {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(parent, _)) = calls.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut scc = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    scc.push(w);
                    if w == v {
                        break;
                    }
                }
                out.push(scc);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units(edges: &[(&str, &str, DepKind)], names: &[&str]) -> BTreeMap<String, Unit> {
        let mut map: BTreeMap<String, Unit> = names
            .iter()
            .map(|n| (n.to_string(), Unit::new(n, vec!["/bin/true".into()])))
            .collect();
        for &(a, b, kind) in edges {
            let u = map.get_mut(a).unwrap();
            match kind {
                DepKind::Requires => u.requires.push(b.into()),
                DepKind::Wants => u.wants.push(b.into()),
                DepKind::After => u.after.push(b.into()),
                DepKind::Before => u.before.push(b.into()),
            }
        }
        map
    }

    #[test]
    fn levels_follow_every_kind_of_edge() {
        use DepKind::*;
        let map = units(
            &[
                ("web", "db", Requires),
                ("web", "cache", Wants),
                ("db", "net", After),
                ("log", "net", Before),
                ("x", "missing", Requires),
            ],
            &["web", "db", "cache", "net", "log", "x"],
        );
        let g = Graph::new(&map).unwrap();
        assert_eq!(
            g.start_levels(),
            vec![
                vec!["cache", "log", "x"],
                vec!["net"],
                vec!["db"],
                vec!["web"]
            ]
        );
        assert_eq!(g.stop_levels()[0], vec!["web"]);
        assert_eq!(
            g.dependencies_of("net"),
            vec![Dep {
                unit: "log".into(),
                kind: Before
            }]
        );
        assert_eq!(
            g.dependents_of("db"),
            vec![Dep {
                unit: "web".into(),
                kind: Requires
            }]
        );
        assert!(g.dependencies_of("nope").is_empty());
    }

    #[test]
    fn cycles_are_reported_as_themselves() {
        use DepKind::*;
        let map = units(
            &[
                ("b", "c", Requires),
                ("c", "a", Wants),
                ("a", "b", After),
                ("d", "d", Requires),
                ("e", "a", Requires),
            ],
            &["a", "b", "c", "d", "e"],
        );
        let cycles = Graph::new(&map).unwrap_err();
        let shown: Vec<String> = cycles.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["a -> b -> c -> a", "d -> d"]);
        assert_eq!(cycles[0].kinds, [After, Requires, Wants]);
    }
}
