//! The raft state on disk: the log in append-only segment files (see
//! [`super::wal`], `<state>/raft.wal/`), the vote, commit index, purge point
//! and latest snapshot in a redb database (`<state>/raft.redb`).
//!
//! Each append is written and flushed in place on the calling thread: raft
//! waits for every append to be on disk before it goes on (openraft 0.9
//! awaits the flush), so handing the write to another thread would only add
//! two thread wake-ups to every write. Concurrent client writes are grouped
//! into one entry before they reach raft (see `control::propose`). The most
//! recent entries are also kept in memory, so that replication and the state
//! machine read them without decoding.
//!
//! Entries are stored as a format byte and postcard. Databases from before
//! the segment files held the log in redb (as JSON): it moves to the
//! segment files when such a database is opened.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, RaftLogReader};
use redb::{Database, ReadableDatabase, TableDefinition};

use super::wal::Wal;

use super::{io_error, Entry, LogId, StorageError, TypeConfig, Vote};

/// Where older databases kept the log.
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

/// The log store. Cheap to clone: clones share the database, the log and
/// the recent entries.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Db>,
    wal: Arc<Mutex<Wal>>,
    recent: Arc<Mutex<Recent>>,
    /// When the commit index was last written (see `save_committed`).
    committed_saved: Arc<Mutex<Option<std::time::Instant>>>,
}

/// How often the commit index is written at most.
const COMMITTED_SAVE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// How many of the latest entries stay in memory, and how many bytes of
/// them at most.
const RECENT_ENTRIES: usize = 4096;
const RECENT_BYTES: usize = 32 << 20;

/// Format byte of a postcard-encoded entry (a JSON entry starts with `{`).
const FORMAT_POSTCARD: u8 = 0xB1;

/// The latest entries, contiguous by index.
#[derive(Default)]
struct Recent {
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl Recent {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    /// Drops the oldest entries beyond the limits (all are on disk).
    fn evict(&mut self) {
        while self.entries.len() > RECENT_ENTRIES || self.bytes > RECENT_BYTES {
            match self.entries.pop_front() {
                Some((_, size)) => self.bytes -= size,
                None => break,
            }
        }
    }
}

fn wal_error(subject: ErrorSubject<u64>, verb: ErrorVerb) -> impl Fn(std::io::Error) -> StorageError {
    move |e| io_error(subject.clone(), verb, e)
}

impl LogStore {
    /// Opens (or creates) the raft database at `path` and the log next to
    /// it (`<path without extension>.wal/`).
    pub fn open(path: &Path) -> Result<(LogStore, Closed), redb::Error> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        tx.open_table(LOGS)?;
        tx.open_table(META)?;
        tx.commit()?;
        let purged: Option<LogId> = match Self::get_meta(&db, KEY_PURGED)? {
            Some(bytes) => serde_json::from_slice::<Option<LogId>>(&bytes)
                .map_err(|e| redb::Error::Io(std::io::Error::other(format!("the raft purge point: {e}"))))?,
            None => None,
        };
        let mut wal = Wal::open(&path.with_extension("wal"), purged.map(|l| l.index))?;
        Self::move_old_log(&db, &mut wal, purged.map_or(0, |l| l.index + 1))?;
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
        let db = Arc::new(Db { database: Some(db), closed: Some(closed_tx), last_committed: Default::default() });
        let store =
            LogStore { db, wal: Arc::new(Mutex::new(wal)), recent: Arc::default(), committed_saved: Arc::default() };
        Ok((store, closed_rx))
    }

    /// Moves a log kept in the database (before the segment files) to `wal`:
    /// its entries from index `from` on.
    fn move_old_log(db: &Database, wal: &mut Wal, from: u64) -> Result<(), redb::Error> {
        let old: Vec<(u64, Vec<u8>)> = {
            let tx = db.begin_read()?;
            let table = tx.open_table(LOGS)?;
            let mut old = Vec::new();
            for item in table.range(from..)? {
                let (k, v) = item?;
                old.push((k.value(), v.value().to_vec()));
            }
            old
        };
        if old.is_empty() {
            return Ok(());
        }
        if wal.last_index().is_none() {
            wal.append(&old)?;
        }
        let tx = db.begin_write()?;
        tx.open_table(LOGS)?.retain(|_, _| false)?;
        tx.commit()?;
        Ok(())
    }

