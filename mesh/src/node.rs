//! One node's data plane ([`Mesh`]): the API the agent drives. It converges the node to a
//! [`NetworkMap`] ([`Mesh::apply`]) and makes, connects and removes sandboxes as the agent's
//! containers come and go. Every operation is idempotent and leaves the node converged or,
//! when it fails, as it was before the call as far as the call's own changes go; a new
//! `Mesh` on the same state directory (after a restart, even a `kill -9`) re-adopts what
//! exists and the next `apply` repairs whatever differs.
//!
//! Operations are serialised by one lock: they are short, and a map being applied and a
//! sandbox being connected never interleave.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use tokio::sync::Mutex;

use crate::{
    error::MeshError,
    gateway::{self, LocalBridge, LocalSubnets},
    map::{Cidr, NetworkMap},
    names::{self, VXLAN_OVERHEAD},
    netlink::{Link, Netlink},
    netns::{self, NetNs},
    nft,
    overlay::{self, OverlayPlan},
    sandbox::{self, Port, PortOn, SandboxRecord},
    state::{self, StateDir},
};

/// How the node's data plane is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshConfig {
    /// Where the mesh keeps its state (`<data-root>/mesh`); absolute.
    pub state_dir: PathBuf,
    /// This node's id, as the map's endpoints name it: endpoints with another are remote.
    pub node_id: String,
    /// The node's address on the underlay (its advertised address): the local end of every
    /// VXLAN device, and whose interface's MTU the overlays are sized from.
    pub underlay: Ipv4Addr,
    /// The gateway bridge's subnet; `None` chooses a free private one once.
    pub gateway_subnet: Option<Cidr>,
    /// The default bridge's subnet; `None` chooses a free private one once.
    pub default_subnet: Option<Cidr>,
}

/// A network and address to connect a sandbox to (a task's attachment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub network_id: String,
    /// The endpoint's address with its network's prefix (`10.0.1.5/24`).
    pub addr: Cidr,
}

/// An interface of a sandbox, as the agent reports it (`docker inspect`'s networks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its name inside (`eth0`).
    pub name: String,
    pub on: PortOn,
    pub addr: Cidr,
    /// `02:42:…`.
    pub mac: String,
    /// Its gateway: the network's (where the DNS answers) or the local bridge's.
    pub gateway: Ipv4Addr,
}

/// The node's data plane.
pub struct Mesh {
    inner: Mutex<Inner>,
    state_dir: PathBuf,
}

struct Inner {
    config: MeshConfig,
    state: StateDir,
    _lock: fs::File,
    node_ns: NetNs,
    nl: Netlink,
    /// The underlay interface's MTU: local bridges and their ports use it, overlays
    /// [`VXLAN_OVERHEAD`] less.
    mtu: u32,
    local: LocalSubnets,
    /// The last map applied (empty before the first).
    map: NetworkMap,
    sandboxes: BTreeMap<String, SandboxRecord>,
    /// The load-balancing batch last applied in each sandbox.
    lb: HashMap<String, String>,
    /// Sandboxes whose inside has been checked since this `Mesh` opened.
    verified: HashSet<String>,
    /// [`Mesh::remove_all`] emptied the state directory: the next change makes it again.
    removed: bool,
}

/// What the node's state file holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct NodeState {
    local: LocalSubnets,
}

