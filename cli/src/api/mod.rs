//! The daemon's HTTP API on its Unix socket, shaped like the Docker Engine
//! API for everything it covers (paths, JSON, filters, status codes), so the
//! stock `docker` client can drive shoal. shoal-only operations (atomic
//! stacks) live under `/shoal/v1/`.

mod attach;
pub(crate) mod containers;
pub mod docker;
mod exec;
mod filters;
mod images;
mod logs;
mod networks;
mod secrets;
mod services;
mod swarm;
mod system;
mod volumes;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use shoal_manager::control::ControlError;
use shoal_proto::{Config, Secret};

use crate::daemon::containers::ContainerError;
use crate::daemon::Daemon;

pub use filters::Filters;
pub use images::remove_old_uploads;

/// The largest request body the API reads into memory. Image uploads
/// stream to disk and are not bounded by it.
pub const MAX_BODY_BYTES: usize = 2 << 20;
/// The largest stack deploy body: a whole stack, its secrets and configs
/// (500 KiB each at most) included.
pub const MAX_STACK_BODY_BYTES: usize = 16 << 20;

/// The highest Engine API version served (what Docker 28.x speaks).
pub const API_VERSION: &str = "1.51";
/// The lowest Engine API version accepted.
pub const MIN_API_VERSION: &str = "1.24";

