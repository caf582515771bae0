//! `/swarm`, `/swarm/init`, `/nodes`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use shoal_manager::Manager;

use super::{docker, ApiError, ApiResult, Filters};
use crate::daemon::{Daemon, InitError};

/// The manager of this node, or Docker's 503 for a node that is none.
pub async fn manager(daemon: &Daemon) -> ApiResult<Arc<Manager>> {
    match daemon.swarm.read().await.as_ref().and_then(|m| m.manager.clone()) {
        Some(m) => Ok(m),
        None => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "This node is not a swarm manager. Use \"shoal swarm init\" or \"shoal swarm join\" to connect this node to swarm and try again.",
        )),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct InitRequest {
    listen_addr: String,
    advertise_addr: String,
    spec: InitSpec,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct InitSpec {
    raft: InitRaft,
    limits: InitLimits,
}

/// shoal's own: what one request may ask of the swarm (0: the default).
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct InitLimits {
    max_replicas: u64,
}

/// Docker's `SnapshotInterval`, and shoal's own timing in milliseconds
/// (Docker's ticks are seconds long; shoal's defaults are LAN-tuned).
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct InitRaft {
    snapshot_interval: u64,
    heartbeat_ms: u64,
    election_timeout_ms: u64,
}

pub async fn init(State(daemon): State<Arc<Daemon>>, body: axum::body::Bytes) -> ApiResult<Json<String>> {
    let req: InitRequest = if body.is_empty() {
        InitRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid swarm init request: {e}")))?
    };
    let r = &req.spec.raft;
    let tuning = crate::daemon::RaftTuning {
        snapshot_interval: r.snapshot_interval,
        heartbeat_ms: r.heartbeat_ms,
        election_timeout_ms: r.election_timeout_ms,
    };
    match daemon.swarm_init(&req.listen_addr, &req.advertise_addr, tuning, req.spec.limits.max_replicas).await {
        Ok(id) => Ok(Json(id)),
        Err(e @ InitError::AlreadyInSwarm) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
        Err(e @ InitError::InvalidArgument(_)) => Err(ApiError::bad_request(e.to_string())),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct JoinRequest {
    listen_addr: String,
    advertise_addr: String,
    remote_addrs: Vec<String>,
    join_token: String,
}

pub async fn join(State(daemon): State<Arc<Daemon>>, body: axum::body::Bytes) -> ApiResult<StatusCode> {
    let req: JoinRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid swarm join request: {e}")))?;
    let Some(remote) = req.remote_addrs.first() else {
        return Err(ApiError::bad_request("RemoteAddrs is empty: give a manager's address to join through"));
    };
    match daemon.swarm_join(remote, &req.join_token, &req.listen_addr, &req.advertise_addr).await {
        Ok(()) => Ok(StatusCode::OK),
        Err(e @ InitError::AlreadyInSwarm) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
        Err(e @ InitError::InvalidArgument(_)) => Err(ApiError::bad_request(e.to_string())),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}

pub async fn inspect(State(daemon): State<Arc<Daemon>>) -> ApiResult<Json<Value>> {
    let m = manager(&daemon).await?;
    let state = m.store().read();
    let cluster = state.cluster().ok_or_else(|| ApiError::internal("the swarm has no cluster object yet"))?;
    let limits = shoal_manager::control::limits::Limits::of_spec(cluster.spec.as_ref().unwrap_or(&Default::default()));
    let mut v = docker::json(&docker::cluster(cluster));
    // shoal's own: what one request may ask of the swarm.
    v["Spec"]["Limits"] = serde_json::json!({ "MaxReplicas": limits.max_replicas });
    Ok(Json(v))
}

#[derive(Deserialize)]
pub struct ListQuery {
    filters: Option<String>,
}

/// A node as the API shows it. This manager's own node says so when its raft
/// storage cannot take writes: not the leader (whatever raft last said), not
/// reachable, and why (shoal's `ManagerStatus.Error`).
fn render_node(m: &Manager, n: &shoal_proto::Node, problem: Option<&str>) -> docker::types::Node {
    let own = n.manager_status.as_ref().is_some_and(|s| s.raft_id == m.config().raft_id);
    let leader = m.current_leader().filter(|l| !(problem.is_some() && *l == m.config().raft_id));
    let mut node = docker::node(n, leader);
    let mut manager_status =
        node.manager_status.take().map(|status| docker::types::ManagerStatus { status, error: None });
    if let (true, Some(problem), Some(s)) = (own, problem, manager_status.as_mut()) {
        s.status.reachability = Some(bollard_stubs::models::Reachability::UNREACHABLE);
        s.error = Some(problem.to_string());
    }
    docker::types::Node { node, manager_status }
}

pub async fn list_nodes(State(daemon): State<Arc<Daemon>>, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    let m = manager(&daemon).await?;
    let f = Filters::parse(q.filters.as_deref(), &["id", "name", "label", "node.label", "role", "membership"])?;
    let problem = m.storage_problem();
    let state = m.store().read();
    let nodes: Vec<_> = state
        .nodes
        .values()
        .filter(|n| f.any("id", |v| n.id.starts_with(v)))
        .filter(|n| f.any("name", |v| n.hostname().starts_with(v)))
        .filter(|n| {
            f.any("role", |v| v == if n.role() == shoal_proto::NodeRole::Manager { "manager" } else { "worker" })
        })
        .map(|n| render_node(&m, n, problem.as_deref()))
        .collect();
    Ok(Json(docker::json(&nodes)))
}

pub async fn inspect_node(State(daemon): State<Arc<Daemon>>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let m = manager(&daemon).await?;
    let problem = m.storage_problem();
    let state = m.store().read();
    Ok(Json(docker::json(&render_node(&m, state.find_node(&id)?, problem.as_deref()))))
}

#[derive(Deserialize)]
pub struct NodeUpdateQuery {
    version: Option<String>,
}

pub async fn update_node(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    Query(q): Query<NodeUpdateQuery>,
    body: axum::body::Bytes,
) -> ApiResult<StatusCode> {
    let m = manager(&daemon).await?;
    let version = super::required_version(q.version.as_deref(), "node")?;
    let v: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let spec = docker::parse_node_spec(&v).map_err(|e| ApiError::bad_request(e.to_string()))?;
    m.control().update_node(&id, version, spec).await?;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
pub struct RemoveNodeQuery {
    force: Option<String>,
}

pub async fn remove_node(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    Query(q): Query<RemoveNodeQuery>,
) -> ApiResult<StatusCode> {
    let m = manager(&daemon).await?;
    let force = matches!(q.force.as_deref(), Some("1") | Some("true"));
    m.control().remove_node(&id, force).await?;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
pub struct LeaveQuery {
    force: Option<String>,
}

pub async fn leave(State(daemon): State<Arc<Daemon>>, Query(q): Query<LeaveQuery>) -> ApiResult<StatusCode> {
    let force = matches!(q.force.as_deref(), Some("1") | Some("true"));
    match daemon.swarm_leave(force).await {
        Ok(()) => Ok(StatusCode::OK),
        Err(e @ InitError::InvalidArgument(_)) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SwarmUpdateQuery {
    version: Option<String>,
    rotate_worker_token: Option<String>,
    rotate_manager_token: Option<String>,
}

/// `POST /swarm/update?version=N[&rotateWorkerToken=true]…` with the
/// cluster `Spec`: task history, heartbeat period, certificate expiry, and
/// shoal's `Limits.MaxReplicas`.
pub async fn update(
    State(daemon): State<Arc<Daemon>>,
    Query(q): Query<SwarmUpdateQuery>,
    body: axum::body::Bytes,
) -> ApiResult<StatusCode> {
    let m = manager(&daemon).await?;
    let version = super::required_version(q.version.as_deref(), "swarm")?;
    let v: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?
    };
    let spec = docker::parse_swarm_spec(&v).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let truthy = |o: &Option<String>| matches!(o.as_deref(), Some("1") | Some("true") | Some("True"));
    let rotate = shoal_manager::control::Rotate {
        worker: truthy(&q.rotate_worker_token),
        manager: truthy(&q.rotate_manager_token),
    };
    m.control().update_cluster(version, spec, rotate).await?;
    Ok(StatusCode::OK)
}