impl Mesh {
    /// Opens the data plane of the node whose network namespace is the calling thread's:
    /// takes the state directory, re-adopts the sandboxes whose namespaces still exist and
    /// forgets those that do not (after a reboot). Changes no device: [`Mesh::apply`] does.
    pub async fn open(config: MeshConfig) -> Result<Mesh, MeshError> {
        if config.node_id.is_empty() != config.underlay.is_unspecified() {
            return Err(MeshError::Invalid(
                "the mesh needs this node's id and underlay address, or neither (a node in no swarm)".into(),
            ));
        }
        let state = StateDir::create(&config.state_dir)?;
        let lock = state.lock()?;
        let node_ns = NetNs::current()?;
        let nl = Netlink::open(&node_ns).await?;

        let addresses = nl.all_addresses().await?;
        let links = nl.links().await?;
        let mtu = if config.underlay.is_unspecified() {
            // In no swarm: the local bridges take the MTU of the way out.
            let routes = nl.routes().await?;
            let out = routes.iter().find(|r| r.destination.prefix == 0).and_then(|r| r.oif);
            out.and_then(|o| links.iter().find(|l| l.index == o)).map_or(1500, |l| l.mtu)
        } else {
            underlay_mtu(&addresses, &links, config.underlay)?
        };

        let local = match state::read::<NodeState>(&state.node_file())? {
            Some(saved) => saved.local,
            None => {
                let ours = [LocalBridge::Gateway.name(), LocalBridge::Default.name()];
                let our_indexes: Vec<u32> =
                    links.iter().filter(|l| ours.contains(&l.name.as_str())).map(|l| l.index).collect();
                let mut taken: Vec<Cidr> =
                    addresses.iter().filter(|(i, _)| !our_indexes.contains(i)).map(|(_, c)| c.network()).collect();
                taken.extend(
                    nl.routes()
                        .await?
                        .into_iter()
                        .filter(|r| r.oif.is_none_or(|o| !our_indexes.contains(&o)))
                        .map(|r| r.destination),
                );
                let local = gateway::choose(config.gateway_subnet, config.default_subnet, &taken)?;
                state::write(&state.node_file(), &NodeState { local })?;
                local
            }
        };

        let mut sandboxes = BTreeMap::new();
        let mut records = Vec::new();
        for entry in fs::read_dir(state.sandboxes_dir()).map_err(|e| MeshError::io("listing sandboxes", e))? {
            let entry = entry.map_err(|e| MeshError::io("listing sandboxes", e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".json") {
                records.push(id.to_string());
            } else {
                // A record torn by a crash before its rename.
                let _ = fs::remove_file(entry.path());
            }
        }
        for id in records {
            let path = state.record(&id)?;
            let record: SandboxRecord = match state::read(&path) {
                Ok(Some(record)) => record,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!("forgetting a sandbox whose record does not read: {e}");
                    SandboxRecord { id: id.clone(), ports: Vec::new() }
                }
            };
            let ns = state.netns(&id)?;
            if netns::is_bound(&ns) && record.id == id {
                sandboxes.insert(id, record);
            } else {
                // Its namespace is gone (a reboot): so are its devices but for any host side
                // left behind.
                for port in &record.ports {
                    sandbox::detach(&nl, port).await?;
                }
                netns::unbind(&ns)?;
                state::remove(&path)?;
            }
        }
        for entry in fs::read_dir(state.netns_dir()).map_err(|e| MeshError::io("listing sandbox namespaces", e))? {
            let entry = entry.map_err(|e| MeshError::io("listing sandbox namespaces", e))?;
            let id = entry.file_name().to_string_lossy().into_owned();
            if !sandboxes.contains_key(&id) {
                netns::unbind(&entry.path())?;
            }
        }

        Ok(Mesh {
            state_dir: state.root().to_path_buf(),
            inner: Mutex::new(Inner {
                config,
                state,
                _lock: lock,
                node_ns,
                nl,
                mtu,
                local,
                map: NetworkMap::default(),
                sandboxes,
                lb: HashMap::new(),
                verified: HashSet::new(),
                removed: false,
            }),
        })
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The local bridges' subnets.
    pub async fn local_subnets(&self) -> LocalSubnets {
        self.inner.lock().await.local
    }

    /// Converges the node to `map`: per network a bridge with the gateway address and a VXLAN
    /// device with an entry for every remote endpoint; the local bridges; the isolation and
    /// NAT rules; every sandbox's ports (those on networks no longer in the map removed, the
    /// gateway port added or removed as its networks need) and load-balancing rules; devices
    /// and rules of networks no longer in the map removed. A map that does not fit (two
    /// networks with one VNI, an endpoint outside its subnet…) is refused before anything
    /// changes.
    ///
    /// Apply only maps the managers sent: an empty map removes every network.
    pub async fn apply(&self, map: &NetworkMap) -> Result<(), MeshError> {
        let mut inner = self.inner.lock().await;
        inner.apply(map).await
    }

    /// Gives a mesh opened in no swarm (no node id, no underlay) the node's id and underlay
    /// address once the node joins one; the same identity again is no change, another one
    /// is refused (a node's mesh is for one swarm membership: leaving empties it).
    pub async fn identify(&self, node_id: &str, underlay: Ipv4Addr) -> Result<(), MeshError> {
        let mut inner = self.inner.lock().await;
        if inner.config.node_id == node_id && inner.config.underlay == underlay {
            return Ok(());
        }
        if !inner.config.node_id.is_empty() || node_id.is_empty() {
            return Err(MeshError::Invalid(format!(
                "the mesh is node {:?}'s: it cannot become node {node_id:?}'s",
                inner.config.node_id
            )));
        }
        let addresses = inner.nl.all_addresses().await?;
        let links = inner.nl.links().await?;
        let mtu = underlay_mtu(&addresses, &links, underlay)?;
        inner.config.node_id = node_id.to_string();
        inner.config.underlay = underlay;
        inner.mtu = mtu;
        Ok(())
    }

    /// Makes a sandbox (a network namespace with loopback up) and returns the path to hand
    /// the runtime; one that exists is returned as it is.
    pub async fn create_sandbox(&self, id: &str) -> Result<PathBuf, MeshError> {
        let mut inner = self.inner.lock().await;
        let path = inner.state.netns(id)?;
        inner.restore_state()?;
        if inner.sandboxes.contains_key(id) {
            return Ok(path);
        }
        let record_path = inner.state.record(id)?;
        let record = SandboxRecord { id: id.to_string(), ports: Vec::new() };
        state::write(&record_path, &record)?;
        let made = async {
            netns::create_bound(&path).await?;
            let ns = NetNs::open(&path, &format!("sandbox {id}"))?;
            sandbox::disable_ipv6(&ns).await?;
            sandbox::loopback_up(&Netlink::open(&ns).await?).await
        }
        .await;
        if let Err(e) = made {
            let _ = netns::unbind(&path);
            let _ = state::remove(&record_path);
            return Err(e);
        }
        inner.sandboxes.insert(id.to_string(), record);
        inner.verified.insert(id.to_string());
        Ok(path)
    }

    /// The path of sandbox `id`'s namespace, if it exists.
    pub async fn sandbox_path(&self, id: &str) -> Option<PathBuf> {
        let inner = self.inner.lock().await;
        inner.sandboxes.contains_key(id).then(|| inner.state.netns(id).ok()).flatten()
    }

    /// The ids of the sandboxes on this node (for the agent to remove those of tasks that are
    /// gone).
    pub async fn sandboxes(&self) -> Vec<String> {
        self.inner.lock().await.sandboxes.keys().cloned().collect()
    }

    /// Sandbox `id`'s interfaces, in the order they were made.
    pub async fn interfaces(&self, id: &str) -> Result<Vec<Interface>, MeshError> {
        let inner = self.inner.lock().await;
        let record = inner.sandboxes.get(id).ok_or_else(|| MeshError::NoSandbox(id.to_string()))?;
        Ok(record.ports.iter().map(|p| inner.interface(p)).collect())
    }

    /// Connects sandbox `id` to overlay networks of the applied map, in the order given
    /// (`eth0`, `eth1`, … after those it has), then to the gateway bridge if one of its
    /// networks is not internal and it is not on the default bridge, with the default route
    /// through it. A network it is on with the same address is left as it is. All or nothing.
    pub async fn connect(&self, id: &str, attachments: &[Attachment]) -> Result<Vec<Interface>, MeshError> {
        let mut inner = self.inner.lock().await;
        inner.connect(id, attachments).await
    }

    /// Connects sandbox `id` to the default bridge (Docker's `bridge` network) with an
    /// address of its own, the default route through it.
    pub async fn connect_default_bridge(&self, id: &str) -> Result<Interface, MeshError> {
        let mut inner = self.inner.lock().await;
        inner.connect_local(id, LocalBridge::Default).await
    }

    /// Disconnects sandbox `id` from network `network_id` (nothing if it is not on it).
    pub async fn disconnect(&self, id: &str, network_id: &str) -> Result<(), MeshError> {
        let mut inner = self.inner.lock().await;
        inner.disconnect(id, &PortOn::Network { network_id: network_id.to_string() }).await
    }

    /// Disconnects sandbox `id` from the default bridge.
    pub async fn disconnect_default_bridge(&self, id: &str) -> Result<(), MeshError> {
        let mut inner = self.inner.lock().await;
        inner.disconnect(id, &PortOn::Local { bridge: LocalBridge::Default }).await
    }

    /// Removes sandbox `id`: its ports and namespace (which ends once no process is in it).
    /// One that does not exist is no error.
    pub async fn remove_sandbox(&self, id: &str) -> Result<(), MeshError> {
        let mut inner = self.inner.lock().await;
        inner.remove_sandbox(id).await
    }

    /// Removes everything the mesh made on this node: sandboxes, devices, rules and state
    /// (`swarm leave`, `lab down`); only the state directory's lock is left, for the caller to
    /// remove once this `Mesh` is dropped. A later `apply` builds it all again.
    pub async fn remove_all(&self) -> Result<(), MeshError> {
        let mut inner = self.inner.lock().await;
        inner.remove_all().await
    }
}

/// The MTU of the interface holding `underlay`, checked to leave room for VXLAN.
fn underlay_mtu(addresses: &[(u32, Cidr)], links: &[Link], underlay: Ipv4Addr) -> Result<u32, MeshError> {
    let Some(&(underlay_index, _)) = addresses.iter().find(|(_, c)| c.addr == underlay) else {
        return Err(MeshError::Invalid(format!(
            "the underlay address {underlay} is on no interface of this node: give the node's own address"
        )));
    };
    let mtu = links.iter().find(|l| l.index == underlay_index).map_or(1500, |l| l.mtu);
    if mtu < 576 + VXLAN_OVERHEAD {
        return Err(MeshError::Invalid(format!(
            "the underlay's MTU {mtu} leaves too little room for VXLAN: give an underlay with an MTU of at least {}",
            576 + VXLAN_OVERHEAD
        )));
    }
    Ok(mtu)
}

impl Inner {
    fn overlay_mtu(&self) -> u32 {
        self.mtu - VXLAN_OVERHEAD
    }

