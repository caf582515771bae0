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
    for n in &mut task.networks {
        let key = n.target.clone();
        let found = pending
            .networks
            .iter()
            .find(|x| x.id == key || x.name() == key)
            .or_else(|| state.networks.get(&key))
            .or_else(|| state.network_named(&key))
            .ok_or_else(|| missing("network", &key, "create it first with \"shoal network create NAME\""))?;
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
            mount::Type::Volume if !m.source.is_empty() && !volume_name(&m.source) => {
                return invalid(format!(
                    "{at}.Source \"{}\" is not a valid volume name: use letters, digits, '_', '.' and '-', starting with a letter or digit",
                    m.source
                ))
            }
            mount::Type::Tmpfs if !m.source.is_empty() => {
                return invalid(format!("{at}.Source must be empty for a tmpfs mount"))
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
        if h.interval < 0 || h.timeout < 0 || h.start_period < 0 || h.start_interval < 0 {
            return invalid("TaskTemplate.ContainerSpec.Healthcheck durations must not be negative".into());
        }
    }
    Ok(())
}

/// Docker's rule for volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
fn volume_name(name: &str) -> bool {
    name.len() >= 2
        && name.len() <= 255
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
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
        let service = Service { id: new_id(), spec: Some(spec), ..Default::default() };
        let id = service.id.clone();
        self.proposer.propose(vec![create(service)]).await?;
        Ok(id)
    }

    /// Replaces a service's spec, if the service is still at `version`.
    pub async fn update_service(&self, key: &str, version: u64, mut spec: ServiceSpec) -> Result<(), ControlError> {
        validate_service_spec(&spec, &Limits::of(&self.store.read()))?;
        resolve_references(&self.store.read(), &mut spec, &Pending::default())?;
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
