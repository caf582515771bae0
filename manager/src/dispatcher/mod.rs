//! The dispatcher: the managers' end of every agent's session.
//!
//! An agent opens a `Session` (registering its node as ready), receives its
//! full assignment set whenever it changes, sends heartbeats, and reports
//! task status changes, which the dispatcher commits in batches. A node that
//! misses three heartbeats is marked `down` by [`run_liveness`]. Each
//! session also carries the node's network map ([`network_map`]): all of it
//! first, then what changed. Nodes attach their standalone containers to
//! attachable networks through it (`attach`). Sessions are served by the
//! leader only; elsewhere the RPCs answer `unavailable`.

mod attach;
pub mod network_map;
mod session;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_proto::{NodeState, TaskState};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::propose::update;
use crate::control::{Proposer, WriteError};
use crate::leadership::Leadership;
use crate::store::{Store, StoreError};

/// The heartbeat period when the cluster sets none (DESIGN: 2 s).
pub const DEFAULT_HEARTBEAT_PERIOD: Duration = Duration::from_secs(2);
/// Missed heartbeats before a node is marked down.
const GRACE_MULTIPLIER: u32 = 3;

/// The dispatcher's shared state. Cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    store: Store,
    proposer: Proposer,
    leadership: watch::Receiver<Leadership>,
    heartbeats: Arc<Mutex<HashMap<String, Instant>>>,
    /// This manager's raft member ID.
    raft_id: u64,
    /// Where each agent's session task is tracked, so that the manager
    /// waits for them when it stops.
    tasks: TaskTracker,
}

impl Dispatcher {
    /// A dispatcher that serves sessions while `leadership` says this
    /// manager leads, their tasks tracked by `tasks`.
    pub fn new(
        store: Store,
        proposer: Proposer,
        leadership: watch::Receiver<Leadership>,
        raft_id: u64,
        tasks: TaskTracker,
    ) -> Dispatcher {
        Dispatcher { store, proposer, leadership, heartbeats: Arc::default(), raft_id, tasks }
    }

    /// The cluster's heartbeat period.
    pub fn heartbeat_period(&self) -> Duration {
        let ns = self
            .store
            .read()
            .cluster()
            .and_then(|c| c.spec.as_ref())
            .and_then(|s| s.dispatcher.as_ref())
            .map(|d| d.heartbeat_period)
            .unwrap_or(0);
        if ns > 0 {
            Duration::from_nanos(ns as u64)
        } else {
            DEFAULT_HEARTBEAT_PERIOD
        }
    }

    /// The caller must present a certificate of this cluster for the node it
    /// speaks for.
    fn check_caller<T>(&self, request: &tonic::Request<T>, node_id: &str) -> Result<(), tonic::Status> {
        let Some(caller) = crate::ca::caller(request) else {
            return Err(tonic::Status::unauthenticated("a node certificate is required: join the swarm first"));
        };
        let cluster = self.store.read().cluster().map(|c| c.id.clone()).unwrap_or_default();
        if caller.cluster_id != cluster {
            return Err(tonic::Status::permission_denied("the certificate belongs to another swarm"));
        }
        if caller.node_id != node_id {
            return Err(tonic::Status::permission_denied(format!(
                "node {} cannot speak for node {node_id}",
                caller.node_id
            )));
        }
        if !self.store.read().nodes.contains_key(node_id) {
            return Err(tonic::Status::permission_denied(format!("node {node_id} was removed from the swarm")));
        }
        Ok(())
    }

    fn check_leader(&self) -> Result<(), tonic::Status> {
        if self.leadership.borrow().is_leader() {
            Ok(())
        } else {
            Err(tonic::Status::unavailable("this manager is not the leader; try another manager"))
        }
    }

    fn beat(&self, node_id: &str) {
        self.heartbeats.lock().unwrap_or_else(|p| p.into_inner()).insert(node_id.to_string(), Instant::now());
    }

    /// Applies status reports from `node_id`, retrying on version conflicts.
    /// A report never moves a task backwards, and only the task's own node
    /// may report on it.
    async fn apply_status_updates(
        &self,
        node_id: &str,
        updates: &[shoal_proto::TaskStatusUpdate],
    ) -> Result<(), tonic::Status> {
        if updates.len() > MAX_UPDATES {
            return Err(tonic::Status::invalid_argument(format!(
                "{} status updates in one report, more than {MAX_UPDATES}: send them in several",
                updates.len()
            )));
        }
        for _attempt in 0..5 {
            let actions: Vec<_> = {
                let state = self.store.read();
                updates
                    .iter()
                    .filter_map(|u| {
                        let task = state.tasks.get(&u.task_id)?;
                        let status = bounded(u.status.as_ref()?);
                        let status = &status;
                        if task.node_id != node_id || status.state() < task.state() {
                            return None;
                        }
                        if task.status.as_ref() == Some(status) {
                            return None;
                        }
                        let mut t = task.clone();
                        t.status = Some(status.clone());
                        Some(update(t))
                    })
                    .collect()
            };
            if actions.is_empty() {
                return Ok(());
            }
            match self.proposer.propose(actions).await {
                Ok(_) => return Ok(()),
                Err(WriteError::Rejected(StoreError::VersionConflict { .. })) => continue,
                Err(WriteError::Rejected(StoreError::NotFound { .. })) => continue,
                Err(e) => return Err(tonic::Status::unavailable(e.to_string())),
            }
        }
        Err(tonic::Status::aborted("task status updates kept conflicting; retry"))
    }
}

