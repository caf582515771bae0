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

/// Docker's `units.HumanDuration`: "5 seconds", "About a minute", "2 hours".
pub fn human_duration(ns: i64) -> String {
    let secs = ns / 1_000_000_000;
    if secs < 1 {
        return "Less than a second".into();
    }
    if secs == 1 {
        return "1 second".into();
    }
    if secs < 60 {
        return format!("{secs} seconds");
    }
    let mins = secs / 60;
    if mins == 1 {
        return "About a minute".into();
    }
    if mins < 60 {
        return format!("{mins} minutes");
    }
    let hours = (secs as f64 / 3600.0).round() as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", hours / 24 / 365)
}

/// "5 seconds ago" for a time given as RFC 3339.
pub fn ago(rfc3339: &str) -> String {
    match parse_time(rfc3339) {
        Some(t) => format!("{} ago", human_duration(shoal_proto::now_ns() - t)),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_docker() {
        assert_eq!(human_duration(500_000_000), "Less than a second");
        assert_eq!(human_duration(5_000_000_000), "5 seconds");
        assert_eq!(human_duration(90_000_000_000), "About a minute");
        assert_eq!(human_duration(3 * 3600 * 1_000_000_000), "3 hours");
    }
}
