//! The node's two local bridges, each with a node-local subnet and NAT outbound: the gateway
//! bridge `shoal_gwbridge` (Docker's `docker_gwbridge`: the way out for containers on
//! overlay networks, its ports isolated so that containers cannot reach each other through
//! it) and the default bridge `shoal0` (Docker's `bridge` network, for standalone
//! containers). Their subnets are chosen once per node among private ranges that no address
//! or route of the node overlaps, and kept in the mesh's state, so a restart keeps them; the
//! addresses of the sandboxes on them are allocated here, from the sandboxes' records.

use std::{collections::BTreeSet, net::Ipv4Addr};

use rtnetlink::packet_route::link::InfoKind;
use serde::{Deserialize, Serialize};

use crate::{
    error::MeshError,
    map::Cidr,
    names::{DEFAULT_BRIDGE, GATEWAY_BRIDGE},
    netlink::{self, Link, Netlink},
};

/// One of the node's local bridges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocalBridge {
    /// `shoal_gwbridge`.
    Gateway,
    /// `shoal0`.
    Default,
}

impl LocalBridge {
    pub(crate) fn name(self) -> &'static str {
        match self {
            LocalBridge::Gateway => GATEWAY_BRIDGE,
            LocalBridge::Default => DEFAULT_BRIDGE,
        }
    }

    /// Ports that reach only the bridge, not each other.
    pub(crate) fn isolated(self) -> bool {
        self == LocalBridge::Gateway
    }
}

/// The subnets of the node's local bridges (the bridge has the first address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalSubnets {
    pub gateway: Cidr,
    pub default: Cidr,
}

impl LocalSubnets {
    pub(crate) fn of(&self, bridge: LocalBridge) -> Cidr {
        match bridge {
            LocalBridge::Gateway => self.gateway,
            LocalBridge::Default => self.default,
        }
    }
}

/// The bridge's own address in `subnet`: its first host address.
pub(crate) fn bridge_address(subnet: Cidr) -> Cidr {
    let network = subnet.network();
    Cidr { addr: Ipv4Addr::from(u32::from(network.addr) + 1), prefix: subnet.prefix }
}

/// Candidates, in Docker's order: `172.17.0.0/16` to `172.31.0.0/16`, then `192.168.x.0/20`.
fn candidates() -> impl Iterator<Item = Cidr> {
    let b = (17..=31).map(|second| Cidr { addr: Ipv4Addr::new(172, second, 0, 0), prefix: 16 });
    let c = (0..16).map(|i| Cidr { addr: Ipv4Addr::new(192, 168, i * 16, 0), prefix: 20 });
    b.chain(c)
}

fn overlaps(a: Cidr, b: Cidr) -> bool {
    let prefix = a.prefix.min(b.prefix);
    let mask = Cidr { addr: a.addr, prefix }.mask();
    u32::from(a.addr) & mask == u32::from(b.addr) & mask
}

/// Chooses the local subnets: the ones given, else the first candidates that overlap none of
/// `taken` (the node's addresses and routes, and the overlay networks' subnets), the
/// default bridge first as Docker's `docker0` is.
pub(crate) fn choose(gateway: Option<Cidr>, default: Option<Cidr>, taken: &[Cidr]) -> Result<LocalSubnets, MeshError> {
    let mut taken: Vec<Cidr> = taken.iter().filter(|c| c.prefix > 0).copied().collect();
    let mut pick = |given: Option<Cidr>, what: &str| -> Result<Cidr, MeshError> {
        let subnet = match given {
            Some(given) => {
                if given.prefix > 30 {
                    return Err(MeshError::Invalid(format!(
                        "the {what} subnet {given} is too small: give a prefix of at most /30"
                    )));
                }
                given.network()
            }
            None => candidates().find(|c| !taken.iter().any(|t| overlaps(*c, *t))).ok_or_else(|| {
                MeshError::Invalid(format!(
                    "no free private subnet for the {what}: every one of 172.17-31.0.0/16 and 192.168.0-240.0/20 overlaps an address or route of this node; give one in the mesh's configuration"
                ))
            })?,
        };
        taken.push(subnet);
        Ok(subnet)
    };
    let default = pick(default, "default bridge")?;
    let gateway = pick(gateway, "gateway bridge")?;
    if overlaps(default, gateway) {
        return Err(MeshError::Invalid(format!(
            "the default bridge's subnet {default} overlaps the gateway bridge's {gateway}: give subnets apart"
        )));
    }
    Ok(LocalSubnets { gateway, default })
}