    fn recent(&self) -> MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wal(&self) -> MutexGuard<'_, Wal> {
        self.wal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the database where blocking is allowed.
    async fn blocking<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StorageError> + Send + 'static,
    {
        let db = self.db.clone();
        if tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
            return tokio::task::block_in_place(move || f(&db));
        }
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, e))?
    }

    /// Writes `entries` to disk and keeps them in memory.
    pub(crate) fn append_entries(&self, entries: impl IntoIterator<Item = Entry>) -> Result<(), StorageError> {
        let mut bytes = Vec::new();
        let mut kept = Vec::new();
        for e in entries {
            let encoded = encode_entry(&e)?;
            let size = encoded.len();
            bytes.push((e.log_id.index, encoded));
            kept.push((e, size));
        }
        self.wal().append(&bytes).map_err(wal_error(ErrorSubject::Logs, ErrorVerb::Write))?;
        let mut recent = self.recent();
        for (e, size) in kept {
            recent.bytes += size;
            recent.entries.push_back((e, size));
        }
        recent.evict();
        Ok(())
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

    fn write_json<T: serde::Serialize>(
        &self,
        key: &str,
        value: &T,
        subject: ErrorSubject<u64>,
        durable: bool,
    ) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(value).map_err(|e| io_error(subject.clone(), ErrorVerb::Write, e))?;
        Self::put_meta(&self.db, &[(key, &bytes)], durable).map_err(|e| io_error(subject, ErrorVerb::Write, e))
    }
}

fn encode_entry(entry: &Entry) -> Result<Vec<u8>, StorageError> {
    let mut bytes = vec![FORMAT_POSTCARD];
    postcard::to_io(entry, &mut bytes).map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Write, e))?;
    Ok(bytes)
}

fn decode_entry(bytes: &[u8]) -> Result<Entry, StorageError> {
    let read = |e: &dyn std::fmt::Display| {
        io_error(ErrorSubject::Logs, ErrorVerb::Read, std::io::Error::other(format!("a raft log entry: {e}")))
    };
    match bytes.split_first() {
        Some((&FORMAT_POSTCARD, rest)) => postcard::from_bytes(rest).map_err(|e| read(&e)),
        _ => {
            // An entry written as JSON, when an entry carried one batch.
            let mut value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| read(&e))?;
            if let Some(normal) = value.pointer_mut("/payload/Normal") {
                if normal.get("batches").is_none() {
                    *normal = serde_json::json!({ "batches": [normal.take()] });
                }
            }
            serde_json::from_value(value).map_err(|e| read(&e))
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(x) => x.saturating_add(1),
            Bound::Excluded(x) => *x,
            Bound::Unbounded => u64::MAX,
        };
        if start >= end {
            return Ok(Vec::new());
        }
        // The recent ones from memory, anything older from the segment files.
        let (first_recent, mut recent) = {
            let r = self.recent();
            let first = r.first_index().unwrap_or(u64::MAX);
            let from = start.max(first);
            let taken: Vec<Entry> = r
                .entries
                .iter()
                .skip_while(|(e, _)| e.log_id.index < from)
                .take_while(|(e, _)| e.log_id.index < end)
                .map(|(e, _)| e.clone())
                .collect();
            (first, taken)
        };
        if start >= first_recent {
            return Ok(recent);
        }
        let stored =
            self.wal().read(start, end.min(first_recent)).map_err(wal_error(ErrorSubject::Logs, ErrorVerb::Read))?;
        let mut out = stored.iter().map(|(_, bytes)| decode_entry(bytes)).collect::<Result<Vec<_>, _>>()?;
        out.append(&mut recent);
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged = LogStore::read_json::<Option<LogId>>(&self.db, KEY_PURGED, ErrorSubject::Store)?.flatten();
        let mut last = self.recent().entries.back().map(|(e, _)| e.log_id);
        if last.is_none() {
            let wal = self.wal();
            if let Some(index) = wal.last_index() {
                let stored = wal.read(index, index + 1).map_err(wal_error(ErrorSubject::Logs, ErrorVerb::Read))?;
                if let Some((_, bytes)) = stored.first() {
                    last = Some(decode_entry(bytes)?.log_id);
                }
            }
        }
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last.or(last_purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.write_json(KEY_VOTE, vote, ErrorSubject::Vote, true)
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
        self.write_json(KEY_COMMITTED, &committed, ErrorSubject::Store, false)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.blocking(|db| Ok(LogStore::read_json::<Option<LogId>>(db, KEY_COMMITTED, ErrorSubject::Store)?.flatten()))
            .await
    }

    /// Writes the entries to disk before it returns: raft awaits the flush
    /// anyway, so the callback is told at once.
    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        match self.append_entries(entries) {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        {
            let mut recent = self.recent();
            while recent.entries.back().is_some_and(|(e, _)| e.log_id.index >= log_id.index) {
                if let Some((_, size)) = recent.entries.pop_back() {
                    recent.bytes -= size;
                }
            }
        }
        self.wal().truncate(log_id.index).map_err(wal_error(ErrorSubject::Logs, ErrorVerb::Delete))
    }

    /// Records the purge point first, then forgets the entries: a crash in
    /// between leaves entries that the next open skips.
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.write_json(KEY_PURGED, &Some(log_id), ErrorSubject::Logs, true)?;
        {
            let mut recent = self.recent();
            while recent.entries.front().is_some_and(|(e, _)| e.log_id.index <= log_id.index) {
                if let Some((_, size)) = recent.entries.pop_front() {
                    recent.bytes -= size;
                }
            }
        }
        self.wal().purge(log_id.index).map_err(wal_error(ErrorSubject::Logs, ErrorVerb::Delete))
    }
}
