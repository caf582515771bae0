//! The raft log, vote, commit index and latest snapshot, kept in one redb
//! database (`<data-root>/raft/raft.redb`). Every write is a redb commit with
//! fsync; redb is blocking, so each operation runs on the blocking pool.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, RaftLogReader};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{io_error, Entry, LogId, StorageError, TypeConfig, Vote};

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "last_purged";
/// The latest snapshot, kept here too so that it survives a restart.
pub(crate) const KEY_SNAPSHOT_META: &str = "snapshot_meta";
pub(crate) const KEY_SNAPSHOT_DATA: &str = "snapshot_data";

/// The open database; tells whoever holds the [`Closed`] receiver once the
/// database is closed (its file lock released), after the last user let go.
pub struct Db {
    database: Option<Database>,
    closed: Option<tokio::sync::oneshot::Sender<()>>,
    /// The latest commit index (JSON), written durably when the database
    /// closes: `save_committed` writes it lazily while running.
    last_committed: std::sync::Mutex<Option<Vec<u8>>>,
}

impl std::ops::Deref for Db {
    type Target = Database;
    fn deref(&self) -> &Database {
        self.database.as_ref().expect("the database is only taken out in drop")
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let committed = self.last_committed.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let (Some(db), Some(bytes)) = (self.database.as_ref(), committed) {
            if let Err(e) = LogStore::put_meta(db, &[(KEY_COMMITTED, &bytes)], true) {
                tracing::warn!(error = %e, "saving the raft commit index at shutdown");
            }
        }
        drop(self.database.take());
        if let Some(tx) = self.closed.take() {
            let _ = tx.send(());
        }
    }
}

/// Resolves once the raft database is closed.
pub type Closed = tokio::sync::oneshot::Receiver<()>;

/// The redb-backed log store. Cheap to clone: clones share the database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Db>,
    /// When the commit index was last written (see `save_committed`).
    committed_saved: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

/// How often the commit index is written at most.
const COMMITTED_SAVE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

impl LogStore {
    /// Opens (or creates) the raft database at `path`.
    pub fn open(path: &Path) -> Result<(LogStore, Closed), redb::Error> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        tx.open_table(LOGS)?;
        tx.open_table(META)?;
        tx.commit()?;
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
        let db = Arc::new(Db { database: Some(db), closed: Some(closed_tx), last_committed: Default::default() });
        Ok((LogStore { db, committed_saved: Arc::default() }, closed_rx))
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StorageError> + Send + 'static,
    {
        let db = self.db.clone();
        // On the multi-threaded runtime the disk work runs in place (the
        // runtime moves this worker's other tasks elsewhere): no hand-off to a
        // blocking thread and back on every raft write.
        if tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
            return tokio::task::block_in_place(move || f(&db));
        }
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, e))?
    }

    pub(crate) fn get_meta(db: &Database, key: &str) -> Result<Option<Vec<u8>>, redb::Error> {
        let tx = db.begin_read()?;
        let table = tx.open_table(META)?;
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }

    pub(crate) fn put_meta(db: &Database, items: &[(&str, &[u8])], durable: bool) -> Result<(), redb::Error> {
        let mut tx = db.begin_write()?;
        if !durable {
            tx.set_durability(redb::Durability::None).map_err(redb::Error::from)?;
        }
        {
            let mut table = tx.open_table(META)?;
            for (k, v) in items {
                table.insert(*k, *v)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub(crate) fn database(&self) -> Arc<Db> {
        self.db.clone()
    }

    fn read_json<T: serde::de::DeserializeOwned>(
        db: &Database,
        key: &str,
        subject: ErrorSubject<u64>,
    ) -> Result<Option<T>, StorageError> {
        let Some(bytes) = Self::get_meta(db, key).map_err(|e| io_error(subject.clone(), ErrorVerb::Read, e))? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| io_error(subject, ErrorVerb::Read, e))
    }

    /// Writes `value` under `key`; a write that is not `durable` reaches the
    /// disk with the next durable one (log appends are durable).
    fn write_json<T: serde::Serialize>(
        db: &Database,
        key: &str,
        value: &T,
        subject: ErrorSubject<u64>,
        durable: bool,
    ) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(value).map_err(|e| io_error(subject.clone(), ErrorVerb::Write, e))?;
        Self::put_meta(db, &[(key, &bytes)], durable).map_err(|e| io_error(subject, ErrorVerb::Write, e))
    }
}