    fn interface(&self, port: &Port) -> Interface {
        let gateway = match &port.on {
            PortOn::Network { network_id } => {
                self.map.networks.get(network_id).map_or(Ipv4Addr::UNSPECIFIED, |n| n.gateway)
            }
            PortOn::Local { bridge } => gateway::bridge_address(self.local.of(*bridge)).addr,
        };
        Interface {
            name: port.ifname.clone(),
            on: port.on.clone(),
            addr: port.addr,
            mac: names::mac_string(&names::mac(port.addr.addr)),
            gateway,
        }
    }

    /// Checks that `map` fits this node before anything is changed for it.
    fn check(&self, map: &NetworkMap) -> Result<(), MeshError> {
        let bad = |why: String| Err(MeshError::Invalid(format!("network map refused: {why}; nothing was changed")));
        let mut vnis: BTreeMap<u32, &str> = BTreeMap::new();
        let networks: Vec<_> = map.networks.values().collect();
        for (i, network) in networks.iter().enumerate() {
            if let Some(other) = vnis.insert(network.vni, &network.id) {
                return bad(format!("networks {other} and {} have the same VNI {}", network.id, network.vni));
            }
            if network.subnet.prefix > 30 || network.subnet.prefix == 0 {
                return bad(format!("network {}'s subnet {} is not between /1 and /30", network.id, network.subnet));
            }
            for local in [LocalBridge::Gateway, LocalBridge::Default] {
                let subnet = self.local.of(local);
                if overlap(network.subnet, subnet) {
                    return bad(format!(
                        "network {}'s subnet {} overlaps this node's {} subnet {subnet}",
                        network.id,
                        network.subnet,
                        local.name()
                    ));
                }
            }
            for other in &networks[i + 1..] {
                if overlap(network.subnet, other.subnet) {
                    return bad(format!(
                        "the subnets of networks {} and {} overlap ({} and {})",
                        network.id, other.id, network.subnet, other.subnet
                    ));
                }
            }
        }
        let mut addresses: BTreeMap<(&str, Ipv4Addr), &str> = BTreeMap::new();
        for endpoint in map.endpoints.values() {
            let Some(network) = map.networks.get(&endpoint.network_id) else { continue };
            let addr = endpoint.addr.addr;
            if !network.subnet.contains(addr) || addr == network.gateway || !host_address(network.subnet, addr) {
                return bad(format!(
                    "endpoint {}/{}'s address {addr} is not a host address of subnet {} apart from its gateway",
                    endpoint.network_id, endpoint.task_id, network.subnet
                ));
            }
            if let Some(other) = addresses.insert((&endpoint.network_id, addr), &endpoint.task_id) {
                return bad(format!(
                    "endpoints {other} and {} both have address {addr} on network {}",
                    endpoint.task_id, endpoint.network_id
                ));
            }
        }
        for service in map.services.values() {
            let (Some(network), Some(vip)) = (map.networks.get(&service.network_id), service.vip) else { continue };
            if !network.subnet.contains(vip.addr) || vip.addr == network.gateway {
                return bad(format!(
                    "service {}'s virtual IP {} is outside subnet {} or its gateway",
                    service.service_id, vip.addr, network.subnet
                ));
            }
        }
        Ok(())
    }

