//! The raft state on disk: the log in append-only segment files (see
//! [`super::wal`], `<state>/raft.wal/`), the vote, commit index, purge point
//! and latest snapshot in a redb database (`<state>/raft.redb`).
//!
//! A follower's append is written and flushed in place on the calling
//! thread: it answers the leader only once the entries are on its disk.
//!
//! The leader's own append is written, reported flushed at once, and flushed
//! by a thread of its own ([`LogStore::leading_as`]), as etcd's leader
//! writes its log while its followers write theirs. openraft 0.9 awaits the
//! leader's flush before it replicates, so an awaited flush would put two
//! flushes one after the other into every write (leader, then follower).
//! Counting the leader before its flush is safe because nothing a commit
//! makes visible leaves the leader before its flush:
//! - the state machine applies an entry only once it is flushed here
//!   ([`Durable`]), so no client is answered before;
//! - the commit index sent to followers is held back to what is flushed
//!   here (`network.rs`), so no follower applies before;
//! - a member flushes everything before it saves a new vote, so it answers
//!   no other leader, nor votes, with entries that are not on its disk.
//!
//! So an acknowledged entry is on the leader's disk and on a follower's
//! (which flushes before it answers): a majority of three, as raft requires.
//! Concurrent client writes are grouped into one entry before they reach
//! raft (see `control::propose`). The most recent entries are also kept in
//! memory, so that replication and the state machine read them without
//! decoding.
//!
//! Entries are stored as postcard, sealed with this manager's raft key
//! ([`super::seal`]; entries written before sealing, a format byte and plain
//! postcard, still read, until compaction drops them). Databases from before
//! the segment files held the log in redb (as JSON): it moves to the
//! segment files, sealed, when such a database is opened.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, RaftLogReader};
use redb::{Database, ReadableDatabase, TableDefinition};
use tokio_util::sync::CancellationToken;

use super::health::{Retry, StorageHealth};
use super::seal::{Sealer, SEALED};
use super::wal::{Wal, WalError};

use super::{io_error, Entry, LogId, StorageError, TypeConfig, Vote};

/// Where older databases kept the log.
const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "last_purged";
/// The latest snapshot, kept here too so that it survives a restart.
pub(crate) const KEY_SNAPSHOT_META: &str = "snapshot_meta";
/// The snapshot as written before raft's state was sealed (now empty).
pub(crate) const KEY_SNAPSHOT_DATA: &str = "snapshot_data";
/// The latest snapshot, sealed (see [`super::seal`]).
pub(crate) const KEY_SNAPSHOT_SEALED: &str = "snapshot_sealed";

/// The open database; tells whoever holds the [`Closed`] receiver once the
/// database is closed (its file lock released), after the last user let go.
pub struct Db {
    path: PathBuf,
    /// `None` only while it is reopened (see [`Db::run`]).
    database: RwLock<Option<Database>>,
    closed: Option<tokio::sync::oneshot::Sender<()>>,
    /// The latest commit index (JSON), written durably when the database
    /// closes: `save_committed` writes it lazily while running.
    last_committed: std::sync::Mutex<Option<Vec<u8>>>,
    /// Seals the log's entries and the snapshot (`<path>.key`).
    pub(crate) sealer: Sealer,
    /// Waits for space when the disk is full.
    pub(crate) retry: Retry,
}

/// A redb error as an I/O error, the OS error kept (to tell a full disk).
fn redb_io(e: redb::Error) -> std::io::Error {
    match e {
        redb::Error::Io(e) => e,
        other => std::io::Error::other(other),
    }
}

impl Db {
    /// Runs `f` on the database. When it fails for want of space, waits for
    /// space and runs it again, reopening the database first: after an I/O
    /// error redb fails every operation until it is reopened.
    pub(crate) fn run<T>(&self, what: &str, f: impl Fn(&Database) -> Result<T, redb::Error>) -> Result<T, redb::Error> {
        self.retry
            .run(what, |again| {
                if again || self.database.read().unwrap_or_else(|p| p.into_inner()).is_none() {
                    self.reopen()?;
                }
                let guard = self.database.read().unwrap_or_else(|p| p.into_inner());
                let db = guard.as_ref().ok_or_else(|| std::io::Error::other("the raft database is not open"))?;
                f(db).map_err(redb_io)
            })
            .map_err(redb::Error::Io)
    }

