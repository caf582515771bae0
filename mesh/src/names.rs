//! The names and numbers by which the mesh knows its own devices after a restart: every
//! device it makes has a name derived from what it stands for (a network's VNI, a sandbox
//! and its port), so that what exists can be told from what should, and nothing else on the
//! node is ever touched. An endpoint's MAC address is derived from its IP address, as
//! Docker's overlay does, so neighbour and forwarding entries need no state of their own.

use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};

/// A network's bridge on this node, holding the network's gateway address: `sb-<vni>`.
pub const BRIDGE_PREFIX: &str = "sb-";
/// A network's VXLAN device, a port of its bridge: `sv-<vni>`.
pub const VXLAN_PREFIX: &str = "sv-";
/// The node's gateway bridge: containers on overlay networks reach the outside through it.
pub const GATEWAY_BRIDGE: &str = "shoal_gwbridge";
/// The node's default bridge for standalone containers (Docker's `bridge` network).
pub const DEFAULT_BRIDGE: &str = "shoal0";
/// The host side of a sandbox's veth pair: `shv` and ten hex digits.
pub const VETH_PREFIX: &str = "shv";

/// VXLAN's IANA port, as Docker's overlay uses it.
pub const VXLAN_PORT: u16 = 4789;
/// What VXLAN adds to each frame on an IPv4 underlay: outer IP, UDP, VXLAN and Ethernet.
pub const VXLAN_OVERHEAD: u32 = 50;

/// The bridge of the network with VNI `vni`.
pub fn bridge(vni: u32) -> String {
    format!("{BRIDGE_PREFIX}{vni}")
}

/// The VXLAN device of the network with VNI `vni`.
pub fn vxlan(vni: u32) -> String {
    format!("{VXLAN_PREFIX}{vni}")
}

/// The VNI a device name of the mesh's stands for, if `name` is `<prefix><vni>`.
pub fn vni_of(name: &str, prefix: &str) -> Option<u32> {
    let digits = name.strip_prefix(prefix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

/// The host-side name of sandbox `sandbox`'s veth for `port` (a network id, or the gateway or
/// default bridge): stable, so that a restarted daemon finds it, and within the kernel's 15
/// characters whatever the ids' lengths.
pub fn veth(sandbox: &str, port: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(sandbox.as_bytes());
    hash.update([0]);
    hash.update(port.as_bytes());
    let digest = hash.finalize();
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    format!("{VETH_PREFIX}{hex}")
}

/// Whether `name` is a host-side veth of the mesh's.
pub fn is_veth(name: &str) -> bool {
    name.len() == VETH_PREFIX.len() + 10
        && name.strip_prefix(VETH_PREFIX).is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The MAC address of an endpoint with address `addr`: `02:42` and the address's four bytes,
/// locally administered and unicast.
pub fn mac(addr: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = addr.octets();
    [0x02, 0x42, a, b, c, d]
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_string(mac: &[u8]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_fit_the_kernel() {
        assert_eq!(bridge(4096), "sb-4096");
        assert_eq!(vni_of(&bridge(16_777_215), BRIDGE_PREFIX), Some(16_777_215));
        assert_eq!(vni_of(&vxlan(4097), VXLAN_PREFIX), Some(4097));
        for other in ["sb-", "sb-0123", "sb-x", "sv-4096", "sb-99999999999"] {
            assert_eq!(vni_of(other, BRIDGE_PREFIX), None, "{other}");
        }
        assert!(bridge(16_777_215).len() <= 15 && GATEWAY_BRIDGE.len() <= 15);
        let long = "x".repeat(300);
        let name = veth(&long, "a-network-id-that-is-long");
        assert!(name.len() <= 15 && is_veth(&name), "{name}");
        assert_eq!(name, veth(&long, "a-network-id-that-is-long"));
        assert_ne!(veth("a", "bc"), veth("ab", "c"));
        assert!(!is_veth("shvfoo") && !is_veth("eth0"));
    }

    #[test]
    fn macs_come_from_addresses() {
        assert_eq!(mac_string(&mac(Ipv4Addr::new(10, 0, 1, 5))), "02:42:0a:00:01:05");
    }
}
