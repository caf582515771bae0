//! `/containers`: standalone containers on this node (no swarm needed), in
//! the Docker Engine API's shapes: requests parsed into calls of the runtime
//! or, where the daemon has a policy (start, restart, create, wait, attach
//! hand-off), of the daemon (`daemon::containers`), and what they return
//! rendered.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use shoal_runtime::{ContainerInfo, ContainerSpec, ContainerState, RestartPolicy, Runtime};

use super::attach;
use super::logs::{LogQuery, LogSource};
use super::{docker, ApiError, ApiResult};
use crate::daemon::containers::Start;
use crate::daemon::Daemon;

/// Runs a blocking runtime call on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    rt: &Arc<Runtime>,
    f: impl FnOnce(&Runtime) -> Result<T, shoal_runtime::Error> + Send + 'static,
) -> ApiResult<T> {
    Ok(crate::daemon::containers::blocking(rt, f).await?)
}

fn state_name(s: ContainerState) -> &'static str {
    match s {
        ContainerState::Created => "created",
        ContainerState::Running => "running",
        ContainerState::Exited => "exited",
    }
}

fn since(ns: Option<i64>) -> String {
    let now = shoal_proto::now_ns();
    docker::human_duration(now - ns.unwrap_or(now))
}

/// `docker ps`'s STATUS column: `Up 5 seconds`, `Exited (0) 2 minutes ago`.
fn status_text(c: &ContainerInfo) -> String {
    let now = shoal_proto::now_ns();
    match c.state {
        ContainerState::Created => "Created".into(),
        ContainerState::Running => {
            format!("Up {}", docker::human_duration(now - c.started_at.unwrap_or(now)))
        }
        ContainerState::Exited => format!(
            "Exited ({}) {} ago",
            c.exit_code.unwrap_or(-1),
            docker::human_duration(now - c.finished_at.unwrap_or(now))
        ),
    }
}

fn summary(c: &ContainerInfo, restarting: bool) -> Value {
    let (state, status) = if restarting {
        ("restarting", format!("Restarting ({}) {} ago", c.exit_code.unwrap_or(0), since(c.finished_at)))
    } else {
        (state_name(c.state), status_text(c))
    };
    json!({
        "Id": c.id,
        "Names": [format!("/{}", c.name)],
        "Image": c.image,
        "ImageID": c.image_id,
        "Command": c.command.join(" "),
        "Created": c.created_at / 1_000_000_000,
        "State": state,
        "Status": status,
        "Labels": c.labels,
        "Pid": c.pid.unwrap_or(0),
        "Ports": [],
        "Mounts": [],
    })
}

fn inspect_json(c: &ContainerInfo, restarting: bool) -> Value {
    let t = |ns: Option<i64>| ns.map(docker::time).unwrap_or_else(|| "0001-01-01T00:00:00Z".into());
    let devices: Vec<Value> = c
        .devices
        .iter()
        .map(|d| {
            let mut parts = d.rsplitn(3, ':');
            let (perms, inside, host) = (parts.next(), parts.next(), parts.next());
            json!({ "PathOnHost": host, "PathInContainer": inside, "CgroupPermissions": perms })
        })
        .collect();
    json!({
        "Id": c.id,
        "Created": docker::time(c.created_at),
        "Path": c.command.first().cloned().unwrap_or_default(),
        "Args": c.command.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": if restarting { "restarting" } else { state_name(c.state) },
            "Running": c.state == ContainerState::Running,
            "Paused": c.paused,
            "Restarting": restarting,
            "OOMKilled": c.oom_killed,
            "Dead": false,
            "Pid": c.pid.unwrap_or(0),
            "ExitCode": c.exit_code.unwrap_or(0),
            "Error": c.error.clone().unwrap_or_default(),
            "StartedAt": t(c.started_at),
            "FinishedAt": t(c.finished_at),
        },
        "Image": c.image_id,
        "Name": format!("/{}", c.name),
        "RestartCount": c.restart_count,
        "Config": {
            "Image": c.image,
            "Labels": c.labels,
            "Cmd": c.command,
            "StopSignal": c.stop_signal,
            "Tty": c.tty,
            "OpenStdin": c.open_stdin,
            "StdinOnce": c.stdin_once,
            "AttachStdin": c.open_stdin,
            "AttachStdout": true,
            "AttachStderr": true,
        },
        "HostConfig": {
            "RestartPolicy": { "Name": c.restart_policy.name(), "MaximumRetryCount": c.restart_policy.max_retries() },
            "Devices": devices,
            "AutoRemove": c.auto_remove,
        },
        "Mounts": [],
        "NetworkSettings": {},
    })
}

