//! Container logs as Docker's API streams them: multiplexed frames
//! (`stdcopy`), optional timestamps and details, `tail`, and `follow`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{docker, ApiError, ApiResult};

#[derive(Deserialize)]
pub struct LogQuery {
    timestamps: Option<String>,
    tail: Option<String>,
    details: Option<String>,
    stdout: Option<String>,
    stderr: Option<String>,
    follow: Option<String>,
    /// Unix time (`seconds[.nanoseconds]`): only lines from then on.
    since: Option<String>,
    /// Unix time: only lines up to then.
    until: Option<String>,
}

/// Docker's API timestamp, `seconds[.nanoseconds]` (what its CLI sends for `--since`), in
/// unix nanoseconds; `0` and empty mean none.
fn unix_time(value: Option<&str>, what: &str) -> ApiResult<Option<i64>> {
    let Some(text) = value.filter(|v| !v.is_empty() && *v != "0") else { return Ok(None) };
    let bad = || ApiError::bad_request(format!("{what}: expected a unix time (seconds[.nanoseconds]), not \"{text}\""));
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let nanos: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<9}").parse().map_err(|_| bad())? };
    secs.checked_mul(1_000_000_000).and_then(|ns| ns.checked_add(nanos)).map(Some).ok_or_else(bad)
}

fn truthy(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("1") | Some("true") | Some("True"))
}

/// One container whose log is shown, and the details put before its lines.
#[derive(Clone, Debug)]
pub struct LogSource {
    pub container_id: String,
    pub details: String,
}

/// How log lines are rendered.
#[derive(Clone, Copy)]
struct LogFormat {
    timestamps: bool,
    details: bool,
    stdout: bool,
    stderr: bool,
    /// Unix nanoseconds: lines before `since` or after `until` are left out.
    since: Option<i64>,
    until: Option<i64>,
}

/// Frames one chunk as Docker's multiplexed stream (`stdcopy`).
fn frame(stream: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(stream);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Reads what `seen` (per container: entries already sent) has not yet
/// delivered, oldest first, and renders it. The first read of a container
/// keeps only its last `tail` lines.
fn read_new(
    rt: &shoal_runtime::Runtime,
    sources: &[LogSource],
    seen: &mut HashMap<String, usize>,
    tail: Option<usize>,
    f: LogFormat,
) -> Vec<u8> {
    let mut all = Vec::new();
    for src in sources {
        let Ok(lines) = rt.read_logs(&src.container_id, None) else { continue };
        let from = match seen.get(&src.container_id) {
            Some(n) => *n,
            None => tail.map_or(0, |n| lines.len().saturating_sub(n)),
        };
        seen.insert(src.container_id.clone(), lines.len());
        all.extend(lines.into_iter().skip(from).map(|l| (src, l)));
    }
    all.sort_by_key(|(_, l)| l.time);
    let mut body = Vec::new();
    for (src, entry) in all {
        let (stream, wanted) = match entry.stream {
            shoal_runtime::LogStream::Stdout => (1u8, f.stdout),
            shoal_runtime::LogStream::Stderr => (2u8, f.stderr),
        };
        let in_window = f.since.is_none_or(|t| entry.time >= t) && f.until.is_none_or(|t| entry.time <= t);
        if !wanted || !in_window {
            continue;
        }
        let mut line = String::new();
        if f.timestamps {
            line.push_str(&docker::time(entry.time));
            line.push(' ');
        }
        if f.details {
            line.push_str(&src.details);
            line.push(' ');
        }
        line.push_str(entry.line.trim_end_matches('\n'));
        line.push('\n');
        frame(stream, line.as_bytes(), &mut body);
    }
    body
}

/// Answers a logs request over the containers `sources()` names (asked again
/// on every poll while following, so new tasks' containers join). With
/// `follow`, the stream ends when the client hangs up, or once `finished`
/// resolves and the last lines were sent.
pub async fn respond(
    rt: Arc<shoal_runtime::Runtime>,
    q: &LogQuery,
    sources: impl Fn() -> Vec<LogSource> + Send + 'static,
    finished: impl std::future::Future<Output = ()> + Send + 'static,
) -> ApiResult<Response> {
    let tail: Option<usize> = match q.tail.as_deref() {
        None | Some("all") | Some("") => None,
        Some(n) => Some(n.parse().map_err(|_| ApiError::bad_request("tail: expected a number or \"all\""))?),
    };
    let format = LogFormat {
        timestamps: truthy(&q.timestamps),
        details: truthy(&q.details),
        stdout: q.stdout.is_none() || truthy(&q.stdout),
        stderr: q.stderr.is_none() || truthy(&q.stderr),
        since: unix_time(q.since.as_deref(), "since")?,
        until: unix_time(q.until.as_deref(), "until")?,
    };
    let content_type = HeaderValue::from_static("application/vnd.docker.multiplexed-stream");
    let first_sources = sources();
    let (first, seen) = tokio::task::spawn_blocking({
        let rt = rt.clone();
        move || {
            let mut seen = HashMap::new();
            let body = read_new(&rt, &first_sources, &mut seen, tail, format);
            (body, seen)
        }
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    if !truthy(&q.follow) {
        let mut resp = first.into_response();
        resp.headers_mut().insert("Content-Type", content_type);
        return Ok(resp);
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::convert::Infallible>>(16);
    tokio::spawn(async move {
        let mut seen = seen;
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
        tokio::pin!(finished);
        let mut done = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = &mut finished, if !done => done = true,
                _ = tx.closed() => return,
            }
            let srcs = sources();
            let rt = rt.clone();
            let Ok((chunk, s)) = tokio::task::spawn_blocking(move || {
                let body = read_new(&rt, &srcs, &mut seen, None, format);
                (body, seen)
            })
            .await
            else {
                return;
            };
            seen = s;
            if !chunk.is_empty() && tx.send(Ok(chunk)).await.is_err() {
                return;
            }
            if done {
                return;
            }
        }
    });
    let body = axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut resp = body.into_response();
    resp.headers_mut().insert("Content-Type", content_type);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_times_parse_as_docker_sends_them() {
        assert_eq!(unix_time(Some("1700000000"), "since").ok(), Some(Some(1_700_000_000_000_000_000)));
        assert_eq!(unix_time(Some("1700000000.5"), "since").ok(), Some(Some(1_700_000_000_500_000_000)));
        assert_eq!(unix_time(Some("1700000000.000000001"), "since").ok(), Some(Some(1_700_000_000_000_000_001)));
        assert_eq!(unix_time(Some("0"), "since").ok(), Some(None));
        assert_eq!(unix_time(None, "since").ok(), Some(None));
        for bad in ["x", "1.2.3", "1.1234567890", "1.-5"] {
            assert!(unix_time(Some(bad), "since").is_err(), "{bad}");
        }
    }
}
