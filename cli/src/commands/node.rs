//! `shoal node …`.

use super::table::Table;
use super::{capitalize, print_json, s, Format};
use crate::client::{encode, filters, Client};

pub async fn ls(client: &Client, quiet: bool, format: Format) -> anyhow::Result<()> {
    let nodes = client.get("/nodes").await?;
    if format == Format::Json {
        return print_json(&nodes);
    }
    let mut list = nodes.as_array().cloned().unwrap_or_default();
    list.sort_by(|a, b| s(a, &["Description", "Hostname"]).cmp(s(b, &["Description", "Hostname"])));
    if quiet {
        for n in &list {
            println!("{}", s(n, &["ID"]));
        }
        return Ok(());
    }
    let me = super::swarm::swarm_info(client).await?.node_id.unwrap_or_default();
    let mut t = Table::new(&["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER STATUS", "ENGINE VERSION"]);
    let mut errors = Vec::new();
    for n in &list {
        let id = s(n, &["ID"]);
        let error = s(n, &["ManagerStatus", "Error"]);
        if !error.is_empty() {
            errors.push(format!("{}: {error}", s(n, &["Description", "Hostname"])));
        }
        let manager = if n["ManagerStatus"].is_object() {
            if !error.is_empty() {
                "Unreachable (see below)".to_string()
            } else if n["ManagerStatus"]["Leader"].as_bool() == Some(true) {
                "Leader".to_string()
            } else {
                capitalize(s(n, &["ManagerStatus", "Reachability"]))
            }
        } else {
            String::new()
        };
        t.row(vec![
            if id == me { format!("{id} *") } else { id.to_string() },
            s(n, &["Description", "Hostname"]).into(),
            capitalize(s(n, &["Status", "State"])),
            capitalize(s(n, &["Spec", "Availability"])),
            manager,
            s(n, &["Description", "Engine", "EngineVersion"]).into(),
        ]);
    }
    t.print();
    for e in errors {
        println!("\nmanager {e}");
    }
    Ok(())
}

/// `node update`: availability and labels.
pub async fn update(
    client: &Client,
    node: &str,
    availability: Option<&str>,
    label_add: &[String],
    label_rm: &[String],
) -> anyhow::Result<()> {
    let n = client.get(&format!("/nodes/{}", encode(node))).await?;
    let mut spec = n["Spec"].clone();
    if let Some(a) = availability {
        spec["Availability"] = serde_json::json!(a);
    }
    if !spec["Labels"].is_object() {
        spec["Labels"] = serde_json::json!({});
    }
    for l in label_add {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        spec["Labels"][k] = serde_json::json!(v);
    }
    for k in label_rm {
        if let Some(labels) = spec["Labels"].as_object_mut() {
            if labels.remove(k).is_none() {
                anyhow::bail!("key {k} doesn't exist in the node's labels");
            }
        }
    }
    let id = s(&n, &["ID"]);
    client.post(&format!("/nodes/{id}/update?version={}", super::n(&n, &["Version", "Index"])), &spec).await?;
    println!("{node}");
    Ok(())
}

