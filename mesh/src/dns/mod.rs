//! Service-discovery DNS: the node's resolver, listening on each local network's gateway
//! address (port 53, UDP and TCP), answering containers with the names of the networks they
//! are on and forwarding every other name upstream.
//!
//! A query is answered only when its source is an endpoint of the network whose gateway was
//! asked, and only with names of the networks that endpoint's task is on: `<service>` and its
//! aliases (the virtual IP, or the ready tasks' addresses with dnsrr), `tasks.<service>` (the
//! ready tasks' addresses), task names (`<service>.<slot>`, `<service>.<slot>.<task id>`) and
//! attached containers' names (their address); any of them also qualified with the network's
//! name (`web.front`) or under the asker's search domains. A known name asked for another type
//! (AAAA, MX, …) is an empty NOERROR, so that resolvers do not go on to other names; a PTR
//! query for an endpoint address names it. Everything else goes to the asker's own `dns:`
//! servers, or the node's resolvers, within a deadline (SERVFAIL after it). Answers have TTL 0
//! and follow the map from the next query on: the map is indexed once per change
//! ([`index::Index`]) and swapped in whole.
//!
//! Boundary: this module decides no name; it serves the network map it is given. Bridges and
//! their addresses are the data plane's: it calls [`Resolver::listen`] once a network's bridge
//! has its gateway address and [`Resolver::unlisten`] before removing it.

mod fast;
mod forward;
mod index;
mod resolv_conf;

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, RwLock,
    },
    time::Duration,
};

use hickory_server::{
    net::runtime::Time,
    proto::{
        op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode},
        rr::{rdata, DNSClass, Name, RData, Record, RecordType},
    },
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo, Server},
    zone_handler::MessageResponseBuilder,
};
use tokio::{net::TcpListener, sync::Semaphore, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::map::NetworkMap;
use forward::{Relayed, Upstream};
use index::{Asker, Found, Index};
pub use resolv_conf::{bridge_resolv_conf, container_forwarders, resolv_conf, HostResolvConf};

/// The TTL of every answer the resolver makes: none, so that clients ask again and see a
/// changed map at once (Docker's 600 s is why its stale answers outlive tasks).
const TTL: u32 = 0;
/// Forwarded queries in flight at once; more are refused (as Docker's resolver does) rather
/// than queued behind a slow upstream.
const MAX_FORWARDS: usize = 1024;
/// The EDNS payload size the resolver offers: the DNS flag day's, which fits any MTU.
const EDNS_PAYLOAD: u16 = 1232;
/// How long a TCP client may stay silent before its connection is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Docker's fallback when a node has no resolver at all.
const FALLBACK_UPSTREAM: [Ipv4Addr; 2] = [Ipv4Addr::new(8, 8, 8, 8), Ipv4Addr::new(8, 8, 4, 4)];

/// Why the resolver could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// A DNS setting (a container's `dns`, `dns_search` or `dns_opt`, or a forwarder) that
    /// cannot be used.
    #[error("DNS setting {field} {value:?}: {why}")]
    Setting { field: &'static str, value: String, why: String },
    /// A network's gateway address could not be listened on.
    #[error(
        "DNS for network {network}: cannot listen on {addr} ({proto}): {source}; the address must be on \
         one of this node's interfaces (the network's bridge) and port 53 free on it"
    )]
    Listen { network: String, addr: SocketAddr, proto: &'static str, source: io::Error },
    /// The node's resolver configuration could not be read.
    #[error("DNS: cannot read the node's resolver configuration {path}: {source}")]
    HostConf { path: PathBuf, source: io::Error },
}

/// How the resolver is set up.
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    /// The node's own resolvers, where names no container has are forwarded.
    pub upstream: Vec<SocketAddr>,
    /// How long a forwarded query may take before the answer is SERVFAIL.
    pub timeout: Duration,
    /// The port to listen on: 53, except in tests and benchmarks.
    pub port: u16,
}

impl ResolverConfig {
    /// The node's resolvers from its `resolv.conf` (loopback ones included: the daemon forwards
    /// from the node's own namespace), Docker's fallback servers when it names none; port 53,
    /// a 2 s deadline.
    pub fn from_host(path: &Path) -> Result<ResolverConfig, DnsError> {
        let host = HostResolvConf::read(path)?;
        let mut upstream: Vec<SocketAddr> = host.nameservers.iter().map(|ip| SocketAddr::new(*ip, 53)).collect();
        if upstream.is_empty() {
            upstream = FALLBACK_UPSTREAM.iter().map(|ip| SocketAddr::new((*ip).into(), 53)).collect();
        }
        Ok(ResolverConfig { upstream, timeout: Duration::from_secs(2), port: 53 })
    }
}

