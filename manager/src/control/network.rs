//! Networks: swarm-scoped overlay networks that services attach to.
//!
//! Each network gets a /24 subnet from the cluster's pool (10.0.0.0/8, from
//! 10.0.1.0/24 on; 10.0.0.0/24 stays free for the ingress network) or the
//! subnet its spec asks for: never one that overlaps another network's, nor
//! one holding a node's own address (the underlay its VXLAN traffic travels
//! on). Its gateway is the subnet's first address unless the spec names one;
//! its VNI comes from the allocator, or from the `vxlanid_list` option.
//! Encrypted overlays are refused until traffic between nodes can be
//! encrypted: a network asked to be encrypted is never created plain.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use shoal_proto::{IpamConfig, Network, NetworkSpec};

use super::propose::{create, delete};
use super::secret::check_object_name;
use super::{Control, ControlError};
use crate::identity::new_id;
use crate::ipam::Subnet;
use crate::store::{State, VNI_RANGE};

/// The only driver a swarm-scoped network may use.
pub const OVERLAY: &str = "overlay";

/// The driver option that asks for IPsec between nodes (refused for now).
pub const ENCRYPTED_OPTION: &str = "encrypted";

/// The driver option with which Docker lets a user choose an overlay's VNI.
pub const VNI_OPTION: &str = "com.docker.network.driver.overlay.vxlanid_list";

/// The longest container name or network alias accepted.
pub const MAX_NAME_BYTES: usize = 255;

/// Docker's rule for container names, which network aliases follow too
/// (they become names in the network's DNS): `[a-zA-Z0-9][a-zA-Z0-9_.-]*`,
/// at most 255 bytes. `what` names the thing in the error.
pub fn check_endpoint_name(what: &str, name: &str) -> Result<(), String> {
    let valid = name.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
        && name.len() <= MAX_NAME_BYTES
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if valid {
        return Ok(());
    }
    Err(format!(
        "{what} \"{}\" is not valid: use up to {MAX_NAME_BYTES} letters, digits, '_', '.' and '-', starting with a \
         letter or digit",
        name.escape_debug()
    ))
}

/// The subnets already allocated, in the store and earlier in this write,
/// with the names of their networks.
fn allocated<'a>(state: &'a State, pending: &'a [Network]) -> Vec<(Subnet, &'a str)> {
    state.networks.values().chain(pending).filter_map(|n| Some((Subnet::of(n)?, n.name()))).collect()
}

/// The nodes' own IPv4 addresses (as they reported them, and as managers
/// advertise them), with the nodes' names: an overlay must not cover them.
fn node_addresses(state: &State) -> Vec<(Ipv4Addr, String)> {
    let host = |addr: &str| -> Option<Ipv4Addr> {
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        host.parse().ok()
    };
    let mut out = Vec::new();
    for n in state.nodes.values() {
        let name = n.hostname().to_string();
        let status = n.status.as_ref().map(|s| s.addr.as_str());
        let manager = n.manager_status.as_ref().map(|m| m.addr.as_str());
        for ip in [status, manager].into_iter().flatten().filter_map(host) {
            out.push((ip, name.clone()));
        }
    }
    out
}

fn invalid(name: &str, why: impl std::fmt::Display) -> ControlError {
    ControlError::InvalidArgument(format!("network {name}: {why}"))
}