/// `node promote` / `node demote`: sets each node's desired role. A node
/// read from a manager that lags the leader may be out of date: re-read and
/// retry then.
pub async fn set_role(client: &Client, nodes: &[String], role: &str) -> anyhow::Result<()> {
    for node in nodes {
        let mut attempt = 0;
        loop {
            let n = client.get(&format!("/nodes/{}", encode(node))).await?;
            let name = s(&n, &["Description", "Hostname"]).to_string();
            if s(&n, &["Spec", "Role"]) == role {
                println!("Node {name} is already a {role} in the swarm.");
                break;
            }
            let mut spec = n["Spec"].clone();
            spec["Role"] = serde_json::json!(role);
            let id = s(&n, &["ID"]);
            let path = format!("/nodes/{id}/update?version={}", super::n(&n, &["Version", "Index"]));
            match client.post(&path, &spec).await {
                Ok(_) => {
                    let verb = if role == "manager" { "promoted to a manager" } else { "demoted" };
                    println!("Node {name} {verb} in the swarm.");
                    break;
                }
                Err(e) if attempt < 10 && is_conflict(&e) => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

fn is_conflict(e: &anyhow::Error) -> bool {
    e.downcast_ref::<crate::client::ApiError>().is_some_and(|a| a.status == hyper::StatusCode::CONFLICT)
}

pub async fn inspect(client: &Client, nodes: &[String], pretty: bool) -> anyhow::Result<()> {
    let mut out = Vec::new();
    for node in nodes {
        let key = if node == "self" {
            super::swarm::swarm_info(client).await?.node_id.unwrap_or_default()
        } else {
            node.clone()
        };
        out.push(client.get(&format!("/nodes/{}", encode(&key))).await?);
    }
    if !pretty {
        return print_json(&serde_json::Value::Array(out));
    }
    for (i, n) in out.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print!("{}", pretty_node(n));
    }
    Ok(())
}

/// `node inspect --pretty`: Docker's layout.
fn pretty_node(n: &serde_json::Value) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "ID:\t\t\t{}", s(n, &["ID"]));
    let _ = writeln!(o, "Hostname:\t\t{}", s(n, &["Description", "Hostname"]));
    let _ = writeln!(o, "Joined at:\t\t{}", s(n, &["CreatedAt"]));
    if let Some(labels) = n["Spec"]["Labels"].as_object().filter(|l| !l.is_empty()) {
        let _ = writeln!(o, "Labels:");
        for (k, v) in labels {
            let _ = writeln!(o, " - {k}={}", v.as_str().unwrap_or_default());
        }
    }
    let _ = writeln!(o, "Status:");
    let _ = writeln!(o, " State:\t\t\t{}", capitalize(s(n, &["Status", "State"])));
    let _ = writeln!(o, " Availability:\t\t{}", capitalize(s(n, &["Spec", "Availability"])));
    let _ = writeln!(o, " Address:\t\t{}", s(n, &["Status", "Addr"]));
    if n["ManagerStatus"].is_object() {
        let leader = if n["ManagerStatus"]["Leader"].as_bool() == Some(true) { "Yes" } else { "No" };
        let _ = writeln!(o, "Manager Status:");
        let _ = writeln!(o, " Address:\t\t{}", s(n, &["ManagerStatus", "Addr"]));
        let _ = writeln!(o, " Raft Status:\t\t{}", capitalize(s(n, &["ManagerStatus", "Reachability"])));
        let _ = writeln!(o, " Leader:\t\t{leader}");
    }
    let _ = writeln!(o, "Platform:");
    let _ = writeln!(o, " Operating System:\t{}", s(n, &["Description", "Platform", "OS"]));
    let _ = writeln!(o, " Architecture:\t\t{}", s(n, &["Description", "Platform", "Architecture"]));
    let cpus = n["Description"]["Resources"]["NanoCPUs"].as_i64().unwrap_or(0) / 1_000_000_000;
    let mem = n["Description"]["Resources"]["MemoryBytes"].as_i64().unwrap_or(0) as f64 / (1u64 << 30) as f64;
    let _ = writeln!(o, "Resources:");
    let _ = writeln!(o, " CPUs:\t\t\t{cpus}");
    let _ = writeln!(o, " Memory:\t\t{mem:.1}GiB");
    let _ = writeln!(o, "Engine Version:\t\t{}", s(n, &["Description", "Engine", "EngineVersion"]));
    o
}

pub async fn ps(client: &Client, node: &str, no_trunc: bool, format: Format) -> anyhow::Result<()> {
    let key = if node == "self" {
        super::swarm::swarm_info(client).await?.node_id.unwrap_or_default()
    } else {
        node.to_string()
    };
    let n = client.get(&format!("/nodes/{}", encode(&key))).await?;
    let tasks = client.get(&format!("/tasks?filters={}", filters(&[("node", s(&n, &["ID"]))]))).await?;
    super::service::print_tasks(client, &tasks, no_trunc, false, format).await
}

pub async fn rm(client: &Client, nodes: &[String], force: bool) -> anyhow::Result<()> {
    for node in nodes {
        client.delete(&format!("/nodes/{}?force={}", encode(node), u8::from(force))).await?;
        println!("{node}");
    }
    Ok(())
}