/// A container's own DNS settings, by the address it asks from.
#[derive(Debug, Default)]
struct Client {
    /// Its `dns:` servers, instead of the node's.
    upstream: Option<Arc<Upstream>>,
    /// Its search domains (lower case, no trailing dot).
    search: Vec<String>,
}

/// What the listeners share: the current index, the clients' settings, the upstreams.
struct Shared {
    index: RwLock<Arc<Index>>,
    clients: RwLock<HashMap<Ipv4Addr, Arc<Client>>>,
    upstream: Upstream,
    timeout: Duration,
    forwards: Semaphore,
    /// Turns multi-address answers, so that clients taking the first address spread out.
    rotation: AtomicUsize,
}

struct Listener {
    addr: Ipv4Addr,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// The node's service-discovery resolver (one per node daemon). Its listeners run on a
/// runtime of their own, on a thread of their own: a daemon busy with other work (devices,
/// containers, a blocked worker) never leaves a container's lookup unanswered.
pub struct Resolver {
    shared: Arc<Shared>,
    port: u16,
    shutdown: CancellationToken,
    listeners: tokio::sync::Mutex<HashMap<String, Listener>>,
    /// The listeners' runtime.
    runtime: tokio::runtime::Handle,
}

impl Drop for Resolver {
    fn drop(&mut self) {
        // Ends the listeners' runtime and its thread.
        self.shutdown.cancel();
    }
}

/// Starts the resolver's own runtime on a thread that lives until `stop` is cancelled; the
/// caller's runtime if that cannot be made.
fn own_runtime(stop: CancellationToken) -> tokio::runtime::Handle {
    let (tx, rx) = std::sync::mpsc::channel();
    let started = std::thread::Builder::new().name("shoal-dns".into()).spawn(move || {
        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => {
                let _ = tx.send(Some(rt.handle().clone()));
                rt.block_on(stop.cancelled());
            }
            Err(error) => {
                tracing::warn!(%error, "DNS: no runtime of its own; it shares the daemon's");
                let _ = tx.send(None);
            }
        }
    });
    match started.ok().and_then(|_| rx.recv().ok().flatten()) {
        Some(handle) => handle,
        None => tokio::runtime::Handle::current(),
    }
}