    /// Makes the state directory again after [`Inner::remove_all`].
    fn restore_state(&mut self) -> Result<(), MeshError> {
        if self.removed {
            StateDir::create(self.state.root())?;
            state::write(&self.state.node_file(), &NodeState { local: self.local })?;
            self.removed = false;
        }
        Ok(())
    }

    async fn apply(&mut self, map: &NetworkMap) -> Result<(), MeshError> {
        if self.config.node_id.is_empty() && !map.networks.is_empty() {
            return Err(MeshError::Invalid(
                "this node is in no swarm: it has its local bridges only, no overlay networks".into(),
            ));
        }
        self.check(map)?;
        self.restore_state()?;
        let links = self.nl.links().await?;
        let mut bridges: HashMap<LocalBridge, Link> = HashMap::new();
        for local in [LocalBridge::Gateway, LocalBridge::Default] {
            let link = gateway::converge(&self.nl, &links, local, self.local.of(local), self.mtu).await?;
            bridges.insert(local, link);
        }
        for network in map.networks.values() {
            let node_endpoint = map
                .endpoints_on(&network.id)
                .find(|e| e.node && e.node_id == self.config.node_id && network.ingress)
                .map(|e| e.addr.addr);
            let mut plan = OverlayPlan::new(network, node_endpoint, self.config.underlay, self.overlay_mtu());
            for endpoint in map.endpoints_on(&network.id) {
                if endpoint.node_id == self.config.node_id {
                    continue;
                }
                match map.peers.get(&endpoint.node_id) {
                    Some(peer) => {
                        plan.remote.insert(endpoint.addr.addr, *peer);
                    }
                    None => tracing::warn!(
                        network = %network.id,
                        task = %endpoint.task_id,
                        node = %endpoint.node_id,
                        "an endpoint's node is not among the map's peers: it is unreachable until the map has its address"
                    ),
                }
            }
            overlay::converge(&self.nl, &links, &plan).await?;
        }
        self.map = map.clone();

        let links = self.nl.links().await?;
        let ids: Vec<String> = self.sandboxes.keys().cloned().collect();
        for id in &ids {
            self.converge_sandbox(id, &links).await?;
        }

        let wanted_vnis: BTreeSet<u32> = map.networks.values().map(|n| n.vni).collect();
        for link in &links {
            let vni = names::vni_of(&link.name, names::BRIDGE_PREFIX)
                .or_else(|| names::vni_of(&link.name, names::VXLAN_PREFIX));
            if let Some(vni) = vni.filter(|v| !wanted_vnis.contains(v)) {
                overlay::remove(&self.nl, &links, vni).await?;
            }
        }
        let ours: BTreeSet<&str> =
            self.sandboxes.values().flat_map(|r| r.ports.iter().map(|p| p.host.as_str())).collect();
        for link in links.iter().filter(|l| names::is_veth(&l.name) && !ours.contains(l.name.as_str())) {
            self.nl.del_link(link.index, &link.name).await?;
        }

        self.node_ns
            .run("enabling IPv4 forwarding", || {
                let path = "/proc/sys/net/ipv4/ip_forward";
                if fs::read_to_string(path)?.trim() != "1" {
                    fs::write(path, "1")?;
                }
                Ok(())
            })
            .await?;
        self.node_rules().await?;
        for id in &ids {
            self.converge_lb(id).await?;
        }
        Ok(())
    }

