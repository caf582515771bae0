//! The node's part of the swarm's networks: the agent keeps the network map the managers send,
//! has the mesh converge the node's devices and rules to it and the resolver answer from it,
//! and gives each task's container a sandbox on the networks its task is attached to.
//!
//! Nothing here decides: addresses, VIPs and who is ready come from the map (raft state);
//! the mesh and the resolver apply it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use shoal_mesh::dns::{self, HostResolvConf, Resolver, ResolverConfig};
use shoal_mesh::proxy::{Proxy, ProxyConfig, PublishedPort};
use shoal_mesh::{Attachment, Cidr, Interface, Mesh, MeshConfig, NetworkMap, PortOn};
use shoal_proto::{DnsConfig, NetworkMapUpdate, Task};
use tokio::sync::{mpsc, watch, Mutex};
use tokio_util::sync::CancellationToken;

/// How long a task's worker waits for the map to carry the networks its task is attached to
/// (they come with the assignment, or right after it).
const MAP_WAIT: Duration = Duration::from_secs(10);

/// The node's networks: its mesh, its resolver and the map they follow.
pub struct NodeNetwork {
    /// Empty while the node is in no swarm (its default bridge only).
    node_id: std::sync::RwLock<String>,
    mesh: Mesh,
    resolver: Resolver,
    host: HostResolvConf,
    /// The map as last received (applied to the mesh or not).
    map: Mutex<NetworkMap>,
    /// Bumped after each map is applied: workers waiting for their networks watch it.
    applied: watch::Sender<u64>,
    /// The gateway each network's listener is on, by network id.
    listening: Mutex<BTreeMap<String, Ipv4Addr>>,
    /// Updates for the follower, which applies them in order, off the session's loop (whose
    /// heartbeats must not wait for devices to change).
    updates: mpsc::UnboundedSender<NetworkMapUpdate>,
    /// The routing mesh's proxy, with the address it connects from (this node's on the
    /// ingress network); none while the node has no address there.
    proxy: Mutex<Option<(Ipv4Addr, Proxy)>>,
    shutdown: CancellationToken,
}

/// Whether this node's containers have networks.
#[derive(Clone)]
pub enum Networks {
    /// The node's networks.
    On(Arc<NodeNetwork>),
    /// None, by design: the node is advertised on loopback (a swarm confined to one host's
    /// namespace, shared with others, as in tests): containers get loopback only.
    Loopback,
    /// None: they could not be opened, for this reason. Tasks attached to networks are
    /// rejected with it.
    Failed(String),
}

impl Networks {
    /// The node's networks, if it has them.
    pub fn get(&self) -> Option<&Arc<NodeNetwork>> {
        match self {
            Networks::On(n) => Some(n),
            Networks::Loopback | Networks::Failed(_) => None,
        }
    }
}

/// What a task's container gets from its networks.
pub struct TaskNetwork {
    /// The sandbox's namespace, for the runtime to join.
    pub netns: PathBuf,
    pub resolv_conf: String,
    /// Its own addresses under its host name, for `/etc/hosts`.
    pub hosts: Vec<String>,
    pub interfaces: Vec<Interface>,
}

impl NodeNetwork {
    /// Opens the node's mesh (re-adopting what a previous daemon made) and starts its resolver.
    /// `underlay` is the node's advertised address.
    pub async fn open(
        state_dir: &Path,
        node_id: &str,
        underlay: Ipv4Addr,
        shutdown: CancellationToken,
    ) -> Result<Arc<NodeNetwork>, String> {
        let mesh = Mesh::open(MeshConfig {
            state_dir: state_dir.to_path_buf(),
            node_id: node_id.to_string(),
            underlay,
            gateway_subnet: None,
            default_subnet: None,
        })
        .await
        .map_err(|e| e.to_string())?;
        let resolv = Path::new("/etc/resolv.conf");
        let config = ResolverConfig::from_host(resolv).map_err(|e| e.to_string())?;
        let host = HostResolvConf::read(resolv).unwrap_or_default();
        let (updates, rx) = mpsc::unbounded_channel();
        let network = Arc::new(NodeNetwork {
            node_id: std::sync::RwLock::new(node_id.to_string()),
            mesh,
            resolver: Resolver::start(config, shutdown.clone()),
            host,
            map: Mutex::new(NetworkMap::default()),
            applied: watch::channel(0).0,
            listening: Mutex::new(BTreeMap::new()),
            updates,
            proxy: Mutex::new(None),
            shutdown: shutdown.clone(),
        });
        tokio::spawn(follow(Arc::downgrade(&network), rx, shutdown));
        Ok(network)
    }

