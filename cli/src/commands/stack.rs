//! `shoal stack …`: compose files deployed as one atomic write, with a wait
//! for convergence by default.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use shoal_proto::STACK_NAMESPACE_LABEL;

use super::table::Table;
use super::{print_json, progress, s, service, Format};
use crate::api::docker;
use crate::client::{encode, filters, Client};

pub struct DeployOptions {
    pub files: Vec<PathBuf>,
    pub env_file: Option<PathBuf>,
    pub profiles: Vec<String>,
    pub name: String,
    pub prune: bool,
    pub detach: bool,
    pub timeout: Duration,
}

pub async fn deploy(client: &Client, o: DeployOptions) -> anyhow::Result<()> {
    let project = load(&o.files, o.env_file.clone(), o.profiles.clone())?;
    let loaded = project.to_stack(&o.name).map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let stack = &loaded.stack;
    let body = json!({
        "Services": stack.services.iter().map(docker::service_spec).collect::<Vec<_>>(),
        "Networks": stack.networks.iter().map(docker::network_spec).collect::<Vec<_>>(),
        "Secrets": stack.secrets.iter().map(|s| docker::file_object_spec(&s.annotations, &s.data)).collect::<Vec<_>>(),
        "Configs": stack.configs.iter().map(|c| docker::file_object_spec(&c.annotations, &c.data)).collect::<Vec<_>>(),
        "External": {
            "Networks": stack.external.networks,
            "Secrets": stack.external.secrets,
            "Configs": stack.external.configs,
        },
    });
    let since = shoal_proto::now_ns();
    let path = format!("/shoal/v1/stacks/{}{}", encode(&o.name), if o.prune { "?prune=1" } else { "" });
    let result = client.post(&path, &body).await?;
    for object in result["Objects"].as_array().cloned().unwrap_or_default() {
        let (kind, name) = (s(&object, &["Kind"]), s(&object, &["Name"]));
        match s(&object, &["Change"]) {
            "created" => println!("Creating {kind} {name}"),
            "updated" => println!("Updating {kind} {name}"),
            _ => {}
        }
    }
    let mut waiting = Vec::new();
    for svc in result["Services"].as_array().cloned().unwrap_or_default() {
        let name = s(&svc, &["Name"]);
        match s(&svc, &["Change"]) {
            "created" => println!("Creating service {name}"),
            "updated" => println!("Updating service {name}"),
            "removed" => println!("Removing service {name}"),
            _ => println!("Service {name} is unchanged"),
        }
        if s(&svc, &["Change"]) != "removed" {
            waiting.push(s(&svc, &["ID"]).to_string());
        }
    }
    if o.detach {
        return Ok(());
    }
    progress::wait_converged(client, &waiting, since, o.timeout)
        .await
        .with_context(|| format!("stack {} did not converge", o.name))?;
    println!("Stack {} converged", o.name);
    Ok(())
}

/// Loads compose files with this shell's environment (and `.env` beside
/// the first file, or `--env-file`).
fn load(files: &[PathBuf], env_file: Option<PathBuf>, profiles: Vec<String>) -> anyhow::Result<shoal_deploy::Project> {
    let options =
        shoal_deploy::LoadOptions { files: files.to_vec(), env: std::env::vars().collect(), env_file, profiles };
    shoal_deploy::load_project(&options).map_err(|e| anyhow::anyhow!("{e}"))
}

/// `stack config`: the compose files as shoal understood them: merged,
/// interpolated, resolved.
pub fn config(files: &[PathBuf], env_file: Option<PathBuf>, profiles: Vec<String>) -> anyhow::Result<()> {
    let project = load(files, env_file, profiles)?;
    for w in &project.warnings {
        eprintln!("warning: {w}");
    }
    let text = project.render();
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    Ok(())
}

fn namespace_filter(name: &str) -> String {
    filters(&[("label", &format!("{STACK_NAMESPACE_LABEL}={name}"))])
}

