//! Service operations: create, update, remove.

use shoal_proto::{service_mode, Service, ServiceSpec, TaskState};

use super::propose::{create, delete, update};
use super::{Control, ControlError};
use crate::identity::new_id;

/// Checks a service spec for what the cluster cannot run, naming the field.
pub fn validate_service_spec(spec: &ServiceSpec) -> Result<(), ControlError> {
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
    pub async fn create_service(&self, spec: ServiceSpec) -> Result<String, ControlError> {
        validate_service_spec(&spec)?;
        let service = Service { id: new_id(), spec: Some(spec), ..Default::default() };
        let id = service.id.clone();
        self.proposer.propose(vec![create(service)]).await?;
        Ok(id)
    }

    /// Replaces a service's spec, if the service is still at `version`.
    pub async fn update_service(&self, key: &str, version: u64, spec: ServiceSpec) -> Result<(), ControlError> {
        validate_service_spec(&spec)?;
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
