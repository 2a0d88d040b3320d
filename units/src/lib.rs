//! Keel's unit files: the TOML schema, validation with compiler-grade
//! diagnostics (`FILE:LINE:COL: error: MESSAGE`), the override directories
//! and drop-ins, and the dependency graph with its start and stop order.
//!
//! Pure: besides reading unit files in [`load`], nothing here touches the
//! system, so everything is tested from text. The entry points:
//! - [`load`]: directories in, the units that will boot out (with every
//!   diagnostic and every excluded unit, each with its reason);
//! - [`parse_unit`]: one unit's text in, a [`Unit`] or its diagnostics out;
//! - [`Graph`]: start levels, stop levels, dependencies and cycles.
#![forbid(unsafe_code)]

mod diag;
mod fields;
mod graph;
mod load;
mod raw;
mod resolve;
#[doc(hidden)]
pub mod selfcheck;
mod signal;
mod unit;
mod validate;
mod values;

use std::path::Path;
use std::sync::Arc;

pub use diag::{Diagnostic, Loc, Severity};
pub use graph::{Cycle, Dep, DepKind, Graph};
pub use load::{load, LoadError, DEFAULT_DIRS};
pub use resolve::{resolve, Excluded, Loaded, UnitSource};
pub use signal::Signal;
pub use unit::{
    Capability, DepLocs, Health, KillMode, Limits, Probe, Restart, ServiceType, StartLimit, Unit,
    CAPABILITY_NAMES,
};
pub use validate::valid_unit_name;
pub use values::{format_duration, parse_duration, parse_size, HttpUrl, Ident, ValueError};

/// Parses and validates one unit named `name` from `text`, the contents of
/// `file`. Checks nothing that needs the other units (missing dependencies,
/// cycles: see [`load`] and [`resolve`]). On error, every diagnostic (errors
/// and warnings) is returned.
pub fn parse_unit(name: &str, file: &Path, text: &str) -> Result<Unit, Vec<Diagnostic>> {
    match check_unit(name, file, text) {
        (Some(unit), _) => Ok(unit),
        (None, diags) => Err(diags),
    }
}

/// Like [`parse_unit`], but also returns the warnings of a valid unit: the
/// unit when it is valid, and every diagnostic, sorted by position.
pub fn check_unit(name: &str, file: &Path, text: &str) -> (Option<Unit>, Vec<Diagnostic>) {
    let file: Arc<Path> = file.into();
    let (unit, mut diags) = match raw::parse(&file, text, name) {
        Ok(table) => validate::validate(name, &file, &table),
        Err(d) => (None, vec![d]),
    };
    diags.sort();
    (unit, diags)
}
