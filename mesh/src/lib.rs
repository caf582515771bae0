//! The node's container network: bridge, veth pairs, VXLAN to peer nodes and
//! routes, service virtual IPs, the ingress routing mesh (its own TCP/UDP
//! proxy, no IPVS) and the service-discovery DNS.
//!
//! Architecture invariant: the mesh decides nothing. It applies the endpoint
//! map the agent gives it (derived from raft state by the dispatcher), so DNS
//! and load-balancer backends can never disagree with `service ps`.
//!
//! Nothing lives here yet: containers run with a private network namespace
//! holding only loopback until the mesh issue lands.
