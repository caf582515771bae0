//! The daemon's side of attaching a client to a container's stdio: getting a stream to the
//! container's shim (now, or when the container starts) and copying between it and the
//! client's upgraded connection, in the shapes Docker's API uses (raw with a tty, multiplexed
//! frames without).

use std::sync::Arc;
use std::time::Duration;

use shoal_runtime::{attach as wire, ContainerInfo, ContainerState};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::daemon::Daemon;

/// Which streams the client asked for.
#[derive(Debug, Clone, Copy)]
pub struct Wanted {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// Registers a client for the container's next start, before the connection is upgraded, so
/// that a start the client sends as soon as it is attached finds it waiting.
pub fn register(daemon: &Daemon, c: &ContainerInfo) -> Option<Waiting> {
    if c.state != ContainerState::Created {
        return None;
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    daemon.pending_attach.lock().ok()?.entry(c.id.clone()).or_default().push(tx);
    Some(rx)
}

/// A registered client's end: receives the stream when the container starts.
pub type Waiting = tokio::sync::oneshot::Receiver<std::os::unix::net::UnixStream>;

/// A stream to the container's shim: from its start if `waiting` (see [`register`]), else at
/// once if it runs; `None` once it has exited. A waiting client also checks now and then
/// whether the container started without it (a start racing with the registration).
pub async fn shim_stream(
    daemon: &Arc<Daemon>,
    c: &ContainerInfo,
    mut waiting: Option<Waiting>,
) -> Option<std::os::unix::net::UnixStream> {
    loop {
        if let Some(rx) = waiting.as_mut() {
            tokio::select! {
                got = rx => return got.ok(),
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
        let rt = daemon.runtime.clone();
        let id = c.id.clone();
        let state = tokio::task::spawn_blocking(move || rt.container(&id)).await.ok()?.ok()?.state;
        match state {
            ContainerState::Exited => return None,
            ContainerState::Running => {
                let rt = daemon.runtime.clone();
                let id = c.id.clone();
                return match tokio::task::spawn_blocking(move || rt.attach_container(&id)).await.ok()? {
                    Ok(stream) => Some(stream),
                    Err(e) => {
                        tracing::warn!(container = %c.name, "attach: {e}");
                        None
                    }
                };
            }
            ContainerState::Created if waiting.is_none() => waiting = register(daemon, c),
            ContainerState::Created => {}
        }
    }
}

/// Copies the container's output to the client and the client's input to the container until
/// the container's output ends or the client goes away.
pub async fn pump<C>(client: C, shim: std::os::unix::net::UnixStream, tty: bool, want: Wanted) -> std::io::Result<()>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    shim.set_nonblocking(true)?;
    let shim = tokio::net::UnixStream::from_std(shim)?;
    let (mut shim_r, mut shim_w) = shim.into_split();
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let to_client = async {
        let mut frames = wire::FrameReader::default();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = shim_r.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            frames.push(&buf[..n]);
            while let Some((kind, data)) = frames.next_frame().map_err(std::io::Error::other)? {
                let wanted = match kind {
                    wire::STDOUT => want.stdout,
                    wire::STDERR => want.stderr,
                    _ => false,
                };
                if !wanted {
                    continue;
                }
                // Docker's shapes: the terminal's bytes as they are; otherwise the very frames
                // the shim sends (the same 8-byte stdcopy headers, stream 1 or 2).
                if tty {
                    client_w.write_all(&data).await?;
                } else {
                    client_w.write_all(&wire::frame(kind, &data)).await?;
                }
            }
            client_w.flush().await?;
        }
        client_w.shutdown().await
    };
    let from_client = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = client_r.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            if want.stdin && shim_w.write_all(&wire::frame(wire::STDIN, &buf[..n])).await.is_err() {
                break;
            }
        }
        if want.stdin {
            let _ = shim_w.write_all(&wire::frame(wire::CLOSE_STDIN, &[])).await;
        }
        // Output goes on until the container's ends: keep our end of the shim open.
        std::future::pending::<()>().await;
    };
    tokio::select! {
        result = to_client => result,
        () = from_client => Ok(()),
    }
}

/// The `101` answer that hands the connection over to a stdio stream: raw
/// with a tty, Docker's multiplexed frames without.
pub fn switching_protocols(tty: bool) -> super::ApiResult<axum::response::Response> {
    let content_type =
        if tty { "application/vnd.docker.raw-stream" } else { "application/vnd.docker.multiplexed-stream" };
    axum::response::Response::builder()
        .status(axum::http::StatusCode::SWITCHING_PROTOCOLS)
        .header("Content-Type", content_type)
        .header("Connection", "Upgrade")
        .header("Upgrade", "tcp")
        .body(axum::body::Body::empty())
        .map_err(|e| super::ApiError::internal(e.to_string()))
}