    /// The node's id, as the map's endpoints name it.
    pub fn node_id(&self) -> String {
        self.node_id.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The networks of a node in no swarm: its default bridge (made now), no overlays, until
    /// [`NodeNetwork::identify`] gives them the swarm's node id.
    pub async fn open_local(state_dir: &Path, shutdown: CancellationToken) -> Result<Arc<NodeNetwork>, String> {
        let network = NodeNetwork::open(state_dir, "", Ipv4Addr::UNSPECIFIED, shutdown).await?;
        network.mesh.apply(&NetworkMap::default()).await.map_err(|e| e.to_string())?;
        Ok(network)
    }

    /// The node joined a swarm as `node_id`, advertised at `underlay`: the networks opened in
    /// no swarm (their standalone containers keep their places) now take the swarm's.
    pub async fn identify(&self, node_id: &str, underlay: Ipv4Addr) -> Result<(), String> {
        self.mesh.identify(node_id, underlay).await.map_err(|e| e.to_string())?;
        *self.node_id.write().unwrap_or_else(|e| e.into_inner()) = node_id.to_string();
        Ok(())
    }

    /// The map as last received.
    pub async fn map(&self) -> NetworkMap {
        self.map.lock().await.clone()
    }

    /// Sandbox `task_id`'s (a task's or a standalone container's) interfaces on overlay
    /// networks and the default bridge (`bridge`), with each network's id and name, in the
    /// order they were made (`docker inspect`'s `NetworkSettings.Networks`).
    pub async fn task_interfaces(&self, task_id: &str) -> Vec<(String, String, Interface)> {
        let Ok(interfaces) = self.mesh.interfaces(task_id).await else { return Vec::new() };
        let map = self.map.lock().await;
        interfaces
            .into_iter()
            .filter_map(|i| match &i.on {
                shoal_mesh::PortOn::Network { network_id } => {
                    let name = map.networks.get(network_id).map(|n| n.name.clone()).unwrap_or_default();
                    Some((network_id.clone(), name, i))
                }
                shoal_mesh::PortOn::Local { bridge: shoal_mesh::LocalBridge::Default } => {
                    Some(("bridge".to_string(), "bridge".to_string(), i))
                }
                shoal_mesh::PortOn::Local { .. } => None,
            })
            .collect()
    }

    /// The mesh, for what the daemon does with it directly (standalone containers, `swarm leave`).
    pub fn mesh(&self) -> &Mesh {
        &self.mesh
    }

    /// Takes an update of the map from the managers, to be applied in the order given, soon
    /// after (see [`NodeNetwork::converge`]).
    pub fn update(&self, update: NetworkMapUpdate) {
        // The follower only stops with the node's network.
        let _ = self.updates.send(update);
    }

    /// Applies updates of the map in order and converges the node to the result: devices and
    /// rules, the resolver's answers and where it listens. An update that does not read is
    /// refused whole; a map the mesh cannot apply is logged and applied again with the next
    /// update.
    async fn converge(&self, updates: Vec<NetworkMapUpdate>) -> bool {
        // Held until the mesh has applied it: a worker that finds its network in the map
        // finds its devices too.
        let mut map = self.map.lock().await;
        for update in &updates {
            if let Err(e) = map.apply(update) {
                tracing::warn!(error = %e, "the managers sent a network map that does not read; kept the last one");
            }
        }
        let applied = match self.mesh.apply(&map).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "applying the network map failed; trying again");
                false
            }
        };
        self.resolver.set_map(&map);
        let mut listening = self.listening.lock().await;
        let stale: Vec<String> = listening.keys().filter(|id| !map.networks.contains_key(*id)).cloned().collect();
        for id in stale {
            self.resolver.unlisten(&id).await;
            listening.remove(&id);
        }
        // Nothing resolves on the ingress network: no resolver listens there.
        for (id, network) in map.networks.iter().filter(|(_, n)| !n.ingress) {
            if listening.get(id) == Some(&network.gateway) {
                continue;
            }
            match self.resolver.listen(id, network.gateway).await {
                Ok(()) => {
                    listening.insert(id.clone(), network.gateway);
                }
                Err(e) => tracing::warn!(network = %network.name, error = %e, "the network's resolver cannot listen"),
            }
        }
        if applied {
            self.serve_published(&map).await;
        }
        self.applied.send_modify(|n| *n += 1);
        applied
    }

    /// Has the routing mesh's proxy serve what `map` publishes (see [`published_table`]); a
    /// port it cannot listen on is reported here, on this node.
    async fn serve_published(&self, map: &NetworkMap) {
        let wanted = published_table(map, &self.node_id());
        let mut proxy = self.proxy.lock().await;
        let Some((source, table)) = wanted else {
            // No port published, or no address here yet: nothing listens.
            if let Some((_, p)) = proxy.take() {
                p.set(Vec::new()).await;
            }
            return;
        };
        if proxy.as_ref().is_some_and(|(s, _)| *s != source) {
            if let Some((_, p)) = proxy.take() {
                p.set(Vec::new()).await;
            }
        }
        let (_, p) = proxy.get_or_insert_with(|| {
            let config = ProxyConfig { source: Some(source), ..ProxyConfig::default() };
            (source, Proxy::new(config, self.shutdown.child_token()))
        });
        for error in p.set(table).await {
            tracing::error!(%error, "routing mesh: a published port is not served on this node");
        }
    }

    /// Gives `task`'s container its sandbox: on the task's networks (`eth0`, `eth1`, … in its
    /// order) with the gateway bridge for the way out, or on the node's default bridge when
    /// the task has no network. Idempotent: a re-adopted task's sandbox is kept as it is.
    pub async fn prepare(&self, task: &Task, hostname: &str) -> Result<TaskNetwork, String> {
        let dns_config = task.spec.as_ref().and_then(|s| s.container.as_ref()).and_then(|c| c.dns.clone());
        let dns_config = dns_config.unwrap_or_default();
        let mut attachments = Vec::new();
        for n in &task.networks {
            let addr =
                n.addresses.first().ok_or_else(|| format!("the task has no address on network {}", n.network_id))?;
            let addr: Cidr =
                addr.parse().map_err(|e| format!("the task's address {addr} on network {}: {e}", n.network_id))?;
            attachments.push(Attachment { network_id: n.network_id.clone(), addr });
        }
        let made = self.prepare_sandbox(&task.id, &attachments, &dns_config, hostname).await;
        if made.is_err() {
            self.release(task).await;
        }
        made
    }

    /// Gives a standalone container's sandbox `id` its place on an attachable network: the
    /// address the managers gave its attachment (`addr`, CIDR), the network's resolver.
    pub async fn prepare_standalone(
        &self,
        id: &str,
        network_id: &str,
        addr: &str,
        dns_config: &shoal_proto::DnsConfig,
        hostname: &str,
    ) -> Result<TaskNetwork, String> {
        let addr: Cidr = addr.parse().map_err(|e| format!("the container's address {addr}: {e}"))?;
        let attachments = [Attachment { network_id: network_id.to_string(), addr }];
        let made = self.prepare_sandbox(id, &attachments, dns_config, hostname).await;
        if made.is_err() {
            self.resolver.forget(addr.addr);
            self.remove_sandbox(id).await;
        }
        made
    }

    /// Gives a standalone container's sandbox `id` its place on the node's default bridge
    /// (Docker's `bridge`), with the node's resolvers.
    pub async fn prepare_bridge(
        &self,
        id: &str,
        dns_config: &shoal_proto::DnsConfig,
        hostname: &str,
    ) -> Result<TaskNetwork, String> {
        let made = self.prepare_sandbox(id, &[], dns_config, hostname).await;
        if made.is_err() {
            self.remove_sandbox(id).await;
        }
        made
    }

    /// Connects the running standalone container's sandbox `id` to one more network: an
    /// attachable overlay (`network_id`, with the address the managers gave, CIDR) or, with
    /// `None`, the default bridge. Its interface comes after those it has.
    pub async fn connect_standalone(&self, id: &str, to: Option<(&str, &str)>) -> Result<Interface, String> {
        if self.mesh.sandbox_path(id).await.is_none() {
            return Err(format!("its network sandbox {id} is gone"));
        }
        let Some((network_id, addr)) = to else {
            return self.mesh.connect_default_bridge(id).await.map_err(|e| e.to_string());
        };
        let addr: Cidr = addr.parse().map_err(|e| format!("the container's address {addr}: {e}"))?;
        let attachments = [Attachment { network_id: network_id.to_string(), addr }];
        self.wait_for(&attachments).await?;
        let interfaces = self.mesh.connect(id, &attachments).await.map_err(|e| e.to_string())?;
        interfaces
            .into_iter()
            .find(|i| i.addr == addr)
            .ok_or_else(|| format!("network {network_id}: the sandbox has no interface with {addr} once connected"))
    }

    /// What standalone sandbox `id`'s `resolv.conf` becomes once `joined` (its new interface
    /// on an overlay network) is made, given the file it has (`current`). On its first overlay
    /// network, as when Docker's `network connect` starts its embedded resolver, it names that
    /// network's resolver, which forwards to the servers the file named (the node's own when
    /// they were the node's) and keeps its search domains. `None`: it already asks an overlay
    /// network's resolver, which answers the new network's names as well.
    pub async fn resolv_conf_on_connect(
        &self,
        id: &str,
        joined: &Interface,
        current: &str,
    ) -> Result<Option<String>, String> {
        let conf = HostResolvConf::parse(current);
        let interfaces = self.mesh.interfaces(id).await.map_err(|e| e.to_string())?;
        let asks_overlay = interfaces.iter().any(|i| {
            i.addr != joined.addr
                && matches!(i.on, PortOn::Network { .. })
                && conf.nameservers.contains(&IpAddr::V4(i.gateway))
        });
        if asks_overlay {
            return Ok(None);
        }
        let node_default = dns::bridge_resolv_conf(&DnsConfig::default(), &self.host).map_err(|e| e.to_string())?;
        let servers: Vec<String> = if conf.nameservers == HostResolvConf::parse(&node_default).nameservers {
            Vec::new()
        } else {
            // The resolver forwards from the node: a loopback server there is not the
            // container's, so it is dropped rather than refused (the container is connected).
            let reachable = |ip: &&IpAddr| !(ip.is_loopback() || ip.is_unspecified() || ip.is_multicast());
            conf.nameservers.iter().filter(reachable).map(ToString::to_string).collect()
        };
        let config = DnsConfig { nameservers: servers, search: conf.search, options: conf.options };
        let forwarders = dns::container_forwarders(&config).map_err(|e| e.to_string())?;
        let resolv = dns::resolv_conf(joined.gateway, &config, &self.host).map_err(|e| e.to_string())?;
        self.resolver.set_forwarders(joined.addr.addr, forwarders).map_err(|e| e.to_string())?;
        self.resolver.set_search(joined.addr.addr, &config.search).map_err(|e| e.to_string())?;
        Ok(Some(resolv))
    }

    /// What standalone sandbox `id`'s `resolv.conf` becomes once it leaves the network of
    /// `leaving` (its interface there), given the file it has (`current`). When the file names
    /// that network's resolver: the resolver of the next overlay network it stays on, which
    /// takes over the container's forwarders and search domains, or, on none, those
    /// forwarders themselves (the node's resolvers when there were none), as on the default
    /// bridge. `None`: the file stays as it is.
    pub async fn resolv_conf_on_disconnect(
        &self,
        id: &str,
        leaving: &Interface,
        current: &str,
    ) -> Result<Option<String>, String> {
        let conf = HostResolvConf::parse(current);
        if !conf.nameservers.contains(&IpAddr::V4(leaving.gateway)) {
            return Ok(None);
        }
        let (forwarders, search) = self.resolver.settings(leaving.addr.addr);
        let interfaces = self.mesh.interfaces(id).await.map_err(|e| e.to_string())?;
        let next = interfaces.iter().find(|i| i.addr != leaving.addr && matches!(i.on, PortOn::Network { .. }));
        let nameservers = forwarders.iter().map(|s| s.ip().to_string()).collect();
        let resolv = match next {
            Some(next) => {
                let config = DnsConfig { nameservers, search: search.clone(), options: conf.options };
                self.resolver.set_forwarders(next.addr.addr, forwarders).map_err(|e| e.to_string())?;
                self.resolver.set_search(next.addr.addr, &search).map_err(|e| e.to_string())?;
                dns::resolv_conf(next.gateway, &config, &self.host)
            }
            None => {
                // `ndots:0` is the mesh resolver's (it answers bare names); gone with it.
                let options = conf.options.into_iter().filter(|o| o != "ndots:0" || self.host.options.contains(o));
                let config = DnsConfig { nameservers, search, options: options.collect() };
                dns::bridge_resolv_conf(&config, &self.host)
            }
        };
        resolv.map(Some).map_err(|e| e.to_string())
    }

    /// Disconnects standalone sandbox `id` from overlay `network_id` (or, with `None`, the
    /// default bridge); the resolver forgets the address it had there. Nothing if it is not on it.
    pub async fn disconnect_standalone(&self, id: &str, network_id: Option<&str>) -> Result<(), String> {
        let interfaces = self.mesh.interfaces(id).await.map_err(|e| e.to_string())?;
        match network_id {
            Some(network_id) => {
                let on = shoal_mesh::PortOn::Network { network_id: network_id.to_string() };
                for i in interfaces.iter().filter(|i| i.on == on) {
                    self.resolver.forget(i.addr.addr);
                }
                self.mesh.disconnect(id, network_id).await.map_err(|e| e.to_string())
            }
            None => self.mesh.disconnect_default_bridge(id).await.map_err(|e| e.to_string()),
        }
    }

    /// Sandbox `id`'s interfaces, in the order they were made.
    pub async fn interfaces(&self, id: &str) -> Vec<Interface> {
        self.mesh.interfaces(id).await.unwrap_or_default()
    }

    /// Sandbox `id` on `attachments` (or the default bridge when there are none), with the
    /// resolver set up for its addresses.
    async fn prepare_sandbox(
        &self,
        id: &str,
        attachments: &[Attachment],
        dns_config: &shoal_proto::DnsConfig,
        hostname: &str,
    ) -> Result<TaskNetwork, String> {
        let netns = self.mesh.create_sandbox(id).await.map_err(|e| e.to_string())?;
        let made = async {
            if attachments.is_empty() {
                let interface = match self.mesh.interfaces(id).await.map_err(|e| e.to_string())?.into_iter().next() {
                    Some(i) => i,
                    None => self.mesh.connect_default_bridge(id).await.map_err(|e| e.to_string())?,
                };
                let resolv = dns::bridge_resolv_conf(dns_config, &self.host).map_err(|e| e.to_string())?;
                return Ok::<_, String>((vec![interface], resolv));
            }
            self.wait_for(attachments).await?;
            let interfaces = self.mesh.connect(id, attachments).await.map_err(|e| e.to_string())?;
            // The resolver of its first network that has one (none listens on the ingress
            // network); on the ingress network alone, the node's resolvers.
            let ingress: Vec<String> =
                self.map.lock().await.networks.values().filter(|n| n.ingress).map(|n| n.id.clone()).collect();
            let first = interfaces.iter().find(|i| match &i.on {
                PortOn::Network { network_id } => !ingress.contains(network_id),
                PortOn::Local { .. } => false,
            });
            let resolv = match first {
                Some(first) => dns::resolv_conf(first.gateway, dns_config, &self.host),
                None => dns::bridge_resolv_conf(dns_config, &self.host),
            }
            .map_err(|e| e.to_string())?;
            let forwarders = dns::container_forwarders(dns_config).map_err(|e| e.to_string())?;
            for i in interfaces.iter().filter(|i| attachments.iter().any(|a| a.addr == i.addr)) {
                self.resolver.set_forwarders(i.addr.addr, forwarders.clone()).map_err(|e| e.to_string())?;
                self.resolver.set_search(i.addr.addr, &dns_config.search).map_err(|e| e.to_string())?;
            }
            Ok((interfaces, resolv))
        }
        .await;
        let (interfaces, resolv_conf): (Vec<Interface>, String) = made?;
        let hosts = interfaces
            .iter()
            .filter(|_| !hostname.is_empty())
            .take(1)
            .map(|i| format!("{} {hostname}", i.addr.addr))
            .collect();
        Ok(TaskNetwork { netns, resolv_conf, hosts, interfaces })
    }

    /// Waits until the applied map carries every network of `attachments`.
    async fn wait_for(&self, attachments: &[Attachment]) -> Result<(), String> {
        let mut applied = self.applied.subscribe();
        let deadline = tokio::time::Instant::now() + MAP_WAIT;
        loop {
            applied.borrow_and_update();
            let missing = {
                let map = self.map.lock().await;
                attachments.iter().find(|a| !map.networks.contains_key(&a.network_id)).map(|a| a.network_id.clone())
            };
            let Some(missing) = missing else { return Ok(()) };
            if tokio::time::timeout_at(deadline, applied.changed()).await.is_err() {
                return Err(format!(
                    "network {missing} of the task is not in this node's network map after {}s",
                    MAP_WAIT.as_secs()
                ));
            }
        }
    }

    /// Takes `task`'s sandbox away (its interfaces and namespace) and the resolver's settings
    /// for its addresses. Nothing if it has none.
    pub async fn release(&self, task: &Task) {
        for n in &task.networks {
            if let Some(addr) = n.addresses.first().and_then(|a| a.parse::<Cidr>().ok()) {
                self.resolver.forget(addr.addr);
            }
        }
        self.remove_sandbox(&task.id).await;
    }

    /// Takes standalone sandbox `id` away, with the resolver's settings for its addresses.
    pub async fn release_standalone(&self, id: &str) {
        for i in self.mesh.interfaces(id).await.unwrap_or_default() {
            self.resolver.forget(i.addr.addr);
        }
        self.remove_sandbox(id).await;
    }

    async fn remove_sandbox(&self, id: &str) {
        if let Err(e) = self.mesh.remove_sandbox(id).await {
            tracing::warn!(sandbox = %id, error = %e, "removing a task's network sandbox failed");
        }
    }

    /// Removes the sandboxes of tasks that are not in `keep` (tasks no longer assigned here).
    pub async fn remove_other_sandboxes(&self, keep: &std::collections::HashSet<String>) {
        for id in self.mesh.sandboxes().await {
            if !keep.contains(&id) && !id.starts_with(STANDALONE_PREFIX) {
                self.remove_sandbox(&id).await;
            }
        }
    }
}

