//! The handshake between whoever starts a container ([`super::launch`], the daemon's side) and
//! the container's shim ([`crate::shim`]), the one module both sides use so that they cannot
//! disagree: the starter may hand an attached client over as the shim's stdin, saying so in
//! [`ATTACH_FD_ENV`]; the shim answers with one JSON line on its stdout ([`Handshake`]) once the
//! command has been executed, or has failed to be.
//!
//! Boundary: the wire only; spawning and reaping the shim are `launch`'s, starting the
//! container is the shim's.

use std::{
    fs,
    io::{self, Read},
    os::{
        fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd},
        unix::net::UnixStream,
    },
    process::ChildStdout,
    time::{Duration, Instant},
};

use nix::unistd::dup2_stdin;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext};

/// The environment variable naming the fd of a client attached from the start (see
/// [`crate::attach`]), set by the starter when it hands one over.
pub(crate) const ATTACH_FD_ENV: &str = "SHOAL_SHIM_ATTACH_FD";

/// The one line a shim writes to its stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Handshake {
    /// The command was executed; `pid` is the container's init on the host.
    Started { pid: i32 },
    /// The command could not be executed; the container has already been recorded as exited.
    Failed { error: String, exit_code: i32 },
}

impl Handshake {
    /// The line the shim writes: the JSON, then a newline.
    pub(crate) fn line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("a handshake always serializes");
        line.push(b'\n');
        line
    }

    /// The report in `line` (as [`read_line`] returns it).
    pub(crate) fn parse(line: &[u8]) -> Result<Handshake, Error> {
        if line.is_empty() {
            return Err(Error::io("the shim exited without reporting", io::Error::from(io::ErrorKind::UnexpectedEof)));
        }
        serde_json::from_slice(line).map_err(|e| {
            Error::io(
                format!("the shim reported {:?}", String::from_utf8_lossy(line)),
                io::Error::new(io::ErrorKind::InvalidData, e),
            )
        })
    }
}

/// Reads up to the first newline (or EOF) of the shim's stdout, giving up after `timeout`.
pub(crate) fn read_line(mut pipe: ChildStdout, timeout: Duration) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut line = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, format!("no report within {}s", timeout.as_secs())));
        }
        let mut pfd = libc::pollfd { fd: pipe.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        if unsafe { libc::poll(&mut pfd, 1, ms) } < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if pfd.revents == 0 {
            continue;
        }
        let n = match pipe.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(line);
        }
        line.extend_from_slice(&buf[..n]);
        if let Some(end) = line.iter().position(|&b| b == b'\n') {
            line.truncate(end);
            return Ok(line);
        }
    }
}

/// The shim's side: the client the starter attached from the start, if it handed one over.
pub(crate) fn attached_client() -> Result<Option<UnixStream>, Error> {
    match std::env::var(ATTACH_FD_ENV).ok().and_then(|v| v.parse::<RawFd>().ok()) {
        Some(fd) => take_attached(fd).map(Some),
        None => Ok(None),
    }
}

/// The stream of the client attached from the start, passed to us as fd `fd` (our stdin, as
/// [`super::launch`] does it, which then becomes /dev/null).
fn take_attached(fd: RawFd) -> Result<UnixStream, Error> {
    if fd != 0 {
        // SAFETY: the starter passed this fd to us for this purpose alone; nothing else owns it.
        return Ok(UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) }));
    }
    // SAFETY: fd 0 is open (the starter made it the stream); F_DUPFD_CLOEXEC only reads it.
    let moved = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3) };
    if moved < 0 {
        return Err(Error::io("taking the attached client from stdin", io::Error::last_os_error()));
    }
    // SAFETY: `moved` was just made by F_DUPFD_CLOEXEC and nothing else owns it.
    let stream = UnixStream::from(unsafe { OwnedFd::from_raw_fd(moved) });
    let null = fs::File::open("/dev/null").context(|| "opening /dev/null".to_string())?;
    dup2_stdin(null.as_fd()).context(|| "pointing stdin at /dev/null".to_string())?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_lines() {
        let started: Handshake = serde_json::from_str(r#"{"pid":42}"#).expect("started");
        assert_eq!(started, Handshake::Started { pid: 42 });
        let failed: Handshake =
            serde_json::from_str(r#"{"error":"exec \"x\": no such file or directory","exit_code":127}"#)
                .expect("failed");
        assert!(matches!(failed, Handshake::Failed { exit_code: 127, .. }));
        assert_eq!(serde_json::to_string(&Handshake::Started { pid: 7 }).expect("json"), r#"{"pid":7}"#);
    }

    #[test]
    fn a_line_parses_back() {
        let failed = Handshake::Failed { error: "no such file".into(), exit_code: 127 };
        let line = failed.line();
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(Handshake::parse(&line[..line.len() - 1]).expect("parses"), failed);
        assert!(Handshake::parse(b"").is_err());
        assert!(Handshake::parse(b"{\"pid\":").is_err());
    }
}
