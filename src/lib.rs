//! exliar: take a Linux host from "I have a GPU I want to give away" to
//! "my VM has it", safely.
//!
//! The flow: [`host`] reads the machine (the only module that touches the
//! file system) → [`model`] holds what was read → [`analyze`] draws
//! conclusions, purely → [`report`] shapes versioned JSON → [`cli`] parses
//! flags into requests and renders output.

pub mod analyze;
pub mod bind;
pub mod cdi;
pub mod check;
pub mod cli;
pub mod fleet;
pub mod handover;
pub mod hooks;
pub mod host;
pub mod listing;
pub mod metrics;
pub mod model;
pub mod plan;
pub mod plugin;
pub mod report;
pub mod runtime;
pub mod tui;
pub mod txn;
pub mod vbios;
pub mod vm;
mod xmlout;
