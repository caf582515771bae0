//! Attach streams on upgraded connections: copying between a stream to the container's shim
//! (which the daemon hands over, now or when the container starts: `daemon::containers`) and
//! the client's connection, in the shapes Docker's API uses (raw with a tty, multiplexed
//! frames without), and the `101` answer that hands the connection over.

use shoal_runtime::attach as wire;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Which streams the client asked for.
#[derive(Debug, Clone, Copy)]
pub struct Wanted {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
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
