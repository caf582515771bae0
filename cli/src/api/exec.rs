//! Docker's exec API, the way the docker CLI's `docker exec` drives it:
//! `POST /containers/{id}/exec` makes an exec instance, `POST /exec/{id}/start`
//! runs it (on the connection, upgraded, or detached), `GET /exec/{id}/json`
//! tells how it ended.
//!
//! The runtime runs an exec'd command to its end and hands back its output
//! whole, so the output reaches the client when the command ends, in
//! Docker's multiplexed frames. A terminal and stdin (`-i`, `-t`) are not
//! supported yet: they are refused when the instance is made, with what to
//! do instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use shoal_runtime::{attach as wire, ContainerState, ExecOutput, ExecSpec};
use tokio::io::AsyncWriteExt;

use super::containers::{blocking, string, strings};
use super::{ApiError, ApiResult};
use crate::daemon::Daemon;

/// How many exec instances are remembered; the oldest ended ones go first.
const KEPT: usize = 256;

/// The daemon's exec instances, by id.
#[derive(Default)]
pub struct Execs(Mutex<HashMap<String, Exec>>);

#[derive(Clone)]
struct Exec {
    container: String,
    spec: ExecSpec,
    stdout: bool,
    stderr: bool,
    /// Made at (for forgetting the oldest first).
    seq: u64,
    state: Run,
}

#[derive(Clone, Copy, PartialEq)]
enum Run {
    Created,
    Running,
    Exited(i32),
}

impl Execs {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Exec>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, id: String, exec: Exec) {
        let mut execs = self.lock();
        while execs.len() >= KEPT {
            let oldest = execs
                .iter()
                .filter(|(_, e)| e.state != Run::Running)
                .min_by_key(|(_, e)| e.seq)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(id) => execs.remove(&id),
                None => break,
            };
        }
        execs.insert(id, exec);
    }

    fn get(&self, id: &str) -> ApiResult<Exec> {
        self.lock().get(id).cloned().ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))
    }

    fn set(&self, id: &str, state: Run) {
        if let Some(e) = self.lock().get_mut(id) {
            e.state = state;
        }
    }

    /// Marks `id` running unless it ran already (an instance runs once).
    fn begin(&self, id: &str) -> ApiResult<Exec> {
        let mut execs = self.lock();
        let exec = execs.get_mut(id).ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))?;
        if exec.state != Run::Created {
            return Err(ApiError::new(StatusCode::CONFLICT, format!("exec instance {id} has already been started")));
        }
        exec.state = Run::Running;
        Ok(exec.clone())
    }
}

fn bool_field(v: &Value, field: &str) -> ApiResult<bool> {
    match v {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(*b),
        other => Err(ApiError::bad_request(format!("{field} must be true or false, not {other}"))),
    }
}

/// `POST /containers/{id}/exec` `{Cmd, Env, User, WorkingDir, AttachStdout,
/// AttachStderr, AttachStdin, Tty}` → `201 {"Id"}`.
pub async fn create(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let v: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let cmd = strings(&v["Cmd"], "Cmd")?
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::bad_request("No exec command specified: give the command to run"))?;
    if bool_field(&v["Tty"], "Tty")? || bool_field(&v["AttachStdin"], "AttachStdin")? {
        return Err(ApiError::bad_request(
            "exec with a terminal or stdin (-i, -t) is not supported yet: run the command without -i and -t",
        ));
    }
    let spec = ExecSpec {
        cmd,
        env: strings(&v["Env"], "Env")?.unwrap_or_default(),
        user: string(&v["User"], "User")?,
        workdir: string(&v["WorkingDir"], "WorkingDir")?,
        ..Default::default()
    };
    let c = blocking(&daemon.runtime, move |rt| rt.container(&id)).await?;
    if c.state != ContainerState::Running {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("container {} is not running: start it first", c.name),
        ));
    }
    if c.paused {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("container {} is paused: unpause it first", c.name)));
    }
    let exec_id: String = (0..4).map(|_| format!("{:016x}", rand::random::<u64>())).collect();
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let exec = Exec {
        container: c.id,
        spec,
        stdout: bool_field(&v["AttachStdout"], "AttachStdout")?,
        stderr: bool_field(&v["AttachStderr"], "AttachStderr")?,
        seq: SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        state: Run::Created,
    };
    daemon.execs.insert(exec_id.clone(), exec);
    Ok((StatusCode::CREATED, Json(json!({ "Id": exec_id }))).into_response())
}