impl Resolver {
    /// A resolver with an empty map and no listener; it stops listening when `shutdown` is
    /// cancelled.
    pub fn start(config: ResolverConfig, shutdown: CancellationToken) -> Resolver {
        let shutdown = shutdown.child_token();
        Resolver {
            runtime: own_runtime(shutdown.clone()),
            shared: Arc::new(Shared {
                index: RwLock::new(Arc::new(Index::default())),
                clients: RwLock::new(HashMap::new()),
                upstream: Upstream::new(&config.upstream, config.timeout),
                timeout: config.timeout,
                forwards: Semaphore::new(MAX_FORWARDS),
                rotation: AtomicUsize::new(0),
            }),
            port: config.port,
            shutdown,
            listeners: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Serves `map` from the next query on.
    pub fn set_map(&self, map: &NetworkMap) {
        let index = Arc::new(Index::build(map));
        *self.shared.index.write().unwrap_or_else(|e| e.into_inner()) = index;
    }

    /// Listens for network `network_id`'s containers on its gateway address (port 53, UDP and
    /// TCP). Listening again on the same address does nothing; on another, moves there.
    pub async fn listen(&self, network_id: &str, gateway: Ipv4Addr) -> Result<(), DnsError> {
        let mut listeners = self.listeners.lock().await;
        if let Some(l) = listeners.get(network_id) {
            if l.addr == gateway && !l.stop.is_cancelled() {
                return Ok(());
            }
        }
        if let Some(old) = listeners.remove(network_id) {
            old.stop().await;
        }
        let addr = SocketAddr::new(gateway.into(), self.port);
        let handler = Handler { network_id: network_id.into(), shared: self.shared.clone() };
        let stop = self.shutdown.child_token();
        let server_stop = stop.clone();
        let network = network_id.to_owned();
        // Bound and served on the resolver's own runtime (sockets belong to the runtime that
        // makes them).
        let made = self.runtime.spawn(async move {
            let listen_error = |proto, source| DnsError::Listen { network: network.clone(), addr, proto, source };
            let tcp = TcpListener::bind(addr).await.map_err(|e| listen_error("TCP", e))?;
            let udp = fast::bind_udp(addr).map_err(|e| listen_error("UDP", e))?;
            let mut tasks = fast::serve_udp(udp, handler.clone(), server_stop.clone());
            let mut server = Server::new(handler);
            server.register_listener(tcp, TCP_IDLE, 16);
            tasks.push(tokio::spawn(async move {
                server_stop.cancelled().await;
                if let Err(error) = server.shutdown_gracefully().await {
                    tracing::debug!(%error, "DNS TCP listener ended with an error");
                }
            }));
            Ok::<_, DnsError>(tasks)
        });
        let tasks = match made.await {
            Ok(made) => made?,
            Err(e) => {
                return Err(DnsError::Listen {
                    network: network_id.to_owned(),
                    addr,
                    proto: "UDP",
                    source: std::io::Error::other(format!("the resolver's runtime is gone: {e}")),
                })
            }
        };
        listeners.insert(network_id.to_owned(), Listener { addr: gateway, stop, tasks });
        Ok(())
    }

    /// Stops listening for network `network_id`; its sockets are closed when this returns.
    pub async fn unlisten(&self, network_id: &str) {
        let listener = self.listeners.lock().await.remove(network_id);
        if let Some(l) = listener {
            l.stop().await;
        }
    }

    /// Forwards the queries from the container at `endpoint` (the address it asks from, on its
    /// first network) to `servers` (its `dns:` setting, from [`container_forwarders`]) instead
    /// of the node's resolvers; an empty list goes back to the node's.
    pub fn set_forwarders(&self, endpoint: Ipv4Addr, servers: Vec<SocketAddr>) -> Result<(), DnsError> {
        for s in &servers {
            if s.ip().is_unspecified() || s.ip().is_multicast() || s.port() == 0 {
                return Err(DnsError::Setting {
                    field: "dns",
                    value: s.to_string(),
                    why: "not a DNS server's address: give a unicast address and port".into(),
                });
            }
        }
        let upstream = (!servers.is_empty()).then(|| Arc::new(Upstream::new(&servers, self.shared.timeout)));
        self.update_client(endpoint, |c| c.upstream = upstream);
        Ok(())
    }

    /// The servers the container at `endpoint` forwards to (empty: the node's resolvers) and
    /// its search domains.
    pub fn settings(&self, endpoint: Ipv4Addr) -> (Vec<SocketAddr>, Vec<String>) {
        let clients = self.shared.clients.read().unwrap_or_else(|e| e.into_inner());
        clients.get(&endpoint).map_or_else(Default::default, |c| {
            (
                c.upstream.as_ref().map(|u| u.servers().to_vec()).unwrap_or_default(),
                c.search.iter().map(|d| d.to_string()).collect(),
            )
        })
    }

    /// The search domains of the container at `endpoint`: a name asked under one of them is
    /// also looked up without it.
    pub fn set_search(&self, endpoint: Ipv4Addr, domains: &[String]) -> Result<(), DnsError> {
        let search = resolv_conf::check_search(domains)?;
        let search = search.iter().filter_map(|d| index::normalize(d)).collect();
        self.update_client(endpoint, |c| c.search = search);
        Ok(())
    }

    /// Forgets the settings of the container at `endpoint` (once it is gone).
    pub fn forget(&self, endpoint: Ipv4Addr) {
        self.shared.clients.write().unwrap_or_else(|e| e.into_inner()).remove(&endpoint);
    }

    fn update_client(&self, endpoint: Ipv4Addr, change: impl FnOnce(&mut Client)) {
        let mut clients = self.shared.clients.write().unwrap_or_else(|e| e.into_inner());
        let old = clients.get(&endpoint);
        let mut client = Client {
            upstream: old.and_then(|c| c.upstream.clone()),
            search: old.map(|c| c.search.clone()).unwrap_or_default(),
        };
        change(&mut client);
        if client.upstream.is_none() && client.search.is_empty() {
            clients.remove(&endpoint);
        } else {
            clients.insert(endpoint, Arc::new(client));
        }
    }
}

impl Listener {
    async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            if let Err(error) = task.await {
                tracing::warn!(%error, "a DNS listener task failed");
            }
        }
    }
}

/// What the resolver answers one query.
#[derive(Debug, PartialEq)]
struct Reply {
    code: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
}

impl Reply {
    fn code(code: ResponseCode) -> Reply {
        Reply { code, answers: Vec::new(), authorities: Vec::new(), additionals: Vec::new() }
    }

    fn answers(answers: Vec<Record>) -> Reply {
        Reply { answers, ..Reply::code(ResponseCode::NoError) }
    }
}

impl From<Relayed> for Reply {
    fn from(r: Relayed) -> Reply {
        Reply { code: r.code, answers: r.answers, authorities: r.authorities, additionals: r.additionals }
    }
}

/// The queries arriving on one network's gateway address.
#[derive(Clone)]
struct Handler {
    network_id: Arc<str>,
    shared: Arc<Shared>,
}

impl Shared {
    fn index(&self) -> Arc<Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn client(&self, addr: Ipv4Addr) -> Option<Arc<Client>> {
        let clients = self.clients.read().unwrap_or_else(|e| e.into_inner());
        if clients.is_empty() {
            return None;
        }
        clients.get(&addr).cloned()
    }
}

