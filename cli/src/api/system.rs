//! `/_ping`, `/version`, `/info`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{docker, ApiResult, API_VERSION, MIN_API_VERSION};
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
    let v = env!("CARGO_PKG_VERSION");
    Json(json!({
        "Platform": { "Name": "shoal" },
        "Components": [{
            "Name": "Engine",
            "Version": v,
            "Details": {
                "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "GitCommit": "",
                "GoVersion": "", "Os": "linux", "Arch": std::env::consts::ARCH, "BuildTime": "", "Experimental": "false",
            },
        }],
        "Version": v,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "Os": "linux",
        "Arch": std::env::consts::ARCH,
        "KernelVersion": nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default(),
    }))
}

pub async fn info(State(daemon): State<Arc<Daemon>>) -> ApiResult<Json<Value>> {
    let rt = daemon.runtime.clone();
    let containers = tokio::task::spawn_blocking(move || rt.list_containers())
        .await
        .map_err(|e| super::ApiError::internal(e.to_string()))??;
    let running = containers.iter().filter(|c| c.state == shoal_runtime::ContainerState::Running).count();
    let desc = crate::daemon::node_description(&daemon.hostname);
    let res = desc.resources.unwrap_or_default();
    let swarm = match daemon.swarm.read().await.as_ref() {
        None => {
            json!({ "LocalNodeState": "inactive", "NodeID": "", "NodeAddr": "", "ControlAvailable": false, "Error": "", "RemoteManagers": null })
        }
        Some(member) => {
            let id = &member.identity;
            let mut s = json!({
                "LocalNodeState": "active",
                "NodeID": id.node_id,
                "NodeAddr": id.advertise_addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(&id.advertise_addr),
                "ControlAvailable": member.manager.is_some(),
                "Error": "",
                "RemoteManagers": id.managers.iter().map(|a| json!({ "NodeID": "", "Addr": a })).collect::<Vec<_>>(),
            });
            if let Some(m) = &member.manager {
                // Why this manager cannot take writes as it should (a full disk).
                s["Error"] = json!(m.storage_problem().unwrap_or_default());
                let state = m.store().read();
                let managers: Vec<_> = state.nodes.values().filter(|n| n.manager_status.is_some()).collect();
                s["Managers"] = json!(managers.len());
                s["Nodes"] = json!(state.nodes.len());
                s["RemoteManagers"] = json!(managers
                    .iter()
                    .map(|n| json!({ "NodeID": n.id, "Addr": n.manager_status.as_ref().map(|m| m.addr.as_str()).unwrap_or("") }))
                    .collect::<Vec<_>>());
                if let Some(c) = state.cluster() {
                    s["Cluster"] = docker::json(&docker::cluster(c));
                }
                // shoal's own: this manager's view of raft.
                s["Raft"] = json!({
                    "ID": m.config().raft_id,
                    "Leader": m.current_leader(),
                    "Applied": m.applied_index(),
                    "Snapshot": m.snapshot_index(),
                    "Voters": m.voter_count(),
                });
            }
            s
        }
    };
    Ok(Json(json!({
        "ID": daemon.swarm.read().await.as_ref().map(|m| m.identity.node_id.clone()).unwrap_or_default(),
        "Name": daemon.hostname,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "OperatingSystem": "Linux",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "NCPU": res.nano_cpus / 1_000_000_000,
        "MemTotal": res.memory_bytes,
        "DockerRootDir": daemon.data_root().display().to_string(),
        "Containers": containers.len(),
        "ContainersRunning": running,
        "ContainersStopped": containers.len() - running,
        "Swarm": swarm,
        "Warnings": null,
    })))
}
