//! How much an image load, import or upload may stage: whatever it writes before it is an
//! image (an upload, an unpacked archive, a blob being hashed) must leave the file system of
//! the store a spare margin, so that an oversized or decompression-bomb archive is refused
//! with a clear error instead of filling the disk the containers and the raft log live on.
//!
//! Boundary: only measures; the callers decide what to write and clean up what they wrote.

use std::{io, path::Path};

use nix::sys::statvfs::statvfs;

use crate::error::Error;

/// The margin kept free: 5% of the file system, at most this much.
const MAX_SPARE: u64 = 1 << 30;
/// Streams of unknown size are measured again after this many bytes.
const CHECK_EVERY: u64 = 16 << 20;

/// Refuses to stage `needed` more bytes under `dir` (for `what`, in the message) unless the
/// file system keeps its spare margin afterwards.
pub(crate) fn ensure(dir: &Path, needed: u64, what: &str) -> Result<(), Error> {
    let stats =
        statvfs(dir).map_err(|e| Error::io(format!("measuring the free space under {}", dir.display()), e.into()))?;
    let unit = stats.fragment_size().max(1);
    let free = stats.blocks_available().saturating_mul(unit);
    let spare = (stats.blocks().saturating_mul(unit) / 20).min(MAX_SPARE);
    if free.saturating_sub(spare) >= needed {
        return Ok(());
    }
    Err(Error::conflict(format!(
        "not enough space under {} for {what}: it needs {needed} more bytes, the file system has {free} free and keeps {spare} spare; free some space (image prune) or use a smaller archive",
        dir.display()
    )))
}

/// A writer that checks [`ensure`] every [`CHECK_EVERY`] bytes, for streams whose size is
/// only known at their end.
pub(crate) struct Metered<W> {
    inner: W,
    dir: std::path::PathBuf,
    what: &'static str,
    since_check: u64,
}

impl<W> Metered<W> {
    pub(crate) fn new(inner: W, dir: &Path, what: &'static str) -> Metered<W> {
        // The first write is checked too: a full disk refuses even a small stream.
        Metered { inner, dir: dir.to_path_buf(), what, since_check: CHECK_EVERY }
    }

    pub(crate) fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

impl<W: io::Write> io::Write for Metered<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.since_check >= CHECK_EVERY {
            ensure(&self.dir, CHECK_EVERY, self.what).map_err(io::Error::other)?;
            self.since_check = 0;
        }
        let n = self.inner.write(buf)?;
        self.since_check += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// An I/O error from a [`Metered`] writer as the runtime's error: the refusal itself when
/// space ran out, else the error with `context`.
pub(crate) fn io_error(e: io::Error, context: impl FnOnce() -> String) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        let inner = e.into_inner().expect("checked just above that it has an inner error");
        return *inner.downcast::<Error>().expect("checked just above that it is a runtime error");
    }
    Error::io(context(), e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_would_eat_the_spare_margin() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(ensure(dir.path(), 1, "a test").is_ok());
        let err = ensure(dir.path(), u64::MAX / 2, "a test").expect_err("no file system is that big");
        assert!(matches!(err, Error::Conflict { .. }), "{err}");
        assert!(err.to_string().contains("a test"), "{err}");

        let mut metered = Metered::new(Vec::new(), dir.path(), "a test");
        io::Write::write_all(&mut metered, b"data").expect("small writes pass");
        assert_eq!(metered.get_mut(), b"data");
    }
}