/// Checks a network spec and gives it its subnet and gateway (and its VNI
/// when the spec chooses one).
pub(crate) fn allocate(state: &State, pending: &[Network], spec: NetworkSpec) -> Result<Network, ControlError> {
    let name = spec.annotations.as_ref().map(|a| a.name.clone()).unwrap_or_default();
    check_object_name("network", &name)?;
    if let Some(a) = &spec.annotations {
        super::limits::check_labels("network", &name, &a.labels)?;
    }
    if spec.driver_opts.len() > super::limits::MAX_ITEMS {
        return Err(invalid(
            &name,
            format!("{} driver options, over the limit of {}", spec.driver_opts.len(), super::limits::MAX_ITEMS),
        ));
    }
    if !spec.driver.is_empty() && spec.driver != OVERLAY {
        return Err(invalid(
            &name,
            format!("driver \"{}\" is not supported in swarm scope: use \"{OVERLAY}\"", spec.driver),
        ));
    }
    if spec.driver_opts.contains_key(ENCRYPTED_OPTION) {
        return Err(invalid(
            &name,
            "encrypted overlay networks are not available yet (driver option \"encrypted\"): shoal will not \
             carry this network's traffic between nodes unencrypted; remove the option to create an unencrypted network",
        ));
    }
    if spec.ipam.len() > 1 {
        return Err(invalid(&name, "give at most one IPAM config (subnet); several are not supported yet"));
    }
    let asked = spec.ipam.first().cloned().unwrap_or_default();
    let used = allocated(state, pending);
    let nodes = node_addresses(state);
    let node_in = |s: &Subnet| nodes.iter().find(|(ip, _)| s.contains(u32::from(*ip)));
    let subnet = match asked.subnet.as_str() {
        "" if !asked.gateway.is_empty() || !asked.ip_range.is_empty() => {
            return Err(invalid(&name, "a gateway or IP range needs a subnet: give the subnet too"));
        }
        "" => {
            let taken: BTreeSet<u32> = used.iter().map(|(s, _)| s.addr).collect();
            (1u32..1 << 16)
                .map(|n| Subnet { addr: (10 << 24) | (n << 8), prefix: 24 })
                .find(|c| !taken.contains(&c.addr) && !used.iter().any(|(u, _)| u.overlaps(c)) && node_in(c).is_none())
                .ok_or_else(|| {
                    ControlError::Unavailable("the cluster's address pool 10.0.0.0/8 has no free /24 left".into())
                })?
        }
        text => {
            let subnet = Subnet::parse(text).ok_or_else(|| {
                invalid(
                    &name,
                    format!(
                        "invalid subnet \"{text}\": write an IPv4 network such as 10.20.0.0/24 (prefix at most /{})",
                        crate::ipam::MAX_NETWORK_PREFIX
                    ),
                )
            })?;
            if let Some((other, other_name)) = used.iter().find(|(u, _)| u.overlaps(&subnet)) {
                return Err(invalid(
                    &name,
                    format!("subnet {subnet} overlaps subnet {other} of network {other_name}: choose another"),
                ));
            }
            if let Some((ip, node)) = node_in(&subnet) {
                return Err(invalid(
                    &name,
                    format!(
                        "subnet {subnet} holds the address {ip} of node {node}, which overlay traffic between nodes \
                         travels on: choose another"
                    ),
                ));
            }
            subnet
        }
    };
    let gateway = match asked.gateway.as_str() {
        "" => Ipv4Addr::from(subnet.first_host()),
        text => {
            let ip: Ipv4Addr =
                text.parse().map_err(|_| invalid(&name, format!("gateway \"{text}\" is not an IPv4 address")))?;
            let n = u32::from(ip);
            if !subnet.contains(n) || n == subnet.addr || n == subnet.broadcast() {
                return Err(invalid(
                    &name,
                    format!("gateway {ip} is not a host address of subnet {subnet}: give one inside it"),
                ));
            }
            ip
        }
    };
    let ip_range = match asked.ip_range.as_str() {
        "" => String::new(),
        text => {
            let range = Subnet::parse_with(text, 32).filter(|r| subnet.covers(r)).ok_or_else(|| {
                invalid(&name, format!("IP range \"{text}\" is not a network inside subnet {subnet}"))
            })?;
            range.to_string()
        }
    };
    let vni = match spec.driver_opts.get(VNI_OPTION) {
        None => 0,
        Some(text) => {
            let vni = text.trim().parse::<u32>().ok().filter(|v| VNI_RANGE.contains(v)).ok_or_else(|| {
                invalid(
                    &name,
                    format!(
                        "option {VNI_OPTION} \"{text}\": give one VNI from {} to {}",
                        VNI_RANGE.start,
                        VNI_RANGE.end - 1
                    ),
                )
            })?;
            if let Some(other) = state.networks.values().chain(pending).find(|n| n.vni == vni) {
                return Err(invalid(&name, format!("VNI {vni} is network {}'s: choose another", other.name())));
            }
            vni
        }
    };
    let mut spec = spec;
    if spec.driver.is_empty() {
        spec.driver = OVERLAY.into();
    }
    Ok(Network {
        id: new_id(),
        meta: None,
        spec: Some(spec),
        allocated: Some(IpamConfig { subnet: subnet.to_string(), gateway: gateway.to_string(), ip_range }),
        vni,
    })
}

/// The services attached to network `id`, by name, sorted.
pub(crate) fn users(state: &State, id: &str) -> Vec<String> {
    let mut names: Vec<String> = state
        .services
        .values()
        .filter(|s| {
            s.spec.as_ref().and_then(|s| s.task.as_ref()).is_some_and(|t| t.networks.iter().any(|n| n.target == id))
        })
        .map(|s| s.name().to_string())
        .collect();
    names.sort();
    names
}

