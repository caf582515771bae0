//! `shoal container …` (and the top-level `run`, `ps`, `logs`): standalone
//! containers on this node.

use std::collections::BTreeMap;

use bollard_stubs::models as bollard;
use serde_json::{json, Value};

use super::table::Table;
use super::{answer, attach, logs, print_json, short, terminal, Format};
use crate::api::docker::{self, types};
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
    let list: Vec<bollard::ContainerSummary> = answer(list, "GET /containers/json")?;
    if quiet {
        for c in &list {
            println!("{}", short(c.id.as_deref().unwrap_or_default()));
        }
        return Ok(());
    }
    let mut t = Table::new(&["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"]);
    for c in list {
        let mut cmd = c.command.unwrap_or_default();
        if cmd.chars().count() > 20 {
            cmd = cmd.chars().take(19).collect::<String>() + "…";
        }
        let created = c.created.unwrap_or(0).saturating_mul(1_000_000_000);
        let name = c.names.unwrap_or_default().into_iter().next().unwrap_or_default();
        t.row(vec![
            short(c.id.as_deref().unwrap_or_default()).into(),
            c.image.unwrap_or_default(),
            format!("\"{cmd}\""),
            super::human_duration(shoal_proto::now_ns().saturating_sub(created)) + " ago",
            c.status.unwrap_or_default(),
            name.trim_start_matches('/').into(),
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
pub fn parse_mount(text: &str) -> Result<types::Mount, String> {
    let bad = |why: String| format!("invalid --mount \"{text}\": {why}");
    let flag = |key: &str, value: Option<&str>| match value {
        None | Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(other) => Err(bad(format!("{key}={other}: use true or false"))),
    };
    let mut mount = types::Mount::default();
    let (mut bind, mut volume, mut tmpfs) =
        (types::BindOptions::default(), types::VolumeOptions::default(), types::TmpfsOptions::default());
    let (mut labels, mut driver_options) = (BTreeMap::new(), BTreeMap::new());
    let mut kind = "volume".to_string();
    for field in csv_fields(text)? {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.to_string())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let value_of = |key: &str| value.clone().ok_or_else(|| bad(format!("{key} needs a value ({key}=…)")));
        match key.as_str() {
            "type" => kind = value_of("type")?,
            "source" | "src" => mount.source = Some(value_of(&key)?),
            "target" | "dst" | "destination" => mount.target = Some(value_of(&key)?),
            "readonly" | "ro" => mount.read_only = Some(flag(&key, value.as_deref())?),
            "consistency" => mount.consistency = Some(value_of(&key)?),
            "bind-propagation" => bind.propagation = Some(value_of(&key)?),
            "bind-nonrecursive" => bind.non_recursive = Some(flag(&key, value.as_deref())?),
            "bind-create-src" => bind.create_mountpoint = Some(flag(&key, value.as_deref())?),
            "volume-nocopy" => volume.no_copy = Some(flag(&key, value.as_deref())?),
            "volume-label" => {
                let label = value_of(&key)?;
                let (k, v) = label.split_once('=').unwrap_or((label.as_str(), ""));
                labels.insert(k.to_string(), v.to_string());
            }
            "volume-driver" => volume.driver_config.get_or_insert_default().name = Some(value_of(&key)?),
            "volume-opt" => {
                let option = value_of(&key)?;
                let (k, v) = option.split_once('=').unwrap_or((option.as_str(), ""));
                driver_options.insert(k.to_string(), v.to_string());
            }
            "volume-subpath" => volume.subpath = Some(value_of(&key)?),
            "tmpfs-size" => tmpfs.size_bytes = Some(parse_bytes(&value_of(&key)?).map_err(&bad)?),
            "tmpfs-mode" => {
                let mode = value_of(&key)?;
                let bits = u64::from_str_radix(&mode, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777 && !mode.starts_with('+'))
                    .ok_or_else(|| bad(format!("tmpfs-mode={mode}: give permission bits in octal, at most 7777")))?;
                tmpfs.mode = Some(bits);
            }
            "" => return Err(bad("an empty option".into())),
            other => return Err(bad(format!("unknown option \"{other}\""))),
        }
    }
    if mount.target.is_none() {
        return Err(bad("the target is required (target=/path/in/container)".into()));
    }
    if !labels.is_empty() {
        volume.labels = Some(labels);
    }
    if !driver_options.is_empty() {
        volume.driver_config.get_or_insert_default().options = Some(driver_options);
    }
    mount.typ = Some(kind);
    mount.bind_options = (bind != types::BindOptions::default()).then_some(bind);
    mount.volume_options = (volume != types::VolumeOptions::default()).then_some(volume);
    mount.tmpfs_options = (tmpfs != types::TmpfsOptions::default()).then_some(tmpfs);
    Ok(mount)
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
    pub mounts: Vec<types::Mount>,
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
    /// `--network`: `default`, `none`, `bridge` or `host`.
    pub network: String,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    /// `--add-host NAME:IP`s.
    pub extra_hosts: Vec<String>,
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
    let labels = o
        .labels
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    let tmpfs = o
        .tmpfs
        .iter()
        .map(|t| {
            let (path, options) = t.split_once(':').unwrap_or((t.as_str(), ""));
            (path.to_string(), options.to_string())
        })
        .collect();
    let devices = o
        .devices
        .iter()
        .map(|d| bollard::DeviceMapping {
            path_on_host: Some(d.host_path.clone()),
            path_in_container: Some(d.container_path.clone()),
            cgroup_permissions: Some(d.permissions.clone()),
        })
        .collect();
    let console_size = if o.tty { terminal::size().map(|(rows, cols)| vec![rows.into(), cols.into()]) } else { None };
    let body = types::ContainerCreateBody {
        body: bollard::ContainerCreateBody {
            image: Some(o.image.clone()),
            env: Some(env),
            labels: Some(labels),
            tty: Some(o.tty),
            open_stdin: Some(o.interactive),
            attach_stdin: Some(o.interactive),
            stdin_once: Some(stdin_once),
            working_dir: o.workdir.clone(),
            hostname: o.hostname.clone(),
            user: o.user.clone(),
            stop_signal: o.stop_signal.clone(),
            stop_timeout: o.stop_timeout.map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
            ..Default::default()
        },
        cmd: (!o.args.is_empty()).then(|| types::StrSlice(o.args.clone())),
        entrypoint: o.entrypoint.as_ref().map(|e| types::StrSlice(vec![e.clone()])),
        volumes: None,
        host_config: Some(types::HostConfig {
            config: bollard::HostConfig {
                binds: Some(o.volumes.clone()),
                tmpfs: Some(tmpfs),
                readonly_rootfs: Some(o.read_only),
                memory: Some(o.memory.unwrap_or(0)),
                nano_cpus: Some(o.nano_cpus.unwrap_or(0)),
                pids_limit: Some(o.pids_limit.unwrap_or(0)),
                privileged: Some(o.privileged),
                init: Some(o.init),
                security_opt: Some(o.security_opt.clone()),
                auto_remove: Some(auto_remove),
                devices: Some(devices),
                console_size,
                network_mode: Some(o.network.clone()),
                dns: Some(o.dns.clone()),
                dns_search: Some(o.dns_search.clone()),
                dns_options: Some(o.dns_options.clone()),
                extra_hosts: Some(o.extra_hosts.clone()),
                ..Default::default()
            },
            mounts: Some(o.mounts.clone()),
            cap_add: Some(types::StrSlice(o.cap_add.clone())),
            cap_drop: Some(types::StrSlice(o.cap_drop.clone())),
            restart_policy: Some(types::RestartPolicy {
                name: Some(o.restart.name().into()),
                maximum_retry_count: Some(o.restart.max_retries().into()),
            }),
        }),
    };
    let path = match &o.name {
        Some(n) => format!("/containers/create?name={}", encode(n)),
        None => "/containers/create".into(),
    };
    let created: bollard::ContainerCreateResponse =
        answer(client.post(&path, &docker::json(&body)).await?, "POST /containers/create")?;
    Ok(created.id)
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
        let exit_code = inspect_one(client, &id).await.ok().and_then(|c| c.state?.exit_code);
        let code = match exit_code.and_then(|code| i32::try_from(code).ok()) {
            Some(code) if code != 0 => code,
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
        let code = wait_exit(client, &id).await?;
        if remove {
            remove_exited(client, &id).await?;
        }
        return Ok(code);
    }
    let (mut frames, fetch) = logs::stream(client, format!("/containers/{id}/logs?stdout=1&stderr=1&follow=1"));
    while let Some((stream, line)) = frames.recv().await {
        logs::print_frame(stream, &line);
    }
    fetch.await??;
    let code = wait_exit(client, &id).await?;
    if remove {
        remove_exited(client, &id).await?;
    }
    Ok(code)
}

/// A container as `GET /containers/{id}/json` shows it.
async fn inspect_one(client: &Client, container: &str) -> anyhow::Result<bollard::ContainerInspectResponse> {
    answer(client.get(&format!("/containers/{}/json", encode(container))).await?, "GET /containers/{id}/json")
}

/// Waits for the container to end; its exit code (a code beyond what a process has reads
/// as 255, a failure).
async fn wait_exit(client: &Client, id: &str) -> anyhow::Result<i32> {
    let waited = client.post(&format!("/containers/{}/wait", encode(id)), &Value::Null).await?;
    let waited: bollard::ContainerWaitResponse = answer(waited, "POST /containers/{id}/wait")?;
    Ok(i32::try_from(waited.status_code).unwrap_or(255))
}

/// Whether a container has a terminal and keeps its stdin open, from its inspect.
fn stdio(c: &bollard::ContainerInspectResponse) -> (bool, bool) {
    let config = c.config.clone().unwrap_or_default();
    (config.tty.unwrap_or(false), config.open_stdin.unwrap_or(false))
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
    let c = inspect_one(client, container).await?;
    let id = c.id.clone().unwrap_or_default();
    let (tty, open_stdin) = stdio(&c);
    let interactive = interactive && open_stdin;
    let path = format!("/containers/{id}/attach?stream=1&stdin={}&stdout=1&stderr=1", u8::from(interactive));
    let stream = client.upgrade(&path).await?;
    client.post(&format!("/containers/{id}/start"), &Value::Null).await?;
    attach::session(client, &format!("/containers/{id}/resize"), stream, tty, interactive).await?;
    wait_exit(client, &id).await
}

/// `attach`: the terminal to a running container's stdio until it exits;
/// returns its exit code.
pub async fn attach(client: &Client, container: &str, no_stdin: bool) -> anyhow::Result<i32> {
    let c = inspect_one(client, container).await?;
    let id = c.id.clone().unwrap_or_default();
    if c.state.as_ref().and_then(|s| s.running) != Some(true) {
        anyhow::bail!("container {container} is not running: start it with \"shoal container start -a {container}\"");
    }
    let (tty, open_stdin) = stdio(&c);
    let interactive = !no_stdin && open_stdin;
    let path = format!("/containers/{id}/attach?stream=1&stdin={}&stdout=1&stderr=1", u8::from(interactive));
    let stream = client.upgrade(&path).await?;
    attach::session(client, &format!("/containers/{id}/resize"), stream, tty, interactive).await?;
    wait_exit(client, &id).await
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
        println!("{}", wait_exit(client, c).await?);
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
    let asked = docker::ExecCreate {
        spec: shoal_runtime::ExecSpec {
            cmd: o.cmd.to_vec(),
            env: o.env.to_vec(),
            user: o.user.map(String::from),
            workdir: o.workdir.map(String::from),
            tty: o.tty,
            tty_size: if o.tty { super::terminal::size() } else { None },
            stdin: o.interactive && !o.detach,
        },
        stdout: !o.detach,
        stderr: !o.detach,
    };
    let body = docker::json(&docker::exec_config(&asked));
    let created = client.post(&format!("/containers/{}/exec", encode(container)), &body).await?;
    let types::IdResponse { id } = answer(created, "POST /containers/{id}/exec")?;
    if o.detach {
        let start = bollard::ExecStartConfig { detach: Some(true), ..Default::default() };
        client.post(&format!("/exec/{id}/start"), &docker::json(&start)).await?;
        return Ok(0);
    }
    let stream = client.upgrade(&format!("/exec/{id}/start")).await?;
    attach::session(client, &format!("/exec/{id}/resize"), stream, o.tty, o.interactive).await?;
    let ended: bollard::ExecInspectResponse =
        answer(client.get(&format!("/exec/{id}/json")).await?, "GET /exec/{id}/json")?;
    Ok(ended.exit_code.and_then(|code| i32::try_from(code).ok()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_flags_read_as_dockers() {
        let parsed = |text: &str| parse_mount(text).map(|m| docker::json(&m));
        assert_eq!(
            parsed("type=bind,source=/srv,target=/data,readonly,bind-propagation=rslave"),
            Ok(json!({"Type": "bind", "Source": "/srv", "Target": "/data", "ReadOnly": true,
                      "BindOptions": {"Propagation": "rslave"}}))
        );
        assert_eq!(
            parsed("src=data,dst=/d,volume-nocopy,volume-label=a=1,\"volume-label=b=x,y\""),
            Ok(json!({"Type": "volume", "Source": "data", "Target": "/d",
                      "VolumeOptions": {"NoCopy": true, "Labels": {"a": "1", "b": "x,y"}}}))
        );
        assert_eq!(
            parsed("type=tmpfs,destination=/run,tmpfs-size=64m,tmpfs-mode=1770"),
            Ok(json!({"Type": "tmpfs", "Target": "/run", "TmpfsOptions": {"SizeBytes": 64 << 20, "Mode": 0o1770}}))
        );
        assert_eq!(
            parsed("dst=/d,volume-driver=local,volume-opt=o=x"),
            Ok(json!({"Type": "volume", "Target": "/d",
                      "VolumeOptions": {"DriverConfig": {"Name": "local", "Options": {"o": "x"}}}}))
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
