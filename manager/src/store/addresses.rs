//! Who holds which address: the addresses tasks and services hold on each
//! network, indexed by `apply`, which refuses any write that would give an
//! address to a second holder, or give out an address the network may not
//! (its own, its gateway, its broadcast address, one outside its range).
//!
//! The allocator is the only writer that hands addresses out, and it picks
//! free ones; this check is what makes "never handed out twice" hold whatever
//! happens between its passes (a pass computed on a store that a leader
//! change left behind, say). When an address is free again is decided here,
//! once, by [`holds_addresses`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use shoal_proto::{Service, Task, TaskState};

use super::{State, StoreError};
use crate::ipam::{parse_cidr, AddressSpace};

/// What holds an address: a task (or a standalone container's attachment)
/// or a service's virtual IP.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Holder {
    Task(String),
    Service(String),
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Holder::Task(id) => write!(f, "task {id}"),
            Holder::Service(id) => write!(f, "the virtual IP of service {id}"),
        }
    }
}

/// By network ID, then address: who holds it.
pub type AddressIndex = HashMap<String, BTreeMap<u32, Holder>>;

/// Whether a task still holds the addresses written on it. It lets them go
/// for good once it has stopped (a task never runs again once terminal), or
/// when it was told to stop before it ever reached a node.
pub fn holds_addresses(t: &Task) -> bool {
    let state = t.state();
    let never_placed = t.desired_state() > TaskState::Running && state < TaskState::Assigned;
    !state.is_terminal() && !never_placed
}

/// An object whose addresses the index keeps.
pub(super) trait Holds {
    fn holder(&self) -> Holder;
    fn holds(&self) -> bool;
    /// (network ID, address in CIDR form) of every address written on it.
    fn written(&self) -> Vec<(&str, &str)>;
}

impl Holds for Task {
    fn holder(&self) -> Holder {
        Holder::Task(self.id.clone())
    }

    fn holds(&self) -> bool {
        holds_addresses(self)
    }

    fn written(&self) -> Vec<(&str, &str)> {
        self.networks
            .iter()
            .flat_map(|n| n.addresses.iter().map(move |a| (n.network_id.as_str(), a.as_str())))
            .collect()
    }
}

impl Holds for Service {
    fn holder(&self) -> Holder {
        Holder::Service(self.id.clone())
    }

    fn holds(&self) -> bool {
        true
    }

    fn written(&self) -> Vec<(&str, &str)> {
        self.endpoint
            .iter()
            .flat_map(|e| e.virtual_ips.iter().map(|v| (v.network_id.as_str(), v.addr.as_str())))
            .collect()
    }
}

/// The (network, address) pairs `o` holds, those that read.
fn held<T: Holds>(o: &T) -> Vec<(&str, u32)> {
    if !o.holds() {
        return Vec::new();
    }
    o.written().into_iter().filter_map(|(n, a)| parse_cidr(a).map(|(ip, _)| (n, ip))).collect()
}

/// Checks the addresses `new` would hold that `old` (the stored version)
/// did not: each must read, lie in its network's range and be free.
pub(super) fn check<T: Holds>(state: &State, old: Option<&T>, new: &T) -> Result<(), StoreError> {
    if !new.holds() {
        return Ok(());
    }
    let before: HashSet<(&str, u32)> = old.map(held).unwrap_or_default().into_iter().collect();
    let holder = new.holder();
    let invalid = |why: String| StoreError::Invalid(format!("{holder}: {why}"));
    let mut seen = HashSet::new();
    for (network_id, text) in new.written() {
        let (ip, prefix) = parse_cidr(text)
            .ok_or_else(|| invalid(format!("address \"{text}\" on network {network_id} is not IPv4 CIDR")))?;
        if !seen.insert((network_id, ip)) {
            return Err(invalid(format!("address {text} is written twice on network {network_id}")));
        }
        if before.contains(&(network_id, ip)) {
            continue;
        }
        let network = state
            .networks
            .get(network_id)
            .ok_or_else(|| invalid(format!("address {text}: network {network_id} does not exist")))?;
        let space = AddressSpace::of(network)
            .ok_or_else(|| invalid(format!("address {text}: network {} has no usable subnet", network.name())))?;
        if prefix != space.subnet.prefix || !space.assignable(ip) {
            return Err(invalid(format!(
                "address {text} is not one network {} ({}) may hand out",
                network.name(),
                space.subnet
            )));
        }
        if let Some(other) = state.addresses.get(network_id).and_then(|a| a.get(&ip)).filter(|h| **h != holder) {
            return Err(StoreError::AlreadyExists {
                kind: "address".into(),
                key: format!("{text} on network {} (held by {other})", network.name()),
            });
        }
    }
    Ok(())
}

/// Moves the index from `before` (the object as it was, if it was) to
/// `after` (as it is now, if it is).
pub(super) fn reindex<T: Holds>(index: &mut AddressIndex, before: Option<&T>, after: Option<&T>) {
    if let Some(b) = before {
        let holder = b.holder();
        for (network_id, ip) in held(b) {
            if let Some(by_ip) = index.get_mut(network_id) {
                if by_ip.get(&ip) == Some(&holder) {
                    by_ip.remove(&ip);
                }
                if by_ip.is_empty() {
                    index.remove(network_id);
                }
            }
        }
    }
    if let Some(a) = after {
        let holder = a.holder();
        for (network_id, ip) in held(a) {
            index.entry(network_id.to_string()).or_default().insert(ip, holder.clone());
        }
    }
}

/// The index of a whole store.
pub(super) fn rebuild(state: &State) -> AddressIndex {
    let mut index = AddressIndex::new();
    for s in state.services.values() {
        reindex(&mut index, None, Some(s));
    }
    for t in state.tasks.values() {
        reindex(&mut index, None, Some(t));
    }
    index
}
