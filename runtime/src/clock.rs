//! Timestamps as the runtime stores and shows them: unix nanoseconds (`i64`) in its API and
//! state files, RFC 3339 with nanoseconds in log lines and image configs (as Docker writes them).

use time::{format_description::well_known::Rfc3339, OffsetDateTime};

/// Now, in nanoseconds since the unix epoch.
pub(crate) fn now_ns() -> i64 {
    let now = OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(now).unwrap_or(i64::MAX)
}

/// `2024-01-02T03:04:05.123456789Z`, trailing zeros of the fraction dropped (Go's RFC3339Nano).
pub(crate) fn format_rfc3339(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let Ok(at) = OffsetDateTime::from_unix_timestamp(secs) else {
        return "1970-01-01T00:00:00Z".to_string();
    };
    let mut out = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    if nanos != 0 {
        let fraction = format!("{nanos:09}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Parses an RFC 3339 timestamp into unix nanoseconds.
pub(crate) fn parse_rfc3339_ns(s: &str) -> Option<i64> {
    let at = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go_rfc3339nano() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_704_164_645_123_456_789), "2024-01-02T03:04:05.123456789Z");
        assert_eq!(format_rfc3339(1_704_164_645_120_000_000), "2024-01-02T03:04:05.12Z");
    }

    #[test]
    fn parses_what_it_formats() {
        for ns in [0, 1_704_164_645_123_456_789, 1_704_164_645_120_000_000] {
            assert_eq!(parse_rfc3339_ns(&format_rfc3339(ns)), Some(ns));
        }
        assert_eq!(parse_rfc3339_ns("not a time"), None);
    }
}
