//! The `newsrec` binary's library half: command implementations and the glue that wires the
//! stage crates into one node. Kept as a library so end-to-end tests can start a node in-process.

pub mod commands;
pub mod node;
pub mod output;
pub mod settings;
