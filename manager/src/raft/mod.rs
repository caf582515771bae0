//! Consensus: openraft with a redb-backed log and vote store, a state machine
//! that applies [`StoreBatch`]es to the [`Store`](crate::store::Store), and a
//! tonic transport between managers.

// openraft's StorageError is large and is the error type its traits require.
#![allow(clippy::result_large_err)]

pub mod log_store;
pub mod network;
pub mod state_machine;

use std::io::Cursor;

use serde::{Deserialize, Serialize};
use shoal_proto::StoreBatch;

use crate::store::StoreError;

openraft::declare_raft_types!(
    /// shoal's raft types: entries carry store batches.
    pub TypeConfig:
        D = StoreBatch,
        R = WriteResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// What applying one entry gave: the store's verdict on the batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriteResult(pub Result<(), StoreError>);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<u64>;
pub type Vote = openraft::Vote<u64>;
pub type StorageError = openraft::StorageError<u64>;

fn io_error(
    subject: openraft::ErrorSubject<u64>,
    verb: openraft::ErrorVerb,
    e: impl std::error::Error + 'static,
) -> StorageError {
    openraft::StorageIOError::new(subject, verb, openraft::AnyError::new(&e)).into()
}
