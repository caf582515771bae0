//! `/containers`: standalone containers on this node (no swarm needed), in
//! the Docker Engine API's shapes: requests parsed into calls of the runtime
//! or, where the daemon has a policy (start, restart, create, wait, attach
//! hand-off), of the daemon (`daemon::containers`), and what they return
//! rendered.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use shoal_runtime::{ContainerState, Runtime};

use super::attach;
use super::logs::{LogQuery, LogSource};
use super::{docker, ApiError, ApiResult};
use crate::daemon::attach::SANDBOX_LABEL;
use crate::daemon::containers::Start;
use crate::daemon::Daemon;

/// Runs a blocking runtime call on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    rt: &Arc<Runtime>,
    f: impl FnOnce(&Runtime) -> Result<T, shoal_runtime::Error> + Send + 'static,
) -> ApiResult<T> {
    Ok(crate::daemon::containers::blocking(rt, f).await?)
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
                    "created" => !is_restarting && c.state == ContainerState::Created,
                    "exited" => !is_restarting && c.state == ContainerState::Exited,
                    _ => false,
                })
            })
            .map(|c| docker::json(&docker::container_summary(c, daemon.containers.is_restarting(c))))
            .collect(),
    )))
}

#[derive(Deserialize)]
pub struct CreateQuery {
    name: Option<String>,
}

/// `POST /containers/create[?name=…]`: Docker's create body, checked whole
/// before anything is made.
pub async fn create(
    State(daemon): State<Arc<Daemon>>,
    Query(q): Query<CreateQuery>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let mut v: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let name = q.name.unwrap_or_default();
    // A swarm network: parsed as the default, then joined through the node's mesh.
    let network = match v.pointer("/HostConfig/NetworkMode").and_then(Value::as_str) {
        Some(m) if !matches!(m, "" | "default" | "none" | "bridge" | "host") && !m.starts_with("container:") => {
            let m = m.to_string();
            v["HostConfig"]["NetworkMode"] = Value::from("default");
            Some(m)
        }
        _ => None,
    };
    let bridge =
        matches!(v.pointer("/HostConfig/NetworkMode").and_then(Value::as_str), None | Some("" | "default" | "bridge"));
    let mut spec = docker::parse_container_create(&v, &name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let strings = |key: &str| -> Vec<String> {
        v.pointer(&format!("/HostConfig/{key}"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    let dns = shoal_proto::DnsConfig {
        nameservers: strings("Dns"),
        search: strings("DnsSearch"),
        options: strings("DnsOptions"),
    };
    let hostname = spec.hostname.clone().unwrap_or_default();
    let attached = match network {
        Some(network) => Some(daemon.attach_standalone(&network, &name, &dns, &hostname).await),
        // The default bridge, when the node has networks.
        None if bridge => daemon.attach_default_bridge(&dns, &hostname).await.transpose(),
        None => None,
    };
    let Some(attached) = attached else {
        let c = daemon.containers.create(spec).await?;
        let created = bollard_stubs::models::ContainerCreateResponse { id: c.id, warnings: Vec::new() };
        return Ok((StatusCode::CREATED, Json(docker::json(&created))).into_response());
    };
    let attached = attached.map_err(super::networks::attach_error)?;
    spec.network = shoal_runtime::NetworkMode::Join(attached.network.netns.clone());
    spec.resolv_conf = Some(attached.network.resolv_conf.clone());
    spec.extra_hosts.extend(attached.network.hosts.iter().cloned());
    spec.labels.insert(SANDBOX_LABEL.into(), attached.sandbox.clone());
    let made = daemon.containers.create(spec).await;
    daemon.created(&attached.sandbox);
    match made {
        Ok(c) => {
            let created = bollard_stubs::models::ContainerCreateResponse { id: c.id, warnings: Vec::new() };
            Ok((StatusCode::CREATED, Json(docker::json(&created))).into_response())
        }
        Err(e) => {
            daemon.detach_standalone(&attached.sandbox).await;
            Err(e.into())
        }
    }
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
        let waited = match daemon.containers.wait_exit(&c.id, removed).await {
            Ok(done) => docker::container_wait(done.exit_code, done.error),
            Err(e) => docker::container_wait(None, Some(e.to_string())),
        };
        Ok::<_, std::io::Error>(Bytes::from(docker::json(&waited).to_string()))
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
    let sandbox = blocking(&daemon.runtime, move |rt| {
        let sandbox = rt.container(&id).ok().and_then(|c| c.labels.get(SANDBOX_LABEL).cloned());
        if volumes {
            rt.remove_container_and_volumes(&id, force)?;
        } else {
            rt.remove_container(&id, force)?;
        }
        Ok(sandbox)
    })
    .await?;
    if let Some(sandbox) = sandbox {
        daemon.detach_standalone(&sandbox).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn inspect(State(daemon): State<Arc<Daemon>>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let c = blocking(&daemon.runtime, move |rt| rt.container(&id)).await?;
    let mut inspected = docker::container_inspect(&c, daemon.containers.is_restarting(&c));
    // A task's container is on its task's networks, a standalone one on those of its
    // sandbox: the node's sandbox knows its addresses.
    let sandbox = c.labels.get(shoal_agent::labels::TASK_ID).or_else(|| c.labels.get(SANDBOX_LABEL));
    if let (Some(task_id), Some(network)) = (sandbox, daemon.node_network().await) {
        let networks = network
            .task_interfaces(task_id)
            .await
            .into_iter()
            .map(|(network_id, name, i)| {
                let settings = bollard_stubs::models::EndpointSettings {
                    network_id: Some(network_id),
                    endpoint_id: Some(task_id.clone()),
                    gateway: Some(i.gateway.to_string()),
                    ip_address: Some(i.addr.addr.to_string()),
                    ip_prefix_len: Some(i64::from(i.addr.prefix)),
                    mac_address: Some(i.mac),
                    ..Default::default()
                };
                (name, settings)
            })
            .collect();
        if let Some(settings) = inspected.network_settings.as_mut() {
            settings.networks = Some(networks);
        }
    }
    Ok(Json(docker::json(&inspected)))
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
