//! Stacks: services, networks, secrets and configs labelled
//! `com.docker.stack.namespace=<stack>`, deployed and removed atomically, as
//! one raft entry.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use shoal_proto::{
    Config, ConfigSpec, Network, NetworkSpec, Secret, SecretSpec, Service, ServiceSpec, StoreAction,
    STACK_NAMESPACE_LABEL,
};

use super::limits::{check_labels, Limits};
use super::network;
use super::propose::{create, delete, update};
use super::secret::{self, FileObject};
use super::service::{remove_tasks_actions, resolve_references, validate_service_spec, Pending};
use super::{Control, ControlError};
use crate::identity::new_id;
use crate::store::State;

/// What a deploy did to one object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum StackChange {
    Created,
    Updated,
    Unchanged,
    Removed,
}

/// Everything one deploy sends: the objects the stack owns, and the names of
/// those it uses but does not own (they must exist).
#[derive(Debug, Clone, Default)]
pub struct StackSpec {
    pub services: Vec<ServiceSpec>,
    pub networks: Vec<NetworkSpec>,
    pub secrets: Vec<SecretSpec>,
    pub configs: Vec<ConfigSpec>,
    pub external_networks: Vec<String>,
    pub external_secrets: Vec<String>,
    pub external_configs: Vec<String>,
}

/// One object a deploy or removal touched: its kind, name, ID and change.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StackObjectChange {
    pub kind: String,
    pub name: String,
    pub id: String,
    pub change: StackChange,
}

/// The outcome of a stack deploy: per service name, its ID and change; and
/// the same for the stack's networks, secrets and configs.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct StackDeployResult {
    pub services: Vec<(String, String, StackChange)>,
    pub objects: Vec<StackObjectChange>,
}

/// What a stack removal did: the removed objects, and the ones kept because
/// a service outside the stack still uses them (with the reason).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct StackRemoveResult {
    pub services: Vec<String>,
    pub objects: Vec<StackObjectChange>,
    pub kept: Vec<String>,
}

fn stack_of(labels: Option<&HashMap<String, String>>) -> Option<&str> {
    labels?.get(STACK_NAMESPACE_LABEL).map(|v| v.as_str())
}

fn service_stack(s: &Service) -> Option<&str> {
    stack_of(s.spec.as_ref().and_then(|s| s.annotations.as_ref()).map(|a| &a.labels))
}

fn check_label(
    stack: &str,
    kind: &str,
    name: &str,
    labels: Option<&HashMap<String, String>>,
) -> Result<(), ControlError> {
    if stack_of(labels) == Some(stack) {
        Ok(())
    } else {
        Err(ControlError::InvalidArgument(format!(
            "{kind} {name}: it must carry the label {STACK_NAMESPACE_LABEL}={stack}"
        )))
    }
}

fn spec_name<T>(a: &Option<shoal_proto::Annotations>, _spec: &T) -> String {
    a.as_ref().map(|a| a.name.clone()).unwrap_or_default()
}

/// Creates the stack's new secrets or configs, checks that existing ones
/// still hold the same data (their labels may change), and appends what it
/// decided to `actions`, `changes` and `pending`.
fn plan_file_objects<T: FileObject>(
    state: &State,
    stack: &str,
    wanted: &[(String, HashMap<String, String>, Vec<u8>)],
    actions: &mut Vec<StoreAction>,
    changes: &mut Vec<StackObjectChange>,
    pending: &mut Vec<T>,
) -> Result<(), ControlError> {
    for (name, labels, data) in wanted {
        check_labels(T::KIND, name, labels)?;
        let change = |id: &str, change| StackObjectChange {
            kind: T::KIND.into(),
            name: name.clone(),
            id: id.to_string(),
            change,
        };
        match T::named(state, name) {
            Some(existing) if stack_of(existing.annotations().map(|a| &a.labels)) != Some(stack) => {
                return Err(ControlError::Conflict(format!(
                    "{} {name} already exists and does not belong to stack {stack}: remove it or rename the stack's",
                    T::KIND
                )));
            }
            Some(existing) if existing.data() != data.as_slice() => return Err(secret::immutable::<T>(name)),
            Some(existing) if existing.annotations().map(|a| &a.labels) != Some(labels) => {
                let mut o = existing.clone();
                o.annotations_mut().get_or_insert_default().labels = labels.clone();
                changes.push(change(existing.id(), StackChange::Updated));
                actions.push(update(o));
            }
            Some(existing) => changes.push(change(existing.id(), StackChange::Unchanged)),
            None => {
                secret::validate::<T>(name, data)?;
                let annotations = shoal_proto::Annotations { name: name.clone(), labels: labels.clone() };
                let o = T::new(new_id(), annotations, data.clone());
                changes.push(change(o.id(), StackChange::Created));
                actions.push(create(o.clone()));
                pending.push(o);
            }
        }
    }
    Ok(())
}

