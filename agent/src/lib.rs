//! The node agent: this node's session with the managers.
//!
//! The agent dials a manager's dispatcher (agents dial managers, never the
//! reverse), registers its node, and receives the full set of tasks assigned
//! to it. A [`worker`] per task drives that task's container through the
//! runtime and reports each status change back; the [`reporter`] delivers
//! reports in order and retries them across reconnects. `files` writes the
//! secrets and configs a task uses to a per-task tmpfs, and `health` runs
//! the tasks' health checks. [`network`] keeps the node's network map and
//! has the mesh and its resolver follow it, and gives each task's container
//! its sandbox.
//!
//! Architecture invariant: the agent decides no placement and keeps no state
//! the managers own; after a restart it re-adopts its running containers from
//! the runtime and carries on from the assignments it is sent. It stops when
//! its [`tokio_util::sync::CancellationToken`] is cancelled, once its workers
//! have ended, leaving the containers running.

mod files;
mod health;
pub mod network;
mod reporter;
mod session;
mod worker;

pub use session::{attach_network, connect, detach_network, run, AgentConfig, Told};

/// Labels every task container carries, as Docker's swarm containers do.
pub mod labels {
    pub const SERVICE_ID: &str = "com.docker.swarm.service.id";
    pub const SERVICE_NAME: &str = "com.docker.swarm.service.name";
    pub const TASK_ID: &str = "com.docker.swarm.task.id";
    pub const TASK_NAME: &str = "com.docker.swarm.task.name";
    pub const NODE_ID: &str = "com.docker.swarm.node.id";
}
