//! IPv4 subnets and addresses as the managers hand them out: a network's
//! subnet, gateway and allocation range, the addresses written in CIDR form
//! on tasks and services (`10.0.1.5/24`), and the rule for which addresses
//! of a subnet may go to a task or a virtual IP.
//!
//! Boundary: arithmetic and parsing only. Who holds what is the store's
//! (`store::addresses`); who gets what is the allocator's.

use std::fmt;
use std::net::Ipv4Addr;

use shoal_proto::Network;

/// An IPv4 network: its address (host bits zero) and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subnet {
    pub addr: u32,
    pub prefix: u8,
}

/// The longest prefix a network's subnet may have: a /30 still has two
/// host addresses, the gateway and one more.
pub const MAX_NETWORK_PREFIX: u8 = 30;

/// The netmask of a prefix length, as a number (`0xffffff00` for /24).
pub fn mask(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p if p >= 32 => u32::MAX,
        p => u32::MAX << (32 - u32::from(p)),
    }
}

impl Subnet {
    /// Reads `a.b.c.d/n` whose host bits are zero and whose prefix is at
    /// most `max_prefix`.
    pub fn parse_with(text: &str, max_prefix: u8) -> Option<Subnet> {
        let (addr, prefix) = text.split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= max_prefix)?;
        let addr = u32::from(addr);
        (addr & !mask(prefix) == 0).then_some(Subnet { addr, prefix })
    }

    /// Reads a network's subnet (`10.0.1.0/24`, at most a /30).
    pub fn parse(text: &str) -> Option<Subnet> {
        Subnet::parse_with(text, MAX_NETWORK_PREFIX)
    }

    /// The network's allocated subnet, if it has a readable one.
    pub fn of(network: &Network) -> Option<Subnet> {
        network.allocated.as_ref().and_then(|a| Subnet::parse(&a.subnet))
    }

    pub fn mask(&self) -> u32 {
        mask(self.prefix)
    }

    /// Whether the two networks share any address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let m = mask(self.prefix.min(other.prefix));
        self.addr & m == other.addr & m
    }

    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: u32) -> bool {
        ip & self.mask() == self.addr
    }

    /// Whether `other` lies wholly in this network.
    pub fn covers(&self, other: &Subnet) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }

    /// The network's broadcast address (its last one).
    pub fn broadcast(&self) -> u32 {
        self.addr | !self.mask()
    }

    /// The first host address: the gateway Docker picks when none is given.
    pub fn first_host(&self) -> u32 {
        self.addr + 1
    }

    /// How many addresses the network has, its own and the broadcast included.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.addr), self.prefix)
    }
}

/// Reads an address in CIDR form (`10.0.1.5/24`): the address and its prefix.
pub fn parse_cidr(text: &str) -> Option<(u32, u8)> {
    let (addr, prefix) = text.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
    Some((u32::from(addr), prefix))
}

/// `ip` in CIDR form with the network's prefix (`10.0.1.5/24`).
pub fn cidr(ip: u32, subnet: &Subnet) -> String {
    format!("{}/{}", Ipv4Addr::from(ip), subnet.prefix)
}

/// What a network may hand out: its subnet, the range within it (the whole
/// subnet unless an IP range was asked for) and the gateway, which is never
/// handed out, nor the subnet's own or broadcast address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressSpace {
    pub subnet: Subnet,
    pub range: Subnet,
    pub gateway: u32,
}

impl AddressSpace {
    /// The network's address space, if its allocation reads (a network
    /// whose subnet or gateway does not read hands out nothing).
    pub fn of(network: &Network) -> Option<AddressSpace> {
        let allocated = network.allocated.as_ref()?;
        let subnet = Subnet::parse(&allocated.subnet)?;
        let gateway = u32::from(allocated.gateway.parse::<Ipv4Addr>().ok()?);
        let range = match allocated.ip_range.as_str() {
            "" => subnet,
            text => Subnet::parse_with(text, 32).filter(|r| subnet.covers(r))?,
        };
        Some(AddressSpace { subnet, range, gateway })
    }

    /// Whether `ip` may be given to a task or a virtual IP.
    pub fn assignable(&self, ip: u32) -> bool {
        self.range.contains(ip) && ip != self.subnet.addr && ip != self.subnet.broadcast() && ip != self.gateway
    }

    /// The addresses that may be handed out, lowest first.
    pub fn assignable_from(&self, start: u32) -> impl Iterator<Item = u32> + '_ {
        let first = start.max(self.range.addr);
        (first..=self.range.broadcast()).filter(move |ip| self.assignable(*ip))
    }

    /// How many addresses may be handed out in all.
    pub fn capacity(&self) -> u64 {
        let mut n = self.range.size();
        for special in [self.subnet.addr, self.subnet.broadcast(), self.gateway] {
            if self.range.contains(special) {
                n -= 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::IpamConfig;

    fn net(subnet: &str, gateway: &str, range: &str) -> Network {
        Network {
            allocated: Some(IpamConfig { subnet: subnet.into(), gateway: gateway.into(), ip_range: range.into() }),
            ..Default::default()
        }
    }

    #[test]
    fn subnets_read_overlap_and_contain() {
        let s = Subnet::parse("10.0.1.0/24").expect("a subnet");
        assert_eq!((s.to_string(), s.size()), ("10.0.1.0/24".to_string(), 256));
        assert_eq!(Ipv4Addr::from(s.broadcast()), Ipv4Addr::new(10, 0, 1, 255));
        assert!(s.overlaps(&Subnet::parse("10.0.0.0/16").expect("wide")));
        assert!(!s.overlaps(&Subnet::parse("10.0.2.0/24").expect("next")));
        for bad in ["10.0.1.1/24", "10.0.1.0/31", "10.0.1.0", "x/24", "10.0.1.0/x"] {
            assert_eq!(Subnet::parse(bad), None, "{bad}");
        }
        assert_eq!(parse_cidr("10.0.1.5/24"), Some((u32::from(Ipv4Addr::new(10, 0, 1, 5)), 24)));
        assert_eq!(parse_cidr("10.0.1.5"), None);
    }

    #[test]
    fn the_subnets_own_gateway_and_broadcast_addresses_are_never_assignable() {
        let space = AddressSpace::of(&net("10.0.1.0/29", "10.0.1.1", "")).expect("a space");
        let ips: Vec<String> = space.assignable_from(0).map(|ip| Ipv4Addr::from(ip).to_string()).collect();
        assert_eq!(ips, ["10.0.1.2", "10.0.1.3", "10.0.1.4", "10.0.1.5", "10.0.1.6"]);
        assert_eq!(space.capacity(), 5);
        // A range limits what is handed out; a gateway elsewhere frees .1.
        let space = AddressSpace::of(&net("10.0.1.0/24", "10.0.1.254", "10.0.1.0/30")).expect("a ranged space");
        let ips: Vec<String> = space.assignable_from(0).map(|ip| Ipv4Addr::from(ip).to_string()).collect();
        assert_eq!(ips, ["10.0.1.1", "10.0.1.2", "10.0.1.3"]);
        assert_eq!(space.capacity(), 3);
        assert!(AddressSpace::of(&net("10.0.1.0/24", "10.0.1.1", "10.0.2.0/28")).is_none());
        assert!(AddressSpace::of(&net("10.0.1.0/24", "nonsense", "")).is_none());
    }
}
