//! `shoal volume …`.

use serde_json::{json, Value};

use super::table::Table;
use super::{print_json, s, Format};
use crate::client::{encode, Client};

pub async fn ls(client: &Client, quiet: bool, format: Format) -> anyhow::Result<()> {
    let r = client.get("/volumes").await?;
    let volumes = r["Volumes"].as_array().cloned().unwrap_or_default();
    if format == Format::Json {
        return print_json(&Value::Array(volumes));
    }
    if quiet {
        for v in &volumes {
            println!("{}", s(v, &["Name"]));
        }
        return Ok(());
    }
    let mut t = Table::new(&["DRIVER", "VOLUME NAME"]);
    for v in &volumes {
        t.row(vec![s(v, &["Driver"]).into(), s(v, &["Name"]).into()]);
    }
    t.print();
    Ok(())
}

pub async fn create(client: &Client, name: Option<&str>) -> anyhow::Result<()> {
    let r = client.post("/volumes/create", &json!({ "Name": name.unwrap_or_default() })).await?;
    println!("{}", s(&r, &["Name"]));
    Ok(())
}

pub async fn inspect(client: &Client, names: &[String]) -> anyhow::Result<()> {
    let mut out = Vec::new();
    for name in names {
        out.push(client.get(&format!("/volumes/{}", encode(name))).await?);
    }
    print_json(&Value::Array(out))
}

/// Removes each volume; goes on past failures and fails at the end if any did.
pub async fn rm(client: &Client, names: &[String], force: bool) -> anyhow::Result<()> {
    let mut failed = 0;
    for name in names {
        match client.delete(&format!("/volumes/{}?force={}", encode(name), u8::from(force))).await {
            Ok(_) => println!("{name}"),
            Err(e) => {
                eprintln!("Error: {e:#}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} volumes not removed", names.len());
    }
    Ok(())
}

pub async fn prune(client: &Client, all: bool) -> anyhow::Result<()> {
    let path =
        if all { format!("/volumes/prune?filters={}", encode(r#"{"all":["true"]}"#)) } else { "/volumes/prune".into() };
    let r = client.post(&path, &Value::Null).await?;
    let deleted = r["VolumesDeleted"].as_array().cloned().unwrap_or_default();
    if !deleted.is_empty() {
        println!("Deleted Volumes:");
    }
    for d in &deleted {
        println!("{}", d.as_str().unwrap_or_default());
    }
    Ok(())
}
