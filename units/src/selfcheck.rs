//! The invariants the fuzz target checks on arbitrary text, shared with the
//! corpus replay in `make test` so both check exactly the same things. Not
//! part of the API PID 1 uses (and dropped from it by the linker).

use std::path::{Path, PathBuf};

use crate::{check_unit, resolve, Graph, UnitSource};

/// Parses `text` as a unit (a line `#---` splits off a drop-in), then as
/// three units that may name each other, and panics if an invariant the
/// supervisor relies on breaks: positions inside the text, no kept unit
/// missing a requirement, no cycle left, every kept unit in the start order.
pub fn check_invariants(text: &str) {
    let (main, dropin) = match text.split_once("\n#---\n") {
        Some((main, dropin)) => (main, Some(dropin)),
        None => (text, None),
    };
    let (unit, diags) = check_unit("a", Path::new("/f/a.toml"), main);
    assert_eq!(unit.is_some(), !diags.iter().any(|d| d.is_error()));
    let lines: Vec<&str> = main.split('\n').collect();
    for d in &diags {
        // Every position is inside the text (one past the end at most).
        assert!(d.line >= 1 && d.line <= lines.len(), "{d}");
        assert!(
            d.col >= 1 && d.col <= lines[d.line - 1].chars().count() + 1,
            "{d}"
        );
        let _ = d.to_string();
    }
    let source = |name: &str| UnitSource {
        name: name.to_owned(),
        file: PathBuf::from(format!("/f/{name}.toml")),
        text: main.to_owned(),
        dropins: dropin
            .map(|d| vec![(PathBuf::from(format!("/f/{name}.d/x.toml")), d.to_owned())])
            .unwrap_or_default(),
        read_errors: Vec::new(),
    };
    let loaded = resolve(vec![source("a"), source("b"), source("c")]);
    for unit in loaded.units.values() {
        for dep in &unit.requires {
            assert!(loaded.units.contains_key(dep), "kept unit misses {dep}");
        }
    }
    let graph = Graph::new(&loaded.units).expect("resolve leaves no cycle");
    let started: usize = graph.start_levels().iter().map(Vec::len).sum();
    assert_eq!(started, loaded.units.len());
}