/// The lowest address of `subnet` that is neither the network's, the bridge's, the
/// broadcast address nor in `used`.
pub(crate) fn allocate(subnet: Cidr, used: &BTreeSet<Ipv4Addr>, bridge: LocalBridge) -> Result<Cidr, MeshError> {
    let network = u32::from(subnet.network().addr);
    let broadcast = network | !subnet.mask();
    (network + 2..broadcast)
        .map(Ipv4Addr::from)
        .find(|a| !used.contains(a))
        .map(|addr| Cidr { addr, prefix: subnet.prefix })
        .ok_or_else(|| {
            MeshError::Invalid(format!(
                "every address of {} ({subnet}) is taken: remove containers on it first",
                bridge.name()
            ))
        })
}

/// Makes the local bridge exist with its address and MTU; its ports' isolation is set as
/// they are connected and checked by each apply.
pub(crate) async fn converge(
    nl: &Netlink,
    links: &[Link],
    bridge: LocalBridge,
    subnet: Cidr,
    mtu: u32,
) -> Result<Link, MeshError> {
    let name = bridge.name();
    let link = match links.iter().find(|l| l.name == name) {
        Some(link) if link.kind == Some(InfoKind::Bridge) => link.clone(),
        other => {
            if let Some(link) = other {
                nl.del_link(link.index, name).await?;
            }
            nl.add_bridge(name, mtu).await?;
            nl.link(name).await?.ok_or_else(|| netlink::not_found(format!("bridge {name} once made")))?
        }
    };
    nl.set_mtu(&link, mtu).await?;
    nl.converge_address(&link, bridge_address(subnet)).await?;
    nl.set_up(&link).await?;
    Ok(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().expect("cidr")
    }

    #[test]
    fn subnets_avoid_what_the_node_uses() {
        let chosen = choose(None, None, &[]).expect("free");
        assert_eq!((chosen.default, chosen.gateway), (cidr("172.17.0.0/16"), cidr("172.18.0.0/16")));
        // Docker's docker0 and a route into 172.18/16.
        let chosen = choose(None, None, &[cidr("172.17.0.1/16"), cidr("172.18.5.0/24")]).expect("free");
        assert_eq!((chosen.default, chosen.gateway), (cidr("172.19.0.0/16"), cidr("172.20.0.0/16")));
        // A default route (prefix 0) takes nothing.
        assert_eq!(choose(None, None, &[cidr("0.0.0.0/0")]).expect("free").default, cidr("172.17.0.0/16"));
        // Everything taken.
        let everything = [cidr("172.16.0.0/12"), cidr("192.168.0.0/16")];
        assert!(choose(None, None, &everything).is_err());
        assert!(choose(Some(cidr("10.9.0.0/31")), None, &[]).is_err());
        assert!(choose(Some(cidr("172.17.3.0/24")), None, &[]).is_err(), "given overlapping the default");
    }

    #[test]
    fn addresses_are_allocated_lowest_first() {
        let subnet = cidr("172.18.0.0/30");
        let mut used = BTreeSet::new();
        let a = allocate(subnet, &used, LocalBridge::Gateway).expect("one");
        assert_eq!(a, cidr("172.18.0.2/30"));
        used.insert(a.addr);
        assert!(allocate(subnet, &used, LocalBridge::Gateway).is_err(), "a /30 holds one sandbox");
        assert_eq!(bridge_address(subnet), cidr("172.18.0.1/30"));
    }
}