/// The standalone containers attached to network `id`, by name, sorted.
pub(crate) fn attached_containers(state: &State, id: &str) -> Vec<String> {
    let mut names: Vec<String> = state
        .tasks
        .values()
        .filter(|t| t.desired_state() <= shoal_proto::TaskState::Running && !t.state().is_terminal())
        .filter_map(|t| {
            let a = t.attachment.as_ref()?;
            t.spec.as_ref()?.networks.iter().any(|n| n.target == id).then(|| a.container_name.clone())
        })
        .collect();
    names.sort();
    names
}

/// Why network `n` cannot go yet, if it cannot: services (other than
/// `leaving`, removed in the same write) or standalone containers use it.
pub(crate) fn in_use(state: &State, n: &Network, leaving: &[String]) -> Option<String> {
    let services: Vec<String> = users(state, &n.id).into_iter().filter(|u| !leaving.contains(u)).collect();
    if !services.is_empty() {
        return Some(format!(
            "network {} is in use by service {}: remove the service or detach it first",
            n.name(),
            services.join(", ")
        ));
    }
    let containers = attached_containers(state, &n.id);
    if !containers.is_empty() {
        return Some(format!(
            "network {} is in use by container {}: disconnect it first (\"docker network disconnect {} CONTAINER\")",
            n.name(),
            containers.join(", "),
            n.name()
        ));
    }
    None
}

impl Control {
    /// Creates a network; returns its ID.
    pub async fn create_network(&self, spec: NetworkSpec) -> Result<String, ControlError> {
        self.commit_fresh(|state| {
            let name = spec.annotations.as_ref().map(|a| a.name.as_str()).unwrap_or("");
            if state.network_named(name).is_some() {
                return Err(ControlError::Conflict(format!("network with name {name} already exists")));
            }
            if spec.ingress {
                return Err(ControlError::InvalidArgument(format!(
                    "network {name}: the swarm makes its ingress network itself, the first time a port is published"
                )));
            }
            let network = allocate(state, &[], spec.clone())?;
            let id = network.id.clone();
            Ok((vec![create(network)], id))
        })
        .await
    }

