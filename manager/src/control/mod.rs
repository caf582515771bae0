//! Control operations: what users ask of the cluster (create, update and
//! remove services; deploy and remove whole stacks). Each one validates its
//! input, reads the store, and commits its change as ONE raft entry, carrying
//! the versions it read so that a concurrent change fails it cleanly.

mod node;
pub(crate) mod propose;
mod service;
mod stack;

pub use propose::{Proposer, WriteError};
pub use service::validate_service_spec;
pub use stack::{StackChange, StackDeployResult};

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
            WriteError::NotLeader(_) | WriteError::Unavailable(_) => ControlError::Unavailable(e.to_string()),
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
}
