//! `shoal service …`, and the service and task tables `stack` reuses.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::table::Table;
use super::{ago, capitalize, logs, n, parse_time, print_json, progress, s, short, Format};
use crate::client::{encode, filters, Client};

fn mode(svc: &Value) -> &'static str {
    let m = &svc["Spec"]["Mode"];
    if m["Global"].is_object() {
        "global"
    } else if m["ReplicatedJob"].is_object() {
        "replicated job"
    } else if m["GlobalJob"].is_object() {
        "global job"
    } else {
        "replicated"
    }
}

fn image(svc: &Value) -> String {
    let i = s(svc, &["Spec", "TaskTemplate", "ContainerSpec", "Image"]);
    i.split('@').next().unwrap_or(i).to_string()
}

/// Prints services as `service ls` does.
pub fn print_services(services: &Value, quiet: bool, format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        return print_json(services);
    }
    let mut list = services.as_array().cloned().unwrap_or_default();
    list.sort_by(|a, b| s(a, &["Spec", "Name"]).cmp(s(b, &["Spec", "Name"])));
    if quiet {
        for svc in &list {
            println!("{}", s(svc, &["ID"]));
        }
        return Ok(());
    }
    let mut t = Table::new(&["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"]);
    for svc in &list {
        let replicas =
            format!("{}/{}", n(svc, &["ServiceStatus", "RunningTasks"]), n(svc, &["ServiceStatus", "DesiredTasks"]));
        t.row(vec![
            short(s(svc, &["ID"])).into(),
            s(svc, &["Spec", "Name"]).into(),
            mode(svc).into(),
            replicas,
            image(svc),
            ports(svc),
        ]);
    }
    t.print();
    Ok(())
}

