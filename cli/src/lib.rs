//! The code of the `shoal` binary as a library: the daemon's wiring, its HTTP
//! API, the API client and the commands. `main.rs` is only the command line;
//! the library lets fuzz targets and tests reach the API's parsers.
//!
//! Like the binary, it only wires: the logic lives in the library crates
//! (`manager`, `agent`, `runtime`, `deploy`).

pub mod api;
pub mod client;
pub mod commands;
pub mod daemon;
pub mod lab;
