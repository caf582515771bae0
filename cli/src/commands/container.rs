//! `shoal container …` (and the top-level `run`, `ps`, `logs`): standalone
//! containers on this node.

use serde_json::{json, Value};

use super::table::Table;
use super::{attach, logs, n, print_json, s, short, terminal, Format};
use crate::client::{encode, Client};

pub async fn ls(client: &Client, all: bool, quiet: bool, filters: &[String], format: Format) -> anyhow::Result<()> {
    let mut path = format!("/containers/json?all={}", u8::from(all));
    if !filters.is_empty() {
        path.push_str(&format!("&filters={}", encode(&filters_json(filters)?.to_string())));
    }
    let list = client.get(&path).await?;
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

/// `--filter KEY=VALUE` flags as Docker's `filters` JSON (`{"label":{"a=1":true}}`).
fn filters_json(filters: &[String]) -> anyhow::Result<Value> {
    let mut out = serde_json::Map::new();
    for f in filters {
        let (key, value) = f.split_once('=').filter(|(k, v)| !k.is_empty() && !v.is_empty()).ok_or_else(|| {
            anyhow::anyhow!("invalid filter \"{f}\": use KEY=VALUE, e.g. label=app=web or status=exited")
        })?;
        let entry = out.entry(key.to_string()).or_insert_with(|| json!({}));
        entry[value] = json!(true);
    }
    Ok(Value::Object(out))
}

/// `--restart`: Docker's restart policy syntax.
pub fn parse_restart(s: &str) -> Result<shoal_runtime::RestartPolicy, String> {
    s.parse().map_err(|e: shoal_runtime::Error| e.to_string())
}

/// `--device /dev/host[:/dev/container][:rwm]`.
pub fn parse_device(s: &str) -> Result<shoal_runtime::Device, String> {
    shoal_runtime::Device::parse(s).map_err(|e| e.to_string())
}

/// The fields of one CSV record (Docker reads `--mount` as CSV): comma-separated, a field in
/// double quotes may hold commas, and `""` in it is one quote.
fn csv_fields(text: &str) -> Result<Vec<String>, String> {
    let mut fields = vec![String::new()];
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        let field = fields.last_mut().expect("there is always a field being read");
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            '"' if quoted => quoted = false,
            '"' if field.is_empty() => quoted = true,
            ',' if !quoted => fields.push(String::new()),
            c => field.push(c),
        }
    }
    if quoted {
        return Err(format!("invalid --mount \"{text}\": a quote is not closed"));
    }
    Ok(fields)
}

