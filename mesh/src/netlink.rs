//! The mesh's netlink requests (`rtnetlink`): links, addresses, routes, neighbour and
//! forwarding entries, in one network namespace. A [`Netlink`] is bound to the namespace its
//! socket was opened in, so a sandbox's is opened by a thread that entered the sandbox (see
//! [`crate::netns`]) and then used from anywhere.
//!
//! The kernel's answers are read into small summaries ([`Link`], [`Neighbour`]) that say just
//! what convergence compares.

use std::{
    io,
    net::{IpAddr, Ipv4Addr},
    os::fd::{AsRawFd, FromRawFd, IntoRawFd},
};

use futures::TryStreamExt;
use rtnetlink::{
    packet_route::{
        address::{AddressAttribute, AddressMessage},
        link::{
            InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoVeth, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo,
            LinkMessage,
        },
        neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState},
        route::{RouteAddress, RouteAttribute, RouteMessage, RouteScope, RouteType},
        AddressFamily,
    },
    Handle, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth, LinkVxlan, RouteMessageBuilder,
};

use crate::{
    error::MeshError,
    map::Cidr,
    names::{self, VXLAN_PORT},
    netns::NetNs,
};

/// A netlink route socket in one network namespace.
pub(crate) struct Netlink {
    handle: Handle,
    connection: tokio::task::JoinHandle<()>,
    /// The namespace's name, for errors.
    ns: String,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// What the mesh compares of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    pub index: u32,
    pub name: String,
    pub kind: Option<InfoKind>,
    pub mtu: u32,
    pub controller: Option<u32>,
    pub up: bool,
    pub mac: Vec<u8>,
    /// A VXLAN device's VNI, local address, port, learning, proxy and checksum flags.
    pub vxlan: Option<Vxlan>,
    /// A bridge port's `isolated` flag.
    pub isolated: Option<bool>,
    /// A bridge port's `learning` flag.
    pub port_learning: Option<bool>,
}

/// What the mesh sets of a VXLAN device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Vxlan {
    pub vni: u32,
    pub local: Ipv4Addr,
    pub port: u16,
    pub learning: bool,
    pub proxy: bool,
    /// Whether the outer UDP header carries a checksum (the inner frame has its own).
    pub udp_csum: bool,
}

/// A permanent neighbour (IP → MAC) or forwarding (MAC → remote IP) entry on a device.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Neighbour {
    pub ip: Ipv4Addr,
    pub mac: Vec<u8>,
}

/// A route of the main table, as far as the mesh looks at routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub destination: Cidr,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

/// Whether `result` failed only because what it creates is there already.
fn ok_if_exists(result: Result<(), rtnetlink::Error>) -> Result<(), rtnetlink::Error> {
    match result {
        Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
        other => other,
    }
}

/// Whether `result` failed only because what it removes is gone already.
fn ok_if_gone(result: Result<(), rtnetlink::Error>) -> Result<(), rtnetlink::Error> {
    match result {
        Err(e) if matches!(errno(&e), Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ESRCH)) => Ok(()),
        other => other,
    }
}