fn owned_bound(b: Bound<&u64>) -> Bound<u64> {
    match b {
        Bound::Included(x) => Bound::Included(*x),
        Bound::Excluded(x) => Bound::Excluded(*x),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let range = (owned_bound(range.start_bound()), owned_bound(range.end_bound()));
        self.blocking(move |db| {
            let read = |e: redb::Error| io_error(ErrorSubject::Logs, ErrorVerb::Read, e);
            let tx = db.begin_read().map_err(|e| read(e.into()))?;
            let table = tx.open_table(LOGS).map_err(|e| read(e.into()))?;
            let mut out = Vec::new();
            for item in table.range::<u64>(range).map_err(|e| read(e.into()))? {
                let (_, v) = item.map_err(|e| read(e.into()))?;
                let entry: Entry =
                    serde_json::from_slice(v.value()).map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
                out.push(entry);
            }
            Ok(out)
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        self.blocking(|db| {
            let last_purged: Option<LogId> = LogStore::read_json(db, KEY_PURGED, ErrorSubject::Store)?;
            let read = |e: redb::Error| io_error(ErrorSubject::Logs, ErrorVerb::Read, e);
            let tx = db.begin_read().map_err(|e| read(e.into()))?;
            let table = tx.open_table(LOGS).map_err(|e| read(e.into()))?;
            let last = match table.last().map_err(|e| read(e.into()))? {
                Some((_, v)) => {
                    let entry: Entry = serde_json::from_slice(v.value())
                        .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
                    Some(entry.log_id)
                }
                None => last_purged,
            };
            Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.blocking(move |db| LogStore::write_json(db, KEY_VOTE, &vote, ErrorSubject::Vote, true)).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.blocking(|db| LogStore::read_json(db, KEY_VOTE, ErrorSubject::Vote)).await
    }

    /// The commit index is a hint (a restarted member learns it again from the
    /// leader, or re-commits as leader), so it is not worth an fsync per write,
    /// nor a write more often than every 50 ms: it may lag, never lead. The
    /// latest one is written durably when the database closes, so a clean
    /// restart applies everything committed before it.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(&committed).map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
        *self.db.last_committed.lock().unwrap_or_else(|p| p.into_inner()) = Some(bytes);
        {
            let mut saved = self.committed_saved.lock().unwrap_or_else(|p| p.into_inner());
            if saved.is_some_and(|t| t.elapsed() < COMMITTED_SAVE_INTERVAL) {
                return Ok(());
            }
            *saved = Some(std::time::Instant::now());
        }
        self.blocking(move |db| LogStore::write_json(db, KEY_COMMITTED, &committed, ErrorSubject::Store, false)).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.blocking(|db| Ok(LogStore::read_json::<Option<LogId>>(db, KEY_COMMITTED, ErrorSubject::Store)?.flatten()))
            .await
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut encoded = Vec::new();
        for e in entries {
            let bytes = serde_json::to_vec(&e).map_err(|err| io_error(ErrorSubject::Logs, ErrorVerb::Write, err))?;
            encoded.push((e.log_id.index, bytes));
        }
        let result = self
            .blocking(move |db| {
                let write = |e: redb::Error| io_error(ErrorSubject::Logs, ErrorVerb::Write, e);
                let tx = db.begin_write().map_err(|e| write(e.into()))?;
                {
                    let mut table = tx.open_table(LOGS).map_err(|e| write(e.into()))?;
                    for (index, bytes) in &encoded {
                        table.insert(*index, bytes.as_slice()).map_err(|e| write(e.into()))?;
                    }
                }
                tx.commit().map_err(|e| write(e.into()))?;
                Ok(())
            })
            .await;
        match &result {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        result
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |db| {
            let write = |e: redb::Error| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e);
            let tx = db.begin_write().map_err(|e| write(e.into()))?;
            {
                let mut table = tx.open_table(LOGS).map_err(|e| write(e.into()))?;
                table.retain_in(log_id.index.., |_, _| false).map_err(|e| write(e.into()))?;
            }
            tx.commit().map_err(|e| write(e.into()))?;
            Ok(())
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |db| {
            let write = |e: redb::Error| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e);
            let bytes =
                serde_json::to_vec(&Some(log_id)).map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
            let tx = db.begin_write().map_err(|e| write(e.into()))?;
            {
                let mut meta = tx.open_table(META).map_err(|e| write(e.into()))?;
                meta.insert(KEY_PURGED, bytes.as_slice()).map_err(|e| write(e.into()))?;
                let mut table = tx.open_table(LOGS).map_err(|e| write(e.into()))?;
                table.retain_in(..=log_id.index, |_, _| false).map_err(|e| write(e.into()))?;
            }
            tx.commit().map_err(|e| write(e.into()))?;
            Ok(())
        })
        .await
    }
}