/// `--mount` in Docker's syntax (`type=bind,source=/srv,target=/data,readonly`,
/// `type=volume,src=data,dst=/data,volume-nocopy,volume-label=k=v`,
/// `type=tmpfs,dst=/run,tmpfs-size=64m,tmpfs-mode=1770`) as a `HostConfig.Mounts` entry; what
/// the daemon cannot honour it refuses, naming the option.
pub fn parse_mount(text: &str) -> Result<serde_json::Value, String> {
    let bad = |why: String| format!("invalid --mount \"{text}\": {why}");
    let flag = |key: &str, value: Option<&str>| match value {
        None | Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(other) => Err(bad(format!("{key}={other}: use true or false"))),
    };
    let mut mount = serde_json::Map::new();
    let (mut bind, mut volume, mut tmpfs) = (serde_json::Map::new(), serde_json::Map::new(), serde_json::Map::new());
    let (mut labels, mut driver_options) = (serde_json::Map::new(), serde_json::Map::new());
    let mut kind = "volume".to_string();
    for field in csv_fields(text)? {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.to_string())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let value_of = |key: &str| value.clone().ok_or_else(|| bad(format!("{key} needs a value ({key}=…)")));
        match key.as_str() {
            "type" => kind = value_of("type")?,
            "source" | "src" => {
                mount.insert("Source".into(), json!(value_of(&key)?));
            }
            "target" | "dst" | "destination" => {
                mount.insert("Target".into(), json!(value_of(&key)?));
            }
            "readonly" | "ro" => {
                mount.insert("ReadOnly".into(), json!(flag(&key, value.as_deref())?));
            }
            "consistency" => {
                mount.insert("Consistency".into(), json!(value_of(&key)?));
            }
            "bind-propagation" => {
                bind.insert("Propagation".into(), json!(value_of(&key)?));
            }
            "bind-nonrecursive" => {
                bind.insert("NonRecursive".into(), json!(flag(&key, value.as_deref())?));
            }
            "bind-create-src" => {
                bind.insert("CreateMountpoint".into(), json!(flag(&key, value.as_deref())?));
            }
            "volume-nocopy" => {
                volume.insert("NoCopy".into(), json!(flag(&key, value.as_deref())?));
            }
            "volume-label" => {
                let label = value_of(&key)?;
                let (k, v) = label.split_once('=').unwrap_or((label.as_str(), ""));
                labels.insert(k.to_string(), json!(v));
            }
            "volume-driver" => {
                volume.insert("DriverConfig".into(), json!({ "Name": value_of(&key)? }));
            }
            "volume-opt" => {
                let option = value_of(&key)?;
                let (k, v) = option.split_once('=').unwrap_or((option.as_str(), ""));
                driver_options.insert(k.to_string(), json!(v));
            }
            "volume-subpath" => {
                volume.insert("Subpath".into(), json!(value_of(&key)?));
            }
            "tmpfs-size" => {
                let size = value_of(&key)?;
                tmpfs.insert("SizeBytes".into(), json!(parse_bytes(&size).map_err(&bad)?));
            }
            "tmpfs-mode" => {
                let mode = value_of(&key)?;
                let bits = u64::from_str_radix(&mode, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777 && !mode.starts_with('+'))
                    .ok_or_else(|| bad(format!("tmpfs-mode={mode}: give permission bits in octal, at most 7777")))?;
                tmpfs.insert("Mode".into(), json!(bits));
            }
            "" => return Err(bad("an empty option".into())),
            other => return Err(bad(format!("unknown option \"{other}\""))),
        }
    }
    if !mount.contains_key("Target") {
        return Err(bad("the target is required (target=/path/in/container)".into()));
    }
    if !labels.is_empty() {
        volume.insert("Labels".into(), serde_json::Value::Object(labels));
    }
    if !driver_options.is_empty() {
        let config = volume.entry("DriverConfig").or_insert_with(|| json!({}));
        config["Options"] = serde_json::Value::Object(driver_options);
    }
    mount.insert("Type".into(), json!(kind));
    for (key, options) in [("BindOptions", bind), ("VolumeOptions", volume), ("TmpfsOptions", tmpfs)] {
        if !options.is_empty() {
            mount.insert(key.into(), serde_json::Value::Object(options));
        }
    }
    Ok(serde_json::Value::Object(mount))
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
    pub user: Option<String>,
    pub volumes: Vec<String>,
    /// `--mount`s, as `HostConfig.Mounts` entries.
    pub mounts: Vec<serde_json::Value>,
    pub tmpfs: Vec<String>,
    pub read_only: bool,
    pub memory: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub pids_limit: Option<i64>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub init: bool,
    pub security_opt: Vec<String>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<u64>,
    pub restart: shoal_runtime::RestartPolicy,
    pub devices: Vec<shoal_runtime::Device>,
    pub image: String,
    pub args: Vec<String>,
    /// A pseudo-terminal for the container (`-t`).
    pub tty: bool,
    /// Keep its stdin open (`-i`).
    pub interactive: bool,
}

/// Docker's byte sizes: `512`, `64k`, `32m`, `1g` (binary units).
pub fn parse_bytes(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| format!("invalid size \"{s}\": use e.g. 64m or 1g"))?;
    if n <= 0.0 {
        return Err(format!("invalid size \"{s}\": it must be positive"));
    }
    Ok((n * mult as f64) as i64)
}

/// `--cpus 1.5` as billionths of a CPU.
pub fn parse_cpus(s: &str) -> Result<i64, String> {
    let n: f64 = s.trim().parse().map_err(|_| format!("invalid --cpus \"{s}\": use a number such as 0.5 or 2"))?;
    if n <= 0.0 {
        return Err(format!("invalid --cpus \"{s}\": it must be positive"));
    }
    Ok((n * 1e9) as i64)
}

