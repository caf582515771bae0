//! The raft log, vote, commit index and latest snapshot, kept in one redb
//! database (`<data-root>/raft/raft.redb`).
//!
//! Log writes go through one writer thread that takes every write queued
//! while the previous commit was syncing and commits them together (one
//! fsync for all: group commit). An append returns as soon as its entries
//! are queued and readable, and tells raft once they are on disk: so a
//! leader sends entries to its followers while its own disk write is under
//! way, as raft allows. The most recent entries are also kept in memory, so
//! that replication reads them without touching the database.
//!
//! Entries are stored as a format byte and postcard (older databases hold
//! JSON entries, which are still read).

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};

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

/// The log store. Cheap to clone: clones share the database, the recent
/// entries and the writer.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Db>,
    recent: Arc<Mutex<Recent>>,
    writer: mpsc::Sender<Write>,
    /// When the commit index was last written (see `save_committed`).
    committed_saved: Arc<Mutex<Option<std::time::Instant>>>,
}

/// How often the commit index is written at most.
const COMMITTED_SAVE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// How many of the latest entries stay in memory (once on disk), and how
/// many bytes of them at most.
const RECENT_ENTRIES: usize = 4096;
const RECENT_BYTES: usize = 32 << 20;

/// Format byte of a postcard-encoded entry (a JSON entry starts with `{`).
const FORMAT_POSTCARD: u8 = 0xB1;

/// The latest entries, contiguous by index, and how far the disk has them.
#[derive(Default)]
struct Recent {
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
    /// The last index known to be on disk.
    flushed: u64,
}

impl Recent {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    /// Drops the oldest entries beyond the limits, never one not yet on disk.
    fn evict(&mut self) {
        while self.entries.len() > RECENT_ENTRIES || self.bytes > RECENT_BYTES {
            match self.entries.front() {
                Some((e, size)) if e.log_id.index <= self.flushed => {
                    self.bytes -= size;
                    self.entries.pop_front();
                }
                _ => break,
            }
        }
    }
}

