//! The node's network map: what its containers need to reach each other, as the dispatcher
//! sends it (a full map when a session opens, increments after), checked and indexed.
//!
//! Everything the data plane and the DNS do is a function of this map. It holds only what the
//! managers decided (networks, addresses, virtual IPs, readiness); what this node made of it
//! (devices, rules, sandboxes) is the data plane's own state.

use std::{collections::BTreeMap, fmt, net::Ipv4Addr, str::FromStr};

pub use crate::proxy::Protocol;
use shoal_proto::{EndpointMode, EndpointRecord, Network, NetworkMapUpdate, PeerRecord, PortProtocol, ServiceRecord};

/// An IPv4 address with its prefix length (`10.0.1.5/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    /// The network this address is in (`10.0.1.0/24` for `10.0.1.5/24`).
    pub fn network(&self) -> Cidr {
        Cidr { addr: Ipv4Addr::from(u32::from(self.addr) & self.mask()), prefix: self.prefix }
    }

    /// The netmask as a number (`0xffffff00` for /24).
    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    /// Whether `addr` lies in this address's network.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask() == u32::from(self.addr) & self.mask()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why a map (or an update to it) was refused: what field of what record, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("network map: {what}: {why}")]
pub struct MapError {
    pub what: String,
    pub why: String,
}

fn bad(what: impl Into<String>, why: impl Into<String>) -> MapError {
    MapError { what: what.into(), why: why.into() }
}

// Stored as its text (`10.0.1.5/24`) in the data plane's state files.
impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Cidr, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = s.split_once('/').ok_or_else(|| format!("\"{s}\" is not an address/prefix"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| format!("\"{addr}\" is not an IPv4 address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| format!("\"{prefix}\" is not a prefix length"))?;
        if prefix > 32 {
            return Err(format!("prefix length {prefix} is over 32"));
        }
        Ok(Cidr { addr, prefix })
    }
}

/// One overlay network used on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapNetwork {
    pub id: String,
    pub name: String,
    pub vni: u32,
    /// The network's subnet (`10.0.1.0/24`).
    pub subnet: Cidr,
    /// Its gateway: the address of the network's bridge on every node.
    pub gateway: Ipv4Addr,
    /// No route out of the network (`internal: true`).
    pub internal: bool,
    /// Standalone containers may join it (`attachable: true`).
    pub attachable: bool,
    /// The driver options as given (`encrypted`, …).
    pub options: BTreeMap<String, String>,
    /// The routing mesh's network: every node has an address on it, no name resolves on it.
    pub ingress: bool,
}

/// One task's (or attached container's) address on one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEndpoint {
    pub network_id: String,
    pub task_id: String,
    pub addr: Cidr,
    pub node_id: String,
    /// Empty for an attached standalone container.
    pub service_id: String,
    pub name: String,
    pub aliases: Vec<String>,
    /// In DNS and in its service's virtual IP rotation.
    pub ready: bool,
    /// A node's own address on the ingress network (no container): where its routing mesh
    /// connects to the tasks from.
    pub node: bool,
}

/// One service on one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapService {
    pub network_id: String,
    pub service_id: String,
    pub name: String,
    pub aliases: Vec<String>,
    /// `None` with endpoint mode dnsrr.
    pub vip: Option<Cidr>,
    /// On the ingress network: the ports it publishes there, which every node serves.
    pub ports: Vec<MapPort>,
}

/// A port a service publishes through the routing mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MapPort {
    /// The port every node listens on.
    pub published: u16,
    /// The port of the service's tasks it goes to.
    pub target: u16,
    pub protocol: Protocol,
    /// Backends read a PROXY protocol v2 header (the client's address) first.
    pub proxy_protocol: bool,
}

