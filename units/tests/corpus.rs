//! Replays the fuzzer's seed corpus (`fuzz/corpus/units/`) through the same
//! checks as the fuzz target, so that whatever the fuzzer once found stays
//! fixed in `make test` without nightly.
#![allow(clippy::unwrap_used)] // a test crate: a panic is a failure

use std::fs;
use std::path::Path;

use keel_units::selfcheck::check_invariants as replay;

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
