//! `/secrets` and `/configs`: Docker's shapes, one set of handlers for both
//! kinds. A secret's data never leaves through the API.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use shoal_manager::control::FileObject;
use shoal_manager::store::State as StoreState;

use super::swarm::manager;
use super::{docker, ApiError, ApiResult, Filters};
use crate::daemon::Daemon;

/// How the API renders one kind of object.
pub trait Rendered: FileObject {
    fn render(&self) -> Value;
    fn labels_of(&self) -> Option<&std::collections::HashMap<String, String>> {
        self.annotations().map(|a| &a.labels)
    }
}

impl Rendered for shoal_proto::Secret {
    fn render(&self) -> Value {
        docker::json(&docker::secret(self))
    }
}

impl Rendered for shoal_proto::Config {
    fn render(&self) -> Value {
        docker::json(&docker::config(self))
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    filters: Option<String>,
}

fn matches<T: Rendered>(f: &Filters, o: &T) -> bool {
    f.any("id", |v| o.id().starts_with(v))
        && f.any("name", |v| o.name().starts_with(v))
        && f.any("names", |v| o.name() == v)
        && f.labels_match(|k| o.labels_of().and_then(|l| l.get(k)).map(|v| v.as_str()))
}

pub async fn list<T: Rendered>(
    State(daemon): State<Arc<Daemon>>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let m = manager(&daemon).await?;
    let f = Filters::parse(q.filters.as_deref(), &["id", "name", "names", "label"])?;
    let state: std::sync::RwLockReadGuard<'_, StoreState> = m.store().read();
    let out: Vec<Value> = T::all(&state).values().filter(|o| matches(&f, *o)).map(|o| o.render()).collect();
    Ok(Json(Value::Array(out)))
}

pub async fn inspect<T: Rendered>(State(daemon): State<Arc<Daemon>>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let m = manager(&daemon).await?;
    let state = m.store().read();
    Ok(Json(T::find(&state, &id)?.render()))
}

fn parse(body: &[u8], kind: &str) -> ApiResult<docker::FileObjectSpec> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    docker::parse_file_object_spec(&v).map_err(|e| ApiError::bad_request(format!("{kind}: {e}")))
}

pub async fn create<T: Rendered>(State(daemon): State<Arc<Daemon>>, body: axum::body::Bytes) -> ApiResult<Response> {
    let m = manager(&daemon).await?;
    let spec = parse(&body, T::KIND)?;
    let id = m.control().create_file_object::<T>(spec.name, spec.labels, spec.data.unwrap_or_default()).await?;
    Ok((StatusCode::CREATED, Json(json!({ "ID": id }))).into_response())
}

#[derive(Deserialize)]
pub struct UpdateQuery {
    version: Option<String>,
}

pub async fn update<T: Rendered>(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    Query(q): Query<UpdateQuery>,
    body: axum::body::Bytes,
) -> ApiResult<StatusCode> {
    let m = manager(&daemon).await?;
    let version = super::required_version(q.version.as_deref(), T::KIND)?;
    let spec = parse(&body, T::KIND)?;
    m.control().update_file_object::<T>(&id, version, &spec.name, spec.labels, spec.data).await?;
    Ok(StatusCode::OK)
}

pub async fn remove<T: Rendered>(State(daemon): State<Arc<Daemon>>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let m = manager(&daemon).await?;
    m.control().remove_file_object::<T>(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
