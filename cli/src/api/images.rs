//! `/images`: import (with `--change`), list (with Docker's filters), inspect, tag, remove,
//! prune (with its filters), save (streamed), load, commit. Uploads (import, load) are received
//! into the runtime's image store ([`shoal_runtime::Runtime::upload`]), which removes what a
//! killed daemon left of them when it next opens.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::Json;
use bollard_stubs::models as bollard;
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use shoal_runtime::{ImageSummary, Runtime, Upload};

use super::containers::blocking;
use super::{docker, ApiError, ApiResult, Filters};
use crate::daemon::Daemon;

#[derive(Deserialize)]
pub struct CreateQuery {
    #[serde(rename = "fromSrc")]
    from_src: Option<String>,
    #[serde(rename = "fromImage")]
    from_image: Option<String>,
    repo: Option<String>,
    tag: Option<String>,
}

/// Every value of the repeated query parameter `key` (`changes=…&changes=…`), decoded as
/// bytes ([`form_decode`]); a value that is not UTF-8 once decoded is a 400.
fn query_values(raw: Option<&str>, key: &str) -> ApiResult<Vec<String>> {
    let mut values = Vec::new();
    for pair in raw.unwrap_or_default().split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if form_decode(k.as_bytes()) != key.as_bytes() {
            continue;
        }
        let value = String::from_utf8(form_decode(v.as_bytes())).map_err(|_| {
            ApiError::bad_request(format!(
                "the query parameter {key} is not UTF-8 text once percent-decoded: encode text as UTF-8"
            ))
        })?;
        values.push(value);
    }
    Ok(values)
}

