//! `/services`, `/tasks`, service logs, and shoal's atomic stacks.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use shoal_manager::store::State as StoreState;
use shoal_proto::{Service, Task, TaskState};

use super::docker::{self, ServiceCounts};
use super::swarm::manager;
use super::{ApiError, ApiResult, Filters};
use crate::client::encode;
use crate::daemon::Daemon;

#[derive(Deserialize)]
pub struct ListQuery {
    filters: Option<String>,
    status: Option<String>,
}

fn truthy(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("1") | Some("true") | Some("True"))
}

/// Running, desired and completed counts for every service.
fn counts(state: &StoreState) -> HashMap<&str, ServiceCounts> {
    let mut out: HashMap<&str, ServiceCounts> = HashMap::new();
    for s in state.services.values() {
        out.entry(s.id.as_str()).or_default().desired = s.replicas().unwrap_or(0);
    }
    for t in state.tasks.values() {
        let Some(c) = out.get_mut(t.service_id.as_str()) else { continue };
        match t.state() {
            TaskState::Running => c.running += 1,
            TaskState::Complete => c.completed += 1,
            _ => {}
        }
    }
    out
}

fn service_labels(s: &Service) -> Option<&HashMap<String, String>> {
    s.spec.as_ref().and_then(|s| s.annotations.as_ref()).map(|a| &a.labels)
}

pub async fn list(State(daemon): State<Arc<Daemon>>, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    let m = manager(&daemon).await?;
    let f = Filters::parse(q.filters.as_deref(), &["id", "name", "label", "mode", "runtime"])?;
    let state = m.store().read();
    let counts = truthy(&q.status).then(|| counts(&state));
    let services: Vec<Value> = state
        .services
        .values()
        .filter(|s| f.any("id", |v| s.id.starts_with(v)))
        .filter(|s| f.any("name", |v| s.name().starts_with(v)))
        .filter(|s| f.labels_match(|k| service_labels(s).and_then(|l| l.get(k)).map(|v| v.as_str())))
        .filter(|s| f.any("mode", |v| (v == "replicated") == s.replicas().is_some()))
        .map(|s| docker::service(s, counts.as_ref().map(|c| c.get(s.id.as_str()).copied().unwrap_or_default())))
        .collect();
    Ok(Json(Value::Array(services)))
}

pub async fn inspect(State(daemon): State<Arc<Daemon>>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let m = manager(&daemon).await?;
    let state = m.store().read();
    let s = state.find_service(&id)?;
    let c = counts(&state).get(s.id.as_str()).copied();
    Ok(Json(docker::service(s, c)))
}

fn parse_body(body: &[u8]) -> ApiResult<shoal_proto::ServiceSpec> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    docker::parse_service_spec(&v).map_err(|e| ApiError::bad_request(format!("invalid service spec: {e}")))
}

pub async fn create(State(daemon): State<Arc<Daemon>>, body: axum::body::Bytes) -> ApiResult<Response> {
    let m = manager(&daemon).await?;
    let spec = parse_body(&body)?;
    let id = m.control().create_service(spec).await?;
    Ok((StatusCode::CREATED, Json(json!({ "ID": id, "Warnings": null }))).into_response())
}

#[derive(Deserialize)]
pub struct UpdateQuery {
    version: Option<String>,
    rollback: Option<String>,
}

pub async fn update(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    Query(q): Query<UpdateQuery>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let m = manager(&daemon).await?;
    let version: u64 = q
        .version
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("the version parameter is required: read the service first"))?
        .parse()
        .map_err(|_| ApiError::bad_request("invalid version parameter: expected an integer"))?;
    if q.rollback.as_deref().is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::bad_request("service rollback is not supported yet"));
    }
    let spec = parse_body(&body)?;
    m.control().update_service(&id, version, spec).await?;
    Ok(Json(json!({ "Warnings": null })))
}