/// An API error: a status and Docker's `{"message": …}` body.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "message": self.message }))).into_response()
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        let status = match &e {
            ControlError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            ControlError::NotFound(_) => StatusCode::NOT_FOUND,
            ControlError::Conflict(_) => StatusCode::CONFLICT,
            ControlError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ControlError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<shoal_manager::store::StoreError> for ApiError {
    fn from(e: shoal_manager::store::StoreError) -> Self {
        ControlError::from(e).into()
    }
}

impl From<shoal_runtime::Error> for ApiError {
    fn from(e: shoal_runtime::Error) -> Self {
        use shoal_runtime::Error as E;
        let status = match &e {
            E::NotFound { .. } | E::ImageNotFound { .. } => StatusCode::NOT_FOUND,
            E::Conflict { .. } => StatusCode::CONFLICT,
            E::InvalidArgument { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.report())
    }
}

impl From<ContainerError> for ApiError {
    fn from(e: ContainerError) -> Self {
        let (status, message) = match e {
            ContainerError::Runtime(e) => return e.into(),
            ContainerError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ContainerError::Conflict(m) => (StatusCode::CONFLICT, m),
            ContainerError::InvalidArgument(m) => (StatusCode::BAD_REQUEST, m),
            ContainerError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, m),
        };
        ApiError::new(status, message)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The `version` an update must carry (the object's `Version.Index`).
pub fn required_version(version: Option<&str>, object: &str) -> ApiResult<u64> {
    version
        .ok_or_else(|| ApiError::bad_request(format!("the version parameter is required: read the {object} first")))?
        .parse()
        .map_err(|_| ApiError::bad_request("invalid version parameter: expected an integer"))
}

/// Strips Docker's `/v1.NN` path prefix so one set of routes serves every
/// API version; refuses versions outside what is served.
fn strip_version(mut req: Request) -> Request {
    let path = req.uri().path().to_string();
    if let Some(rest) = path.strip_prefix("/v") {
        if let Some((version, tail)) = rest.split_once('/') {
            if version.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) {
                let new_path = format!("/{tail}");
                let pq = match req.uri().query() {
                    Some(q) => format!("{new_path}?{q}"),
                    None => new_path,
                };
                if let Ok(uri) = pq.parse::<Uri>() {
                    req.extensions_mut().insert(RequestedVersion(version.to_string()));
                    *req.uri_mut() = uri;
                }
            }
        }
    }
    req
}

/// The API version a request's path asked for, if any.
#[derive(Clone, Debug)]
pub struct RequestedVersion(pub String);

fn version_tuple(v: &str) -> (u32, u32) {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

async fn headers(req: Request, next: axum::middleware::Next) -> Response {
    if let Some(RequestedVersion(v)) = req.extensions().get::<RequestedVersion>() {
        let asked = version_tuple(v);
        if asked > version_tuple(API_VERSION) {
            return ApiError::bad_request(format!(
                "client version {v} is too new. Maximum supported API version is {API_VERSION}"
            ))
            .into_response();
        }
        if asked < version_tuple(MIN_API_VERSION) {
            return ApiError::bad_request(format!(
                "client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
            ))
            .into_response();
        }
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert("Server", HeaderValue::from_static(concat!("shoal/", env!("CARGO_PKG_VERSION"), " (linux)")));
    resp
}

/// Says what a too-large request body (refused by the body limit with a
/// bare 413) was over, and what to do.
async fn explain_too_large(req: Request, next: axum::middleware::Next) -> Response {
    let stack = req.uri().path().starts_with("/shoal/v1/stacks/");
    let resp = next.run(req).await;
    if resp.status() != StatusCode::PAYLOAD_TOO_LARGE {
        return resp;
    }
    let (limit, what) =
        if stack { (MAX_STACK_BODY_BYTES, "a stack deploy") } else { (MAX_BODY_BYTES, "an API request") };
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the request body is over the limit of {} MiB for {what}: send less in one request (split a stack, \
             move large data into configs or secrets)",
            limit >> 20
        ),
    )
    .into_response()
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("page not found: {} is not part of the API this daemon serves", uri.path()))
}

/// The API's routes over the daemon.
pub fn router(daemon: Arc<Daemon>) -> axum::Router {
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/swarm", get(swarm::inspect))
        .route("/swarm/init", post(swarm::init))
        .route("/swarm/join", post(swarm::join))
        .route("/nodes", get(swarm::list_nodes))
        .route("/nodes/{id}", get(swarm::inspect_node).delete(swarm::remove_node))
        .route("/nodes/{id}/update", post(swarm::update_node))
        .route("/swarm/leave", post(swarm::leave))
        .route("/swarm/update", post(swarm::update))
        .route("/services", get(services::list))
        .route("/services/create", post(services::create))
        .route("/services/{id}", get(services::inspect).delete(services::remove))
        .route("/services/{id}/update", post(services::update))
        .route("/services/{id}/logs", get(services::logs))
        .route("/tasks", get(services::list_tasks))
        .route("/tasks/{id}", get(services::inspect_task))
        .route("/tasks/{id}/logs", get(services::logs))
        .route(
            "/shoal/v1/stacks/{name}",
            post(services::deploy_stack)
                .delete(services::remove_stack)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_STACK_BODY_BYTES)),
        )
        .route("/secrets", get(secrets::list::<Secret>))
        .route("/secrets/create", post(secrets::create::<Secret>))
        .route("/secrets/{id}", get(secrets::inspect::<Secret>).delete(secrets::remove::<Secret>))
        .route("/secrets/{id}/update", post(secrets::update::<Secret>))
        .route("/configs", get(secrets::list::<Config>))
        .route("/configs/create", post(secrets::create::<Config>))
        .route("/configs/{id}", get(secrets::inspect::<Config>).delete(secrets::remove::<Config>))
        .route("/configs/{id}/update", post(secrets::update::<Config>))
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/{id}", get(networks::inspect).delete(networks::remove))
        .route("/networks/{id}/connect", post(networks::connect))
        .route("/networks/{id}/disconnect", post(networks::disconnect))
        .route("/volumes", get(volumes::list))
        .route("/volumes/create", post(volumes::create))
        .route("/volumes/prune", post(volumes::prune))
        .route("/volumes/{name}", get(volumes::inspect).delete(volumes::remove))
        .route("/images/json", get(images::list))
        .route("/images/create", post(images::create))
        .route("/images/prune", post(images::prune))
        .route("/images/get", get(images::save))
        .route("/images/load", post(images::load))
        .route("/images/{name}/json", get(images::inspect))
        .route("/images/{name}/tag", post(images::tag))
        .route("/images/{name}", axum::routing::delete(images::remove))
        .route("/commit", post(images::commit))
        .route("/containers/json", get(containers::list))
        .route("/containers/create", post(containers::create))
        .route("/containers/{id}/json", get(containers::inspect))
        .route("/containers/{id}/start", post(containers::start))
        .route("/containers/{id}/stop", post(containers::stop))
        .route("/containers/{id}/restart", post(containers::restart))
        .route("/containers/{id}/kill", post(containers::kill))
        .route("/containers/{id}/wait", post(containers::wait))
        .route("/containers/{id}/attach", post(containers::attach))
        .route("/containers/{id}/exec", post(exec::create))
        .route("/exec/{id}/start", post(exec::start))
        .route("/exec/{id}/json", get(exec::inspect))
        .route("/exec/{id}/resize", post(exec::resize))
        .route("/containers/{id}/resize", post(containers::resize))
        .route("/containers/{id}/logs", get(containers::logs))
        .route("/containers/{id}/pause", post(containers::pause))
        .route("/containers/{id}/unpause", post(containers::unpause))
        .route("/containers/{id}", axum::routing::delete(containers::remove))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(explain_too_large))
        .layer(axum::middleware::from_fn(headers))
        .with_state(daemon)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::UnixListener,
    daemon: Arc<Daemon>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::ServiceExt;
    let app = tower::util::MapRequestLayer::new(strip_version).layer(router(daemon));
    axum::serve(listener, app.into_make_service()).with_graceful_shutdown(shutdown).await
}

use tower::Layer;