    fn reopen(&self) -> std::io::Result<()> {
        let mut guard = self.database.write().unwrap_or_else(|p| p.into_inner());
        // Closed first: redb holds a lock on the file while it is open.
        drop(guard.take());
        *guard = Some(Database::create(&self.path).map_err(|e| redb_io(e.into()))?);
        Ok(())
    }

    /// Reads one value of the raft state.
    pub(crate) fn get(&self, key: &str) -> Result<Option<Vec<u8>>, redb::Error> {
        self.run("reading the raft state", |db| LogStore::get_meta(db, key))
    }

    /// Writes values of the raft state, durably or not.
    pub(crate) fn put(&self, items: &[(&str, &[u8])], durable: bool) -> Result<(), redb::Error> {
        self.run("writing the raft state", |db| LogStore::put_meta(db, items, durable))
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let committed = self.last_committed.lock().unwrap_or_else(|p| p.into_inner()).take();
        let database = self.database.get_mut().unwrap_or_else(|p| p.into_inner());
        if let (Some(db), Some(bytes)) = (database.as_ref(), committed) {
            if let Err(e) = LogStore::put_meta(db, &[(KEY_COMMITTED, &bytes)], true) {
                tracing::warn!(error = %e, "saving the raft commit index at shutdown");
            }
        }
        drop(database.take());
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
    flush: Arc<Flush>,
    /// This member's raft id, once it may flush its own appends as leader
    /// in the background (see [`LogStore::leading_as`]).
    node: Option<u64>,
    /// Wakes the flusher thread; it ends when the last clone is dropped.
    flusher: Option<Arc<std::sync::mpsc::Sender<()>>>,
}

/// What of the log is on disk, for the state machine and the network.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Durable {
    /// The last entry flushed (with all before it).
    pub log_id: Option<LogId>,
    /// A flush failed: nothing after `log_id` may be applied.
    pub failed: Option<String>,
}

/// Holds back the commit index a leader sends to what it has on disk.
#[derive(Clone)]
pub struct CommitGate {
    flush: Arc<Flush>,
}

impl CommitGate {
    /// The commit index to send to followers: `committed`, or the last entry
    /// flushed here if that is older (a follower must not apply an entry
    /// before the leader has it on disk). Notes when it held one back.
    pub fn commit_to_send(&self, committed: Option<LogId>) -> Option<LogId> {
        let durable = self.flush.durable.borrow().log_id;
        if committed.map(|c| c.index) > durable.map(|d| d.index) {
            self.flush.held_back.store(true, Ordering::SeqCst);
            return durable;
        }
        committed
    }

    /// Whether a commit index was held back since the last call.
    pub fn take_held_back(&self) -> bool {
        self.flush.held_back.swap(false, Ordering::SeqCst)
    }

    /// How far the log is on disk, as it changes.
    pub fn durable(&self) -> tokio::sync::watch::Receiver<Durable> {
        self.flush.durable.subscribe()
    }
}

/// The flushing of the log: who flushes, how far it is flushed.
struct Flush {
    /// Held while a flush runs, so that a flush in place waits for one in the
    /// background (and sees everything flushed when it gets the lock).
    running: Mutex<()>,
    /// The last entry written (flushed or not). Changed under the log's lock.
    written: Mutex<Option<LogId>>,
    durable: tokio::sync::watch::Sender<Durable>,
    /// The latest vote saved or read.
    vote: Mutex<Option<Vote>>,
    /// The network held back a commit index for want of a flush: when the
    /// flush comes, followers should hear of it (see `network.rs`).
    held_back: AtomicBool,
    /// Waits for space when the disk is full.
    retry: Retry,
}