#[derive(Deserialize)]
pub struct ListQuery {
    all: Option<String>,
    filters: Option<String>,
}

fn truthy(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("1") | Some("true") | Some("True"))
}

/// `GET /containers/json`: running containers (all with `all`), filtered by Docker's
/// `label`, `name`, `id` and `status` filters.
pub async fn list(State(daemon): State<Arc<Daemon>>, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    let filters = super::Filters::parse(q.filters.as_deref(), &["label", "name", "id", "status"])?;
    for status in filters.get("status") {
        if !matches!(status.as_str(), "created" | "restarting" | "running" | "removing" | "paused" | "exited" | "dead")
        {
            return Err(ApiError::bad_request(format!(
                "invalid filter 'status={status}': use created, restarting, running, paused, exited or dead"
            )));
        }
    }
    // A status filter lists what it names, running or not (as Docker does).
    let all = truthy(&q.all) || !filters.get("status").is_empty();
    let containers = blocking(&daemon.runtime, |rt| rt.list_containers()).await?;
    Ok(Json(Value::Array(
        containers
            .iter()
            .filter(|c| all || c.state == ContainerState::Running)
            .filter(|c| filters.labels_match(|k| c.labels.get(k).map(String::as_str)))
            .filter(|c| filters.any("name", |n| c.name.contains(n.trim_start_matches('/'))))
            .filter(|c| filters.any("id", |i| c.id.starts_with(i)))
            .filter(|c| {
                let is_restarting = daemon.containers.is_restarting(c);
                filters.any("status", |s| match s {
                    "restarting" => is_restarting,
                    "paused" => c.paused,
                    "running" => c.state == ContainerState::Running && !c.paused,
                    other => !is_restarting && state_name(c.state) == other,
                })
            })
            .map(|c| summary(c, daemon.containers.is_restarting(c)))
            .collect(),
    )))
}

pub(super) fn strings(v: &Value, field: &str) -> ApiResult<Option<Vec<String>>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(vec![s.clone()])),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str().map(String::from).ok_or_else(|| ApiError::bad_request(format!("{field}: expected strings")))
            })
            .collect::<ApiResult<Vec<_>>>()
            .map(Some),
        _ => Err(ApiError::bad_request(format!("{field}: expected a list of strings"))),
    }
}

pub(super) fn string(v: &Value, field: &str) -> ApiResult<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(ApiError::bad_request(format!("{field}: expected a string"))),
    }
}

fn int(v: &Value, field: &str) -> ApiResult<Option<i64>> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => {
            n.as_i64().map(Some).ok_or_else(|| ApiError::bad_request(format!("{field}: expected an integer")))
        }
        _ => Err(ApiError::bad_request(format!("{field}: expected an integer"))),
    }
}

fn boolean(v: &Value) -> bool {
    v.as_bool().unwrap_or(false)
}

