//! Consensus: openraft with a redb-backed log and vote store, a state machine
//! that applies [`StoreBatch`]es to the [`Store`](crate::store::Store), and a
//! tonic transport between managers.

// openraft's StorageError is large and is the error type its traits require.
#![allow(clippy::result_large_err)]

pub mod health;
pub mod log_store;
pub mod network;
pub mod seal;
pub mod state_machine;
pub mod wal;

use std::io::Cursor;

use serde::{Deserialize, Serialize};
use shoal_proto::RaftWrite;

use crate::store::StoreError;

openraft::declare_raft_types!(
    /// shoal's raft types: entries carry the store batches of one or more writes.
    pub TypeConfig:
        D = RaftWrite,
        R = WriteResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// What applying one entry gave: the store's verdict on each of its batches.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriteResult(pub Vec<Result<(), StoreError>>);

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

#[cfg(test)]
mod tests {
    use openraft::storage::{RaftLogStorage, RaftStateMachine};
    use openraft::testing::{log_id, StoreBuilder, Suite};
    use openraft::{EntryPayload, RaftLogReader};

    use super::log_store::LogStore;
    use super::state_machine::StateMachine;
    use super::*;
    use crate::store::Store;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
            let io = |e: std::io::Error| io_error(openraft::ErrorSubject::Store, openraft::ErrorVerb::Write, e);
            let dir = tempfile::tempdir().map_err(io)?;
            let (log, _closed) = LogStore::open(&dir.path().join("raft.redb"), Default::default())
                .map_err(|e| io(std::io::Error::other(e)))?;
            let sm = StateMachine::open(Store::new(), &log)?;
            Ok((dir, log, sm))
        }
    }

    /// openraft's own conformance suite for log and state machine storage.
    #[test]
    fn storage_passes_the_openraft_suite() {
        Suite::test_all(Builder).expect("storage suite");
    }

    fn entry(index: u64) -> Entry {
        Entry { log_id: log_id(1, 1, index), payload: EntryPayload::Normal(RaftWrite::default()) }
    }

    async fn append(log: &mut LogStore, entries: Vec<Entry>) {
        log.append_entries(entries).expect("append");
    }

    /// More entries than stay in memory: reads that span the disk and
    /// memory see every entry in order, before and after a reopen, and a
    /// truncation and a purge reach the disk.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn entries_read_back_across_memory_disk_and_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.redb");
        let n = 10_000u64;
        {
            let (mut log, closed) = LogStore::open(&path, Default::default()).expect("open");
            for chunk in (0..=n).collect::<Vec<_>>().chunks(700) {
                append(&mut log, chunk.iter().map(|i| entry(*i)).collect()).await;
            }
            let early = log.try_get_log_entries(0..3).await.expect("read");
            assert_eq!(early.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), vec![0, 1, 2]);
            let all = log.try_get_log_entries(1..=n).await.expect("read");
            assert_eq!(all.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), (1..=n).collect::<Vec<_>>());
            let some = log.try_get_log_entries(5000..5010).await.expect("read");
            assert_eq!(some.first().map(|e| e.log_id.index), Some(5000));
            assert_eq!(some.len(), 10);
            log.truncate(log_id(1, 1, 9001)).await.expect("truncate");
            log.purge(log_id(1, 1, 100)).await.expect("purge");
            let state = log.get_log_state().await.expect("state");
            assert_eq!(state.last_log_id.map(|l| l.index), Some(9000));
            drop(log);
            closed.await.expect("closed");
        }
        let (mut log, _closed) = LogStore::open(&path, Default::default()).expect("reopen");
        let state = log.get_log_state().await.expect("state");
        assert_eq!(state.last_log_id.map(|l| l.index), Some(9000));
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(100));
        let all = log.try_get_log_entries(101..=9000).await.expect("read");
        assert_eq!(all.len(), 8900);
        assert!(all.windows(2).all(|w| w[1].log_id.index == w[0].log_id.index + 1));
        assert!(log.try_get_log_entries(9001..9010).await.expect("read").is_empty());
    }

    /// A database written before entries were postcard still reads: its
    /// JSON entries come back as they were.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn json_entries_of_older_databases_still_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.redb");
        {
            let db = redb::Database::create(&path).expect("create");
            let tx = db.begin_write().expect("tx");
            {
                let mut t = tx.open_table(redb::TableDefinition::<u64, &[u8]>::new("logs")).expect("table");
                // The shape entries had then: one batch as the payload.
                for i in 1..=3u64 {
                    let old = serde_json::json!({
                        "log_id": log_id(1, 1, i),
                        "payload": { "Normal": { "actions": [], "timestamp": i } },
                    });
                    t.insert(i, serde_json::to_vec(&old).expect("json").as_slice()).expect("insert");
                }
            }
            tx.commit().expect("commit");
        }
        let (mut log, _closed) = LogStore::open(&path, Default::default()).expect("open");
        append(&mut log, vec![entry(4)]).await;
        let all = log.try_get_log_entries(1..5).await.expect("read");
        assert_eq!(all.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        match &all[1].payload {
            EntryPayload::Normal(w) => assert_eq!(w.batches.iter().map(|b| b.timestamp).collect::<Vec<_>>(), vec![2]),
            other => panic!("entry 2 read back as {other:?}"),
        }
        let mut sm = StateMachine::open(Store::new(), &log).expect("state machine");
        assert!(sm.applied_state().await.expect("applied").0.is_none());
    }

    /// An append that finds the disk full (half written) is not an error
    /// raft sees: it waits for space, says so meanwhile, and the log is
    /// whole once it is through, also after a reopen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_append_without_space_waits_for_it_and_leaves_a_whole_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.redb");
        let (mut log, closed) = LogStore::open(&path, Default::default()).expect("open");
        append(&mut log, (0..5).map(entry).collect()).await;
        log.wal().fail_writes = 3;
        let health = log.health();
        let watching = std::thread::spawn(move || {
            let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::time::Instant::now() < until {
                if let Some(p) = health.problem() {
                    return Some(p);
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            None
        });
        log.write_and_flush((5..8).map(entry).collect()).expect("the append waited for space");
        let seen = watching.join().expect("the watcher");
        assert!(seen.as_deref().is_some_and(|p| p.contains("out of space")), "{seen:?}");
        assert!(log.health().problem().is_none(), "the problem outlived the append");
        let all = log.try_get_log_entries(0..8).await.expect("read");
        assert_eq!(all.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), (0..8).collect::<Vec<_>>());
        drop(log);
        closed.await.expect("closed");
        let (mut log, _closed) = LogStore::open(&path, Default::default()).expect("reopen");
        let all = log.try_get_log_entries(0..100).await.expect("read");
        assert_eq!(all.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), (0..8).collect::<Vec<_>>());
    }

    fn entry_of(term: u64, node: u64, index: u64) -> Entry {
        Entry { log_id: log_id(term, node, index), payload: EntryPayload::Normal(RaftWrite::default()) }
    }

    /// A leader's own entries are flushed by the background thread; anyone
    /// else's before the append returns; the commit index sent to followers
    /// never passes what is flushed; a truncation takes the flushed mark back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_leaders_own_appends_flush_in_the_background_and_hold_back_the_commit_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.redb");
        let (log, closed) = LogStore::open(&path, Default::default()).expect("open");
        let mut log = log.leading_as(1).expect("flusher");
        let mut durable = log.durable().expect("leading");
        let gate = log.commit_gate();

        log.save_vote(&Vote::new_committed(2, 1)).await.expect("vote");
        log.write_and_flush(vec![entry_of(2, 1, 1), entry_of(2, 1, 2)]).expect("append");
        let flushed = durable.wait_for(|d| d.log_id == Some(log_id(2, 1, 2)));
        tokio::time::timeout(std::time::Duration::from_secs(5), flushed).await.expect("flushed in time").expect("open");

        // Now a follower of node 2: flushed before the append returns.
        log.save_vote(&Vote::new_committed(3, 2)).await.expect("vote");
        log.write_and_flush(vec![entry_of(3, 2, 3)]).expect("append");
        assert_eq!(durable.borrow().log_id, Some(log_id(3, 2, 3)));

        assert!(!gate.take_held_back());
        assert_eq!(gate.commit_to_send(Some(log_id(3, 2, 3))), Some(log_id(3, 2, 3)));
        assert!(!gate.take_held_back());
        let ahead = gate.commit_to_send(Some(log_id(3, 2, 9)));
        assert_eq!(ahead, Some(log_id(3, 2, 3)), "held back to the flushed entry");
        assert!(gate.take_held_back());
        assert!(!gate.take_held_back());

        log.truncate(log_id(3, 2, 3)).await.expect("truncate");
        assert_eq!(durable.borrow().log_id, Some(log_id(2, 1, 2)));
        assert_eq!(log.get_log_state().await.expect("state").last_log_id, Some(log_id(2, 1, 2)));

        // A commit index saved past the log's end (the leader's unflushed
        // entries lost to a power cut) reads back as the log's end.
        log.save_committed(Some(log_id(3, 2, 7))).await.expect("committed");
        drop((log, gate));
        closed.await.expect("closed");
        let (mut log, _closed) = LogStore::open(&path, Default::default()).expect("reopen");
        assert_eq!(log.read_committed().await.expect("committed"), Some(log_id(2, 1, 2)));
    }
}