/// The node's whole network map, indexed by the keys the dispatcher uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkMap {
    /// By network id.
    pub networks: BTreeMap<String, MapNetwork>,
    /// By `<network id>/<task id>`.
    pub endpoints: BTreeMap<String, MapEndpoint>,
    /// By `<network id>/<service id>`.
    pub services: BTreeMap<String, MapService>,
    /// Underlay addresses of the other nodes on this node's networks, by node id.
    pub peers: BTreeMap<String, Ipv4Addr>,
}

impl NetworkMap {
    /// Applies an update as the dispatcher sent it: a full map replaces this one, an increment
    /// upserts then removes. All or nothing: a record that does not read leaves the map as it
    /// was.
    pub fn apply(&mut self, update: &NetworkMapUpdate) -> Result<(), MapError> {
        let mut next = if update.full { NetworkMap::default() } else { self.clone() };
        for n in &update.networks {
            let n = network(n)?;
            next.networks.insert(n.id.clone(), n);
        }
        for e in &update.endpoints {
            let e = endpoint(e)?;
            next.endpoints.insert(format!("{}/{}", e.network_id, e.task_id), e);
        }
        for s in &update.services {
            let s = service(s)?;
            next.services.insert(format!("{}/{}", s.network_id, s.service_id), s);
        }
        for p in &update.peers {
            let (id, addr) = peer(p)?;
            next.peers.insert(id, addr);
        }
        for id in &update.removed_networks {
            next.networks.remove(id);
        }
        for key in &update.removed_endpoints {
            next.endpoints.remove(key);
        }
        for key in &update.removed_services {
            next.services.remove(key);
        }
        for id in &update.removed_peers {
            next.peers.remove(id);
        }
        *self = next;
        Ok(())
    }

    /// The endpoints on network `network_id`.
    pub fn endpoints_on<'a>(&'a self, network_id: &'a str) -> impl Iterator<Item = &'a MapEndpoint> + 'a {
        self.endpoints.values().filter(move |e| e.network_id == network_id)
    }

    /// The services on network `network_id`.
    pub fn services_on<'a>(&'a self, network_id: &'a str) -> impl Iterator<Item = &'a MapService> + 'a {
        self.services.values().filter(move |s| s.network_id == network_id)
    }

    /// The ready endpoints of service `service_id` on network `network_id`: its virtual IP's
    /// backends and its `tasks.<name>` answers.
    pub fn backends<'a>(
        &'a self,
        network_id: &'a str,
        service_id: &'a str,
    ) -> impl Iterator<Item = &'a MapEndpoint> + 'a {
        self.endpoints_on(network_id).filter(move |e| e.service_id == service_id && e.ready)
    }
}

fn network(n: &Network) -> Result<MapNetwork, MapError> {
    let what = || format!("network {}", n.id);
    let spec = n.spec.clone().unwrap_or_default();
    let allocated = n.allocated.clone().unwrap_or_default();
    let subnet: Cidr = allocated.subnet.parse().map_err(|e| bad(what(), format!("subnet: {e}")))?;
    let gateway: Ipv4Addr = allocated
        .gateway
        .parse()
        .map_err(|_| bad(what(), format!("gateway \"{}\" is not an address", allocated.gateway)))?;
    if !subnet.contains(gateway) {
        return Err(bad(what(), format!("gateway {gateway} is outside subnet {subnet}")));
    }
    if n.vni < 4096 || n.vni >= 1 << 24 {
        return Err(bad(what(), format!("VNI {} is outside 4096..2^24", n.vni)));
    }
    Ok(MapNetwork {
        id: n.id.clone(),
        name: spec.annotations.map(|a| a.name).unwrap_or_default(),
        vni: n.vni,
        subnet: subnet.network(),
        gateway,
        internal: spec.internal,
        attachable: spec.attachable,
        options: spec.driver_opts.into_iter().collect(),
        ingress: spec.ingress,
    })
}