/// HostConfig settings with no effect yet: refusing them beats running a
/// container without what the user asked for.
fn refuse_unsupported(host: &Map<String, Value>) -> ApiResult<()> {
    const UNSUPPORTED: &[&str] = &["PortBindings", "CpuQuota", "CpuShares", "CpusetCpus", "Ulimits"];
    for key in UNSUPPORTED {
        let set = match host.get(*key) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            // The docker CLI sends every field, unset strings as "".
            Some(Value::String(s)) if s.is_empty() => false,
            Some(Value::Number(n)) => n.as_i64() != Some(0),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::Object(o)) => !o.is_empty(),
            // The docker CLI sends unset string settings as "".
            Some(Value::String(s)) => !s.is_empty(),
            Some(_) => true,
        };
        if set {
            return Err(ApiError::bad_request(format!(
                "HostConfig.{key} is not supported by this daemon yet; run the container without it"
            )));
        }
    }
    if let Some(mode) = host.get("NetworkMode").and_then(|m| m.as_str()) {
        if !matches!(mode, "" | "default" | "none" | "bridge") {
            return Err(ApiError::bad_request(format!(
                "HostConfig.NetworkMode \"{mode}\" is not supported yet: containers get their own network namespace"
            )));
        }
    }
    Ok(())
}

/// Docker's HostConfig and the container-level options, onto the runtime's spec.
fn apply_host_config(v: &Value, spec: &mut ContainerSpec) -> ApiResult<()> {
    spec.user = string(&v["User"], "User")?;
    spec.stop_signal = string(&v["StopSignal"], "StopSignal")?;
    spec.stop_timeout = int(&v["StopTimeout"], "StopTimeout")?.map(|t| t.max(0) as u64);
    // `Volumes` (`docker run -v /path`): anonymous volumes, unless a bind below covers the path.
    if let Value::Object(volumes) = &v["Volumes"] {
        for target in volumes.keys() {
            spec.mounts.push(shoal_runtime::Mount::parse(target)?);
        }
    }
    let Some(host) = v.get("HostConfig").and_then(|h| h.as_object()) else { return Ok(()) };
    refuse_unsupported(host)?;
    let h = |k: &str| host.get(k).unwrap_or(&Value::Null);
    for bind in strings(h("Binds"), "HostConfig.Binds")?.unwrap_or_default() {
        let mount = shoal_runtime::Mount::parse(&bind)?;
        spec.mounts.retain(|m| !(m.source.is_empty() && m.target == mount.target));
        spec.mounts.push(mount);
    }
    if let Value::Object(t) = h("Tmpfs") {
        for (path, opts) in t {
            spec.tmpfs.insert(path.clone(), opts.as_str().unwrap_or_default().to_string());
        }
    }
    spec.read_only = boolean(h("ReadonlyRootfs"));
    spec.privileged = boolean(h("Privileged"));
    spec.init = boolean(h("Init"));
    spec.cap_add = strings(h("CapAdd"), "HostConfig.CapAdd")?.unwrap_or_default();
    spec.cap_drop = strings(h("CapDrop"), "HostConfig.CapDrop")?.unwrap_or_default();
    spec.no_new_privileges = strings(h("SecurityOpt"), "HostConfig.SecurityOpt")?
        .unwrap_or_default()
        .iter()
        .any(|o| o == "no-new-privileges" || o == "no-new-privileges:true" || o == "no-new-privileges=true");
    spec.memory = int(h("Memory"), "HostConfig.Memory")?.filter(|m| *m > 0);
    spec.nano_cpus = int(h("NanoCpus"), "HostConfig.NanoCpus")?.filter(|c| *c > 0);
    spec.pids_limit = int(h("PidsLimit"), "HostConfig.PidsLimit")?.filter(|p| *p > 0);
    spec.devices = devices(h("Devices"))?;
    spec.restart_policy = restart_policy(h("RestartPolicy"))?;
    spec.console_size = console_size(h("ConsoleSize"))?;
    spec.auto_remove = boolean(h("AutoRemove"));
    Ok(())
}