impl Netlink {
    /// Opens a socket in `ns`.
    pub(crate) async fn open(ns: &NetNs) -> Result<Netlink, MeshError> {
        let socket = ns
            .run("opening a netlink socket", || {
                netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE).map(IntoRawFd::into_raw_fd)
            })
            .await?;
        // SAFETY: `socket` is a netlink socket just opened, owned by nothing else.
        let socket = unsafe { netlink_sys::TokioSocket::from_raw_fd(socket) };
        let (connection, handle, _) = rtnetlink::from_socket(socket);
        Ok(Netlink { handle, connection: tokio::spawn(connection), ns: ns.name().to_string() })
    }

    fn what(&self, what: impl std::fmt::Display) -> String {
        format!("{what} in {}", self.ns)
    }

    /// Every link of the namespace.
    pub(crate) async fn links(&self) -> Result<Vec<Link>, MeshError> {
        let messages: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| MeshError::netlink(self.what("listing links"), e))?;
        Ok(messages.iter().map(link_of).collect())
    }

    /// The link named `name`, if there is one.
    pub(crate) async fn link(&self, name: &str) -> Result<Option<Link>, MeshError> {
        let result: Result<Vec<LinkMessage>, _> =
            self.handle.link().get().match_name(name.to_string()).execute().try_collect().await;
        match result {
            Ok(messages) => Ok(messages.first().map(link_of)),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(MeshError::netlink(self.what(format_args!("looking up link {name}")), e)),
        }
    }

    /// Creates a bridge (down: [`Netlink::set_up`] raises it once it is set up).
    pub(crate) async fn add_bridge(&self, name: &str, mtu: u32) -> Result<(), MeshError> {
        let message = LinkBridge::new(name).down().mtu(mtu).build();
        self.handle
            .link()
            .add(message)
            .execute()
            .await
            .map_err(|e| MeshError::netlink(self.what(format_args!("creating bridge {name}")), e))
    }

    /// Creates a VXLAN device with `vxlan`'s settings (down).
    pub(crate) async fn add_vxlan(&self, name: &str, vxlan: Vxlan, mtu: u32) -> Result<(), MeshError> {
        let message = LinkVxlan::new(name, vxlan.vni)
            .local(vxlan.local)
            .port(vxlan.port)
            .learning(vxlan.learning)
            .proxy(vxlan.proxy)
            .udp_csum(vxlan.udp_csum)
            .mtu(mtu)
            .build();
        self.handle
            .link()
            .add(message)
            .execute()
            .await
            .map_err(|e| MeshError::netlink(self.what(format_args!("creating VXLAN device {name}")), e))
    }

    /// Creates a veth pair: `host` here, `peer` in the namespace `peer_ns`, with the peer's
    /// MAC address and both ends' MTU set, so that the pair appears whole in one request.
    pub(crate) async fn add_veth(
        &self,
        host: &str,
        peer: &str,
        peer_ns: &NetNs,
        peer_mac: [u8; 6],
        mtu: u32,
    ) -> Result<(), MeshError> {
        let peer_message = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer.to_string())
            .address(peer_mac.to_vec())
            .mtu(mtu)
            .setns_by_fd(peer_ns.fd().as_raw_fd())
            .build();
        let message =
            LinkVeth::new(host, peer).mtu(mtu).set_info_data(InfoData::Veth(InfoVeth::Peer(peer_message))).build();
        self.handle.link().add(message).execute().await.map_err(|e| {
            MeshError::netlink(self.what(format_args!("creating veth {host} with {peer} in {}", peer_ns.name())), e)
        })
    }

    /// Deletes the link with `index`; one already gone is no error.
    pub(crate) async fn del_link(&self, index: u32, name: &str) -> Result<(), MeshError> {
        ok_if_gone(self.handle.link().del(index).execute().await)
            .map_err(|e| MeshError::netlink(self.what(format_args!("deleting link {name}")), e))
    }

    async fn set(&self, message: LinkMessage, what: String) -> Result<(), MeshError> {
        self.handle.link().set(message).execute().await.map_err(|e| MeshError::netlink(self.what(what), e))
    }

    pub(crate) async fn set_up(&self, link: &Link) -> Result<(), MeshError> {
        if link.up {
            return Ok(());
        }
        self.set(LinkUnspec::new_with_index(link.index).up().build(), format!("setting {} up", link.name)).await
    }

    pub(crate) async fn set_mtu(&self, link: &Link, mtu: u32) -> Result<(), MeshError> {
        if link.mtu == mtu {
            return Ok(());
        }
        self.set(
            LinkUnspec::new_with_index(link.index).mtu(mtu).build(),
            format!("setting the MTU of {} to {mtu}", link.name),
        )
        .await
    }

    /// Sets `link`'s MAC address.
    pub(crate) async fn set_mac(&self, link: &Link, mac: &[u8]) -> Result<(), MeshError> {
        if link.mac == mac {
            return Ok(());
        }
        self.set(
            LinkUnspec::new_with_index(link.index).address(mac.to_vec()).build(),
            format!("setting the MAC address of {} to {}", link.name, names::mac_string(mac)),
        )
        .await
    }

    /// Makes `link` a port of the bridge with index `bridge`.
    pub(crate) async fn set_controller(&self, link: &Link, bridge: u32, bridge_name: &str) -> Result<(), MeshError> {
        if link.controller == Some(bridge) {
            return Ok(());
        }
        self.set(
            LinkUnspec::new_with_index(link.index).controller(bridge).build(),
            format!("adding {} to bridge {bridge_name}", link.name),
        )
        .await
    }

    /// Turns off the bridge's learning on a port: the bridge then never ties an address to
    /// it from the frames that arrive there.
    pub(crate) async fn stop_port_learning(&self, link: &Link) -> Result<(), MeshError> {
        if link.port_learning == Some(false) {
            return Ok(());
        }
        let message = LinkBridgePort::new(link.index).learning(false).build();
        self.handle.link().set_port(message).execute().await.map_err(|e| {
            MeshError::netlink(self.what(format_args!("turning off learning on bridge port {}", link.name)), e)
        })
    }

    /// Sets a bridge port's `isolated` flag: isolated ports reach only the bridge's
    /// non-isolated ports (the bridge itself), not each other.
    pub(crate) async fn set_isolated(&self, link: &Link, isolated: bool) -> Result<(), MeshError> {
        if link.isolated == Some(isolated) {
            return Ok(());
        }
        let message = LinkBridgePort::new(link.index).isolated(isolated).build();
        self.handle
            .link()
            .set_port(message)
            .execute()
            .await
            .map_err(|e| MeshError::netlink(self.what(format_args!("isolating bridge port {}", link.name)), e))
    }

    /// Every IPv4 address of the namespace, with the index of its link.
    pub(crate) async fn all_addresses(&self) -> Result<Vec<(u32, Cidr)>, MeshError> {
        Ok(self.address_messages(None).await?.iter().filter_map(|m| Some((m.header.index, cidr_of(m)?))).collect())
    }

    async fn address_messages(&self, index: Option<u32>) -> Result<Vec<AddressMessage>, MeshError> {
        let mut request = self.handle.address().get();
        if let Some(index) = index {
            request = request.set_link_index_filter(index);
        }
        let messages: Vec<AddressMessage> =
            request.execute().try_collect().await.map_err(|e| MeshError::netlink(self.what("listing addresses"), e))?;
        Ok(messages
            .into_iter()
            .filter(|m| m.header.family == AddressFamily::Inet && index.is_none_or(|i| m.header.index == i))
            .collect())
    }

    /// Makes `want` the only IPv4 address of `link`.
    pub(crate) async fn converge_address(&self, link: &Link, want: Cidr) -> Result<(), MeshError> {
        let mut found = false;
        for message in self.address_messages(Some(link.index)).await? {
            if cidr_of(&message) == Some(want) {
                found = true;
                continue;
            }
            ok_if_gone(self.handle.address().del(message).execute().await).map_err(|e| {
                MeshError::netlink(self.what(format_args!("removing a stray address of {}", link.name)), e)
            })?;
        }
        if !found {
            ok_if_exists(self.handle.address().add(link.index, IpAddr::V4(want.addr), want.prefix).execute().await)
                .map_err(|e| MeshError::netlink(self.what(format_args!("adding {want} to {}", link.name)), e))?;
        }
        Ok(())
    }

    /// The IPv4 routes of the main table.
    pub(crate) async fn routes(&self) -> Result<Vec<Route>, MeshError> {
        let messages: Vec<RouteMessage> = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(|e| MeshError::netlink(self.what("listing routes"), e))?;
        Ok(messages
            .iter()
            .filter(|m| m.header.table == libc::RT_TABLE_MAIN && m.header.kind == RouteType::Unicast)
            .map(|m| {
                let mut route = Route {
                    destination: Cidr { addr: Ipv4Addr::UNSPECIFIED, prefix: m.header.destination_prefix_length },
                    gateway: None,
                    oif: None,
                };
                for attribute in &m.attributes {
                    match attribute {
                        RouteAttribute::Destination(RouteAddress::Inet(a)) => route.destination.addr = *a,
                        RouteAttribute::Gateway(RouteAddress::Inet(a)) => route.gateway = Some(*a),
                        RouteAttribute::Oif(i) => route.oif = Some(*i),
                        _ => {}
                    }
                }
                route
            })
            .collect())
    }

    /// Makes the default route go via `gateway` on `oif`, or removes it (`None`).
    pub(crate) async fn converge_default_route(&self, want: Option<(Ipv4Addr, u32)>) -> Result<(), MeshError> {
        let defaults: Vec<Route> = self.routes().await?.into_iter().filter(|r| r.destination.prefix == 0).collect();
        let mut found = false;
        for route in defaults {
            if want.is_some_and(|(gw, oif)| route.gateway == Some(gw) && route.oif == Some(oif)) && !found {
                found = true;
                continue;
            }
            let mut message = RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(Ipv4Addr::UNSPECIFIED, 0);
            if let Some(gw) = route.gateway {
                message = message.gateway(gw);
            }
            if let Some(oif) = route.oif {
                message = message.output_interface(oif);
            }
            ok_if_gone(self.handle.route().del(message.build()).execute().await)
                .map_err(|e| MeshError::netlink(self.what("removing a default route"), e))?;
        }
        if let (Some((gw, oif)), false) = (want, found) {
            let message = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
                .gateway(gw)
                .output_interface(oif)
                .scope(RouteScope::Universe)
                .build();
            ok_if_exists(self.handle.route().add(message).execute().await)
                .map_err(|e| MeshError::netlink(self.what(format_args!("adding the default route via {gw}")), e))?;
        }
        Ok(())
    }

    async fn neighbour_messages(&self, family: AddressFamily, index: u32) -> Result<Vec<NeighbourMessage>, MeshError> {
        let messages: Vec<NeighbourMessage> = self
            .handle
            .neighbours()
            .get()
            .set_address_family(family)
            .execute()
            .try_collect()
            .await
            .map_err(|e| MeshError::netlink(self.what("listing neighbours"), e))?;
        Ok(messages.into_iter().filter(|m| m.header.ifindex == index).collect())
    }

    /// The permanent IPv4 neighbour entries (IP → MAC) on the link with `index`.
    pub(crate) async fn neighbours(&self, index: u32) -> Result<Vec<(Neighbour, NeighbourMessage)>, MeshError> {
        Ok(self
            .neighbour_messages(AddressFamily::Inet, index)
            .await?
            .into_iter()
            .filter(|m| m.header.state == NeighbourState::Permanent)
            .filter_map(|m| Some((neighbour_of(&m)?, m)))
            .collect())
    }

    /// The forwarding entries of a VXLAN device (MAC → remote underlay address); `ip` is the
    /// remote.
    pub(crate) async fn fdb(&self, index: u32) -> Result<Vec<(Neighbour, NeighbourMessage)>, MeshError> {
        Ok(self
            .neighbour_messages(AddressFamily::Bridge, index)
            .await?
            .into_iter()
            .filter(|m| m.header.flags.contains(NeighbourFlags::Own))
            .filter_map(|m| Some((neighbour_of(&m)?, m)))
            .collect())
    }

    /// The bridge's static forwarding entries that point at the port with `index` (MACs).
    pub(crate) async fn port_fdb(&self, index: u32) -> Result<Vec<(Vec<u8>, NeighbourMessage)>, MeshError> {
        Ok(self
            .neighbour_messages(AddressFamily::Bridge, index)
            .await?
            .into_iter()
            .filter(|m| {
                m.header.state == NeighbourState::Noarp
                    && !m.header.flags.contains(NeighbourFlags::Own)
                    && m.attributes.iter().any(|a| matches!(a, NeighbourAttribute::Controller(_)))
            })
            .filter_map(|m| {
                let mac = m.attributes.iter().find_map(|a| match a {
                    NeighbourAttribute::LinkLayerAddress(mac) => Some(mac.clone()),
                    _ => None,
                })?;
                Some((mac, m))
            })
            .collect())
    }

    /// Ties `mac` to the bridge port `link` (`bridge fdb replace MAC dev LINK master static`).
    pub(crate) async fn add_port_fdb(&self, link: &Link, mac: &[u8]) -> Result<(), MeshError> {
        self.handle
            .neighbours()
            .add_bridge(link.index, mac)
            .flags(NeighbourFlags::Controller)
            .state(NeighbourState::Noarp)
            .replace()
            .execute()
            .await
            .map_err(|e| {
                MeshError::netlink(
                    self.what(format_args!("adding bridge entry {} → {}", names::mac_string(mac), link.name)),
                    e,
                )
            })
    }

    pub(crate) async fn add_neighbour(&self, link: &Link, entry: &Neighbour) -> Result<(), MeshError> {
        self.handle
            .neighbours()
            .add(link.index, IpAddr::V4(entry.ip))
            .link_layer_address(&entry.mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(|e| {
                MeshError::netlink(self.what(format_args!("adding neighbour {} on {}", entry.ip, link.name)), e)
            })
    }

    pub(crate) async fn add_fdb(&self, link: &Link, entry: &Neighbour) -> Result<(), MeshError> {
        self.handle
            .neighbours()
            .add_bridge(link.index, &entry.mac)
            .destination(IpAddr::V4(entry.ip))
            .flags(NeighbourFlags::Own)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(|e| {
                MeshError::netlink(
                    self.what(format_args!(
                        "adding forwarding entry {} → {} on {}",
                        names::mac_string(&entry.mac),
                        entry.ip,
                        link.name
                    )),
                    e,
                )
            })
    }

    pub(crate) async fn del_neighbour(&self, message: NeighbourMessage, what: &str) -> Result<(), MeshError> {
        ok_if_gone(self.handle.neighbours().del(message).execute().await)
            .map_err(|e| MeshError::netlink(self.what(format_args!("removing {what}")), e))
    }
}

