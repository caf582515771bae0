//! The node's container network: bridge, veth pairs, VXLAN to peer nodes and
//! routes, service virtual IPs, the ingress routing mesh (its own TCP/UDP
//! proxy, no IPVS) and the service-discovery DNS.
//!
//! Architecture invariant: the mesh decides nothing. It applies the network
//! map the agent gives it ([`map::NetworkMap`], derived from raft state by the
//! dispatcher), so DNS and load-balancer backends can never disagree with
//! `service ps`.

pub mod dns;
mod error;
mod gateway;
pub mod map;
pub mod names;
mod netlink;
mod netns;
mod nft;
mod node;
mod overlay;
pub mod proxy;
mod sandbox;
mod state;

pub use error::MeshError;
pub use gateway::{LocalBridge, LocalSubnets};
pub use map::{Cidr, MapEndpoint, MapError, MapNetwork, MapService, NetworkMap};
pub use node::{Attachment, Interface, Mesh, MeshConfig};
pub use sandbox::PortOn;
