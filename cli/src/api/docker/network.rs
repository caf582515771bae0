//! Swarm networks: rendered as `GET /networks` shows them, and read from (and
//! rendered as, for a stack deploy) Docker's `POST /networks/create` body.

use bollard_stubs::models as bollard;
use serde_json::Value;
use shoal_proto::{Annotations, IpamConfig, NetworkSpec};

use super::{err, labels, name, object_version, read, types, SpecError};

/// A swarm network as Docker's `GET /networks` shows it.
pub fn network(n: &shoal_proto::Network) -> types::Network {
    let (_, created, _) = object_version(&n.meta);
    let spec = n.spec.clone().unwrap_or_default();
    let allocated = n.allocated.clone().unwrap_or_default();
    let mut config = Vec::new();
    if !allocated.subnet.is_empty() {
        config.push(bollard::IpamConfig {
            subnet: Some(allocated.subnet),
            gateway: Some(allocated.gateway),
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
            ingress: Some(false),
            config_from: Some(bollard::ConfigReference { network: Some(String::new()) }),
            config_only: Some(false),
            options: Some(spec.driver_opts),
            labels: Some(labels(&spec.annotations)),
            peers: None,
        },
        containers: None,
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
        return err("Ingress", "ingress networks are not supported yet (the routing mesh is to come)");
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
    })
}
