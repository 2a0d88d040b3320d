//! Unit parsing and validation on arbitrary text: no panic, and the
//! invariants that the supervisor relies on (`keel_units::selfcheck`, which
//! the corpus replay in `make test` runs too). A line `#---` splits the
//! input into a unit file and a drop-in.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        keel_units::selfcheck::check_invariants(text);
    }
});
