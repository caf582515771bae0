//! One overlay network on this node: its bridge `sb-<vni>` holding the gateway address, and
//! its VXLAN device `sv-<vni>` (learning off, proxy ARP on) enslaved to it, with a neighbour
//! entry (IP → MAC) and a forwarding entry (MAC → the peer's underlay address) for every
//! endpoint on another node. Frames for local endpoints stay on the bridge; the VXLAN device
//! answers ARP for remote ones from its neighbour table and sends their frames to the node
//! that has them, so nothing is flooded between nodes and nothing is learnt. The bridge
//! does not learn on the VXLAN port either: a static bridge entry per remote endpoint sends
//! its frames there, so an address that moves between nodes is never held by a stale entry.

use std::{collections::BTreeMap, net::Ipv4Addr};

use rtnetlink::packet_route::link::InfoKind;

use crate::{
    error::MeshError,
    map::{Cidr, MapNetwork},
    names::{self, VXLAN_PORT},
    netlink::{self, Link, Neighbour, Netlink, Vxlan},
};

/// What a network's devices should be on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OverlayPlan {
    pub vni: u32,
    /// The bridge's address, with the subnet's prefix: the network's gateway, or on the
    /// ingress network (where no container has a route through the bridge) this node's own
    /// address there, from which its routing mesh reaches the tasks.
    pub gateway: Cidr,
    /// The ingress network: the bridge's MAC is the one its address implies (as a task's
    /// is), so that the other nodes reach it by the entries they make for every endpoint.
    pub node_endpoint: bool,
    pub mtu: u32,
    pub underlay: Ipv4Addr,
    /// The remote endpoints: address → the underlay address of the node that has it.
    pub remote: BTreeMap<Ipv4Addr, Ipv4Addr>,
}

impl OverlayPlan {
    /// The plan of `network`; `node_endpoint` is this node's own address on it (the ingress
    /// network's).
    pub(crate) fn new(
        network: &MapNetwork,
        node_endpoint: Option<Ipv4Addr>,
        underlay: Ipv4Addr,
        mtu: u32,
    ) -> OverlayPlan {
        OverlayPlan {
            vni: network.vni,
            gateway: Cidr { addr: node_endpoint.unwrap_or(network.gateway), prefix: network.subnet.prefix },
            node_endpoint: node_endpoint.is_some(),
            mtu,
            underlay,
            remote: BTreeMap::new(),
        }
    }

    fn vxlan(&self) -> Vxlan {
        // No outer UDP checksum, as Docker's overlay: the inner packets carry their own, and
        // computing one for every encapsulated segment costs throughput.
        Vxlan { vni: self.vni, local: self.underlay, port: VXLAN_PORT, learning: false, proxy: true, udp_csum: false }
    }
}

/// Makes the network's devices and entries what `plan` says; what is right already is left
/// as it is, so traffic is not interrupted.
pub(crate) async fn converge(nl: &Netlink, links: &[Link], plan: &OverlayPlan) -> Result<(), MeshError> {
    let bridge_name = names::bridge(plan.vni);
    let vxlan_name = names::vxlan(plan.vni);
    let find = |name: &str| links.iter().find(|l| l.name == name).cloned();

    let bridge = match find(&bridge_name) {
        Some(link) if link.kind == Some(InfoKind::Bridge) => link,
        other => {
            if let Some(link) = other {
                nl.del_link(link.index, &link.name).await?;
            }
            nl.add_bridge(&bridge_name, plan.mtu).await?;
            nl.link(&bridge_name).await?.ok_or_else(|| netlink::not_found(format!("bridge {bridge_name} once made")))?
        }
    };
    nl.set_mtu(&bridge, plan.mtu).await?;
    if plan.node_endpoint {
        nl.set_mac(&bridge, &names::mac(plan.gateway.addr)).await?;
    }
    nl.converge_address(&bridge, plan.gateway).await?;

    let vxlan = match find(&vxlan_name) {
        Some(link) if link.kind == Some(InfoKind::Vxlan) && link.vxlan == Some(plan.vxlan()) => link,
        other => {
            // VXLAN settings cannot be changed in place: the device is made again.
            if let Some(link) = other {
                nl.del_link(link.index, &link.name).await?;
            }
            nl.add_vxlan(&vxlan_name, plan.vxlan(), plan.mtu).await?;
            nl.link(&vxlan_name)
                .await?
                .ok_or_else(|| netlink::not_found(format!("VXLAN device {vxlan_name} once made")))?
        }
    };
    nl.set_mtu(&vxlan, plan.mtu).await?;
    nl.set_controller(&vxlan, bridge.index, &bridge_name).await?;
    // The bridge must not learn endpoint addresses from frames that come in over VXLAN: an
    // address (and so its MAC) freed on another node may next be given to a task here, and a
    // learnt entry would keep sending its frames back to the VXLAN device until the new task
    // happened to send one itself. Remote endpoints have forwarding entries of their own.
    nl.stop_port_learning(&vxlan).await?;
    nl.set_up(&vxlan).await?;
    nl.set_up(&bridge).await?;

    let neighbours: Vec<Neighbour> =
        plan.remote.keys().map(|ip| Neighbour { ip: *ip, mac: names::mac(*ip).to_vec() }).collect();
    let mut missing = neighbours.clone();
    for (entry, message) in nl.neighbours(vxlan.index).await? {
        match missing.iter().position(|n| *n == entry) {
            Some(i) => {
                missing.swap_remove(i);
            }
            None => nl.del_neighbour(message, &format!("neighbour {} on {vxlan_name}", entry.ip)).await?,
        }
    }
    for entry in &missing {
        nl.add_neighbour(&vxlan, entry).await?;
    }

    let forwarding: Vec<Neighbour> =
        plan.remote.iter().map(|(ip, peer)| Neighbour { ip: *peer, mac: names::mac(*ip).to_vec() }).collect();
    let mut missing = forwarding.clone();
    for (entry, message) in nl.fdb(vxlan.index).await? {
        match missing.iter().position(|n| *n == entry) {
            Some(i) => {
                missing.swap_remove(i);
            }
            None => {
                let what = format!("forwarding entry {} on {vxlan_name}", names::mac_string(&entry.mac));
                nl.del_neighbour(message, &what).await?
            }
        }
    }
    for entry in &missing {
        nl.add_fdb(&vxlan, entry).await?;
    }

    // The bridge sends a remote endpoint's frames straight to the VXLAN device, without
    // flooding them to the local ports first.
    let mut missing: Vec<Vec<u8>> = plan.remote.keys().map(|ip| names::mac(*ip).to_vec()).collect();
    for (mac, message) in nl.port_fdb(vxlan.index).await? {
        match missing.iter().position(|m| *m == mac) {
            Some(i) => {
                missing.swap_remove(i);
            }
            None => {
                let what = format!("bridge entry {} on {vxlan_name}", names::mac_string(&mac));
                nl.del_neighbour(message, &what).await?
            }
        }
    }
    for mac in &missing {
        nl.add_port_fdb(&vxlan, mac).await?;
    }
    Ok(())
}

/// Removes the devices of the network with `vni` (its entries go with them).
pub(crate) async fn remove(nl: &Netlink, links: &[Link], vni: u32) -> Result<(), MeshError> {
    for name in [names::vxlan(vni), names::bridge(vni)] {
        if let Some(link) = links.iter().find(|l| l.name == name) {
            nl.del_link(link.index, &link.name).await?;
        }
    }
    Ok(())
}