    /// The node's nft table and its accepts in iptables' `FORWARD`.
    async fn node_rules(&self) -> Result<(), MeshError> {
        let table = nft::node_table(&nft::NodeRules { map: &self.map, local: self.local });
        let found = nft::filter_table(self.node_ns.fd()).await?;
        let overlays: Vec<String> = self.map.networks.values().map(|n| names::bridge(n.vni)).collect();
        let batch = format!("{table}{}", nft::forward_batch(&found, Some(&overlays)));
        nft::apply(self.node_ns.fd(), &batch, "applying the node's isolation and NAT rules").await
    }

    /// Makes sandbox `id`'s ports what the map and its record say.
    async fn converge_sandbox(&mut self, id: &str, links: &[Link]) -> Result<(), MeshError> {
        let Some(mut record) = self.sandboxes.get(id).cloned() else { return Ok(()) };
        let stale: Vec<Port> = record
            .ports
            .iter()
            .filter(|p| p.on.network_id().is_some_and(|n| !self.map.networks.contains_key(n)))
            .cloned()
            .collect();
        for port in &stale {
            sandbox::detach(&self.nl, port).await?;
            record.ports.retain(|p| p != port);
        }
        if !stale.is_empty() {
            self.save(&record)?;
        }
        let verify_inside = !self.verified.contains(id);
        let mut broken = Vec::new();
        for port in &record.ports {
            let (bridge, mtu, isolated) = self.port_target(port, links)?;
            let host = links.iter().find(|l| l.name == port.host);
            if verify_inside || !sandbox::intact(host, &bridge, mtu, isolated) {
                broken.push(port.clone());
            }
        }
        if !broken.is_empty() {
            let (ns, inside) = self.open_sandbox(id).await?;
            for port in &broken {
                let (bridge, mtu, isolated) = self.port_target(port, links)?;
                sandbox::attach(&self.nl, &ns, &inside, port, &bridge, mtu, isolated).await?;
            }
        }
        self.verified.insert(id.to_string());
        self.converge_gateway(id, verify_inside || !stale.is_empty()).await
    }

