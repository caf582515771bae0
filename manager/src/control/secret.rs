//! Secrets and configs: small named blobs that services mount as files.
//!
//! Both are immutable once created (only their labels may change), as in
//! Swarm: a service's tasks must all see the same content, so a new content
//! is a new object under a new name. Neither can be removed while a service
//! uses it. A secret's data never leaves the managers except towards the
//! node that runs a task using it (see the dispatcher).

use std::collections::{BTreeMap, HashMap};

use shoal_proto::store_action::Object;
use shoal_proto::{Annotations, Config, ConfigSpec, ContainerSpec, Meta, Secret, SecretSpec, Service, MAX_SECRET_SIZE};

use super::propose::{create, delete, update};
use super::{Control, ControlError};
use crate::identity::new_id;
use crate::store::{State, StoreError};

/// What secrets and configs have in common, so one set of operations serves both.
pub trait FileObject: Clone + Into<Object> {
    /// "secret" or "config", as messages and the CLI say it.
    const KIND: &'static str;
    fn new(id: String, annotations: Annotations, data: Vec<u8>) -> Self;
    fn id(&self) -> &str;
    fn name(&self) -> &str;
    fn version(&self) -> u64;
    fn annotations(&self) -> Option<&Annotations>;
    fn annotations_mut(&mut self) -> &mut Option<Annotations>;
    fn data(&self) -> &[u8];
    fn meta_mut(&mut self) -> &mut Option<Meta>;
    fn all(state: &State) -> &BTreeMap<String, Self>;
    fn find<'a>(state: &'a State, key: &str) -> Result<&'a Self, StoreError>;
    /// The object named exactly `name` (from the store's name index).
    fn named<'a>(state: &'a State, name: &str) -> Option<&'a Self>;
    /// The IDs of the objects of this kind that a container spec uses.
    fn used_by(spec: &ContainerSpec) -> Vec<&str>;
}

/// Secrets and configs have the same shape: one implementation for both.
macro_rules! file_object {
    ($t:ident, $spec:ident, $kind:literal, $map:ident, $find:ident, $named:ident, $refs:ident, $ref_id:ident) => {
        impl FileObject for $t {
            const KIND: &'static str = $kind;
            fn new(id: String, annotations: Annotations, data: Vec<u8>) -> Self {
                $t { id, meta: None, spec: Some($spec { annotations: Some(annotations), data }) }
            }
            fn id(&self) -> &str {
                &self.id
            }
            fn name(&self) -> &str {
                $t::name(self)
            }
            fn version(&self) -> u64 {
                $t::version(self)
            }
            fn annotations(&self) -> Option<&Annotations> {
                self.spec.as_ref().and_then(|s| s.annotations.as_ref())
            }
            fn annotations_mut(&mut self) -> &mut Option<Annotations> {
                &mut self.spec.get_or_insert_default().annotations
            }
            fn data(&self) -> &[u8] {
                self.spec.as_ref().map(|s| s.data.as_slice()).unwrap_or_default()
            }
            fn meta_mut(&mut self) -> &mut Option<Meta> {
                &mut self.meta
            }
            fn all(state: &State) -> &BTreeMap<String, Self> {
                &state.$map
            }
            fn find<'a>(state: &'a State, key: &str) -> Result<&'a Self, StoreError> {
                state.$find(key)
            }
            fn named<'a>(state: &'a State, name: &str) -> Option<&'a Self> {
                state.$named(name)
            }
            fn used_by(spec: &ContainerSpec) -> Vec<&str> {
                spec.$refs.iter().map(|r| r.$ref_id.as_str()).collect()
            }
        }
    };
}

file_object!(Secret, SecretSpec, "secret", secrets, find_secret, secret_named, secrets, secret_id);
file_object!(Config, ConfigSpec, "config", configs, find_config, config_named, configs, config_id);

/// Docker's rule for secret, config and network names.
pub(crate) fn check_object_name(kind: &str, name: &str) -> Result<(), ControlError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(ControlError::InvalidArgument(format!(
            "{kind} name \"{name}\" is invalid: use up to 64 letters, digits, '-', '_' or '.', starting with a letter or digit"
        )))
    }
}

