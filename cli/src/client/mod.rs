//! The CLI's client for the daemon's HTTP API over its Unix socket.

use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// An error answer from the daemon (Docker's `{"message": …}`).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

/// A client of one daemon.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    host: String,
}

impl Client {
    /// A client for `host` (`unix:///path/to.sock`).
    pub fn new(host: &str) -> anyhow::Result<Client> {
        let Some(path) = host.strip_prefix("unix://") else {
            anyhow::bail!("unsupported host \"{host}\": use unix:///path/to/shoal.sock");
        };
        Ok(Client { socket: PathBuf::from(path), host: host.to_string() })
    }

    async fn request(&self, method: Method, path: &str, body: Option<(Bytes, &str)>) -> anyhow::Result<Bytes> {
        let resp = self.send(method, path, body).await?;
        Ok(resp.into_body().collect().await?.to_bytes())
    }

    /// A connection to the daemon's socket.
    async fn connect(&self) -> anyhow::Result<tokio::net::UnixStream> {
        tokio::net::UnixStream::connect(&self.socket).await.map_err(|e| {
            anyhow::anyhow!(
                "Cannot connect to the shoal daemon at {} ({e}). Is the daemon running? Start it with \"shoal daemon\".",
                self.host
            )
        })
    }

    /// Sends a request; a non-success answer becomes an [`ApiError`].
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &str)>,
    ) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        let stream = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder().method(method).uri(path).header("Host", "shoal");
        let payload = match body {
            Some((b, ct)) => {
                req = req.header("Content-Type", ct);
                b
            }
            None => Bytes::new(),
        };
        let resp = sender.send_request(req.body(Full::new(payload))?).await?;
        let status = resp.status();
        // 304: "already in that state" (start, stop), not an error.
        if !status.is_success() && status != StatusCode::NOT_MODIFIED {
            let bytes = resp.into_body().collect().await?.to_bytes();
            let message = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(String::from))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
            return Err(ApiError { status, message }.into());
        }
        Ok(resp)
    }

    /// POSTs `path` asking for the connection to be upgraded (Docker's hijacked attach
    /// stream: `Upgrade: tcp`) and returns the raw two-way stream.
    pub async fn upgrade(&self, path: &str) -> anyhow::Result<TokioIo<hyper::upgrade::Upgraded>> {
        let stream = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("Host", "shoal")
            .header("Connection", "Upgrade")
            .header("Upgrade", "tcp")
            .body(Full::new(Bytes::new()))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        if status != StatusCode::SWITCHING_PROTOCOLS {
            let bytes = resp.into_body().collect().await?.to_bytes();
            let message = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(String::from))
                .unwrap_or_else(|| format!("the daemon answered {status} instead of switching protocols"));
            return Err(ApiError { status, message }.into());
        }
        Ok(TokioIo::new(hyper::upgrade::on(resp).await?))
    }

    /// GETs `path` and hands each chunk of the body to `on_chunk` as it
    /// arrives (for streams such as `logs --follow`).
    pub async fn get_stream(&self, path: &str, mut on_chunk: impl FnMut(&[u8])) -> anyhow::Result<()> {
        let mut body = self.send(Method::GET, path, None).await?.into_body();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                on_chunk(&data);
            }
        }
        Ok(())
    }

    fn json(bytes: &Bytes) -> anyhow::Result<Value> {
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(bytes)?)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        Self::json(&self.request(Method::GET, path, None).await?)
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let b = Bytes::from(serde_json::to_vec(body)?);
        Self::json(&self.request(Method::POST, path, Some((b, "application/json"))).await?)
    }

    pub async fn post_raw(&self, path: &str, body: Vec<u8>, content_type: &str) -> anyhow::Result<Value> {
        Self::json(&self.request(Method::POST, path, Some((Bytes::from(body), content_type))).await?)
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        Self::json(&self.request(Method::DELETE, path, None).await?)
    }
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A `filters` query value: `{"key": {"value": true}, …}`.
pub fn filters(pairs: &[(&str, &str)]) -> String {
    let mut m = serde_json::Map::new();
    for (k, v) in pairs {
        let entry = m.entry(k.to_string()).or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(o) = entry {
            o.insert(v.to_string(), Value::Bool(true));
        }
    }
    encode(&Value::Object(m).to_string())
}
