//! Keel integration tests live in `tests/`; this library only holds shared helpers.
#![forbid(unsafe_code)]
