//! exliar's Discord plugin: exliar's events to a channel's webhook (the
//! plugin protocol `exliar.plugin/1` on stdin/stdout), and `serve`,
//! Discord's interactions endpoint for `/vm list|start|stop` and
//! `/status` (see README.md).

pub mod config;
pub mod interactions;
pub mod plugin;
pub mod serve;
pub mod webhook;