/// `HostConfig.Devices`: `[{PathOnHost, PathInContainer, CgroupPermissions}]`.
fn devices(v: &Value) -> ApiResult<Vec<shoal_runtime::Device>> {
    let list = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(list) => list,
        _ => return Err(ApiError::bad_request("HostConfig.Devices: expected a list of devices")),
    };
    list.iter()
        .enumerate()
        .map(|(i, d)| {
            let field = |k: &str| string(&d[k], &format!("HostConfig.Devices[{i}].{k}"));
            let host = field("PathOnHost")?.ok_or_else(|| {
                ApiError::bad_request(format!("HostConfig.Devices[{i}].PathOnHost is required: name a host device"))
            })?;
            let inside = field("PathInContainer")?.unwrap_or_else(|| host.clone());
            let perms = field("CgroupPermissions")?.unwrap_or_else(|| "rwm".into());
            Ok(shoal_runtime::Device::parse(&format!("{host}:{inside}:{perms}"))?)
        })
        .collect()
}

/// `HostConfig.RestartPolicy`: `{Name, MaximumRetryCount}`.
fn restart_policy(v: &Value) -> ApiResult<RestartPolicy> {
    match v {
        Value::Null => Ok(RestartPolicy::No),
        Value::Object(_) => {
            let name = string(&v["Name"], "HostConfig.RestartPolicy.Name")?.unwrap_or_default();
            let max = int(&v["MaximumRetryCount"], "HostConfig.RestartPolicy.MaximumRetryCount")?.unwrap_or(0);
            Ok(RestartPolicy::from_parts(&name, max)?)
        }
        _ => Err(ApiError::bad_request("HostConfig.RestartPolicy: expected {\"Name\": …, \"MaximumRetryCount\": …}")),
    }
}

/// `HostConfig.ConsoleSize`: `[rows, columns]`; `[0, 0]` or absent means unknown.
fn console_size(v: &Value) -> ApiResult<Option<(u16, u16)>> {
    let bad = || ApiError::bad_request("HostConfig.ConsoleSize: expected [rows, columns], each 0 to 65535");
    match v {
        Value::Null => Ok(None),
        Value::Array(a) => {
            let [rows, cols] = a.as_slice() else { return Err(bad()) };
            let dim = |d: &Value| d.as_u64().and_then(|d| u16::try_from(d).ok()).ok_or_else(bad);
            let (rows, cols) = (dim(rows)?, dim(cols)?);
            Ok((rows > 0 && cols > 0).then_some((rows, cols)))
        }
        _ => Err(bad()),
    }
}

#[derive(Deserialize)]
pub struct CreateQuery {
    name: Option<String>,
}

pub async fn create(
    State(daemon): State<Arc<Daemon>>,
    Query(q): Query<CreateQuery>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let v: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    if let Some(host) = v.get("HostConfig").and_then(|h| h.as_object()) {
        refuse_unsupported(host)?;
    }
    let image = string(&v["Image"], "Image")?.ok_or_else(|| ApiError::bad_request("Image is required"))?;
    let labels: BTreeMap<String, String> = match &v["Labels"] {
        Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect(),
        _ => BTreeMap::new(),
    };
    let mut spec = ContainerSpec {
        name: q.name.unwrap_or_default(),
        image,
        entrypoint: strings(&v["Entrypoint"], "Entrypoint")?,
        cmd: strings(&v["Cmd"], "Cmd")?,
        env: strings(&v["Env"], "Env")?.unwrap_or_default(),
        workdir: string(&v["WorkingDir"], "WorkingDir")?,
        hostname: string(&v["Hostname"], "Hostname")?,
        labels,
        tty: boolean(&v["Tty"]),
        open_stdin: boolean(&v["OpenStdin"]),
        stdin_once: boolean(&v["StdinOnce"]),
        ..Default::default()
    };
    apply_host_config(&v, &mut spec)?;
    let c = daemon.containers.create(spec).await?;
    Ok((StatusCode::CREATED, Json(json!({ "Id": c.id, "Warnings": [] }))).into_response())
}

