//! shoal's managers: the replicated state of the cluster and the control
//! loops that act on it.
//!
//! - [`store`]: the in-memory objects, changed only by applying raft entries;
//! - [`raft`]: openraft with a redb log, the state machine and the transport;
//! - [`control`]: the operations users ask for (validated, version-checked,
//!   committed as one raft entry each);
//! - leader-only loops that each watch the store and write back to it, never
//!   calling each other: [`orchestrator`] (replicated services, restarts),
//!   [`allocator`] (VNIs, virtual IPs, task addresses), [`scheduler`]
//!   (placement), [`dispatcher`] (agents' sessions and their network maps)
//!   and the [`orchestrator::taskreaper`].
//!
//! Architecture invariant: nothing here touches the local machine's
//! containers or network; that is the agent's job.

pub mod allocator;
pub mod ca;
pub mod control;
pub mod dispatcher;
pub mod identity;
pub mod ipam;
pub mod leadership;
pub mod listener;
pub mod member;
pub mod orchestrator;
pub mod raft;
pub mod reconcile;
pub mod scheduler;
pub mod store;

pub use member::{Bootstrap, Manager, ManagerConfig, RaftTuning};