fn endpoint(e: &EndpointRecord) -> Result<MapEndpoint, MapError> {
    let addr: Cidr = e
        .address
        .parse()
        .map_err(|why| bad(format!("endpoint {}/{}", e.network_id, e.task_id), format!("address: {why}")))?;
    Ok(MapEndpoint {
        network_id: e.network_id.clone(),
        task_id: e.task_id.clone(),
        addr,
        node_id: e.node_id.clone(),
        service_id: e.service_id.clone(),
        name: e.name.clone(),
        aliases: e.aliases.clone(),
        ready: e.ready,
        node: e.node,
    })
}

fn service(s: &ServiceRecord) -> Result<MapService, MapError> {
    let vip =
        match (s.endpoint_mode(), s.virtual_ip.as_str()) {
            (EndpointMode::Dnsrr, _) | (_, "") => None,
            (EndpointMode::Vip, vip) => Some(vip.parse().map_err(|why| {
                bad(format!("service {}/{}", s.network_id, s.service_id), format!("virtual IP: {why}"))
            })?),
        };
    let what = || format!("service {}/{}", s.network_id, s.service_id);
    let mut ports = Vec::with_capacity(s.ports.len());
    for p in &s.ports {
        let port = |n: u32, which: &str| {
            u16::try_from(n)
                .ok()
                .filter(|n| *n != 0)
                .ok_or_else(|| bad(what(), format!("{which} port {n} is not 1-65535")))
        };
        let protocol = match p.protocol() {
            PortProtocol::Tcp => Protocol::Tcp,
            PortProtocol::Udp => Protocol::Udp,
            PortProtocol::Sctp => return Err(bad(what(), "SCTP ports are not served by the routing mesh")),
        };
        ports.push(MapPort {
            published: port(p.published_port, "published")?,
            target: port(p.target_port, "target")?,
            protocol,
            proxy_protocol: p.proxy_protocol && protocol == Protocol::Tcp,
        });
    }
    Ok(MapService {
        network_id: s.network_id.clone(),
        service_id: s.service_id.clone(),
        name: s.name.clone(),
        aliases: s.aliases.clone(),
        vip,
        ports,
    })
}