/// The PORTS column: ingress-published ports as `*:8080->80/tcp`, as Docker
/// shows them (host-mode ports are not listed there).
pub fn ports(svc: &Value) -> String {
    let list = svc["Endpoint"]["Ports"].as_array().cloned().unwrap_or_default();
    list.iter()
        .filter(|p| s(p, &["PublishMode"]) != "host")
        .map(|p| {
            let published = n(p, &["PublishedPort"]);
            let published = if published == 0 { String::new() } else { published.to_string() };
            format!("*:{published}->{}/{}", n(p, &["TargetPort"]), s(p, &["Protocol"]))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn ls(client: &Client, quiet: bool, format: Format) -> anyhow::Result<()> {
    let services = client.get(if quiet { "/services" } else { "/services?status=true" }).await?;
    print_services(&services, quiet, format)
}

/// Prints tasks as `service ps` does: newest first per slot, older ones
/// indented with ` \_ `.
pub async fn print_tasks(
    client: &Client,
    tasks: &Value,
    no_trunc: bool,
    quiet: bool,
    format: Format,
) -> anyhow::Result<()> {
    if format == Format::Json {
        return print_json(tasks);
    }
    let mut list = tasks.as_array().cloned().unwrap_or_default();
    let mut service_names: HashMap<String, String> = HashMap::new();
    let mut node_names: HashMap<String, String> = HashMap::new();
    for t in &list {
        let sid = s(t, &["ServiceID"]).to_string();
        if let Entry::Vacant(e) = service_names.entry(sid.clone()) {
            let name = match client.get(&format!("/services/{sid}")).await {
                Ok(svc) => s(&svc, &["Spec", "Name"]).to_string(),
                Err(_) => sid,
            };
            e.insert(name);
        }
        let nid = s(t, &["NodeID"]).to_string();
        if nid.is_empty() {
            continue;
        }
        if let Entry::Vacant(e) = node_names.entry(nid.clone()) {
            let name = match client.get(&format!("/nodes/{nid}")).await {
                Ok(node) => s(&node, &["Description", "Hostname"]).to_string(),
                Err(_) => nid,
            };
            e.insert(name);
        }
    }
    let key = |t: &Value| {
        let svc = service_names.get(s(t, &["ServiceID"])).cloned().unwrap_or_default();
        (svc, n(t, &["Slot"]), -parse_time(s(t, &["CreatedAt"])).unwrap_or(0))
    };
    list.sort_by_key(key);
    if quiet {
        for t in &list {
            println!("{}", s(t, &["ID"]));
        }
        return Ok(());
    }
    let mut table =
        Table::new(&["ID", "NAME", "IMAGE", "NODE", "DESIRED STATE", "CURRENT STATE", "CONTAINER", "ERROR", "PORTS"]);
    let mut previous: Option<(String, i64)> = None;
    for t in &list {
        let svc = service_names.get(s(t, &["ServiceID"])).cloned().unwrap_or_default();
        let slot = n(t, &["Slot"]);
        let name = if slot > 0 { format!("{svc}.{slot}") } else { format!("{svc}.{}", s(t, &["NodeID"])) };
        let shown = if previous.as_ref() == Some(&(svc.clone(), slot)) { format!(" \\_ {name}") } else { name };
        previous = Some((svc, slot));
        let mut err = s(t, &["Status", "Err"]).to_string();
        if !err.is_empty() {
            if !no_trunc && err.chars().count() > 60 {
                err = err.chars().take(59).collect::<String>() + "…";
            }
            err = format!("\"{err}\"");
        }
        let container = s(t, &["Status", "ContainerStatus", "ContainerID"]);
        table.row(vec![
            if no_trunc { s(t, &["ID"]).into() } else { short(s(t, &["ID"])).into() },
            shown,
            s(t, &["Spec", "ContainerSpec", "Image"]).split('@').next().unwrap_or("").into(),
            node_names.get(s(t, &["NodeID"])).cloned().unwrap_or_default(),
            capitalize(s(t, &["DesiredState"])),
            format!("{} {}", capitalize(s(t, &["Status", "State"])), ago(s(t, &["Status", "Timestamp"]))),
            if no_trunc { container.into() } else { short(container).into() },
            err,
            String::new(),
        ]);
    }
    table.print();
    Ok(())
}

pub async fn ps(client: &Client, service: &str, no_trunc: bool, quiet: bool, format: Format) -> anyhow::Result<()> {
    let svc = client.get(&format!("/services/{}", encode(service))).await?;
    let tasks = client.get(&format!("/tasks?filters={}", filters(&[("service", s(&svc, &["ID"]))]))).await?;
    print_tasks(client, &tasks, no_trunc, quiet, format).await
}

pub async fn scale(client: &Client, pairs: &[String], detach: bool, timeout: Duration) -> anyhow::Result<()> {
    let mut ids = Vec::new();
    let since = shoal_proto::now_ns();
    for pair in pairs {
        let Some((name, count)) = pair.split_once('=') else {
            anyhow::bail!("invalid scale specifier '{pair}': use SERVICE=REPLICAS, e.g. app_web=5");
        };
        let replicas: u64 = count.parse().map_err(|_| {
            anyhow::anyhow!("invalid replicas value {count} for {name}: expected a non-negative integer")
        })?;
        let svc = client.get(&format!("/services/{}", encode(name))).await?;
        let mut spec = svc["Spec"].clone();
        if !spec["Mode"]["Replicated"].is_object() {
            anyhow::bail!("{name}: scale can only be used with replicated mode");
        }
        spec["Mode"]["Replicated"]["Replicas"] = json!(replicas);
        let id = s(&svc, &["ID"]).to_string();
        client.post(&format!("/services/{id}/update?version={}", n(&svc, &["Version", "Index"])), &spec).await?;
        println!("{name} scaled to {replicas}");
        ids.push(id);
    }
    if !detach {
        progress::wait_converged(client, &ids, since, timeout).await?;
        println!("verify: Service converged");
    }
    Ok(())
}

/// `service create` options.
pub struct CreateOptions {
    pub name: Option<String>,
    pub replicas: u64,
    pub env: Vec<String>,
    pub detach: bool,
    pub image: String,
    pub args: Vec<String>,
}

pub async fn create(client: &Client, o: CreateOptions, timeout: Duration) -> anyhow::Result<()> {
    let mut container = json!({ "Image": o.image });
    if !o.args.is_empty() {
        container["Args"] = json!(o.args);
    }
    if !o.env.is_empty() {
        container["Env"] = json!(o.env);
    }
    let spec = json!({
        "Name": o.name.unwrap_or_default(),
        "TaskTemplate": { "ContainerSpec": container },
        "Mode": { "Replicated": { "Replicas": o.replicas } },
    });
    let since = shoal_proto::now_ns();
    let r = client.post("/services/create", &spec).await?;
    let id = s(&r, &["ID"]).to_string();
    println!("{id}");
    if !o.detach {
        progress::wait_converged(client, std::slice::from_ref(&id), since, timeout).await?;
        println!("verify: Service converged");
    }
    Ok(())
}

pub async fn rm(client: &Client, services: &[String]) -> anyhow::Result<()> {
    let mut failed = false;
    for svc in services {
        match client.delete(&format!("/services/{}", encode(svc))).await {
            Ok(_) => println!("{svc}"),
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    if failed {
        anyhow::bail!("some services could not be removed");
    }
    Ok(())
}

pub async fn inspect(client: &Client, services: &[String]) -> anyhow::Result<()> {
    let mut out = Vec::new();
    for svc in services {
        out.push(client.get(&format!("/services/{}", encode(svc))).await?);
    }
    print_json(&Value::Array(out))
}

/// `service logs` options.
pub struct LogOptions {
    pub follow: bool,
    pub timestamps: bool,
    pub tail: Option<String>,
}

pub async fn logs(client: &Client, service: &str, o: LogOptions) -> anyhow::Result<()> {
    let svc = client.get(&format!("/services/{}", encode(service))).await?;
    let id = s(&svc, &["ID"]).to_string();
    let name = s(&svc, &["Spec", "Name"]).to_string();
    let mut q = format!("stdout=1&stderr=1&details=1&timestamps={}", u8::from(o.timestamps));
    if o.follow {
        q.push_str("&follow=1");
    }
    if let Some(t) = &o.tail {
        q.push_str(&format!("&tail={}", encode(t)));
    }
    let mut tasks: HashMap<String, (i64, String)> = HashMap::new();
    let (mut frames, fetch) = logs::stream(client, format!("/services/{id}/logs?{q}"));
    while let Some((stream, line)) = frames.recv().await {
        {
            // `[timestamp ]details message`
            let (ts, rest) =
                if o.timestamps { line.split_once(' ').unwrap_or(("", &line)) } else { ("", line.as_str()) };
            let (details, msg) = rest.split_once(' ').unwrap_or(("", rest));
            let task_id = details
                .split(',')
                .find_map(|kv| kv.strip_prefix("com.docker.swarm.task.id="))
                .unwrap_or("")
                .to_string();
            if let Entry::Vacant(e) = tasks.entry(task_id.clone()) {
                let info = match client.get(&format!("/tasks/{task_id}")).await {
                    Ok(t) => {
                        let node = match client.get(&format!("/nodes/{}", s(&t, &["NodeID"]))).await {
                            Ok(n) => s(&n, &["Description", "Hostname"]).to_string(),
                            Err(_) => s(&t, &["NodeID"]).to_string(),
                        };
                        (n(&t, &["Slot"]), node)
                    }
                    Err(_) => (0, String::new()),
                };
                e.insert(info);
            }
            let (slot, node) = &tasks[&task_id];
            let prefix = format!("{name}.{slot}.{}@{node}", short(&task_id));
            let ts = if o.timestamps { format!("{ts} ") } else { String::new() };
            logs::print_frame(stream, &format!("{ts}{prefix}    | {msg}"));
        }
    }
    fetch.await?
}
