//! `/networks`: the swarm's overlay networks, in Docker's shapes. Only
//! swarm-scoped networks exist for now (no local bridge networks).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::containers::blocking;
use super::swarm::manager;
use super::{docker, ApiError, ApiResult, Filters};
use crate::daemon::attach::{AttachError, SANDBOX_LABEL};
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

/// A network as the managers know it, with the part Docker shows on a node
/// from this node's network map: the containers attached here (by
/// container ID) and the nodes on the network (`Peers`, by node ID and
/// underlay address, this one included).
pub async fn inspect(State(daemon): State<Arc<Daemon>>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let m = manager(&daemon).await?;
    let network = {
        let state = m.store().read();
        docker::network(state.find_network(&id)?)
    };
    let network_id = network.network.id.clone().unwrap_or_default();
    let Some(node) = daemon.node_network().await else { return Ok(Json(docker::json(&network))) };
    let map = node.map().await;
    let node_id = node.node_id();
    let local: Vec<_> = map.endpoints_on(&network_id).filter(|e| e.node_id == node_id).cloned().collect();
    let containers = blocking(&daemon.runtime, |rt| rt.list_containers()).await.unwrap_or_default();
    let attached = local
        .iter()
        .filter_map(|e| {
            // A task's container, or a standalone container's (by its name, as its attachment has it).
            let c = containers.iter().find(|c| {
                c.labels.get(shoal_agent::labels::TASK_ID) == Some(&e.task_id)
                    || (e.service_id.is_empty() && c.name == e.name && c.labels.contains_key(SANDBOX_LABEL))
            })?;
            let endpoint = bollard_stubs::models::EndpointResource {
                name: Some(c.name.clone()),
                endpoint_id: Some(e.task_id.clone()),
                mac_address: Some(shoal_mesh::names::mac_string(&shoal_mesh::names::mac(e.addr.addr))),
                ipv4_address: Some(e.addr.to_string()),
                ipv6_address: Some(String::new()),
            };
            Some((c.id.clone(), endpoint))
        })
        .collect();
    let mut on: std::collections::BTreeSet<&str> = map.endpoints_on(&network_id).map(|e| e.node_id.as_str()).collect();
    on.insert(&node_id);
    let peers = on
        .into_iter()
        .filter_map(|id| {
            let ip = if id == node_id {
                m.store().read().nodes.get(id).and_then(|n| n.status.as_ref()).map(|s| s.addr.clone())
            } else {
                map.peers.get(id).map(|ip| ip.to_string())
            }?;
            Some(bollard_stubs::models::PeerInfo { name: Some(id.to_string()), ip: Some(ip) })
        })
        .collect();
    Ok(Json(docker::json(&docker::with_node_view(network, attached, peers))))
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

/// The body of `POST /networks/{id}/connect` and `/disconnect` (Docker's).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConnectBody {
    container: String,
    #[serde(default)]
    endpoint_config: Option<EndpointConfig>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointConfig {
    #[serde(default)]
    aliases: Option<Vec<String>>,
}

/// The standalone container `key` names, with its network sandbox: (name, sandbox).
async fn standalone(daemon: &Daemon, key: &str, network: &str) -> ApiResult<(String, String)> {
    let key = key.to_string();
    let c = blocking(&daemon.runtime, move |rt| rt.container(&key)).await?;
    if c.labels.contains_key(shoal_agent::labels::TASK_ID) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "container {} is a service's task: its networks are the service's (`service update --network-add`)",
                c.name
            ),
        ));
    }
    let sandbox = c.labels.get(SANDBOX_LABEL).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "container {} has no network sandbox to connect to {network}: it was created with --network \
                 none or host, or on a node without networks (outside a swarm, or one advertised on loopback)",
                c.name
            ),
        )
    })?;
    Ok((c.name, sandbox))
}

pub(super) fn attach_error(e: AttachError) -> ApiError {
    match e {
        AttachError::NotFound(m) => ApiError::not_found(m),
        AttachError::Refused(m) => ApiError::new(StatusCode::FORBIDDEN, m),
        AttachError::Failed(m) => ApiError::internal(m),
    }
}

/// `POST /networks/{id}/connect`: a running (or created) standalone container joins one more
/// network, `bridge` or an attachable overlay, with a new interface.
pub async fn connect(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<StatusCode> {
    let body: ConnectBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let (name, sandbox) = standalone(&daemon, &body.container, &id).await?;
    let aliases = body.endpoint_config.unwrap_or_default().aliases.unwrap_or_default();
    daemon.connect_container(&sandbox, &name, &id, aliases).await.map_err(attach_error)?;
    Ok(StatusCode::OK)
}

/// `POST /networks/{id}/disconnect`: a standalone container leaves a network it is on.
pub async fn disconnect(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<StatusCode> {
    let body: ConnectBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let (name, sandbox) = standalone(&daemon, &body.container, &id).await?;
    daemon.disconnect_container(&sandbox, &name, &id).await.map_err(attach_error)?;
    Ok(StatusCode::OK)
}
