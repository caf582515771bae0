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

impl Wal {
    /// Opens (or creates) the log in `dir`. Entries at or below `purged`
    /// are gone as far as raft is concerned and are skipped.
    pub fn open(dir: &Path, purged: Option<u64>) -> io::Result<Wal> {
        fs::create_dir_all(dir)?;
        let mut firsts = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
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
        };
        // Index 0 is a real entry (raft's first membership): "nothing
        // purged" is not "purged up to 0".
        let kept = |index: u64| purged.is_none_or(|p| index > p);
        let mut ended = false;
        for first in firsts {
            let path = segment_path(dir, first);
            if ended {
                // Behind a torn record: written after what the log now ends with.
                fs::remove_file(&path)?;
                continue;
            }
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            let bytes = fs::read(&path)?;
            let mut offset = 0usize;
            while offset + HEADER <= bytes.len() {
                let field = |at: usize, n: usize| &bytes[offset + at..offset + at + n];
                let len = u32::from_le_bytes(field(0, 4).try_into().unwrap_or_default()) as usize;
                let sum = u32::from_le_bytes(field(4, 4).try_into().unwrap_or_default());
                let index = u64::from_le_bytes(field(8, 8).try_into().unwrap_or_default());
                if len == 0 || offset + HEADER + len > bytes.len() {
                    break;
                }
                let payload = &bytes[offset + HEADER..offset + HEADER + len];
                if crc(index, payload) != sum {
                    break;
                }
                let follows = wal.positions.is_empty() || index == wal.next_index();
                if kept(index) && !follows {
                    break;
                }
                if kept(index) {
                    if wal.positions.is_empty() {
                        wal.first = index;
                    }
                    wal.positions.push_back(Pos { segment: first, offset: offset as u64, len: len as u32 });
                }
                offset += HEADER + len;
            }
            // Zeros after the last record are allocated space; anything else
            // is a torn or stale write, cut off (with the space after it).
            if bytes[offset..].iter().any(|b| *b != 0) {
                file.set_len(offset as u64)?;
                file.sync_all()?;
                ended = true;
            }
            wal.segments.push(Segment { first, file: Arc::new(file), end: offset as u64, unflushed: false });
        }
        Ok(wal)
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
        for file in self.take_unflushed() {
            file.sync_data()?;
        }
        Ok(())
    }

    /// The files written since they were last taken, to be flushed (with
    /// `fdatasync`, outside the lock that guards the log) by the taker.
    pub fn take_unflushed(&mut self) -> Vec<Arc<File>> {
        self.segments.iter_mut().filter_map(|s| std::mem::take(&mut s.unflushed).then(|| s.file.clone())).collect()
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
        segment.file.write_all_at(&buf, segment.end)?;
        segment.unflushed = true;
        segment.end += buf.len() as u64;
        if self.positions.is_empty() {
            self.first = *first_new;
        }
        self.positions.extend(added);
        Ok(())
    }

    fn start_segment(&mut self, first: u64) -> io::Result<()> {
        let path = segment_path(&self.dir, first);
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
        // Best effort: without the allocation appends still work, each one
        // growing the file.
        let _ = nix::fcntl::fallocate(&file, nix::fcntl::FallocateFlags::empty(), 0, self.segment_bytes as i64);
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

    #[test]
    fn a_torn_tail_ends_the_log_and_is_cut_off() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path;
        {
            let mut wal = Wal::open(dir.path(), None).expect("open");
            append(&mut wal, 1..=5);
            path = segment_path(dir.path(), 1);
        }
        // The segment's space is allocated ahead: zeros follow the records.
        let mut bytes = fs::read(&path).expect("read");
        assert_eq!(bytes.len() as u64, SEGMENT_BYTES);
        let len5 = (1..=5).map(|i| HEADER + payload(i).len()).sum::<usize>();
        assert!(bytes[len5..].iter().all(|b| *b == 0));
        // A crash in the middle of writing entry 6, and a flipped bit in 5.
        bytes[len5..len5 + 7].copy_from_slice(&[9, 0, 0, 0, 1, 2, 3]);
        fs::write(&path, &bytes).expect("write");
        let wal = Wal::open(dir.path(), None).expect("reopen");
        assert_eq!(indexes(&wal), (1..=5).collect::<Vec<_>>());
        assert_eq!(fs::metadata(&path).expect("stat").len(), len5 as u64);
        drop(wal);
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        fs::write(&path, &bytes).expect("write");
        let mut wal = Wal::open(dir.path(), None).expect("reopen");
        assert_eq!(indexes(&wal), (1..=4).collect::<Vec<_>>());
        append(&mut wal, 5..=6);
        assert_eq!(indexes(&wal), (1..=6).collect::<Vec<_>>());
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
