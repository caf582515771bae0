//! The routing mesh's L4 proxy: every node listens on every published port (TCP and UDP, on
//! all its IPv4 addresses) and forwards each TCP connection, or each UDP flow, to a ready task
//! of the service on any node.
//!
//! Boundary: the proxy decides nothing. Its caller (the node's agent) hands it the whole table
//! of published ports with each port's backends, the ready tasks' addresses as the managers
//! see them, and replaces it whenever it changes ([`Proxy::set`]); the proxy only chooses,
//! per connection, which of the listed backends takes it. It does not know services, tasks or
//! health checks, and does not remove a backend from a table: a backend that fails a connect
//! is only tried last for a few seconds.
//!
//! - Choice: the power of two random choices by open connections (TCP) or flows (UDP).
//! - Draining: a table that no longer lists a backend sends it no new connection; the
//!   connections open through it go on until their ends close them. A port no longer listed
//!   stops listening; its open TCP connections go on likewise (its UDP flows end with it: their
//!   replies leave through its socket). A port still listed keeps its listener and connections.
//! - Retries: a backend that refuses a connection, resets it or does not answer within the
//!   connect timeout is replaced by another; the client sees only the delay, since none of its
//!   bytes is read before a backend is connected. Only when every listed backend has failed is
//!   the client's connection closed. A port without backends accepts and closes at once, so
//!   that clients do not hang.
//! - Copying (`relay.rs`): both ways, half-close passed through, no idle timeout; an idle
//!   connection holds no buffer. (splice(2) through a pipe was measured against it and was no
//!   faster.)
//! - PROXY protocol v2 (`proxy_protocol.rs`), when a port asks for it: the backend reads the
//!   client's address and the address it connected to before the client's first byte.
//! - UDP (`udp.rs`): one flow, with a socket of its own, per client address; replies leave from
//!   the address the client sent to; a flow ends after an idle time.
//!
//! Everything stops with the shutdown token (or when the [`Proxy`] is dropped).

mod balance;
mod port;
mod proxy_protocol;
mod relay;
mod tcp;
mod udp;

use std::{
    collections::{btree_map::Entry, BTreeMap},
    fmt, io,
    net::{Ipv4Addr, SocketAddrV4},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use port::{Port, Throttle};

/// The transport of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One published port of the table: where the node listens and where connections go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedPort {
    /// The port listened on, on every IPv4 address of the node.
    pub port: u16,
    pub protocol: Protocol,
    /// TCP only: backends read a PROXY protocol v2 header before the client's bytes.
    pub proxy_protocol: bool,
    /// The ready tasks' addresses with their target port; may be empty.
    pub backends: Vec<SocketAddrV4>,
}

/// How the proxy connects to backends and keeps UDP flows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// The address connections and flows to backends leave from (the node's address on the
    /// ingress network); None lets the kernel choose.
    pub source: Option<Ipv4Addr>,
    /// How long a backend may take to accept a connection before another one is tried.
    pub connect_timeout: Duration,
    /// How long a UDP flow lives without a datagram either way.
    pub udp_idle_timeout: Duration,
    /// UDP flows open at once on the node, all ports together; a datagram that would start
    /// one more is dropped.
    pub max_udp_flows: usize,
}

impl Default for ProxyConfig {
    fn default() -> ProxyConfig {
        ProxyConfig {
            source: None,
            connect_timeout: Duration::from_secs(2),
            udp_idle_timeout: Duration::from_secs(60),
            max_udp_flows: 65536,
        }
    }
}

/// Why part of a table was not applied; the rest of the table is.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("published port 0/{protocol} is not a port: publish a port from 1 to 65535")]
    PortZero { protocol: Protocol },
    #[error("port {port}/{protocol} is listed twice in the routing mesh's table: only its first entry applies")]
    Duplicate { port: u16, protocol: Protocol },
    #[error("port {port}/{protocol} is already in use on this node: stop what listens on it or publish another port")]
    InUse { port: u16, protocol: Protocol },
    #[error("port {port}/{protocol} cannot be listened on: {source}")]
    Listen {
        port: u16,
        protocol: Protocol,
        #[source]
        source: io::Error,
    },
    #[error("backend {backend} of port {port}/{protocol} is not a task's address: it gets no traffic")]
    BadBackend { port: u16, protocol: Protocol, backend: SocketAddrV4 },
    #[error("port {port}/udp asks for the PROXY protocol, which is for TCP: its datagrams go without a header")]
    ProxyProtocolOnUdp { port: u16 },
    #[error("the routing mesh's proxy is shut down: port {port}/{protocol} is not listened on")]
    ShutDown { port: u16, protocol: Protocol },
}

impl ProxyError {
    /// The published port the error is about.
    pub fn port(&self) -> (u16, Protocol) {
        match *self {
            ProxyError::PortZero { protocol } => (0, protocol),
            ProxyError::Duplicate { port, protocol }
            | ProxyError::InUse { port, protocol }
            | ProxyError::Listen { port, protocol, .. }
            | ProxyError::BadBackend { port, protocol, .. }
            | ProxyError::ShutDown { port, protocol } => (port, protocol),
            ProxyError::ProxyProtocolOnUdp { port } => (port, Protocol::Udp),
        }
    }
}

