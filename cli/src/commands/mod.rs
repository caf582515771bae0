//! The client commands: each talks to the daemon's API and prints what
//! Docker would print for the same command.

pub mod attach;
pub mod container;
pub mod image;
pub mod logs;
pub mod machine;
pub mod network;
pub mod node;
pub mod progress;
pub mod secret;
pub mod service;
pub mod stack;
pub mod swarm;
pub mod table;
pub mod terminal;
pub mod volume;

use serde_json::Value;

// Docker's rendering of durations, shared with the API's container status.
use crate::api::docker::human_duration;

/// How list commands print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// Prints `items` as pretty JSON (the `--format json` output).
pub fn print_json(items: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(items)?);
    Ok(())
}

/// A daemon's answer read as the Engine API type it is; `what` names the
/// request in the error, with the field that is not what the type says.
pub fn answer<T: serde::de::DeserializeOwned>(v: Value, what: &str) -> anyhow::Result<T> {
    serde_path_to_error::deserialize(v)
        .map_err(|e| anyhow::anyhow!("the daemon's answer to {what} does not read: at {}: {}", e.path(), e.inner()))
}

/// A string field at a JSON path (`""` when absent).
pub fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str().unwrap_or("")
}

/// An integer field at a JSON path (0 when absent).
pub fn n(v: &Value, path: &[&str]) -> i64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_i64().unwrap_or(0)
}

/// The first 12 characters of an ID, as Docker's tables show.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Capitalizes the first letter (`running` → `Running`).
pub fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// Parses an RFC 3339 time into Unix nanoseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp_nanos() as i64)
}

/// "5 seconds ago" for a time given as RFC 3339.
pub fn ago(rfc3339: &str) -> String {
    match parse_time(rfc3339) {
        Some(t) => format!("{} ago", human_duration(shoal_proto::now_ns() - t)),
        None => String::new(),
    }
}
