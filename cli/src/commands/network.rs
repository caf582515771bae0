//! `shoal network …`: swarm-scoped overlay networks.

use serde_json::{json, Value};

use super::table::Table;
use super::{print_json, s, short, Format};
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

fn key_values(items: &[String]) -> Value {
    let mut m = serde_json::Map::new();
    for l in items {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        m.insert(k.to_string(), json!(v));
    }
    Value::Object(m)
}

pub async fn create(client: &Client, o: CreateOptions) -> anyhow::Result<()> {
    let mut config = Vec::new();
    if o.subnet.is_some() || o.gateway.is_some() {
        config.push(json!({ "Subnet": o.subnet.unwrap_or_default(), "Gateway": o.gateway.unwrap_or_default() }));
    }
    let body = json!({
        "Name": o.name,
        "Driver": o.driver,
        "Internal": o.internal,
        "Attachable": o.attachable,
        "Labels": key_values(&o.labels),
        "Options": key_values(&o.options),
        "IPAM": { "Driver": "default", "Config": config },
    });
    let r = client.post("/networks/create", &body).await?;
    println!("{}", s(&r, &["Id"]));
    Ok(())
}

pub async fn ls(client: &Client, quiet: bool, format: Format) -> anyhow::Result<()> {
    let list = client.get("/networks").await?;
    if format == Format::Json {
        return print_json(&list);
    }
    let mut items = list.as_array().cloned().unwrap_or_default();
    items.sort_by(|a, b| s(a, &["Name"]).cmp(s(b, &["Name"])));
    if quiet {
        for n in &items {
            println!("{}", s(n, &["Id"]));
        }
        return Ok(());
    }
    let mut t = Table::new(&["NETWORK ID", "NAME", "DRIVER", "SCOPE", "SUBNET"]);
    for n in &items {
        t.row(vec![
            short(s(n, &["Id"])).into(),
            s(n, &["Name"]).into(),
            s(n, &["Driver"]).into(),
            s(n, &["Scope"]).into(),
            s(&n["IPAM"]["Config"][0], &["Subnet"]).into(),
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