/// What is open through a published port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortStats {
    pub port: u16,
    pub protocol: Protocol,
    /// TCP connections or UDP flows open through the port, those through backends the table
    /// no longer lists (draining) included.
    pub open: usize,
    /// The backends the table lists, in its order.
    pub backends: Vec<BackendStats>,
}

/// What is open through one backend of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendStats {
    pub addr: SocketAddrV4,
    /// TCP connections (connecting ones included) or UDP flows.
    pub open: usize,
}

/// The node's routing-mesh proxy.
#[derive(Debug)]
pub struct Proxy {
    shared: Arc<Shared>,
    ports: Mutex<BTreeMap<(u16, Protocol), Listening>>,
    /// Tables apply one at a time.
    applying: tokio::sync::Mutex<()>,
}

/// What every port's tasks share.
#[derive(Debug)]
struct Shared {
    config: ProxyConfig,
    /// The proxy's end: the shutdown token's child, cancelled too when the proxy is dropped.
    stop: CancellationToken,
    /// UDP flows that may still be opened.
    flows: Arc<Semaphore>,
    flow_warnings: Throttle,
}

/// A port being listened on.
#[derive(Debug)]
struct Listening {
    port: Arc<Port>,
    /// The port's end: its listener's (and UDP flows'), not its TCP connections'.
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Proxy {
    /// A proxy with an empty table, running until `shutdown` is cancelled or it is dropped.
    pub fn new(config: ProxyConfig, shutdown: CancellationToken) -> Proxy {
        let flows = Arc::new(Semaphore::new(config.max_udp_flows.min(Semaphore::MAX_PERMITS)));
        let shared = Arc::new(Shared { config, stop: shutdown.child_token(), flows, flow_warnings: Throttle::new() });
        Proxy { shared, ports: Mutex::default(), applying: tokio::sync::Mutex::new(()) }
    }

    /// Replaces the whole table. Ports no longer listed stop listening; new ones start; ports
    /// still listed keep their listener and connections and take the new backends. Returns what
    /// could not be applied (a port in use, a bad entry), each error naming its port; the rest
    /// of the table applies.
    pub async fn set(&self, table: Vec<PublishedPort>) -> Vec<ProxyError> {
        let _applying = self.applying.lock().await;
        let (wanted, mut errors) = check(table);
        if self.shared.stop.is_cancelled() {
            // Every task has ended with the proxy: nothing listens any more.
            self.ports().clear();
            errors.extend(wanted.into_keys().map(|(port, protocol)| ProxyError::ShutDown { port, protocol }));
            return errors;
        }
        let removed: Vec<Listening> = {
            let mut ports = self.ports();
            let gone: Vec<(u16, Protocol)> = ports.keys().filter(|key| !wanted.contains_key(key)).copied().collect();
            gone.iter().filter_map(|key| ports.remove(key)).collect()
        };
        // Their sockets are closed before anything else is bound: a port can change hands
        // between its TCP and UDP entries, or come back, in the next table.
        for listening in removed {
            tracing::debug!(port = listening.port.port, protocol = %listening.port.protocol, "routing mesh: port no longer published");
            listening.stop.cancel();
            listening.tasks.close();
            listening.tasks.wait().await;
        }
        let mut ports = self.ports();
        for ((port, protocol), entry) in wanted {
            if let Some(listening) = ports.get(&(port, protocol)) {
                listening.port.update(entry.proxy_protocol, &entry.backends);
                continue;
            }
            match self.listen(port, protocol, &entry) {
                Ok(listening) => {
                    tracing::debug!(port, %protocol, backends = entry.backends.len(), "routing mesh: port published");
                    ports.insert((port, protocol), listening);
                }
                Err(error) => errors.push(error),
            }
        }
        errors
    }

    /// Opens a port and starts its tasks.
    fn listen(&self, port: u16, protocol: Protocol, entry: &Checked) -> Result<Listening, ProxyError> {
        let listen_error = |source: io::Error| match source.kind() {
            io::ErrorKind::AddrInUse => ProxyError::InUse { port, protocol },
            _ => ProxyError::Listen { port, protocol, source },
        };
        let state = Port::new(port, protocol, entry.proxy_protocol, &entry.backends);
        let stop = self.shared.stop.child_token();
        let tasks = TaskTracker::new();
        let shared = self.shared.clone();
        match protocol {
            Protocol::Tcp => {
                let listener = tcp::listen(port).map_err(listen_error)?;
                tasks.spawn(tcp::accept(listener, state.clone(), shared, stop.clone()));
            }
            Protocol::Udp => {
                let socket = udp::bind(port).map_err(listen_error)?;
                tasks.spawn(udp::serve(socket, state.clone(), shared, stop.clone(), tasks.clone()));
            }
        }
        Ok(Listening { port: state, stop, tasks })
    }

    /// What is open through each published port, by port.
    pub fn stats(&self) -> Vec<PortStats> {
        self.ports()
            .values()
            .map(|listening| {
                let port = &listening.port;
                PortStats {
                    port: port.port,
                    protocol: port.protocol,
                    open: port.open(),
                    backends: port.backends().iter().map(|b| BackendStats { addr: b.addr, open: b.active() }).collect(),
                }
            })
            .collect()
    }

    fn ports(&self) -> std::sync::MutexGuard<'_, BTreeMap<(u16, Protocol), Listening>> {
        self.ports.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

/// A table entry as it applies.
#[derive(Debug, PartialEq, Eq)]
struct Checked {
    proxy_protocol: bool,
    /// Each once, in the table's order.
    backends: Vec<SocketAddrV4>,
}

/// The entries of a table that apply, by port, and what is wrong with the others.
fn check(table: Vec<PublishedPort>) -> (BTreeMap<(u16, Protocol), Checked>, Vec<ProxyError>) {
    let mut wanted = BTreeMap::new();
    let mut errors = Vec::new();
    for published in table {
        let PublishedPort { port, protocol, proxy_protocol, backends } = published;
        if port == 0 {
            errors.push(ProxyError::PortZero { protocol });
            continue;
        }
        let Entry::Vacant(slot) = wanted.entry((port, protocol)) else {
            errors.push(ProxyError::Duplicate { port, protocol });
            continue;
        };
        if proxy_protocol && protocol == Protocol::Udp {
            errors.push(ProxyError::ProxyProtocolOnUdp { port });
        }
        let mut kept: Vec<SocketAddrV4> = Vec::with_capacity(backends.len());
        let mut seen = std::collections::HashSet::with_capacity(backends.len());
        for backend in backends {
            if !is_task_address(backend) {
                errors.push(ProxyError::BadBackend { port, protocol, backend });
            } else if seen.insert(backend) {
                kept.push(backend);
            }
        }
        slot.insert(Checked { proxy_protocol: proxy_protocol && protocol == Protocol::Tcp, backends: kept });
    }
    (wanted, errors)
}

/// Whether an address can be a task's: one host, a real port.
fn is_task_address(addr: SocketAddrV4) -> bool {
    let ip = addr.ip();
    addr.port() != 0 && !ip.is_unspecified() && !ip.is_broadcast() && !ip.is_multicast()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(port: u16, protocol: Protocol, backends: &[SocketAddrV4]) -> PublishedPort {
        PublishedPort { port, protocol, proxy_protocol: false, backends: backends.to_vec() }
    }

    fn addr(a: [u8; 4], port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(a), port)
    }

    #[test]
    fn port_zero_and_duplicates_are_refused_and_named() {
        let b = addr([10, 0, 0, 2], 80);
        let (wanted, errors) = check(vec![
            entry(0, Protocol::Tcp, &[b]),
            entry(80, Protocol::Tcp, &[b]),
            entry(80, Protocol::Tcp, &[]),
            entry(80, Protocol::Udp, &[]),
        ]);
        assert_eq!(wanted.keys().copied().collect::<Vec<_>>(), vec![(80, Protocol::Tcp), (80, Protocol::Udp)]);
        // The first entry of a duplicated port applies.
        assert_eq!(wanted[&(80, Protocol::Tcp)].backends, vec![b]);
        assert!(matches!(errors[0], ProxyError::PortZero { protocol: Protocol::Tcp }));
        assert!(matches!(errors[1], ProxyError::Duplicate { port: 80, protocol: Protocol::Tcp }));
        assert_eq!(errors.len(), 2);
        assert_eq!(
            errors[1].to_string(),
            "port 80/tcp is listed twice in the routing mesh's table: only its first entry applies"
        );
    }

    #[test]
    fn bad_backends_are_skipped_and_repeated_ones_kept_once() {
        let good = addr([10, 0, 0, 2], 80);
        let bad =
            [addr([0, 0, 0, 0], 80), addr([10, 0, 0, 3], 0), addr([255, 255, 255, 255], 80), addr([224, 0, 0, 1], 80)];
        let mut backends = vec![good];
        backends.extend(bad);
        backends.push(good);
        let (wanted, errors) = check(vec![entry(8080, Protocol::Tcp, &backends)]);
        assert_eq!(wanted[&(8080, Protocol::Tcp)].backends, vec![good]);
        assert_eq!(errors.len(), bad.len());
        for (error, bad) in errors.iter().zip(bad) {
            assert!(matches!(error, ProxyError::BadBackend { backend, .. } if *backend == bad));
            assert_eq!(error.port(), (8080, Protocol::Tcp));
        }
    }

    #[test]
    fn proxy_protocol_applies_to_tcp_only() {
        let mut udp = entry(53, Protocol::Udp, &[]);
        udp.proxy_protocol = true;
        let mut tcp = entry(53, Protocol::Tcp, &[]);
        tcp.proxy_protocol = true;
        let (wanted, errors) = check(vec![udp, tcp]);
        assert!(!wanted[&(53, Protocol::Udp)].proxy_protocol);
        assert!(wanted[&(53, Protocol::Tcp)].proxy_protocol);
        assert!(matches!(errors[..], [ProxyError::ProxyProtocolOnUdp { port: 53 }]));
    }
}
