//! A sandbox: a container's network namespace, made by the mesh and bound under its state
//! directory, and its ports: one veth pair per network (the host side, named by a stable hash,
//! on the network's bridge; the other side `eth0`, `eth1`, … inside, with the endpoint's
//! address and MAC), one to the gateway bridge for the way out, or one to the default bridge.
//!
//! A port is made whole in one request (the pair with its inside end already in the sandbox,
//! named, addressed by MAC and sized), so a crash leaves a port either absent or complete but
//! for its address and routes, which [`attach`] sets idempotently.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::{
    error::MeshError,
    gateway::LocalBridge,
    map::Cidr,
    names,
    netlink::{self, Link, Netlink},
    netns::NetNs,
};

/// What a port connects the sandbox to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PortOn {
    /// An overlay network, by id.
    Network { network_id: String },
    /// One of the node's local bridges.
    Local { bridge: LocalBridge },
}

impl PortOn {
    /// The part of the host-side name that tells this port from the sandbox's others.
    fn key(&self) -> String {
        match self {
            PortOn::Network { network_id } => format!("network/{network_id}"),
            PortOn::Local { bridge } => bridge.name().to_string(),
        }
    }

    pub(crate) fn network_id(&self) -> Option<&str> {
        match self {
            PortOn::Network { network_id } => Some(network_id),
            PortOn::Local { .. } => None,
        }
    }
}

/// One port of a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Port {
    pub on: PortOn,
    /// Its name inside (`eth0`).
    pub ifname: String,
    /// The host side's name.
    pub host: String,
    pub addr: Cidr,
}

/// A sandbox's record: its ports in the order they were made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SandboxRecord {
    pub id: String,
    pub ports: Vec<Port>,
}

impl SandboxRecord {
    /// A new port on `on` with `addr`, named inside by the lowest free `ethN`.
    pub(crate) fn new_port(&self, on: PortOn, addr: Cidr) -> Port {
        let ifname = (0..)
            .map(|n| format!("eth{n}"))
            .find(|name| !self.ports.iter().any(|p| &p.ifname == name))
            .expect("some ethN is free");
        let host = names::veth(&self.id, &on.key());
        Port { on, ifname, host, addr }
    }

    pub(crate) fn port(&self, on: &PortOn) -> Option<&Port> {
        self.ports.iter().find(|p| &p.on == on)
    }

    pub(crate) fn local(&self, bridge: LocalBridge) -> Option<&Port> {
        self.port(&PortOn::Local { bridge })
    }

    /// The overlay networks the sandbox is on.
    pub(crate) fn networks(&self) -> impl Iterator<Item = &str> {
        self.ports.iter().filter_map(|p| p.on.network_id())
    }
}

/// Makes `port` whole: the pair (if its host side is missing), the host side on `bridge`
/// with `mtu`, up (and isolated on the gateway bridge), and inside the address, up. `inside`
/// is a netlink socket in the sandbox `ns`.
pub(crate) async fn attach(
    node: &Netlink,
    ns: &NetNs,
    inside: &Netlink,
    port: &Port,
    bridge: &Link,
    mtu: u32,
    isolated: bool,
) -> Result<(), MeshError> {
    let host = match node.link(&port.host).await? {
        Some(link) => link,
        None => {
            node.add_veth(&port.host, &port.ifname, ns, names::mac(port.addr.addr), mtu).await?;
            node.link(&port.host).await?.ok_or_else(|| netlink::not_found(format!("veth {} once made", port.host)))?
        }
    };
    node.set_mtu(&host, mtu).await?;
    node.set_controller(&host, bridge.index, &bridge.name).await?;
    if isolated {
        // The flag is the bridge's: it reads back once the link is a port.
        let host = node.link(&port.host).await?.unwrap_or(host.clone());
        node.set_isolated(&host, true).await?;
    }
    node.set_up(&host).await?;

    let link = inside.link(&port.ifname).await?.ok_or_else(|| {
        MeshError::Invalid(format!(
            "{} of sandbox {} has no {} inside: its veth's other end is missing; remove the sandbox",
            port.host,
            ns.name(),
            port.ifname
        ))
    })?;
    inside.set_mtu(&link, mtu).await?;
    inside.converge_address(&link, port.addr).await?;
    inside.set_up(&link).await
}

/// Whether the host side of a port (`host`, if it exists) is as [`attach`] leaves it (a cheap check of the node's
/// side only, made on every apply).
pub(crate) fn intact(host: Option<&Link>, bridge: &Link, mtu: u32, isolated: bool) -> bool {
    host.is_some_and(|h| {
        h.controller == Some(bridge.index) && h.up && h.mtu == mtu && (!isolated || h.isolated == Some(true))
    })
}

/// Removes `port`'s pair (its inside end goes with it).
pub(crate) async fn detach(node: &Netlink, port: &Port) -> Result<(), MeshError> {
    if let Some(link) = node.link(&port.host).await? {
        node.del_link(link.index, &link.name).await?;
    }
    Ok(())
}

/// Turns IPv6 off in a new sandbox, as Docker does for containers on networks without it:
/// the overlays are IPv4 only, and link-local addresses would only add noise to them.
pub(crate) async fn disable_ipv6(ns: &NetNs) -> Result<(), MeshError> {
    ns.run("turning IPv6 off", || {
        for conf in ["all", "default"] {
            match std::fs::write(format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6"), "1") {
                // A kernel without IPv6 has nothing to turn off.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                other => other?,
            }
        }
        Ok(())
    })
    .await
}

/// Sets up loopback in a new sandbox.
pub(crate) async fn loopback_up(inside: &Netlink) -> Result<(), MeshError> {
    let lo = inside.link("lo").await?.ok_or_else(|| netlink::not_found("lo in a new sandbox".to_string()))?;
    inside.set_up(&lo).await
}

/// Makes the sandbox's default route go via `gateway` on the inside interface `ifname`, or
/// removes it.
pub(crate) async fn default_route(inside: &Netlink, via: Option<(Ipv4Addr, &str)>) -> Result<(), MeshError> {
    let want = match via {
        Some((gateway, ifname)) => {
            let link = inside
                .link(ifname)
                .await?
                .ok_or_else(|| netlink::not_found(format!("{ifname} for the default route")))?;
            Some((gateway, link.index))
        }
        None => None,
    };
    inside.converge_default_route(want).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_are_named_in_order_and_reuse_gaps() {
        let mut record = SandboxRecord { id: "t1".into(), ports: Vec::new() };
        let cidr = |s: &str| s.parse::<Cidr>().expect("cidr");
        for n in ["a", "b"] {
            let port = record.new_port(PortOn::Network { network_id: n.into() }, cidr("10.0.1.5/24"));
            record.ports.push(port);
        }
        assert_eq!(record.ports.iter().map(|p| p.ifname.as_str()).collect::<Vec<_>>(), ["eth0", "eth1"]);
        record.ports.remove(0);
        let port = record.new_port(PortOn::Local { bridge: LocalBridge::Gateway }, cidr("172.18.0.2/16"));
        assert_eq!(port.ifname, "eth0");
        assert_ne!(port.host, record.ports[0].host);
        assert_eq!(record.networks().collect::<Vec<_>>(), ["b"]);
    }
}
