//! Applying a batch of store actions: version checks, name uniqueness, and
//! all-or-nothing semantics (an undo log rolls back a failed batch).

use serde::{Deserialize, Serialize};
use shoal_proto::store_action::{Kind, Object};
use shoal_proto::{Meta, StoreBatch};

use super::addresses;
use super::State;

/// Why a store write was refused. Maps onto HTTP 404/409/400 in the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {key} not found")]
    NotFound { kind: String, key: String },
    #[error("{kind} reference \"{key}\" is ambiguous: it matches several IDs; give more of the ID")]
    Ambiguous { kind: String, key: String },
    #[error("{kind} {key} already exists")]
    AlreadyExists { kind: String, key: String },
    #[error("update out of sequence: {kind} {id} is at version {current}, the write was based on version {given}; read it again and retry")]
    VersionConflict { kind: String, id: String, current: u64, given: u64 },
    #[error("invalid store action: {0}")]
    Invalid(String),
}

enum Undo {
    Node(String, Option<Box<shoal_proto::Node>>),
    Service(String, Option<Box<shoal_proto::Service>>),
    Task(String, Option<Box<shoal_proto::Task>>),
    Network(String, Option<Box<shoal_proto::Network>>),
    Cluster(String, Option<Box<shoal_proto::Cluster>>),
    Secret(String, Option<Box<shoal_proto::Secret>>),
    Config(String, Option<Box<shoal_proto::Config>>),
}

pub(super) fn apply_batch(state: &mut State, index: u64, batch: &StoreBatch) -> Result<(), StoreError> {
    let mut undo = Vec::with_capacity(batch.actions.len());
    for action in &batch.actions {
        if let Err(e) = apply_action(state, index, batch.timestamp, action, &mut undo) {
            for u in undo.into_iter().rev() {
                match u {
                    Undo::Node(id, o) => restore(&mut state.nodes, id, o),
                    Undo::Service(id, o) => {
                        addresses::reindex(&mut state.addresses, state.services.get(&id), o.as_deref());
                        restore(&mut state.services, id, o)
                    }
                    Undo::Task(id, o) => {
                        addresses::reindex(&mut state.addresses, state.tasks.get(&id), o.as_deref());
                        restore(&mut state.tasks, id, o)
                    }
                    Undo::Network(id, o) => restore(&mut state.networks, id, o),
                    Undo::Cluster(id, o) => restore(&mut state.clusters, id, o),
                    Undo::Secret(id, o) => restore(&mut state.secrets, id, o),
                    Undo::Config(id, o) => restore(&mut state.configs, id, o),
                }
            }
            state.rebuild_names();
            return Err(e);
        }
    }
    Ok(())
}

fn restore<T>(map: &mut std::collections::BTreeMap<String, T>, id: String, old: Option<Box<T>>) {
    match old {
        Some(o) => {
            map.insert(id, *o);
        }
        None => {
            map.remove(&id);
        }
    }
}

/// The unique name of an object of a unique-name kind.
pub(super) fn unique_name<T: Stored>(o: &T) -> Option<&str> {
    o.unique_name()
}

/// What every stored kind offers to the generic apply step.
pub(super) trait Stored: Clone {
    const KIND: &'static str;
    fn id(&self) -> &str;
    fn meta_mut(&mut self) -> &mut Option<Meta>;
    fn unique_name(&self) -> Option<&str> {
        None
    }
}

macro_rules! stored {
    ($t:ty, $kind:literal) => {
        impl Stored for $t {
            const KIND: &'static str = $kind;
            fn id(&self) -> &str {
                &self.id
            }
            fn meta_mut(&mut self) -> &mut Option<Meta> {
                &mut self.meta
            }
        }
    };
    ($t:ty, $kind:literal, unique_name) => {
        impl Stored for $t {
            const KIND: &'static str = $kind;
            fn id(&self) -> &str {
                &self.id
            }
            fn meta_mut(&mut self) -> &mut Option<Meta> {
                &mut self.meta
            }
            fn unique_name(&self) -> Option<&str> {
                self.spec.as_ref().and_then(|s| s.annotations.as_ref()).map(|a| a.name.as_str())
            }
        }
    };
}