fn link_of(message: &LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        kind: None,
        mtu: 0,
        controller: None,
        up: message.header.flags.contains(LinkFlags::Up),
        mac: Vec::new(),
        vxlan: None,
        isolated: None,
        port_learning: None,
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name = name.clone(),
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            LinkAttribute::Controller(index) => link.controller = Some(*index),
            LinkAttribute::Address(mac) => link.mac = mac.clone(),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(kind) => link.kind = Some(kind.clone()),
                        LinkInfo::Data(InfoData::Vxlan(data)) => link.vxlan = Some(vxlan_of(data)),
                        LinkInfo::PortData(InfoPortData::BridgePort(data)) => {
                            link.isolated = Some(data.iter().any(|d| matches!(d, InfoBridgePort::Isolated(true))));
                            link.port_learning = Some(data.iter().any(|d| matches!(d, InfoBridgePort::Learning(true))));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    link
}

fn vxlan_of(data: &[InfoVxlan]) -> Vxlan {
    let mut vxlan =
        Vxlan { vni: 0, local: Ipv4Addr::UNSPECIFIED, port: VXLAN_PORT, learning: true, proxy: false, udp_csum: true };
    for d in data {
        match d {
            InfoVxlan::Id(vni) => vxlan.vni = *vni,
            InfoVxlan::Local(local) => vxlan.local = *local,
            InfoVxlan::Port(port) => vxlan.port = *port,
            InfoVxlan::Learning(learning) => vxlan.learning = *learning,
            InfoVxlan::Proxy(proxy) => vxlan.proxy = *proxy,
            InfoVxlan::UDPCsum(csum) => vxlan.udp_csum = *csum,
            _ => {}
        }
    }
    vxlan
}

fn cidr_of(message: &AddressMessage) -> Option<Cidr> {
    message.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(IpAddr::V4(addr)) => Some(Cidr { addr: *addr, prefix: message.header.prefix_len }),
        _ => None,
    })
}

fn neighbour_of(message: &NeighbourMessage) -> Option<Neighbour> {
    let mut ip = None;
    let mut mac = None;
    for attribute in &message.attributes {
        match attribute {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(addr)) => ip = Some(*addr),
            // A bridge entry's destination comes unparsed (the family is the bridge's).
            NeighbourAttribute::Destination(NeighbourAddress::Other(bytes)) => {
                ip = <[u8; 4]>::try_from(bytes.as_slice()).ok().map(Ipv4Addr::from)
            }
            NeighbourAttribute::LinkLayerAddress(lladdr) => mac = Some(lladdr.clone()),
            _ => {}
        }
    }
    Some(Neighbour { ip: ip?, mac: mac? })
}

/// `io::Error` for "no such thing", for callers that map a missing link to an error.
pub(crate) fn not_found(what: String) -> MeshError {
    MeshError::Netlink { what, source: io::Error::from_raw_os_error(libc::ENODEV) }
}
