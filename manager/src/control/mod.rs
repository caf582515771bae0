//! Control operations: what users ask of the cluster (create, update and
//! remove services, networks, secrets and configs; deploy and remove whole
//! stacks). Each one validates its
//! input, reads the store, and commits its change as ONE raft entry, carrying
//! the versions it read so that a concurrent change fails it cleanly.

mod cluster;
pub mod limits;
pub(crate) mod network;
mod node;
mod ports;
pub(crate) mod propose;
mod secret;
mod service;
mod stack;

pub use cluster::Rotate;
pub use network::{check_endpoint_name, ENCRYPTED_OPTION, OVERLAY, VNI_OPTION};
pub use propose::{LeaderOp, Proposer, WriteError};
pub use secret::FileObject;
pub use service::validate_service_spec;
pub use stack::{StackChange, StackDeployResult, StackObjectChange, StackRemoveResult, StackSpec};

use crate::store::{Store, StoreError};

/// Why a control operation failed. The HTTP API maps these onto 400, 404,
/// 409 and 503.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => ControlError::NotFound(e.to_string()),
            StoreError::Ambiguous { .. } | StoreError::Invalid(_) => ControlError::InvalidArgument(e.to_string()),
            StoreError::AlreadyExists { .. } | StoreError::VersionConflict { .. } => {
                ControlError::Conflict(e.to_string())
            }
        }
    }
}

impl From<WriteError> for ControlError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Rejected(s) => s.into(),
            WriteError::Refused(m) => ControlError::InvalidArgument(m),
            WriteError::NoQuorum { .. }
            | WriteError::NotLeader
            | WriteError::Unavailable(_)
            | WriteError::NoSpace(_) => ControlError::Unavailable(e.to_string()),
        }
    }
}

/// The control API over one manager's store and raft.
#[derive(Clone)]
pub struct Control {
    store: Store,
    proposer: Proposer,
}

impl Control {
    pub fn new(store: Store, proposer: Proposer) -> Control {
        Control { store, proposer }
    }

    /// The store this manager serves reads from.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Builds a batch from the current store and commits it; when another
    /// writer changed one of the objects in between (a task's status, say),
    /// builds it again from the newer state. Only for operations whose
    /// versions come from the store, not from the user.
    async fn commit_fresh<T>(
        &self,
        mut build: impl FnMut(&crate::store::State) -> Result<(Vec<shoal_proto::StoreAction>, T), ControlError>,
    ) -> Result<T, ControlError> {
        let mut attempts = 0;
        loop {
            let (actions, out) = build(&self.store.read())?;
            if actions.is_empty() {
                return Ok(out);
            }
            match self.proposer.propose(actions).await {
                Ok(_) => return Ok(out),
                Err(WriteError::Rejected(StoreError::VersionConflict { .. })) if attempts < 10 => attempts += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }
}
