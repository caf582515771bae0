//! The scheduler: assigns each unassigned task to a node, once the
//! allocator has given it its addresses (state `pending`).
//!
//! Filters keep the nodes that can take the task (ready and active); the
//! ranking spreads a service: fewest tasks of the same service first, then
//! fewest tasks overall. A task with no suitable node stays `pending` with an
//! error that says why.

pub mod filter;

use std::collections::HashMap;

use shoal_proto::{StoreAction, TaskState};
use tokio_util::sync::CancellationToken;

use crate::control::propose::update;
use crate::control::Proposer;
use crate::reconcile::run_writer;
use crate::store::{State, Store};

/// Runs the scheduler until `stop` is cancelled.
pub async fn run(store: Store, proposer: Proposer, stop: CancellationToken) {
    run_writer("scheduler", store, proposer, stop, |state, now| (schedule(state, now), None)).await
}

/// One pass: assignments (or `pending` explanations) for unassigned tasks.
pub fn schedule(state: &State, now: i64) -> Vec<StoreAction> {
    let mut total: HashMap<&str, usize> = HashMap::new();
    let mut per_service: HashMap<(&str, &str), usize> = HashMap::new();
    for t in state.tasks.values() {
        if !t.node_id.is_empty() && t.desired_state() <= TaskState::Running && !t.state().is_terminal() {
            *total.entry(t.node_id.as_str()).or_default() += 1;
            *per_service.entry((t.node_id.as_str(), t.service_id.as_str())).or_default() += 1;
        }
    }
    let mut placed: HashMap<(String, String), usize> = HashMap::new();
    let mut placed_total: HashMap<String, usize> = HashMap::new();
    let mut actions = Vec::new();
    for t in state.tasks.values() {
        // Only tasks the allocator has given their addresses (`pending`).
        let waiting =
            t.node_id.is_empty() && t.state() == TaskState::Pending && t.desired_state() <= TaskState::Running;
        if !waiting {
            continue;
        }
        let verdict = filter::eligible_nodes(state, t);
        let best = verdict.nodes.iter().min_by_key(|n| {
            let svc = per_service.get(&(n.id.as_str(), t.service_id.as_str())).copied().unwrap_or(0)
                + placed.get(&(n.id.clone(), t.service_id.clone())).copied().unwrap_or(0);
            let all = total.get(n.id.as_str()).copied().unwrap_or(0) + placed_total.get(&n.id).copied().unwrap_or(0);
            (svc, all, n.id.clone())
        });
        let mut task = t.clone();
        let status = task.status.get_or_insert_default();
        match best {
            Some(node) => {
                *placed.entry((node.id.clone(), t.service_id.clone())).or_default() += 1;
                *placed_total.entry(node.id.clone()).or_default() += 1;
                task.node_id = node.id.clone();
                status.set_state(TaskState::Assigned);
                status.message = "scheduler assigned task to node".into();
                status.err.clear();
                status.timestamp = now;
                actions.push(update(task));
            }
            None => {
                let err = verdict.explain();
                if status.state() == TaskState::Pending && status.err == err {
                    continue;
                }
                status.set_state(TaskState::Pending);
                status.message = "pending task scheduling".into();
                status.err = err;
                status.timestamp = now;
                actions.push(update(task));
            }
        }
    }
    actions
}
