//! The raft log on disk: append-only segment files (`<data>/raft.wal/`), one
//! write per append and one `fdatasync` per flush ([`Wal::write`] then
//! [`Wal::take_unflushed`]; [`Wal::append`] does both).
//!
//! A record is `length (u32 LE) · crc32 of index and payload (u32 LE) · index
//! (u64 LE) · payload`. Segments are named by the first index written to
//! them and hold up to [`SEGMENT_BYTES`]; a new one starts when the current
//! one is full. A segment's space is allocated when it is created (so that
//! an append changes no file size, which would cost the flush a journal
//! commit): its records end at the first zero length. Opening reads every
//! segment: a record that is cut short or fails its checksum (a write torn
//! by a crash) ends the log there, and the file is cut back to it.
//! Truncation cuts the file (no stale record can reappear behind a shorter
//! one); purging deletes whole segments.
//!
//! Why not the redb database the rest of raft's state lives in: a redb
//! commit rewrites several B-tree and allocator pages before its fsync
//! (7 pages for a one-entry append), and raft waits for two such flushes
//! per write (leader, then follower); an append here flushes one page.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A segment is closed once it holds this many bytes.
const SEGMENT_BYTES: u64 = 16 << 20;
const HEADER: usize = 16;

/// Where one record is.
#[derive(Clone, Copy)]
struct Pos {
    /// The segment's first index (its name).
    segment: u64,
    offset: u64,
    len: u32,
}

struct Segment {
    first: u64,
    file: Arc<File>,
    /// Where the next record goes.
    end: u64,
    /// Written since its last flush.
    unflushed: bool,
}

/// The open log.
pub struct Wal {
    dir: PathBuf,
    segments: Vec<Segment>,
    /// Positions of the entries `first ..= first + len - 1`.
    positions: VecDeque<Pos>,
    first: u64,
    segment_bytes: u64,
    /// What was written since the last [`Wal::take_unflushed`].
    written: Vec<Written>,
    /// Writes to fail, half done, as on a full disk (tests only).
    #[cfg(test)]
    pub(crate) fail_writes: usize,
}

/// One write not flushed yet, kept so that it can be written again: after a
/// failed flush, the page cache may have dropped it (Linux marks pages clean
/// whose writeback failed), and a second flush would then report success
/// for data that is not on the disk.
struct Written {
    file: Arc<File>,
    offset: u64,
    bytes: Vec<u8>,
}

/// What to flush: the files written to, and the writes themselves.
pub struct Unflushed {
    files: Vec<Arc<File>>,
    written: Vec<Written>,
}

impl Unflushed {
    /// Flushes the files (`fdatasync`); `again` writes everything again
    /// first, for a flush after a failed one.
    pub fn sync(&self, again: bool) -> io::Result<()> {
        if again {
            for w in &self.written {
                w.file.write_all_at(&w.bytes, w.offset)?;
            }
        }
        for file in &self.files {
            file.sync_data()?;
        }
        Ok(())
    }
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

fn crc(index: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(payload);
    h.finalize()
}

fn corrupt(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// The sectors a torn write may leave unwritten.
const SECTOR: usize = 512;

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "the raft log is damaged: {path} at byte {offset} (entry {entry}): {reason}, {} \
         Nothing was deleted. This manager must not run with a log that lost entries the swarm counted on: \
         from a healthy manager, demote and remove this node (\"shoal node demote\", \"shoal node rm --force\"), \
         then stop this daemon, move its data root's raft/, swarm/ and certificates/ aside and join it again with \
         a manager token; a swarm whose only manager this is has no other copy: restore the data root from a backup",
        if *intact_after > 0 {
            format!("and {intact_after} intact records follow it, so it is not a write torn by a crash.")
        } else {
            "and the record is whole, so it is not a write torn by a crash.".to_string()
        }
    )]
    Damaged { path: PathBuf, offset: u64, entry: u64, reason: String, intact_after: usize },
    #[error(
        "the raft log in {dir} is missing entries {from} to {to} (a segment file was removed): restore it from a \
         backup, or treat this manager as damaged (see the README's recovery steps)"
    )]
    Missing { dir: PathBuf, from: u64, to: u64 },
}

impl From<WalError> for io::Error {
    fn from(e: WalError) -> io::Error {
        match e {
            WalError::Io { source, .. } => source,
            e => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
        }
    }
}

