//! Unit parsing and validation on arbitrary text: no panic, and the
//! invariants that the supervisor relies on. A line `#---` splits the input
//! into a unit file and a drop-in.
#![no_main]

use std::path::{Path, PathBuf};

use keel_units::{check_unit, resolve, Graph, UnitSource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
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
        assert!(d.col >= 1 && d.col <= lines[d.line - 1].chars().count() + 1, "{d}");
        let _ = d.to_string();
    }

    // The same text as three units that may name each other, plus a drop-in.
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
            assert!(loaded.units.contains_key(dep), "kept {} without {dep}", unit.name);
        }
    }
    let graph = Graph::new(&loaded.units).expect("load leaves no cycle");
    let started: usize = graph.start_levels().iter().map(Vec::len).sum();
    assert_eq!(started, loaded.units.len());
});