/// `POST /containers/{id}/start`: `304` when it runs already.
pub async fn start(State(daemon): State<Arc<Daemon>>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    Ok(match daemon.containers.start(&id).await? {
        Start::AlreadyRunning => StatusCode::NOT_MODIFIED,
        Start::Started => StatusCode::NO_CONTENT,
    })
}

#[derive(Deserialize)]
pub struct AttachQuery {
    stream: Option<String>,
    stdin: Option<String>,
    stdout: Option<String>,
    stderr: Option<String>,
}

/// `POST /containers/{id}/attach?stream=1&stdin=1&stdout=1&stderr=1`: upgrades the
/// connection (`101`, `Upgrade: tcp`) to the container's stdio: its output from now on, raw
/// with a tty and in Docker's multiplexed frames without, and the client's bytes as its stdin.
/// A container not started yet is attached to from its start, so nothing is missed.
pub async fn attach(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    Query(q): Query<AttachQuery>,
    mut req: axum::extract::Request,
) -> ApiResult<Response> {
    let c = blocking(&daemon.runtime, move |rt| rt.container(&id)).await?;
    if !truthy(&q.stream) {
        return Err(ApiError::bad_request(
            "attach without stream=1 (replaying logs only) is not supported: use the logs endpoint",
        ));
    }
    let want = attach::Wanted { stdin: truthy(&q.stdin), stdout: truthy(&q.stdout), stderr: truthy(&q.stderr) };
    let upgrade = hyper::upgrade::on(&mut req);
    let waiting = daemon.containers.register_attach(&c);
    let tty = c.tty;
    let streaming = daemon.clone();
    daemon.spawn(async move {
        let client = match upgrade.await {
            Ok(upgraded) => hyper_util::rt::TokioIo::new(upgraded),
            Err(e) => {
                tracing::warn!(container = %c.name, "attach: the connection was not upgraded: {e}");
                return;
            }
        };
        let Some(stream) = streaming.containers.attach_stream(&c, waiting).await else { return };
        if let Err(e) = attach::pump(client, stream, c.tty, want).await {
            tracing::debug!(container = %c.name, "attach ended: {e}");
        }
    });
    attach::switching_protocols(tty)
}

#[derive(Deserialize)]
pub struct ResizeQuery {
    h: Option<String>,
    w: Option<String>,
}

impl ResizeQuery {
    /// The rows and columns asked for.
    pub(super) fn size(&self) -> ApiResult<(u16, u16)> {
        let dim = |v: &Option<String>, what: &str| {
            v.as_deref().unwrap_or("0").parse::<u16>().map_err(|_| {
                ApiError::bad_request(format!("resize: {what} must be a number of {what} from 0 to 65535"))
            })
        };
        Ok((dim(&self.h, "rows")?, dim(&self.w, "columns")?))
    }
}

/// `POST /containers/{id}/resize?h=ROWS&w=COLUMNS`: the terminal's new size.
pub async fn resize(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    Query(q): Query<ResizeQuery>,
) -> ApiResult<StatusCode> {
    let (rows, cols) = q.size()?;
    let c = blocking(&daemon.runtime, move |rt| rt.container(&id)).await?;
    if !c.tty {
        return Err(ApiError::bad_request(format!(
            "container {} has no terminal to resize (it was created without -t)",
            c.name
        )));
    }
    if c.state != ContainerState::Running {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("container {} is not running", c.name)));
    }
    blocking(&daemon.runtime, move |rt| rt.resize_container_tty(&c.id, rows, cols)).await?;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
pub struct StopQuery {
    t: Option<u64>,
    signal: Option<String>,
}

