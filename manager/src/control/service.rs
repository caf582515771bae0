//! Service operations: create, update, remove.

use shoal_proto::{mount, service_mode, Config, Network, Secret, Service, ServiceSpec, TaskState};

use super::limits::{self, Limits};
use super::propose::{create, delete, update};
use super::{Control, ControlError};
use crate::identity::new_id;
use crate::store::State;

/// Objects a write creates along with the services that use them.
#[derive(Default)]
pub(super) struct Pending<'a> {
    pub networks: &'a [Network],
    pub secrets: &'a [Secret],
    pub configs: &'a [Config],
    /// Names of services created in the same write.
    pub services: &'a [String],
}

/// Resolves what a spec refers to by name or ID, against the store and the
/// objects created in the same write: secrets and configs get both their ID
/// and name, networks their ID (as Docker stores them), and every
/// dependency must be a service.
pub(super) fn resolve_references(
    state: &State,
    spec: &mut ServiceSpec,
    pending: &Pending<'_>,
) -> Result<(), ControlError> {
    let service = spec.annotations.as_ref().map(|a| a.name.clone()).unwrap_or_default();
    let missing = |kind: &str, key: &str, hint: &str| {
        ControlError::InvalidArgument(format!("service {service}: {kind} \"{key}\" not found: {hint}"))
    };
    let task = spec.task.get_or_insert_default();
    if let Some(c) = task.container.as_mut() {
        for r in &mut c.secrets {
            let key = if r.secret_id.is_empty() { r.secret_name.clone() } else { r.secret_id.clone() };
            let found = pending
                .secrets
                .iter()
                .find(|s| s.id == key || s.name() == key)
                .or_else(|| state.secrets.get(&key))
                .or_else(|| state.secret_named(&key))
                .ok_or_else(|| missing("secret", &key, "create it first with \"shoal secret create NAME FILE\""))?;
            r.secret_id = found.id.clone();
            r.secret_name = found.name().to_string();
        }
        for r in &mut c.configs {
            let key = if r.config_id.is_empty() { r.config_name.clone() } else { r.config_id.clone() };
            let found = pending
                .configs
                .iter()
                .find(|s| s.id == key || s.name() == key)
                .or_else(|| state.configs.get(&key))
                .or_else(|| state.config_named(&key))
                .ok_or_else(|| missing("config", &key, "create it first with \"shoal config create NAME FILE\""))?;
            r.config_id = found.id.clone();
            r.config_name = found.name().to_string();
        }
    }
    let mut attached = std::collections::HashSet::new();
    for n in &mut task.networks {
        let key = n.target.clone();
        let found = pending
            .networks
            .iter()
            .find(|x| x.id == key || x.name() == key)
            .or_else(|| state.networks.get(&key))
            .or_else(|| state.network_named(&key))
            .ok_or_else(|| missing("network", &key, "create it first with \"shoal network create NAME\""))?;
        if found.spec.as_ref().is_some_and(|s| s.ingress) {
            return Err(ControlError::InvalidArgument(format!(
                "service {service}: network {} is the routing mesh's: publish a port (--publish, ports:) to be \
                 reached through it",
                found.name()
            )));
        }
        if !attached.insert(found.id.clone()) {
            return Err(ControlError::InvalidArgument(format!(
                "service {service}: network {} is attached twice: list it once, with all its aliases",
                found.name()
            )));
        }
        n.target = found.id.clone();
    }
    for d in &spec.depends_on {
        let known = pending.services.iter().any(|s| s == &d.service) || state.service_named(&d.service).is_some();
        if !known {
            return Err(missing("dependency", &d.service, "deploy that service too, or drop it from depends_on"));
        }
    }
    Ok(())
}