fn external_missing(stack: &str, kind: &str, name: &str, create: &str) -> ControlError {
    ControlError::NotFound(format!(
        "stack {stack}: {kind} {name} is declared as external, but it does not exist: create it first with \"{create}\""
    ))
}

impl Control {
    /// Deploys stack `name` in one write: creates its new networks, secrets,
    /// configs and services, updates changed services (and secrets' or
    /// configs' labels), leaves identical ones alone, and with `prune`
    /// removes the stack's services that are no longer listed. A secret or
    /// config whose content changed is refused: it must get a new name.
    pub async fn deploy_stack(
        &self,
        name: &str,
        stack: StackSpec,
        prune: bool,
    ) -> Result<StackDeployResult, ControlError> {
        let limits = Limits::of(&self.store.read());
        for spec in &stack.services {
            validate_service_spec(spec, &limits)?;
            let svc = spec_name(&spec.annotations, spec);
            check_label(name, "service", &svc, spec.annotations.as_ref().map(|a| &a.labels))?;
        }
        for spec in &stack.networks {
            check_label(
                name,
                "network",
                &spec_name(&spec.annotations, spec),
                spec.annotations.as_ref().map(|a| &a.labels),
            )?;
        }
        for spec in &stack.secrets {
            check_label(
                name,
                "secret",
                &spec_name(&spec.annotations, spec),
                spec.annotations.as_ref().map(|a| &a.labels),
            )?;
        }
        for spec in &stack.configs {
            check_label(
                name,
                "config",
                &spec_name(&spec.annotations, spec),
                spec.annotations.as_ref().map(|a| &a.labels),
            )?;
        }
        let secrets: Vec<_> = stack
            .secrets
            .iter()
            .map(|s| {
                let a = s.annotations.clone().unwrap_or_default();
                (a.name, a.labels, s.data.clone())
            })
            .collect();
        let configs: Vec<_> = stack
            .configs
            .iter()
            .map(|s| {
                let a = s.annotations.clone().unwrap_or_default();
                (a.name, a.labels, s.data.clone())
            })
            .collect();
        let service_names: Vec<String> = stack.services.iter().map(|s| spec_name(&s.annotations, s)).collect();
        self.commit_fresh(|state| {
            let mut result = StackDeployResult::default();
            let mut actions = Vec::new();

            let missing = |names: &[String], exists: &dyn Fn(&str) -> bool| names.iter().find(|n| !exists(n)).cloned();
            if let Some(n) = missing(&stack.external_networks, &|n| state.network_named(n).is_some()) {
                return Err(external_missing(name, "network", &n, &format!("shoal network create {n}")));
            }
            if let Some(n) = missing(&stack.external_secrets, &|n| state.secret_named(n).is_some()) {
                return Err(external_missing(name, "secret", &n, &format!("shoal secret create {n} FILE")));
            }
            if let Some(n) = missing(&stack.external_configs, &|n| state.config_named(n).is_some()) {
                return Err(external_missing(name, "config", &n, &format!("shoal config create {n} FILE")));
            }

            // Networks are created once and never updated, as Docker does.
            let mut new_networks: Vec<Network> = Vec::new();
            for spec in &stack.networks {
                let net_name = spec_name(&spec.annotations, spec);
                let change = |id: &str, change| StackObjectChange {
                    kind: "network".into(),
                    name: net_name.clone(),
                    id: id.to_string(),
                    change,
                };
                match state.network_named(&net_name) {
                    Some(existing) if stack_of(existing.labels()) != Some(name) => {
                        return Err(ControlError::Conflict(format!(
                            "network {net_name} already exists and does not belong to stack {name}"
                        )));
                    }
                    Some(existing) => result.objects.push(change(&existing.id, StackChange::Unchanged)),
                    None => {
                        let network = network::allocate(state, &new_networks, spec.clone())?;
                        result.objects.push(change(&network.id, StackChange::Created));
                        actions.push(create(network.clone()));
                        new_networks.push(network);
                    }
                }
            }
            let mut new_secrets: Vec<Secret> = Vec::new();
            plan_file_objects(state, name, &secrets, &mut actions, &mut result.objects, &mut new_secrets)?;
            let mut new_configs: Vec<Config> = Vec::new();
            plan_file_objects(state, name, &configs, &mut actions, &mut result.objects, &mut new_configs)?;
            let pending = Pending {
                networks: &new_networks,
                secrets: &new_secrets,
                configs: &new_configs,
                services: &service_names,
            };

            for spec in stack.services.iter().cloned() {
                let svc_name = spec_name(&spec.annotations, &spec);
                let mut spec = spec;
                resolve_references(state, &mut spec, &pending)?;
                super::ports::check(state, &spec, &stack.services)?;
                match state.service_named(&svc_name) {
                    Some(existing) if service_stack(existing) != Some(name) => {
                        return Err(ControlError::Conflict(format!(
                            "service {svc_name} already exists and does not belong to stack {name}"
                        )));
                    }
                    Some(existing) => {
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
                for s in state.services.values().filter(|s| service_stack(s) == Some(name)) {
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

    /// Removes stack `name` in one write: its services (their tasks shut
    /// down), secrets, configs and networks. An object that a service outside
    /// the stack still uses is kept, and named in the result.
    pub async fn remove_stack(&self, name: &str) -> Result<StackRemoveResult, ControlError> {
        self.commit_fresh(|state| {
            let mut result = StackRemoveResult::default();
            let mut actions = Vec::new();
            let removed: Vec<&Service> = state.services.values().filter(|s| service_stack(s) == Some(name)).collect();
            for s in &removed {
                result.services.push(s.name().to_string());
                actions.push(delete((*s).clone()));
                actions.extend(remove_tasks_actions(state, &s.id));
            }
            let outside = |users: Vec<String>| -> Vec<String> {
                users.into_iter().filter(|u| !result.services.contains(u)).collect()
            };
            let mut objects = Vec::new();
            let mut kept = Vec::new();
            for s in state.secrets.values().filter(|s| stack_of(s.labels()) == Some(name)) {
                let users = outside(secret::users::<Secret>(state, &s.id));
                if users.is_empty() {
                    objects.push(("secret", s.name(), s.id.clone()));
                    actions.push(delete(s.clone()));
                } else {
                    kept.push(secret::in_use::<Secret>(s.name(), &users).to_string());
                }
            }
            for c in state.configs.values().filter(|c| stack_of(c.labels()) == Some(name)) {
                let users = outside(secret::users::<Config>(state, &c.id));
                if users.is_empty() {
                    objects.push(("config", c.name(), c.id.clone()));
                    actions.push(delete(c.clone()));
                } else {
                    kept.push(secret::in_use::<Config>(c.name(), &users).to_string());
                }
            }
            for n in state.networks.values().filter(|n| stack_of(n.labels()) == Some(name)) {
                match network::in_use(state, n, &result.services) {
                    None => {
                        objects.push(("network", n.name(), n.id.clone()));
                        actions.push(delete(n.clone()));
                    }
                    Some(why) => kept.push(why),
                }
            }
            if actions.is_empty() && kept.is_empty() {
                return Err(ControlError::NotFound(format!("nothing found in stack: {name}")));
            }
            result.objects = objects
                .into_iter()
                .map(|(kind, n, id)| StackObjectChange {
                    kind: kind.into(),
                    name: n.to_string(),
                    id,
                    change: StackChange::Removed,
                })
                .collect();
            result.kept = kept;
            Ok((actions, result))
        })
        .await
    }
}
