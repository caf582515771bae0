//! Swarm networks: rendered as `GET /networks` shows them and as swarm
//! objects embed them (a task's `NetworksAttachments`), and read from (and
//! rendered as, for a stack deploy) Docker's `POST /networks/create` body.

use bollard_stubs::models as bollard;
use serde_json::Value;
use shoal_proto::{Annotations, IpamConfig, NetworkSpec};

use std::collections::HashMap;

use super::{err, labels, name, object_version, read, text, types, SpecError};

/// The driver option in which Docker shows an overlay's VXLAN network identifier.
pub const VXLAN_ID_OPTION: &str = "com.docker.network.driver.overlay.vxlanid_list";

/// The network's driver options as Docker shows them: the ones it was
/// created with, and its VNI once it has one.
fn options(n: &shoal_proto::Network) -> HashMap<String, String> {
    let mut options = n.spec.as_ref().map(|s| s.driver_opts.clone()).unwrap_or_default();
    if n.vni != 0 {
        options.insert(VXLAN_ID_OPTION.into(), n.vni.to_string());
    }
    options
}

/// A swarm network as Docker's `GET /networks` shows it on a manager: its
/// subnet, gateway and VNI, and no containers. On a node, `Containers` and
/// `Peers` are that node's own (see [`with_node_view`]).
pub fn network(n: &shoal_proto::Network) -> types::Network {
    let (_, created, _) = object_version(&n.meta);
    let options = options(n);
    let spec = n.spec.clone().unwrap_or_default();
    let allocated = n.allocated.clone().unwrap_or_default();
    let mut config = Vec::new();
    if !allocated.subnet.is_empty() {
        config.push(bollard::IpamConfig {
            subnet: Some(allocated.subnet),
            gateway: Some(allocated.gateway),
            ip_range: text(&allocated.ip_range),
            ..Default::default()
        });
    }
    types::Network {
        network: bollard::Network {
            name: Some(n.name().to_string()),
            id: Some(n.id.clone()),
            created: Some(created),
            scope: Some("swarm".into()),
            driver: Some(spec.driver),
            enable_ipv4: Some(true),
            enable_ipv6: Some(false),
            ipam: Some(bollard::Ipam { driver: Some("default".into()), config: Some(config), options: None }),
            internal: Some(spec.internal),
            attachable: Some(spec.attachable),
            ingress: Some(spec.ingress),
            config_from: Some(bollard::ConfigReference { network: Some(String::new()) }),
            config_only: Some(false),
            options: Some(options),
            labels: Some(labels(&spec.annotations)),
            peers: None,
        },
        containers: None,
    }
}

/// `network` as one node shows it: with the containers attached to it there
/// (by container ID) and the other nodes on it (`Peers`, by name and
/// underlay address), which only that node's network map knows. The API
/// handler that serves `GET /networks/{id}` on a node passes them in.
pub fn with_node_view(
    mut network: types::Network,
    containers: Vec<(String, bollard::EndpointResource)>,
    peers: Vec<bollard::PeerInfo>,
) -> types::Network {
    network.containers = Some(containers.into_iter().collect());
    network.network.peers = (!peers.is_empty()).then_some(peers);
    network
}

/// A network as a swarm object embeds it (Docker's `swarm.Network`).
pub fn swarm_network(n: &shoal_proto::Network) -> types::SwarmNetwork {
    let (version, created, updated) = object_version(&n.meta);
    let spec = n.spec.clone().unwrap_or_default();
    let allocated = n.allocated.clone().unwrap_or_default();
    let configs = |c: Vec<shoal_proto::IpamConfig>| {
        c.into_iter()
            .map(|c| types::SwarmIpamConfig { subnet: c.subnet, range: c.ip_range, gateway: c.gateway })
            .collect()
    };
    types::SwarmNetwork {
        id: n.id.clone(),
        version,
        created_at: created,
        updated_at: updated,
        spec: types::SwarmNetworkSpec {
            name: n.name().to_string(),
            labels: labels(&spec.annotations),
            driver_configuration: Some(types::SwarmDriver {
                name: spec.driver.clone(),
                options: (!spec.driver_opts.is_empty()).then(|| spec.driver_opts.clone()),
            }),
            internal: spec.internal,
            attachable: spec.attachable,
            ipam_options: (!spec.ipam.is_empty())
                .then(|| types::IpamOptions { driver: Default::default(), configs: configs(spec.ipam.clone()) }),
            scope: "swarm".into(),
        },
        driver_state: types::SwarmDriver { name: spec.driver, options: Some(options(n)) },
        ipam_options: (!allocated.subnet.is_empty()).then(|| types::IpamOptions {
            driver: types::SwarmDriver { name: "default".into(), options: None },
            configs: configs(vec![allocated]),
        }),
    }
}

/// A network spec as shoal's stack deploy sends it (the create request).
pub fn network_spec(s: &NetworkSpec) -> bollard::NetworkCreateRequest {
    bollard::NetworkCreateRequest {
        name: name(&s.annotations),
        labels: Some(labels(&s.annotations)),
        driver: Some(s.driver.clone()),
        internal: Some(s.internal),
        attachable: Some(s.attachable),
        options: Some(s.driver_opts.clone()),
        ipam: Some(bollard::Ipam {
            driver: Some("default".into()),
            config: Some(
                s.ipam
                    .iter()
                    .map(|c| bollard::IpamConfig {
                        subnet: Some(c.subnet.clone()),
                        gateway: Some(c.gateway.clone()),
                        ip_range: Some(c.ip_range.clone()),
                        auxiliary_addresses: None,
                    })
                    .collect(),
            ),
            options: None,
        }),
        ..Default::default()
    }
}

/// Reads Docker's `POST /networks/create` body.
pub fn parse_network_create(v: &Value) -> Result<NetworkSpec, SpecError> {
    let n: bollard::NetworkCreateRequest = read(v, "NetworkCreateRequest")?;
    if n.ingress.unwrap_or(false) {
        return err(
            "Ingress",
            "the swarm makes its ingress network itself, the first time a port is published: create no other",
        );
    }
    let ipam = n
        .ipam
        .and_then(|i| i.config)
        .unwrap_or_default()
        .into_iter()
        .map(|c| IpamConfig {
            subnet: c.subnet.unwrap_or_default(),
            gateway: c.gateway.unwrap_or_default(),
            ip_range: c.ip_range.unwrap_or_default(),
        })
        .collect();
    Ok(NetworkSpec {
        annotations: Some(Annotations { name: n.name, labels: n.labels.unwrap_or_default() }),
        driver: n.driver.unwrap_or_default(),
        internal: n.internal.unwrap_or(false),
        attachable: n.attachable.unwrap_or(false),
        driver_opts: n.options.unwrap_or_default(),
        ipam,
        ingress: false,
    })
}
