//! Whether this manager's raft storage can take writes, and what it does
//! when it cannot for want of space.
//!
//! raft treats any error of its storage as fatal: the member stops for good.
//! A full disk is not fatal, so it never reaches raft as an error: a write
//! that fails for want of space ([`Retry`]) is tried again, in place, until
//! there is room (or the manager stops), and the problem is recorded
//! ([`StorageHealth`]) for `node ls` and `info` meanwhile. Before a write
//! goes to raft at all, the leader checks that its disk has room for it
//! ([`StorageHealth::check_space`]), so that a full disk fails writes with a
//! clear error instead of leaving them waiting.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The free space a write needs on the raft directory's filesystem: room
/// for a new log segment and the database's growth.
pub const SPACE_RESERVE: u64 = 32 << 20;

/// What is wrong with this manager's raft storage, if anything.
#[derive(Debug, Clone)]
pub struct StorageHealth {
    dir: PathBuf,
    problems: Arc<Mutex<Problems>>,
}

#[derive(Debug, Default)]
struct Problems {
    /// A storage operation that waits for space.
    waiting: Option<String>,
    /// The last space check that refused a write.
    low: Option<String>,
    /// When space was last found sufficient.
    roomy_at: Option<std::time::Instant>,
}

/// How long a check that found room holds (a check is a `statvfs`; writes
/// come by the thousand a second).
const CHECK_HOLDS: Duration = Duration::from_millis(100);

impl StorageHealth {
    /// The health of the raft state in `dir`.
    pub fn new(dir: &Path) -> StorageHealth {
        StorageHealth { dir: dir.to_path_buf(), problems: Arc::default() }
    }

    fn problems(&self) -> MutexGuard<'_, Problems> {
        self.problems.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current problem, said for a user; `None` when writes work. A
    /// disk found too full for a write is looked at again.
    pub fn problem(&self) -> Option<String> {
        let (waiting, low) = {
            let p = self.problems();
            (p.waiting.clone(), p.low.is_some())
        };
        if waiting.is_some() {
            return waiting;
        }
        if low {
            return self.check_space().err();
        }
        None
    }

    fn no_space(&self, what: &str, detail: &str) -> String {
        format!(
            "this manager's raft storage is out of space ({what}: {detail}): free space on the filesystem of {}; \
             writes resume by themselves once there is room",
            self.dir.display()
        )
    }

    /// Refuses a write when the raft directory's filesystem has less than
    /// [`SPACE_RESERVE`] free, saying so.
    pub fn check_space(&self) -> Result<(), String> {
        if self.problems().roomy_at.is_some_and(|at| at.elapsed() < CHECK_HOLDS) {
            return Ok(());
        }
        let free =
            nix::sys::statvfs::statvfs(&self.dir).map(|s| s.blocks_available().saturating_mul(s.fragment_size()));
        let low = match free {
            Ok(free) if free < SPACE_RESERVE => {
                Some(self.no_space("a write needs room", &format!("{free} bytes free, writes need {SPACE_RESERVE}")))
            }
            // Unknown space: the write itself will tell.
            _ => None,
        };
        let mut p = self.problems();
        p.low = low.clone();
        p.roomy_at = low.is_none().then(std::time::Instant::now);
        match low {
            Some(m) => Err(m),
            None => Ok(()),
        }
    }

    fn waiting(&self, problem: String) {
        self.problems().waiting = Some(problem);
    }

    fn resumed(&self) {
        self.problems().waiting = None;
    }
}

/// Whether an I/O error means the filesystem has no room (or the user no
/// quota) left.
pub fn is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == nix::libc::ENOSPC || code == nix::libc::EDQUOT)
}

/// Tries storage operations again while they fail for want of space.
#[derive(Debug, Clone)]
pub struct Retry {
    health: StorageHealth,
    stop: CancellationToken,
}

impl Retry {
    /// Retries that record problems in `health` and give up once `stop` is
    /// cancelled.
    pub fn new(health: StorageHealth, stop: CancellationToken) -> Retry {
        Retry { health, stop }
    }

    /// The health the retries record problems in.
    pub fn health(&self) -> &StorageHealth {
        &self.health
    }

    /// Runs `op` (its argument: whether it is a retry) until it succeeds,
    /// fails for another reason than space, or the manager stops. The
    /// first try runs in place; the waits between retries run where
    /// blocking is allowed.
    pub fn run<T>(&self, what: &str, mut op: impl FnMut(bool) -> io::Result<T>) -> io::Result<T> {
        match op(false) {
            Err(e) if is_no_space(&e) && !self.stop.is_cancelled() => {
                tracing::warn!(error = %e, "{what}: no space left; retrying until there is");
                self.health.waiting(self.health.no_space(what, &e.to_string()));
                off_runtime(|| self.wait_and_retry(what, op))
            }
            done => done,
        }
    }

    fn wait_and_retry<T>(&self, what: &str, mut op: impl FnMut(bool) -> io::Result<T>) -> io::Result<T> {
        let mut pause = Duration::from_millis(100);
        loop {
            // Sleep in slices, so that a stop is seen soon.
            let until = std::time::Instant::now() + pause;
            while std::time::Instant::now() < until {
                if self.stop.is_cancelled() {
                    return Err(io::Error::other(format!(
                        "{what}: gave up waiting for space: the manager is stopping"
                    )));
                }
                std::thread::sleep(Duration::from_millis(50).min(pause));
            }
            match op(true) {
                Ok(v) => {
                    tracing::info!("{what}: there is space again; writes go on");
                    self.health.resumed();
                    return Ok(v);
                }
                Err(e) if is_no_space(&e) => {
                    self.health.waiting(self.health.no_space(what, &e.to_string()));
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    self.health.resumed();
                    return Err(e);
                }
            }
        }
    }
}

/// Runs `f`, which may block for long, without holding up the other tasks
/// of a multi-threaded runtime.
fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enospc() -> io::Error {
        io::Error::from_raw_os_error(nix::libc::ENOSPC)
    }

    #[test]
    fn a_write_without_space_waits_for_it_and_says_so_meanwhile() {
        let dir = tempfile::tempdir().expect("tempdir");
        let health = StorageHealth::new(dir.path());
        let retry = Retry::new(health.clone(), CancellationToken::new());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut tries = 0;
        let seen_in = seen.clone();
        let probe = health.clone();
        let done = retry.run("appending to the raft log", |again| {
            tries += 1;
            seen_in.lock().expect("lock").push((again, probe.problem()));
            if tries < 3 {
                Err(enospc())
            } else {
                Ok(tries)
            }
        });
        assert_eq!(done.expect("it worked once there was room"), 3);
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(seen[0], (false, None));
        assert!(seen[1].0 && seen[1].1.as_deref().is_some_and(|p| p.contains("out of space")), "{seen:?}");
        assert!(health.problem().is_none(), "the problem outlived it");
        // Another error is not retried.
        let err = retry.run("x", |_| -> io::Result<()> { Err(io::Error::other("broken")) });
        assert_eq!(err.expect_err("not retried").to_string(), "broken");
    }

    #[test]
    fn a_stop_ends_the_wait() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stop = CancellationToken::new();
        let retry = Retry::new(StorageHealth::new(dir.path()), stop.clone());
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            stop.cancel();
        });
        let err = retry.run("flushing", |_| -> io::Result<()> { Err(enospc()) }).expect_err("gave up");
        assert!(err.to_string().contains("stopping"), "{err}");
        stopper.join().expect("the stopper");
    }
}