/// The first record of a segment that does not read back.
struct Bad {
    offset: u64,
    reason: String,
    /// Whether it looks like a torn write (cut short, or a zeroed sector).
    torn: bool,
}

/// Whether the record at `start..end` of a segment has a sector that was
/// never written: a run of zeros from a sector boundary (or the record's
/// start) to the next boundary, the part of the record's last sector after
/// it included (written along with it, or never written at all).
fn has_zero_sector(bytes: &[u8], start: usize, end: usize) -> bool {
    let end = end.next_multiple_of(SECTOR).min(bytes.len());
    let mut at = start;
    while at < end {
        let next = (at / SECTOR + 1) * SECTOR;
        let chunk = &bytes[at..next.min(end)];
        // A few zero bytes are common in a header (the high bytes of a
        // length or index); a sector's worth is not.
        if chunk.len() >= 8 && chunk.iter().all(|b| *b == 0) {
            return true;
        }
        at = next;
    }
    false
}

/// How many intact records of entries from `min_index` on start at or after
/// `from` in a segment: looked for at every byte, since the record before
/// them cannot be trusted to say where they begin.
fn intact_records(bytes: &[u8], from: u64, min_index: u64) -> usize {
    let mut found = 0;
    let mut at = usize::try_from(from).unwrap_or(usize::MAX);
    while let Some(header) = bytes.get(at..at + HEADER) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let sum = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let index = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
        // An index far past the damage is garbage that looks like a header.
        let plausible = len > 0 && index >= min_index && index - min_index < 1 << 32;
        let payload = bytes.get(at + HEADER..at + HEADER + len).filter(|_| plausible);
        match payload {
            Some(payload) if crc(index, payload) == sum => {
                found += 1;
                at += HEADER + len;
            }
            _ => at += 1,
        }
    }
    found
}

