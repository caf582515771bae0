//! The manager port's front door: it accepts TCP connections, does their
//! TLS handshakes, and hands the established ones to the gRPC server. Anyone
//! who can reach the port can connect (a joiner has no certificate yet), so
//! nothing a connection does may hold a manager's resources for long:
//!
//! - at most [`Limits::per_address`] connections from one client address
//!   (an IPv4 address, or an IPv6 /64); more are closed at once, and the
//!   first refusal of a flood is logged;
//! - at most [`Limits::handshakes`] TLS handshakes under way in all;
//! - a handshake must finish within [`Limits::handshake_timeout`];
//! - a connection that carries no request for [`Limits::idle_timeout`] is
//!   closed (an agent's session stream or raft's traffic keeps a live one
//!   busy; a client that goes quiet reconnects when it needs to).
//!
//! Requests are counted per connection by [`CountStreams`], a layer of the
//! gRPC server that finds its connection by the peer's address.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::server::{Connected, TcpConnectInfo, TlsConnectInfo};

/// How much a connection to the manager port may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub per_address: usize,
    pub handshakes: usize,
}

impl Default for Limits {
    /// 10 s to handshake, 60 s idle, 128 connections per address, 1024
    /// handshakes at once.
    fn default() -> Limits {
        Limits {
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            per_address: 128,
            handshakes: 1024,
        }
    }
}

/// An established connection, as the gRPC server gets it.
pub type Established = tokio_rustls::server::TlsStream<Conn>;

/// What one connection is doing, shared by its stream and its requests.
#[derive(Debug)]
struct Activity {
    /// Requests under way (a stream's response body not yet finished).
    open: AtomicUsize,
    /// When the last request ended (or the connection was accepted).
    idle_since: Mutex<Instant>,
}

impl Activity {
    fn idle_since(&self) -> MutexGuard<'_, Instant> {
        self.idle_since.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long the connection has carried no request; `None` while one is
    /// under way.
    fn idle_for(&self) -> Option<Duration> {
        let since = *self.idle_since();
        (self.open.load(Ordering::SeqCst) == 0).then(|| since.elapsed())
    }
}

/// The open connections by peer address, so that a request finds its own.
#[derive(Debug, Clone, Default)]
pub struct Registry(Arc<Mutex<HashMap<SocketAddr, Arc<Activity>>>>);

impl Registry {
    fn map(&self) -> MutexGuard<'_, HashMap<SocketAddr, Arc<Activity>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, peer: &SocketAddr) -> Option<Arc<Activity>> {
        self.map().get(peer).cloned()
    }
}

/// The key a client's connections are counted under: its IPv4 address, or
/// its IPv6 /64 (one host gets a whole /64).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(octets.into())
            }
        },
        v4 => v4,
    }
}

#[derive(Debug, Default)]
struct Counts {
    by_client: HashMap<IpAddr, usize>,
    /// Clients refused since they last had no connection: logged once.
    refused: HashSet<IpAddr>,
    handshaking: usize,
}

type SharedCounts = Arc<Mutex<Counts>>;

fn lock(counts: &SharedCounts) -> MutexGuard<'_, Counts> {
    counts.lock().unwrap_or_else(|p| p.into_inner())
}

/// A connection's place in the counts and the registry, given back when the
/// connection closes.
#[derive(Debug)]
struct Slot {
    client: IpAddr,
    peer: SocketAddr,
    counts: SharedCounts,
    registry: Registry,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry.map().remove(&self.peer);
        let mut counts = lock(&self.counts);
        let left = counts.by_client.get_mut(&self.client).map(|n| {
            *n = n.saturating_sub(1);
            *n
        });
        if left == Some(0) {
            counts.by_client.remove(&self.client);
            counts.refused.remove(&self.client);
        }
    }
}

/// A handshake under way, counted until it ends either way.
struct Handshaking(SharedCounts);

