//! What one node is told about its networks: the networks its tasks and
//! attached containers use, every endpoint on those networks (on any node),
//! the services on them, and the other nodes it exchanges their traffic
//! with. A session sends the whole of it when it opens, then only what
//! changed since the last message.
//!
//! Both halves are pure: [`NodeNetworks::of`] reads the store,
//! [`NodeNetworks::update_from`] compares two views.

use std::collections::{BTreeMap, BTreeSet};

use shoal_proto::{
    EndpointMode, EndpointRecord, Network, NetworkMapUpdate, PeerRecord, PortConfig, PublishMode, ServiceRecord, Task,
    TaskState,
};

use crate::allocator::ingress::{ingress_network, is_node_endpoint, publishes};
use crate::store::{holds_addresses, State};

/// One node's view of its networks, keyed as the dispatcher sends it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeNetworks {
    /// By network ID.
    pub networks: BTreeMap<String, Network>,
    /// By `<network id>/<task id>`.
    pub endpoints: BTreeMap<String, EndpointRecord>,
    /// By `<network id>/<service id>`.
    pub services: BTreeMap<String, ServiceRecord>,
    /// By node ID.
    pub peers: BTreeMap<String, PeerRecord>,
}

/// The service label that asks the routing mesh for a PROXY protocol v2 header on published
/// ports: a comma-separated list of published ports, or `true` for all of them (TCP only).
pub const PROXY_PROTOCOL_LABEL: &str = "com.shoal.proxy-protocol";

/// Whether service `s` asks for the PROXY protocol on its published port `p`.
fn proxy_protocol(s: &shoal_proto::Service, p: &PortConfig) -> bool {
    if p.protocol() != shoal_proto::PortProtocol::Tcp {
        return false;
    }
    let labels = s.spec.as_ref().and_then(|s| s.annotations.as_ref()).map(|a| &a.labels);
    let Some(value) = labels.and_then(|l| l.get(PROXY_PROTOCOL_LABEL)) else { return false };
    let value = value.trim();
    value.eq_ignore_ascii_case("true")
        || value.split(',').any(|port| port.trim().parse::<u32>().is_ok_and(|n| n == p.published_port))
}

/// Whether a task is in DNS and in its service's virtual IP rotation:
/// running (which a task with a health check reaches only once healthy) and
/// not told to stop.
fn ready(t: &Task) -> bool {
    t.state() == TaskState::Running && t.desired_state() == TaskState::Running
}

/// The tasks whose addresses matter to the data plane: placed on a node and
/// still holding their addresses.
fn placed(t: &Task) -> bool {
    !t.node_id.is_empty() && holds_addresses(t) && (t.attachment.is_some() || t.state() >= TaskState::Assigned)
}

