//! `/networks`: the swarm's overlay networks, in Docker's shapes. Only
//! swarm-scoped networks exist for now (no local bridge networks).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::swarm::manager;
use super::{docker, ApiError, ApiResult, Filters};
use crate::daemon::Daemon;

#[derive(Deserialize)]
pub struct ListQuery {
    filters: Option<String>,
}

pub async fn list(State(daemon): State<Arc<Daemon>>, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    let f = Filters::parse(q.filters.as_deref(), &["driver", "id", "label", "name", "scope", "type", "dangling"])?;
    // Outside a swarm there are no networks to list (not an error: `network ls` works anywhere).
    let Ok(m) = manager(&daemon).await else { return Ok(Json(json!([]))) };
    let state = m.store().read();
    let out: Vec<_> = state
        .networks
        .values()
        .filter(|n| f.any("id", |v| n.id.starts_with(v)))
        .filter(|n| f.any("name", |v| n.name().contains(v)))
        .filter(|n| f.any("driver", |v| n.spec.as_ref().is_some_and(|s| s.driver == v)))
        .filter(|_| f.any("scope", |v| v == "swarm"))
        .filter(|_| f.any("type", |v| v == "custom"))
        .filter(|n| f.labels_match(|k| n.labels().and_then(|l| l.get(k)).map(|v| v.as_str())))
        .map(docker::network)
        .collect();
    Ok(Json(docker::json(&out)))
}

/// A network as the managers know it. The node-local part Docker shows on
/// a node (`Containers` attached there, `Peers`) comes from this node's
/// network map: once the daemon keeps one, pass it through
/// `docker::with_node_view` here.
pub async fn inspect(State(daemon): State<Arc<Daemon>>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let m = manager(&daemon).await?;
    let state = m.store().read();
    Ok(Json(docker::json(&docker::network(state.find_network(&id)?))))
}

pub async fn create(State(daemon): State<Arc<Daemon>>, body: axum::body::Bytes) -> ApiResult<Response> {
    let m = manager(&daemon).await?;
    let v: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let spec = docker::parse_network_create(&v).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let id = m.control().create_network(spec).await?;
    let created = bollard_stubs::models::NetworkCreateResponse { id, warning: String::new() };
    Ok((StatusCode::CREATED, Json(docker::json(&created))).into_response())
}

pub async fn remove(State(daemon): State<Arc<Daemon>>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let m = manager(&daemon).await?;
    m.control().remove_network(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
