//! Docker's exec API, the way the docker CLI's `docker exec` drives it:
//! `POST /containers/{id}/exec` makes an exec instance, `POST /exec/{id}/start`
//! runs it (on the connection, upgraded, or detached), `GET /exec/{id}/json`
//! tells how it ended.
//!
//! On an upgraded connection the command's output streams to the client as it
//! comes (raw from a terminal with `-t`, in Docker's multiplexed frames
//! without) and the client's bytes go to its stdin (`-i`); a terminal is
//! resized through `/exec/{id}/resize`. Without an upgrade the output comes
//! whole, in frames, when the command ends. The instances themselves, and
//! what running one means, are the daemon's (`daemon::exec`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use shoal_runtime::{attach as wire, ExecOutput, ExecProcess};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{docker, ApiError, ApiResult};
use crate::daemon::exec::{Exec, Run};
use crate::daemon::Daemon;

/// `POST /containers/{id}/exec` `{Cmd, Env, User, WorkingDir, AttachStdout,
/// AttachStderr, AttachStdin, Tty, ConsoleSize}` → `201 {"Id"}`.
pub async fn create(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let v: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let asked = docker::parse_exec_create(&v).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let exec_id = daemon.execs.create(&id, asked.spec, asked.stdout, asked.stderr).await?;
    Ok((StatusCode::CREATED, Json(docker::json(&docker::types::IdResponse { id: exec_id }))).into_response())
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

/// `POST /exec/{id}/start` `{Detach, ConsoleSize}`: detached, runs it in the
/// background (`200`); on an upgraded connection (`101`, as the docker CLI
/// asks) streams its stdio; otherwise answers `200` with its output, in
/// multiplexed frames, once it ends.
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
    let docker::ExecStart { detach, console_size: size } =
        docker::parse_exec_start(&v).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut exec = daemon.execs.begin(&id)?;
    if size.is_some() {
        exec.spec.tty_size = size;
    }
    let upgrade = match upgrade {
        Some(upgrade) if !detach => upgrade,
        _ => {
            // Nobody to talk to: no terminal, no stdin.
            exec.spec.tty = false;
            exec.spec.stdin = false;
            if detach {
                let running = daemon.clone();
                daemon.spawn(async move {
                    if let Err(e) = running.execs.run(&id, &exec).await {
                        tracing::warn!(exec = %id, "exec: {e}");
                    }
                });
                return Ok(StatusCode::OK.into_response());
            }
            let out = daemon.execs.run(&id, &exec).await?;
            return Response::builder()
                .status(StatusCode::OK)
                .header("Content-Type", "application/vnd.docker.multiplexed-stream")
                .body(axum::body::Body::from(frames(&exec, &out)))
                .map_err(|e| ApiError::internal(e.to_string()));
        }
    };
    let process = daemon.execs.spawn(&id, &exec).await?;
    let tty = exec.spec.tty;
    let streaming = daemon.clone();
    daemon.spawn(async move {
        let client = match upgrade.await {
            Ok(upgraded) => hyper_util::rt::TokioIo::new(upgraded),
            Err(e) => {
                tracing::warn!(exec = %id, "exec: the connection was not upgraded: {e}");
                return;
            }
        };
        let (mut client_r, mut client_w) = tokio::io::split(client);
        let mut process = process;
        let streamed = stream(&mut client_r, &mut client_w, &mut process, &exec).await;
        // Recorded before the connection closes: the client asks for it next.
        let (_, failure) = streaming.execs.finish(&id, process).await;
        if let Some(message) = failure {
            let line = format!("{message}\n");
            let bytes = if tty { line.into_bytes() } else { wire::frame(wire::STDERR, line.as_bytes()) };
            let _ = client_w.write_all(&bytes).await;
        }
        if let Err(e) = streamed {
            tracing::debug!(exec = %id, "exec stream ended: {e}");
        }
        let _ = client_w.shutdown().await;
        // Closing with input unread would reset the connection, and the client could lose
        // the end of the output: read what it still sends until it closes (a terminal
        // client sends keys until it has seen the end).
        let drain = async {
            let mut buf = vec![0u8; 8192];
            while matches!(client_r.read(&mut buf).await, Ok(n) if n > 0) {}
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drain).await;
    });
    super::attach::switching_protocols(tty)
}

