//! Published ports: a port (with its protocol) is one service's, cluster-wide. A port
//! published in ingress mode is listened on by every node, so no other service may publish
//! it in either mode; two services may each publish the same port in host mode (each task
//! holds it on its own node, and the scheduler keeps to one such task per node and port).
//! Ports published as 0 are the allocator's to choose, from the ones no service holds.

use shoal_proto::{PortConfig, PortProtocol, PublishMode, Service, ServiceSpec};

use super::ControlError;
use crate::store::State;

fn protocol_name(p: &PortConfig) -> &'static str {
    match p.protocol() {
        PortProtocol::Tcp => "tcp",
        PortProtocol::Udp => "udp",
        PortProtocol::Sctp => "sctp",
    }
}

/// The ports a spec publishes by number.
fn numbered(spec: &ServiceSpec) -> impl Iterator<Item = &PortConfig> {
    spec.endpoint.iter().flat_map(|e| e.ports.iter()).filter(|p| p.published_port != 0)
}

/// Whether `a` and `b` cannot both be published.
fn clash(a: &PortConfig, b: &PortConfig) -> bool {
    a.published_port == b.published_port
        && a.protocol == b.protocol
        && (a.publish_mode() == PublishMode::Ingress || b.publish_mode() == PublishMode::Ingress)
}

/// What service `s` publishes: its spec's numbered ports and those the allocator gave it.
fn published(s: &Service) -> impl Iterator<Item = &PortConfig> {
    let given = s.endpoint.iter().flat_map(|e| e.ports.iter()).filter(|p| p.published_port != 0);
    s.spec.iter().flat_map(numbered).chain(given)
}

/// Checks that service `spec` (named in it) may publish its ports: none twice in the spec,
/// none that a service of the store other than itself (or one of `others`, specs written in
/// the same batch, replacing the store's of the same names) holds.
pub(crate) fn check(state: &State, spec: &ServiceSpec, others: &[ServiceSpec]) -> Result<(), ControlError> {
    let name = spec.annotations.as_ref().map(|a| a.name.as_str()).unwrap_or("");
    let ports: Vec<&PortConfig> = numbered(spec).collect();
    for (i, p) in ports.iter().enumerate() {
        if ports[..i].iter().any(|q| q.published_port == p.published_port && q.protocol == p.protocol) {
            return Err(ControlError::InvalidArgument(format!(
                "service {name}: port {}/{} is published twice: publish each port once",
                p.published_port,
                protocol_name(p)
            )));
        }
    }
    let other_name = |o: &ServiceSpec| o.annotations.as_ref().map(|a| a.name.clone()).unwrap_or_default();
    let batch = others.iter().filter(|o| other_name(o) != name);
    let batch_names: Vec<String> = others.iter().map(other_name).collect();
    for p in &ports {
        let held = state
            .services
            .values()
            .filter(|s| s.name() != name && !batch_names.iter().any(|n| n == s.name()))
            .find(|s| published(s).any(|q| clash(p, q)))
            .map(|s| s.name().to_string())
            .or_else(|| batch.clone().find(|o| numbered(o).any(|q| clash(p, q))).map(other_name));
        if let Some(holder) = held {
            return Err(ControlError::Conflict(format!(
                "port {}/{} is already in use by service {holder}: publish service {name} on another port, or \
                 remove service {holder} first",
                p.published_port,
                protocol_name(p)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{Annotations, EndpointSpec};

    fn spec(name: &str, ports: &[(u32, PublishMode, PortProtocol)]) -> ServiceSpec {
        ServiceSpec {
            annotations: Some(Annotations { name: name.into(), ..Default::default() }),
            endpoint: Some(EndpointSpec {
                ports: ports
                    .iter()
                    .map(|(n, mode, proto)| PortConfig {
                        published_port: *n,
                        target_port: 80,
                        publish_mode: *mode as i32,
                        protocol: *proto as i32,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn state_with(services: &[ServiceSpec]) -> State {
        let mut state = State::default();
        for (i, s) in services.iter().enumerate() {
            let id = format!("s{i}");
            state.services.insert(id.clone(), Service { id, spec: Some(s.clone()), ..Default::default() });
        }
        state
    }

    use PortProtocol::{Tcp, Udp};
    use PublishMode::{Host, Ingress};

    #[test]
    fn a_port_is_one_services_and_the_error_names_both() {
        let state = state_with(&[spec("app_web", &[(8080, Ingress, Tcp)])]);
        let err = check(&state, &spec("app_api", &[(8080, Ingress, Tcp)]), &[]).expect_err("taken");
        let text = err.to_string();
        assert!(
            text.contains("port 8080/tcp is already in use by service app_web") && text.contains("app_api"),
            "{text}"
        );
        // Host mode against ingress clashes too; the same number over UDP does not.
        assert!(check(&state, &spec("app_api", &[(8080, Host, Tcp)]), &[]).is_err());
        assert!(check(&state, &spec("app_api", &[(8080, Ingress, Udp)]), &[]).is_ok());
        // The service itself (an update) holds its own port.
        assert!(check(&state, &spec("app_web", &[(8080, Ingress, Tcp)]), &[]).is_ok());
        // Host mode twice: each node's own, the scheduler's concern.
        let state = state_with(&[spec("a", &[(9000, Host, Tcp)])]);
        assert!(check(&state, &spec("b", &[(9000, Host, Tcp)]), &[]).is_ok());
    }

    #[test]
    fn a_port_published_twice_in_one_spec_or_one_batch_is_refused() {
        let state = State::default();
        let err = check(&state, &spec("web", &[(80, Ingress, Tcp), (80, Host, Tcp)]), &[]).expect_err("twice");
        assert!(err.to_string().contains("published twice"), "{err}");
        let batch = [spec("a", &[(80, Ingress, Tcp)]), spec("b", &[(80, Ingress, Tcp)])];
        let err = check(&state, &batch[1], &batch).expect_err("batch");
        assert!(err.to_string().contains("in use by service a"), "{err}");
        // A stack's redeploy: the store's old spec of the same name is replaced, not a holder.
        let state = state_with(&[spec("a", &[(80, Ingress, Tcp)])]);
        let batch = [spec("a", &[(81, Ingress, Tcp)]), spec("b", &[(80, Ingress, Tcp)])];
        assert!(check(&state, &batch[1], &batch).is_ok());
    }
}