/// Reads `--env-file` files: `KEY=VALUE` lines, `#` comments, and bare
/// `KEY` taken from this environment (as Docker does).
fn env_file_entries(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let text = shoal_deploy::read_text_bounded(path, shoal_deploy::MAX_TEXT_FILE, "an env file")
        .map_err(|e| anyhow::anyhow!("reading env file {}: {e}", path.display()))?;
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
    create_with(client, o, false, false).await
}

/// `auto_remove`: the daemon removes the container once it has exited (`run -d --rm`, where
/// no client stays to do it).
async fn create_with(
    client: &Client,
    o: &CreateOptions,
    stdin_once: bool,
    auto_remove: bool,
) -> anyhow::Result<String> {
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
    let mut body = json!({
        "Image": o.image,
        "Env": env,
        "Labels": labels,
        "Tty": o.tty,
        "OpenStdin": o.interactive,
        "AttachStdin": o.interactive,
        "StdinOnce": stdin_once,
    });
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
    if let Some(u) = &o.user {
        body["User"] = json!(u);
    }
    if let Some(sig) = &o.stop_signal {
        body["StopSignal"] = json!(sig);
    }
    if let Some(t) = o.stop_timeout {
        body["StopTimeout"] = json!(t);
    }
    let mut tmpfs = serde_json::Map::new();
    for t in &o.tmpfs {
        let (path, opts) = t.split_once(':').unwrap_or((t.as_str(), ""));
        tmpfs.insert(path.to_string(), json!(opts));
    }
    body["HostConfig"] = json!({
        "Binds": o.volumes,
        "Mounts": o.mounts,
        "Tmpfs": tmpfs,
        "ReadonlyRootfs": o.read_only,
        "Memory": o.memory.unwrap_or(0),
        "NanoCpus": o.nano_cpus.unwrap_or(0),
        "PidsLimit": o.pids_limit.unwrap_or(0),
        "CapAdd": o.cap_add,
        "CapDrop": o.cap_drop,
        "Privileged": o.privileged,
        "Init": o.init,
        "SecurityOpt": o.security_opt,
        "AutoRemove": auto_remove,
        "RestartPolicy": { "Name": o.restart.name(), "MaximumRetryCount": o.restart.max_retries() },
        "Devices": o.devices.iter().map(|d| json!({
            "PathOnHost": d.host_path,
            "PathInContainer": d.container_path,
            "CgroupPermissions": d.permissions,
        })).collect::<Vec<_>>(),
    });
    if o.tty {
        if let Some((rows, cols)) = terminal::size() {
            body["HostConfig"]["ConsoleSize"] = json!([rows, cols]);
        }
    }
    let path = match &o.name {
        Some(n) => format!("/containers/create?name={}", encode(n)),
        None => "/containers/create".into(),
    };
    let r = client.post(&path, &body).await?;
    Ok(s(&r, &["Id"]).to_string())
}