    /// The bridge a port belongs on, its MTU and whether it is isolated there.
    fn port_target(&self, port: &Port, links: &[Link]) -> Result<(Link, u32, bool), MeshError> {
        let (name, mtu, isolated) = match &port.on {
            PortOn::Network { network_id } => {
                let network = self.map.networks.get(network_id).ok_or_else(|| {
                    MeshError::Invalid(format!(
                        "network {network_id} is not in the map applied on this node: apply a map that has it first"
                    ))
                })?;
                (names::bridge(network.vni), self.overlay_mtu(), false)
            }
            PortOn::Local { bridge } => (bridge.name().to_string(), self.mtu, bridge.isolated()),
        };
        let link = links.iter().find(|l| l.name == name).cloned().ok_or_else(|| {
            MeshError::Invalid(format!("bridge {name} does not exist on this node yet: apply the map first"))
        })?;
        Ok((link, mtu, isolated))
    }

    async fn open_sandbox(&self, id: &str) -> Result<(NetNs, Netlink), MeshError> {
        let ns = NetNs::open(&self.state.netns(id)?, &format!("sandbox {id}"))?;
        let inside = Netlink::open(&ns).await?;
        Ok((ns, inside))
    }

    fn save(&mut self, record: &SandboxRecord) -> Result<(), MeshError> {
        state::write(&self.state.record(&record.id)?, record)?;
        self.sandboxes.insert(record.id.clone(), record.clone());
        Ok(())
    }

    /// Adds or removes sandbox `id`'s gateway port as its networks need, and points its
    /// default route at the default bridge, the gateway bridge, or nowhere (internal networks
    /// only). With `force`, the route is set even if the ports did not change.
    async fn converge_gateway(&mut self, id: &str, force: bool) -> Result<(), MeshError> {
        let Some(mut record) = self.sandboxes.get(id).cloned() else { return Ok(()) };
        let on_default = record.local(LocalBridge::Default).is_some();
        let needs_gateway =
            !on_default && record.networks().any(|n| self.map.networks.get(n).is_some_and(|network| !network.internal));
        let has_gateway = record.local(LocalBridge::Gateway).cloned();
        let changed = match (needs_gateway, has_gateway) {
            (true, None) => {
                let addr = self.allocate(LocalBridge::Gateway)?;
                let port = record.new_port(PortOn::Local { bridge: LocalBridge::Gateway }, addr);
                record.ports.push(port.clone());
                self.save(&record)?;
                let links = self.nl.links().await?;
                let (bridge, mtu, isolated) = self.port_target(&port, &links)?;
                let (ns, inside) = self.open_sandbox(id).await?;
                if let Err(e) = sandbox::attach(&self.nl, &ns, &inside, &port, &bridge, mtu, isolated).await {
                    let _ = sandbox::detach(&self.nl, &port).await;
                    record.ports.retain(|p| p != &port);
                    self.save(&record)?;
                    return Err(e);
                }
                true
            }
            (false, Some(port)) => {
                sandbox::detach(&self.nl, &port).await?;
                record.ports.retain(|p| p != &port);
                self.save(&record)?;
                true
            }
            _ => false,
        };
        if changed || force {
            let route = [LocalBridge::Default, LocalBridge::Gateway].into_iter().find_map(|local| {
                record.local(local).map(|p| (gateway::bridge_address(self.local.of(local)).addr, p.ifname.clone()))
            });
            let (_, inside) = self.open_sandbox(id).await?;
            sandbox::default_route(&inside, route.as_ref().map(|(gw, ifname)| (*gw, ifname.as_str()))).await?;
        }
        Ok(())
    }

    /// A free address on a local bridge: none of the sandboxes' ports has it.
    fn allocate(&self, bridge: LocalBridge) -> Result<Cidr, MeshError> {
        let used: BTreeSet<Ipv4Addr> =
            self.sandboxes.values().filter_map(|r| r.local(bridge)).map(|p| p.addr.addr).collect();
        gateway::allocate(self.local.of(bridge), &used, bridge)
    }

    /// Rebuilds sandbox `id`'s load-balancing table if what it should hold changed.
    async fn converge_lb(&mut self, id: &str) -> Result<(), MeshError> {
        let Some(record) = self.sandboxes.get(id) else { return Ok(()) };
        let vips = nft::virtual_ips(&self.map, record.networks());
        let batch = nft::lb_table(&vips);
        if self.lb.get(id) == Some(&batch) {
            return Ok(());
        }
        let ns = NetNs::open(&self.state.netns(id)?, &format!("sandbox {id}"))?;
        nft::apply(ns.fd(), &batch, &format!("applying the virtual IPs of sandbox {id}")).await?;
        self.lb.insert(id.to_string(), batch);
        Ok(())
    }

