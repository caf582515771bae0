//! The routing mesh's share of the allocator: the `ingress` network, each
//! node's address on it, and the published ports.
//!
//! - The ingress network (Docker's `ingress`, 10.0.0.0/24 when free) is
//!   made the first time a service publishes a port in ingress mode, and
//!   kept. The tasks of such services get an address on it after those of
//!   their own networks; no name is resolved on it.
//! - While any service publishes a port in ingress mode, every node has an
//!   endpoint on it (a task with an attachment and no container, Docker's
//!   `ingress-sbox`): the address its routing mesh connects to the tasks
//!   from. Nodes that are gone lose theirs; with no port published, none is
//!   kept, so a swarm without published ports has no ingress devices.
//! - A port published as 0 gets the lowest free port of 30000-32767, kept
//!   across updates while the spec still asks for it.

use std::collections::BTreeSet;

use shoal_proto::{
    Annotations, IpamConfig, Network, NetworkAttachmentConfig, NetworkAttachmentSpec, NetworkSpec, PortConfig,
    PublishMode, Service, StoreAction, Task, TaskSpec, TaskState, TaskStatus,
};

use crate::control::propose::{create, delete};
use crate::identity::new_id;
use crate::store::State;

/// The ingress network's name.
pub const INGRESS: &str = "ingress";
/// The subnet it takes when no other network holds it.
const INGRESS_SUBNET: &str = "10.0.0.0/24";
/// The name of a node's endpoint on the ingress network.
pub const NODE_ENDPOINT: &str = "ingress-endpoint";
/// Where ports published as 0 are taken from (Docker's range).
pub const DYNAMIC_PORTS: std::ops::RangeInclusive<u32> = 30000..=32767;

/// The swarm's ingress network, if it has one.
pub fn ingress_network(state: &State) -> Option<&Network> {
    let mut found: Vec<&Network> =
        state.networks.values().filter(|n| n.spec.as_ref().is_some_and(|s| s.ingress)).collect();
    // Only one is ever made; were there two, the oldest wins everywhere.
    found.sort_by_key(|n| (n.meta.as_ref().map_or(0, |m| m.created_at), n.id.as_str()));
    found.into_iter().next()
}

/// Whether `t` is a node's endpoint on the ingress network (an attachment with no container).
pub fn is_node_endpoint(t: &Task) -> bool {
    t.attachment.as_ref().is_some_and(|a| a.container_id.is_empty())
}

/// The ports `service`'s spec publishes in ingress mode.
pub fn ingress_ports(service: &Service) -> impl Iterator<Item = &PortConfig> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.endpoint.as_ref())
        .map(|e| e.ports.as_slice())
        .unwrap_or(&[])
        .iter()
        .filter(|p| p.publish_mode() == PublishMode::Ingress)
}

/// Whether `service` publishes a port in ingress mode (its tasks are on the ingress network).
pub fn publishes(service: &Service) -> bool {
    ingress_ports(service).next().is_some()
}

/// The ingress network when missing and needed, and the nodes' endpoints on it.
pub(super) fn ingress(state: &State, now: i64, actions: &mut Vec<StoreAction>) {
    let needed = state.services.values().any(publishes);
    let Some(network) = ingress_network(state) else {
        if needed {
            if let Some(n) = new_ingress(state) {
                actions.push(create(n));
            }
        }
        return;
    };
    let endpoints: Vec<&Task> = state
        .tasks
        .values()
        .filter(|t| is_node_endpoint(t) && t.desired_state() <= TaskState::Running && !t.state().is_terminal())
        .collect();
    let mut served = BTreeSet::new();
    for t in &endpoints {
        // One per node that exists, while ports are published; an extra one (never made, but
        // cheap to heal) goes too.
        if !needed || !state.nodes.contains_key(&t.node_id) || !served.insert(t.node_id.as_str()) {
            actions.push(delete((*t).clone()));
        }
    }
    if !needed {
        return;
    }
    for node in state.nodes.values().filter(|n| !served.contains(n.id.as_str())) {
        let mut task = Task {
            id: new_id(),
            node_id: node.id.clone(),
            annotations: Some(Annotations { name: NODE_ENDPOINT.into(), ..Default::default() }),
            spec: Some(TaskSpec {
                networks: vec![NetworkAttachmentConfig { target: network.id.clone(), aliases: Vec::new() }],
                ..Default::default()
            }),
            attachment: Some(NetworkAttachmentSpec {
                container_id: String::new(),
                container_name: NODE_ENDPOINT.into(),
            }),
            status: Some(TaskStatus { timestamp: now, message: super::WAITING.into(), ..Default::default() }),
            ..Default::default()
        };
        task.set_desired_state(TaskState::Running);
        actions.push(create(task));
    }
}