stored!(shoal_proto::Node, "node");
stored!(shoal_proto::Task, "task");
stored!(shoal_proto::Cluster, "cluster");
stored!(shoal_proto::Service, "service", unique_name);
stored!(shoal_proto::Network, "network", unique_name);
stored!(shoal_proto::Secret, "secret", unique_name);
stored!(shoal_proto::Config, "config", unique_name);

fn apply_action(
    state: &mut State,
    index: u64,
    now: i64,
    action: &shoal_proto::StoreAction,
    undo: &mut Vec<Undo>,
) -> Result<(), StoreError> {
    let kind = action.kind();
    let Some(object) = &action.object else {
        return Err(StoreError::Invalid("action without an object".into()));
    };
    match object {
        Object::Node(o) => {
            let old = change(&mut state.nodes, &mut state.names, kind, o, index, now)?;
            undo.push(Undo::Node(o.id.clone(), old));
        }
        Object::Service(o) => {
            if kind != Kind::Delete {
                addresses::check(state, state.services.get(&o.id), o)?;
            }
            let old = change(&mut state.services, &mut state.names, kind, o, index, now)?;
            addresses::reindex(&mut state.addresses, old.as_deref(), state.services.get(&o.id));
            undo.push(Undo::Service(o.id.clone(), old));
        }
        Object::Task(o) => {
            if kind != Kind::Delete {
                addresses::check(state, state.tasks.get(&o.id), o)?;
            }
            let old = change(&mut state.tasks, &mut state.names, kind, o, index, now)?;
            addresses::reindex(&mut state.addresses, old.as_deref(), state.tasks.get(&o.id));
            undo.push(Undo::Task(o.id.clone(), old));
        }
        Object::Network(o) => {
            if kind != Kind::Delete {
                check_subnet(state, o)?;
                check_vni(state, o)?;
            }
            let old = change(&mut state.networks, &mut state.names, kind, o, index, now)?;
            undo.push(Undo::Network(o.id.clone(), old));
        }
        Object::Cluster(o) => {
            let old = change(&mut state.clusters, &mut state.names, kind, o, index, now)?;
            undo.push(Undo::Cluster(o.id.clone(), old));
        }
        Object::Secret(o) => {
            let old = change(&mut state.secrets, &mut state.names, kind, o, index, now)?;
            undo.push(Undo::Secret(o.id.clone(), old));
        }
        Object::Config(o) => {
            let old = change(&mut state.configs, &mut state.names, kind, o, index, now)?;
            undo.push(Undo::Config(o.id.clone(), old));
        }
    }
    Ok(())
}