impl Drop for Handshaking {
    fn drop(&mut self) {
        let mut counts = lock(&self.0);
        counts.handshaking = counts.handshaking.saturating_sub(1);
    }
}

/// A TCP connection to the manager port: closed (reads end) once it has
/// carried no request for the idle timeout.
#[derive(Debug)]
pub struct Conn {
    tcp: TcpStream,
    local: Option<SocketAddr>,
    peer: SocketAddr,
    activity: Arc<Activity>,
    idle_timeout: Duration,
    timer: Pin<Box<Sleep>>,
    _slot: Slot,
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        TcpConnectInfo { local_addr: self.local, remote_addr: Some(self.peer) }
    }
}

impl AsyncRead for Conn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        // The connection's reader is always waiting for the next frame, so
        // the idle timer is polled here, with it.
        while self.timer.as_mut().poll(cx).is_ready() {
            let next = match self.activity.idle_for() {
                Some(idle) if idle >= self.idle_timeout => {
                    tracing::debug!(peer = %self.peer, "closing a connection that carried no request for {idle:?}");
                    // The end of the stream: the server closes the connection.
                    return Poll::Ready(Ok(()));
                }
                Some(idle) => self.idle_timeout - idle,
                None => self.idle_timeout,
            };
            self.timer.as_mut().reset(Instant::now() + next);
        }
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

/// Accepts connections on `listener` until `stop`, within `limits`, and
/// sends the established ones (TLS under `tls`) to the returned stream;
/// the returned layer counts their requests. Its tasks are tracked by
/// `tasks`.
pub fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    limits: Limits,
    stop: CancellationToken,
    tasks: &TaskTracker,
) -> (tokio_stream::wrappers::ReceiverStream<io::Result<Established>>, CountStreams) {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let registry = Registry::default();
    let counts = SharedCounts::default();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let handshakes = tasks.clone();
    let accepted = registry.clone();
    tasks.spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = stop.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors, say: let some close.
                        tracing::warn!(error = %e, "accepting a connection on the manager port");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let client = client_key(peer.ip());
            {
                let mut c = lock(&counts);
                let open = c.by_client.get(&client).copied().unwrap_or(0);
                if open >= limits.per_address || c.handshaking >= limits.handshakes {
                    if c.refused.insert(client) {
                        tracing::warn!(
                            client = %client,
                            open,
                            handshaking = c.handshaking,
                            "refusing connections to the manager port from {client}: it has {open} open, the \
                             limit is {} per address ({} handshakes at once in all); logged once until its \
                             connections close",
                            limits.per_address,
                            limits.handshakes
                        );
                    }
                    continue;
                }
                *c.by_client.entry(client).or_default() += 1;
                c.handshaking += 1;
            }
            let handshaking = Handshaking(counts.clone());
            // Raft messages are small and latency-bound: no Nagle delay on replies.
            let _ = tcp.set_nodelay(true);
            let activity = Arc::new(Activity { open: AtomicUsize::new(0), idle_since: Mutex::new(Instant::now()) });
            accepted.map().insert(peer, activity.clone());
            let conn = Conn {
                local: tcp.local_addr().ok(),
                tcp,
                peer,
                activity,
                idle_timeout: limits.idle_timeout,
                timer: Box::pin(tokio::time::sleep(limits.idle_timeout)),
                _slot: Slot { client, peer, counts: counts.clone(), registry: accepted.clone() },
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let stop = stop.clone();
            handshakes.spawn(async move {
                let done = tokio::select! {
                    _ = stop.cancelled() => return,
                    done = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(conn)) => done,
                };
                drop(handshaking);
                match done {
                    Ok(Ok(established)) => {
                        let _ = tx.send(Ok(established)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(peer = %peer, error = %e, "a TLS handshake failed"),
                    Err(_) => tracing::debug!(
                        peer = %peer,
                        "closing a connection that did not finish its TLS handshake within {:?}",
                        limits.handshake_timeout
                    ),
                }
            });
        }
    });
    (tokio_stream::wrappers::ReceiverStream::new(rx), CountStreams { registry })
}