/// Runs the instance to its end and records its exit code.
async fn run(daemon: &Arc<Daemon>, id: &str, exec: &Exec) -> ApiResult<ExecOutput> {
    let (container, spec) = (exec.container.clone(), exec.spec.clone());
    let out = blocking(&daemon.runtime, move |rt| rt.exec(&container, &spec)).await;
    daemon.execs.set(id, Run::Exited(out.as_ref().map(|o| o.exit_code).unwrap_or(126)));
    out
}

/// The output in Docker's multiplexed frames, the streams asked for.
fn frames(exec: &Exec, out: &ExecOutput) -> Vec<u8> {
    let mut buf = Vec::new();
    if exec.stdout && !out.stdout.is_empty() {
        buf.extend_from_slice(&wire::frame(wire::STDOUT, &out.stdout));
    }
    if exec.stderr && !out.stderr.is_empty() {
        buf.extend_from_slice(&wire::frame(wire::STDERR, &out.stderr));
    }
    buf
}

/// `POST /exec/{id}/start` `{Detach}`: detached, runs it in the background
/// (`200`); otherwise upgrades the connection (`101`, as the docker CLI
/// asks) or answers `200` with the output in multiplexed frames.
pub async fn start(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    mut req: axum::extract::Request,
) -> ApiResult<Response> {
    let upgrade_asked = req.headers().get(axum::http::header::UPGRADE).is_some();
    let upgrade = upgrade_asked.then(|| hyper::upgrade::on(&mut req));
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the request: {e}")))?;
    let v: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?
    };
    if bool_field(&v["Tty"], "Tty")? {
        return Err(ApiError::bad_request("exec with a terminal (-t) is not supported yet: run it without -t"));
    }
    let exec = daemon.execs.begin(&id)?;
    if bool_field(&v["Detach"], "Detach")? {
        tokio::spawn(async move {
            if let Err(e) = run(&daemon, &id, &exec).await {
                tracing::warn!(exec = %id, "exec: {}", e.message);
            }
        });
        return Ok(StatusCode::OK.into_response());
    }
    let Some(upgrade) = upgrade else {
        let out = run(&daemon, &id, &exec).await?;
        return Response::builder()
            .status(StatusCode::OK)
            .header("Content-Type", "application/vnd.docker.multiplexed-stream")
            .body(axum::body::Body::from(frames(&exec, &out)))
            .map_err(|e| ApiError::internal(e.to_string()));
    };
    tokio::spawn(async move {
        let out = run(&daemon, &id, &exec).await;
        let mut client = match upgrade.await {
            Ok(upgraded) => hyper_util::rt::TokioIo::new(upgraded),
            Err(e) => {
                tracing::warn!(exec = %id, "exec: the connection was not upgraded: {e}");
                return;
            }
        };
        let bytes = match out {
            Ok(out) => frames(&exec, &out),
            Err(e) => wire::frame(wire::STDERR, format!("{}\n", e.message).as_bytes()),
        };
        let _ = client.write_all(&bytes).await;
        let _ = client.shutdown().await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("Content-Type", "application/vnd.docker.multiplexed-stream")
        .header("Connection", "Upgrade")
        .header("Upgrade", "tcp")
        .body(axum::body::Body::empty())
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// `GET /exec/{id}/json`: whether it runs and how it ended.
pub async fn inspect(State(daemon): State<Arc<Daemon>>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let exec = daemon.execs.get(&id)?;
    let (running, exit_code) = match exec.state {
        Run::Created => (false, Value::Null),
        Run::Running => (true, Value::Null),
        Run::Exited(code) => (false, json!(code)),
    };
    let (entrypoint, arguments) = exec.spec.cmd.split_first().map(|(e, a)| (e.clone(), a.to_vec())).unwrap_or_default();
    Ok(Json(json!({
        "ID": id,
        "Running": running,
        "ExitCode": exit_code,
        "ProcessConfig": {
            "tty": false,
            "entrypoint": entrypoint,
            "arguments": arguments,
            "privileged": false,
            "user": exec.spec.user.clone().unwrap_or_default(),
        },
        "OpenStdin": false,
        "OpenStderr": exec.stderr,
        "OpenStdout": exec.stdout,
        "CanRemove": false,
        "ContainerID": exec.container,
        "DetachKeys": "",
        "Pid": 0,
    })))
}

/// `POST /exec/{id}/resize`: without a terminal there is nothing to resize.
pub async fn resize(State(daemon): State<Arc<Daemon>>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    daemon.execs.get(&id)?;
    Ok(StatusCode::OK)
}