    async fn connect(&mut self, id: &str, attachments: &[Attachment]) -> Result<Vec<Interface>, MeshError> {
        let mut record = self.sandboxes.get(id).cloned().ok_or_else(|| MeshError::NoSandbox(id.to_string()))?;
        let mut new = Vec::new();
        for attachment in attachments {
            let network = self.map.networks.get(&attachment.network_id).ok_or_else(|| {
                MeshError::Invalid(format!(
                    "network {} is not in the map applied on this node: apply a map that has it first",
                    attachment.network_id
                ))
            })?;
            let addr = attachment.addr;
            if addr.prefix != network.subnet.prefix
                || !network.subnet.contains(addr.addr)
                || addr.addr == network.gateway
                || !host_address(network.subnet, addr.addr)
            {
                return Err(MeshError::Invalid(format!(
                    "address {addr} for sandbox {id} is not a host address of network {}'s subnet {} apart from its gateway {}",
                    network.id, network.subnet, network.gateway
                )));
            }
            let on = PortOn::Network { network_id: network.id.clone() };
            if let Some(port) = record.port(&on) {
                if port.addr == addr {
                    continue;
                }
                return Err(MeshError::Invalid(format!(
                    "sandbox {id} is on network {} with address {} already: disconnect it first",
                    network.id, port.addr
                )));
            }
            let taken = self
                .sandboxes
                .iter()
                .find(|(other, r)| other.as_str() != id && r.port(&on).is_some_and(|p| p.addr.addr == addr.addr))
                .map(|(other, _)| other.clone());
            if let Some(other) = taken {
                // The map decides who holds an address: a sandbox whose task the map no longer
                // gives it (a task that ended, its sandbox not yet removed) loses its port.
                let holder = self.map.endpoints.get(&format!("{}/{other}", network.id));
                if holder.is_some_and(|e| e.addr.addr == addr.addr) {
                    return Err(MeshError::Invalid(format!(
                        "address {} on network {} is sandbox {other}'s already",
                        addr.addr, network.id
                    )));
                }
                let network_id = network.id.clone();
                self.disconnect(&other, &on).await?;
                tracing::info!(sandbox = %other, network = %network_id, addr = %addr.addr, "took a stale address from an ended task's sandbox");
            }
            let network = self.map.networks.get(&attachment.network_id).ok_or_else(|| {
                MeshError::Invalid(format!("network {} is not in the map applied on this node", attachment.network_id))
            })?;
            if new.iter().any(|p: &Port| p.on == on) {
                return Err(MeshError::Invalid(format!("network {} is given twice for sandbox {id}", network.id)));
            }
            let port = record.new_port(on, addr);
            record.ports.push(port.clone());
            new.push(port);
        }
        if !new.is_empty() {
            // Recorded first, so that a crash in the middle leaves ports the next apply
            // finishes (or removes with their network).
            self.save(&record)?;
            let links = self.nl.links().await?;
            let result = async {
                let (ns, inside) = self.open_sandbox(id).await?;
                for port in &new {
                    let (bridge, mtu, isolated) = self.port_target(port, &links)?;
                    sandbox::attach(&self.nl, &ns, &inside, port, &bridge, mtu, isolated).await?;
                }
                Ok::<_, MeshError>(())
            }
            .await;
            if let Err(e) = result {
                for port in &new {
                    let _ = sandbox::detach(&self.nl, port).await;
                }
                record.ports.retain(|p| !new.contains(p));
                self.save(&record)?;
                return Err(e);
            }
        }
        self.converge_gateway(id, false).await?;
        self.converge_lb(id).await?;
        let record = self.sandboxes.get(id).ok_or_else(|| MeshError::NoSandbox(id.to_string()))?;
        Ok(record.ports.iter().map(|p| self.interface(p)).collect())
    }

    async fn connect_local(&mut self, id: &str, bridge: LocalBridge) -> Result<Interface, MeshError> {
        let mut record = self.sandboxes.get(id).cloned().ok_or_else(|| MeshError::NoSandbox(id.to_string()))?;
        if let Some(port) = record.local(bridge) {
            return Ok(self.interface(port));
        }
        let addr = self.allocate(bridge)?;
        let port = record.new_port(PortOn::Local { bridge }, addr);
        let links = self.nl.links().await?;
        let (link, mtu, isolated) = self.port_target(&port, &links)?;
        record.ports.push(port.clone());
        self.save(&record)?;
        let result = async {
            let (ns, inside) = self.open_sandbox(id).await?;
            sandbox::attach(&self.nl, &ns, &inside, &port, &link, mtu, isolated).await
        }
        .await;
        if let Err(e) = result {
            let _ = sandbox::detach(&self.nl, &port).await;
            record.ports.retain(|p| p != &port);
            self.save(&record)?;
            return Err(e);
        }
        self.converge_gateway(id, true).await?;
        Ok(self.interface(&port))
    }