fn peer(p: &PeerRecord) -> Result<(String, Ipv4Addr), MapError> {
    // The underlay address may come with a port (the node's advertised address).
    let host = p.addr.rsplit_once(':').map_or(p.addr.as_str(), |(h, _)| h);
    let addr = host
        .parse()
        .map_err(|_| bad(format!("peer {}", p.node_id), format!("\"{}\" is not an IPv4 address", p.addr)))?;
    Ok((p.node_id.clone(), addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{Annotations, IpamConfig, NetworkSpec};

    fn net(id: &str, subnet: &str, gateway: &str, vni: u32) -> Network {
        Network {
            id: id.into(),
            spec: Some(NetworkSpec {
                annotations: Some(Annotations { name: format!("n-{id}"), ..Default::default() }),
                ..Default::default()
            }),
            allocated: Some(IpamConfig { subnet: subnet.into(), gateway: gateway.into(), ..Default::default() }),
            vni,
            ..Default::default()
        }
    }

    fn ep(network: &str, task: &str, addr: &str, ready: bool) -> EndpointRecord {
        EndpointRecord {
            network_id: network.into(),
            task_id: task.into(),
            address: addr.into(),
            service_id: "s1".into(),
            ready,
            ..Default::default()
        }
    }

    #[test]
    fn full_maps_replace_and_increments_apply_on_top() {
        let mut map = NetworkMap::default();
        let full = NetworkMapUpdate {
            full: true,
            networks: vec![net("n1", "10.0.1.0/24", "10.0.1.1", 4096)],
            endpoints: vec![ep("n1", "t1", "10.0.1.5/24", true), ep("n1", "t2", "10.0.1.6/24", false)],
            peers: vec![PeerRecord { node_id: "b".into(), addr: "192.168.7.3:2377".into() }],
            ..Default::default()
        };
        map.apply(&full).expect("full map");
        assert_eq!(map.backends("n1", "s1").map(|e| e.task_id.as_str()).collect::<Vec<_>>(), ["t1"]);
        assert_eq!(map.peers.get("b"), Some(&Ipv4Addr::new(192, 168, 7, 3)));

        let increment = NetworkMapUpdate {
            endpoints: vec![ep("n1", "t2", "10.0.1.6/24", true)],
            removed_endpoints: vec!["n1/t1".into()],
            ..Default::default()
        };
        map.apply(&increment).expect("increment");
        assert_eq!(map.backends("n1", "s1").map(|e| e.task_id.as_str()).collect::<Vec<_>>(), ["t2"]);

        map.apply(&NetworkMapUpdate { full: true, ..Default::default() }).expect("empty full map");
        assert_eq!(map, NetworkMap::default());
    }

    #[test]
    fn a_bad_record_leaves_the_map_as_it_was() {
        let mut map = NetworkMap::default();
        map.apply(&NetworkMapUpdate {
            full: true,
            networks: vec![net("n1", "10.0.1.0/24", "10.0.1.1", 4096)],
            ..Default::default()
        })
        .expect("map");
        let before = map.clone();
        for update in [
            NetworkMapUpdate { endpoints: vec![ep("n1", "t", "10.0.1.300/24", true)], ..Default::default() },
            NetworkMapUpdate { networks: vec![net("n2", "10.0.2.0/24", "10.0.3.1", 4097)], ..Default::default() },
            NetworkMapUpdate { networks: vec![net("n2", "10.0.2.0/24", "10.0.2.1", 7)], ..Default::default() },
            NetworkMapUpdate {
                removed_networks: vec!["n1".into()],
                endpoints: vec![ep("n1", "t", "x", true)],
                ..Default::default()
            },
        ] {
            assert!(map.apply(&update).is_err());
            assert_eq!(map, before);
        }
    }

    #[test]
    fn published_ports_out_of_range_or_sctp_are_refused_whole() {
        let mut map = NetworkMap::default();
        map.apply(&NetworkMapUpdate {
            full: true,
            networks: vec![net("n1", "10.0.1.0/24", "10.0.1.1", 4096)],
            ..Default::default()
        })
        .expect("map");
        let before = map.clone();
        let record = |published: u32, target: u32, protocol: PortProtocol| ServiceRecord {
            network_id: "n1".into(),
            service_id: "s1".into(),
            ports: vec![shoal_proto::PortConfig {
                published_port: published,
                target_port: target,
                protocol: protocol as i32,
                ..Default::default()
            }],
            ..Default::default()
        };
        for bad in [
            record(0, 80, PortProtocol::Tcp),
            record(70000, 80, PortProtocol::Tcp),
            record(8080, 0, PortProtocol::Udp),
            record(8080, 1 << 20, PortProtocol::Tcp),
            record(8080, 80, PortProtocol::Sctp),
        ] {
            let err = map.apply(&NetworkMapUpdate { services: vec![bad], ..Default::default() }).expect_err("refused");
            assert!(err.what.contains("service n1/s1"), "{err}");
            assert_eq!(map, before);
        }
        map.apply(&NetworkMapUpdate { services: vec![record(8080, 80, PortProtocol::Udp)], ..Default::default() })
            .expect("a good port");
        assert_eq!(map.services["n1/s1"].ports[0].published, 8080);
    }

    #[test]
    fn cidrs_read_and_contain() {
        let c: Cidr = "10.0.1.5/24".parse().expect("cidr");
        assert_eq!(c.network().to_string(), "10.0.1.0/24");
        assert!(c.contains(Ipv4Addr::new(10, 0, 1, 200)));
        assert!(!c.contains(Ipv4Addr::new(10, 0, 2, 1)));
        for bad in ["10.0.1.5", "10.0.1.5/33", "x/24", "10.0.1/24"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
