//! What one request may ask of the swarm. Every count a request controls
//! turns into memory on every manager and into raft log entries (a
//! service's spec is copied into each of its tasks), so each is bounded
//! here, at the one place every write path (HTTP API, shoal CLI, docker
//! CLI, stack deploy) goes through:
//!
//! - replicas per service: [`DEFAULT_MAX_REPLICAS`], a cluster setting
//!   (`ClusterSpec.limits.max_replicas`, `swarm init|update
//!   --max-replicas`) of at most [`MAX_REPLICAS_CEILING`];
//! - a service spec: at most [`MAX_SPEC_BYTES`] encoded, and at most
//!   [`MAX_ITEMS`] entries in any of its lists or maps (environment,
//!   mounts, secrets, configs, networks, ports, labels…);
//! - the labels of a node, network, secret or config: at most
//!   [`MAX_ITEMS`] entries and [`MAX_LABELS_BYTES`] in all.
//!
//! The orchestrator bounds the other side: it never has more than a batch
//! of a service's tasks waiting for a node (see
//! `orchestrator::replicated`).

use std::collections::HashMap;

use prost::Message;
use shoal_proto::{service_mode, ClusterSpec, ServiceSpec};

use super::ControlError;
use crate::store::State;

/// Replicas one service may ask for when the cluster sets no limit.
pub const DEFAULT_MAX_REPLICAS: u64 = 10_000;
/// The highest per-service replica limit a cluster may set.
pub const MAX_REPLICAS_CEILING: u64 = 1_000_000;
/// The largest service spec, encoded (a spec of a few dozen settings is
/// 1–2 KiB).
pub const MAX_SPEC_BYTES: usize = 64 << 10;
/// The most entries in any one list or map of a request.
pub const MAX_ITEMS: usize = 1000;
/// The most bytes of labels (keys and values) on one object.
pub const MAX_LABELS_BYTES: usize = 64 << 10;

/// The limits a cluster applies, from its spec and the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_replicas: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_replicas: DEFAULT_MAX_REPLICAS }
    }
}

impl Limits {
    /// The limits in force in `state` (the defaults before `swarm init`
    /// committed the cluster object).
    pub fn of(state: &State) -> Limits {
        state.cluster().and_then(|c| c.spec.as_ref()).map(Limits::of_spec).unwrap_or_default()
    }

    /// The limits a cluster spec sets, the defaults for what it leaves out.
    pub fn of_spec(spec: &ClusterSpec) -> Limits {
        let set = spec.limits.as_ref();
        Limits { max_replicas: set.map(|l| l.max_replicas).filter(|m| *m > 0).unwrap_or(DEFAULT_MAX_REPLICAS) }
    }
}

/// Checks a per-service replica limit a user wants to set (0: the default).
pub fn check_max_replicas(max_replicas: u64) -> Result<(), ControlError> {
    if max_replicas > MAX_REPLICAS_CEILING {
        return Err(ControlError::InvalidArgument(format!(
            "a limit of {max_replicas} replicas per service is too high: at most {MAX_REPLICAS_CEILING} \
             (0 sets the default, {DEFAULT_MAX_REPLICAS})"
        )));
    }
    Ok(())
}

/// Checks the counts and size a service spec asks for.
pub(super) fn check_service(name: &str, spec: &ServiceSpec, limits: &Limits) -> Result<(), ControlError> {
    let invalid = |m: String| Err(ControlError::InvalidArgument(format!("service {name}: {m}")));
    if let Some(service_mode::Mode::Replicated(r)) = spec.mode.as_ref().and_then(|m| m.mode.as_ref()) {
        if r.replicas > limits.max_replicas {
            return invalid(format!(
                "Mode.Replicated.Replicas is {}, over this swarm's limit of {} replicas per service: ask for \
                 fewer, or raise the limit with \"shoal swarm update --max-replicas N\" (at most {MAX_REPLICAS_CEILING})",
                r.replicas, limits.max_replicas
            ));
        }
    }
    let size = spec.encoded_len();
    if size > MAX_SPEC_BYTES {
        return invalid(format!(
            "the service spec is {size} bytes encoded, over the limit of {MAX_SPEC_BYTES}: every task carries a \
             copy of it; move large data into a config or secret"
        ));
    }
    for (field, count) in counts(spec) {
        if count > MAX_ITEMS {
            return invalid(format!("{field} has {count} entries, over the limit of {MAX_ITEMS}"));
        }
    }
    Ok(())
}