impl Wal {
    /// Opens (or creates) the log in `dir`. Entries at or below `purged`
    /// are gone as far as raft is concerned and are skipped.
    ///
    /// A record that does not read back whole is a write torn by a crash
    /// only if it lies in the log's unflushed tail: nothing intact follows
    /// it, and it is cut short by the end of the file or has a sector of
    /// zeros (space allocated but never written: a segment's space is
    /// allocated, and so zeroed, before anything is written to it). Such a
    /// tail is cut off. Anything else (a damaged record with intact ones
    /// after it, in this segment or a later one, or a whole record that
    /// fails its checksum) is damage to entries this manager acknowledged:
    /// opening fails with [`WalError::Damaged`] and no file is changed.
    pub fn open(dir: &Path, purged: Option<u64>) -> Result<Wal, WalError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| WalError::Io { path: path.clone(), source }
        };
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut firsts = Vec::new();
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let name = entry.map_err(io(dir))?.file_name();
            let Some(first) = name.to_str().and_then(|n| n.strip_suffix(".seg")).and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            firsts.push(first);
        }
        firsts.sort_unstable();
        let mut wal = Wal {
            dir: dir.to_path_buf(),
            segments: Vec::new(),
            positions: VecDeque::new(),
            first: 0,
            segment_bytes: SEGMENT_BYTES,
            written: Vec::new(),
            #[cfg(test)]
            fail_writes: 0,
        };
        // Read and judge the whole log before changing any file.
        let mut ends = Vec::with_capacity(firsts.len());
        let mut damage: Option<(usize, Bad)> = None;
        for (i, &first) in firsts.iter().enumerate() {
            let path = segment_path(dir, first);
            let bytes = fs::read(&path).map_err(io(&path))?;
            // A segment whose successor starts at or below the purge point
            // holds only purged entries (a purge deletes such segments, but
            // a crash may come first): nothing in it matters.
            if firsts.get(i + 1).is_some_and(|next| purged.is_some_and(|p| *next <= p.saturating_add(1))) {
                ends.push(bytes.len() as u64);
                continue;
            }
            match wal.scan(first, &bytes, purged) {
                Ok(end) => ends.push(end),
                Err(bad) => {
                    ends.push(bad.offset);
                    damage = Some((i, bad));
                    break;
                }
            }
        }
        if let (Some(p), Some(first)) = (purged, (!wal.positions.is_empty()).then_some(wal.first)) {
            if first > p.saturating_add(1) {
                return Err(WalError::Missing { dir: dir.to_path_buf(), from: p.saturating_add(1), to: first - 1 });
            }
        }
        if let Some((i, bad)) = damage {
            let path = segment_path(dir, firsts[i]);
            let bytes = fs::read(&path).map_err(io(&path))?;
            let min_index =
                if wal.positions.is_empty() { purged.map_or(0, |p| p.saturating_add(1)) } else { wal.next_index() };
            let mut intact_after = intact_records(&bytes, bad.offset + 1, min_index);
            for &later in &firsts[i + 1..] {
                let path = segment_path(dir, later);
                let later_bytes = fs::read(&path).map_err(io(&path))?;
                intact_after += intact_records(&later_bytes, 0, min_index);
            }
            if intact_after > 0 || !bad.torn {
                return Err(WalError::Damaged {
                    path,
                    offset: bad.offset,
                    entry: min_index,
                    reason: bad.reason,
                    intact_after,
                });
            }
            // A torn tail: cut it off (with the allocated space after it)
            // and drop the later segments, which hold nothing intact.
            let file = OpenOptions::new().read(true).write(true).open(&path).map_err(io(&path))?;
            file.set_len(bad.offset).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
            tracing::warn!(
                segment = %path.display(),
                offset = bad.offset,
                "the raft log ended in a write torn by a crash ({}); cut it off there",
                bad.reason
            );
            for &later in &firsts[i + 1..] {
                let path = segment_path(dir, later);
                fs::remove_file(&path).map_err(io(&path))?;
            }
            firsts.truncate(i + 1);
            File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
        }
        for (&first, &end) in firsts.iter().zip(&ends) {
            let path = segment_path(dir, first);
            let file = OpenOptions::new().read(true).write(true).open(&path).map_err(io(&path))?;
            // What an earlier process wrote may be only in the page cache:
            // the opener flushes it (`take_unflushed`) before counting on it.
            wal.segments.push(Segment { first, file: Arc::new(file), end, unflushed: true });
        }
        Ok(wal)
    }

    /// Reads the records of segment `first` (its bytes) into the positions:
    /// where its records end, or the first record that does not read back.
    fn scan(&mut self, first: u64, bytes: &[u8], purged: Option<u64>) -> Result<u64, Bad> {
        let kept = |index: u64| purged.is_none_or(|p| index > p);
        let mut offset = 0usize;
        loop {
            let rest = &bytes[offset..];
            // The records end where zeros begin (allocated space) or the file does.
            let end = || rest.iter().all(|b| *b == 0);
            let bad = |reason: &str, torn: bool| Bad { offset: offset as u64, reason: reason.to_string(), torn };
            let Some(header) = rest.get(..HEADER) else {
                return if end() {
                    Ok(offset as u64)
                } else {
                    Err(bad("the file ends inside a record's header", true))
                };
            };
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let sum = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            let index = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
            if len == 0 {
                return if end() {
                    Ok(offset as u64)
                } else {
                    Err(bad("a record's length is zero, with data after it", true))
                };
            }
            let Some(payload) = rest.get(HEADER..HEADER + len) else {
                return Err(bad("the file ends inside a record", true));
            };
            if crc(index, payload) != sum {
                let torn = has_zero_sector(bytes, offset, offset + HEADER + len);
                return Err(bad("a record fails its checksum", torn));
            }
            if kept(index) {
                if !self.positions.is_empty() && index != self.next_index() {
                    return Err(bad(&format!("entry {index} is out of order"), false));
                }
                if self.positions.is_empty() {
                    self.first = index;
                }
                self.positions.push_back(Pos { segment: first, offset: offset as u64, len: len as u32 });
            }
            offset += HEADER + len;
        }
    }

    fn next_index(&self) -> u64 {
        self.first + self.positions.len() as u64
    }

    /// The last index held, if any.
    pub fn last_index(&self) -> Option<u64> {
        (!self.positions.is_empty()).then(|| self.next_index() - 1)
    }

    fn segment(&self, first: u64) -> io::Result<&Segment> {
        self.segments
            .binary_search_by_key(&first, |s| s.first)
            .map(|i| &self.segments[i])
            .map_err(|_| corrupt(format!("raft log segment {first} is missing")))
    }

    /// Appends `entries` (index, payload), which must follow the last one,
    /// and flushes them to disk before returning.
    pub fn append(&mut self, entries: &[(u64, Vec<u8>)]) -> io::Result<()> {
        self.write(entries)?;
        self.take_unflushed().sync(false)
    }

    /// What was written since it was last taken, to be flushed (outside the
    /// lock that guards the log) by the taker.
    pub fn take_unflushed(&mut self) -> Unflushed {
        let files =
            self.segments.iter_mut().filter_map(|s| std::mem::take(&mut s.unflushed).then(|| s.file.clone())).collect();
        Unflushed { files, written: std::mem::take(&mut self.written) }
    }

    /// Appends `entries` (index, payload), which must follow the last one,
    /// to the files without flushing them: readers (of this process) see
    /// them at once, and [`Wal::take_unflushed`] names what to flush.
    pub fn write(&mut self, entries: &[(u64, Vec<u8>)]) -> io::Result<()> {
        let Some((first_new, _)) = entries.first() else { return Ok(()) };
        if !self.positions.is_empty() && *first_new != self.next_index() {
            return Err(corrupt(format!(
                "raft log append at {first_new} does not follow the last entry {}",
                self.next_index() - 1
            )));
        }
        let size: u64 = entries.iter().map(|(_, p)| (HEADER + p.len()) as u64).sum();
        if self.segments.last().is_none_or(|s| s.end > 0 && s.end + size > self.segment_bytes) {
            self.start_segment(*first_new)?;
        }
        let Some(segment) = self.segments.last_mut() else { return Err(corrupt("no raft log segment".into())) };
        let mut buf = Vec::with_capacity(size as usize);
        let mut added = Vec::with_capacity(entries.len());
        for (index, payload) in entries {
            let len = u32::try_from(payload.len())
                .map_err(|_| corrupt(format!("raft log entry {index} is larger than 4 GiB")))?;
            added.push(Pos { segment: segment.first, offset: segment.end + buf.len() as u64, len });
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(&crc(*index, payload).to_le_bytes());
            buf.extend_from_slice(&index.to_le_bytes());
            buf.extend_from_slice(payload);
        }
        #[cfg(test)]
        if self.fail_writes > 0 {
            self.fail_writes -= 1;
            segment.file.write_all_at(&buf[..buf.len() / 2], segment.end)?;
            return Err(io::Error::from_raw_os_error(nix::libc::ENOSPC));
        }
        segment.file.write_all_at(&buf, segment.end)?;
        segment.unflushed = true;
        let offset = segment.end;
        segment.end += buf.len() as u64;
        self.written.push(Written { file: segment.file.clone(), offset, bytes: buf });
        if self.positions.is_empty() {
            self.first = *first_new;
        }
        self.positions.extend(added);
        Ok(())
    }

    fn start_segment(&mut self, first: u64) -> io::Result<()> {
        let path = segment_path(&self.dir, first);
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
        // Without the allocation appends still work, each one growing the
        // file, where the filesystem cannot allocate; but no room for it is
        // no room for the segment.
        let allocated = nix::fcntl::fallocate(&file, nix::fcntl::FallocateFlags::empty(), 0, self.segment_bytes as i64);
        if let Err(e @ (nix::errno::Errno::ENOSPC | nix::errno::Errno::EDQUOT)) = allocated {
            return Err(e.into());
        }
        file.sync_all()?;
        File::open(&self.dir)?.sync_all()?;
        self.segments.push(Segment { first, file: Arc::new(file), end: 0, unflushed: false });
        Ok(())
    }

    /// The payloads of `start..end` that are held (stops at the first gap).
    pub fn read(&self, start: u64, end: u64) -> io::Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::new();
        let from = start.max(self.first);
        for index in from..end.min(self.next_index()) {
            let Some(pos) = self.positions.get((index - self.first) as usize) else { break };
            let segment = self.segment(pos.segment)?;
            let mut buf = vec![0u8; HEADER + pos.len as usize];
            segment.file.read_exact_at(&mut buf, pos.offset)?;
            let payload = buf.split_off(HEADER);
            let sum = u32::from_le_bytes(buf[4..8].try_into().unwrap_or_default());
            if crc(index, &payload) != sum {
                return Err(corrupt(format!("raft log entry {index} fails its checksum")));
            }
            out.push((index, payload));
        }
        Ok(out)
    }

    /// Removes the entries at and after `from`, on disk before returning.
    pub fn truncate(&mut self, from: u64) -> io::Result<()> {
        if self.positions.is_empty() || from >= self.next_index() {
            return Ok(());
        }
        let keep = from.saturating_sub(self.first) as usize;
        let cut = match self.positions.get(keep) {
            Some(p) => *p,
            None => return Ok(()),
        };
        self.positions.truncate(keep);
        // Unflushed writes of what is cut must never be written again.
        let cut_file = self.segment(cut.segment)?.file.clone();
        let removed: Vec<Arc<File>> =
            self.segments.iter().filter(|s| s.first > cut.segment).map(|s| s.file.clone()).collect();
        self.written.retain_mut(|w| {
            if removed.iter().any(|f| Arc::ptr_eq(f, &w.file)) {
                return false;
            }
            if Arc::ptr_eq(&cut_file, &w.file) && w.offset + w.bytes.len() as u64 > cut.offset {
                // Keep what comes before the cut.
                w.bytes.truncate(cut.offset.saturating_sub(w.offset) as usize);
            }
            !w.bytes.is_empty()
        });
        while self.segments.last().is_some_and(|s| s.first > cut.segment) {
            if let Some(s) = self.segments.pop() {
                fs::remove_file(segment_path(&self.dir, s.first))?;
            }
        }
        if let Some(segment) = self.segments.last_mut() {
            segment.file.set_len(cut.offset)?;
            segment.file.sync_all()?;
            segment.end = cut.offset;
        }
        File::open(&self.dir)?.sync_all()
    }

    /// Forgets the entries up to and including `upto` and deletes the
    /// segments that hold nothing newer (never the one being written).
    pub fn purge(&mut self, upto: u64) -> io::Result<()> {
        while !self.positions.is_empty() && self.first <= upto {
            self.positions.pop_front();
            self.first += 1;
        }
        if self.positions.is_empty() {
            self.first = upto + 1;
        }
        while self.segments.len() > 1 && self.segments[1].first <= upto + 1 {
            let s = self.segments.remove(0);
            fs::remove_file(segment_path(&self.dir, s.first))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(i: u64) -> Vec<u8> {
        format!("entry {i}").repeat((i % 7 + 1) as usize).into_bytes()
    }

    fn append(wal: &mut Wal, range: std::ops::RangeInclusive<u64>) {
        let entries: Vec<_> = range.map(|i| (i, payload(i))).collect();
        wal.append(&entries).expect("append");
    }

    fn indexes(wal: &Wal) -> Vec<u64> {
        wal.read(0, u64::MAX)
            .expect("read")
            .into_iter()
            .map(|(i, p)| {
                assert_eq!(p, payload(i));
                i
            })
            .collect()
    }

    #[test]
    fn appends_truncates_and_purges_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut wal = Wal::open(dir.path(), None).expect("open");
            append(&mut wal, 1..=10);
            append(&mut wal, 11..=20);
            wal.truncate(15).expect("truncate");
            append(&mut wal, 15..=16);
            assert!(wal.append(&[(30, payload(30))]).is_err(), "a hole is refused");
            wal.purge(4).expect("purge");
            assert_eq!(indexes(&wal), (5..=16).collect::<Vec<_>>());
        }
        let wal = Wal::open(dir.path(), Some(4)).expect("reopen");
        assert_eq!(indexes(&wal), (5..=16).collect::<Vec<_>>());
        assert_eq!(wal.last_index(), Some(16));
    }

    /// Raft's log starts at index 0 (the first membership entry).
    #[test]
    fn entry_zero_is_kept_unless_purged() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut wal = Wal::open(dir.path(), None).expect("open");
            append(&mut wal, 0..=3);
        }
        let wal = Wal::open(dir.path(), None).expect("reopen");
        assert_eq!(indexes(&wal), vec![0, 1, 2, 3]);
        drop(wal);
        let wal = Wal::open(dir.path(), Some(0)).expect("reopen");
        assert_eq!(indexes(&wal), vec![1, 2, 3]);
    }

    /// The end of the record of entry `n` in a segment holding 1..=n.
    fn end_of(n: u64) -> usize {
        (1..=n).map(|i| HEADER + payload(i).len()).sum()
    }

    fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files: Vec<_> = fs::read_dir(dir)
            .expect("ls")
            .map(|e| {
                let p = e.expect("entry").path();
                let bytes = fs::read(&p).expect("read");
                (p, bytes)
            })
            .collect();
        files.sort();
        files
    }

    /// A crash while entry 6 was being written: the file ends inside its
    /// record (a segment without allocated space), or a sector of it was
    /// never written (zeros). Either way it is cut off, and the log goes on.
    #[test]
    fn a_torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = segment_path(dir.path(), 1);
        {
            let mut wal = Wal::open(dir.path(), None).expect("open");
            append(&mut wal, 1..=6);
        }
        // The segment's space is allocated ahead: zeros follow the records.
        let whole = fs::read(&path).expect("read");
        assert_eq!(whole.len() as u64, SEGMENT_BYTES);
        assert!(whole[end_of(6)..].iter().all(|b| *b == 0));

        // Cut short inside entry 6's header, then inside its payload.
        for cut in [end_of(5) + 7, end_of(6) - 3] {
            fs::write(&path, &whole[..cut]).expect("write");
            let mut wal = Wal::open(dir.path(), None).expect("reopen");
            assert_eq!(indexes(&wal), (1..=5).collect::<Vec<_>>(), "cut at {cut}");
            assert_eq!(fs::metadata(&path).expect("stat").len(), end_of(5) as u64);
            append(&mut wal, 6..=6);
            assert_eq!(indexes(&wal), (1..=6).collect::<Vec<_>>());
        }

        // Many entries; the sectors from the one after the last record's
        // start on never reached the disk.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = segment_path(dir.path(), 1);
        {
            let mut wal = Wal::open(dir.path(), None).expect("open");
            append(&mut wal, 1..=39);
            wal.append(&[(40, vec![7u8; 2000])]).expect("append");
        }
        let mut bytes = fs::read(&path).expect("read");
        let (last, end) = (end_of(39), end_of(39) + HEADER + 2000);
        let torn_from = (last / SECTOR + 1) * SECTOR;
        assert!(torn_from + SECTOR < end, "the last record spans sectors");
        bytes[torn_from..torn_from + SECTOR].fill(0);
        fs::write(&path, &bytes).expect("write");
        let wal = Wal::open(dir.path(), None).expect("reopen");
        assert_eq!(wal.last_index(), Some(39));
    }

    /// A damaged record with intact ones after it is not a torn write: the
    /// log refuses to open, names the file and the byte, and changes nothing.
    #[test]
    fn damage_before_intact_records_fails_the_open_and_deletes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = segment_path(dir.path(), 1);
        {
            let mut wal = Wal::open(dir.path(), None).expect("open");
            append(&mut wal, 1..=10);
        }
        let mut bytes = fs::read(&path).expect("read");
        let at = end_of(4) + HEADER + 2;
        bytes[at] ^= 0x40;
        fs::write(&path, &bytes).expect("write");
        let before = snapshot(dir.path());
        let err = Wal::open(dir.path(), None).err().expect("a damaged log must not open");
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains(&format!("at byte {} (entry 5)", end_of(4))), "{text}");
        assert!(text.contains("5 intact records follow it"), "{text}");
        assert!(text.contains("Nothing was deleted"), "{text}");
        assert_eq!(snapshot(dir.path()), before, "a file changed");

        // The same bit flipped in the last record: whole, so not torn either.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = segment_path(dir.path(), 1);
        {
            let mut wal = Wal::open(dir.path(), None).expect("open");
            append(&mut wal, 1..=5);
        }
        let mut bytes = fs::read(&path).expect("read");
        bytes[end_of(5) - 1] ^= 0x40;
        fs::write(&path, &bytes).expect("write");
        let before = snapshot(dir.path());
        let text = Wal::open(dir.path(), None).err().expect("must not open").to_string();
        assert!(text.contains("the record is whole"), "{text}");
        assert_eq!(snapshot(dir.path()), before, "a file changed");
    }

    /// Damage in a segment other than the last: the later segments hold
    /// acknowledged entries, so the log refuses to open and keeps every file.
    #[test]
    fn damage_in_an_earlier_segment_fails_the_open_and_deletes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut wal = Wal::open(dir.path(), None).expect("open");
            wal.segment_bytes = 3000;
            for i in 1..=9u64 {
                wal.append(&[(i, vec![i as u8; 1000])]).expect("append");
            }
        }
        let middle = segment_path(dir.path(), 3);
        let mut bytes = fs::read(&middle).expect("read");
        bytes[HEADER + 500] ^= 1;
        fs::write(&middle, &bytes).expect("write");
        let before = snapshot(dir.path());
        assert_eq!(before.len(), 5);
        let text = Wal::open(dir.path(), None).err().expect("must not open").to_string();
        assert!(text.contains(&format!("{} at byte 0 (entry 3)", middle.display())), "{text}");
        assert!(text.contains("intact records follow it"), "{text}");
        assert_eq!(snapshot(dir.path()), before, "a file changed");
        // Damage in entries raft purged already does not matter.
        let wal = Wal::open(dir.path(), Some(4)).expect("open past the purge point");
        assert_eq!(
            wal.read(0, 100).expect("read").into_iter().map(|(i, _)| i).collect::<Vec<_>>(),
            (5..=9).collect::<Vec<_>>()
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Whatever byte of whatever record is flipped, the log never opens
        /// with fewer entries than were written unless the damaged record is
        /// the very last one (cut short by a length that runs past the file's
        /// end looks torn); otherwise it refuses to open and leaves every
        /// file as it was. It never returns a damaged entry.
        #[test]
        fn a_flipped_byte_never_costs_an_acknowledged_entry(
            sizes in proptest::collection::vec(1usize..400, 2..40),
            pick in 0usize..10_000,
            bit in 0u8..8,
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let n = sizes.len() as u64;
            {
                let mut wal = Wal::open(dir.path(), None).expect("open");
                wal.segment_bytes = 2000;
                for (i, size) in sizes.iter().enumerate() {
                    let i = i as u64 + 1;
                    wal.append(&[(i, vec![i as u8; *size])]).expect("append");
                }
            }
            // The records' bytes, file by file, with the entry each belongs to.
            let mut bytes_of_entries = Vec::new();
            let mut index = 1u64;
            for (path, bytes) in snapshot(dir.path()) {
                let mut at = 0usize;
                while let Some(header) = bytes.get(at..at + HEADER) {
                    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
                    if len == 0 {
                        break;
                    }
                    for b in at..at + HEADER + len {
                        bytes_of_entries.push((path.clone(), b, index));
                    }
                    at += HEADER + len;
                    index += 1;
                }
            }
            let (path, at, damaged) = bytes_of_entries[pick % bytes_of_entries.len()].clone();
            let mut bytes = fs::read(&path).expect("read");
            bytes[at] ^= 1 << bit;
            fs::write(&path, &bytes).expect("write");
            let before = snapshot(dir.path());
            match Wal::open(dir.path(), None) {
                Err(_) => proptest::prop_assert_eq!(snapshot(dir.path()), before, "a refused open changed files"),
                Ok(wal) => {
                    proptest::prop_assert_eq!(damaged, n, "entry {} of {} was damaged, yet the log opened", damaged, n);
                    let read = wal.read(0, u64::MAX).expect("read");
                    proptest::prop_assert_eq!(read.len() as u64, n - 1);
                    for (i, payload) in read {
                        proptest::prop_assert_eq!(payload, vec![i as u8; sizes[(i - 1) as usize]]);
                    }
                }
            }
        }
    }

    #[test]
    fn full_segments_roll_over_and_purge_deletes_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::open(dir.path(), None).expect("open");
        wal.segment_bytes = 3000;
        let big = vec![7u8; 1000];
        for i in 1..=7u64 {
            wal.append(&[(i, big.clone())]).expect("append");
        }
        let segments = || fs::read_dir(dir.path()).expect("ls").count();
        assert_eq!(segments(), 4);
        wal.truncate(5).expect("truncate");
        assert_eq!(segments(), 3, "the segment of entry 5 stays, empty");
        wal.purge(3).expect("purge");
        assert_eq!(segments(), 2);
        assert_eq!(wal.read(0, 10).expect("read").into_iter().map(|(i, _)| i).collect::<Vec<_>>(), vec![4]);
        drop(wal);
        let wal = Wal::open(dir.path(), Some(3)).expect("reopen");
        assert_eq!(wal.last_index(), Some(4));
    }
}
