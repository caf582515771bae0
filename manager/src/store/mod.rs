//! The in-memory store of cluster objects that the raft state machine
//! applies committed batches to.
//!
//! Every control loop reads it and writes back to it only through raft: the
//! store itself never changes except in [`Store::apply`], which every replica
//! runs with the same batch and log index and so reaches the same state.
//! Readers wait for changes with [`Store::subscribe`] (the applied index).

pub mod addresses;
mod apply;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use prost::Message;
use shoal_proto::{Cluster, Config, Network, Node, Secret, Service, StoreBatch, StoreSnapshot, Task};
use tokio::sync::watch;

pub use addresses::{holds_addresses, Holder};
pub use apply::{StoreError, VNI_RANGE};

/// All cluster objects, by ID.
#[derive(Debug, Default, Clone)]
pub struct State {
    pub nodes: BTreeMap<String, Node>,
    pub services: BTreeMap<String, Service>,
    pub tasks: BTreeMap<String, Task>,
    pub networks: BTreeMap<String, Network>,
    pub clusters: BTreeMap<String, Cluster>,
    pub secrets: BTreeMap<String, Secret>,
    pub configs: BTreeMap<String, Config>,
    /// (kind, name) → ID of the kinds whose names are unique (services,
    /// networks, secrets, configs), kept by `apply`, so that a write checks
    /// its name without scanning every object.
    names: std::collections::HashMap<(&'static str, String), String>,
    /// Network ID → address → who holds it, kept by `apply` (see
    /// [`addresses`]), so that no write hands out an address in use.
    addresses: addresses::AddressIndex,
}

impl State {
    /// The one cluster object (absent before `swarm init` committed it).
    pub fn cluster(&self) -> Option<&Cluster> {
        self.clusters.values().next()
    }

    /// A service by exact ID, exact name, or unique ID prefix (Docker's rule).
    pub fn find_service(&self, key: &str) -> Result<&Service, StoreError> {
        find(&self.services, key, "service", Some(self.service_named(key)), |s| s.name())
    }

    /// The service named exactly `name` (from the name index, no scan).
    pub fn service_named(&self, name: &str) -> Option<&Service> {
        self.id_by_name("service", name).and_then(|id| self.services.get(id))
    }

    /// The network named exactly `name`.
    pub fn network_named(&self, name: &str) -> Option<&Network> {
        self.id_by_name("network", name).and_then(|id| self.networks.get(id))
    }

    /// The secret named exactly `name`.
    pub fn secret_named(&self, name: &str) -> Option<&Secret> {
        self.id_by_name("secret", name).and_then(|id| self.secrets.get(id))
    }

    /// The config named exactly `name`.
    pub fn config_named(&self, name: &str) -> Option<&Config> {
        self.id_by_name("config", name).and_then(|id| self.configs.get(id))
    }

    /// A node by exact ID, exact hostname, or unique ID prefix.
    pub fn find_node(&self, key: &str) -> Result<&Node, StoreError> {
        find(&self.nodes, key, "node", None, |n| n.hostname())
    }

    /// A task by exact ID, exact name, or unique ID prefix.
    pub fn find_task(&self, key: &str) -> Result<&Task, StoreError> {
        find(&self.tasks, key, "task", None, |t| t.name())
    }

    /// A network by exact ID, exact name, or unique ID prefix.
    pub fn find_network(&self, key: &str) -> Result<&Network, StoreError> {
        find(&self.networks, key, "network", Some(self.network_named(key)), |n| n.name())
    }

    /// A secret by exact ID, exact name, or unique ID prefix.
    pub fn find_secret(&self, key: &str) -> Result<&Secret, StoreError> {
        find(&self.secrets, key, "secret", Some(self.secret_named(key)), |n| n.name())
    }

    /// A config by exact ID, exact name, or unique ID prefix.
    pub fn find_config(&self, key: &str) -> Result<&Config, StoreError> {
        find(&self.configs, key, "config", Some(self.config_named(key)), |n| n.name())
    }

    /// Who holds address `ip` on network `network_id`, if anyone.
    pub fn address_holder(&self, network_id: &str, ip: u32) -> Option<&Holder> {
        self.addresses.get(network_id).and_then(|a| a.get(&ip))
    }

    /// The addresses held on network `network_id`, lowest first, with their holders.
    pub fn held_addresses<'a>(&'a self, network_id: &str) -> impl Iterator<Item = (u32, &'a Holder)> + 'a {
        self.addresses.get(network_id).into_iter().flat_map(|a| a.iter().map(|(ip, h)| (*ip, h)))
    }

    /// The tasks of one service.
    pub fn service_tasks<'a>(&'a self, service_id: &'a str) -> impl Iterator<Item = &'a Task> + 'a {
        self.tasks.values().filter(move |t| t.service_id == service_id)
    }

    fn to_snapshot(&self) -> StoreSnapshot {
        StoreSnapshot {
            nodes: self.nodes.values().cloned().collect(),
            services: self.services.values().cloned().collect(),
            tasks: self.tasks.values().cloned().collect(),
            networks: self.networks.values().cloned().collect(),
            clusters: self.clusters.values().cloned().collect(),
            secrets: self.secrets.values().cloned().collect(),
            configs: self.configs.values().cloned().collect(),
        }
    }

