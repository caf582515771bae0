//! `/volumes`: list, create, inspect, remove and prune local volumes, shaped as Docker's.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::containers::blocking;
use super::{ApiError, ApiResult};
use crate::daemon::Daemon;

fn volume_json(v: &shoal_runtime::VolumeInfo) -> Value {
    json!({
        "Name": v.name,
        "Driver": "local",
        "Mountpoint": v.mountpoint.display().to_string(),
        "CreatedAt": super::docker::time(v.created_at.saturating_mul(1_000_000_000)),
        "Labels": {},
        "Scope": "local",
        "Options": {},
    })
}

/// `GET /volumes`.
pub async fn list(State(daemon): State<Arc<Daemon>>) -> ApiResult<Json<Value>> {
    let volumes = blocking(&daemon.runtime, |rt| rt.list_volumes()).await?;
    Ok(Json(json!({ "Volumes": volumes.iter().map(volume_json).collect::<Vec<_>>(), "Warnings": [] })))
}

/// `POST /volumes/create` `{"Name": …, "Driver": "local"}` (no name: an anonymous volume).
pub async fn create(State(daemon): State<Arc<Daemon>>, body: axum::body::Bytes) -> ApiResult<Response> {
    let v: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?
    };
    let driver = v["Driver"].as_str().unwrap_or("local");
    if !driver.is_empty() && driver != "local" {
        return Err(ApiError::bad_request(format!(
            "volume driver \"{driver}\" is not available: the only driver is local"
        )));
    }
    let name = v["Name"].as_str().unwrap_or_default().to_string();
    let volume = blocking(&daemon.runtime, move |rt| rt.create_volume(&name)).await?;
    Ok((StatusCode::CREATED, Json(volume_json(&volume))).into_response())
}

/// `GET /volumes/{name}`.
pub async fn inspect(State(daemon): State<Arc<Daemon>>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let volume = blocking(&daemon.runtime, move |rt| rt.volume(&name)).await?;
    Ok(Json(volume_json(&volume)))
}

#[derive(Deserialize)]
pub struct RemoveQuery {
    force: Option<String>,
}

/// `DELETE /volumes/{name}[?force=1]`: refused (409) while a container uses it, unless forced.
pub async fn remove(
    State(daemon): State<Arc<Daemon>>,
    Path(name): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> ApiResult<StatusCode> {
    let force = matches!(q.force.as_deref(), Some("1" | "true"));
    blocking(&daemon.runtime, move |rt| rt.remove_volume(&name, force)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct PruneQuery {
    filters: Option<String>,
}

/// `POST /volumes/prune[?filters={"all":["true"]}]`: removes the volumes no container uses;
/// as Docker (API 1.42+), only anonymous ones unless `all`.
pub async fn prune(State(daemon): State<Arc<Daemon>>, Query(q): Query<PruneQuery>) -> ApiResult<Json<Value>> {
    let all = q
        .filters
        .as_deref()
        .and_then(|f| serde_json::from_str::<Value>(f).ok())
        .and_then(|f| f["all"].as_array().map(|a| a.iter().any(|v| v == "true" || v == "1")))
        .unwrap_or(false);
    let removed = blocking(&daemon.runtime, move |rt| rt.prune_volumes(all)).await?;
    Ok(Json(json!({ "VolumesDeleted": removed, "SpaceReclaimed": 0 })))
}
