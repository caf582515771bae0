//! `shoal container …` (and the top-level `run`, `ps`, `logs`): standalone
//! containers on this node.

use serde_json::{json, Value};

use super::table::Table;
use super::{logs, n, print_json, s, short, Format};
use crate::client::{encode, Client};

pub async fn ls(client: &Client, all: bool, quiet: bool, format: Format) -> anyhow::Result<()> {
    let list = client.get(if all { "/containers/json?all=1" } else { "/containers/json" }).await?;
    if format == Format::Json {
        return print_json(&list);
    }
    let list = list.as_array().cloned().unwrap_or_default();
    if quiet {
        for c in &list {
            println!("{}", short(s(c, &["Id"])));
        }
        return Ok(());
    }
    let mut t = Table::new(&["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"]);
    for c in &list {
        let mut cmd = s(c, &["Command"]).to_string();
        if cmd.chars().count() > 20 {
            cmd = cmd.chars().take(19).collect::<String>() + "…";
        }
        t.row(vec![
            short(s(c, &["Id"])).into(),
            s(c, &["Image"]).into(),
            format!("\"{cmd}\""),
            super::human_duration(shoal_proto::now_ns() - n(c, &["Created"]) * 1_000_000_000) + " ago",
            s(c, &["Status"]).into(),
            c["Names"][0].as_str().unwrap_or("").trim_start_matches('/').into(),
        ]);
    }
    t.print();
    Ok(())
}

/// What `run` and `create` take.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub name: Option<String>,
    pub env: Vec<String>,
    pub env_files: Vec<std::path::PathBuf>,
    pub workdir: Option<String>,
    pub hostname: Option<String>,
    pub entrypoint: Option<String>,
    pub labels: Vec<String>,
    pub image: String,
    pub args: Vec<String>,
}

/// Reads `--env-file` files: `KEY=VALUE` lines, `#` comments, and bare
/// `KEY` taken from this environment (as Docker does).
fn env_file_entries(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading env file {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.contains('=') {
            out.push(line.to_string());
        } else if let Ok(v) = std::env::var(line) {
            out.push(format!("{line}={v}"));
        }
    }
    Ok(out)
}

pub async fn create(client: &Client, o: &CreateOptions) -> anyhow::Result<String> {
    let mut env = Vec::new();
    for f in &o.env_files {
        env.extend(env_file_entries(f)?);
    }
    for e in &o.env {
        // `-e KEY` takes the value from this environment, as Docker does.
        if e.contains('=') {
            env.push(e.clone());
        } else if let Ok(v) = std::env::var(e) {
            env.push(format!("{e}={v}"));
        }
    }
    let mut labels = serde_json::Map::new();
    for l in &o.labels {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        labels.insert(k.to_string(), json!(v));
    }
    let mut body = json!({ "Image": o.image, "Env": env, "Labels": labels });
    if !o.args.is_empty() {
        body["Cmd"] = json!(o.args);
    }
    if let Some(e) = &o.entrypoint {
        body["Entrypoint"] = json!([e]);
    }
    if let Some(w) = &o.workdir {
        body["WorkingDir"] = json!(w);
    }
    if let Some(h) = &o.hostname {
        body["Hostname"] = json!(h);
    }
    let path = match &o.name {
        Some(n) => format!("/containers/create?name={}", encode(n)),
        None => "/containers/create".into(),
    };
    let r = client.post(&path, &body).await?;
    Ok(s(&r, &["Id"]).to_string())
}

/// `run`: create and start; unless detached, print the output until the
/// container exits and exit with its code (removing it with `--rm`).
pub async fn run(client: &Client, o: &CreateOptions, detach: bool, remove: bool) -> anyhow::Result<i32> {
    let id = create(client, o).await?;
    if let Err(e) = client.post(&format!("/containers/{id}/start"), &Value::Null).await {
        // Exit as Docker does: with the container's code (127: command not
        // found, 126: not executable), after saying why.
        eprintln!("Error: {e:#}");
        let code = match client.get(&format!("/containers/{id}/json")).await {
            Ok(c) if n(&c, &["State", "ExitCode"]) != 0 => n(&c, &["State", "ExitCode"]) as i32,
            _ => 125,
        };
        if remove {
            let _ = client.delete(&format!("/containers/{id}?force=1")).await;
        }
        return Ok(code);
    }
    if detach {
        println!("{id}");
        return Ok(0);
    }
    let (mut frames, fetch) = logs::stream(client, format!("/containers/{id}/logs?stdout=1&stderr=1&follow=1"));
    while let Some((stream, line)) = frames.recv().await {
        logs::print_frame(stream, &line);
    }
    fetch.await??;
    let waited = client.post(&format!("/containers/{id}/wait"), &Value::Null).await?;
    if remove {
        client.delete(&format!("/containers/{id}?force=1")).await?;
    }
    Ok(n(&waited, &["StatusCode"]) as i32)
}

pub async fn logs(
    client: &Client,
    container: &str,
    follow: bool,
    timestamps: bool,
    tail: Option<String>,
) -> anyhow::Result<()> {
    let mut q = format!("stdout=1&stderr=1&follow={}&timestamps={}", u8::from(follow), u8::from(timestamps));
    if let Some(t) = tail {
        q.push_str(&format!("&tail={}", encode(&t)));
    }
    let (mut frames, fetch) = logs::stream(client, format!("/containers/{}/logs?{q}", encode(container)));
    while let Some((stream, line)) = frames.recv().await {
        logs::print_frame(stream, &line);
    }
    fetch.await?
}

/// Runs `action` (start, stop, kill, rm, …) on each container, printing each
/// name as Docker does; fails if any failed.
pub async fn each(
    client: &Client,
    containers: &[String],
    action: impl Fn(&str) -> (Verb, String),
) -> anyhow::Result<()> {
    let mut failed = false;
    for c in containers {
        let (method, path) = action(&encode(c));
        let r = match method {
            Verb::Post => client.post(&path, &Value::Null).await,
            Verb::Delete => client.delete(&path).await,
        };
        match r {
            Ok(_) => println!("{c}"),
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                failed = true;
            }
        }
    }
    if failed {
        anyhow::bail!("some containers could not be handled");
    }
    Ok(())
}

/// The HTTP method of an `each` action.
pub enum Verb {
    Post,
    Delete,
}

pub async fn inspect(client: &Client, containers: &[String]) -> anyhow::Result<()> {
    let mut out = Vec::new();
    for c in containers {
        out.push(client.get(&format!("/containers/{}/json", encode(c))).await?);
    }
    print_json(&Value::Array(out))
}

pub async fn wait(client: &Client, containers: &[String]) -> anyhow::Result<()> {
    for c in containers {
        let r = client.post(&format!("/containers/{}/wait", encode(c)), &Value::Null).await?;
        println!("{}", n(&r, &["StatusCode"]));
    }
    Ok(())
}
