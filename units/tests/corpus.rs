//! Replays the fuzzer's seed corpus (`fuzz/corpus/units/`) through the same
//! checks as the fuzz target, so that whatever the fuzzer once found stays
//! fixed in `make test` without nightly.
#![allow(clippy::unwrap_used)] // a test crate: a panic is a failure

use std::fs;
use std::path::{Path, PathBuf};

use keel_units::{check_unit, resolve, Graph, UnitSource};

fn replay(text: &str) {
    let (main, dropin) = match text.split_once("\n#---\n") {
        Some((main, dropin)) => (main, Some(dropin)),
        None => (text, None),
    };
    let (unit, diags) = check_unit("a", Path::new("/f/a.toml"), main);
    assert_eq!(unit.is_some(), !diags.iter().any(|d| d.is_error()));
    let lines: Vec<&str> = main.split('\n').collect();
    for d in &diags {
        assert!(d.line >= 1 && d.line <= lines.len(), "{d}");
        assert!(
            d.col >= 1 && d.col <= lines[d.line - 1].chars().count() + 1,
            "{d}"
        );
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
            assert!(loaded.units.contains_key(dep));
        }
    }
    let graph = Graph::new(&loaded.units).unwrap();
    let started: usize = graph.start_levels().iter().map(Vec::len).sum();
    assert_eq!(started, loaded.units.len());
}

#[test]
fn the_fuzz_corpus_replays_without_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/units");
    let mut count = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = fs::read(&path).unwrap();
        // The fuzz target skips what is not UTF-8; so do we.
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let outcome = std::panic::catch_unwind(|| replay(text));
            assert!(outcome.is_ok(), "panic on {}", path.display());
            count += 1;
        }
    }
    assert!(
        count >= 20,
        "only {count} corpus files in {}",
        dir.display()
    );
}
