//! Process file descriptors (`pidfd_open(2)`): a handle on one process that cannot be confused
//! with a later process reusing its pid. It becomes readable when the process exits, which lets
//! any process (not only the parent) wait for a shim, blocking or with tokio.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use tokio::io::{unix::AsyncFd, Interest};

use crate::procfs::ProcessIdentity;

/// A pidfd on a process known by its [`ProcessIdentity`].
#[derive(Debug)]
pub(crate) struct PidFd {
    fd: OwnedFd,
}

impl PidFd {
    /// Opens a pidfd on `identity`'s process; `None` when that process has already ended.
    pub(crate) fn open(identity: &ProcessIdentity) -> io::Result<Option<PidFd>> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, identity.pid, 0) };
        if ret < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ESRCH) => Ok(None),
                _ => Err(e),
            };
        }
        let raw = RawFd::try_from(ret).map_err(|_| io::Error::other("pidfd out of range"))?;
        // SAFETY: the kernel just gave us this fd and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // The pid may have been reused before the open: make sure the fd names our process.
        if !identity.is_running() {
            return Ok(None);
        }
        Ok(Some(PidFd { fd }))
    }

    /// Sends `signal`; a process that has just exited is not an error.
    pub(crate) fn signal(&self, signal: Signal) -> io::Result<()> {
        // SAFETY: the fd is a valid pidfd; a null siginfo means "as kill(2) would".
        let ret = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                signal as libc::c_int,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if ret < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Waits up to `timeout` for the process to exit; `true` if it did.
    pub(crate) fn wait_timeout(&self, timeout: Duration) -> io::Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            let ms = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
            // SAFETY: one valid pollfd for the duration of the call.
            let ret = unsafe { libc::poll(&mut pfd, 1, ms) };
            if ret > 0 {
                return Ok(true);
            }
            if ret == 0 {
                return Ok(false);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Resolves when the process exits. Needs a tokio runtime with I/O enabled.
    pub(crate) async fn exited(self) -> io::Result<()> {
        // SAFETY: the OwnedFd moves into the AsyncFd and stays open, unchanged, as long as it.
        let fd = unsafe { AsyncFd::register_with_interest(self.fd, Interest::READABLE) }.map_err(io::Error::from)?;
        let _ready = fd.readable().await?;
        Ok(())
    }
}