    /// Removes a network no service is attached to; returns its name.
    pub async fn remove_network(&self, key: &str) -> Result<String, ControlError> {
        self.commit_fresh(|state| {
            let network = state.find_network(key)?;
            if let Some(why) = in_use(state, network, &[]) {
                return Err(ControlError::InvalidArgument(why));
            }
            if network.spec.as_ref().is_some_and(|s| s.ingress) {
                let publishing: Vec<&str> = state
                    .services
                    .values()
                    .filter(|s| crate::allocator::ingress::publishes(s))
                    .map(|s| s.name())
                    .collect();
                if !publishing.is_empty() {
                    return Err(ControlError::InvalidArgument(format!(
                        "network {} is the routing mesh's, and services {} publish ports through it: remove their \
                         published ports first",
                        network.name(),
                        publishing.join(", ")
                    )));
                }
            }
            Ok((vec![delete(network.clone())], network.name().to_string()))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::Annotations;

    fn spec(name: &str, subnet: &str) -> NetworkSpec {
        NetworkSpec {
            annotations: Some(Annotations { name: name.into(), ..Default::default() }),
            ipam: if subnet.is_empty() {
                vec![]
            } else {
                vec![IpamConfig { subnet: subnet.into(), ..Default::default() }]
            },
            ..Default::default()
        }
    }

    fn with_ipam(subnet: &str, gateway: &str, ip_range: &str) -> NetworkSpec {
        NetworkSpec {
            ipam: vec![IpamConfig { subnet: subnet.into(), gateway: gateway.into(), ip_range: ip_range.into() }],
            ..spec("n", "")
        }
    }

    fn with_opts(opts: &[(&str, &str)]) -> NetworkSpec {
        NetworkSpec { driver_opts: opts.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), ..spec("n", "") }
    }

    #[test]
    fn encrypted_overlays_are_refused_whatever_the_value() {
        let state = State::default();
        for value in ["", "true", "false"] {
            let err = allocate(&state, &[], with_opts(&[("encrypted", value)])).unwrap_err().to_string();
            assert!(err.contains("network n: encrypted overlay networks are not available yet"), "{err}");
        }
    }

    #[test]
    fn a_subnet_holding_a_nodes_address_is_refused_and_the_pool_skips_it() {
        use shoal_proto::{Node, NodeDescription, NodeStatus};
        let mut state = State::default();
        state.nodes.insert(
            "n1".into(),
            Node {
                id: "n1".into(),
                description: Some(NodeDescription { hostname: "host-1".into(), ..Default::default() }),
                status: Some(NodeStatus { addr: "10.0.1.7".into(), ..Default::default() }),
                ..Default::default()
            },
        );
        let err = allocate(&state, &[], spec("n", "10.0.0.0/16")).unwrap_err().to_string();
        assert!(err.contains("subnet 10.0.0.0/16 holds the address 10.0.1.7 of node host-1"), "{err}");
        let pooled = allocate(&state, &[], spec("p", "")).expect("a pooled subnet");
        assert_eq!(pooled.allocated.as_ref().map(|a| a.subnet.as_str()), Some("10.0.2.0/24"));
    }

    #[test]
    fn gateways_ranges_and_chosen_vnis_are_kept() {
        let mut state = State::default();
        let n = allocate(&state, &[], with_ipam("10.9.0.0/24", "10.9.0.254", "10.9.0.128/25")).expect("a network");
        let a = n.allocated.clone().expect("allocated");
        assert_eq!(
            (a.subnet.as_str(), a.gateway.as_str(), a.ip_range.as_str()),
            ("10.9.0.0/24", "10.9.0.254", "10.9.0.128/25")
        );
        assert_eq!(n.vni, 0, "the allocator gives VNIs");
        let mut chosen = allocate(&state, &[], with_opts(&[(VNI_OPTION, "5000")])).expect("a chosen VNI");
        assert_eq!(chosen.vni, 5000);
        chosen.id = "c".into();
        state.networks.insert("c".into(), chosen);
        let err = allocate(&state, &[], with_opts(&[(VNI_OPTION, "5000")])).unwrap_err().to_string();
        assert!(err.contains("VNI 5000 is network n's"), "{err}");
    }

    #[test]
    fn subnets_come_from_the_pool_without_overlap() {
        let mut state = State::default();
        let a = allocate(&state, &[], spec("a", "")).unwrap();
        assert_eq!(a.allocated.as_ref().unwrap().subnet, "10.0.1.0/24");
        assert_eq!(a.allocated.as_ref().unwrap().gateway, "10.0.1.1");
        let b = allocate(&state, std::slice::from_ref(&a), spec("b", "")).unwrap();
        assert_eq!(b.allocated.as_ref().unwrap().subnet, "10.0.2.0/24");
        state.networks.insert(a.id.clone(), a);
        // A user's /16 covering 10.0.x.x pushes the pool past it.
        let wide = allocate(&state, &[], spec("wide", "10.0.0.0/16")).unwrap_err().to_string();
        assert!(wide.contains("network wide: subnet 10.0.0.0/16 overlaps subnet 10.0.1.0/24 of network a"), "{wide}");
        let user = allocate(&state, &[], spec("u", "10.0.3.0/24")).unwrap();
        state.networks.insert(user.id.clone(), user);
        let next = allocate(&state, &[], spec("c", "")).unwrap();
        assert_eq!(next.allocated.as_ref().unwrap().subnet, "10.0.2.0/24");
    }

    #[test]
    fn bad_specs_are_refused_naming_the_network() {
        let state = State::default();
        for (s, why) in [
            (spec("n", "10.0.0.1/24"), "invalid subnet"),
            (spec("n", "nonsense"), "invalid subnet"),
            (spec("bad name", ""), "invalid"),
            (NetworkSpec { driver: "bridge".into(), ..spec("n", "") }, "not supported in swarm scope"),
            (with_ipam("10.9.0.0/24", "10.8.0.1", ""), "gateway 10.8.0.1 is not a host address of subnet 10.9.0.0/24"),
            (with_ipam("10.9.0.0/24", "10.9.0.255", ""), "not a host address"),
            (with_ipam("10.9.0.0/24", "10.9.0.0", ""), "not a host address"),
            (with_ipam("10.9.0.0/24", "gw", ""), "gateway \"gw\" is not an IPv4 address"),
            (with_ipam("", "10.9.0.1", ""), "needs a subnet"),
            (with_ipam("10.9.0.0/24", "", "10.9.1.0/28"), "IP range \"10.9.1.0/28\" is not a network inside"),
            (with_opts(&[("com.docker.network.driver.overlay.vxlanid_list", "7")]), "give one VNI from 4096"),
        ] {
            let err = allocate(&state, &[], s).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
    }
}
