//! The task reaper: deletes tasks that are done with.
//!
//! - tasks with desired state `remove` (their service was removed or scaled
//!   away) once they stopped, or at once if they never reached a node;
//! - terminated tasks of a slot beyond the cluster's task history limit
//!   (default 5), oldest first;
//! - standalone containers' attachments on nodes no longer in the swarm.
//!
//! The agent removes a task's container when the task disappears from its
//! assignments, so reaping is also what cleans up containers.

use std::collections::BTreeMap;

use shoal_proto::{StoreAction, Task, TaskState};
use tokio_util::sync::CancellationToken;

use crate::control::propose::delete;
use crate::control::Proposer;
use crate::reconcile::run_writer;
use crate::store::{State, Store};

/// The default number of terminated tasks kept per slot.
pub const DEFAULT_TASK_HISTORY: i64 = 5;

/// Runs the task reaper until `stop` is cancelled.
pub async fn run(store: Store, proposer: Proposer, stop: CancellationToken) {
    run_writer("taskreaper", store, proposer, stop, |state, _| (reap(state), None)).await
}

/// Done with: stopped, never placed, or on a node that is gone or down (it
/// cannot report; if it comes back, its agent removes containers of tasks it
/// is no longer assigned).
fn finished(state: &State, t: &Task) -> bool {
    t.state().is_terminal()
        || t.node_id.is_empty()
        || t.state() < TaskState::Assigned
        || state
            .nodes
            .get(&t.node_id)
            .is_none_or(|n| n.status.as_ref().map(|s| s.state()) == Some(shoal_proto::NodeState::Down))
}

/// One pass: the deletes to make.
pub fn reap(state: &State) -> Vec<StoreAction> {
    let limit = state
        .cluster()
        .and_then(|c| c.spec.as_ref())
        .and_then(|s| s.orchestration.as_ref())
        .map(|o| o.task_history_retention_limit)
        .unwrap_or(DEFAULT_TASK_HISTORY);
    let mut actions = Vec::new();
    let mut slots: BTreeMap<(&str, u64), Vec<&Task>> = BTreeMap::new();
    for t in state.tasks.values() {
        // An attached standalone container whose node left the swarm is gone with it.
        if t.attachment.is_some() && !state.nodes.contains_key(&t.node_id) {
            actions.push(delete(t.clone()));
            continue;
        }
        if t.desired_state() >= TaskState::Remove && finished(state, t) {
            actions.push(delete(t.clone()));
        } else if t.desired_state() > TaskState::Running && t.state().is_terminal() {
            slots.entry((t.service_id.as_str(), t.slot)).or_default().push(t);
        }
    }
    if limit >= 0 {
        for (_, mut old) in slots {
            if old.len() as i64 > limit {
                old.sort_by_key(|t| t.meta.as_ref().map(|m| m.created_at).unwrap_or(0));
                let extra = old.len() - limit as usize;
                actions.extend(old.into_iter().take(extra).map(|t| delete(t.clone())));
            }
        }
    }
    actions
}
