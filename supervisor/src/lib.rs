//! keel-supervisor: the service life cycle as a pure state machine
//! (`service`) and the thin event loop that runs it (`runtime`): spawning,
//! reaping, readiness, restart backoff and orderly stops.

#![forbid(unsafe_code)]

pub mod control;
pub mod creds;
pub mod logs;
pub mod notify;
mod output;
mod readiness;
pub mod reload;
pub mod runtime;
pub mod service;
mod spawn;
pub mod timeline;

pub use runtime::{BootReport, Config, Host, Request, Supervisor};
