//! `shoal volume …`.
//!
//! A name is held to Docker's rule here already, so that a path given as a name
//! (`volume rm ../../x`) is refused with the rule before anything is sent.

use anyhow::Context;
use bollard_stubs::models as bollard;
use serde_json::Value;

use super::table::Table;
use super::{answer, print_json, Format};
use crate::api::docker;
use crate::client::{encode, filters, Client};

fn check_name(name: &str) -> anyhow::Result<()> {
    shoal_proto::names::check_volume_name(name).map_err(|why| anyhow::anyhow!("invalid volume name: {why}"))
}

/// `--filter KEY=VALUE` flags as the `filters` query parameter (empty: none).
fn filter_query(filter: &[String], keys: &str) -> anyhow::Result<String> {
    let mut pairs = Vec::new();
    for f in filter {
        let (k, v) = f.split_once('=').with_context(|| format!("bad filter \"{f}\": write KEY=VALUE ({keys})"))?;
        pairs.push((k, v));
    }
    Ok(if pairs.is_empty() { String::new() } else { format!("filters={}", filters(&pairs)) })
}

pub async fn ls(client: &Client, quiet: bool, format: Format, filter: &[String]) -> anyhow::Result<()> {
    let query = filter_query(filter, "dangling, driver, label, name")?;
    let r = client.get(&if query.is_empty() { "/volumes".to_string() } else { format!("/volumes?{query}") }).await?;
    if format == Format::Json {
        return print_json(&Value::Array(r["Volumes"].as_array().cloned().unwrap_or_default()));
    }
    let listed: bollard::VolumeListResponse = answer(r, "GET /volumes")?;
    let volumes = listed.volumes.unwrap_or_default();
    if quiet {
        for v in &volumes {
            println!("{}", v.name);
        }
        return Ok(());
    }
    let mut t = Table::new(&["DRIVER", "VOLUME NAME"]);
    for v in volumes {
        t.row(vec![v.driver, v.name]);
    }
    t.print();
    Ok(())
}

pub async fn create(client: &Client, name: Option<&str>, labels: &[String]) -> anyhow::Result<()> {
    if let Some(name) = name {
        check_name(name)?;
    }
    let labels = labels
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    let asked = docker::VolumeCreate { name: name.unwrap_or_default().to_string(), labels };
    let r = client.post("/volumes/create", &docker::json(&docker::volume_create_request(&asked))).await?;
    let created: bollard::Volume = answer(r, "POST /volumes/create")?;
    println!("{}", created.name);
    Ok(())
}

pub async fn inspect(client: &Client, names: &[String]) -> anyhow::Result<()> {
    let mut out = Vec::new();
    for name in names {
        check_name(name)?;
        out.push(client.get(&format!("/volumes/{}", encode(name))).await?);
    }
    print_json(&Value::Array(out))
}

/// Removes each volume; goes on past failures and fails at the end if any did.
pub async fn rm(client: &Client, names: &[String], force: bool) -> anyhow::Result<()> {
    let mut failed = 0;
    for name in names {
        let removed = match check_name(name) {
            Ok(()) => client.delete(&format!("/volumes/{}?force={}", encode(name), u8::from(force))).await,
            Err(e) => Err(e),
        };
        match removed {
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

pub async fn prune(client: &Client, all: bool, filter: &[String]) -> anyhow::Result<()> {
    let mut filter = filter.to_vec();
    if all {
        filter.push("all=true".into());
    }
    let query = filter_query(&filter, "label, label!, all")?;
    let path = if query.is_empty() { "/volumes/prune".to_string() } else { format!("/volumes/prune?{query}") };
    let r = client.post(&path, &Value::Null).await?;
    let pruned: bollard::VolumePruneResponse = answer(r, "POST /volumes/prune")?;
    let deleted = pruned.volumes_deleted.unwrap_or_default();
    if !deleted.is_empty() {
        println!("Deleted Volumes:");
    }
    for name in &deleted {
        println!("{name}");
    }
    Ok(())
}
