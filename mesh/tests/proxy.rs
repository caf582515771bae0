//! The routing mesh's proxy on loopback, as clients and backends see it: each test starts
//! backends on 127.0.0.1, publishes a port on 0.0.0.0 through a `Proxy` and connects to it.
//! Timeouts are generous so that tests end; they assert behaviour, never speed.

use std::{
    future::Future,
    io,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    sync::Arc,
    time::Duration,
};

use shoal_mesh::proxy::{Protocol, Proxy, ProxyConfig, ProxyError, PublishedPort};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpSocket, TcpStream, UdpSocket},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

/// Long enough for anything a test waits for to happen on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future).await.unwrap_or_else(|_| panic!("{what}: no result within {PATIENCE:?}"))
}

/// Waits until `done` holds, checking every few milliseconds.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    within(what, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// A port free on every address now (for the proxy to publish).
fn free_port(protocol: Protocol) -> u16 {
    let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    let port = match protocol {
        Protocol::Tcp => std::net::TcpListener::bind(any).and_then(|l| l.local_addr()),
        Protocol::Udp => std::net::UdpSocket::bind(any).and_then(|s| s.local_addr()),
    };
    port.expect("a free port").port()
}

/// An address on which nothing listens: connections to it are refused.
fn refusing_addr() -> SocketAddrV4 {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    match listener.local_addr().expect("address") {
        SocketAddr::V4(addr) => addr,
        SocketAddr::V6(_) => unreachable!("bound on IPv4"),
    }
}

fn v4(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(addr) => addr,
        SocketAddr::V6(addr) => panic!("{addr} is not IPv4"),
    }
}

fn tcp(port: u16, backends: &[SocketAddrV4]) -> PublishedPort {
    PublishedPort { port, protocol: Protocol::Tcp, proxy_protocol: false, backends: backends.to_vec() }
}

fn udp(port: u16, backends: &[SocketAddrV4]) -> PublishedPort {
    PublishedPort { port, protocol: Protocol::Udp, proxy_protocol: false, backends: backends.to_vec() }
}

/// A proxy with test-sized timeouts, and its shutdown token.
fn proxy(config: ProxyConfig) -> (Proxy, CancellationToken) {
    let shutdown = CancellationToken::new();
    (Proxy::new(config, shutdown.clone()), shutdown)
}

fn quick() -> ProxyConfig {
    ProxyConfig { connect_timeout: Duration::from_millis(300), ..ProxyConfig::default() }
}

async fn set(proxy: &Proxy, table: Vec<PublishedPort>) {
    let errors = proxy.set(table).await;
    assert!(errors.is_empty(), "table not applied: {errors:?}");
}

async fn connect(port: u16) -> TcpStream {
    within("connecting to the proxy", TcpStream::connect((Ipv4Addr::LOCALHOST, port))).await.expect("connect")
}

async fn read_line(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    within("reading a line", async {
        loop {
            let byte = stream.read_u8().await.expect("a line");
            if byte == b'\n' {
                break;
            }
            line.push(byte);
        }
    })
    .await;
    String::from_utf8(line).expect("UTF-8")
}

/// Whether the connection has been closed by the other end: EOF or reset, no data.
async fn is_closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16];
    match within("reading the connection's end", stream.read(&mut buf)).await {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe),
    }
}

/// A TCP backend on 127.0.0.1: greets each connection with `name` and the address it sees the
/// connection come from, then echoes until the client's end.
async fn greeter(name: &'static str) -> (SocketAddrV4, JoinHandle<()>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind");
    let addr = v4(listener.local_addr().expect("address"));
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, peer)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let greeting = format!("{name} {}\n", peer.ip());
                if stream.write_all(greeting.as_bytes()).await.is_err() {
                    return;
                }
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, task)
}

