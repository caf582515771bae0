//! Reading Docker's multiplexed log streams (`stdcopy` frames) as they
//! arrive, for `service logs` and `container logs`.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::client::Client;

/// A `--since`/`--until` value as the API takes it (`seconds.nanoseconds`): a duration back
/// from `now_ns` (`10m`, `1h30m`, `45s`, `500ms`; the one duration grammar, where a negative
/// duration is ahead of now, as Docker reads it), an RFC 3339 time, or a unix time.
pub fn api_time(value: &str, now_ns: i64) -> anyhow::Result<String> {
    let bad = |why: &str| {
        anyhow::anyhow!(
            "invalid time \"{value}\"{why}: use a duration back from now (10m, 1h30m, 45s), an RFC 3339 time (2026-11-22T10:00:00Z) or a unix time"
        )
    };
    let ns = if let Ok(t) = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339) {
        i64::try_from(t.unix_timestamp_nanos()).map_err(|_| bad(""))?
    } else if value.bytes().all(|b| b.is_ascii_digit() || b == b'.') && !value.is_empty() {
        let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
        if frac.len() > 9 || frac.contains('.') {
            return Err(bad(""));
        }
        let secs: i64 = secs.parse().map_err(|_| bad(""))?;
        let nanos: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<9}").parse().map_err(|_| bad(""))? };
        secs.checked_mul(1_000_000_000).and_then(|n| n.checked_add(nanos)).ok_or_else(|| bad(""))?
    } else {
        let back = shoal_deploy::units::parse_signed_duration(value).map_err(|e| bad(&format!(" ({e})")))?;
        now_ns.checked_sub(back).ok_or_else(|| bad(" (too far from now)"))?
    };
    Ok(format!("{}.{:09}", ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000)))
}

/// Reassembles Docker's multiplexed log stream (`stdcopy` frames) from
/// chunks that may split frames anywhere.
#[derive(Default)]
struct Demux {
    buf: Vec<u8>,
}

impl Demux {
    /// Adds a chunk; returns the complete (stream, text) frames so far.
    fn push(&mut self, chunk: &[u8]) -> Vec<(u8, String)> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut at = 0;
        while self.buf.len() - at >= 8 {
            let h = &self.buf[at..at + 8];
            let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
            if self.buf.len() - at - 8 < len {
                break;
            }
            out.push((h[0], String::from_utf8_lossy(&self.buf[at + 8..at + 8 + len]).into_owned()));
            at += 8 + len;
        }
        self.buf.drain(..at);
        out
    }
}

/// Streams `path` and yields its (stream, line) frames as they arrive; the
/// handle gives the request's outcome once the stream ends.
pub fn stream(
    client: &Client,
    path: String,
) -> (mpsc::UnboundedReceiver<(u8, String)>, JoinHandle<anyhow::Result<()>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = client.clone();
    let handle = tokio::spawn(async move {
        let mut demux = Demux::default();
        client
            .get_stream(&path, |chunk| {
                for frame in demux.push(chunk) {
                    let _ = tx.send(frame);
                }
            })
            .await
    });
    (rx, handle)
}

/// Prints a frame: stdout frames to stdout, the rest to stderr.
pub fn print_frame(stream: u8, text: &str) {
    use std::io::Write;
    if stream == 1 {
        print!("{text}");
        let _ = std::io::stdout().flush();
    } else {
        eprint!("{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::{api_time, Demux};

    #[test]
    fn times_for_since_and_until() {
        let now = 1_700_000_000_000_000_000;
        assert_eq!(api_time("1h30m", now).ok().as_deref(), Some("1699994600.000000000"));
        assert_eq!(api_time("1.5s", now).ok().as_deref(), Some("1699999998.500000000"));
        assert_eq!(api_time("-1m", now).ok().as_deref(), Some("1700000060.000000000"));
        assert_eq!(api_time("500ms", now).ok().as_deref(), Some("1699999999.500000000"));
        assert!(api_time("", now).is_err());
        assert!(api_time("10x", now).is_err());
        assert!(api_time("999999999999h", now).is_err());
        assert_eq!(api_time("10m", now).ok().as_deref(), Some("1699999400.000000000"));
        assert_eq!(api_time("2023-11-14T22:13:20.5Z", now).ok().as_deref(), Some("1700000000.500000000"));
        assert_eq!(api_time("1700000000.25", now).ok().as_deref(), Some("1700000000.250000000"));
        assert!(api_time("yesterday", now).is_err());
        assert!(api_time("1.2.3", now).is_err());
    }

    #[test]
    fn demux_reassembles_split_frames() {
        let mut wire = Vec::new();
        for (stream, text) in [(1u8, "hello\n"), (2u8, "oops\n")] {
            wire.push(stream);
            wire.extend_from_slice(&[0, 0, 0]);
            wire.extend_from_slice(&(text.len() as u32).to_be_bytes());
            wire.extend_from_slice(text.as_bytes());
        }
        let mut d = Demux::default();
        let mut got = d.push(&wire[..5]);
        got.extend(d.push(&wire[5..17]));
        got.extend(d.push(&wire[17..]));
        assert_eq!(got, vec![(1, "hello\n".to_string()), (2, "oops\n".to_string())]);
    }
}