fn check_container(name: &str, c: &shoal_proto::ContainerSpec) -> Result<(), ControlError> {
    let invalid = |m: String| Err(ControlError::InvalidArgument(format!("service {name}: {m}")));
    let clean = |p: &str| !p.contains('\0') && !p.split('/').any(|c| c == "..");
    for (i, m) in c.mounts.iter().enumerate() {
        let at = format!("TaskTemplate.ContainerSpec.Mounts[{i}]");
        if !m.target.starts_with('/') || !clean(&m.target) {
            return invalid(format!("{at}.Target \"{}\" must be an absolute path without \"..\"", m.target));
        }
        match m.r#type() {
            mount::Type::Bind if !m.source.starts_with('/') || !clean(&m.source) => {
                return invalid(format!("{at}.Source \"{}\": a bind mount needs an absolute host path", m.source))
            }
            mount::Type::Volume if !m.source.is_empty() => {
                if let Err(why) = shoal_proto::names::check_volume_name(&m.source) {
                    return invalid(format!("{at}.Source: {why}"));
                }
            }
            mount::Type::Tmpfs if !m.source.is_empty() => {
                return invalid(format!("{at}.Source must be empty for a tmpfs mount"))
            }
            mount::Type::Tmpfs if m.tmpfs_mode > 0o7777 => {
                return invalid(format!(
                    "{at}.TmpfsOptions.Mode {:#o} is beyond 0o7777: give only permission bits",
                    m.tmpfs_mode
                ))
            }
            _ => {}
        }
    }
    let targets = c
        .secrets
        .iter()
        .map(|s| ("Secrets", s.file.as_ref().map(|f| f.name.as_str()).unwrap_or("")))
        .chain(c.configs.iter().map(|s| ("Configs", s.file.as_ref().map(|f| f.name.as_str()).unwrap_or(""))));
    for (what, target) in targets {
        if target.is_empty() || !clean(target) {
            return invalid(format!(
                "TaskTemplate.ContainerSpec.{what}[].File.Name \"{target}\" must be a file name or path without \"..\""
            ));
        }
    }
    if let Some(h) = &c.healthcheck {
        if !matches!(h.test.first().map(String::as_str), None | Some("CMD" | "CMD-SHELL" | "NONE")) {
            return invalid(
                "TaskTemplate.ContainerSpec.Healthcheck.Test must start with CMD, CMD-SHELL or NONE".into(),
            );
        }
        let hf = |f: &str| format!("TaskTemplate.ContainerSpec.Healthcheck.{f}");
        for (field, value) in [("Interval", h.interval), ("Timeout", h.timeout), ("StartInterval", h.start_interval)] {
            check_duration(&hf(field), value)
                .map_err(|m| ControlError::InvalidArgument(format!("service {name}: {m}")))?;
            if value > 0 && value < 1_000_000 {
                return invalid(format!("{} is {value} ns: 0 (the default) or at least 1ms", hf(field)));
            }
        }
        check_duration(&hf("StartPeriod"), h.start_period)
            .map_err(|m| ControlError::InvalidArgument(format!("service {name}: {m}")))?;
    }
    if let Some(grace) = c.stop_grace_period {
        check_duration("TaskTemplate.ContainerSpec.StopGracePeriod", grace)
            .map_err(|m| ControlError::InvalidArgument(format!("service {name}: {m}")))?;
    }
    for (i, m) in c.mounts.iter().enumerate() {
        let at = format!("TaskTemplate.ContainerSpec.Mounts[{i}].TmpfsOptions");
        if m.tmpfs_size < 0 {
            return invalid(format!("{at}.SizeBytes is {}: it must not be negative", m.tmpfs_size));
        }
    }
    let files = c.secrets.iter().map(|s| ("Secrets", &s.file)).chain(c.configs.iter().map(|s| ("Configs", &s.file)));
    for (what, file) in files {
        if let Some(f) = file.as_ref().filter(|f| f.mode > 0o7777) {
            return invalid(format!(
                "TaskTemplate.ContainerSpec.{what}[].File.Mode is {:o}: permission bits are at most 7777 (octal)",
                f.mode
            ));
        }
    }
    for u in &c.ulimits {
        let at = format!("TaskTemplate.ContainerSpec.Ulimits[{}]", u.name);
        if u.soft < -1 || u.hard < -1 {
            return invalid(format!("{at}: a limit is a count, or -1 for unlimited"));
        }
        if u.hard != -1 && (u.soft == -1 || u.soft > u.hard) {
            return invalid(format!("{at}: the soft limit ({}) is above the hard limit ({})", u.soft, u.hard));
        }
    }
    Ok(())
}

/// The longest duration a spec may hold (a year): longer ones are mistakes,
/// and added to a timestamp they would overflow.
const MAX_DURATION_NS: i64 = 365 * 24 * 3600 * 1_000_000_000;