/// Applies the updates `rx` gets, all those waiting at once, until the node's network is
/// dropped or `shutdown` is cancelled.
async fn follow(
    network: std::sync::Weak<NodeNetwork>,
    mut rx: mpsc::UnboundedReceiver<NetworkMapUpdate>,
    shutdown: CancellationToken,
) {
    let mut failed = false;
    loop {
        // After a failure, the same map again in a second if no update comes first.
        let retry = async {
            if failed {
                tokio::time::sleep(RETRY).await
            } else {
                std::future::pending().await
            }
        };
        let mut batch = tokio::select! {
            u = rx.recv() => match u {
                Some(u) => vec![u],
                None => return,
            },
            () = retry => Vec::new(),
            () = shutdown.cancelled() => return,
        };
        while let Ok(u) = rx.try_recv() {
            batch.push(u);
        }
        let Some(network) = network.upgrade() else { return };
        failed = !network.converge(batch).await;
    }
}

/// The routing mesh's table in `map` for node `node_id`: every port the services on the
/// ingress network publish, each to the ready tasks' addresses there (on any node), with the
/// address this node connects to them from (its own on the ingress network). `None` when
/// nothing is published or this node has no address there yet.
pub fn published_table(map: &NetworkMap, node_id: &str) -> Option<(Ipv4Addr, Vec<PublishedPort>)> {
    let ingress = map.networks.values().find(|n| n.ingress)?;
    let source = map.endpoints_on(&ingress.id).find(|e| e.node && e.node_id == node_id)?.addr.addr;
    let mut table = Vec::new();
    for service in map.services_on(&ingress.id) {
        for port in &service.ports {
            let backends = map
                .backends(&ingress.id, &service.service_id)
                .map(|e| SocketAddrV4::new(e.addr.addr, port.target))
                .collect();
            table.push(PublishedPort {
                port: port.published,
                protocol: port.protocol,
                proxy_protocol: port.proxy_protocol,
                backends,
            });
        }
    }
    (!table.is_empty()).then_some((source, table))
}

/// How soon a map the mesh could not apply is applied again.
const RETRY: Duration = Duration::from_secs(1);

/// The sandboxes of standalone containers are named with this prefix, tasks' by task id.
pub const STANDALONE_PREFIX: &str = "c-";