pub async fn remove(State(daemon): State<Arc<Daemon>>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let m = manager(&daemon).await?;
    m.control().remove_service(&id).await?;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
pub struct TaskQuery {
    filters: Option<String>,
}

fn task_matches(state: &StoreState, f: &Filters, t: &Task) -> bool {
    let service = state.services.get(&t.service_id);
    f.any("id", |v| t.id.starts_with(v))
        && f.any("name", |v| t.name().starts_with(v))
        && f.any("service", |v| t.service_id == v || service.is_some_and(|s| s.name() == v))
        && f.any("node", |v| t.node_id == v || state.nodes.get(&t.node_id).is_some_and(|n| n.hostname() == v))
        && f.any("desired-state", |v| match v {
            "running" => t.desired_state() <= TaskState::Running,
            "shutdown" => t.desired_state() >= TaskState::Shutdown,
            "accepted" => t.desired_state() == TaskState::Accepted,
            _ => false,
        })
        && f.labels_match(|k| t.service_annotations.as_ref().and_then(|a| a.labels.get(k)).map(|v| v.as_str()))
        && f.any("_up-to-date", |_| {
            service.and_then(|s| s.spec.as_ref()).and_then(|s| s.task.as_ref()) == t.spec.as_ref()
        })
}

pub async fn list_tasks(State(daemon): State<Arc<Daemon>>, Query(q): Query<TaskQuery>) -> ApiResult<Json<Value>> {
    let m = manager(&daemon).await?;
    let f = Filters::parse(
        q.filters.as_deref(),
        &["id", "name", "label", "service", "node", "desired-state", "runtime", "_up-to-date"],
    )?;
    let state = m.store().read();
    let tasks: Vec<Value> = state.tasks.values().filter(|t| task_matches(&state, &f, t)).map(docker::task).collect();
    Ok(Json(Value::Array(tasks)))
}

pub async fn inspect_task(State(daemon): State<Arc<Daemon>>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let m = manager(&daemon).await?;
    let state = m.store().read();
    Ok(Json(docker::task(state.find_task(&id)?)))
}

#[derive(Deserialize)]
pub struct LogQuery {
    timestamps: Option<String>,
    tail: Option<String>,
    details: Option<String>,
    stdout: Option<String>,
    stderr: Option<String>,
    follow: Option<String>,
}

/// Frames one chunk as Docker's multiplexed stream (`stdcopy`).
fn frame(stream: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(stream);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// How log lines are rendered.
#[derive(Clone, Copy)]
struct LogFormat {
    timestamps: bool,
    details: bool,
    stdout: bool,
    stderr: bool,
}

/// Reads the logs of `tasks`' containers on this node that `seen` has not
/// yet delivered (per container: how many entries were sent), oldest first.
/// On the first read, `tail` keeps only the last lines of each container.
fn read_new_entries(
    rt: &shoal_runtime::Runtime,
    tasks: &[Task],
    seen: &mut HashMap<String, usize>,
    tail: Option<usize>,
) -> Vec<(Task, shoal_runtime::LogEntry)> {
    let mut all = Vec::new();
    for t in tasks {
        let Some(c) = t.status.as_ref().and_then(|s| s.container.as_ref()) else { continue };
        if c.container_id.is_empty() {
            continue;
        }
        let Ok(lines) = rt.read_logs(&c.container_id, None) else { continue };
        let from = match seen.get(&c.container_id) {
            Some(n) => *n,
            None => tail.map_or(0, |n| lines.len().saturating_sub(n)),
        };
        seen.insert(c.container_id.clone(), lines.len());
        all.extend(lines.into_iter().skip(from).map(|l| (t.clone(), l)));
    }
    all.sort_by_key(|(_, l)| l.time);
    all
}

fn render_entries(entries: Vec<(Task, shoal_runtime::LogEntry)>, f: LogFormat) -> Vec<u8> {
    let mut body = Vec::new();
    for (t, entry) in entries {
        let (stream, wanted) = match entry.stream {
            shoal_runtime::LogStream::Stdout => (1u8, f.stdout),
            shoal_runtime::LogStream::Stderr => (2u8, f.stderr),
        };
        if !wanted {
            continue;
        }
        let mut line = String::new();
        if f.timestamps {
            line.push_str(&docker::time(entry.time));
            line.push(' ');
        }
        if f.details {
            line.push_str(&format!(
                "com.docker.swarm.node.id={},com.docker.swarm.service.id={},com.docker.swarm.task.id={} ",
                encode(&t.node_id),
                encode(&t.service_id),
                encode(&t.id)
            ));
        }
        line.push_str(entry.line.trim_end_matches('\n'));
        line.push('\n');
        frame(stream, line.as_bytes(), &mut body);
    }
    body
}

/// The logs of a service's (or one task's) containers on this node, oldest
/// first; with `follow`, new lines keep coming until the client hangs up.
pub async fn logs(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Response> {
    let m = manager(&daemon).await?;
    // A service, or a single task.
    let (service_id, task_id) = {
        let state = m.store().read();
        match state.find_service(&id) {
            Ok(s) => (s.id.clone(), None),
            Err(_) => {
                let t = state.find_task(&id)?;
                (t.service_id.clone(), Some(t.id.clone()))
            }
        }
    };
    let tail: Option<usize> = match q.tail.as_deref() {
        None | Some("all") | Some("") => None,
        Some(n) => Some(n.parse().map_err(|_| ApiError::bad_request("tail: expected a number or \"all\""))?),
    };
    let format = LogFormat {
        timestamps: truthy(&q.timestamps),
        details: truthy(&q.details),
        stdout: q.stdout.is_none() || truthy(&q.stdout),
        stderr: q.stderr.is_none() || truthy(&q.stderr),
    };
    let tasks_now = move |m: &shoal_manager::Manager| -> Vec<Task> {
        m.store()
            .read()
            .service_tasks(&service_id)
            .filter(|t| task_id.as_ref().is_none_or(|id| &t.id == id))
            .cloned()
            .collect()
    };
    let rt = daemon.runtime.clone();
    let tasks = tasks_now(&m);
    let (first, seen) = tokio::task::spawn_blocking({
        let rt = rt.clone();
        move || {
            let mut seen = HashMap::new();
            let entries = read_new_entries(&rt, &tasks, &mut seen, tail);
            (render_entries(entries, format), seen)
        }
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let content_type = HeaderValue::from_static("application/vnd.docker.multiplexed-stream");
    if !truthy(&q.follow) {
        let mut resp = first.into_response();
        resp.headers_mut().insert("Content-Type", content_type);
        return Ok(resp);
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::convert::Infallible>>(16);
    tokio::spawn(async move {
        let mut seen = seen;
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
                _ = tx.closed() => return,
            }
            let tasks = tasks_now(&m);
            let rt = rt.clone();
            let joined = tokio::task::spawn_blocking(move || {
                let entries = read_new_entries(&rt, &tasks, &mut seen, None);
                (render_entries(entries, format), seen)
            })
            .await;
            let Ok((chunk, s)) = joined else { return };
            seen = s;
            if !chunk.is_empty() && tx.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
    });
    let body = axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut resp = body.into_response();
    resp.headers_mut().insert("Content-Type", content_type);
    Ok(resp)
}

#[derive(Deserialize)]
pub struct StackQuery {
    prune: Option<String>,
}

/// `POST /shoal/v1/stacks/{name}`: the whole stack, applied as one write.
pub async fn deploy_stack(
    State(daemon): State<Arc<Daemon>>,
    Path(name): Path<String>,
    Query(q): Query<StackQuery>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let m = manager(&daemon).await?;
    let v: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let Some(list) = v.get("Services").and_then(|s| s.as_array()) else {
        return Err(ApiError::bad_request("the body must be {\"Services\": [ServiceSpec, …]}"));
    };
    let specs = list
        .iter()
        .enumerate()
        .map(|(i, s)| docker::parse_service_spec(s).map_err(|e| ApiError::bad_request(format!("Services[{i}]: {e}"))))
        .collect::<ApiResult<Vec<_>>>()?;
    let result = m.control().deploy_stack(&name, specs, truthy(&q.prune)).await?;
    let services: Vec<Value> = result
        .services
        .iter()
        .map(|(n, id, change)| {
            let change = match change {
                shoal_manager::control::StackChange::Created => "created",
                shoal_manager::control::StackChange::Updated => "updated",
                shoal_manager::control::StackChange::Unchanged => "unchanged",
                shoal_manager::control::StackChange::Removed => "removed",
            };
            json!({ "Name": n, "ID": id, "Change": change })
        })
        .collect();
    Ok(Json(json!({ "Services": services })))
}

pub async fn remove_stack(State(daemon): State<Arc<Daemon>>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let m = manager(&daemon).await?;
    let removed = m.control().remove_stack(&name).await?;
    Ok(Json(json!({ "Removed": removed })))
}
