//! Proposing store batches to raft and turning the outcome into errors a
//! caller can act on.

use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use shoal_proto::store_action::{Kind, Object};
use shoal_proto::{StoreAction, StoreBatch};

use crate::raft::Raft;
use crate::store::StoreError;

/// Why a proposed batch did not apply.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Committed, but the store refused it (version conflict, missing object…).
    #[error(transparent)]
    Rejected(StoreError),
    #[error("this manager is not the raft leader (leader: {0}); retry on the leader")]
    NotLeader(String),
    #[error("the raft write did not complete: {0}")]
    Unavailable(String),
}

/// Proposes batches on this manager's raft node.
#[derive(Clone)]
pub struct Proposer {
    raft: Raft,
}

/// How long a write may wait for commit before it is reported unavailable.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

impl Proposer {
    pub fn new(raft: Raft) -> Proposer {
        Proposer { raft }
    }

    /// Commits `actions` as one raft entry; returns its log index once applied.
    pub async fn propose(&self, actions: Vec<StoreAction>) -> Result<u64, WriteError> {
        let batch = StoreBatch { actions, timestamp: shoal_proto::now_ns() };
        let write = self.raft.client_write(batch);
        let response = match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Err(_) => {
                return Err(WriteError::Unavailable(format!(
                    "no commit within {}s: is a quorum of managers reachable?",
                    WRITE_TIMEOUT.as_secs()
                )))
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                let leader = f
                    .leader_node
                    .map(|n| n.addr)
                    .or(f.leader_id.map(|id| format!("raft id {id}")))
                    .unwrap_or_else(|| "unknown".into());
                return Err(WriteError::NotLeader(leader));
            }
            Ok(Err(e)) => return Err(WriteError::Unavailable(e.to_string())),
            Ok(Ok(r)) => r,
        };
        response.data.0.map_err(WriteError::Rejected)?;
        Ok(response.log_id.index)
    }
}

/// A create action for `object`.
pub fn create(object: impl Into<Object>) -> StoreAction {
    StoreAction { kind: Kind::Create as i32, object: Some(object.into()) }
}

/// An update action for `object`, checked against the version it carries.
pub fn update(object: impl Into<Object>) -> StoreAction {
    StoreAction { kind: Kind::Update as i32, object: Some(object.into()) }
}

/// A delete action for `object`, checked against the version it carries.
pub fn delete(object: impl Into<Object>) -> StoreAction {
    StoreAction { kind: Kind::Delete as i32, object: Some(object.into()) }
}
