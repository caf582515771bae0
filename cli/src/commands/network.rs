//! `shoal network …`: swarm-scoped overlay networks, and standalone containers' places on them.

use bollard_stubs::models as bollard;
use serde_json::Value;

use super::table::Table;
use super::{answer, print_json, short, Format};
use crate::api::docker::{self, types};
use crate::client::{encode, Client};

pub struct CreateOptions {
    pub name: String,
    pub driver: String,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub internal: bool,
    pub attachable: bool,
    pub labels: Vec<String>,
    pub options: Vec<String>,
}

fn key_values(items: &[String]) -> std::collections::HashMap<String, String> {
    items
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

pub async fn create(client: &Client, o: CreateOptions) -> anyhow::Result<()> {
    let mut ipam = Vec::new();
    if o.subnet.is_some() || o.gateway.is_some() {
        ipam.push(shoal_proto::IpamConfig {
            subnet: o.subnet.unwrap_or_default(),
            gateway: o.gateway.unwrap_or_default(),
            ip_range: String::new(),
        });
    }
    let spec = shoal_proto::NetworkSpec {
        annotations: Some(shoal_proto::Annotations { name: o.name, labels: key_values(&o.labels) }),
        driver: o.driver,
        internal: o.internal,
        attachable: o.attachable,
        driver_opts: key_values(&o.options),
        ipam,
        ingress: false,
    };
    let r = client.post("/networks/create", &docker::json(&docker::network_spec(&spec))).await?;
    let created: bollard::NetworkCreateResponse = answer(r, "POST /networks/create")?;
    println!("{}", created.id);
    Ok(())
}

pub async fn ls(client: &Client, quiet: bool, format: Format) -> anyhow::Result<()> {
    let list = client.get("/networks").await?;
    if format == Format::Json {
        return print_json(&list);
    }
    let mut items: Vec<types::Network> = answer(list, "GET /networks")?;
    let name = |n: &types::Network| n.network.name.clone().unwrap_or_default();
    items.sort_by_key(name);
    if quiet {
        for n in &items {
            println!("{}", n.network.id.as_deref().unwrap_or_default());
        }
        return Ok(());
    }
    let mut t = Table::new(&["NETWORK ID", "NAME", "DRIVER", "SCOPE", "SUBNET"]);
    for n in items {
        let n = n.network;
        let subnet = n.ipam.and_then(|i| i.config).and_then(|c| c.into_iter().next()).and_then(|c| c.subnet);
        t.row(vec![
            short(n.id.as_deref().unwrap_or_default()).into(),
            n.name.unwrap_or_default(),
            n.driver.unwrap_or_default(),
            n.scope.unwrap_or_default(),
            subnet.unwrap_or_default(),
        ]);
    }
    t.print();
    Ok(())
}

pub async fn inspect(client: &Client, keys: &[String]) -> anyhow::Result<()> {
    let mut out = Vec::new();
    for k in keys {
        out.push(client.get(&format!("/networks/{}", encode(k))).await?);
    }
    print_json(&Value::Array(out))
}

pub async fn rm(client: &Client, keys: &[String]) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for k in keys {
        match client.delete(&format!("/networks/{}", encode(k))).await {
            Ok(_) => println!("{k}"),
            Err(e) => {
                eprintln!("Error: {e:#}");
                failed.push(k.clone());
            }
        }
    }
    if !failed.is_empty() {
        anyhow::bail!("could not remove network {}", failed.join(", "));
    }
    Ok(())
}

pub async fn connect(client: &Client, network: &str, container: &str, aliases: &[String]) -> anyhow::Result<()> {
    let body = serde_json::json!({ "Container": container, "EndpointConfig": { "Aliases": aliases } });
    client.post(&format!("/networks/{}/connect", encode(network)), &body).await?;
    Ok(())
}

pub async fn disconnect(client: &Client, network: &str, container: &str, force: bool) -> anyhow::Result<()> {
    let body = serde_json::json!({ "Container": container, "Force": force });
    client.post(&format!("/networks/{}/disconnect", encode(network)), &body).await?;
    Ok(())
}