/// Checks what a new secret or config may hold.
pub(crate) fn validate<T: FileObject>(name: &str, data: &[u8]) -> Result<(), ControlError> {
    check_object_name(T::KIND, name)?;
    if data.is_empty() {
        return Err(ControlError::InvalidArgument(format!("{} {name}: the data is empty", T::KIND)));
    }
    if data.len() > MAX_SECRET_SIZE {
        return Err(ControlError::InvalidArgument(format!(
            "{} {name}: the data is {} bytes; at most {MAX_SECRET_SIZE} (500 KiB) are allowed",
            T::KIND,
            data.len()
        )));
    }
    Ok(())
}

/// The services whose spec uses object `id`, by name, sorted.
pub(crate) fn users<T: FileObject>(state: &State, id: &str) -> Vec<String> {
    let mut names: Vec<String> =
        state.services.values().filter(|s| service_uses::<T>(s, id)).map(|s| s.name().to_string()).collect();
    names.sort();
    names
}

fn service_uses<T: FileObject>(s: &Service, id: &str) -> bool {
    s.spec
        .as_ref()
        .and_then(|s| s.task.as_ref())
        .and_then(|t| t.container.as_ref())
        .is_some_and(|c| T::used_by(c).contains(&id))
}

/// The refusal to remove an object in use, naming its users.
pub(crate) fn in_use<T: FileObject>(name: &str, users: &[String]) -> ControlError {
    let noun = if users.len() == 1 { "service" } else { "services" };
    ControlError::InvalidArgument(format!(
        "{} '{name}' is in use by the following {noun}: {}; remove it from {} first",
        T::KIND,
        users.join(", "),
        if users.len() == 1 { "that service" } else { "those services" }
    ))
}

/// The refusal to change an object's data.
pub(crate) fn immutable<T: FileObject>(name: &str) -> ControlError {
    ControlError::InvalidArgument(format!(
        "{kind} {name}: its content changed, but a {kind}'s content cannot change (only its labels can): \
         give the new content a new name (e.g. {name}_v2) and point the services at it",
        kind = T::KIND
    ))
}

impl Control {
    /// Creates a secret or config; returns its ID.
    pub async fn create_file_object<T: FileObject>(
        &self,
        name: String,
        labels: HashMap<String, String>,
        data: Vec<u8>,
    ) -> Result<String, ControlError> {
        validate::<T>(&name, &data)?;
        super::limits::check_labels(T::KIND, &name, &labels)?;
        if T::named(&self.store.read(), &name).is_some() {
            return Err(ControlError::Conflict(format!("{} {name} already exists", T::KIND)));
        }
        let object = T::new(new_id(), Annotations { name, labels }, data);
        let id = object.id().to_string();
        self.proposer.propose(vec![create(object)]).await?;
        Ok(id)
    }

    /// Changes a secret's or config's labels, if it is still at `version`;
    /// its name and data must stay as they are.
    pub async fn update_file_object<T: FileObject>(
        &self,
        key: &str,
        version: u64,
        name: &str,
        labels: HashMap<String, String>,
        data: Option<Vec<u8>>,
    ) -> Result<(), ControlError> {
        let mut object = T::find(&self.store.read(), key)?.clone();
        if !name.is_empty() && name != object.name() {
            return Err(ControlError::InvalidArgument(format!(
                "{} {}: renaming is not supported (asked for \"{name}\"): only labels can change",
                T::KIND,
                object.name()
            )));
        }
        if data.as_deref().is_some_and(|d| !d.is_empty() && d != object.data()) {
            return Err(immutable::<T>(object.name()));
        }
        super::limits::check_labels(T::KIND, object.name(), &labels)?;
        object.annotations_mut().get_or_insert_default().labels = labels;
        object.meta_mut().get_or_insert_default().version = version;
        self.proposer.propose(vec![update(object)]).await?;
        Ok(())
    }

    /// Removes a secret or config that no service uses; returns its name.
    pub async fn remove_file_object<T: FileObject>(&self, key: &str) -> Result<String, ControlError> {
        self.commit_fresh(|state| {
            let object = T::find(state, key)?;
            let users = users::<T>(state, object.id());
            if !users.is_empty() {
                return Err(in_use::<T>(object.name(), &users));
            }
            Ok((vec![delete(object.clone())], object.name().to_string()))
        })
        .await
    }
}