/// `run`: create and start; unless detached, print the output until the
/// container exits and exit with its code (removing it with `--rm`). With
/// `-i` or `-t`, the terminal is attached to the container's stdio instead.
pub async fn run(client: &Client, o: &CreateOptions, detach: bool, remove: bool) -> anyhow::Result<i32> {
    if remove && o.restart != shoal_runtime::RestartPolicy::No {
        anyhow::bail!(
            "conflicting options: --restart {} and --rm (a container removed when it exits cannot be restarted); drop one",
            o.restart
        );
    }
    // `run -i` hands the container one input: when it ends, so does the container's stdin.
    let stdin_once = o.interactive && !detach;
    // Detached, the daemon removes it; attached, this client does once it has read the
    // output and the exit code (the daemon's removal could come first).
    let id = create_with(client, o, stdin_once, remove && detach).await?;
    // Attached before the start, so that no output is missed.
    let attached = if (o.interactive || o.tty) && !detach {
        let path = format!("/containers/{id}/attach?stream=1&stdin={}&stdout=1&stderr=1", u8::from(o.interactive));
        match client.upgrade(&path).await {
            Ok(stream) => Some(stream),
            Err(e) => {
                if remove {
                    let _ = client.delete(&format!("/containers/{id}?force=1&v=1")).await;
                }
                return Err(e);
            }
        }
    } else {
        None
    };
    if let Err(e) = client.post(&format!("/containers/{id}/start"), &Value::Null).await {
        // Exit as Docker does: with the container's code (127: command not
        // found, 126: not executable), after saying why.
        eprintln!("Error: {e:#}");
        let code = match client.get(&format!("/containers/{id}/json")).await {
            Ok(c) if n(&c, &["State", "ExitCode"]) != 0 => n(&c, &["State", "ExitCode"]) as i32,
            _ => 125,
        };
        if remove {
            let _ = client.delete(&format!("/containers/{id}?force=1&v=1")).await;
        }
        return Ok(code);
    }
    if detach {
        println!("{id}");
        return Ok(0);
    }
    if let Some(stream) = attached {
        attach::session(client, &format!("/containers/{id}/resize"), stream, o.tty, o.interactive).await?;
        let waited = client.post(&format!("/containers/{id}/wait"), &Value::Null).await?;
        if remove {
            remove_exited(client, &id).await?;
        }
        return Ok(n(&waited, &["StatusCode"]) as i32);
    }
    let (mut frames, fetch) = logs::stream(client, format!("/containers/{id}/logs?stdout=1&stderr=1&follow=1"));
    while let Some((stream, line)) = frames.recv().await {
        logs::print_frame(stream, &line);
    }
    fetch.await??;
    let waited = client.post(&format!("/containers/{id}/wait"), &Value::Null).await?;
    if remove {
        remove_exited(client, &id).await?;
    }
    Ok(n(&waited, &["StatusCode"]) as i32)
}

/// Removes a `--rm` container that has exited, which the daemon may have removed already.
async fn remove_exited(client: &Client, id: &str) -> anyhow::Result<()> {
    match client.delete(&format!("/containers/{id}?force=1&v=1")).await {
        Err(e)
            if e.downcast_ref::<crate::client::ApiError>()
                .is_some_and(|a| a.status == hyper::StatusCode::NOT_FOUND) =>
        {
            Ok(())
        }
        other => other.map(drop),
    }
}

/// `start -a [-i]`: attaches to the container's output (and input), starts
/// it, and returns its exit code once it ends.
pub async fn start_attached(client: &Client, container: &str, interactive: bool) -> anyhow::Result<i32> {
    let c = client.get(&format!("/containers/{}/json", encode(container))).await?;
    let id = s(&c, &["Id"]).to_string();
    let tty = c["Config"]["Tty"].as_bool().unwrap_or(false);
    let interactive = interactive && c["Config"]["OpenStdin"].as_bool().unwrap_or(false);
    let path = format!("/containers/{id}/attach?stream=1&stdin={}&stdout=1&stderr=1", u8::from(interactive));
    let stream = client.upgrade(&path).await?;
    client.post(&format!("/containers/{id}/start"), &Value::Null).await?;
    attach::session(client, &format!("/containers/{id}/resize"), stream, tty, interactive).await?;
    let waited = client.post(&format!("/containers/{id}/wait"), &Value::Null).await?;
    Ok(n(&waited, &["StatusCode"]) as i32)
}

/// `attach`: the terminal to a running container's stdio until it exits;
/// returns its exit code.
pub async fn attach(client: &Client, container: &str, no_stdin: bool) -> anyhow::Result<i32> {
    let c = client.get(&format!("/containers/{}/json", encode(container))).await?;
    let id = s(&c, &["Id"]).to_string();
    if c["State"]["Running"].as_bool() != Some(true) {
        anyhow::bail!("container {container} is not running: start it with \"shoal container start -a {container}\"");
    }
    let tty = c["Config"]["Tty"].as_bool().unwrap_or(false);
    let interactive = !no_stdin && c["Config"]["OpenStdin"].as_bool().unwrap_or(false);
    let path = format!("/containers/{id}/attach?stream=1&stdin={}&stdout=1&stderr=1", u8::from(interactive));
    let stream = client.upgrade(&path).await?;
    attach::session(client, &format!("/containers/{id}/resize"), stream, tty, interactive).await?;
    let waited = client.post(&format!("/containers/{id}/wait"), &Value::Null).await?;
    Ok(n(&waited, &["StatusCode"]) as i32)
}