/// Checks a duration (ns) a spec holds, naming the field.
fn check_duration(field: &str, ns: i64) -> Result<(), String> {
    if ns < 0 {
        return Err(format!("{field} is {ns} ns: a duration must not be negative"));
    }
    if ns > MAX_DURATION_NS {
        return Err(format!("{field} is {ns} ns: a duration is at most a year (8760h)"));
    }
    Ok(())
}

/// The least CPU share a task may reserve or be limited to (Docker's rule).
const MIN_NANO_CPUS: i64 = 1_000_000;
/// The most CPUs a task may reserve or be limited to.
const MAX_NANO_CPUS: i64 = 4096 * 1_000_000_000;
/// The least memory a task may reserve or be limited to (swarmkit's rule).
const MIN_MEMORY_BYTES: i64 = 4 << 20;

/// Checks a task's resources, naming the field.
fn check_resources(name: &str, r: &shoal_proto::ResourceRequirements) -> Result<(), ControlError> {
    let invalid = |m: String| Err(ControlError::InvalidArgument(format!("service {name}: {m}")));
    let sides = [("Limits", r.limits.as_ref()), ("Reservations", r.reservations.as_ref())];
    for (side, res) in sides {
        let Some(res) = res else { continue };
        let at = |f: &str| format!("TaskTemplate.Resources.{side}.{f}");
        for (field, value) in [("NanoCPUs", res.nano_cpus), ("MemoryBytes", res.memory_bytes), ("Pids", res.pids)] {
            if value < 0 {
                return invalid(format!("{} is {value}: it must not be negative", at(field)));
            }
        }
        if res.nano_cpus != 0 && !(MIN_NANO_CPUS..=MAX_NANO_CPUS).contains(&res.nano_cpus) {
            return invalid(format!(
                "{} is {}: give between 0.001 and 4096 CPUs (1000000 to 4096000000000 nano CPUs), or 0 for none",
                at("NanoCPUs"),
                res.nano_cpus
            ));
        }
        if res.memory_bytes != 0 && res.memory_bytes < MIN_MEMORY_BYTES {
            return invalid(format!(
                "{} is {} bytes: at least 4 MiB ({MIN_MEMORY_BYTES}), or 0 for none",
                at("MemoryBytes"),
                res.memory_bytes
            ));
        }
    }
    if let (Some(l), Some(r)) = (&r.limits, &r.reservations) {
        if l.memory_bytes > 0 && r.memory_bytes > l.memory_bytes {
            return invalid(format!(
                "TaskTemplate.Resources.Reservations.MemoryBytes ({}) is above Limits.MemoryBytes ({})",
                r.memory_bytes, l.memory_bytes
            ));
        }
        if l.nano_cpus > 0 && r.nano_cpus > l.nano_cpus {
            return invalid(format!(
                "TaskTemplate.Resources.Reservations.NanoCPUs ({}) is above Limits.NanoCPUs ({})",
                r.nano_cpus, l.nano_cpus
            ));
        }
    }
    Ok(())
}

/// Checks the numbers of a task spec and a service's update and rollback
/// settings, naming the field.
fn check_numbers(name: &str, spec: &ServiceSpec) -> Result<(), ControlError> {
    let invalid = |m: String| Err(ControlError::InvalidArgument(format!("service {name}: {m}")));
    let with_name = |m: String| ControlError::InvalidArgument(format!("service {name}: {m}"));
    if let Some(t) = &spec.task {
        if let Some(r) = &t.resources {
            check_resources(name, r)?;
        }
        if let Some(r) = &t.restart {
            if let Some(delay) = r.delay {
                check_duration("TaskTemplate.RestartPolicy.Delay", delay).map_err(with_name)?;
            }
            check_duration("TaskTemplate.RestartPolicy.Window", r.window).map_err(with_name)?;
        }
    }
    for (which, u) in [("UpdateConfig", &spec.update), ("RollbackConfig", &spec.rollback)] {
        let Some(u) = u else { continue };
        check_duration(&format!("{which}.Delay"), u.delay).map_err(with_name)?;
        check_duration(&format!("{which}.Monitor"), u.monitor).map_err(with_name)?;
        if !(0.0..=1.0).contains(&u.max_failure_ratio) {
            return invalid(format!("{which}.MaxFailureRatio is {}: give a fraction from 0 to 1", u.max_failure_ratio));
        }
    }
    if let Some(e) = &spec.endpoint {
        for (i, p) in e.ports.iter().enumerate() {
            if p.target_port == 0 || p.target_port > 65535 || p.published_port > 65535 {
                return invalid(format!(
                    "EndpointSpec.Ports[{i}]: ports are 1 to 65535 (target {}, published {})",
                    p.target_port, p.published_port
                ));
            }
        }
    }
    Ok(())
}

