//! `/_ping`, `/version`, `/info`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bollard_stubs::models as bollard;
use serde_json::Value;

use super::docker::{self, types};
use super::{ApiResult, API_VERSION, MIN_API_VERSION};
use crate::daemon::Daemon;

/// Docker's `Swarm` header value: `inactive`, or `active/manager|worker`.
async fn swarm_header(daemon: &Daemon) -> &'static str {
    match daemon.swarm.read().await.as_ref() {
        None => "inactive",
        Some(m) if m.manager.is_some() => "active/manager",
        Some(_) => "active/worker",
    }
}

pub async fn ping(State(daemon): State<Arc<Daemon>>, method: Method) -> Response {
    let mut h = HeaderMap::new();
    h.insert("Swarm", HeaderValue::from_static(swarm_header(&daemon).await));
    h.insert("Cache-Control", HeaderValue::from_static("no-cache, no-store, must-revalidate"));
    h.insert("Pragma", HeaderValue::from_static("no-cache"));
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    if method == Method::HEAD {
        h.insert("Content-Length", HeaderValue::from_static("0"));
        return (h, "").into_response();
    }
    h.insert("Content-Type", HeaderValue::from_static("text/plain; charset=utf-8"));
    (h, "OK").into_response()
}

pub async fn version() -> Json<Value> {
    let kernel = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    Json(docker::json(&docker::version(API_VERSION, MIN_API_VERSION, kernel)))
}

/// `GET /info`: the node, its containers and images, and its part in a swarm.
pub async fn info(State(daemon): State<Arc<Daemon>>) -> ApiResult<Json<Value>> {
    let rt = daemon.runtime.clone();
    let (containers, images) =
        tokio::task::spawn_blocking(move || Ok::<_, shoal_runtime::Error>((rt.list_containers()?, rt.list_images()?)))
            .await
            .map_err(|e| super::ApiError::internal(e.to_string()))??;
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let (running, paused, stopped) = docker::container_counts(&containers);
    let desc = crate::daemon::node_description(&daemon.hostname);
    let res = desc.resources.unwrap_or_default();
    let member = daemon.swarm.read().await;
    let swarm = match member.as_ref() {
        None => types::SwarmInfo {
            swarm: bollard::SwarmInfo {
                local_node_state: Some(bollard::LocalNodeState::INACTIVE),
                node_id: Some(String::new()),
                node_addr: Some(String::new()),
                control_available: Some(false),
                error: Some(String::new()),
                ..Default::default()
            },
            raft: None,
        },
        Some(member) => {
            let id = &member.identity;
            let mut s = bollard::SwarmInfo {
                local_node_state: Some(bollard::LocalNodeState::ACTIVE),
                node_id: Some(id.node_id.clone()),
                node_addr: Some(
                    id.advertise_addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(&id.advertise_addr).to_string(),
                ),
                control_available: Some(member.manager.is_some()),
                error: Some(String::new()),
                remote_managers: Some(
                    id.managers
                        .iter()
                        .map(|a| bollard::PeerNode { node_id: Some(String::new()), addr: Some(a.clone()) })
                        .collect(),
                ),
                ..Default::default()
            };
            let mut raft = None;
            if let Some(m) = &member.manager {
                // Why this manager cannot take writes as it should (a full disk).
                s.error = Some(m.storage_problem().unwrap_or_default());
                let state = m.store().read();
                let managers: Vec<_> = state.nodes.values().filter(|n| n.manager_status.is_some()).collect();
                s.managers = Some(count(managers.len()));
                s.nodes = Some(count(state.nodes.len()));
                s.remote_managers = Some(
                    managers
                        .iter()
                        .map(|n| bollard::PeerNode {
                            node_id: Some(n.id.clone()),
                            addr: Some(n.manager_status.as_ref().map(|m| m.addr.clone()).unwrap_or_default()),
                        })
                        .collect(),
                );
                s.cluster = state.cluster().map(docker::cluster_info);
                raft = Some(types::RaftStatus {
                    id: m.config().raft_id,
                    leader: m.current_leader(),
                    applied: m.applied_index(),
                    snapshot: m.snapshot_index(),
                    voters: m.voter_count() as u64,
                });
            }
            types::SwarmInfo { swarm: s, raft }
        }
    };
    let info = types::SystemInfo {
        info: bollard::SystemInfo {
            id: Some(member.as_ref().map(|m| m.identity.node_id.clone()).unwrap_or_default()),
            name: Some(daemon.hostname.clone()),
            server_version: Some(env!("CARGO_PKG_VERSION").into()),
            operating_system: Some("Linux".into()),
            os_type: Some("linux".into()),
            architecture: Some(std::env::consts::ARCH.into()),
            ncpu: Some(res.nano_cpus / 1_000_000_000),
            mem_total: Some(res.memory_bytes),
            docker_root_dir: Some(daemon.data_root().display().to_string()),
            containers: Some(count(containers.len())),
            containers_running: Some(running),
            containers_paused: Some(paused),
            containers_stopped: Some(stopped),
            images: Some(count(images.len())),
            ..Default::default()
        },
        swarm: Some(swarm),
    };
    Ok(Json(docker::json(&info)))
}
