//! `shoal node …`.

use super::table::Table;
use super::{capitalize, print_json, s, Format};
use crate::client::Client;

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
    let info = client.get("/info").await?;
    let me = s(&info, &["Swarm", "NodeID"]).to_string();
    let mut t = Table::new(&["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER STATUS", "ENGINE VERSION"]);
    for n in &list {
        let id = s(n, &["ID"]);
        let manager = if n["ManagerStatus"].is_object() {
            if n["ManagerStatus"]["Leader"].as_bool() == Some(true) {
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
    Ok(())
}