/// The size of every list and map in a service spec, by field name.
fn counts(spec: &ServiceSpec) -> Vec<(String, usize)> {
    let mut out = vec![
        ("Labels".to_string(), spec.annotations.as_ref().map_or(0, |a| a.labels.len())),
        ("DependsOn".to_string(), spec.depends_on.len()),
    ];
    if let Some(e) = &spec.endpoint {
        out.push(("EndpointSpec.Ports".into(), e.ports.len()));
    }
    let Some(t) = &spec.task else { return out };
    out.push(("TaskTemplate.Networks".into(), t.networks.len()));
    for (i, n) in t.networks.iter().enumerate() {
        out.push((format!("TaskTemplate.Networks[{i}].Aliases"), n.aliases.len()));
    }
    if let Some(p) = &t.placement {
        out.push(("TaskTemplate.Placement.Constraints".into(), p.constraints.len()));
        out.push(("TaskTemplate.Placement.Preferences".into(), p.spread_preferences.len()));
    }
    let Some(c) = &t.container else { return out };
    let cf = |f: &str| format!("TaskTemplate.ContainerSpec.{f}");
    out.extend([
        (cf("Labels"), c.labels.len()),
        (cf("Command"), c.command.len()),
        (cf("Args"), c.args.len()),
        (cf("Env"), c.env.len()),
        (cf("Mounts"), c.mounts.len()),
        (cf("Secrets"), c.secrets.len()),
        (cf("Configs"), c.configs.len()),
        (cf("CapabilityAdd"), c.cap_add.len()),
        (cf("CapabilityDrop"), c.cap_drop.len()),
        (cf("Hosts"), c.hosts.len()),
        (cf("Sysctls"), c.sysctls.len()),
        (cf("Ulimits"), c.ulimits.len()),
    ]);
    if let Some(h) = &c.healthcheck {
        out.push((cf("Healthcheck.Test"), h.test.len()));
    }
    if let Some(d) = &c.dns {
        out.push((cf("DNSConfig.Nameservers"), d.nameservers.len()));
        out.push((cf("DNSConfig.Search"), d.search.len()));
        out.push((cf("DNSConfig.Options"), d.options.len()));
    }
    for (i, m) in c.mounts.iter().enumerate() {
        out.push((cf(&format!("Mounts[{i}].VolumeOptions.Labels")), m.volume_labels.len()));
    }
    out
}

/// Checks the labels of a node, network, secret or config.
pub(crate) fn check_labels(kind: &str, name: &str, labels: &HashMap<String, String>) -> Result<(), ControlError> {
    let bytes: usize = labels.iter().map(|(k, v)| k.len() + v.len()).sum();
    if labels.len() > MAX_ITEMS || bytes > MAX_LABELS_BYTES {
        return Err(ControlError::InvalidArgument(format!(
            "{kind} {name}: {} labels of {bytes} bytes in all, over the limit of {MAX_ITEMS} labels and \
             {MAX_LABELS_BYTES} bytes",
            labels.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{Annotations, ContainerSpec, ReplicatedService, ServiceMode, TaskSpec};

    fn spec(replicas: u64) -> ServiceSpec {
        ServiceSpec {
            annotations: Some(Annotations { name: "web".into(), ..Default::default() }),
            task: Some(TaskSpec {
                container: Some(ContainerSpec { image: "demo:1".into(), ..Default::default() }),
                ..Default::default()
            }),
            mode: Some(ServiceMode { mode: Some(service_mode::Mode::Replicated(ReplicatedService { replicas })) }),
            ..Default::default()
        }
    }

    #[test]
    fn replicas_over_the_limit_are_refused_with_the_limit_and_how_to_raise_it() {
        let limits = Limits::default();
        check_service("web", &spec(DEFAULT_MAX_REPLICAS), &limits).expect("the limit itself is allowed");
        let err = check_service("web", &spec(4_294_967_296), &limits).expect_err("over the limit").to_string();
        assert!(err.contains("4294967296") && err.contains("limit of 10000"), "{err}");
        assert!(err.contains("shoal swarm update --max-replicas"), "{err}");
        check_service("web", &spec(50_000), &Limits { max_replicas: 50_000 }).expect("a raised limit");
        assert!(check_max_replicas(MAX_REPLICAS_CEILING).is_ok());
        assert!(check_max_replicas(MAX_REPLICAS_CEILING + 1).is_err());
    }

    #[test]
    fn long_lists_and_large_specs_are_refused_naming_the_field() {
        let mut s = spec(1);
        let c = s.task.as_mut().and_then(|t| t.container.as_mut()).expect("container");
        c.env = (0..=MAX_ITEMS).map(|i| format!("V{i}=1")).collect();
        let err = check_service("web", &s, &Limits::default()).expect_err("too many").to_string();
        assert!(err.contains("TaskTemplate.ContainerSpec.Env has 1001 entries"), "{err}");
        let c = s.task.as_mut().and_then(|t| t.container.as_mut()).expect("container");
        c.env = vec![format!("BIG={}", "x".repeat(MAX_SPEC_BYTES))];
        let err = check_service("web", &s, &Limits::default()).expect_err("too large").to_string();
        assert!(err.contains("over the limit of 65536"), "{err}");
        let labels: HashMap<String, String> = (0..=MAX_ITEMS).map(|i| (i.to_string(), String::new())).collect();
        assert!(check_labels("secret", "pw", &labels).is_err());
    }
}