/// Marks nodes `down` when they miss three heartbeats, until `stop` (the
/// end of this term of leadership). Runs on the leader only; a new leader
/// gives every node a full grace period before judging it.
pub async fn run_liveness(dispatcher: Dispatcher, stop: CancellationToken) {
    let started = Instant::now();
    loop {
        let grace = dispatcher.heartbeat_period() * GRACE_MULTIPLIER;
        let actions: Vec<_> = {
            let state = dispatcher.store.read();
            let beats = dispatcher.heartbeats.lock().unwrap_or_else(|p| p.into_inner());
            state
                .nodes
                .values()
                .filter(|n| n.status.as_ref().map(|s| s.state()) == Some(NodeState::Ready))
                .filter(|n| beats.get(&n.id).copied().unwrap_or(started).elapsed() > grace)
                .map(|n| {
                    let silent = beats.get(&n.id).copied().unwrap_or(started).elapsed();
                    tracing::warn!(node = %n.id, ?silent, ?grace, "no heartbeat from the node: marking it down");
                    let mut n = n.clone();
                    let status = n.status.get_or_insert_default();
                    status.set_state(NodeState::Down);
                    status.message = "heartbeat failure".into();
                    update(n)
                })
                .collect()
        };
        if !actions.is_empty() {
            if let Err(e) = dispatcher.proposer.propose(actions).await {
                tracing::debug!(error = %e, "marking nodes down failed; retrying");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// The longest text a node may report in a field it describes itself with
/// (a hostname is at most 253 bytes), and in a task's status message.
const MAX_NAME_BYTES: usize = 255;
const MAX_MESSAGE_BYTES: usize = 4096;
/// The most status updates one report may carry.
const MAX_UPDATES: usize = 10_000;

/// Refuses a node description or address a node sends about itself that is
/// larger than any real one: it is stored, and replicated to every manager.
pub(crate) fn check_node_report(
    description: Option<&shoal_proto::NodeDescription>,
    addrs: &[&str],
) -> Result<(), tonic::Status> {
    let mut fields: Vec<(&str, &str)> = addrs.iter().map(|a| ("address", *a)).collect();
    if let Some(d) = description {
        fields.push(("hostname", &d.hostname));
        fields.push(("engine version", &d.engine_version));
        if let Some(p) = &d.platform {
            fields.push(("architecture", &p.architecture));
            fields.push(("operating system", &p.os));
        }
    }
    match fields.into_iter().find(|(_, v)| v.len() > MAX_NAME_BYTES) {
        Some((what, v)) => Err(tonic::Status::invalid_argument(format!(
            "the node's {what} is {} bytes long, more than {MAX_NAME_BYTES}",
            v.len()
        ))),
        None => Ok(()),
    }
}

/// Cuts `text` to at most `max` bytes, at a character boundary.
fn cut(text: &mut String, max: usize) {
    if text.len() > max {
        let mut at = max;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
    }
}

/// A status as a node reported it, its texts cut to a sane length (an
/// error chain from a container runtime can be long; the start says what
/// matters).
fn bounded(status: &shoal_proto::TaskStatus) -> shoal_proto::TaskStatus {
    let mut status = status.clone();
    cut(&mut status.message, MAX_MESSAGE_BYTES);
    cut(&mut status.err, MAX_MESSAGE_BYTES);
    if let Some(c) = status.container.as_mut() {
        cut(&mut c.container_id, MAX_NAME_BYTES);
    }
    status
}

/// True when a task on a node is something the node must act on: a
/// container to run. (An attachment of a standalone container runs nothing;
/// the node hears of it in its network map.)
pub(crate) fn assigned_to(task: &shoal_proto::Task, node_id: &str) -> bool {
    task.node_id == node_id && task.state() >= TaskState::Assigned && task.attachment.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_node_reports_is_bounded() {
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let status = shoal_proto::TaskStatus { message: long.clone(), err: long, ..Default::default() };
        let cut = bounded(&status);
        assert!(cut.message.len() <= MAX_MESSAGE_BYTES && cut.err.len() <= MAX_MESSAGE_BYTES);
        assert!(cut.message.starts_with("éé"));
        let d = shoal_proto::NodeDescription { hostname: "h".repeat(300), ..Default::default() };
        let err = check_node_report(Some(&d), &["10.0.0.1"]).expect_err("a 300-byte hostname");
        assert!(err.message().contains("hostname is 300 bytes"), "{}", err.message());
        let d = shoal_proto::NodeDescription { hostname: "n1".into(), ..Default::default() };
        check_node_report(Some(&d), &["10.0.0.1:2377"]).expect("a real description");
    }
}