impl Flush {
    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Flushes everything written so far (waiting for a flush under way)
    /// and records how far the log is on disk. A flush that fails for want
    /// of space writes everything again and flushes again once there is.
    fn flush(&self, wal: &Mutex<Wal>) -> std::io::Result<()> {
        let _running = Flush::lock(&self.running);
        let (unflushed, upto) = {
            let mut wal = Flush::lock(wal);
            (wal.take_unflushed(), *Flush::lock(&self.written))
        };
        if let Err(e) = self.retry.run("flushing the raft log", |again| unflushed.sync(again)) {
            let failed = format!("flushing the raft log: {e}");
            self.durable.send_modify(|d| d.failed = Some(failed));
            return Err(e);
        }
        self.durable.send_if_modified(|d| {
            let newer = upto > d.log_id;
            if newer {
                d.log_id = upto;
            }
            newer
        });
        Ok(())
    }
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

/// Why the raft state could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the raft database {path}: {source}")]
    Database { path: PathBuf, source: redb::Error },
    #[error("{0}")]
    Log(#[from] WalError),
    #[error("{0}")]
    Key(#[from] super::seal::SealError),
    #[error("the raft state in {path}: {what}")]
    Damaged { path: PathBuf, what: String },
}

impl LogStore {
    /// Opens (or creates) the raft database at `path` and the log next to
    /// it (`<path without extension>.wal/`). A write that finds the disk
    /// full waits for space until `stop` (see [`super::health`]).
    pub fn open(path: &Path, stop: CancellationToken) -> Result<(LogStore, Closed), OpenError> {
        let database = |source: redb::Error| OpenError::Database { path: path.to_path_buf(), source };
        let damaged = |what: String| OpenError::Damaged { path: path.to_path_buf(), what };
        let db = Database::create(path).map_err(|e| database(e.into()))?;
        let tx = db.begin_write().map_err(|e| database(e.into()))?;
        tx.open_table(LOGS).map_err(|e| database(e.into()))?;
        tx.open_table(META).map_err(|e| database(e.into()))?;
        tx.commit().map_err(|e| database(e.into()))?;
        let purged: Option<LogId> = match Self::get_meta(&db, KEY_PURGED).map_err(database)? {
            Some(bytes) => serde_json::from_slice::<Option<LogId>>(&bytes)
                .map_err(|e| damaged(format!("the purge point does not read: {e}")))?,
            None => None,
        };
        let wal_dir = path.with_extension("wal");
        let mut wal = Wal::open(&wal_dir, purged.map(|l| l.index))?;
        // A log entry that does not read is an error here, not "unsealed":
        // taking it for that would make a new key where one is missing.
        let sealed_log = match wal.last_index() {
            Some(i) => {
                let last = wal.read(i, i + 1).map_err(|e| damaged(format!("its last entry, {i}: {e}")))?;
                last.first().is_some_and(|(_, bytes)| bytes.first() == Some(&SEALED))
            }
            None => false,
        };
        let sealed_snapshot =
            Self::get_meta(&db, KEY_SNAPSHOT_SEALED).map_err(database)?.is_some_and(|b| !b.is_empty());
        let sealer = Sealer::open(&path.with_extension("key"), sealed_log || sealed_snapshot)?;
        Self::move_old_log(&db, &mut wal, purged.map_or(0, |l| l.index + 1), &sealer).map_err(database)?;
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
        // What an earlier process wrote may still be only in the page cache.
        wal.take_unflushed().sync(false).map_err(|source| WalError::Io { path: wal_dir.clone(), source })?;
        let written = Self::last_stored(&wal, &sealer).map_err(|e| damaged(e.to_string()))?;
        let written = written.or(purged);
        let retry = Retry::new(StorageHealth::new(path.parent().unwrap_or(Path::new("."))), stop);
        let db = Arc::new(Db {
            path: path.to_path_buf(),
            database: RwLock::new(Some(db)),
            closed: Some(closed_tx),
            last_committed: Default::default(),
            sealer,
            retry: retry.clone(),
        });
        let flush = Flush {
            running: Mutex::new(()),
            written: Mutex::new(written),
            durable: tokio::sync::watch::channel(Durable { log_id: written, failed: None }).0,
            vote: Mutex::new(None),
            held_back: AtomicBool::new(false),
            retry,
        };
        let store = LogStore {
            db,
            wal: Arc::new(Mutex::new(wal)),
            recent: Arc::default(),
            committed_saved: Arc::default(),
            flush: Arc::new(flush),
            node: None,
            flusher: None,
        };
        Ok((store, closed_rx))
    }

    /// Lets this member, as raft member `node`, flush the appends it makes
    /// as leader on a thread of its own (see the module's notes). Without
    /// it every append is flushed before it returns.
    pub fn leading_as(mut self, node: u64) -> std::io::Result<LogStore> {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (wal, flush) = (self.wal.clone(), self.flush.clone());
        std::thread::Builder::new().name("raft-log-flush".into()).spawn(move || {
            while rx.recv().is_ok() {
                while rx.try_recv().is_ok() {}
                if let Err(e) = flush.flush(&wal) {
                    tracing::error!(error = %e, "flushing the raft log failed: this manager stops applying writes");
                    return;
                }
            }
        })?;
        self.node = Some(node);
        self.flusher = Some(Arc::new(tx));
        Ok(self)
    }

    /// What is wrong with this manager's raft storage, as it is found.
    pub fn health(&self) -> StorageHealth {
        self.db.retry.health().clone()
    }

    /// How far the log is on disk, as it changes, where appends may be
    /// flushed in the background ([`LogStore::leading_as`]); otherwise
    /// everything written is flushed already.
    pub fn durable(&self) -> Option<tokio::sync::watch::Receiver<Durable>> {
        self.node.map(|_| self.flush.durable.subscribe())
    }

    /// What the network needs to hold back commit indexes.
    pub fn commit_gate(&self) -> CommitGate {
        CommitGate { flush: self.flush.clone() }
    }

    /// The last entry in the segment files.
    fn last_stored(wal: &Wal, sealer: &Sealer) -> Result<Option<LogId>, StorageError> {
        let Some(index) = wal.last_index() else { return Ok(None) };
        let stored = wal.read(index, index + 1).map_err(wal_error(ErrorSubject::Logs, ErrorVerb::Read))?;
        match stored.first() {
            Some((index, bytes)) => Ok(Some(decode_entry(sealer, *index, bytes)?.log_id)),
            None => Ok(None),
        }
    }

    /// Whether `entries` are this member's own, appended as the leader of
    /// the current vote: only those may be flushed in the background.
    fn appending_as_leader(&self, entries: &[Entry]) -> bool {
        let Some(node) = self.node else { return false };
        let Some(vote) = *Flush::lock(&self.flush.vote) else { return false };
        vote.committed
            && vote.leader_id.node_id == node
            && entries
                .iter()
                .all(|e| e.log_id.leader_id.node_id == node && e.log_id.leader_id.term == vote.leader_id.term)
    }

    /// Writes `entries` and flushes them: in the background if they are
    /// this leader's own, in place otherwise.
    pub(crate) fn write_and_flush(&self, entries: Vec<Entry>) -> Result<(), StorageError> {
        let flusher = self.flusher.clone().filter(|_| self.appending_as_leader(&entries));
        self.write_entries(entries)?;
        match &flusher {
            Some(flusher) => flusher.send(()).map_err(|_| {
                let e = std::io::Error::other("the raft log's flusher thread has stopped");
                wal_error(ErrorSubject::Logs, ErrorVerb::Write)(e)
            }),
            None => self.flush_now(),
        }
    }

    /// Flushes everything written, in place.
    fn flush_now(&self) -> Result<(), StorageError> {
        self.flush.flush(&self.wal).map_err(wal_error(ErrorSubject::Logs, ErrorVerb::Write))
    }

    /// Moves a log kept in the database (before the segment files) to `wal`:
    /// its entries from index `from` on.
    fn move_old_log(db: &Database, wal: &mut Wal, from: u64, sealer: &Sealer) -> Result<(), redb::Error> {
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
        let Some(&(old_last, _)) = old.last() else { return Ok(()) };
        // An earlier move may have stopped part way (a crash, a torn tail cut
        // off): move what the segment files lack, and drop the old log only
        // once they hold all of it.
        let held = wal.last_index();
        let missing: Vec<&(u64, Vec<u8>)> = old.iter().filter(|(i, _)| held.is_none_or(|h| *i > h)).collect();
        let other = |e: &dyn std::fmt::Display| redb::Error::Io(std::io::Error::other(e.to_string()));
        if let (Some(h), Some((first_missing, _))) = (held, missing.first()) {
            if *first_missing != h + 1 {
                return Err(other(&format!(
                    "moving the raft log out of the database: the segment files end at entry {h}, the database's \
                     log goes on at {first_missing}; nothing was deleted"
                )));
            }
        }
        let mut sealed = Vec::with_capacity(missing.len());
        for (index, bytes) in missing {
            let entry = decode_entry(sealer, *index, bytes).map_err(|e| other(&e))?;
            sealed.push((*index, encode_entry(sealer, &entry).map_err(|e| other(&e))?));
        }
        wal.append(&sealed)?;
        if wal.last_index() != Some(old_last) {
            return Err(other(&format!(
                "moving the raft log out of the database: the segment files do not end at its last entry, \
                 {old_last}; nothing was deleted"
            )));
        }
        let tx = db.begin_write()?;
        tx.open_table(LOGS)?.retain(|_, _| false)?;
        tx.commit()?;
        Ok(())
    }

    fn recent(&self) -> MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn wal(&self) -> MutexGuard<'_, Wal> {
        self.wal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the database where blocking is allowed.
    async fn blocking<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Db) -> Result<T, StorageError> + Send + 'static,
    {
        let db = self.db.clone();
        if tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
            return tokio::task::block_in_place(move || f(&db));
        }
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, e))?
    }

    /// Writes `entries` to disk, flushed, and keeps them in memory.
    #[cfg(test)]
    pub(crate) fn append_entries(&self, entries: impl IntoIterator<Item = Entry>) -> Result<(), StorageError> {
        self.write_entries(entries.into_iter().collect())?;
        self.flush_now()
    }

    /// Writes `entries` to the log files (not flushed) and keeps them in
    /// memory.
    fn write_entries(&self, entries: Vec<Entry>) -> Result<(), StorageError> {
        let mut bytes = Vec::new();
        let mut kept = Vec::new();
        for e in entries {
            let encoded = encode_entry(&self.db.sealer, &e)?;
            let size = encoded.len();
            bytes.push((e.log_id.index, encoded));
            kept.push((e, size));
        }
        // A full disk: wait for space (the log is locked only while a try runs).
        self.db
            .retry
            .run("appending to the raft log", |_| {
                let mut wal = self.wal();
                wal.write(&bytes)?;
                if let Some((last, _)) = kept.last() {
                    *Flush::lock(&self.flush.written) = Some(last.log_id);
                }
                Ok(())
            })
            .map_err(wal_error(ErrorSubject::Logs, ErrorVerb::Write))?;
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
        db: &Db,
        key: &str,
        subject: ErrorSubject<u64>,
    ) -> Result<Option<T>, StorageError> {
        let Some(bytes) = db.get(key).map_err(|e| io_error(subject.clone(), ErrorVerb::Read, e))? else {
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
        self.db.put(&[(key, &bytes)], durable).map_err(|e| io_error(subject, ErrorVerb::Write, e))
    }
}