impl NodeNetworks {
    /// What node `node_id` is to know: the networks its placed tasks (and
    /// attachments) have addresses on, and nothing of any other network.
    pub fn of(state: &State, node_id: &str) -> NodeNetworks {
        let mine: BTreeSet<&str> = state
            .tasks
            .values()
            .filter(|t| t.node_id == node_id && placed(t))
            .flat_map(|t| t.networks.iter().map(|n| n.network_id.as_str()))
            .collect();
        let mut view = NodeNetworks::default();
        for id in &mine {
            // A network without a VNI yet, or whose addresses do not read
            // (one stored before gateways were checked), is not one the data
            // plane can build; sent, it would make the node refuse the map.
            if let Some(n) = state.networks.get(*id).filter(|n| n.vni != 0 && buildable(n)) {
                view.networks.insert(n.id.clone(), n.clone());
            }
        }
        let mut peers = BTreeSet::new();
        for t in state.tasks.values().filter(|t| placed(t)) {
            for attachment in t.networks.iter().filter(|n| view.networks.contains_key(&n.network_id)) {
                let Some(address) = attachment.addresses.first() else { continue };
                let name = match &t.attachment {
                    Some(a) => a.container_name.clone(),
                    None => t.name().to_string(),
                };
                view.endpoints.insert(
                    format!("{}/{}", attachment.network_id, t.id),
                    EndpointRecord {
                        network_id: attachment.network_id.clone(),
                        task_id: t.id.clone(),
                        address: address.clone(),
                        node_id: t.node_id.clone(),
                        service_id: t.service_id.clone(),
                        name,
                        aliases: attachment.aliases.clone(),
                        ready: ready(t),
                        node: is_node_endpoint(t),
                    },
                );
                if t.node_id != node_id {
                    peers.insert(t.node_id.as_str());
                }
            }
        }
        for s in state.services.values() {
            let spec = s.spec.as_ref();
            let configs = spec.and_then(|s| s.task.as_ref()).map(|t| t.networks.as_slice()).unwrap_or(&[]);
            let mode = spec.and_then(|s| s.endpoint.as_ref()).map(|e| e.mode()).unwrap_or_default();
            let short = crate::allocator::compose_name(s);
            for config in configs.iter().filter(|c| view.networks.contains_key(&c.target)) {
                let key = format!("{}/{}", config.target, s.id);
                let record = view.services.entry(key).or_insert_with(|| ServiceRecord {
                    network_id: config.target.clone(),
                    service_id: s.id.clone(),
                    name: s.name().to_string(),
                    aliases: Vec::new(),
                    virtual_ip: match mode {
                        EndpointMode::Vip => s
                            .endpoint
                            .iter()
                            .flat_map(|e| &e.virtual_ips)
                            .find(|v| v.network_id == config.target)
                            .map(|v| v.addr.clone())
                            .unwrap_or_default(),
                        EndpointMode::Dnsrr => String::new(),
                    },
                    endpoint_mode: mode as i32,
                    ports: Vec::new(),
                });
                for alias in config.aliases.iter().map(String::as_str).chain(short) {
                    if alias != record.name && !record.aliases.iter().any(|a| a == alias) {
                        record.aliases.push(alias.to_string());
                    }
                }
            }
        }
        // On the ingress network: the services publishing ports there, with the ports as
        // allocated, which every node's routing mesh serves.
        if let Some(ingress) = ingress_network(state).filter(|n| view.networks.contains_key(&n.id)) {
            for s in state.services.values().filter(|s| publishes(s)) {
                let allocated = s.endpoint.as_ref().map(|e| e.ports.as_slice()).unwrap_or(&[]);
                let ports: Vec<_> = allocated
                    .iter()
                    .filter(|p| p.publish_mode() == PublishMode::Ingress && p.published_port != 0)
                    .map(|p| PortConfig { proxy_protocol: proxy_protocol(s, p), ..p.clone() })
                    .collect();
                let mode = s.spec.as_ref().and_then(|s| s.endpoint.as_ref()).map(|e| e.mode()).unwrap_or_default();
                view.services.insert(
                    format!("{}/{}", ingress.id, s.id),
                    ServiceRecord {
                        network_id: ingress.id.clone(),
                        service_id: s.id.clone(),
                        name: s.name().to_string(),
                        aliases: Vec::new(),
                        virtual_ip: String::new(),
                        endpoint_mode: mode as i32,
                        ports,
                    },
                );
            }
        }
        for id in peers {
            let addr = state.nodes.get(id).and_then(|n| n.status.as_ref()).map(|s| s.addr.as_str()).unwrap_or("");
            match underlay(addr) {
                Some(ip) => {
                    view.peers.insert(id.to_string(), PeerRecord { node_id: id.to_string(), addr: ip.to_string() });
                }
                // Its endpoints stay in the map (their names resolve); traffic
                // to them has nowhere to go until the node reports an address.
                None => tracing::debug!(node = id, addr, "a peer without an IPv4 underlay address is left out"),
            }
        }
        view
    }

    /// The whole view, to replace whatever the node knew.
    pub fn full(&self) -> NetworkMapUpdate {
        NetworkMapUpdate {
            full: true,
            networks: self.networks.values().cloned().collect(),
            endpoints: self.endpoints.values().cloned().collect(),
            services: self.services.values().cloned().collect(),
            peers: self.peers.values().cloned().collect(),
            ..Default::default()
        }
    }

    /// What turns `old` (what the node was last told) into `self`: records
    /// new or changed, keys gone; `None` when nothing changed.
    pub fn update_from(&self, old: &NodeNetworks) -> Option<NetworkMapUpdate> {
        let (networks, removed_networks) = changes(&old.networks, &self.networks);
        let (endpoints, removed_endpoints) = changes(&old.endpoints, &self.endpoints);
        let (services, removed_services) = changes(&old.services, &self.services);
        let (peers, removed_peers) = changes(&old.peers, &self.peers);
        let update = NetworkMapUpdate {
            full: false,
            networks,
            removed_networks,
            endpoints,
            removed_endpoints,
            services,
            removed_services,
            peers,
            removed_peers,
        };
        (update != NetworkMapUpdate::default()).then_some(update)
    }
}

