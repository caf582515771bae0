//! `/services`, `/tasks`, service logs, and shoal's atomic stacks.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use shoal_manager::store::State as StoreState;
use shoal_proto::{Service, Task, TaskState};

use super::docker::{self, ServiceCounts};
use super::logs::{LogQuery, LogSource};
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
    let services: Vec<_> = state
        .services
        .values()
        .filter(|s| f.any("id", |v| s.id.starts_with(v)))
        .filter(|s| f.any("name", |v| s.name().starts_with(v)))
        .filter(|s| f.labels_match(|k| service_labels(s).and_then(|l| l.get(k)).map(|v| v.as_str())))
        .filter(|s| f.any("mode", |v| (v == "replicated") == s.replicas().is_some()))
        .map(|s| docker::service(s, counts.as_ref().map(|c| c.get(s.id.as_str()).copied().unwrap_or_default())))
        .collect::<Vec<_>>();
    Ok(Json(docker::json(&services)))
}

pub async fn inspect(State(daemon): State<Arc<Daemon>>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let m = manager(&daemon).await?;
    let state = m.store().read();
    let s = state.find_service(&id)?;
    let c = counts(&state).get(s.id.as_str()).copied();
    Ok(Json(docker::json(&docker::service(s, c))))
}

fn parse_body(body: &[u8]) -> ApiResult<shoal_proto::ServiceSpec> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    docker::parse_service_spec(&v).map_err(|e| ApiError::bad_request(e.to_string()))
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
    let version = super::required_version(q.version.as_deref(), "service")?;
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
    let tasks: Vec<_> = state
        .tasks
        .values()
        .filter(|t| task_matches(&state, &f, t))
        .map(|t| docker::task(t, &state.networks))
        .collect();
    Ok(Json(docker::json(&tasks)))
}

pub async fn inspect_task(State(daemon): State<Arc<Daemon>>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let m = manager(&daemon).await?;
    let state = m.store().read();
    Ok(Json(docker::json(&docker::task(state.find_task(&id)?, &state.networks))))
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
    let sources = move || -> Vec<LogSource> {
        m.store()
            .read()
            .service_tasks(&service_id)
            .filter(|t| task_id.as_ref().is_none_or(|id| &t.id == id))
            .filter_map(|t| {
                let c = t.status.as_ref()?.container.as_ref()?;
                (!c.container_id.is_empty()).then(|| LogSource {
                    container_id: c.container_id.clone(),
                    details: format!(
                        "com.docker.swarm.node.id={},com.docker.swarm.service.id={},com.docker.swarm.task.id={}",
                        encode(&t.node_id),
                        encode(&t.service_id),
                        encode(&t.id)
                    ),
                })
            })
            .collect()
    };
    // A service's stream ends only when the client hangs up.
    super::logs::respond(daemon.runtime.clone(), &q, sources, std::future::pending()).await
}

#[derive(Deserialize)]
pub struct StackQuery {
    prune: Option<String>,
}

fn change_name(c: &shoal_manager::control::StackChange) -> &'static str {
    match c {
        shoal_manager::control::StackChange::Created => "created",
        shoal_manager::control::StackChange::Updated => "updated",
        shoal_manager::control::StackChange::Unchanged => "unchanged",
        shoal_manager::control::StackChange::Removed => "removed",
    }
}

fn objects_json(objects: &[shoal_manager::control::StackObjectChange]) -> Vec<Value> {
    objects
        .iter()
        .map(|o| json!({ "Kind": o.kind, "Name": o.name, "ID": o.id, "Change": change_name(&o.change) }))
        .collect()
}

fn names(v: &Value, field: &str) -> ApiResult<Vec<String>> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str().map(String::from).ok_or_else(|| ApiError::bad_request(format!("{field}: expected names")))
            })
            .collect(),
        _ => Err(ApiError::bad_request(format!("{field}: expected a list of names"))),
    }
}

/// An object of a stack's list `key`, at `index`: its errors name it.
fn within<T>(read: Result<T, docker::SpecError>, key: &str, index: usize) -> ApiResult<T> {
    read.map_err(|e| ApiError::bad_request(e.within(&format!("{key}[{index}]")).to_string()))
}

/// Reads the body of a stack deploy: `{Services, Networks, Secrets, Configs,
/// External: {Networks, Secrets, Configs}}`, every object in Docker's shape.
fn parse_stack(v: &Value) -> ApiResult<shoal_manager::control::StackSpec> {
    let Some(list) = v.get("Services").and_then(|s| s.as_array()) else {
        return Err(ApiError::bad_request("the body must be {\"Services\": [ServiceSpec, …], …}"));
    };
    let items = |key: &str| v.get(key).and_then(|x| x.as_array()).cloned().unwrap_or_default();
    let services = list
        .iter()
        .enumerate()
        .map(|(i, s)| within(docker::parse_service_spec(s), "Services", i))
        .collect::<ApiResult<Vec<_>>>()?;
    let networks = items("Networks")
        .iter()
        .enumerate()
        .map(|(i, n)| within(docker::parse_network_create(n), "Networks", i))
        .collect::<ApiResult<Vec<_>>>()?;
    let file_objects = |key: &str| -> ApiResult<Vec<(shoal_proto::Annotations, Vec<u8>)>> {
        items(key)
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let spec = within(docker::parse_file_object_spec(o), key, i)?;
                Ok((shoal_proto::Annotations { name: spec.name, labels: spec.labels }, spec.data.unwrap_or_default()))
            })
            .collect()
    };
    let external = v.get("External").cloned().unwrap_or(Value::Null);
    Ok(shoal_manager::control::StackSpec {
        services,
        networks,
        secrets: file_objects("Secrets")?
            .into_iter()
            .map(|(a, data)| shoal_proto::SecretSpec { annotations: Some(a), data })
            .collect(),
        configs: file_objects("Configs")?
            .into_iter()
            .map(|(a, data)| shoal_proto::ConfigSpec { annotations: Some(a), data })
            .collect(),
        external_networks: names(&external["Networks"], "External.Networks")?,
        external_secrets: names(&external["Secrets"], "External.Secrets")?,
        external_configs: names(&external["Configs"], "External.Configs")?,
    })
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
    let stack = parse_stack(&v)?;
    let result = m.control().deploy_stack(&name, stack, truthy(&q.prune)).await?;
    let services: Vec<Value> = result
        .services
        .iter()
        .map(|(n, id, change)| json!({ "Name": n, "ID": id, "Change": change_name(change) }))
        .collect();
    Ok(Json(json!({ "Services": services, "Objects": objects_json(&result.objects) })))
}

pub async fn remove_stack(State(daemon): State<Arc<Daemon>>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let m = manager(&daemon).await?;
    let removed = m.control().remove_stack(&name).await?;
    Ok(Json(json!({ "Removed": removed.services, "Objects": objects_json(&removed.objects), "Kept": removed.kept })))
}