/// Applies one create/update/delete to `map`, returning the previous value.
fn change<T: Stored>(
    map: &mut std::collections::BTreeMap<String, T>,
    names: &mut std::collections::HashMap<(&'static str, String), String>,
    kind: Kind,
    object: &T,
    index: u64,
    now: i64,
) -> Result<Option<Box<T>>, StoreError> {
    let id = object.id();
    if id.is_empty() {
        return Err(StoreError::Invalid(format!("{} without an ID", T::KIND)));
    }
    let given = object.clone().meta_mut().as_ref().map(|m| m.version).unwrap_or(0);
    let current = map.get(id).cloned();
    match kind {
        Kind::Create => {
            if current.is_some() {
                return Err(StoreError::AlreadyExists { kind: T::KIND.into(), key: id.to_string() });
            }
            check_unique_name(names, object)?;
            let mut new = object.clone();
            *new.meta_mut() = Some(Meta { version: index, created_at: now, updated_at: now });
            if let Some(name) = object.unique_name() {
                names.insert((T::KIND, name.to_string()), id.to_string());
            }
            map.insert(id.to_string(), new);
        }
        Kind::Update => {
            let Some(mut cur) = current.clone() else {
                return Err(StoreError::NotFound { kind: T::KIND.into(), key: id.to_string() });
            };
            let cur_meta = (*cur.meta_mut()).unwrap_or_default();
            if cur_meta.version != given {
                return Err(StoreError::VersionConflict {
                    kind: T::KIND.into(),
                    id: id.to_string(),
                    current: cur_meta.version,
                    given,
                });
            }
            check_unique_name(names, object)?;
            let mut new = object.clone();
            *new.meta_mut() = Some(Meta { version: index, created_at: cur_meta.created_at, updated_at: now });
            if let Some(old) = cur.unique_name().filter(|old| Some(*old) != object.unique_name()) {
                names.remove(&(T::KIND, old.to_string()));
            }
            if let Some(name) = object.unique_name() {
                names.insert((T::KIND, name.to_string()), id.to_string());
            }
            map.insert(id.to_string(), new);
        }
        Kind::Delete => {
            let Some(mut cur) = current.clone() else {
                return Err(StoreError::NotFound { kind: T::KIND.into(), key: id.to_string() });
            };
            let version = cur.meta_mut().as_ref().map(|m| m.version).unwrap_or(0);
            if version != given {
                return Err(StoreError::VersionConflict {
                    kind: T::KIND.into(),
                    id: id.to_string(),
                    current: version,
                    given,
                });
            }
            if let Some(name) = cur.unique_name() {
                names.remove(&(T::KIND, name.to_string()));
            }
            map.remove(id);
        }
    }
    Ok(current.map(Box::new))
}

/// Two networks never share an allocated subnet, whoever allocated them.
fn check_subnet(state: &State, network: &shoal_proto::Network) -> Result<(), StoreError> {
    let Some(subnet) = network.allocated.as_ref().map(|a| a.subnet.as_str()).filter(|s| !s.is_empty()) else {
        return Ok(());
    };
    match state
        .networks
        .values()
        .find(|n| n.id != network.id && n.allocated.as_ref().map(|a| a.subnet.as_str()) == Some(subnet))
    {
        Some(other) => Err(StoreError::AlreadyExists {
            kind: "network".into(),
            key: format!("with subnet {subnet} ({})", other.name()),
        }),
        None => Ok(()),
    }
}

/// The VXLAN network identifiers Docker gives overlays: 4096 up to 2^24 - 1.
pub const VNI_RANGE: std::ops::Range<u32> = 4096..(1 << 24);

/// A network's VNI, once it has one (0: none yet), is in range and no other
/// network's.
fn check_vni(state: &State, network: &shoal_proto::Network) -> Result<(), StoreError> {
    if network.vni == 0 {
        return Ok(());
    }
    if !VNI_RANGE.contains(&network.vni) {
        return Err(StoreError::Invalid(format!(
            "network {}: VNI {} is outside {}..{}",
            network.name(),
            network.vni,
            VNI_RANGE.start,
            VNI_RANGE.end
        )));
    }
    match state.networks.values().find(|n| n.id != network.id && n.vni == network.vni) {
        Some(other) => Err(StoreError::AlreadyExists {
            kind: "network".into(),
            key: format!("with VNI {} ({})", network.vni, other.name()),
        }),
        None => Ok(()),
    }
}

fn check_unique_name<T: Stored>(
    names: &std::collections::HashMap<(&'static str, String), String>,
    object: &T,
) -> Result<(), StoreError> {
    let Some(name) = object.unique_name() else {
        return Ok(());
    };
    if names.get(&(T::KIND, name.to_string())).is_some_and(|id| id != object.id()) {
        return Err(StoreError::AlreadyExists { kind: T::KIND.into(), key: format!("named \"{name}\"") });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{Annotations, Service, ServiceSpec, StoreAction};

    fn service(id: &str, name: &str, version: u64) -> Service {
        Service {
            id: id.into(),
            meta: Some(Meta { version, ..Default::default() }),
            spec: Some(ServiceSpec {
                annotations: Some(Annotations { name: name.into(), ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn batch(actions: Vec<(Kind, Service)>) -> StoreBatch {
        StoreBatch {
            timestamp: 7,
            actions: actions
                .into_iter()
                .map(|(k, s)| StoreAction { kind: k as i32, object: Some(Object::Service(s)) })
                .collect(),
        }
    }

    #[test]
    fn create_sets_version_to_the_log_index() {
        let mut st = State::default();
        apply_batch(&mut st, 3, &batch(vec![(Kind::Create, service("a", "web", 0))])).unwrap();
        let meta = st.services["a"].meta.unwrap();
        assert_eq!((meta.version, meta.created_at, meta.updated_at), (3, 7, 7));
    }

    #[test]
    fn stale_update_is_refused_and_nothing_changes() {
        let mut st = State::default();
        apply_batch(&mut st, 3, &batch(vec![(Kind::Create, service("a", "web", 0))])).unwrap();
        let err = apply_batch(&mut st, 4, &batch(vec![(Kind::Update, service("a", "web2", 2))])).unwrap_err();
        assert!(matches!(err, StoreError::VersionConflict { current: 3, given: 2, .. }));
        assert_eq!(st.services["a"].name(), "web");
        apply_batch(&mut st, 5, &batch(vec![(Kind::Update, service("a", "web2", 3))])).unwrap();
        assert_eq!(st.services["a"].version(), 5);
    }

    #[test]
    fn a_failing_action_rolls_back_the_whole_batch() {
        let mut st = State::default();
        apply_batch(&mut st, 1, &batch(vec![(Kind::Create, service("a", "web", 0))])).unwrap();
        let err = apply_batch(
            &mut st,
            2,
            &batch(vec![
                (Kind::Create, service("b", "db", 0)),
                (Kind::Delete, service("a", "web", 1)),
                (Kind::Create, service("c", "db", 0)),
            ]),
        )
        .unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists { .. }));
        assert_eq!(st.services.len(), 1);
        assert!(st.services.contains_key("a"));
        // The rolled-back batch left no name behind: "db" is free, "web" is not.
        apply_batch(&mut st, 3, &batch(vec![(Kind::Create, service("d", "db", 0))])).unwrap();
        let taken = apply_batch(&mut st, 4, &batch(vec![(Kind::Create, service("e", "web", 0))]));
        assert!(matches!(taken, Err(StoreError::AlreadyExists { .. })));
    }

    #[test]
    fn renames_and_deletes_free_names() {
        let mut st = State::default();
        apply_batch(&mut st, 1, &batch(vec![(Kind::Create, service("a", "web", 0))])).unwrap();
        apply_batch(&mut st, 2, &batch(vec![(Kind::Update, service("a", "www", 1))])).unwrap();
        apply_batch(&mut st, 3, &batch(vec![(Kind::Create, service("b", "web", 0))])).unwrap();
        assert_eq!(st.find_service("www").unwrap().id, "a");
        assert_eq!(st.find_service("web").unwrap().id, "b");
        apply_batch(&mut st, 4, &batch(vec![(Kind::Delete, service("b", "web", 3))])).unwrap();
        apply_batch(&mut st, 5, &batch(vec![(Kind::Create, service("c", "web", 0))])).unwrap();
        assert_eq!(st.find_service("web").unwrap().id, "c");
        let dup = apply_batch(&mut st, 6, &batch(vec![(Kind::Update, service("c", "www", 5))]));
        assert!(matches!(dup, Err(StoreError::AlreadyExists { .. })));
        assert_eq!(st.find_service("web").unwrap().id, "c");
    }

    #[test]
    fn lookups_by_name_and_prefix() {
        let mut st = State::default();
        apply_batch(
            &mut st,
            1,
            &batch(vec![(Kind::Create, service("abc1", "web", 0)), (Kind::Create, service("abd2", "db", 0))]),
        )
        .unwrap();
        assert_eq!(st.find_service("web").unwrap().id, "abc1");
        assert_eq!(st.find_service("abd").unwrap().id, "abd2");
        assert!(matches!(st.find_service("ab"), Err(StoreError::Ambiguous { .. })));
        assert!(matches!(st.find_service("zz"), Err(StoreError::NotFound { .. })));
    }
}