/// A layer of the gRPC server that counts each connection's requests under
/// way (a request lasts until its response body ends).
#[derive(Debug, Clone)]
pub struct CountStreams {
    registry: Registry,
}

impl<S> tower::Layer<S> for CountStreams {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted { inner, registry: self.registry.clone() }
    }
}

/// The service [`CountStreams`] makes.
#[derive(Debug, Clone)]
pub struct Counted<S> {
    inner: S,
    registry: Registry,
}

/// One request under way on a connection.
struct Open(Arc<Activity>);

impl Open {
    fn new(activity: Arc<Activity>) -> Open {
        activity.open.fetch_add(1, Ordering::SeqCst);
        Open(activity)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        // The idle clock starts when the last request ends.
        let mut since = self.0.idle_since();
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            *since = Instant::now();
        }
    }
}

impl<S, B> tower::Service<http::Request<B>> for Counted<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let peer = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|i| i.get_ref().remote_addr())
            .and_then(|peer| self.registry.get(&peer));
        let open = peer.map(Open::new);
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(match open {
                Some(open) => response.map(|body| tonic::body::Body::new(CountedBody { body, _open: open })),
                None => response,
            })
        })
    }
}

/// A response body that keeps its request counted until it ends.
struct CountedBody {
    body: tonic::body::Body,
    _open: Open,
}