/// Checks a service spec for what the cluster cannot run, or what is more
/// than `limits` allow, naming the field.
pub fn validate_service_spec(spec: &ServiceSpec, limits: &Limits) -> Result<(), ControlError> {
    let invalid = |m: String| Err(ControlError::InvalidArgument(m));
    let name = spec.annotations.as_ref().map(|a| a.name.as_str()).unwrap_or("");
    if name.is_empty() {
        return invalid("service spec: Name is required".into());
    }
    let valid_name = name.len() <= 63
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if !valid_name {
        return invalid(format!(
            "service name \"{name}\" is invalid: use up to 63 letters, digits, '-', '_' or '.', starting with a letter or digit"
        ));
    }
    let image = spec.task.as_ref().and_then(|t| t.container.as_ref()).map(|c| c.image.as_str()).unwrap_or("");
    if image.is_empty() {
        return invalid(format!("service {name}: TaskTemplate.ContainerSpec.Image is required"));
    }
    limits::check_service(name, spec, limits)?;
    if let Some(c) = spec.task.as_ref().and_then(|t| t.container.as_ref()) {
        check_container(name, c)?;
    }
    check_numbers(name, spec)?;
    for (i, n) in spec.task.iter().flat_map(|t| t.networks.iter()).enumerate() {
        for alias in &n.aliases {
            super::network::check_endpoint_name(&format!("TaskTemplate.Networks[{i}].Aliases: alias"), alias)
                .map_err(|why| ControlError::InvalidArgument(format!("service {name}: {why}")))?;
        }
    }
    if spec.depends_on.iter().any(|d| d.service == name) {
        return invalid(format!("service {name}: it cannot depend on itself"));
    }
    match spec.mode.as_ref().and_then(|m| m.mode.as_ref()) {
        Some(service_mode::Mode::Replicated(_)) => Ok(()),
        Some(service_mode::Mode::Global(_)) => {
            invalid(format!("service {name}: global mode is not supported yet; use replicated mode"))
        }
        None => invalid(format!("service {name}: Mode is required")),
    }
}

impl Control {
    /// Creates a service; returns its ID.
    pub async fn create_service(&self, mut spec: ServiceSpec) -> Result<String, ControlError> {
        validate_service_spec(&spec, &Limits::of(&self.store.read()))?;
        resolve_references(&self.store.read(), &mut spec, &Pending::default())?;
        super::ports::check(&self.store.read(), &spec, &[])?;
        let service = Service { id: new_id(), spec: Some(spec), ..Default::default() };
        let id = service.id.clone();
        self.proposer.propose(vec![create(service)]).await?;
        Ok(id)
    }

    /// Replaces a service's spec, if the service is still at `version`.
    pub async fn update_service(&self, key: &str, version: u64, mut spec: ServiceSpec) -> Result<(), ControlError> {
        validate_service_spec(&spec, &Limits::of(&self.store.read()))?;
        resolve_references(&self.store.read(), &mut spec, &Pending::default())?;
        super::ports::check(&self.store.read(), &spec, &[])?;
        let mut service = self.store.read().find_service(key)?.clone();
        if let Some(meta) = service.meta.as_mut() {
            meta.version = version;
        }
        let old_name = service.name().to_string();
        let new_name = spec.annotations.as_ref().map(|a| a.name.as_str()).unwrap_or("");
        if old_name != new_name {
            return Err(ControlError::InvalidArgument(format!(
                "service {old_name}: renaming a service is not supported (asked for \"{new_name}\")"
            )));
        }
        let old_mode = service.spec.as_ref().and_then(|s| s.mode.as_ref()).and_then(|m| m.mode.as_ref());
        let same_kind = matches!(
            (old_mode, spec.mode.as_ref().and_then(|m| m.mode.as_ref())),
            (Some(service_mode::Mode::Replicated(_)), Some(service_mode::Mode::Replicated(_)))
                | (Some(service_mode::Mode::Global(_)), Some(service_mode::Mode::Global(_)))
        );
        if !same_kind {
            return Err(ControlError::InvalidArgument(format!(
                "service {old_name}: the service mode cannot change; remove and create the service instead"
            )));
        }
        service.previous_spec = service.spec.take();
        service.spec = Some(spec);
        self.proposer.propose(vec![update(service)]).await?;
        Ok(())
    }