/// The ingress network to make: 10.0.0.0/24 unless taken, else one from the pool.
fn new_ingress(state: &State) -> Option<Network> {
    // A user's network may be named `ingress` already: the mesh's then has another name.
    let name = if state.network_named(INGRESS).is_some() { "shoal-ingress" } else { INGRESS };
    let spec = |subnet: &str| NetworkSpec {
        annotations: Some(Annotations { name: name.into(), ..Default::default() }),
        driver: crate::control::network::OVERLAY.into(),
        ipam: if subnet.is_empty() {
            Vec::new()
        } else {
            vec![IpamConfig { subnet: subnet.into(), ..Default::default() }]
        },
        ingress: true,
        ..Default::default()
    };
    let made = crate::control::network::allocate(state, &[], spec(INGRESS_SUBNET))
        .or_else(|_| crate::control::network::allocate(state, &[], spec("")));
    match made {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "the ingress network cannot be made");
            None
        }
    }
}

/// Every port published (by number, allocated or asked for) by a service other than `except`,
/// with its protocol.
fn used_ports<'a>(state: &'a State, except: &'a str) -> impl Iterator<Item = (u32, i32)> + 'a {
    state.services.values().filter(move |s| s.id != except).flat_map(|s| {
        let asked = s.spec.as_ref().and_then(|s| s.endpoint.as_ref()).map(|e| e.ports.as_slice()).unwrap_or(&[]);
        let given = s.endpoint.as_ref().map(|e| e.ports.as_slice()).unwrap_or(&[]);
        asked.iter().chain(given).filter(|p| p.published_port != 0).map(|p| (p.published_port, p.protocol))
    })
}

/// `service`'s published ports as allocated: the spec's, each 0 given a free port from
/// [`DYNAMIC_PORTS`] (the one it had, if it had one). `taken` holds the ports given in this
/// pass. `None`: the range has no port left.
pub(super) fn allocated_ports(
    state: &State,
    service: &Service,
    taken: &mut BTreeSet<(u32, i32)>,
) -> Option<Vec<PortConfig>> {
    let asked = service.spec.as_ref().and_then(|s| s.endpoint.as_ref()).map(|e| e.ports.as_slice()).unwrap_or(&[]);
    let before = service.endpoint.as_ref().map(|e| e.ports.as_slice()).unwrap_or(&[]);
    let mut used: BTreeSet<(u32, i32)> = used_ports(state, &service.id).collect();
    used.extend(asked.iter().filter(|p| p.published_port != 0).map(|p| (p.published_port, p.protocol)));
    let mut out = Vec::with_capacity(asked.len());
    let mut kept = vec![false; before.len()];
    for p in asked {
        let mut p = p.clone();
        if p.published_port == 0 {
            // The port it had for the same target, protocol and mode, if no one took it since.
            let had = before.iter().enumerate().find(|(i, b)| {
                !kept[*i]
                    && b.target_port == p.target_port
                    && b.protocol == p.protocol
                    && b.publish_mode == p.publish_mode
                    && DYNAMIC_PORTS.contains(&b.published_port)
                    && !used.contains(&(b.published_port, b.protocol))
                    && !taken.contains(&(b.published_port, b.protocol))
            });
            let port = match had {
                Some((i, b)) => {
                    kept[i] = true;
                    b.published_port
                }
                None => DYNAMIC_PORTS
                    .clone()
                    .find(|n| !used.contains(&(*n, p.protocol)) && !taken.contains(&(*n, p.protocol)))?,
            };
            taken.insert((port, p.protocol));
            used.insert((port, p.protocol));
            p.published_port = port;
        }
        out.push(p);
    }
    Some(out)
}