pub async fn ls(client: &Client, format: Format) -> anyhow::Result<()> {
    let services = client.get(&format!("/services?filters={}", filters(&[("label", STACK_NAMESPACE_LABEL)]))).await?;
    let mut stacks: BTreeMap<String, usize> = BTreeMap::new();
    for svc in services.as_array().cloned().unwrap_or_default() {
        *stacks.entry(s(&svc, &["Spec", "Labels", STACK_NAMESPACE_LABEL]).to_string()).or_default() += 1;
    }
    if format == Format::Json {
        let v: Vec<Value> = stacks.iter().map(|(n, c)| json!({ "Name": n, "Services": c })).collect();
        return print_json(&Value::Array(v));
    }
    let mut t = Table::new(&["NAME", "SERVICES"]);
    for (name, count) in stacks {
        t.row(vec![name, count.to_string()]);
    }
    t.print();
    Ok(())
}

pub async fn services(client: &Client, name: &str, quiet: bool, format: Format) -> anyhow::Result<()> {
    let services = client.get(&format!("/services?status=true&filters={}", namespace_filter(name))).await?;
    if services.as_array().is_none_or(|a| a.is_empty()) {
        eprintln!("Nothing found in stack: {name}");
        return Ok(());
    }
    service::print_services(&services, quiet, format)
}

pub async fn ps(
    client: &Client,
    name: &str,
    user_filters: &[String],
    no_trunc: bool,
    quiet: bool,
    format: Format,
) -> anyhow::Result<()> {
    let namespace = format!("{STACK_NAMESPACE_LABEL}={name}");
    let mut pairs: Vec<(&str, &str)> = vec![("label", &namespace)];
    for f in user_filters {
        let pair = f.split_once('=').filter(|(k, v)| !k.is_empty() && !v.is_empty()).ok_or_else(|| {
            anyhow::anyhow!(
                "invalid filter \"{f}\": use KEY=VALUE (id, name, node or desired-state), e.g. desired-state=running"
            )
        })?;
        pairs.push(pair);
    }
    let tasks = client.get(&format!("/tasks?filters={}", filters(&pairs))).await?;
    if user_filters.is_empty() && tasks.as_array().is_none_or(|a| a.is_empty()) {
        anyhow::bail!("nothing found in stack: {name}");
    }
    service::print_tasks(client, &tasks, no_trunc, quiet, format).await
}

pub async fn rm(client: &Client, name: &str, detach: bool, timeout: Duration) -> anyhow::Result<()> {
    let r = client.delete(&format!("/shoal/v1/stacks/{}", encode(name))).await?;
    let mut removed: Vec<String> = r["Removed"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default();
    removed.sort();
    for svc in &removed {
        println!("Removing service {svc}");
    }
    let mut objects = r["Objects"].as_array().cloned().unwrap_or_default();
    objects.sort_by_key(|o| match s(o, &["Kind"]) {
        "secret" => 0,
        "config" => 1,
        _ => 2,
    });
    for o in &objects {
        println!("Removing {} {}", s(o, &["Kind"]), s(o, &["Name"]));
    }
    for why in r["Kept"].as_array().cloned().unwrap_or_default() {
        eprintln!("warning: kept: {}", why.as_str().unwrap_or(""));
    }
    if detach {
        return Ok(());
    }
    // Wait until the stack's tasks are gone and this node's containers of
    // the stack are removed.
    let deadline = tokio::time::Instant::now() + timeout;
    let container_filter = namespace_filter(name);
    loop {
        let tasks = client.get(&format!("/tasks?filters={}", namespace_filter(name))).await?;
        let containers = client.get(&format!("/containers/json?all=1&filters={container_filter}")).await?;
        let stack_containers = containers
            .as_array()
            .map(|a| a.iter().filter(|c| s(c, &["Labels", STACK_NAMESPACE_LABEL]) == name).count())
            .unwrap_or(0);
        let left = tasks.as_array().map(|a| a.len()).unwrap_or(0);
        if left == 0 && stack_containers == 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "stack {name}: {left} tasks and {stack_containers} containers still there after {}s",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