/// How a stream of the command's output goes to the client.
#[derive(Clone, Copy)]
enum Framing {
    Raw,
    Frame(u8),
    Discard,
}

fn async_file(fd: impl Into<std::os::fd::OwnedFd>) -> tokio::fs::File {
    tokio::fs::File::from_std(std::fs::File::from(fd.into()))
}

/// Copies the command's output to the client (raw from a terminal, else in
/// frames, the streams asked for) and the client's bytes to its terminal or
/// stdin, until its output ends.
async fn stream<R, W>(client_r: &mut R, client_w: &mut W, process: &mut ExecProcess, exec: &Exec) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    let mut input: Option<tokio::fs::File> = None;
    let forward = |source: tokio::fs::File, framing: Framing| {
        let tx = tx.clone();
        async move {
            let mut source = source;
            let mut buf = vec![0u8; 32 * 1024];
            // A terminal's master reads EIO once the command and its children are gone.
            while let Ok(n) = source.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let bytes = match framing {
                    Framing::Raw => buf[..n].to_vec(),
                    Framing::Frame(kind) => wire::frame(kind, &buf[..n]),
                    // Read so that the command never blocks on it, and dropped.
                    Framing::Discard => continue,
                };
                if tx.send(bytes).await.is_err() {
                    break;
                }
            }
        }
    };
    let mut readers = Vec::new();
    if let Some(master) = process.terminal.take() {
        input = Some(async_file(master.try_clone()?));
        readers.push(tokio::spawn(forward(async_file(master), Framing::Raw)));
    } else {
        input = process.stdin.take().map(async_file).or(input);
        if let Some(out) = process.stdout.take() {
            let framing = if exec.stdout { Framing::Frame(wire::STDOUT) } else { Framing::Discard };
            readers.push(tokio::spawn(forward(async_file(out), framing)));
        }
        if let Some(err) = process.stderr.take() {
            let framing = if exec.stderr { Framing::Frame(wire::STDERR) } else { Framing::Discard };
            readers.push(tokio::spawn(forward(async_file(err), framing)));
        }
    }
    drop(tx);
    let output = async {
        while let Some(bytes) = rx.recv().await {
            client_w.write_all(&bytes).await?;
            client_w.flush().await?;
        }
        Ok::<(), std::io::Error>(())
    };
    let from_client = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = client_r.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            if let Some(to) = input.as_mut() {
                if to.write_all(&buf[..n]).await.and(to.flush().await).is_err() {
                    break;
                }
            }
        }
        // The client's end of input closes the command's stdin (not a terminal: it stays).
        if !exec.spec.tty {
            drop(input.take());
        }
        std::future::pending::<()>().await;
    };
    let result = tokio::select! {
        result = output => result,
        () = from_client => Ok(()),
    };
    for reader in readers {
        reader.abort();
    }
    result
}

/// `GET /exec/{id}/json`: whether it runs and how it ended.
pub async fn inspect(State(daemon): State<Arc<Daemon>>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let exec = daemon.execs.get(&id)?;
    let (running, exit_code) = match exec.state {
        Run::Created => (false, None),
        Run::Running => (true, None),
        Run::Exited(code) => (false, Some(code)),
    };
    let asked = docker::ExecCreate { spec: exec.spec, stdout: exec.stdout, stderr: exec.stderr };
    Ok(Json(docker::json(&docker::exec_inspect(&id, &exec.container, &asked, running, exit_code))))
}

/// `POST /exec/{id}/resize?h=ROWS&w=COLUMNS`: resizes its terminal (without
/// one there is nothing to resize).
pub async fn resize(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<super::containers::ResizeQuery>,
) -> ApiResult<StatusCode> {
    // An unknown instance is that, whatever the size asked for.
    daemon.execs.get(&id)?;
    let (rows, cols) = q.size()?;
    daemon.execs.resize(&id, rows, cols)?;
    Ok(StatusCode::OK)
}
