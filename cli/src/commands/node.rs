//! `shoal node …`.

use bollard_stubs::models as bollard;

use super::table::Table;
use super::{answer, capitalize, print_json, Format};
use crate::api::docker::{self, types};
use crate::client::{encode, filters, Client};

/// A node as the API shows it (`GET /nodes/{id}`).
async fn get_node(client: &Client, node: &str) -> anyhow::Result<types::Node> {
    answer(client.get(&format!("/nodes/{}", encode(node))).await?, "GET /nodes/{id}")
}

/// The node `node` names, `self` being the one the daemon runs on.
async fn node_key(client: &Client, node: &str) -> anyhow::Result<String> {
    Ok(if node == "self" { super::swarm::swarm_info(client).await?.node_id.unwrap_or_default() } else { node.into() })
}

fn id(n: &types::Node) -> &str {
    n.node.id.as_deref().unwrap_or_default()
}

fn hostname(n: &types::Node) -> &str {
    n.node.description.as_ref().and_then(|d| d.hostname.as_deref()).unwrap_or_default()
}

fn spec(n: &types::Node) -> bollard::NodeSpec {
    n.node.spec.clone().unwrap_or_default()
}

/// The `version` an update of `n` carries.
fn version(n: &types::Node) -> u64 {
    n.node.version.as_ref().and_then(|v| v.index).unwrap_or(0)
}

/// An enum of the API as Docker words it, capitalized (`ready` → `Ready`).
fn shown(value: Option<impl ToString>) -> String {
    capitalize(&value.map(|v| v.to_string()).unwrap_or_default())
}

