//! `shoal swarm …` and `shoal info`.

use serde_json::json;

use super::s;
use crate::client::Client;

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
    let node = client.get(&format!("/nodes/{id}")).await?;
    let swarm = client.get("/swarm").await?;
    println!("Swarm initialized: current node ({id}) is now a manager.\n");
    println!("To add a worker to this swarm, run the following command:\n");
    println!(
        "    shoal swarm join --token {} {}\n",
        s(&swarm, &["JoinTokens", "Worker"]),
        s(&node, &["ManagerStatus", "Addr"])
    );
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
    let info = client.get("/info").await?;
    let role = if info["Swarm"]["ControlAvailable"].as_bool() == Some(true) { "manager" } else { "worker" };
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
        let swarm = client.get("/swarm").await?;
        let version = super::n(&swarm, &["Version", "Index"]);
        let flag = if role == "worker" { "rotateWorkerToken" } else { "rotateManagerToken" };
        client.post(&format!("/swarm/update?version={version}&{flag}=true"), &swarm["Spec"]).await?;
        if !quiet {
            println!("Successfully rotated {role} join token.\n");
        }
    }
    let swarm = client.get("/swarm").await?;
    let token = s(&swarm, &["JoinTokens", key]);
    if quiet {
        println!("{token}");
        return Ok(());
    }
    let info = client.get("/info").await?;
    let node = client.get(&format!("/nodes/{}", s(&info, &["Swarm", "NodeID"]))).await?;
    println!("To add a {role} to this swarm, run the following command:\n");
    println!("    shoal swarm join --token {token} {}\n", s(&node, &["ManagerStatus", "Addr"]));
    Ok(())
}

pub async fn info(client: &Client) -> anyhow::Result<()> {
    let info = client.get("/info").await?;
    println!("Server:");
    println!(" Containers: {}", info["Containers"]);
    println!("  Running: {}", info["ContainersRunning"]);
    println!(" Server Version: {}", s(&info, &["ServerVersion"]));
    println!(" Swarm: {}", s(&info, &["Swarm", "LocalNodeState"]));
    if s(&info, &["Swarm", "LocalNodeState"]) == "active" {
        println!("  NodeID: {}", s(&info, &["Swarm", "NodeID"]));
        println!("  Is Manager: {}", info["Swarm"]["ControlAvailable"]);
        if info["Swarm"]["ControlAvailable"].as_bool() == Some(true) {
            println!("  ClusterID: {}", s(&info, &["Swarm", "Cluster", "ID"]));
            println!("  Managers: {}", info["Swarm"]["Managers"]);
            println!("  Nodes: {}", info["Swarm"]["Nodes"]);
        }
        println!("  Node Address: {}", s(&info, &["Swarm", "NodeAddr"]));
        let error = s(&info, &["Swarm", "Error"]);
        if !error.is_empty() {
            println!("  Error: {error}");
        }
    }
    println!(" Name: {}", s(&info, &["Name"]));
    println!(" Data Root: {}", s(&info, &["DockerRootDir"]));
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