/// Form decoding (`application/x-www-form-urlencoded`) of bytes: `%` and two hex digits is
/// that byte, `+` a space, anything else (a `%` without two hex digits too) stays as it is.
/// It works on bytes, never on string offsets, so no input can split a character.
fn form_decode(input: &[u8]) -> Vec<u8> {
    let hex = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16)).map(|d| d as u8);
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'%' => {
                if let (Some(high), Some(low)) = (hex(input.get(i + 1)), hex(input.get(i + 2))) {
                    out.push(high << 4 | low);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// `changes` parameters (Dockerfile instructions for the image config).
fn changes(raw: Option<&str>) -> ApiResult<shoal_runtime::CommitChanges> {
    Ok(shoal_runtime::CommitChanges::parse(&query_values(raw, "changes")?)?)
}

/// `POST /images/create?fromSrc=-&repo=NAME&tag=TAG[&changes=…]` with a rootfs
/// tar as the body: Docker's `import`.
pub async fn create(
    State(daemon): State<Arc<Daemon>>,
    Query(q): Query<CreateQuery>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
    body: Body,
) -> ApiResult<Json<Value>> {
    if let Some(image) = q.from_image {
        return Err(ApiError::not_found(format!(
            "pulling {image} from a registry is not supported: import a rootfs with \"shoal image import\""
        )));
    }
    if q.from_src.as_deref() != Some("-") {
        return Err(ApiError::bad_request("only fromSrc=- (the tarball in the request body) is supported"));
    }
    let repo = q.repo.unwrap_or_default();
    if repo.is_empty() {
        return Err(ApiError::bad_request("repo is required: name the image (e.g. repo=demo&tag=1)"));
    }
    let reference = match q.tag.filter(|t| !t.is_empty()) {
        Some(tag) => format!("{repo}:{tag}"),
        None => repo,
    };
    // Checked before the upload is stored.
    let changes = changes(raw.as_deref())?;
    let upload = receive(&daemon.runtime, body).await?;
    let summary = blocking(&daemon.runtime, move |rt| rt.import_upload(upload, &reference, &changes)).await?;
    Ok(Json(docker::json(&bollard::CreateImageInfo { status: Some(summary.id), ..Default::default() })))
}

#[derive(Deserialize)]
pub struct ListQuery {
    filters: Option<String>,
}

/// The filters `GET /images/json` takes, as Docker's daemon does.
const LIST_FILTERS: &[&str] = &["before", "dangling", "label", "reference", "since", "until"];

/// `GET /images/json[?filters=…]`: the images, newest first, with Docker's filters.
pub async fn list(State(daemon): State<Arc<Daemon>>, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    let filters = Filters::parse(q.filters.as_deref(), LIST_FILTERS)?;
    let images = blocking(&daemon.runtime, move |rt| {
        let filter = match ImageFilter::new(&filters, rt) {
            Ok(filter) => filter,
            Err(e) => return Ok(Err(e)),
        };
        let mut kept = Vec::new();
        for image in rt.list_images()? {
            match filter.keeps(&image) {
                Ok(true) => kept.push(image),
                Ok(false) => {}
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(Ok(kept))
    })
    .await??;
    Ok(Json(docker::json(&images.iter().map(docker::image_summary).collect::<Vec<_>>())))
}

/// Docker's image list filters, checked and resolved (`before`/`since` name images).
struct ImageFilter<'a> {
    filters: &'a Filters,
    dangling: Option<bool>,
    /// Created strictly before every one of these (unix nanoseconds).
    before: Vec<i64>,
    /// Created strictly after every one of these.
    since: Vec<i64>,
    /// Created at or before this.
    until: Option<i64>,
}

impl<'a> ImageFilter<'a> {
    fn new(filters: &'a Filters, rt: &Runtime) -> Result<ImageFilter<'a>, ApiError> {
        let created = |key: &str| -> Result<Vec<i64>, ApiError> {
            let mut times = Vec::new();
            for value in filters.get(key) {
                let image = rt.image(value)?.ok_or_else(|| {
                    ApiError::not_found(format!("No such image: {value} (the {key} filter names an image)"))
                })?;
                times.push(image.created_at);
            }
            Ok(times)
        };
        for pattern in filters.get("reference") {
            glob_match(pattern, "")
                .map_err(|e| ApiError::bad_request(format!("invalid reference filter \"{pattern}\": {e}")))?;
        }
        Ok(ImageFilter {
            filters,
            dangling: bool_filter(filters, "dangling")?,
            before: created("before")?,
            since: created("since")?,
            until: time_filter(filters, "until")?,
        })
    }

    fn keeps(&self, image: &ImageSummary) -> Result<bool, ApiError> {
        if self.dangling.is_some_and(|dangling| dangling != image.references.is_empty()) {
            return Ok(false);
        }
        if !self.filters.labels_match(|k| image.labels.get(k).map(String::as_str)) {
            return Ok(false);
        }
        if self.before.iter().any(|&t| image.created_at >= t)
            || self.since.iter().any(|&t| image.created_at <= t)
            || self.until.is_some_and(|t| image.created_at > t)
        {
            return Ok(false);
        }
        let patterns = self.filters.get("reference");
        if patterns.is_empty() {
            return Ok(true);
        }
        for pattern in patterns {
            for reference in &image.references {
                // Docker's FamiliarMatch: the pattern against `name:tag`, then against `name`.
                let name =
                    reference.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')).map_or(&**reference, |(n, _)| n);
                let matches = glob_match(pattern, reference).and_then(|m| Ok(m || glob_match(pattern, name)?));
                if matches.map_err(|e| ApiError::bad_request(format!("invalid reference filter \"{pattern}\": {e}")))? {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

/// A boolean filter as Docker reads one (`GetBoolOrDefault`): `true`/`1` or `false`/`0`;
/// none given is no filter; anything else, or both, is a 400.
fn bool_filter(filters: &Filters, key: &str) -> ApiResult<Option<bool>> {
    if !filters.contains(key) {
        return Ok(None);
    }
    let values = filters.get(key);
    let is_true = values.iter().any(|v| v == "true" || v == "1");
    let is_false = values.iter().any(|v| v == "false" || v == "0");
    let unknown = values.iter().any(|v| !matches!(v.as_str(), "true" | "1" | "false" | "0"));
    if is_true == is_false || unknown {
        return Err(ApiError::bad_request(format!(
            "invalid filter '{key}={}': it takes true, false, 1 or 0",
            values.join(",")
        )));
    }
    Ok(Some(is_true))
}

/// A time filter (`until`): the latest of its values, each a Go duration before now, a unix
/// time (`seconds[.fraction]`), an RFC 3339 time or a date.
fn time_filter(filters: &Filters, key: &str) -> ApiResult<Option<i64>> {
    let mut latest = None;
    for value in filters.get(key) {
        let t = timestamp(value, shoal_proto::now_ns()).ok_or_else(|| {
            ApiError::bad_request(format!(
                "invalid filter '{key}={value}': give a duration (10m, 1h30m), a unix time, an RFC 3339 time or a date (2006-01-02)"
            ))
        })?;
        latest = Some(latest.map_or(t, |l: i64| l.max(t)));
    }
    Ok(latest)
}

/// Docker's `timetypes.GetTimestamp` in unix nanoseconds: a Go duration before `now`, a unix
/// time, an RFC 3339 time, or a date (midnight UTC).
fn timestamp(value: &str, now: i64) -> Option<i64> {
    if let Some(d) = go_duration(value) {
        return Some(now.saturating_sub(d));
    }
    if let Some((secs, frac)) = value.split_once('.').or(Some((value, ""))) {
        if !secs.is_empty()
            && secs.bytes().all(|b| b.is_ascii_digit())
            && frac.len() <= 9
            && frac.bytes().all(|b| b.is_ascii_digit())
        {
            let secs: i64 = secs.parse().ok()?;
            let nanos: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<9}").parse().ok()? };
            return secs.checked_mul(1_000_000_000)?.checked_add(nanos);
        }
    }
    if let Some(t) = crate::commands::parse_time(value) {
        return Some(t);
    }
    let date = time::Date::parse(value, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    i64::try_from(date.midnight().assume_utc().unix_timestamp_nanos()).ok()
}

/// A Go duration (`300ms`, `1.5h`, `2h45m`) in nanoseconds; `None` if `s` is not one.
fn go_duration(s: &str) -> Option<i64> {
    let mut rest = s.strip_prefix('-').unwrap_or(s);
    let negative = rest.len() != s.len();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += number * unit;
    }
    if !total.is_finite() || total > i64::MAX as f64 {
        return None;
    }
    Some(if negative { -(total as i64) } else { total as i64 })
}

/// Go's `path.Match`: `*` is any run of characters but `/`, `?` one character but `/`,
/// `[…]` a class (ranges, `^` to negate), a backslash escapes; an ill-formed pattern is an
/// error.
fn glob_match(pattern: &str, name: &str) -> Result<bool, String> {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    check_pattern(&pattern)?;
    Ok(glob(&pattern, &name))
}

fn check_pattern(p: &[char]) -> Result<(), String> {
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' if i + 1 >= p.len() => return Err("it ends with a lone '\\'".into()),
            '\\' => i += 2,
            '[' => {
                let end = class_end(p, i).ok_or("a '[' is never closed")?;
                i = end + 1;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// The index of the `]` closing the class opened at `p[open]`.
fn class_end(p: &[char], open: usize) -> Option<usize> {
    let mut i = open + 1;
    if p.get(i) == Some(&'^') {
        i += 1;
    }
    let first = i;
    while i < p.len() {
        match p[i] {
            ']' if i > first => return Some(i),
            '\\' => i += 2,
            _ => i += 1,
        }
    }
    None
}

fn glob(p: &[char], n: &[char]) -> bool {
    let Some(&first) = p.first() else { return n.is_empty() };
    match first {
        '*' => (0..=n.len()).take_while(|&k| k == 0 || n[k - 1] != '/').any(|k| glob(&p[1..], &n[k..])),
        '?' => n.first().is_some_and(|&c| c != '/') && glob(&p[1..], &n[1..]),
        '[' => {
            let Some(end) = class_end(p, 0) else { return false };
            let Some(&c) = n.first() else { return false };
            c != '/' && class_matches(&p[1..end], c) && glob(&p[end + 1..], &n[1..])
        }
        '\\' => p.get(1).is_some_and(|&e| n.first() == Some(&e)) && glob(&p[2..], &n[1..]),
        literal => n.first() == Some(&literal) && glob(&p[1..], &n[1..]),
    }
}

fn class_matches(class: &[char], c: char) -> bool {
    let (negated, class) = match class.split_first() {
        Some(('^', rest)) => (true, rest),
        _ => (false, class),
    };
    let mut i = 0;
    let mut matched = false;
    while i < class.len() {
        let mut lo = class[i];
        if lo == '\\' && i + 1 < class.len() {
            i += 1;
            lo = class[i];
        }
        let mut hi = lo;
        if class.get(i + 1) == Some(&'-') && i + 2 < class.len() {
            hi = class[i + 2];
            if hi == '\\' && i + 3 < class.len() {
                hi = class[i + 3];
                i += 1;
            }
            i += 2;
        }
        matched |= lo <= c && c <= hi;
        i += 1;
    }
    matched != negated
}

/// Removes the uploads earlier versions of the daemon spooled to `<data-root>/tmp/` and left
/// there when killed (uploads now live in the runtime's store, which sweeps its own).
pub fn remove_old_uploads(data_root: &std::path::Path) {
    let dir = data_root.join("tmp");
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let spooled = (name.starts_with("load-") || name.starts_with("import-")) && name.ends_with(".tar");
        if spooled && entry.file_type().is_ok_and(|t| t.is_file()) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => tracing::info!(file = %entry.path().display(), "removed an upload a killed daemon left"),
                Err(e) => tracing::warn!(file = %entry.path().display(), error = %e, "removing an old upload"),
            }
        }
    }
    // Only ever held those uploads: gone once empty.
    let _ = std::fs::remove_dir(&dir);
}

/// Receives a request body into a new upload of the runtime's image store.
async fn receive(runtime: &Arc<Runtime>, body: Body) -> ApiResult<Upload> {
    let mut upload = blocking(runtime, |rt| rt.upload()).await?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the upload: {e}")))?;
        upload.append(&chunk)?;
    }
    upload.finish()?;
    Ok(upload)
}

pub async fn inspect(State(daemon): State<Arc<Daemon>>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let d = blocking(&daemon.runtime, move |rt| rt.inspect_image(&name)).await?;
    Ok(Json(docker::json(&docker::image_inspect(&d))))
}

#[derive(Deserialize)]
pub struct RemoveQuery {
    force: Option<String>,
}

pub async fn remove(
    State(daemon): State<Arc<Daemon>>,
    Path(name): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> ApiResult<Json<Value>> {
    let force = matches!(q.force.as_deref(), Some("1") | Some("true"));
    let lines = blocking(&daemon.runtime, move |rt| rt.remove_image(&name, force)).await?;
    Ok(Json(docker::json(&docker::image_deleted(&lines))))
}

#[derive(Deserialize)]
pub struct TagQuery {
    repo: String,
    tag: Option<String>,
}

pub async fn tag(
    State(daemon): State<Arc<Daemon>>,
    Path(name): Path<String>,
    Query(q): Query<TagQuery>,
) -> ApiResult<axum::http::StatusCode> {
    let target = match q.tag.filter(|t| !t.is_empty()) {
        Some(t) => format!("{}:{t}", q.repo),
        None => q.repo,
    };
    blocking(&daemon.runtime, move |rt| rt.tag_image(&name, &target)).await?;
    Ok(axum::http::StatusCode::CREATED)
}

#[derive(Deserialize)]
pub struct PruneQuery {
    filters: Option<String>,
}

/// `POST /images/prune[?filters=…]`: the unused images (only the nameless ones unless
/// `dangling=false`), chosen by `label`, `label!` and `until` as Docker does; then what
/// interrupted loads and imports left.
pub async fn prune(State(daemon): State<Arc<Daemon>>, Query(q): Query<PruneQuery>) -> ApiResult<Json<Value>> {
    let filters = Filters::parse(q.filters.as_deref(), &["dangling", "label", "label!", "until"])?;
    let dangling_only = bool_filter(&filters, "dangling")?.unwrap_or(true);
    let until = time_filter(&filters, "until")?;
    let pruned = blocking(&daemon.runtime, move |rt| {
        rt.prune_images_where(dangling_only, |image| {
            let label = |k: &str| image.labels.get(k).map(String::as_str);
            let excluded = filters.contains("label!") && label_filters_all_match(filters.get("label!"), label);
            filters.labels_match(label) && !excluded && until.is_none_or(|t| image.created_at < t)
        })
    })
    .await?;
    Ok(Json(docker::json(&docker::image_prune(&pruned.untagged, &pruned.deleted, pruned.reclaimed))))
}

/// Whether every `key` or `key=value` in `wanted` matches `labels` (moby's `MatchKVList`).
fn label_filters_all_match<'a>(wanted: &[String], labels: impl Fn(&str) -> Option<&'a str>) -> bool {
    wanted.iter().all(|f| match f.split_once('=') {
        Some((k, v)) => labels(k) == Some(v),
        None => labels(f).is_some(),
    })
}

/// How much of an archive is in flight between the thread writing it and the client.
const SAVE_CHUNK: usize = 256 * 1024;
const SAVE_CHUNKS_IN_FLIGHT: usize = 4;

/// What the thread writing an archive sends to the response.
enum SaveMessage {
    Data(Bytes),
    Failed(shoal_runtime::Error),
}

/// The archive writer of `image save`: fills chunks and hands them to the response, waiting
/// while the client has not taken the earlier ones (so memory stays at a few chunks).
struct ChunkSender {
    tx: tokio::sync::mpsc::Sender<SaveMessage>,
    buf: Vec<u8>,
}

impl ChunkSender {
    fn send_buffered(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(SAVE_CHUNK)));
        self.tx
            .blocking_send(SaveMessage::Data(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl std::io::Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(SAVE_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == SAVE_CHUNK {
            self.send_buffered()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send_buffered()
    }
}

/// `GET /images/get?names=…`: `docker save` (an OCI layout tar that Docker loads too),
/// streamed as it is written. An error before the first byte (an unknown image) is an
/// HTTP error; one after it cuts the response short.
pub async fn save(
    State(daemon): State<Arc<Daemon>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> ApiResult<axum::response::Response> {
    let names = query_values(query.as_deref(), "names")?;
    if names.is_empty() {
        return Err(ApiError::bad_request("names is required: give the images to save"));
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(SAVE_CHUNKS_IN_FLIGHT);
    let rt = daemon.runtime.clone();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut out = ChunkSender { tx: tx.clone(), buf: Vec::with_capacity(SAVE_CHUNK) };
        if let Err(e) = rt.save_images(&refs, &mut out) {
            let _ = tx.blocking_send(SaveMessage::Failed(e));
        }
    });
    let first = match rx.recv().await {
        Some(SaveMessage::Failed(e)) => return Err(e.into()),
        Some(SaveMessage::Data(chunk)) => chunk,
        None => return Err(ApiError::internal("writing the image archive ended without a byte")),
    };
    let rest = futures::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await? {
            SaveMessage::Data(chunk) => Some((Ok(chunk), rx)),
            SaveMessage::Failed(e) => {
                tracing::warn!(error = %e, "image save failed while streaming: the response is cut short");
                Some((Err(std::io::Error::other(e.to_string())), rx))
            }
        }
    });
    let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(first) }).chain(rest);
    let mut resp = axum::response::Response::new(Body::from_stream(stream));
    resp.headers_mut().insert("Content-Type", axum::http::HeaderValue::from_static("application/x-tar"));
    Ok(resp)
}

/// `POST /images/load` with an archive (`docker save` or OCI) as the body.
pub async fn load(State(daemon): State<Arc<Daemon>>, body: Body) -> ApiResult<Json<Value>> {
    let upload = receive(&daemon.runtime, body).await?;
    let loaded = blocking(&daemon.runtime, move |rt| rt.load_upload(upload)).await?;
    let text: String = loaded.iter().map(|r| format!("Loaded image: {r}\n")).collect();
    Ok(Json(docker::json(&docker::types::LoadResponse { stream: Some(text) })))
}

#[derive(Deserialize)]
pub struct CommitQuery {
    container: String,
    repo: String,
    tag: Option<String>,
    comment: Option<String>,
}

/// `POST /commit?container=…&repo=…&tag=…[&comment=…][&changes=…]`: the
/// container's changes as a new image.
pub async fn commit(
    State(daemon): State<Arc<Daemon>>,
    Query(q): Query<CommitQuery>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let reference = match q.tag.filter(|t| !t.is_empty()) {
        Some(t) => format!("{}:{t}", q.repo),
        None => q.repo.clone(),
    };
    let changes = shoal_runtime::CommitChanges { comment: q.comment, ..changes(raw.as_deref())? };
    let summary = blocking(&daemon.runtime, move |rt| rt.commit_container(&q.container, &reference, &changes)).await?;
    Ok((axum::http::StatusCode::CREATED, Json(docker::json(&docker::types::IdResponse { id: summary.id })))
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_decode_bytes_and_never_split_a_character() {
        // A '%' before a multi-byte character: its bytes are no hex digits, so they stay.
        assert_eq!(query_values(Some("names=%aé&names=b"), "names").expect("decoded"), ["%aé", "b"]);
        assert_eq!(query_values(Some("names=%a"), "names").expect("decoded"), ["%a"]);
        assert_eq!(query_values(Some("names=%"), "names").expect("decoded"), ["%"]);
        assert_eq!(query_values(Some("na%6Des=a%2Fb+c%41"), "names").expect("decoded"), ["a/b cA"]);
        assert_eq!(query_values(Some("changes=ENV%20A%3D%C3%A9"), "changes").expect("decoded"), ["ENV A=é"]);
        let err = query_values(Some("names=%ff%fe"), "names").expect_err("not UTF-8");
        assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(err.message.contains("names"), "{}", err.message);
        for raw in ["%", "%%", "%é", "a%aé%", "%e9%", "names=%aé%a", "changes=%c3"] {
            let _ = query_values(Some(raw), "names");
            let _ = query_values(Some(raw), "changes");
        }
    }

    #[test]
    fn reference_patterns_match_as_go_path_match_does() {
        let cases = [
            ("web", "web", true),
            ("web*", "web:1", true),
            ("*", "library/web", false),
            ("*/web", "library/web", true),
            ("w?b", "web", true),
            ("w[a-f]b", "web", true),
            ("w[^a-f]b", "web", false),
            ("w\\*b", "w*b", true),
            ("web:[0-9]", "web:1", true),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(glob_match(pattern, name), Ok(expected), "{pattern} ~ {name}");
        }
        assert!(glob_match("web[", "web").is_err());
        assert!(glob_match("web\\", "web").is_err());
    }

    #[test]
    fn timestamps_as_docker_reads_them() {
        let now = 10_000 * 1_000_000_000;
        assert_eq!(timestamp("1h", now), Some(now - 3600 * 1_000_000_000));
        assert_eq!(timestamp("1h30m", now), Some(now - 5400 * 1_000_000_000));
        assert_eq!(timestamp("1.5s", now), Some(now - 1_500_000_000));
        assert_eq!(timestamp("1700000000", now), Some(1_700_000_000 * 1_000_000_000));
        assert_eq!(timestamp("1700000000.5", now), Some(1_700_000_000_500_000_000));
        assert_eq!(timestamp("2024-01-01T00:00:00Z", now), Some(1_704_067_200 * 1_000_000_000));
        assert_eq!(timestamp("2024-01-01", now), Some(1_704_067_200 * 1_000_000_000));
        for bad in ["", "soon", "1x", "1.2.3", "h", "-"] {
            assert_eq!(timestamp(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn dangling_takes_only_booleans() {
        let parse = |raw: &str| Filters::parse(Some(raw), LIST_FILTERS).expect("filters");
        assert_eq!(bool_filter(&parse(r#"{"dangling":{"true":true}}"#), "dangling").ok(), Some(Some(true)));
        assert_eq!(bool_filter(&parse(r#"{"dangling":["0"]}"#), "dangling").ok(), Some(Some(false)));
        assert_eq!(bool_filter(&parse("{}"), "dangling").ok(), Some(None));
        for bad in [r#"{"dangling":["yes"]}"#, r#"{"dangling":["true","false"]}"#, r#"{"dangling":{"true":false}}"#] {
            let err = bool_filter(&parse(bad), "dangling").expect_err(bad);
            assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