/// An entry as stored: postcard, sealed (see [`super::seal`]).
fn encode_entry(sealer: &Sealer, entry: &Entry) -> Result<Vec<u8>, StorageError> {
    let write = |e: &dyn std::fmt::Display| {
        io_error(ErrorSubject::Logs, ErrorVerb::Write, std::io::Error::other(format!("a raft log entry: {e}")))
    };
    let plain = postcard::to_stdvec(entry).map_err(|e| write(&e))?;
    sealer.seal_entry(entry.log_id.index, &plain).map_err(|e| write(&e))
}

/// Reads entry `index` as stored: sealed, or from before sealing plain
/// postcard or JSON.
fn decode_entry(sealer: &Sealer, index: u64, bytes: &[u8]) -> Result<Entry, StorageError> {
    let read = |e: &dyn std::fmt::Display| {
        io_error(ErrorSubject::Logs, ErrorVerb::Read, std::io::Error::other(format!("a raft log entry: {e}")))
    };
    match bytes.split_first() {
        Some((&SEALED, _)) => {
            let plain = sealer.open_entry(index, bytes).map_err(|e| read(&e))?;
            postcard::from_bytes(&plain).map_err(|e| read(&e))
        }
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
            // Contiguous by index: the first wanted is `from - first` in.
            let skip = usize::try_from(from.saturating_sub(first)).unwrap_or(usize::MAX).min(r.entries.len());
            let taken: Vec<Entry> =
                r.entries.range(skip..).take_while(|(e, _)| e.log_id.index < end).map(|(e, _)| e.clone()).collect();
            (first, taken)
        };
        if start >= first_recent {
            return Ok(recent);
        }
        let stored =
            self.wal().read(start, end.min(first_recent)).map_err(wal_error(ErrorSubject::Logs, ErrorVerb::Read))?;
        let sealer = &self.db.sealer;
        let mut out =
            stored.iter().map(|(index, bytes)| decode_entry(sealer, *index, bytes)).collect::<Result<Vec<_>, _>>()?;
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
                if let Some((index, bytes)) = stored.first() {
                    last = Some(decode_entry(&self.db.sealer, *index, bytes)?.log_id);
                }
            }
        }
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last.or(last_purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    /// Flushes the log first: a member that answers another leader, or
    /// votes, does so with its log on disk (see the module's notes).
    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.flush_now()?;
        self.write_json(KEY_VOTE, vote, ErrorSubject::Vote, true)?;
        *Flush::lock(&self.flush.vote) = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        let vote: Option<Vote> = self.blocking(|db| LogStore::read_json(db, KEY_VOTE, ErrorSubject::Vote)).await?;
        *Flush::lock(&self.flush.vote) = vote;
        Ok(vote)
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

    /// Never past the last entry in the log: a leader counts its entries
    /// before its flush, so after a power cut the commit index written then
    /// may name entries that its disk never got (nobody was told of them).
    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let committed: Option<LogId> = self
            .blocking(|db| Ok(LogStore::read_json::<Option<LogId>>(db, KEY_COMMITTED, ErrorSubject::Store)?.flatten()))
            .await?;
        let written = *Flush::lock(&self.flush.written);
        Ok(match (committed, written) {
            (Some(c), Some(w)) if c.index > w.index => Some(w),
            (Some(_), None) => None,
            (c, _) => c,
        })
    }

    /// A follower's entries are flushed before it returns (raft awaits the
    /// flush anyway, so the callback is told at once); the leader's own are
    /// written, reported flushed, and flushed in the background (see the
    /// module's notes).
    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let result = self.write_and_flush(entries.into_iter().collect());
        match result {
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

    /// Flushes what is written first, so that what stays is on disk.
    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.flush_now()?;
        let _running = Flush::lock(&self.flush.running);
        let last_recent = {
            let mut recent = self.recent();
            while recent.entries.back().is_some_and(|(e, _)| e.log_id.index >= log_id.index) {
                if let Some((_, size)) = recent.entries.pop_back() {
                    recent.bytes -= size;
                }
            }
            recent.entries.back().map(|(e, _)| e.log_id)
        };
        let mut wal = self.wal();
        wal.truncate(log_id.index).map_err(wal_error(ErrorSubject::Logs, ErrorVerb::Delete))?;
        let last = match last_recent {
            Some(l) => Some(l),
            None => Self::last_stored(&wal, &self.db.sealer)?,
        };
        let mut written = Flush::lock(&self.flush.written);
        if written.is_some_and(|w| w.index >= log_id.index) {
            *written = last;
        }
        self.flush.durable.send_if_modified(|d| {
            let cut = d.log_id.is_some_and(|l| l.index >= log_id.index);
            if cut {
                d.log_id = last;
            }
            cut
        });
        Ok(())
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