pub async fn stop(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    Query(q): Query<StopQuery>,
) -> ApiResult<StatusCode> {
    let c = blocking(&daemon.runtime, move |rt| rt.container(&id)).await?;
    let was_running = c.state == ContainerState::Running;
    let timeout = std::time::Duration::from_secs(q.t.unwrap_or(10));
    // Also when it is not running: a stop keeps its restart policy from starting it again.
    blocking(&daemon.runtime, move |rt| rt.stop_container(&c.id, q.signal.as_deref(), timeout)).await?;
    Ok(if was_running { StatusCode::NO_CONTENT } else { StatusCode::NOT_MODIFIED })
}

/// `POST /containers/{id}/restart?t=N&signal=S`: stops the container (if running) and starts
/// it again, as a user's start (its restart count starts over).
pub async fn restart(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    Query(q): Query<StopQuery>,
) -> ApiResult<StatusCode> {
    daemon.containers.restart(&id, q.signal, q.t.map(std::time::Duration::from_secs)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct KillQuery {
    signal: Option<String>,
}

pub async fn kill(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    Query(q): Query<KillQuery>,
) -> ApiResult<StatusCode> {
    let signal = q.signal.unwrap_or_else(|| "SIGKILL".into());
    blocking(&daemon.runtime, move |rt| rt.kill_container(&id, &signal)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct WaitQuery {
    condition: Option<String>,
}

/// `POST /containers/{id}/wait[?condition=not-running|next-exit|removed]`: the headers go
/// out at once (the docker CLI waits for them before it starts the container), the body
/// `{"StatusCode": …}` once the container has exited and, for `removed`, is gone.
pub async fn wait(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> ApiResult<Response> {
    let removed = match q.condition.as_deref() {
        None | Some("" | "not-running" | "next-exit") => false,
        Some("removed") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "wait condition \"{other}\" is unknown: use not-running, next-exit or removed"
            )))
        }
    };
    let c = blocking(&daemon.runtime, move |rt| rt.container(&id)).await?;
    let body = futures::stream::once(async move {
        let done = match daemon.containers.wait_exit(&c.id, removed).await {
            Ok(done) => done,
            Err(e) => {
                return Ok(Bytes::from(json!({ "StatusCode": -1, "Error": { "Message": e.to_string() } }).to_string()))
            }
        };
        let error = done.error.map(|m| json!({ "Message": m }));
        Ok::<_, std::io::Error>(Bytes::from(
            json!({ "StatusCode": done.exit_code.unwrap_or(-1), "Error": error }).to_string(),
        ))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/json")
        .body(axum::body::Body::from_stream(body))
        .map_err(|e| ApiError::internal(e.to_string()))
}

#[derive(Deserialize)]
pub struct RemoveQuery {
    force: Option<String>,
    /// Its anonymous volumes too.
    v: Option<String>,
}

pub async fn remove(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> ApiResult<StatusCode> {
    let (force, volumes) = (truthy(&q.force), truthy(&q.v));
    blocking(&daemon.runtime, move |rt| {
        if volumes {
            rt.remove_container_and_volumes(&id, force)
        } else {
            rt.remove_container(&id, force)
        }
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn inspect(State(daemon): State<Arc<Daemon>>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let c = blocking(&daemon.runtime, move |rt| rt.container(&id)).await?;
    Ok(Json(inspect_json(&c, daemon.containers.is_restarting(&c))))
}

/// `GET /containers/{id}/logs`: with `follow`, the stream ends when the
/// container has exited and its last lines were sent.
pub async fn logs(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Response> {
    let c = blocking(&daemon.runtime, move |rt| rt.container(&id)).await?;
    let source = LogSource { container_id: c.id.clone(), details: String::new() };
    let rt = daemon.runtime.clone();
    let finished = async move {
        let _ = rt.wait_container(&c.id).await;
    };
    super::logs::respond(daemon.runtime.clone(), &q, move || vec![source.clone()], finished).await
}

pub async fn pause(State(daemon): State<Arc<Daemon>>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    blocking(&daemon.runtime, move |rt| rt.pause_container(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn unpause(State(daemon): State<Arc<Daemon>>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    blocking(&daemon.runtime, move |rt| rt.unpause_container(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
