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

use super::log_store::{Db, Durable, LogStore, KEY_SNAPSHOT_DATA, KEY_SNAPSHOT_META, KEY_SNAPSHOT_SEALED};
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
    /// How far the log is on disk: an entry is applied only once it is
    /// (None: the log flushes every append before it returns).
    durable: Option<tokio::sync::watch::Receiver<Durable>>,
}

impl StateMachine {
    /// Creates the state machine, restoring the persisted snapshot if any.
    pub fn open(store: Store, log: &LogStore) -> Result<StateMachine, StorageError> {
        let db = log.database();
        let mut applied = Applied::default();
        if let Some((meta, data)) = read_snapshot(&db)? {
            store
                .restore_snapshot(meta.last_log_id.map(|l| l.index).unwrap_or(0), &data)
                .map_err(|e| io_error(ErrorSubject::StateMachine, ErrorVerb::Read, e))?;
            applied = Applied { last_applied: meta.last_log_id, membership: meta.last_membership.clone() };
        }
        Ok(StateMachine { store, applied: Arc::new(std::sync::Mutex::new(applied)), db, durable: log.durable() })
    }

    /// Waits until the log is on disk up to `index`. A leader counts its own
    /// entries before they are flushed (see `log_store`): applying one only
    /// once it is flushed is what keeps any client from hearing of a write
    /// that is on fewer than a majority of disks.
    async fn flushed(&mut self, index: u64) -> Result<(), StorageError> {
        let failed = |e: String| io_error(ErrorSubject::Logs, ErrorVerb::Write, std::io::Error::other(e));
        let Some(rx) = self.durable.as_mut() else { return Ok(()) };
        loop {
            {
                let durable = rx.borrow_and_update();
                if let Some(e) = &durable.failed {
                    return Err(failed(e.clone()));
                }
                if durable.log_id.is_some_and(|l| l.index >= index) {
                    return Ok(());
                }
            }
            rx.changed().await.map_err(|_| failed("the raft log was closed".into()))?;
        }
    }

    fn applied(&self) -> std::sync::MutexGuard<'_, Applied> {
        self.applied.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn persist_snapshot(&self, meta: &Meta, data: Vec<u8>) -> Result<(), StorageError> {
        let meta_bytes =
            serde_json::to_vec(meta).map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let sealed = db.sealer.seal_snapshot(&data).map_err(|e| redb::Error::Io(std::io::Error::other(e)))?;
            let items: [(&str, &[u8]); 3] =
                [(KEY_SNAPSHOT_META, &meta_bytes), (KEY_SNAPSHOT_SEALED, &sealed), (KEY_SNAPSHOT_DATA, &[])];
            db.put(&items, true)
        })
        .await
        .map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?
        .map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))
    }

    fn load_snapshot(&self) -> Result<Option<(Meta, Vec<u8>)>, StorageError> {
        read_snapshot(&self.db)
    }
}

/// The persisted snapshot: sealed, or as written before sealing.
fn read_snapshot(db: &Db) -> Result<Option<(Meta, Vec<u8>)>, StorageError> {
    let read = |e: &dyn std::fmt::Display| {
        io_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, std::io::Error::other(e.to_string()))
    };
    let Some(meta) = db.get(KEY_SNAPSHOT_META).map_err(|e| read(&e))? else { return Ok(None) };
    let meta: Meta = serde_json::from_slice(&meta).map_err(|e| read(&e))?;
    let data = match db.get(KEY_SNAPSHOT_SEALED).map_err(|e| read(&e))? {
        Some(sealed) if !sealed.is_empty() => db.sealer.open_snapshot(&sealed).map_err(|e| read(&e))?,
        _ => match db.get(KEY_SNAPSHOT_DATA).map_err(|e| read(&e))? {
            Some(plain) => plain,
            None => return Ok(None),
        },
    };
    Ok(Some((meta, data)))
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
        let entries: Vec<Entry> = entries.into_iter().collect();
        if let Some(last) = entries.last() {
            self.flushed(last.log_id.index).await?;
        }
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

#[cfg(test)]
mod tests {
    use openraft::testing::log_id;
    use shoal_proto::RaftWrite;

    use super::*;

    /// An entry is applied (and so answered) only once the log has it on
    /// disk; a failed flush fails the apply instead.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn entries_are_applied_only_once_flushed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, _closed) = LogStore::open(&dir.path().join("raft.redb"), Default::default()).expect("open");
        let mut sm = StateMachine::open(Store::new(), &log).expect("state machine");
        let (tx, rx) = tokio::sync::watch::channel(Durable { log_id: Some(log_id(1, 1, 4)), failed: None });
        sm.durable = Some(rx);
        let entry = |i| Entry { log_id: log_id(1, 1, i), payload: EntryPayload::Normal(RaftWrite::default()) };

        let mut applying = {
            let mut sm = sm.clone();
            tokio::spawn(async move { sm.apply(vec![entry(5), entry(6)]).await })
        };
        let waited = tokio::time::timeout(std::time::Duration::from_millis(100), &mut applying).await;
        assert!(waited.is_err(), "applied before the log was flushed");
        assert!(sm.applied_state().await.expect("applied").0.is_none());
        tx.send_replace(Durable { log_id: Some(log_id(1, 1, 6)), failed: None });
        let applied = tokio::time::timeout(std::time::Duration::from_secs(5), applying).await.expect("applied in time");
        assert_eq!(applied.expect("task").expect("apply").len(), 2);
        assert_eq!(sm.applied_state().await.expect("applied").0, Some(log_id(1, 1, 6)));

        tx.send_replace(Durable { log_id: Some(log_id(1, 1, 6)), failed: Some("disk gone".into()) });
        assert!(sm.apply(vec![entry(7)]).await.is_err());
    }
}