    fn from_snapshot(s: StoreSnapshot) -> State {
        let mut state = State {
            names: Default::default(),
            addresses: Default::default(),
            nodes: s.nodes.into_iter().map(|o| (o.id.clone(), o)).collect(),
            services: s.services.into_iter().map(|o| (o.id.clone(), o)).collect(),
            tasks: s.tasks.into_iter().map(|o| (o.id.clone(), o)).collect(),
            networks: s.networks.into_iter().map(|o| (o.id.clone(), o)).collect(),
            clusters: s.clusters.into_iter().map(|o| (o.id.clone(), o)).collect(),
            secrets: s.secrets.into_iter().map(|o| (o.id.clone(), o)).collect(),
            configs: s.configs.into_iter().map(|o| (o.id.clone(), o)).collect(),
        };
        state.rebuild_names();
        state.addresses = addresses::rebuild(&state);
        state
    }

    /// Recomputes the name index from the objects.
    fn rebuild_names(&mut self) {
        fn add<T>(
            names: &mut std::collections::HashMap<(&'static str, String), String>,
            kind: &'static str,
            map: &BTreeMap<String, T>,
            name: impl Fn(&T) -> Option<&str>,
        ) {
            for (id, o) in map {
                if let Some(n) = name(o) {
                    names.insert((kind, n.to_string()), id.clone());
                }
            }
        }
        let mut names = std::collections::HashMap::new();
        add(&mut names, "service", &self.services, apply::unique_name);
        add(&mut names, "network", &self.networks, apply::unique_name);
        add(&mut names, "secret", &self.secrets, apply::unique_name);
        add(&mut names, "config", &self.configs, apply::unique_name);
        self.names = names;
    }

    /// The ID of the `kind` object named `name`, if any (unique-name kinds).
    fn id_by_name(&self, kind: &'static str, name: &str) -> Option<&String> {
        self.names.get(&(kind, name.to_string()))
    }
}

/// An object by exact ID, exact name, or unique ID prefix. `named` is the
/// name index's answer for kinds with unique names; the others scan.
fn find<'a, T>(
    map: &'a BTreeMap<String, T>,
    key: &str,
    kind: &'static str,
    named: Option<Option<&'a T>>,
    name: impl Fn(&T) -> &str,
) -> Result<&'a T, StoreError> {
    if let Some(o) = map.get(key) {
        return Ok(o);
    }
    let by_name = match named {
        Some(indexed) => indexed,
        None => map.values().find(|o| name(o) == key),
    };
    if let Some(o) = by_name {
        return Ok(o);
    }
    let mut prefixed = map.range(key.to_string()..).take_while(|(id, _)| id.starts_with(key));
    match (prefixed.next(), prefixed.next()) {
        (Some((_, o)), None) if !key.is_empty() => Ok(o),
        (Some(_), Some(_)) => Err(StoreError::Ambiguous { kind: kind.into(), key: key.to_string() }),
        _ => Err(StoreError::NotFound { kind: kind.into(), key: key.to_string() }),
    }
}

/// The shared store: state plus a watch of the last applied raft index.
#[derive(Clone)]
pub struct Store {
    state: Arc<RwLock<State>>,
    applied: watch::Sender<u64>,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    pub fn new() -> Store {
        Store { state: Arc::new(RwLock::new(State::default())), applied: watch::channel(0).0 }
    }

    /// A read view. Hold it briefly: raft's apply waits for it.
    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies one committed batch at raft log `index`: all of its actions or
    /// none of them.
    pub fn apply(&self, index: u64, batch: &StoreBatch) -> Result<(), StoreError> {
        let result = {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            apply::apply_batch(&mut state, index, batch)
        };
        self.applied.send_replace(index);
        result
    }

    /// Applies the independent batches of one raft entry at `index`, each
    /// all or nothing; returns each one's verdict. Watchers hear of the
    /// entry once, after all of them.
    pub fn apply_many(&self, index: u64, batches: &[StoreBatch]) -> Vec<Result<(), StoreError>> {
        let results = {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            batches.iter().map(|b| apply::apply_batch(&mut state, index, b)).collect()
        };
        self.applied.send_replace(index);
        results
    }

    /// Marks `index` applied without a store change (membership and blank entries).
    pub fn mark_applied(&self, index: u64) {
        self.applied.send_replace(index);
    }

    /// Waits for changes: the value is the last applied raft index.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// The last applied raft index.
    pub fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }

    /// The whole store, prost-encoded, for a raft snapshot.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        self.read().to_snapshot().encode_to_vec()
    }

    /// Replaces the whole store with a snapshot's content.
    pub fn restore_snapshot(&self, index: u64, bytes: &[u8]) -> Result<(), prost::DecodeError> {
        let snapshot = StoreSnapshot::decode(bytes)?;
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = State::from_snapshot(snapshot);
        self.applied.send_replace(index);
        Ok(())
    }
}
