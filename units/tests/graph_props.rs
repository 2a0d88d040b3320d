//! Property tests of the dependency graph: on random DAGs every edge is
//! respected by the start levels (and the stop levels are their reverse);
//! on random graphs, a graph is rejected exactly when it has a cycle, and
//! every reported cycle is a real one.
#![allow(clippy::unwrap_used)] // a test crate: a panic is a failure

use std::collections::{BTreeMap, BTreeSet};

use keel_units::{DepKind, Graph, Unit};
use proptest::prelude::*;

const KINDS: [DepKind; 4] = [
    DepKind::Requires,
    DepKind::Wants,
    DepKind::After,
    DepKind::Before,
];

/// Builds units where, for each (a, b, kind), unit a waits for unit b.
fn build(n: usize, names: &[String], edges: &[(usize, usize, DepKind)]) -> BTreeMap<String, Unit> {
    let mut units: BTreeMap<String, Unit> = names[..n]
        .iter()
        .map(|s| (s.clone(), Unit::new(s, vec!["/bin/true".into()])))
        .collect();
    for &(a, b, kind) in edges {
        let (a, b) = (&names[a], &names[b]);
        match kind {
            DepKind::Requires => units.get_mut(a).unwrap().requires.push(b.clone()),
            DepKind::Wants => units.get_mut(a).unwrap().wants.push(b.clone()),
            DepKind::After => units.get_mut(a).unwrap().after.push(b.clone()),
            DepKind::Before => units.get_mut(b).unwrap().before.push(a.clone()),
        }
    }
    units
}

/// Whether the graph says "a waits for b because of kind".
fn has_edge(units: &BTreeMap<String, Unit>, a: &str, b: &str, kind: DepKind) -> bool {
    let (ua, ub) = (&units[a], &units[b]);
    let has = |list: &Vec<String>, x: &str| list.iter().any(|s| s == x);
    match kind {
        DepKind::Requires => has(&ua.requires, b),
        DepKind::Wants => has(&ua.wants, b),
        DepKind::After => has(&ua.after, b),
        DepKind::Before => has(&ub.before, a),
    }
}

/// Reference cycle check: repeatedly remove units that wait for nothing left.
fn has_cycle(n: usize, edges: &[(usize, usize, DepKind)]) -> bool {
    let mut left: BTreeSet<usize> = (0..n).collect();
    loop {
        let free: Vec<usize> = left
            .iter()
            .copied()
            .filter(|&a| !edges.iter().any(|&(x, y, _)| x == a && left.contains(&y)))
            .collect();
        if free.is_empty() {
            return !left.is_empty();
        }
        for a in free {
            left.remove(&a);
        }
    }
}

fn check_levels(graph: &Graph, names: &[String], n: usize, edges: &[(usize, usize, DepKind)]) {
    let start = graph.start_levels();
    let level: BTreeMap<&str, usize> = start
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.iter().map(move |u| (u.as_str(), i)))
        .collect();
    assert_eq!(level.len(), n, "every unit exactly once");
    assert_eq!(start.iter().map(Vec::len).sum::<usize>(), n);
    for &(a, b, _) in edges {
        assert!(
            level[names[a].as_str()] > level[names[b].as_str()],
            "{} waits for {}",
            names[a],
            names[b]
        );
    }
    let mut reversed = start.clone();
    reversed.reverse();
    assert_eq!(graph.stop_levels(), reversed);
    // Longest-path layering: nothing starts later than it has to.
    for (i, l) in start.iter().enumerate().skip(1) {
        for u in l {
            let deps = graph.dependencies_of(u);
            assert!(
                deps.iter().any(|d| level[d.unit.as_str()] == i - 1),
                "{u} could start earlier"
            );
        }
    }
}

fn names() -> impl Strategy<Value = Vec<String>> {
    // Shuffled so that name order says nothing about edge direction.
    Just((0..40).map(|i| format!("u{i:02}")).collect::<Vec<_>>()).prop_shuffle()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn dag_levels_respect_every_edge(
        names in names(),
        n in 1usize..40,
        raw in prop::collection::vec((0usize..40, 0usize..40, 0usize..4), 0..120),
    ) {
        // Edges only from a higher to a lower index: acyclic by construction.
        let edges: Vec<(usize, usize, DepKind)> = raw
            .into_iter()
            .map(|(a, b, k)| (a % n, b % n, KINDS[k]))
            .filter(|&(a, b, _)| a > b)
            .collect();
        let units = build(n, &names, &edges);
        let graph = Graph::new(&units).expect("a DAG has no cycle");
        check_levels(&graph, &names, n, &edges);
        for &(a, b, _) in &edges {
            let deps = graph.dependencies_of(&names[a]);
            prop_assert!(deps.iter().any(|d| d.unit == names[b]));
            prop_assert!(graph.dependents_of(&names[b]).iter().any(|d| d.unit == names[a]));
        }
    }

    #[test]
    fn reported_cycles_are_real_cycles(
        names in names(),
        n in 1usize..25,
        raw in prop::collection::vec((0usize..40, 0usize..40, 0usize..4), 1..60),
    ) {
        let edges: Vec<(usize, usize, DepKind)> =
            raw.into_iter().map(|(a, b, k)| (a % n, b % n, KINDS[k])).collect();
        let units = build(n, &names, &edges);
        match Graph::new(&units) {
            Ok(graph) => {
                prop_assert!(!has_cycle(n, &edges));
                check_levels(&graph, &names, n, &edges);
            }
            Err(cycles) => {
                prop_assert!(has_cycle(n, &edges));
                prop_assert!(!cycles.is_empty());
                let mut seen = BTreeSet::new();
                for cycle in &cycles {
                    let len = cycle.units.len();
                    prop_assert!(len >= 1);
                    prop_assert_eq!(cycle.kinds.len(), len);
                    let distinct: BTreeSet<&String> = cycle.units.iter().collect();
                    prop_assert_eq!(distinct.len(), len, "a simple cycle");
                    for i in 0..len {
                        let (a, b) = (&cycle.units[i], &cycle.units[(i + 1) % len]);
                        prop_assert!(has_edge(&units, a, b, cycle.kinds[i]), "{} -> {} ({:?})", a, b, cycle.kinds[i]);
                    }
                    // One cycle per strongly connected group: no unit twice.
                    for u in &cycle.units {
                        prop_assert!(seen.insert(u.clone()));
                    }
                    let shown = cycle.to_string();
                    prop_assert!(shown.starts_with(&cycle.units[0]) && shown.ends_with(&cycle.units[0]));
                }
            }
        }
    }
}

#[test]
fn a_long_chain_does_not_overflow_the_stack() {
    let names: Vec<String> = (0..100_000).map(|i| format!("u{i:06}")).collect();
    let edges: Vec<(usize, usize, DepKind)> = (1..names.len())
        .map(|i| (i, i - 1, DepKind::Requires))
        .collect();
    let units = build(names.len(), &names, &edges);
    let graph = Graph::new(&units).unwrap();
    assert_eq!(graph.start_levels().len(), names.len());
    let mut cyclic = units;
    cyclic
        .get_mut("u000000")
        .unwrap()
        .requires
        .push("u099999".into());
    let cycles = Graph::new(&cyclic).unwrap_err();
    assert_eq!(cycles.len(), 1);
    assert_eq!(cycles[0].units.len(), 100_000);
}