    async fn disconnect(&mut self, id: &str, on: &PortOn) -> Result<(), MeshError> {
        let mut record = self.sandboxes.get(id).cloned().ok_or_else(|| MeshError::NoSandbox(id.to_string()))?;
        let Some(port) = record.port(on).cloned() else { return Ok(()) };
        sandbox::detach(&self.nl, &port).await?;
        record.ports.retain(|p| p != &port);
        self.save(&record)?;
        self.converge_gateway(id, true).await?;
        self.converge_lb(id).await
    }

    async fn remove_sandbox(&mut self, id: &str) -> Result<(), MeshError> {
        let path = self.state.netns(id)?;
        if let Some(record) = self.sandboxes.get(id).cloned() {
            for port in &record.ports {
                sandbox::detach(&self.nl, port).await?;
            }
        }
        netns::unbind(&path)?;
        state::remove(&self.state.record(id)?)?;
        self.sandboxes.remove(id);
        self.lb.remove(id);
        self.verified.remove(id);
        Ok(())
    }

    async fn remove_all(&mut self) -> Result<(), MeshError> {
        let ids: Vec<String> = self.sandboxes.keys().cloned().collect();
        for id in ids {
            self.remove_sandbox(&id).await?;
        }
        for link in self.nl.links().await? {
            let ours = names::vni_of(&link.name, names::VXLAN_PREFIX).is_some()
                || names::vni_of(&link.name, names::BRIDGE_PREFIX).is_some()
                || names::is_veth(&link.name)
                || link.name == LocalBridge::Gateway.name()
                || link.name == LocalBridge::Default.name();
            if ours {
                self.nl.del_link(link.index, &link.name).await?;
            }
        }
        let found = nft::filter_table(self.node_ns.fd()).await?;
        let batch = format!("{}{}", nft::remove_table("inet", nft::NODE_TABLE), nft::forward_batch(&found, None));
        nft::apply(self.node_ns.fd(), &batch, "removing the node's rules").await?;
        for dir in [self.state.netns_dir(), self.state.sandboxes_dir()] {
            // Only what no record named can be left: namespaces of sandboxes whose record a
            // crash lost, which are unbound first.
            for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                netns::unbind(&entry.path())?;
            }
            fs::remove_dir(&dir).map_err(|e| MeshError::io(format!("removing {}", dir.display()), e))?;
        }
        state::remove(&self.state.node_file())?;
        self.map = NetworkMap::default();
        self.removed = true;
        Ok(())
    }
}

/// Whether two subnets share an address.
fn overlap(a: Cidr, b: Cidr) -> bool {
    let prefix = a.prefix.min(b.prefix);
    let mask = Cidr { addr: a.addr, prefix }.mask();
    u32::from(a.addr) & mask == u32::from(b.addr) & mask
}

/// Whether `addr` is neither the network's nor the broadcast address of `subnet`.
fn host_address(subnet: Cidr, addr: Ipv4Addr) -> bool {
    let network = u32::from(subnet.network().addr);
    let broadcast = network | !subnet.mask();
    let a = u32::from(addr);
    a != network && a != broadcast
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The agent shares one `Mesh` between its tasks and spawns its operations.
    #[allow(dead_code)]
    fn spawnable(mesh: &'static Mesh, map: &'static NetworkMap) {
        fn send_sync<T: Send + Sync>(_: &T) {}
        send_sync(mesh);
        tokio::spawn(mesh.apply(map));
        tokio::spawn(mesh.create_sandbox("t"));
        tokio::spawn(mesh.connect("t", &[]));
        tokio::spawn(mesh.connect_default_bridge("t"));
        tokio::spawn(mesh.disconnect("t", "n"));
        tokio::spawn(mesh.remove_sandbox("t"));
        tokio::spawn(mesh.remove_all());
        tokio::spawn(Mesh::open(MeshConfig {
            state_dir: PathBuf::new(),
            node_id: String::new(),
            underlay: Ipv4Addr::UNSPECIFIED,
            gateway_subnet: None,
            default_subnet: None,
        }));
    }

    #[test]
    fn overlap_and_host_addresses() {
        let c = |s: &str| s.parse::<Cidr>().expect("cidr");
        assert!(overlap(c("10.0.0.0/8"), c("10.3.0.0/16")));
        assert!(!overlap(c("10.0.1.0/24"), c("10.0.2.0/24")));
        assert!(!host_address(c("10.0.1.0/24"), "10.0.1.255".parse().expect("ip")));
        assert!(!host_address(c("10.0.1.0/24"), "10.0.1.0".parse().expect("ip")));
        assert!(host_address(c("10.0.1.0/24"), "10.0.1.7".parse().expect("ip")));
    }
}
