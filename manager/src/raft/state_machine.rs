//! The raft state machine: applies committed entries to the [`Store`] and
//! builds and installs snapshots of the whole store (prost-encoded).
//!
//! The latest snapshot is persisted in the raft database, so a restarted
//! manager restores it and replays only the log after it.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StoredMembership};
use serde::{Deserialize, Serialize};

use super::log_store::{Db, LogStore, KEY_SNAPSHOT_DATA, KEY_SNAPSHOT_META};
use super::{io_error, Entry, LogId, StorageError, TypeConfig, WriteResult};
use crate::store::Store;

type Membership = StoredMembership<u64, openraft::BasicNode>;
type Meta = SnapshotMeta<u64, openraft::BasicNode>;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Applied {
    last_applied: Option<LogId>,
    membership: Membership,
}

/// The state machine over the store. Clones share everything.
#[derive(Clone)]
pub struct StateMachine {
    store: Store,
    applied: Arc<std::sync::Mutex<Applied>>,
    db: Arc<Db>,
}

impl StateMachine {
    /// Creates the state machine, restoring the persisted snapshot if any.
    pub fn open(store: Store, log: &LogStore) -> Result<StateMachine, StorageError> {
        let db = log.database();
        let mut applied = Applied::default();
        let meta = LogStore::get_meta(&db, KEY_SNAPSHOT_META)
            .map_err(|e| io_error(ErrorSubject::StateMachine, ErrorVerb::Read, e))?;
        let data = LogStore::get_meta(&db, KEY_SNAPSHOT_DATA)
            .map_err(|e| io_error(ErrorSubject::StateMachine, ErrorVerb::Read, e))?;
        if let (Some(meta), Some(data)) = (meta, data) {
            let meta: Meta =
                serde_json::from_slice(&meta).map_err(|e| io_error(ErrorSubject::StateMachine, ErrorVerb::Read, e))?;
            store
                .restore_snapshot(meta.last_log_id.map(|l| l.index).unwrap_or(0), &data)
                .map_err(|e| io_error(ErrorSubject::StateMachine, ErrorVerb::Read, e))?;
            applied = Applied { last_applied: meta.last_log_id, membership: meta.last_membership.clone() };
        }
        Ok(StateMachine { store, applied: Arc::new(std::sync::Mutex::new(applied)), db })
    }

    fn applied(&self) -> std::sync::MutexGuard<'_, Applied> {
        self.applied.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn persist_snapshot(&self, meta: &Meta, data: Vec<u8>) -> Result<(), StorageError> {
        let meta_bytes =
            serde_json::to_vec(meta).map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            LogStore::put_meta(&db, &[(KEY_SNAPSHOT_META, &meta_bytes), (KEY_SNAPSHOT_DATA, &data)], true)
        })
        .await
        .map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?
        .map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))
    }

    fn load_snapshot(&self) -> Result<Option<(Meta, Vec<u8>)>, StorageError> {
        let read = |e: redb::Error| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, e);
        let meta = LogStore::get_meta(&self.db, KEY_SNAPSHOT_META).map_err(read)?;
        let data = LogStore::get_meta(&self.db, KEY_SNAPSHOT_DATA).map_err(read)?;
        match (meta, data) {
            (Some(m), Some(d)) => {
                let m: Meta = serde_json::from_slice(&m)
                    .map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
                Ok(Some((m, d)))
            }
            _ => Ok(None),
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        // Read the store and the applied position together: apply() holds
        // the applied lock while it changes the store.
        let (data, applied) = {
            let applied = self.applied();
            (self.store.encode_snapshot(), applied.clone())
        };
        let snapshot_id = match applied.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, shoal_proto::now_ns()),
            None => format!("0-0-{}", shoal_proto::now_ns()),
        };
        let meta = Meta { last_log_id: applied.last_applied, last_membership: applied.membership, snapshot_id };
        self.persist_snapshot(&meta, data.clone()).await?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        let a = self.applied();
        Ok((a.last_applied, a.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<WriteResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut results = Vec::new();
        for entry in entries {
            let mut applied = self.applied();
            applied.last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => {
                    self.store.mark_applied(entry.log_id.index);
                    Vec::new()
                }
                EntryPayload::Normal(write) => self.store.apply_many(entry.log_id.index, &write.batches),
                EntryPayload::Membership(m) => {
                    applied.membership = StoredMembership::new(Some(entry.log_id), m);
                    self.store.mark_applied(entry.log_id.index);
                    Vec::new()
                }
            };
            results.push(WriteResult(result));
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(&mut self, meta: &Meta, snapshot: Box<Cursor<Vec<u8>>>) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        {
            let mut applied = self.applied();
            self.store
                .restore_snapshot(meta.last_log_id.map(|l| l.index).unwrap_or(0), &data)
                .map_err(|e| io_error(ErrorSubject::Snapshot(Some(meta.signature())), ErrorVerb::Read, e))?;
            *applied = Applied { last_applied: meta.last_log_id, membership: meta.last_membership.clone() };
        }
        self.persist_snapshot(meta, data).await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.load_snapshot()?.map(|(meta, data)| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}