impl Handler {
    /// The asker behind `src` on this handler's network, if it is one of its endpoints.
    fn asker(&self, index: &Index, src: IpAddr) -> Option<(Asker, Ipv4Addr)> {
        let IpAddr::V4(src) = src else { return None };
        let n = index.network(&self.network_id)?;
        index.asker(n, src).map(|a| (a.clone(), src))
    }

    async fn reply(&self, request: &Request) -> Reply {
        let index = self.shared.index();
        let Some((asker, src)) = self.asker(&index, request.src().ip()) else {
            return Reply::code(ResponseCode::Refused);
        };
        if request.metadata.message_type != MessageType::Query || request.metadata.op_code != OpCode::Query {
            return Reply::code(ResponseCode::NotImp);
        }
        let [query] = request.queries.queries() else { return Reply::code(ResponseCode::FormErr) };
        let query = query.original();
        let client = self.shared.client(src);
        if query.query_class == DNSClass::IN {
            if let Some(reply) = self.local(&index, &asker, client.as_deref(), query) {
                return reply;
            }
        }
        if !asker.forward {
            return Reply::code(ResponseCode::ServFail);
        }
        let Ok(_permit) = self.shared.forwards.try_acquire() else {
            return Reply::code(ResponseCode::Refused);
        };
        let upstream = client.as_ref().and_then(|c| c.upstream.as_deref()).unwrap_or(&self.shared.upstream);
        upstream.forward(query, request.metadata.recursion_desired).await.into()
    }

    /// The answer from the map, if the name is the map's.
    fn local(
        &self,
        index: &Index,
        asker: &Asker,
        client: Option<&Client>,
        query: &hickory_server::proto::op::Query,
    ) -> Option<Reply> {
        let name = index::normalize(&query.name.to_ascii())?;
        if let Some(addr) = reverse_addr(&name).filter(|_| query.query_type == RecordType::PTR) {
            return match index.reverse(asker, addr) {
                Some(target) => {
                    let target = Name::from_ascii(format!("{target}.")).ok()?;
                    let ptr = RData::PTR(rdata::PTR(target));
                    Some(Reply::answers(vec![Record::from_rdata(query.name.clone(), TTL, ptr)]))
                }
                None if index.in_networks(asker, addr) => Some(Reply::code(ResponseCode::NXDomain)),
                None => None,
            };
        }
        let search = client.map_or(&[][..], |c| &c.search[..]);
        match index.resolve(asker, &name, search) {
            Found::Unknown => None,
            Found::Addrs(addrs) if matches!(query.query_type, RecordType::A | RecordType::ANY) => {
                let start = match addrs.len() {
                    0 | 1 => 0,
                    n => self.shared.rotation.fetch_add(1, Ordering::Relaxed) % n,
                };
                let rotated = addrs[start..].iter().chain(&addrs[..start]);
                let records =
                    rotated.map(|ip| Record::from_rdata(query.name.clone(), TTL, RData::A(rdata::A(*ip)))).collect();
                Some(Reply::answers(records))
            }
            // The name exists with no data of this type: NOERROR, no answer.
            Found::Addrs(_) => Some(Reply::code(ResponseCode::NoError)),
        }
    }
}

/// The IPv4 address a reverse name (`5.1.0.10.in-addr.arpa`) stands for.
fn reverse_addr(name: &str) -> Option<Ipv4Addr> {
    let octets = name.strip_suffix(".in-addr.arpa")?;
    let mut parts = octets.split('.').map(|p| if p.len() <= 3 { p.parse::<u8>().ok() } else { None });
    let (d, c, b, a) = (parts.next()??, parts.next()??, parts.next()??, parts.next()??);
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::new(a, b, c, d))
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut response: R) -> ResponseInfo {
        let reply = self.reply(request).await;
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = reply.code;
        metadata.recursion_available = true;
        // The OPT record offers what this server takes; what it sends is bounded by what the
        // client offered, by whoever encodes the answer for its transport.
        let edns = request.edns.as_ref().map(|_| {
            let mut edns = Edns::new();
            edns.set_max_payload(EDNS_PAYLOAD);
            edns
        });
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let message = builder.build(
            metadata,
            reply.answers.iter(),
            reply.authorities.iter(),
            std::iter::empty(),
            reply.additionals.iter(),
        );
        match response.send_response(message).await {
            Ok(info) => info,
            Err(error) => {
                tracing::debug!(%error, src = %request.src(), "sending a DNS answer failed");
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header { metadata, counts: HeaderCounts::default() })
            }
        }
    }
}

#[cfg(test)]
mod tests;
