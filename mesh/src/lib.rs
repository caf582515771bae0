//! The node's container network: bridge, veth pairs, VXLAN to peer nodes and
//! routes, service virtual IPs, the ingress routing mesh (its own TCP/UDP
//! proxy, no IPVS) and the service-discovery DNS.
//!
//! Architecture invariant: the mesh decides nothing. It applies the network
//! map the agent gives it ([`map::NetworkMap`], derived from raft state by the
//! dispatcher), so DNS and load-balancer backends can never disagree with
//! `service ps`.

pub mod dns;
pub mod map;

pub use map::{Cidr, MapEndpoint, MapError, MapNetwork, MapService, NetworkMap};