/// Whether a network's subnet and gateway read, the gateway inside the subnet.
fn buildable(n: &Network) -> bool {
    crate::ipam::AddressSpace::of(n).is_some_and(|space| space.subnet.contains(space.gateway))
}

/// A node's underlay address as it reported it (`10.0.0.5`, or with a
/// port), if it is an IPv4 address: what a VXLAN tunnel can be sent to.
fn underlay(addr: &str) -> Option<std::net::Ipv4Addr> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.parse().ok()
}

/// The values of `new` that `old` lacks or holds otherwise, and the keys of
/// `old` that `new` lacks.
fn changes<T: Clone + PartialEq>(old: &BTreeMap<String, T>, new: &BTreeMap<String, T>) -> (Vec<T>, Vec<String>) {
    let upserts = new.iter().filter(|(k, v)| old.get(*k) != Some(*v)).map(|(_, v)| v.clone()).collect();
    let removed = old.keys().filter(|k| !new.contains_key(*k)).cloned().collect();
    (upserts, removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::propose::{create, delete, update};
    use crate::store::Store;
    use shoal_proto::{
        Annotations, Endpoint, EndpointVirtualIp, IpamConfig, NetworkAttachment, NetworkAttachmentConfig,
        NetworkAttachmentSpec, NetworkSpec, Node, NodeStatus, Service, ServiceSpec, StoreAction, StoreBatch, TaskSpec,
        STACK_NAMESPACE_LABEL,
    };

    #[test]
    fn the_proxy_protocol_label_names_tcp_ports_and_reads_anything_else_as_no() {
        let service = |label: &str| shoal_proto::Service {
            spec: Some(shoal_proto::ServiceSpec {
                annotations: Some(shoal_proto::Annotations {
                    labels: [(PROXY_PROTOCOL_LABEL.to_string(), label.to_string())].into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let port = |n: u32, protocol: shoal_proto::PortProtocol| PortConfig {
            published_port: n,
            protocol: protocol as i32,
            ..Default::default()
        };
        let tcp = shoal_proto::PortProtocol::Tcp;
        assert!(proxy_protocol(&service("8080, 9090"), &port(9090, tcp)));
        assert!(proxy_protocol(&service("TRUE"), &port(1, tcp)));
        assert!(!proxy_protocol(&service("8080"), &port(8081, tcp)));
        assert!(!proxy_protocol(&service("true"), &port(53, shoal_proto::PortProtocol::Udp)));
        for hostile in ["", ",,,", "-1", "99999999999999999999", "8080\0", "yes", "8080;9090", "\u{202e}8080"] {
            assert!(!proxy_protocol(&service(hostile), &port(8080, tcp)), "{hostile:?}");
        }
    }

    fn network(id: &str, third: u8) -> Network {
        Network {
            id: id.into(),
            spec: Some(NetworkSpec {
                annotations: Some(Annotations { name: format!("app_{id}"), ..Default::default() }),
                ..Default::default()
            }),
            allocated: Some(IpamConfig {
                subnet: format!("10.0.{third}.0/24"),
                gateway: format!("10.0.{third}.1"),
                ..Default::default()
            }),
            vni: 4096 + u32::from(third),
            ..Default::default()
        }
    }

    fn service(id: &str, networks: &[(&str, &str)]) -> Service {
        let labels = [(STACK_NAMESPACE_LABEL.to_string(), "app".to_string())].into();
        Service {
            id: id.into(),
            spec: Some(ServiceSpec {
                annotations: Some(Annotations { name: format!("app_{id}"), labels }),
                task: Some(TaskSpec {
                    networks: networks
                        .iter()
                        .map(|(n, _)| NetworkAttachmentConfig { target: n.to_string(), aliases: vec![] })
                        .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            endpoint: Some(Endpoint {
                virtual_ips: networks
                    .iter()
                    .map(|(n, vip)| EndpointVirtualIp { network_id: n.to_string(), addr: vip.to_string() })
                    .collect(),
                ports: Vec::new(),
            }),
            ..Default::default()
        }
    }

    fn task(id: &str, service: &str, node: &str, state: TaskState, on: &[(&str, &str)]) -> Task {
        let mut t = Task {
            id: id.into(),
            service_id: service.into(),
            node_id: node.into(),
            annotations: Some(Annotations { name: format!("app_{service}.{id}"), ..Default::default() }),
            networks: on
                .iter()
                .map(|(n, a)| NetworkAttachment {
                    network_id: n.to_string(),
                    addresses: vec![a.to_string()],
                    aliases: vec![service.to_string()],
                })
                .collect(),
            ..Default::default()
        };
        t.status.get_or_insert_default().set_state(state);
        t.set_desired_state(TaskState::Running);
        t
    }

    fn node(id: &str, addr: &str) -> Node {
        Node {
            id: id.into(),
            status: Some(NodeStatus { addr: addr.into(), ..Default::default() }),
            ..Default::default()
        }
    }

    fn apply(store: &Store, actions: Vec<StoreAction>) {
        let index = store.applied_index() + 1;
        store.apply(index, &StoreBatch { actions, timestamp: 1 }).expect("a valid write");
    }

    /// web on a (tasks on n1 and n2), db on b (n2 only), a standalone
    /// container attached to c on n1.
    fn cluster() -> Store {
        let store = Store::new();
        let mut container = task("c1", "", "n1", TaskState::Running, &[("c", "10.0.3.2/24")]);
        container.attachment =
            Some(NetworkAttachmentSpec { container_id: "abc".into(), container_name: "tool".into() });
        apply(
            &store,
            vec![
                create(network("a", 1)),
                create(network("b", 2)),
                create(network("c", 3)),
                create(node("n1", "192.168.7.1")),
                create(node("n2", "192.168.7.2")),
                create(node("n3", "192.168.7.3")),
                create(service("web", &[("a", "10.0.1.2/24")])),
                create(service("db", &[("b", "10.0.2.2/24")])),
                create(task("w1", "web", "n1", TaskState::Running, &[("a", "10.0.1.3/24")])),
                create(task("w2", "web", "n2", TaskState::Starting, &[("a", "10.0.1.4/24")])),
                create(task("d1", "db", "n2", TaskState::Running, &[("b", "10.0.2.3/24")])),
                create(container),
            ],
        );
        store
    }

    #[test]
    fn a_node_hears_only_of_the_networks_its_tasks_and_containers_use() {
        let store = cluster();
        let view = NodeNetworks::of(&store.read(), "n1");
        assert_eq!(view.networks.keys().collect::<Vec<_>>(), ["a", "c"], "never b: nothing of n1 is on it");
        let endpoints: Vec<(&str, &str, &str, bool)> = view
            .endpoints
            .values()
            .map(|e| (e.task_id.as_str(), e.address.as_str(), e.node_id.as_str(), e.ready))
            .collect();
        assert_eq!(
            endpoints,
            [("w1", "10.0.1.3/24", "n1", true), ("w2", "10.0.1.4/24", "n2", false), ("c1", "10.0.3.2/24", "n1", true)]
        );
        assert_eq!(view.endpoints["c/c1"].name, "tool", "an attached container is known by its name");
        let web = &view.services["a/web"];
        assert_eq!((web.name.as_str(), web.virtual_ip.as_str()), ("app_web", "10.0.1.2/24"));
        assert_eq!(web.aliases, ["web"], "the compose name");
        assert!(!view.services.contains_key("b/db"));
        assert_eq!(
            view.peers.values().map(|p| (p.node_id.as_str(), p.addr.as_str())).collect::<Vec<_>>(),
            [("n2", "192.168.7.2")]
        );
        assert_eq!(NodeNetworks::of(&store.read(), "n3"), NodeNetworks::default(), "n3 runs nothing");
        let n2 = NodeNetworks::of(&store.read(), "n2");
        assert_eq!(n2.networks.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert!(n2.endpoints.keys().all(|k| !k.starts_with("c/")), "n2 never hears of the container on c");
    }

    #[test]
    fn increments_carry_what_changed_and_nothing_when_nothing_did() {
        let store = cluster();
        let first = NodeNetworks::of(&store.read(), "n1");
        let full = first.full();
        assert!(full.full && full.networks.len() == 2 && full.endpoints.len() == 3 && full.peers.len() == 1);
        assert_eq!(NodeNetworks::of(&store.read(), "n1").update_from(&first), None);

        // w2 becomes ready: one endpoint changes, nothing else is sent.
        let mut w2 = store.read().tasks["w2"].clone();
        w2.status.get_or_insert_default().set_state(TaskState::Running);
        apply(&store, vec![update(w2)]);
        let second = NodeNetworks::of(&store.read(), "n1");
        let up = second.update_from(&first).expect("a change");
        assert!(!up.full);
        assert_eq!(up.endpoints.iter().map(|e| (e.task_id.as_str(), e.ready)).collect::<Vec<_>>(), [("w2", true)]);
        assert!(up.networks.is_empty() && up.services.is_empty() && up.peers.is_empty());
        assert!(up.removed_endpoints.is_empty() && up.removed_networks.is_empty());

        // w2 stops for good and w1 is deleted: n1 has nothing left on a, so a, its
        // endpoints, its service and the peer n2 (only met on a) go.
        let mut w2 = store.read().tasks["w2"].clone();
        w2.status.get_or_insert_default().set_state(TaskState::Shutdown);
        let w1 = store.read().tasks["w1"].clone();
        apply(&store, vec![update(w2), delete(w1)]);
        let third = NodeNetworks::of(&store.read(), "n1");
        let up = third.update_from(&second).expect("a change");
        assert_eq!(up.removed_networks, ["a"]);
        assert_eq!(up.removed_endpoints, ["a/w1", "a/w2"]);
        assert_eq!(up.removed_services, ["a/web"]);
        assert_eq!(up.removed_peers, ["n2"]);
        assert!(up.networks.is_empty() && up.endpoints.is_empty());

        // The mesh's map, given the full map and then the increments, holds
        // what it holds given the last view whole.
        let mut map = shoal_mesh::NetworkMap::default();
        map.apply(&full).expect("the mesh reads the full map");
        for update in [second.update_from(&first), third.update_from(&second)].into_iter().flatten() {
            map.apply(&update).expect("the mesh reads an increment");
        }
        let mut whole = shoal_mesh::NetworkMap::default();
        whole.apply(&third.full()).expect("the mesh reads the last view");
        assert_eq!(map, whole);
        assert_eq!(map.endpoints.keys().collect::<Vec<_>>(), ["c/c1"]);
    }

    /// What the mesh would refuse (and with it the whole update) is not
    /// sent: a peer whose address is not IPv4, a network whose gateway lies
    /// outside its subnet.
    #[test]
    fn nothing_a_node_would_refuse_is_sent() {
        let store = cluster();
        let mut n2 = store.read().nodes["n2"].clone();
        n2.status.get_or_insert_default().addr = "node-two.example:2377".into();
        let mut c = store.read().networks["c"].clone();
        c.allocated.get_or_insert_default().gateway = "10.9.9.1".into();
        apply(&store, vec![update(n2), update(c)]);
        let view = NodeNetworks::of(&store.read(), "n1");
        assert!(view.peers.is_empty(), "{:?}", view.peers);
        assert_eq!(view.networks.keys().collect::<Vec<_>>(), ["a"]);
        let mut map = shoal_mesh::NetworkMap::default();
        map.apply(&view.full()).expect("the mesh takes the map");
        // A peer that reports its address with a port is sent the address alone.
        let mut n2 = store.read().nodes["n2"].clone();
        n2.status.get_or_insert_default().addr = "192.168.7.2:2377".into();
        apply(&store, vec![update(n2)]);
        let view = NodeNetworks::of(&store.read(), "n1");
        assert_eq!(view.peers["n2"].addr, "192.168.7.2");
    }

    #[test]
    fn networks_without_a_vni_and_tasks_not_yet_placed_are_left_out() {
        let store = Store::new();
        let mut fresh = network("a", 1);
        fresh.vni = 0;
        apply(
            &store,
            vec![
                create(fresh),
                create(network("b", 2)),
                create(task("t1", "s", "n1", TaskState::Running, &[("a", "10.0.1.3/24"), ("b", "10.0.2.3/24")])),
                create(task("t2", "s", "", TaskState::Pending, &[("b", "10.0.2.4/24")])),
            ],
        );
        let view = NodeNetworks::of(&store.read(), "n1");
        assert_eq!(view.networks.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(view.endpoints.keys().collect::<Vec<_>>(), ["b/t1"]);
    }
}