    /// Removes a service; its tasks are shut down and then reaped.
    pub async fn remove_service(&self, key: &str) -> Result<String, ControlError> {
        self.commit_fresh(|state| {
            let service = state.find_service(key)?;
            let mut actions = vec![delete(service.clone())];
            actions.extend(remove_tasks_actions(state, &service.id));
            Ok((actions, service.name().to_string()))
        })
        .await
    }
}

/// Updates that set every live task of a service to desired state `remove`.
pub(super) fn remove_tasks_actions(state: &crate::store::State, service_id: &str) -> Vec<shoal_proto::StoreAction> {
    state
        .service_tasks(service_id)
        .filter(|t| t.desired_state() < TaskState::Remove)
        .map(|t| {
            let mut t = t.clone();
            t.set_desired_state(TaskState::Remove);
            update(t)
        })
        .collect()
}

#[cfg(test)]
mod mount_tests {
    use super::*;

    #[test]
    fn mount_sources_and_tmpfs_modes_are_held_to_the_rules() {
        let check = |m: shoal_proto::Mount| {
            check_container("web", &shoal_proto::ContainerSpec { mounts: vec![m], ..Default::default() })
        };
        for bad in ["..", "/etc", "a/b", ".x", "x"] {
            let mut m = shoal_proto::Mount { source: bad.into(), target: "/d".into(), ..Default::default() };
            m.set_type(mount::Type::Volume);
            let err = check(m).expect_err(bad).to_string();
            assert!(err.contains("Mounts[0].Source") && err.contains("not a valid volume name"), "{bad}: {err}");
        }
        let mut m = shoal_proto::Mount { target: "/t".into(), tmpfs_mode: 0o107777, ..Default::default() };
        m.set_type(mount::Type::Tmpfs);
        let err = check(m.clone()).expect_err("mode beyond 7777").to_string();
        assert!(err.contains("TmpfsOptions.Mode"), "{err}");
        m.tmpfs_mode = 0o1777;
        assert!(check(m).is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{
        Annotations, ContainerSpec, HealthConfig, ReplicatedService, ResourceRequirements, Resources, RestartPolicy,
        ServiceMode, TaskSpec, UpdateConfig,
    };

    fn spec(edit: impl FnOnce(&mut ServiceSpec)) -> ServiceSpec {
        let mut s = ServiceSpec {
            annotations: Some(Annotations { name: "web".into(), ..Default::default() }),
            task: Some(TaskSpec {
                container: Some(ContainerSpec { image: "demo:1".into(), ..Default::default() }),
                ..Default::default()
            }),
            mode: Some(ServiceMode { mode: Some(service_mode::Mode::Replicated(ReplicatedService { replicas: 1 })) }),
            ..Default::default()
        };
        edit(&mut s);
        s
    }

    fn refused(s: &ServiceSpec) -> String {
        validate_service_spec(s, &Limits::default()).expect_err("refused").to_string()
    }

    fn task(s: &mut ServiceSpec) -> &mut TaskSpec {
        s.task.as_mut().expect("a task spec")
    }

    fn container(s: &mut ServiceSpec) -> &mut ContainerSpec {
        task(s).container.as_mut().expect("a container spec")
    }

    #[test]
    fn a_network_attached_twice_or_a_bad_alias_is_refused() {
        let mut state = State::default();
        let annotations = Some(Annotations { name: "back".into(), ..Default::default() });
        let network = Network {
            id: "n1".into(),
            spec: Some(shoal_proto::NetworkSpec { annotations, ..Default::default() }),
            ..Default::default()
        };
        state.networks.insert("n1".into(), network);
        let attach = |targets: &[&str]| {
            spec(|s| {
                task(s).networks = targets
                    .iter()
                    .map(|t| shoal_proto::NetworkAttachmentConfig { target: t.to_string(), aliases: vec![] })
                    .collect()
            })
        };
        let mut once = attach(&["n1"]);
        resolve_references(&state, &mut once, &Pending::default()).expect("one attachment");
        let mut twice = attach(&["n1", "n1"]);
        let err = resolve_references(&state, &mut twice, &Pending::default()).expect_err("twice").to_string();
        assert!(err.contains("network back is attached twice"), "{err}");
        let bad = spec(|s| {
            task(s).networks =
                vec![shoal_proto::NetworkAttachmentConfig { target: "n1".into(), aliases: vec!["a b".into()] }]
        });
        assert!(refused(&bad).contains("TaskTemplate.Networks[0].Aliases: alias \"a b\" is not valid"));
    }

    #[test]
    fn negative_resources_are_refused_naming_the_field() {
        let limited = |r: Resources, limits: bool| {
            spec(|s| {
                let req = task(s).resources.get_or_insert_default();
                if limits {
                    req.limits = Some(r);
                } else {
                    req.reservations = Some(r);
                }
            })
        };
        let err = refused(&limited(Resources { memory_bytes: -1, ..Default::default() }, true));
        assert!(err.contains("TaskTemplate.Resources.Limits.MemoryBytes is -1"), "{err}");
        let err = refused(&limited(Resources { nano_cpus: -5, ..Default::default() }, false));
        assert!(err.contains("TaskTemplate.Resources.Reservations.NanoCPUs is -5"), "{err}");
        let err = refused(&limited(Resources { pids: -1, ..Default::default() }, true));
        assert!(err.contains("Limits.Pids is -1"), "{err}");
        let err = refused(&limited(Resources { nano_cpus: i64::MAX, ..Default::default() }, true));
        assert!(err.contains("4096 CPUs"), "{err}");
        let err = refused(&limited(Resources { memory_bytes: 1000, ..Default::default() }, true));
        assert!(err.contains("at least 4 MiB"), "{err}");
        let both = spec(|s| {
            task(s).resources = Some(ResourceRequirements {
                limits: Some(Resources { memory_bytes: 64 << 20, ..Default::default() }),
                reservations: Some(Resources { memory_bytes: 128 << 20, ..Default::default() }),
            })
        });
        assert!(refused(&both).contains("above Limits.MemoryBytes"));
        let fine = limited(Resources { nano_cpus: 500_000_000, memory_bytes: 64 << 20, pids: 100 }, true);
        validate_service_spec(&fine, &Limits::default()).expect("sane limits");
    }

    #[test]
    fn negative_or_absurd_durations_and_counts_are_refused_naming_the_field() {
        let err = refused(&spec(|s| {
            task(s).restart = Some(RestartPolicy { delay: Some(-1), ..Default::default() });
        }));
        assert!(err.contains("TaskTemplate.RestartPolicy.Delay is -1 ns"), "{err}");
        let err = refused(&spec(|s| {
            task(s).restart = Some(RestartPolicy { delay: Some(i64::MAX), ..Default::default() });
        }));
        assert!(err.contains("at most a year"), "{err}");
        let err = refused(&spec(|s| container(s).stop_grace_period = Some(-10)));
        assert!(err.contains("StopGracePeriod is -10 ns"), "{err}");
        let err = refused(&spec(|s| {
            container(s).healthcheck =
                Some(HealthConfig { test: vec!["CMD".into(), "true".into()], interval: 5, ..Default::default() });
        }));
        assert!(err.contains("Healthcheck.Interval is 5 ns"), "{err}");
        let err = refused(&spec(|s| s.update = Some(UpdateConfig { delay: -3, ..Default::default() })));
        assert!(err.contains("UpdateConfig.Delay is -3 ns"), "{err}");
        let err = refused(&spec(|s| s.rollback = Some(UpdateConfig { max_failure_ratio: 2.0, ..Default::default() })));
        assert!(err.contains("RollbackConfig.MaxFailureRatio is 2"), "{err}");
        let err =
            refused(&spec(|s| s.update = Some(UpdateConfig { max_failure_ratio: f32::NAN, ..Default::default() })));
        assert!(err.contains("UpdateConfig.MaxFailureRatio"), "{err}");
        let err = refused(&spec(|s| {
            container(s).ulimits = vec![shoal_proto::Ulimit { name: "nofile".into(), soft: 10, hard: 5 }];
        }));
        assert!(err.contains("Ulimits[nofile]"), "{err}");
        let err = refused(&spec(|s| {
            container(s).mounts =
                vec![shoal_proto::Mount { target: "/t".into(), tmpfs_size: -1, r#type: 2, ..Default::default() }];
        }));
        assert!(err.contains("Mounts[0].TmpfsOptions.SizeBytes is -1"), "{err}");
    }
}