/// A write for the writer thread; each says how it reports back.
enum Write {
    Append {
        entries: Vec<(u64, Vec<u8>)>,
        done: Flushed,
    },
    /// Deletes entries at and after this index.
    Truncate {
        from: u64,
        done: Done,
    },
    /// Deletes entries up to and including `log_id`, and records it.
    Purge {
        log_id_json: Vec<u8>,
        upto: u64,
        done: Done,
    },
    Meta {
        items: Vec<(&'static str, Vec<u8>)>,
        durable: bool,
        done: Option<Done>,
    },
}

type Done = tokio::sync::oneshot::Sender<Result<(), String>>;
/// Told once appended entries are on disk (or could not be written).
type Flushed = Box<dyn FnOnce(Result<(), std::io::Error>) + Send>;

impl Write {
    fn durable(&self) -> bool {
        !matches!(self, Write::Meta { durable: false, .. })
    }
}

impl LogStore {
    /// Opens (or creates) the raft database at `path` and starts its writer.
    pub fn open(path: &Path) -> Result<(LogStore, Closed), redb::Error> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        tx.open_table(LOGS)?;
        tx.open_table(META)?;
        tx.commit()?;
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
        let db = Arc::new(Db { database: Some(db), closed: Some(closed_tx), last_committed: Default::default() });
        let recent = Arc::new(Mutex::new(Recent::default()));
        let (writer, queue) = mpsc::channel();
        let (thread_db, thread_recent) = (db.clone(), recent.clone());
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || write_loop(&thread_db, &thread_recent, &queue))
            .map_err(redb::Error::Io)?;
        Ok((LogStore { db, recent, writer, committed_saved: Arc::default() }, closed_rx))
    }

    fn recent(&self) -> MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
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

    /// Queues a write and waits until the writer committed it.
    async fn write_and_wait(
        &self,
        make: impl FnOnce(Done) -> Write,
        subject: ErrorSubject<u64>,
        verb: ErrorVerb,
    ) -> Result<(), StorageError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let stopped = || io_error(subject.clone(), verb, std::io::Error::other("the raft log writer stopped"));
        self.writer.send(make(tx)).map_err(|_| stopped())?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(io_error(subject.clone(), verb, std::io::Error::other(e))),
            Err(_) => Err(stopped()),
        }
    }

    /// Makes `entries` readable at once and queues them for the writer,
    /// which calls `flushed` once they are on disk.
    pub(crate) fn append_entries(
        &self,
        entries: impl IntoIterator<Item = Entry>,
        flushed: Flushed,
    ) -> Result<(), StorageError> {
        let mut bytes = Vec::new();
        let mut kept = Vec::new();
        for e in entries {
            let encoded = encode_entry(&e)?;
            kept.push((e, encoded.len()));
            bytes.push((kept.last().map_or(0, |(e, _)| e.log_id.index), encoded));
        }
        {
            let mut recent = self.recent();
            for (e, size) in kept {
                recent.bytes += size;
                recent.entries.push_back((e, size));
            }
        }
        self.writer.send(Write::Append { entries: bytes, done: flushed }).map_err(|_| {
            io_error(ErrorSubject::Logs, ErrorVerb::Write, std::io::Error::other("the raft log writer stopped"))
        })
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

/// The writer thread: takes every queued write, commits them in one
/// transaction (durable if any needs it), then reports to each. Ends when
/// every [`LogStore`] is gone.
fn write_loop(db: &Db, recent: &Mutex<Recent>, queue: &mpsc::Receiver<Write>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < 1024 {
            match queue.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let result = commit(db, &batch).map_err(|e| e.to_string());
        if result.is_ok() {
            let last = batch
                .iter()
                .filter_map(|w| match w {
                    Write::Append { entries, .. } => entries.last().map(|(i, _)| *i),
                    _ => None,
                })
                .max();
            let mut recent = recent.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(last) = last {
                recent.flushed = recent.flushed.max(last);
            }
            recent.evict();
        }
        for w in batch {
            let reply = result.clone();
            match w {
                Write::Append { done, .. } => done(reply.map_err(std::io::Error::other)),
                Write::Truncate { done, .. } | Write::Purge { done, .. } | Write::Meta { done: Some(done), .. } => {
                    let _ = done.send(reply);
                }
                Write::Meta { done: None, .. } => {}
            }
        }
    }
}

fn commit(db: &Database, batch: &[Write]) -> Result<(), redb::Error> {
    let mut tx = db.begin_write()?;
    if !batch.iter().any(Write::durable) {
        tx.set_durability(redb::Durability::None).map_err(redb::Error::from)?;
    }
    {
        let mut logs = tx.open_table(LOGS)?;
        let mut meta = tx.open_table(META)?;
        for w in batch {
            match w {
                Write::Append { entries, .. } => {
                    for (index, bytes) in entries {
                        logs.insert(*index, bytes.as_slice())?;
                    }
                }
                Write::Truncate { from, .. } => {
                    logs.retain_in(*from.., |_, _| false)?;
                }
                Write::Purge { log_id_json, upto, .. } => {
                    meta.insert(KEY_PURGED, log_id_json.as_slice())?;
                    logs.retain_in(..=*upto, |_, _| false)?;
                }
                Write::Meta { items, .. } => {
                    for (k, v) in items {
                        meta.insert(*k, v.as_slice())?;
                    }
                }
            }
        }
    }
    tx.commit()?;
    Ok(())
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
        // The recent ones from memory; anything older is on disk (only
        // entries already on disk leave memory).
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
        let disk_end = end.min(first_recent);
        let mut out = self
            .blocking(move |db| {
                let read = |e: redb::Error| io_error(ErrorSubject::Logs, ErrorVerb::Read, e);
                let tx = db.begin_read().map_err(|e| read(e.into()))?;
                let table = tx.open_table(LOGS).map_err(|e| read(e.into()))?;
                let mut out = Vec::new();
                for item in table.range::<u64>(start..disk_end).map_err(|e| read(e.into()))? {
                    let (_, v) = item.map_err(|e| read(e.into()))?;
                    out.push(decode_entry(v.value())?);
                }
                Ok(out)
            })
            .await?;
        out.append(&mut recent);
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_recent = self.recent().entries.back().map(|(e, _)| e.log_id);
        self.blocking(move |db| {
            let last_purged: Option<LogId> = LogStore::read_json(db, KEY_PURGED, ErrorSubject::Store)?;
            if let Some(last) = last_recent {
                return Ok(LogState { last_purged_log_id: last_purged, last_log_id: Some(last) });
            }
            let read = |e: redb::Error| io_error(ErrorSubject::Logs, ErrorVerb::Read, e);
            let tx = db.begin_read().map_err(|e| read(e.into()))?;
            let table = tx.open_table(LOGS).map_err(|e| read(e.into()))?;
            let last = match table.last().map_err(|e| read(e.into()))? {
                Some((_, v)) => Some(decode_entry(v.value())?.log_id),
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
        let bytes = serde_json::to_vec(vote).map_err(|e| io_error(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        self.write_and_wait(
            |done| Write::Meta { items: vec![(KEY_VOTE, bytes)], durable: true, done: Some(done) },
            ErrorSubject::Vote,
            ErrorVerb::Write,
        )
        .await
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
        *self.db.last_committed.lock().unwrap_or_else(|p| p.into_inner()) = Some(bytes.clone());
        {
            let mut saved = self.committed_saved.lock().unwrap_or_else(|p| p.into_inner());
            if saved.is_some_and(|t| t.elapsed() < COMMITTED_SAVE_INTERVAL) {
                return Ok(());
            }
            *saved = Some(std::time::Instant::now());
        }
        // Rides along with the next log write; nobody waits for it.
        let write = Write::Meta { items: vec![(KEY_COMMITTED, bytes)], durable: false, done: None };
        self.writer.send(write).map_err(|_| {
            io_error(ErrorSubject::Store, ErrorVerb::Write, std::io::Error::other("the raft log writer stopped"))
        })
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.blocking(|db| Ok(LogStore::read_json::<Option<LogId>>(db, KEY_COMMITTED, ErrorSubject::Store)?.flatten()))
            .await
    }

    /// Queues the entries for the writer and makes them readable at once;
    /// `callback` is told when they are on disk.
    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        self.append_entries(entries, Box::new(move |result| callback.log_io_completed(result)))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        {
            let mut recent = self.recent();
            while recent.entries.back().is_some_and(|(e, _)| e.log_id.index >= log_id.index) {
                if let Some((_, size)) = recent.entries.pop_back() {
                    recent.bytes -= size;
                }
            }
            recent.flushed = recent.flushed.min(log_id.index.saturating_sub(1));
        }
        self.write_and_wait(|done| Write::Truncate { from: log_id.index, done }, ErrorSubject::Logs, ErrorVerb::Delete)
            .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let log_id_json =
            serde_json::to_vec(&Some(log_id)).map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        {
            let mut recent = self.recent();
            while recent.entries.front().is_some_and(|(e, _)| e.log_id.index <= log_id.index) {
                if let Some((_, size)) = recent.entries.pop_front() {
                    recent.bytes -= size;
                }
            }
        }
        self.write_and_wait(
            |done| Write::Purge { log_id_json, upto: log_id.index, done },
            ErrorSubject::Logs,
            ErrorVerb::Delete,
        )
        .await
    }
}