pub async fn logs(
    client: &Client,
    container: &str,
    follow: bool,
    timestamps: bool,
    tail: Option<String>,
    since: Option<String>,
    until: Option<String>,
) -> anyhow::Result<()> {
    let mut q = format!("stdout=1&stderr=1&follow={}&timestamps={}", u8::from(follow), u8::from(timestamps));
    if let Some(t) = tail {
        q.push_str(&format!("&tail={}", encode(&t)));
    }
    let now = shoal_proto::now_ns();
    for (key, value) in [("since", since), ("until", until)] {
        if let Some(v) = value {
            q.push_str(&format!("&{key}={}", logs::api_time(&v, now)?));
        }
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

/// What `exec` runs and how.
pub struct ExecOptions<'a> {
    pub cmd: &'a [String],
    pub env: &'a [String],
    pub user: Option<&'a str>,
    pub workdir: Option<&'a str>,
    pub interactive: bool,
    pub tty: bool,
    pub detach: bool,
}

/// `exec`: runs a command inside a running container, as `docker exec`
/// does (the same API); returns its exit code (0 when detached).
pub async fn exec(client: &Client, container: &str, o: &ExecOptions<'_>) -> anyhow::Result<i32> {
    if o.tty && !o.detach && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        anyhow::bail!("the input device is not a TTY: run exec without -t, or from a terminal");
    }
    let body = json!({
        "Cmd": o.cmd, "Env": o.env, "User": o.user, "WorkingDir": o.workdir,
        "AttachStdin": o.interactive && !o.detach, "AttachStdout": !o.detach, "AttachStderr": !o.detach,
        "Tty": o.tty, "ConsoleSize": o.tty.then(super::terminal::size).flatten().map(|(r, c)| [r, c]),
    });
    let r = client.post(&format!("/containers/{}/exec", encode(container)), &body).await?;
    let id = s(&r, &["Id"]);
    if o.detach {
        client.post(&format!("/exec/{id}/start"), &json!({ "Detach": true })).await?;
        return Ok(0);
    }
    let stream = client.upgrade(&format!("/exec/{id}/start")).await?;
    attach::session(client, &format!("/exec/{id}/resize"), stream, o.tty, o.interactive).await?;
    let ended = client.get(&format!("/exec/{id}/json")).await?;
    Ok(n(&ended, &["ExitCode"]) as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_flags_read_as_dockers() {
        assert_eq!(
            parse_mount("type=bind,source=/srv,target=/data,readonly,bind-propagation=rslave"),
            Ok(json!({"Type": "bind", "Source": "/srv", "Target": "/data", "ReadOnly": true,
                      "BindOptions": {"Propagation": "rslave"}}))
        );
        assert_eq!(
            parse_mount("src=data,dst=/d,volume-nocopy,volume-label=a=1,\"volume-label=b=x,y\""),
            Ok(json!({"Type": "volume", "Source": "data", "Target": "/d",
                      "VolumeOptions": {"NoCopy": true, "Labels": {"a": "1", "b": "x,y"}}}))
        );
        assert_eq!(
            parse_mount("type=tmpfs,destination=/run,tmpfs-size=64m,tmpfs-mode=1770"),
            Ok(json!({"Type": "tmpfs", "Target": "/run", "TmpfsOptions": {"SizeBytes": 64 << 20, "Mode": 0o1770}}))
        );
        for bad in [
            "type=bind,source=/srv",
            "type=tmpfs,dst=/t,tmpfs-mode=17777",
            "type=tmpfs,dst=/t,tmpfs-mode=9",
            "dst=/t,readonly=maybe",
            "dst=/t,bogus=1",
            "dst=/t,\"unclosed",
            "dst=/t,,",
        ] {
            assert!(parse_mount(bad).is_err(), "{bad}");
        }
    }
}
