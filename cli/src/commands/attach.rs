//! The client's side of an attached container (`run -i/-t`, `start -a`,
//! `attach`): the user's stdin to the container, its output to the user's
//! stdout and stderr, and, with a tty, raw mode and window sizes.

use std::io::{Read, Write};

use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::terminal;
use crate::client::Client;

/// Runs the session on the upgraded `stream` until the container's output
/// ends. `resize` is the API path that takes the terminal's size
/// (`/containers/{id}/resize` or `/exec/{id}/resize`).
pub async fn session(
    client: &Client,
    resize: &str,
    stream: TokioIo<hyper::upgrade::Upgraded>,
    tty: bool,
    interactive: bool,
) -> anyhow::Result<()> {
    let _raw = if tty && interactive { terminal::RawMode::enter() } else { None };
    let (mut from_container, mut to_container) = tokio::io::split(stream);
    let input = async {
        if !interactive {
            return std::future::pending::<anyhow::Result<()>>().await;
        }
        // A plain thread: a blocking read of stdin cannot be cancelled, and
        // must not hold up the end of the program.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
        std::thread::Builder::new().name("stdin".into()).spawn(move || {
            let mut buf = [0u8; 8192];
            let mut stdin = std::io::stdin().lock();
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.blocking_send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        })?;
        while let Some(data) = rx.recv().await {
            to_container.write_all(&data).await?;
        }
        // Half-close: the container's stdin ends; its output goes on.
        to_container.shutdown().await?;
        std::future::pending().await
    };
    let resizes = async {
        if !tty {
            return std::future::pending::<anyhow::Result<()>>().await;
        }
        let mut changes = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?;
        loop {
            if let Some((rows, cols)) = terminal::size() {
                // The container may be gone already; the output says so.
                let _ = client.post(&format!("{resize}?h={rows}&w={cols}"), &Value::Null).await;
            }
            if changes.recv().await.is_none() {
                return std::future::pending().await;
            }
        }
    };
    let output = async {
        let mut buf = vec![0u8; 32 * 1024];
        let mut frames = shoal_runtime::attach::FrameReader::default();
        loop {
            let n = from_container.read(&mut buf).await?;
            if n == 0 {
                return Ok::<(), anyhow::Error>(());
            }
            if tty {
                let mut out = std::io::stdout().lock();
                out.write_all(&buf[..n])?;
                out.flush()?;
                continue;
            }
            frames.push(&buf[..n]);
            while let Some((stream, data)) = frames.next_frame()? {
                if stream == shoal_runtime::attach::STDERR {
                    let mut err = std::io::stderr().lock();
                    err.write_all(&data)?;
                    err.flush()?;
                } else {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&data)?;
                    out.flush()?;
                }
            }
        }
    };
    tokio::select! {
        r = output => r,
        r = input => r,
        r = resizes => r,
    }
}
