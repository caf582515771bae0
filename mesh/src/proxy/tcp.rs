//! A published TCP port: its listener, and each connection taken to a backend.

use std::{
    io,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    sync::Arc,
    time::Duration,
};

use nix::sys::socket::{setsockopt, sockopt::IpBindAddressNoPort};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

use super::{
    balance::{choose, Lease},
    port::Port,
    proxy_protocol,
    relay::{relay, write_all},
    Shared,
};

/// Connections the kernel completes before the proxy accepts them (it lowers this to its
/// `net.core.somaxconn`).
const BACKLOG: u32 = 4096;
/// The first pause after an accept error that is about the node (no file descriptor, no
/// memory), doubled after each until [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Listens on `port` on every IPv4 address of the node. `SO_REUSEADDR` lets a restarted daemon
/// listen again while its old connections linger in `TIME_WAIT`.
pub(super) fn listen(port: u16) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))?;
    socket.listen(BACKLOG)
}

/// Accepts connections until `stop` (the port's end or the proxy's); each connection is served
/// by a task of its own that outlives the listener, ending only with the proxy.
pub(super) async fn accept(listener: TcpListener, port: Arc<Port>, shared: Arc<Shared>, stop: CancellationToken) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (client, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if about_one_connection(&error) => {
                tracing::debug!(port = port.port, %error, "accepting a connection failed");
                continue;
            }
            Err(error) => {
                if port.warnings.allow() {
                    tracing::warn!(port = port.port, %error, "routing mesh: cannot accept connections on port {}/tcp, retrying", port.port);
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = FIRST_BACKOFF;
        if port.backends().is_empty() {
            // No ready task: closed at once, so the client learns it now rather than hangs.
            tracing::debug!(port = port.port, %peer, "no backend: connection closed");
            continue;
        }
        let (port, shared) = (port.clone(), shared.clone());
        tokio::spawn(async move {
            let stop = shared.stop.clone();
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = serve(client, peer, port, shared) => {}
            }
        });
    }
}

/// An accept error that concerns only the connection it would have returned (the client gave
/// up, a firewall refused it): the next accept may well succeed.
fn about_one_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted
    ) || matches!(error.raw_os_error(), Some(libc::EPROTO | libc::EPERM | libc::ENETDOWN | libc::EHOSTUNREACH))
}

/// Takes one client's connection to a backend and copies its bytes until both ends are done.
async fn serve(client: TcpStream, peer: SocketAddr, port: Arc<Port>, shared: Arc<Shared>) {
    let _open = port.opened();
    let header = if port.proxy_protocol() {
        match (peer, client.local_addr()) {
            (SocketAddr::V4(peer), Ok(SocketAddr::V4(local))) => Some(proxy_protocol::header(peer, local)),
            (_, local) => {
                // An IPv4 listener has IPv4 ends; a header with wrong addresses is worse than none.
                tracing::debug!(port = port.port, %peer, ?local, "no IPv4 addresses for the PROXY header: connection closed");
                return;
            }
        }
    } else {
        None
    };
    let Some((backend, lease)) = connect_any(&port, &shared, header.as_ref().map(|h| &h[..]), peer).await else {
        return;
    };
    if let Err(error) = client.set_nodelay(true) {
        tracing::debug!(port = port.port, %peer, %error, "client connection is gone");
        return;
    }
    match relay(client, backend).await {
        Ok((up, down)) => tracing::debug!(port = port.port, %peer, backend = %lease.addr, up, down, "connection ended"),
        Err(error) => tracing::debug!(port = port.port, %peer, backend = %lease.addr, %error, "connection cut"),
    }
}

/// Connects to a backend of `port`, trying another one after each that fails (refused, reset,
/// or silent for the connect timeout) until one answers or every backend listed has failed.
/// The client notices nothing but the delay: none of its bytes is read before a backend is
/// connected.
async fn connect_any(
    port: &Port,
    shared: &Shared,
    header: Option<&[u8]>,
    peer: SocketAddr,
) -> Option<(TcpStream, Lease)> {
    let mut tried = Vec::new();
    let mut last_error = None;
    // The list is read again before each attempt: a backend the table removed meanwhile is
    // not tried.
    while let Some(lease) = choose(&port.backends(), &tried) {
        tried.push(lease.addr);
        let attempt = connect(lease.addr, shared.config.source, header);
        let error = match tokio::time::timeout(shared.config.connect_timeout, attempt).await {
            Ok(Ok(stream)) => {
                lease.succeeded();
                return Some((stream, lease));
            }
            Ok(Err(error)) => error,
            Err(_) => {
                io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {:?}", shared.config.connect_timeout))
            }
        };
        if lease.failed() {
            tracing::warn!(port = port.port, backend = %lease.addr, %error, "routing mesh: backend of port {}/tcp does not take connections; trying the others first", port.port);
        } else {
            tracing::debug!(port = port.port, backend = %lease.addr, %error, "connecting to a backend failed");
        }
        last_error = Some(error);
    }
    if let Some(error) = last_error {
        if port.warnings.allow() {
            tracing::warn!(port = port.port, %peer, tried = tried.len(), last_error = %error, "routing mesh: no backend of port {}/tcp takes connections: client connection closed", port.port);
        }
    }
    None
}

/// Opens a connection to `backend` from `source` (any local address when None) and sends the
/// PROXY `header` first when there is one.
async fn connect(backend: SocketAddrV4, source: Option<Ipv4Addr>, header: Option<&[u8]>) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(source) = source {
        // The local port is then chosen at connect, for the whole address quadruple: one source
        // address serves many more connections than its ~28k ephemeral ports.
        setsockopt(&socket, IpBindAddressNoPort, &true)?;
        socket.bind(SocketAddr::from((source, 0)))?;
    }
    let stream = socket.connect(backend.into()).await?;
    stream.set_nodelay(true)?;
    if let Some(header) = header {
        write_all(&stream, header).await?;
    }
    Ok(stream)
}
