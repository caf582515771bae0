//! Node filters: which nodes can take a task, and why the others cannot.

use shoal_proto::{Node, NodeAvailability, NodeState, Task};

use crate::store::State;

/// The nodes that passed every filter, and counts of why others failed.
pub struct Verdict<'a> {
    pub nodes: Vec<&'a Node>,
    pub not_ready: usize,
    pub not_active: usize,
}

impl Verdict<'_> {
    /// Docker's wording: `no suitable node (1 node not available for new tasks)`.
    pub fn explain(&self) -> String {
        let mut reasons = Vec::new();
        let plural = |n: usize| if n == 1 { "node" } else { "nodes" };
        if self.not_ready > 0 {
            reasons.push(format!("{} {} not ready", self.not_ready, plural(self.not_ready)));
        }
        if self.not_active > 0 {
            reasons.push(format!("{} {} not available for new tasks", self.not_active, plural(self.not_active)));
        }
        if reasons.is_empty() {
            return "no suitable node (the swarm has no nodes)".into();
        }
        format!("no suitable node ({})", reasons.join("; "))
    }
}

/// Filters the store's nodes for `task`.
pub fn eligible_nodes<'a>(state: &'a State, _task: &Task) -> Verdict<'a> {
    let mut v = Verdict { nodes: Vec::new(), not_ready: 0, not_active: 0 };
    for n in state.nodes.values() {
        let ready = n.status.as_ref().map(|s| s.state()) == Some(NodeState::Ready);
        let active = n.spec.as_ref().map(|s| s.availability()).unwrap_or_default() == NodeAvailability::Active;
        if !ready {
            v.not_ready += 1;
        } else if !active {
            v.not_active += 1;
        } else {
            v.nodes.push(n);
        }
    }
    v
}
