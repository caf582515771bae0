//! One pass's view of a network's free addresses: what the store says is
//! held, plus what the pass has handed out so far. Addresses a pass frees
//! (a virtual IP of a network a service left) stay taken until the next
//! pass, so that no address changes holder within one write.

use std::collections::{BTreeSet, HashMap};

use shoal_proto::Network;

use crate::ipam::{AddressSpace, Subnet};
use crate::store::State;

/// The free addresses of one network during a pass.
pub(super) struct Pool<'a> {
    pub network: &'a Network,
    space: AddressSpace,
    used: BTreeSet<u32>,
    /// Every assignable address below it is used: the next search starts here.
    cursor: u32,
}

impl<'a> Pool<'a> {
    fn new(state: &State, network: &'a Network) -> Option<Pool<'a>> {
        let space = AddressSpace::of(network)?;
        let used = state.held_addresses(&network.id).map(|(ip, _)| ip).collect();
        Some(Pool { network, space, used, cursor: space.range.addr })
    }

    /// The lowest free address, now taken.
    pub fn take(&mut self) -> Option<u32> {
        if self.used.len() as u64 >= self.space.capacity() {
            return None;
        }
        let used = &self.used;
        let ip = self.space.assignable_from(self.cursor).find(|ip| !used.contains(ip))?;
        self.used.insert(ip);
        // The broadcast address is never assignable, so `ip` is below it.
        self.cursor = ip + 1;
        Some(ip)
    }

    /// Returns an address taken in this pass that ended up unused (a task
    /// that got some of its networks' addresses but not all).
    pub fn give_back(&mut self, ip: u32) {
        if self.used.remove(&ip) {
            self.cursor = self.cursor.min(ip);
        }
    }

    pub fn subnet(&self) -> Subnet {
        self.space.subnet
    }

    /// Why nothing is left: the network, its subnet, and what to do.
    pub fn exhausted(&self) -> String {
        format!(
            "no address left on network {} ({}): its {} addresses are all in use; give the network a larger \
             subnet, or take services or containers off it",
            self.network.name(),
            self.space.subnet,
            self.space.capacity()
        )
    }
}

/// The pools of the networks a pass touches, made as it first needs each.
pub(super) struct Pools<'a> {
    state: &'a State,
    pools: HashMap<&'a str, Option<Pool<'a>>>,
}

impl<'a> Pools<'a> {
    pub fn new(state: &'a State) -> Pools<'a> {
        Pools { state, pools: HashMap::new() }
    }

    /// The store the pass reads.
    pub fn state(&self) -> &'a State {
        self.state
    }

    /// The pool of network `id`: `Err` says why there is none.
    pub fn get(&mut self, id: &str) -> Result<&mut Pool<'a>, String> {
        let state = self.state;
        let Some((key, network)) = state.networks.get_key_value(id) else {
            return Err(format!("network {id} does not exist: it was removed; update the service's networks"));
        };
        self.pools
            .entry(key.as_str())
            .or_insert_with(|| Pool::new(state, network))
            .as_mut()
            .ok_or_else(|| format!("network {} has no usable subnet: remove it and create it again", network.name()))
    }
}
