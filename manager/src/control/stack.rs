//! Stacks: a set of services labelled `com.docker.stack.namespace=<stack>`,
//! deployed and removed atomically, as one raft entry.

use serde::{Deserialize, Serialize};
use shoal_proto::{Service, ServiceSpec, STACK_NAMESPACE_LABEL};

use super::propose::{create, delete, update};
use super::service::{remove_tasks_actions, validate_service_spec};
use super::{Control, ControlError};
use crate::identity::new_id;

/// What a deploy did to one service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum StackChange {
    Created,
    Updated,
    Unchanged,
    Removed,
}

/// The outcome of a stack deploy: per service name, its ID and change.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct StackDeployResult {
    pub services: Vec<(String, String, StackChange)>,
}

fn stack_of(s: &Service) -> Option<&str> {
    s.spec.as_ref()?.annotations.as_ref()?.labels.get(STACK_NAMESPACE_LABEL).map(|v| v.as_str())
}

impl Control {
    /// Deploys `services` as stack `name` in one write: creates new services,
    /// updates changed ones, leaves identical ones alone, and with `prune`
    /// removes the stack's services that are no longer listed.
    pub async fn deploy_stack(
        &self,
        name: &str,
        services: Vec<ServiceSpec>,
        prune: bool,
    ) -> Result<StackDeployResult, ControlError> {
        for spec in &services {
            validate_service_spec(spec)?;
            let label = spec.annotations.as_ref().and_then(|a| a.labels.get(STACK_NAMESPACE_LABEL));
            if label.map(|s| s.as_str()) != Some(name) {
                return Err(ControlError::InvalidArgument(format!(
                    "service {}: it must carry the label {STACK_NAMESPACE_LABEL}={name}",
                    spec.annotations.as_ref().map(|a| a.name.as_str()).unwrap_or("")
                )));
            }
        }
        self.commit_fresh(|state| {
            let mut result = StackDeployResult::default();
            let mut actions = Vec::new();
            for spec in services.iter().cloned() {
                let svc_name = spec.annotations.as_ref().map(|a| a.name.clone()).unwrap_or_default();
                match state.services.values().find(|s| s.name() == svc_name) {
                    Some(existing) if stack_of(existing) != Some(name) => {
                        return Err(ControlError::Conflict(format!(
                            "service {svc_name} already exists and does not belong to stack {name}"
                        )));
                    }
                    Some(existing) => {
                        let mut spec = spec;
                        // Keep a forced redeploy counter the user set with `service update --force`.
                        if let (Some(t), Some(old)) =
                            (spec.task.as_mut(), existing.spec.as_ref().and_then(|s| s.task.as_ref()))
                        {
                            t.force_update = old.force_update;
                        }
                        if existing.spec.as_ref() == Some(&spec) {
                            result.services.push((svc_name, existing.id.clone(), StackChange::Unchanged));
                            continue;
                        }
                        let mut s = existing.clone();
                        s.previous_spec = s.spec.take();
                        s.spec = Some(spec);
                        result.services.push((svc_name, s.id.clone(), StackChange::Updated));
                        actions.push(update(s));
                    }
                    None => {
                        let s = Service { id: new_id(), spec: Some(spec), ..Default::default() };
                        result.services.push((svc_name, s.id.clone(), StackChange::Created));
                        actions.push(create(s));
                    }
                }
            }
            if prune {
                for s in state.services.values().filter(|s| stack_of(s) == Some(name)) {
                    if !result.services.iter().any(|(n, _, _)| n == s.name()) {
                        result.services.push((s.name().to_string(), s.id.clone(), StackChange::Removed));
                        actions.push(delete(s.clone()));
                        actions.extend(remove_tasks_actions(state, &s.id));
                    }
                }
            }
            Ok((actions, result))
        })
        .await
    }

    /// Removes every service of stack `name` in one write; returns their names.
    pub async fn remove_stack(&self, name: &str) -> Result<Vec<String>, ControlError> {
        self.commit_fresh(|state| {
            let mut names = Vec::new();
            let mut actions = Vec::new();
            for s in state.services.values().filter(|s| stack_of(s) == Some(name)) {
                names.push(s.name().to_string());
                actions.push(delete(s.clone()));
                actions.extend(remove_tasks_actions(state, &s.id));
            }
            if names.is_empty() {
                return Err(ControlError::NotFound(format!("nothing found in stack: {name}")));
            }
            Ok((actions, names))
        })
        .await
    }
}