pub async fn ls(client: &Client, quiet: bool, format: Format) -> anyhow::Result<()> {
    let nodes = client.get("/nodes").await?;
    if format == Format::Json {
        return print_json(&nodes);
    }
    let mut list: Vec<types::Node> = answer(nodes, "GET /nodes")?;
    list.sort_by(|a, b| hostname(a).cmp(hostname(b)));
    if quiet {
        for n in &list {
            println!("{}", id(n));
        }
        return Ok(());
    }
    let me = super::swarm::swarm_info(client).await?.node_id.unwrap_or_default();
    let mut t = Table::new(&["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER STATUS", "ENGINE VERSION"]);
    let mut errors = Vec::new();
    for n in &list {
        let manager = match &n.manager_status {
            Some(m) if m.error.as_deref().is_some_and(|e| !e.is_empty()) => {
                errors.push(format!("{}: {}", hostname(n), m.error.as_deref().unwrap_or_default()));
                "Unreachable (see below)".to_string()
            }
            Some(m) if m.status.leader == Some(true) => "Leader".to_string(),
            Some(m) => shown(m.status.reachability),
            None => String::new(),
        };
        let description = n.node.description.clone().unwrap_or_default();
        t.row(vec![
            if id(n) == me { format!("{} *", id(n)) } else { id(n).to_string() },
            hostname(n).into(),
            shown(n.node.status.as_ref().and_then(|s| s.state)),
            shown(spec(n).availability),
            manager,
            description.engine.and_then(|e| e.engine_version).unwrap_or_default(),
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
    let n = get_node(client, node).await?;
    let mut spec = spec(&n);
    if let Some(a) = availability {
        spec.availability =
            Some(a.parse().map_err(|_| anyhow::anyhow!("unknown availability {a}: use active, pause or drain"))?);
    }
    let labels = spec.labels.get_or_insert_default();
    for l in label_add {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        labels.insert(k.to_string(), v.to_string());
    }
    for k in label_rm {
        if labels.remove(k).is_none() {
            anyhow::bail!("key {k} doesn't exist in the node's labels");
        }
    }
    let path = format!("/nodes/{}/update?version={}", encode(id(&n)), version(&n));
    client.post(&path, &docker::json(&spec)).await?;
    println!("{node}");
    Ok(())
}

/// `node promote` / `node demote`: sets each node's desired role. A node
/// read from a manager that lags the leader may be out of date: re-read and
/// retry then.
pub async fn set_role(client: &Client, nodes: &[String], role: &str) -> anyhow::Result<()> {
    let wanted: bollard::NodeSpecRoleEnum =
        role.parse().map_err(|_| anyhow::anyhow!("unknown role {role}: use worker or manager"))?;
    for node in nodes {
        let mut attempt = 0;
        loop {
            let n = get_node(client, node).await?;
            let name = hostname(&n).to_string();
            let mut spec = spec(&n);
            if spec.role == Some(wanted) {
                println!("Node {name} is already a {role} in the swarm.");
                break;
            }
            spec.role = Some(wanted);
            let path = format!("/nodes/{}/update?version={}", encode(id(&n)), version(&n));
            match client.post(&path, &docker::json(&spec)).await {
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
        let key = node_key(client, node).await?;
        out.push(client.get(&format!("/nodes/{}", encode(&key))).await?);
    }
    if !pretty {
        return print_json(&serde_json::Value::Array(out));
    }
    for (i, n) in out.into_iter().enumerate() {
        if i > 0 {
            println!();
        }
        print!("{}", pretty_node(&answer(n, "GET /nodes/{id}")?));
    }
    Ok(())
}

/// `node inspect --pretty`: Docker's layout.
fn pretty_node(n: &types::Node) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let spec = spec(n);
    let status = n.node.status.clone().unwrap_or_default();
    let description = n.node.description.clone().unwrap_or_default();
    let _ = writeln!(o, "ID:\t\t\t{}", id(n));
    let _ = writeln!(o, "Hostname:\t\t{}", hostname(n));
    let _ = writeln!(o, "Joined at:\t\t{}", n.node.created_at.as_deref().unwrap_or_default());
    let mut labels: Vec<_> = spec.labels.clone().unwrap_or_default().into_iter().collect();
    if !labels.is_empty() {
        labels.sort();
        let _ = writeln!(o, "Labels:");
        for (k, v) in labels {
            let _ = writeln!(o, " - {k}={v}");
        }
    }
    let _ = writeln!(o, "Status:");
    let _ = writeln!(o, " State:\t\t\t{}", shown(status.state));
    let _ = writeln!(o, " Availability:\t\t{}", shown(spec.availability));
    let _ = writeln!(o, " Address:\t\t{}", status.addr.unwrap_or_default());
    if let Some(m) = &n.manager_status {
        let leader = if m.status.leader == Some(true) { "Yes" } else { "No" };
        let _ = writeln!(o, "Manager Status:");
        let _ = writeln!(o, " Address:\t\t{}", m.status.addr.as_deref().unwrap_or_default());
        let _ = writeln!(o, " Raft Status:\t\t{}", shown(m.status.reachability));
        let _ = writeln!(o, " Leader:\t\t{leader}");
    }
    let platform = description.platform.unwrap_or_default();
    let resources = description.resources.unwrap_or_default();
    let cpus = resources.nano_cpus.unwrap_or(0) / 1_000_000_000;
    let mem = resources.memory_bytes.unwrap_or(0) as f64 / (1u64 << 30) as f64;
    let _ = writeln!(o, "Platform:");
    let _ = writeln!(o, " Operating System:\t{}", platform.os.unwrap_or_default());
    let _ = writeln!(o, " Architecture:\t\t{}", platform.architecture.unwrap_or_default());
    let _ = writeln!(o, "Resources:");
    let _ = writeln!(o, " CPUs:\t\t\t{cpus}");
    let _ = writeln!(o, " Memory:\t\t{mem:.1}GiB");
    let engine = description.engine.and_then(|e| e.engine_version).unwrap_or_default();
    let _ = writeln!(o, "Engine Version:\t\t{engine}");
    o
}

pub async fn ps(client: &Client, node: &str, no_trunc: bool, format: Format) -> anyhow::Result<()> {
    let n = get_node(client, &node_key(client, node).await?).await?;
    let tasks = client.get(&format!("/tasks?filters={}", filters(&[("node", id(&n))]))).await?;
    super::service::print_tasks(client, &tasks, no_trunc, false, format).await
}

pub async fn rm(client: &Client, nodes: &[String], force: bool) -> anyhow::Result<()> {
    for node in nodes {
        client.delete(&format!("/nodes/{}?force={}", encode(node), u8::from(force))).await?;
        println!("{node}");
    }
    Ok(())
}
