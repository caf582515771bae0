//! Networks: swarm-scoped overlay networks that services attach to.
//!
//! Each network gets a /24 subnet from the cluster's pool (10.0.0.0/8, from
//! 10.0.1.0/24 on; 10.0.0.0/24 stays free for the ingress network) or the
//! subnet its spec asks for, never one another network has. The data path
//! that will carry traffic on it (bridge, VXLAN) is not built yet: the
//! object and its subnet are what later work builds on.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use shoal_proto::{IpamConfig, Network, NetworkSpec};

use super::propose::{create, delete};
use super::secret::check_object_name;
use super::{Control, ControlError};
use crate::identity::new_id;
use crate::store::State;

/// The only driver a swarm-scoped network may use.
pub const OVERLAY: &str = "overlay";

/// An IPv4 subnet: address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Subnet {
    addr: u32,
    prefix: u8,
}

impl Subnet {
    fn parse(text: &str) -> Option<Subnet> {
        let (addr, prefix) = text.split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 30)?;
        let addr = u32::from(addr);
        (addr & !mask(prefix) == 0).then_some(Subnet { addr, prefix })
    }

    fn overlaps(&self, other: &Subnet) -> bool {
        let m = mask(self.prefix.min(other.prefix));
        self.addr & m == other.addr & m
    }

    /// The first host address: the gateway Docker picks.
    fn gateway(&self) -> String {
        Ipv4Addr::from(self.addr + 1).to_string()
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.addr), self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

/// The subnets already allocated, in the store and earlier in this write.
fn allocated(state: &State, pending: &[Network]) -> Vec<Subnet> {
    state
        .networks
        .values()
        .chain(pending)
        .filter_map(|n| n.allocated.as_ref().and_then(|a| Subnet::parse(&a.subnet)))
        .collect()
}

/// Checks a network spec and gives it its subnet and gateway.
pub(crate) fn allocate(state: &State, pending: &[Network], spec: NetworkSpec) -> Result<Network, ControlError> {
    let name = spec.annotations.as_ref().map(|a| a.name.clone()).unwrap_or_default();
    check_object_name("network", &name)?;
    if let Some(a) = &spec.annotations {
        super::limits::check_labels("network", &name, &a.labels)?;
    }
    if spec.driver_opts.len() > super::limits::MAX_ITEMS {
        return Err(ControlError::InvalidArgument(format!(
            "network {name}: {} driver options, over the limit of {}",
            spec.driver_opts.len(),
            super::limits::MAX_ITEMS
        )));
    }
    if !spec.driver.is_empty() && spec.driver != OVERLAY {
        return Err(ControlError::InvalidArgument(format!(
            "network {name}: driver \"{}\" is not supported in swarm scope: use \"{OVERLAY}\"",
            spec.driver
        )));
    }
    if spec.ipam.len() > 1 {
        return Err(ControlError::InvalidArgument(format!(
            "network {name}: give at most one IPAM config (subnet); several are not supported yet"
        )));
    }
    let used = allocated(state, pending);
    let subnet = match spec.ipam.first().map(|c| c.subnet.as_str()).filter(|s| !s.is_empty()) {
        Some(text) => {
            let subnet = Subnet::parse(text).ok_or_else(|| {
                ControlError::InvalidArgument(format!(
                    "network {name}: invalid subnet \"{text}\": write an IPv4 network such as 10.20.0.0/24 (prefix at most /30)"
                ))
            })?;
            if let Some(other) = used.iter().find(|u| u.overlaps(&subnet)) {
                return Err(ControlError::InvalidArgument(format!(
                    "network {name}: subnet {subnet} overlaps {other}, which another network has: choose another"
                )));
            }
            subnet
        }
        None => {
            let taken: BTreeSet<u32> = used.iter().map(|s| s.addr).collect();
            (1u32..1 << 16)
                .map(|n| Subnet { addr: (10 << 24) | (n << 8), prefix: 24 })
                .find(|c| !taken.contains(&c.addr) && !used.iter().any(|u| u.overlaps(c)))
                .ok_or_else(|| {
                    ControlError::Unavailable("the cluster's address pool 10.0.0.0/8 has no free /24 left".into())
                })?
        }
    };
    let gateway =
        spec.ipam.first().map(|c| c.gateway.clone()).filter(|g| !g.is_empty()).unwrap_or_else(|| subnet.gateway());
    let mut spec = spec;
    if spec.driver.is_empty() {
        spec.driver = OVERLAY.into();
    }
    Ok(Network {
        id: new_id(),
        meta: None,
        spec: Some(spec),
        allocated: Some(IpamConfig { subnet: subnet.to_string(), gateway, ip_range: String::new() }),
        vni: 0,
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

impl Control {
    /// Creates a network; returns its ID.
    pub async fn create_network(&self, spec: NetworkSpec) -> Result<String, ControlError> {
        self.commit_fresh(|state| {
            let name = spec.annotations.as_ref().map(|a| a.name.as_str()).unwrap_or("");
            if state.network_named(name).is_some() {
                return Err(ControlError::Conflict(format!("network with name {name} already exists")));
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
            let users = users(state, &network.id);
            if !users.is_empty() {
                return Err(ControlError::InvalidArgument(format!(
                    "network {} is in use by service {}: remove the service or detach it first",
                    network.name(),
                    users.join(", ")
                )));
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
        let wide = allocate(&state, &[], spec("wide", "10.0.0.0/16"));
        assert!(wide.unwrap_err().to_string().contains("overlaps 10.0.1.0/24"));
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
        ] {
            let err = allocate(&state, &[], s).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
    }
}