impl http_body::Body for CountedBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, tonic::Status>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::ca::RootCa;
    use shoal_proto::NodeRole;

    struct Port {
        addr: SocketAddr,
        established: tokio_stream::wrappers::ReceiverStream<io::Result<Established>>,
        layer: CountStreams,
        stop: CancellationToken,
    }

    async fn port(limits: Limits) -> Port {
        let ca = RootCa::generate().expect("a CA");
        let tls = ca.issue_own("m1", NodeRole::Manager, "c1", Duration::from_secs(3600)).expect("a certificate");
        let config = Arc::new(crate::ca::tls::server_config(&tls).expect("a TLS configuration"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("an address");
        let stop = CancellationToken::new();
        let (established, layer) = serve(listener, config, limits, stop.clone(), &TaskTracker::new());
        Port { addr, established, layer, stop }
    }

    /// A raw TCP connection from `from` (a loopback address) that sends nothing.
    async fn raw(from: &str, to: SocketAddr) -> std::net::TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket.bind(format!("{from}:0").parse().expect("an address")).expect("bind");
        let tcp = socket.connect(to).await.expect("connect");
        let tcp = tcp.into_std().expect("a std socket");
        tcp.set_nonblocking(false).expect("blocking");
        tcp
    }

    /// Whether the server closed `s` (a read ends or fails within 5 s).
    fn closed(s: &mut std::net::TcpStream) -> bool {
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut byte = [0u8; 1];
        match s.read(&mut byte) {
            Ok(0) => true,
            Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    }

    /// Whether `s` is still open: nothing to read, no end.
    fn open(s: &std::net::TcpStream) -> bool {
        s.set_nonblocking(true).expect("nonblocking");
        let mut byte = [0u8; 1];
        let open = matches!((&*s).read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        s.set_nonblocking(false).expect("blocking");
        open
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_beyond_the_per_address_limit_are_closed_at_once() {
        let p = port(Limits { per_address: 3, handshake_timeout: Duration::from_secs(60), ..Limits::default() }).await;
        let mut flood = Vec::new();
        for _ in 0..6 {
            flood.push(raw("127.0.0.2", p.addr).await);
        }
        let other = raw("127.0.0.3", p.addr).await;
        let verdict = tokio::task::spawn_blocking(move || {
            // Give the acceptor the time to see them all.
            std::thread::sleep(Duration::from_millis(300));
            let first_open: Vec<bool> = flood[..3].iter().map(open).collect();
            let rest_closed: Vec<bool> = flood[3..].iter_mut().map(closed).collect();
            (first_open, rest_closed, open(&other))
        })
        .await
        .expect("the client thread");
        assert_eq!(verdict, (vec![true; 3], vec![true; 3], true));
        p.stop.cancel();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_that_never_handshakes_is_closed_after_the_timeout() {
        let p = port(Limits { handshake_timeout: Duration::from_millis(200), ..Limits::default() }).await;
        let mut conns = Vec::new();
        for _ in 0..5 {
            conns.push(raw("127.0.0.1", p.addr).await);
        }
        let all_closed =
            tokio::task::spawn_blocking(move || conns.iter_mut().all(closed)).await.expect("the client thread");
        assert!(all_closed);
        p.stop.cancel();
    }

    /// After its handshake, a connection with no request under way is closed
    /// after the idle timeout; one with a request under way is not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_connection_is_closed_but_not_one_with_a_request_under_way() {
        let mut p = port(Limits { idle_timeout: Duration::from_millis(300), ..Limits::default() }).await;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // The test trusts any server: what it checks is the connection's life.
        #[derive(Debug)]
        struct AnyServer(Arc<rustls::crypto::CryptoProvider>);
        impl rustls::client::danger::ServerCertVerifier for AnyServer {
            fn verify_server_cert(
                &self,
                _: &rustls::pki_types::CertificateDer<'_>,
                _: &[rustls::pki_types::CertificateDer<'_>],
                _: &rustls::pki_types::ServerName<'_>,
                _: &[u8],
                _: rustls::pki_types::UnixTime,
            ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            fn verify_tls12_signature(
                &self,
                m: &[u8],
                c: &rustls::pki_types::CertificateDer<'_>,
                d: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
                rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
            }
            fn verify_tls13_signature(
                &self,
                m: &[u8],
                c: &rustls::pki_types::CertificateDer<'_>,
                d: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
                rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
            }
            fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
                self.0.signature_verification_algorithms.supported_schemes()
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = rustls::pki_types::ServerName::try_from("swarm-manager").expect("a name");
        let connect = || async {
            let tcp = TcpStream::connect(p.addr).await.expect("connect");
            let local = tcp.local_addr().expect("an address");
            (connector.connect(name.clone(), tcp).await.expect("a handshake"), local)
        };
        use tokio::io::AsyncReadExt;
        use tokio_stream::StreamExt;
        // The server's side reads as the gRPC server would, and closes the
        // connection when its reads end.
        let serve = |mut established: Established| {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while matches!(established.read(&mut buf).await, Ok(n) if n > 0) {}
            })
        };

        let (mut idle, _) = connect().await;
        serve(p.established.next().await.expect("established").expect("a connection"));
        let mut byte = [0u8; 1];
        let ended = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut byte)).await;
        assert!(matches!(ended, Ok(Ok(0)) | Ok(Err(_))), "the idle connection stayed open: {ended:?}");

        let (mut busy, local) = connect().await;
        serve(p.established.next().await.expect("established").expect("a connection"));
        let request = Open::new(p.layer.registry.get(&local).expect("the connection is registered"));
        let waited = tokio::time::timeout(Duration::from_secs(1), busy.read(&mut byte)).await;
        assert!(waited.is_err(), "a connection with a request under way was closed: {waited:?}");
        drop(request);
        let ended = tokio::time::timeout(Duration::from_secs(5), busy.read(&mut byte)).await;
        assert!(matches!(ended, Ok(Ok(0)) | Ok(Err(_))), "the connection stayed open once idle: {ended:?}");
        p.stop.cancel();
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("an address");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("an address");
        assert_eq!(client_key(a), client_key(b));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("an address");
        assert_eq!(client_key(mapped), "10.0.0.1".parse::<IpAddr>().expect("an address"));
    }
}
