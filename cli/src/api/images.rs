//! `/images`: import (with `--change`), list, inspect, tag, remove, save, load, commit.

use std::io::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::Json;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use super::containers::blocking;
use super::{ApiError, ApiResult};
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

/// Every value of the repeated query parameter `key` (`changes=…&changes=…`), decoded.
fn query_values(raw: Option<&str>, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    raw.unwrap_or_default().split('&').filter_map(|kv| kv.strip_prefix(prefix.as_str())).map(percent_decode).collect()
}

/// `changes` parameters (Dockerfile instructions for the image config).
fn changes(raw: Option<&str>) -> ApiResult<shoal_runtime::CommitChanges> {
    Ok(shoal_runtime::CommitChanges::parse(&query_values(raw, "changes"))?)
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
    let tmp = body_to_file(&daemon, body, "import").await?;
    let path = tmp.clone();
    let result = blocking(&daemon.runtime, move |rt| rt.import_image_with(&path, &reference, &changes)).await;
    let _ = std::fs::remove_file(&tmp);
    let summary = result?;
    Ok(Json(json!({ "status": summary.id })))
}

pub async fn list(State(daemon): State<Arc<Daemon>>) -> ApiResult<Json<Value>> {
    let rt = daemon.runtime.clone();
    let images = tokio::task::spawn_blocking(move || rt.list_images())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(Json(Value::Array(
        images
            .into_iter()
            .map(|i| {
                json!({
                    "Id": i.id,
                    "ParentId": "",
                    "RepoTags": i.references,
                    "RepoDigests": [],
                    "Created": i.created_at / 1_000_000_000,
                    "Size": i.size,
                    "SharedSize": -1,
                    "Labels": {},
                    "Containers": -1,
                })
            })
            .collect(),
    )))
}

/// Writes a request body to a temporary file under the data root; the
/// caller removes it.
async fn body_to_file(daemon: &Daemon, body: Body, what: &str) -> ApiResult<std::path::PathBuf> {
    let tmp_dir = daemon.data_root().join("tmp");
    std::fs::create_dir_all(&tmp_dir)
        .map_err(|e| ApiError::internal(format!("creating {}: {e}", tmp_dir.display())))?;
    let tmp = tmp_dir.join(format!("{what}-{}.tar", shoal_manager::identity::new_id()));
    let written = async {
        let mut file =
            std::fs::File::create(&tmp).map_err(|e| ApiError::internal(format!("creating {}: {e}", tmp.display())))?;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the upload: {e}")))?;
            file.write_all(&chunk).map_err(|e| ApiError::internal(format!("writing {}: {e}", tmp.display())))?;
        }
        Ok::<_, ApiError>(())
    }
    .await;
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

pub async fn inspect(State(daemon): State<Arc<Daemon>>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let d = blocking(&daemon.runtime, move |rt| rt.inspect_image(&name)).await?;
    Ok(Json(json!({
        "Id": d.id,
        "RepoTags": d.references,
        "RepoDigests": [],
        "Created": super::docker::time(d.created_at),
        "Size": d.size,
        "Os": "linux",
        "Architecture": std::env::consts::ARCH,
        "Config": {
            "Env": d.env, "Cmd": d.cmd, "Entrypoint": d.entrypoint,
            "WorkingDir": d.working_dir, "User": d.user, "Labels": d.labels,
            "ExposedPorts": d.exposed_ports.iter().map(|p| (p.clone(), json!({}))).collect::<serde_json::Map<_, _>>(),
            "Volumes": d.volumes.iter().map(|v| (v.clone(), json!({}))).collect::<serde_json::Map<_, _>>(),
            "StopSignal": d.stop_signal,
        },
        "RootFS": { "Type": "layers", "Layers": d.diff_ids },
    })))
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
    Ok(Json(Value::Array(
        lines
            .iter()
            .map(|l| match l.split_once(": ") {
                Some((k, v)) => json!({ k: v }),
                None => json!({ "Deleted": l }),
            })
            .collect(),
    )))
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

pub async fn prune(State(daemon): State<Arc<Daemon>>) -> ApiResult<Json<Value>> {
    let deleted = blocking(&daemon.runtime, |rt| rt.prune_images()).await?;
    Ok(Json(
        json!({ "ImagesDeleted": deleted.iter().map(|d| json!({ "Deleted": d })).collect::<Vec<_>>(), "SpaceReclaimed": 0 }),
    ))
}

/// `GET /images/get?names=…`: `docker save` (an OCI layout tar that Docker
/// loads too).
pub async fn save(
    State(daemon): State<Arc<Daemon>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let names: Vec<String> =
        query.unwrap_or_default().split('&').filter_map(|kv| kv.strip_prefix("names=")).map(percent_decode).collect();
    if names.is_empty() {
        return Err(ApiError::bad_request("names is required: give the images to save"));
    }
    let tar = blocking(&daemon.runtime, move |rt| {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut out = Vec::new();
        rt.save_images(&refs, &mut out)?;
        Ok(out)
    })
    .await?;
    let mut resp = tar.into_response();
    resp.headers_mut().insert("Content-Type", axum::http::HeaderValue::from_static("application/x-tar"));
    Ok(resp)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `POST /images/load` with an archive (`docker save` or OCI) as the body.
pub async fn load(State(daemon): State<Arc<Daemon>>, body: Body) -> ApiResult<Json<Value>> {
    let tmp = body_to_file(&daemon, body, "load").await?;
    let path = tmp.clone();
    let result = blocking(&daemon.runtime, move |rt| {
        let mut f = std::fs::File::open(&path)
            .map_err(|e| shoal_runtime::Error::InvalidArgument { message: format!("reading the upload: {e}") })?;
        rt.load_images(&mut f)
    })
    .await;
    let _ = std::fs::remove_file(&tmp);
    let loaded = result?;
    let text: String = loaded.iter().map(|r| format!("Loaded image: {r}\n")).collect();
    Ok(Json(json!({ "stream": text })))
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
    Ok((axum::http::StatusCode::CREATED, Json(json!({ "Id": summary.id }))).into_response())
}