/// Opens a connection through the proxy and returns it with the name of the backend that
/// greeted it.
async fn greeted(port: u16) -> (TcpStream, String) {
    let mut stream = connect(port).await;
    let line = read_line(&mut stream).await;
    let name = line.split(' ').next().unwrap_or_default().to_owned();
    (stream, name)
}

async fn echoes(stream: &mut TcpStream, message: &[u8]) {
    within("echo", async {
        stream.write_all(message).await.expect("write");
        let mut back = vec![0u8; message.len()];
        stream.read_exact(&mut back).await.expect("echo");
        assert_eq!(back, message);
    })
    .await
}

// ---- backend choice, draining, retries ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_spread_over_backends() {
    let (a, _ta) = greeter("a").await;
    let (b, _tb) = greeter("b").await;
    let (c, _tc) = greeter("c").await;
    let (proxy, _shutdown) = proxy(quick());
    let port = free_port(Protocol::Tcp);
    set(&proxy, vec![tcp(port, &[a, b, c])]).await;

    let mut held = Vec::new();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..30 {
        let (stream, name) = greeted(port).await;
        *counts.entry(name).or_default() += 1;
        held.push(stream);
    }
    assert_eq!(counts.len(), 3, "every backend takes connections: {counts:?}");
    assert!(counts.values().all(|&n| n >= 5), "connections spread: {counts:?}");
    let stats = proxy.stats();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].open, 30);
    assert_eq!(stats[0].backends.iter().map(|b| b.open).sum::<usize>(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_backend_gets_no_new_connections_and_drains() {
    let (a, _ta) = greeter("a").await;
    let (b, _tb) = greeter("b").await;
    let (proxy, _shutdown) = proxy(quick());
    let port = free_port(Protocol::Tcp);
    set(&proxy, vec![tcp(port, &[a])]).await;
    let (mut old, name) = greeted(port).await;
    assert_eq!(name, "a");

    set(&proxy, vec![tcp(port, &[b])]).await;
    let mut new = Vec::new();
    for _ in 0..5 {
        let (stream, name) = greeted(port).await;
        assert_eq!(name, "b", "a backend no longer listed takes no new connection");
        new.push(stream);
    }
    // The connection through the removed backend still works both ways.
    echoes(&mut old, b"still here").await;
    let stats = proxy.stats();
    assert_eq!(stats[0].open, 6);
    assert_eq!(stats[0].backends.len(), 1);
    assert_eq!((stats[0].backends[0].addr, stats[0].backends[0].open), (b, 5));

    drop(old);
    eventually("the drained connection ends", || proxy.stats()[0].open == 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_without_backends_closes_connections_at_once() {
    let (proxy, _shutdown) = proxy(quick());
    let port = free_port(Protocol::Tcp);
    set(&proxy, vec![tcp(port, &[])]).await;
    let mut stream = connect(port).await;
    assert!(is_closed(&mut stream).await);
    assert_eq!(proxy.stats()[0].open, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusing_backend_is_retried_on_another() {
    let (live, _task) = greeter("live").await;
    let dead = refusing_addr();
    let (proxy, _shutdown) = proxy(quick());
    let port = free_port(Protocol::Tcp);
    // One connection held on the live backend first, so that the next choice (fewer open
    // connections) is the refusing one: the retry is sure to happen.
    set(&proxy, vec![tcp(port, &[live])]).await;
    let (first, _) = greeted(port).await;
    set(&proxy, vec![tcp(port, &[dead, live])]).await;
    for _ in 0..20 {
        let (mut stream, name) = greeted(port).await;
        assert_eq!(name, "live");
        echoes(&mut stream, b"through").await;
    }
    drop(first);

    // Every backend refusing: the client's connection is closed.
    set(&proxy, vec![tcp(port, &[dead, refusing_addr()])]).await;
    let mut stream = connect(port).await;
    assert!(is_closed(&mut stream).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_backend_is_retried_after_the_connect_timeout() {
    // A listener that never accepts, its queue full: the kernel drops further SYNs, so a
    // connection to it gets no answer at all.
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind((Ipv4Addr::LOCALHOST, 0).into()).expect("bind");
    let silent_listener = socket.listen(1).expect("listen");
    let silent = v4(silent_listener.local_addr().expect("address"));
    let mut fillers = Vec::new();
    for _ in 0..4 {
        fillers.push(tokio::spawn(TcpStream::connect(silent)));
    }
    // Until a connection attempt of its own hangs, the queue is not full yet.
    within("filling the silent backend's queue", async {
        while tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(silent)).await.is_ok() {}
    })
    .await;

    let (live, _task) = greeter("live").await;
    let (proxy, _shutdown) = proxy(quick());
    let port = free_port(Protocol::Tcp);
    set(&proxy, vec![tcp(port, &[live])]).await;
    let (first, _) = greeted(port).await;
    set(&proxy, vec![tcp(port, &[silent, live])]).await;
    for _ in 0..3 {
        let (_stream, name) = greeted(port).await;
        assert_eq!(name, "live");
    }
    drop(first);

    // The silent backend alone: the client's connection is closed after the timeout.
    set(&proxy, vec![tcp(port, &[silent])]).await;
    let mut stream = connect(port).await;
    assert!(is_closed(&mut stream).await);
    drop((silent_listener, fillers));
}

// ---- the byte stream ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_passes_through() {
    // A backend that reads to the client's end, then answers with what it read.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind");
    let backend = v4(listener.local_addr().expect("address"));
    let _task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut all = Vec::new();
                if stream.read_to_end(&mut all).await.is_ok() {
                    let _ = stream.write_all(format!("got {}\n", all.len()).as_bytes()).await;
                }
            });
        }
    });
    let (proxy, _shutdown) = proxy(quick());
    let port = free_port(Protocol::Tcp);
    set(&proxy, vec![tcp(port, &[backend])]).await;

    let mut stream = connect(port).await;
    let data = vec![7u8; 300_000];
    stream.write_all(&data).await.expect("write");
    stream.shutdown().await.expect("half-close");
    let mut answer = String::new();
    within("the answer after half-close", stream.read_to_string(&mut answer)).await.expect("read");
    assert_eq!(answer, "got 300000\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_is_not_cut() {
    let (backend, _task) = greeter("b").await;
    let (proxy, _shutdown) = proxy(quick());
    let port = free_port(Protocol::Tcp);
    set(&proxy, vec![tcp(port, &[backend])]).await;
    let (mut stream, _) = greeted(port).await;
    // The proxy has no idle timeout at all: a few seconds stand for any length.
    tokio::time::sleep(Duration::from_secs(2)).await;
    echoes(&mut stream, b"after a pause").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_transfers_arrive_intact_both_ways() {
    let (backend, _task) = greeter("b").await;
    let (proxy, _shutdown) = proxy(quick());
    let port = free_port(Protocol::Tcp);
    set(&proxy, vec![tcp(port, &[backend])]).await;
    let (stream, _) = greeted(port).await;
    let data: Arc<Vec<u8>> = Arc::new((0..8u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect());
    let (mut r, mut w) = stream.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move { w.write_all(&sent).await });
    let mut back = vec![0u8; data.len()];
    within("the echo of 8 MiB", r.read_exact(&mut back)).await.expect("read");
    writer.await.expect("writer").expect("write");
    assert!(back == *data, "the bytes came back changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_connections_leave_from_the_source_address() {
    let (backend, _task) = greeter("b").await;
    let source = Ipv4Addr::new(127, 0, 0, 2);
    let (proxy, _shutdown) = proxy(ProxyConfig { source: Some(source), ..quick() });
    let port = free_port(Protocol::Tcp);
    set(&proxy, vec![tcp(port, &[backend])]).await;
    let mut stream = connect(port).await;
    assert_eq!(read_line(&mut stream).await, "b 127.0.0.2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_header_reaches_the_backend_first() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind");
    let backend = v4(listener.local_addr().expect("address"));
    let (proxy, _shutdown) = proxy(quick());
    let port = free_port(Protocol::Tcp);
    set(&proxy, vec![PublishedPort { proxy_protocol: true, ..tcp(port, &[backend]) }]).await;

    let mut client = connect(port).await;
    client.write_all(b"hello").await.expect("write");
    let (mut conn, _) = within("the proxied connection", listener.accept()).await.expect("accept");
    let mut header = [0u8; 28];
    within("the header", conn.read_exact(&mut header)).await.expect("read");
    // Decoded by the specification: signature, v2 PROXY, AF_INET STREAM, 12 address bytes.
    assert_eq!(&header[..12], b"\r\n\r\n\0\r\nQUIT\n");
    assert_eq!(header[12], 0x21);
    assert_eq!(header[13], 0x11);
    assert_eq!(u16::from_be_bytes([header[14], header[15]]), 12);
    let ip = |at: usize| Ipv4Addr::new(header[at], header[at + 1], header[at + 2], header[at + 3]);
    let port_at = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
    let source = SocketAddrV4::new(ip(16), port_at(24));
    let destination = SocketAddrV4::new(ip(20), port_at(26));
    assert_eq!(source, v4(client.local_addr().expect("client address")));
    assert_eq!(destination, SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
    let mut payload = [0u8; 5];
    within("the client's bytes", conn.read_exact(&mut payload)).await.expect("read");
    assert_eq!(&payload, b"hello");
    conn.write_all(b"hi").await.expect("write");
    let mut answer = [0u8; 2];
    within("the answer", client.read_exact(&mut answer)).await.expect("read");
    assert_eq!(&answer, b"hi");
}

// ---- the table ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_entries_are_reported_and_the_rest_applies() {
    let (backend, _task) = greeter("b").await;
    let taken = std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind");
    let in_use = taken.local_addr().expect("address").port();
    let port = free_port(Protocol::Tcp);
    let (proxy, _shutdown) = proxy(quick());
    let errors = proxy
        .set(vec![tcp(in_use, &[backend]), tcp(0, &[backend]), tcp(port, &[backend]), tcp(port, &[]), udp(port, &[])])
        .await;
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        matches!(errors[..], [ProxyError::PortZero { .. }, ProxyError::Duplicate { .. }, ProxyError::InUse { .. }]),
        "{messages:?}"
    );
    assert_eq!(
        messages[2],
        format!("port {in_use}/tcp is already in use on this node: stop what listens on it or publish another port")
    );
    let (_stream, name) = greeted(port).await;
    assert_eq!(name, "b", "the first entry of the duplicated port applies");
    let published: Vec<(u16, Protocol)> = proxy.stats().iter().map(|s| (s.port, s.protocol)).collect();
    assert_eq!(published, vec![(port, Protocol::Tcp), (port, Protocol::Udp)]);

    // Once the port is free, the next table takes it.
    drop(taken);
    set(&proxy, vec![tcp(in_use, &[backend])]).await;
    let (_stream, name) = greeted(in_use).await;
    assert_eq!(name, "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_port_stops_listening_and_its_connections_finish() {
    let (backend, _task) = greeter("b").await;
    let (proxy, _shutdown) = proxy(quick());
    let port = free_port(Protocol::Tcp);
    set(&proxy, vec![tcp(port, &[backend])]).await;
    let (mut open, _) = greeted(port).await;

    set(&proxy, vec![]).await;
    assert!(proxy.stats().is_empty());
    let refused = within("connecting", TcpStream::connect((Ipv4Addr::LOCALHOST, port))).await;
    assert_eq!(refused.err().map(|e| e.kind()), Some(io::ErrorKind::ConnectionRefused));
    echoes(&mut open, b"still open").await;

    // And it can come back at once.
    set(&proxy, vec![tcp(port, &[backend])]).await;
    let (_stream, name) = greeted(port).await;
    assert_eq!(name, "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_listeners_and_connections() {
    let (backend, _task) = greeter("b").await;
    let (proxy, shutdown) = proxy(quick());
    let port = free_port(Protocol::Tcp);
    set(&proxy, vec![tcp(port, &[backend])]).await;
    let (mut open, _) = greeted(port).await;

    shutdown.cancel();
    assert!(is_closed(&mut open).await);
    within("the listener's end", async {
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let errors = proxy.set(vec![tcp(port, &[backend])]).await;
    assert!(matches!(errors[..], [ProxyError::ShutDown { .. }]), "{errors:?}");
}

// ---- UDP ----

/// A UDP backend on 127.0.0.1 answering each datagram with `echo <source ip> <datagram>`.
async fn udp_echo() -> (SocketAddrV4, JoinHandle<()>) {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind");
    let addr = v4(socket.local_addr().expect("address"));
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let mut answer = format!("echo {} ", from.ip()).into_bytes();
            answer.extend_from_slice(&buf[..n]);
            let _ = socket.send_to(&answer, from).await;
        }
    });
    (addr, task)
}

async fn udp_client() -> UdpSocket {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind")
}

/// Sends `message` to the published port and returns the answer with the port it came from.
async fn ask(client: &UdpSocket, port: u16, message: &str) -> (String, u16) {
    client.send_to(message.as_bytes(), (Ipv4Addr::LOCALHOST, port)).await.expect("send");
    let mut buf = vec![0u8; 65536];
    let (n, from) = within("a UDP answer", client.recv_from(&mut buf)).await.expect("receive");
    (String::from_utf8_lossy(&buf[..n]).into_owned(), from.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_clients_get_their_own_answers() {
    let (backend, _task) = udp_echo().await;
    let config = ProxyConfig { udp_idle_timeout: Duration::from_millis(500), ..quick() };
    let (proxy, _shutdown) = proxy(config);
    let port = free_port(Protocol::Udp);
    set(&proxy, vec![udp(port, &[backend])]).await;

    let (one, two) = (udp_client().await, udp_client().await);
    for round in 0..3 {
        let (answer, from) = ask(&one, port, &format!("one {round}")).await;
        assert_eq!((answer, from), (format!("echo 127.0.0.1 one {round}"), port));
        let (answer, from) = ask(&two, port, &format!("two {round}")).await;
        assert_eq!((answer, from), (format!("echo 127.0.0.1 two {round}"), port));
    }
    let stats = proxy.stats();
    assert_eq!((stats[0].open, stats[0].backends[0].open), (2, 2), "one flow per client");

    eventually("idle flows end", || proxy.stats()[0].open == 0).await;
    let (answer, _) = ask(&one, port, "again").await;
    assert_eq!(answer, "echo 127.0.0.1 again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_replies_leave_from_the_address_the_client_sent_to() {
    let (backend, _task) = udp_echo().await;
    let (proxy, _shutdown) = proxy(quick());
    let port = free_port(Protocol::Udp);
    set(&proxy, vec![udp(port, &[backend])]).await;
    // Another local address than the one the kernel would answer 127.0.0.1 from; a connected
    // socket takes datagrams from the address it is connected to only.
    let asked = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 3), port);
    let client = udp_client().await;
    client.connect(asked).await.expect("connect");
    client.send(b"where from").await.expect("send");
    let mut buf = [0u8; 64];
    let n = within("an answer from the address asked", client.recv(&mut buf)).await.expect("receive");
    assert_eq!(&buf[..n], b"echo 127.0.0.1 where from");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_flows_leave_from_the_source_address_and_are_bounded() {
    let (backend, _task) = udp_echo().await;
    let config = ProxyConfig {
        source: Some(Ipv4Addr::new(127, 0, 0, 2)),
        udp_idle_timeout: Duration::from_secs(1),
        max_udp_flows: 1,
        ..quick()
    };
    let (proxy, _shutdown) = proxy(config);
    let port = free_port(Protocol::Udp);
    set(&proxy, vec![udp(port, &[backend])]).await;

    let (one, two) = (udp_client().await, udp_client().await);
    assert_eq!(ask(&one, port, "one").await.0, "echo 127.0.0.2 one");
    // The only flow is taken: the second client's datagram is dropped.
    two.send_to(b"two", (Ipv4Addr::LOCALHOST, port)).await.expect("send");
    assert_eq!(proxy.stats()[0].open, 1);
    let mut buf = [0u8; 64];
    let dropped = tokio::time::timeout(Duration::from_millis(300), two.recv_from(&mut buf)).await;
    assert!(dropped.is_err(), "a datagram beyond the flow limit was answered");

    eventually("the first flow ends", || proxy.stats()[0].open == 0).await;
    assert_eq!(ask(&two, port, "two").await.0, "echo 127.0.0.2 two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_flows_to_a_removed_backend_drain_and_new_ones_go_elsewhere() {
    let (a, _ta) = udp_echo().await;
    let (b, _tb) = udp_echo().await;
    let (proxy, _shutdown) = proxy(quick());
    let port = free_port(Protocol::Udp);
    set(&proxy, vec![udp(port, &[a])]).await;
    let old = udp_client().await;
    ask(&old, port, "first").await;

    set(&proxy, vec![udp(port, &[b])]).await;
    let new = udp_client().await;
    ask(&new, port, "second").await;
    ask(&old, port, "still").await;
    let stats = proxy.stats();
    assert_eq!(stats[0].open, 2);
    assert_eq!((stats[0].backends[0].addr, stats[0].backends[0].open), (b, 1), "the old flow stays on its backend");
}

// ---- throughput ----

/// Not a test but a measure: iperf3's throughput through the proxy and on a direct connection,
/// interleaved, both directions, with the ratio. Needs `iperf3` and a release build:
/// `cargo test --release -p shoal-mesh --test proxy -- --ignored --nocapture iperf3`
#[test]
#[ignore = "a benchmark: needs iperf3 and a release build"]
fn iperf3_through_the_proxy_and_direct() {
    use std::process::{Command, Stdio};

    let seconds = std::env::var("IPERF3_SECONDS").unwrap_or_else(|_| "3".into());
    let rounds: usize = std::env::var("IPERF3_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(2);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let server_port = free_port(Protocol::Tcp);
    let mut server = Command::new("iperf3")
        .args(["-s", "-B", "127.0.0.1", "-p", &server_port.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .expect("iperf3 on the PATH");
    let backend = SocketAddrV4::new(Ipv4Addr::LOCALHOST, server_port);
    while std::net::TcpStream::connect(backend).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let port = free_port(Protocol::Tcp);
    let (proxy, shutdown) = proxy(ProxyConfig::default());
    runtime.block_on(set(&proxy, vec![tcp(port, &[backend])]));

    // Gbit/s received, as iperf3 reports it.
    let measure = |port: u16, reverse: bool| -> f64 {
        let mut args = vec!["-c", "127.0.0.1", "-J", "-t", &seconds];
        if reverse {
            args.push("-R");
        }
        let port = port.to_string();
        args.extend(["-p", &port]);
        let output = Command::new("iperf3").args(&args).output().expect("iperf3 client");
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("iperf3's JSON");
        report["end"]["sum_received"]["bits_per_second"].as_f64().expect("a throughput") / 1e9
    };
    for round in 1..=rounds {
        for reverse in [false, true] {
            let direct = measure(server_port, reverse);
            let proxied = measure(port, reverse);
            let way = if reverse { "backend to client" } else { "client to backend" };
            println!(
                "round {round}, {way}: direct {direct:.2} Gbit/s, proxy {proxied:.2} Gbit/s, ratio {:.2}",
                proxied / direct
            );
        }
    }
    shutdown.cancel();
    let _ = server.kill();
    let _ = server.wait();
}
