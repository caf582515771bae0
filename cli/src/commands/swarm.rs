//! `shoal swarm …` and `shoal info`.

use bollard_stubs::models as bollard;
use serde_json::json;

use super::answer;
use crate::api::docker::types;
use crate::client::Client;

/// The daemon's `GET /info`.
pub async fn system_info(client: &Client) -> anyhow::Result<types::SystemInfo> {
    answer(client.get("/info").await?, "GET /info")
}

/// The daemon's part in a swarm, from its `GET /info` (Docker's own `Swarm`,
/// without shoal's additions).
pub async fn swarm_info(client: &Client) -> anyhow::Result<bollard::SwarmInfo> {
    Ok(system_info(client).await?.swarm.map(|s| s.swarm).unwrap_or_default())
}

/// The swarm's join tokens (`GET /swarm`).
async fn join_tokens(client: &Client) -> anyhow::Result<bollard::JoinTokens> {
    let swarm: bollard::Swarm = answer(client.get("/swarm").await?, "GET /swarm")?;
    Ok(swarm.join_tokens.unwrap_or_default())
}

/// The address that manager node `id` takes joining nodes at.
async fn manager_addr(client: &Client, id: &str) -> anyhow::Result<String> {
    let node: bollard::Node =
        answer(client.get(&format!("/nodes/{}", crate::client::encode(id))).await?, "GET /nodes/{id}")?;
    Ok(node.manager_status.and_then(|m| m.addr).unwrap_or_default())
}

/// Whether a node is in a swarm, and as a manager.
pub fn is_manager(swarm: &bollard::SwarmInfo) -> bool {
    swarm.control_available == Some(true)
}

pub async fn init(
    client: &Client,
    listen_addr: &str,
    advertise_addr: &str,
    raft: serde_json::Value,
    limits: serde_json::Value,
) -> anyhow::Result<()> {
    let body = json!({
        "ListenAddr": listen_addr,
        "AdvertiseAddr": advertise_addr,
        "Spec": { "Raft": raft, "Limits": limits },
    });
    let id = client.post("/swarm/init", &body).await?;
    let id = id.as_str().unwrap_or_default().to_string();
    let addr = manager_addr(client, &id).await?;
    let tokens = join_tokens(client).await?;
    println!("Swarm initialized: current node ({id}) is now a manager.\n");
    println!("To add a worker to this swarm, run the following command:\n");
    println!("    shoal swarm join --token {} {addr}\n", tokens.worker.unwrap_or_default());
    println!("To add a manager to this swarm, run 'shoal swarm join-token manager' and follow the instructions.");
    Ok(())
}

pub async fn join(
    client: &Client,
    token: &str,
    remote: &str,
    listen_addr: &str,
    advertise_addr: &str,
) -> anyhow::Result<()> {
    let body = json!({
        "RemoteAddrs": [remote],
        "JoinToken": token,
        "ListenAddr": listen_addr,
        "AdvertiseAddr": advertise_addr,
    });
    client.post("/swarm/join", &body).await?;
    let role = if is_manager(&swarm_info(client).await?) { "manager" } else { "worker" };
    println!("This node joined a swarm as a {role}.");
    Ok(())
}

pub async fn join_token(client: &Client, role: &str, quiet: bool, rotate: bool) -> anyhow::Result<()> {
    let key = match role {
        "worker" => "Worker",
        "manager" => "Manager",
        other => anyhow::bail!("unknown role {other}: use worker or manager"),
    };
    if rotate {
        // The spec goes back whole, as JSON: it carries shoal's `Limits`, which Docker's
        // `SwarmSpec` has no place for.
        let swarm = client.get("/swarm").await?;
        let version = super::n(&swarm, &["Version", "Index"]);
        let flag = if role == "worker" { "rotateWorkerToken" } else { "rotateManagerToken" };
        client.post(&format!("/swarm/update?version={version}&{flag}=true"), &swarm["Spec"]).await?;
        if !quiet {
            println!("Successfully rotated {role} join token.\n");
        }
    }
    let tokens = join_tokens(client).await?;
    let token = if key == "Worker" { tokens.worker } else { tokens.manager }.unwrap_or_default();
    if quiet {
        println!("{token}");
        return Ok(());
    }
    let addr = manager_addr(client, &swarm_info(client).await?.node_id.unwrap_or_default()).await?;
    println!("To add a {role} to this swarm, run the following command:\n");
    println!("    shoal swarm join --token {token} {addr}\n");
    Ok(())
}

pub async fn info(client: &Client) -> anyhow::Result<()> {
    let types::SystemInfo { info, swarm } = system_info(client).await?;
    let swarm = swarm.map(|s| s.swarm).unwrap_or_default();
    let number = |n: Option<i64>| n.unwrap_or(0);
    let state = swarm.local_node_state.map(|s| s.to_string()).unwrap_or_default();
    println!("Server:");
    println!(" Containers: {}", number(info.containers));
    println!("  Running: {}", number(info.containers_running));
    println!(" Server Version: {}", info.server_version.unwrap_or_default());
    println!(" Swarm: {state}");
    if swarm.local_node_state == Some(bollard::LocalNodeState::ACTIVE) {
        println!("  NodeID: {}", swarm.node_id.clone().unwrap_or_default());
        println!("  Is Manager: {}", is_manager(&swarm));
        if is_manager(&swarm) {
            println!("  ClusterID: {}", swarm.cluster.and_then(|c| c.id).unwrap_or_default());
            println!("  Managers: {}", number(swarm.managers));
            println!("  Nodes: {}", number(swarm.nodes));
        }
        println!("  Node Address: {}", swarm.node_addr.unwrap_or_default());
        let error = swarm.error.unwrap_or_default();
        if !error.is_empty() {
            println!("  Error: {error}");
        }
    }
    println!(" Name: {}", info.name.unwrap_or_default());
    println!(" Data Root: {}", info.docker_root_dir.unwrap_or_default());
    Ok(())
}

pub async fn leave(client: &Client, force: bool) -> anyhow::Result<()> {
    client.post(&format!("/swarm/leave?force={}", u8::from(force)), &serde_json::Value::Null).await?;
    println!("Node left the swarm.");
    Ok(())
}

/// `swarm update`: the cluster's settings.
pub async fn update(
    client: &Client,
    task_history_limit: Option<i64>,
    dispatcher_heartbeat: Option<std::time::Duration>,
    cert_expiry: Option<std::time::Duration>,
    max_replicas: Option<u64>,
) -> anyhow::Result<()> {
    // Changed as JSON and sent back whole: the spec carries shoal's `Limits`, which Docker's
    // `SwarmSpec` has no place for.
    let swarm = client.get("/swarm").await?;
    let mut spec = swarm["Spec"].clone();
    if let Some(m) = max_replicas {
        spec["Limits"]["MaxReplicas"] = json!(m);
    }
    if let Some(l) = task_history_limit {
        spec["Orchestration"]["TaskHistoryRetentionLimit"] = json!(l);
    }
    if let Some(h) = dispatcher_heartbeat {
        spec["Dispatcher"]["HeartbeatPeriod"] = json!(h.as_nanos() as i64);
    }
    if let Some(e) = cert_expiry {
        spec["CAConfig"]["NodeCertExpiry"] = json!(e.as_nanos() as i64);
    }
    client.post(&format!("/swarm/update?version={}", super::n(&swarm, &["Version", "Index"])), &spec).await?;
    println!("Swarm updated.");
    Ok(())
}
