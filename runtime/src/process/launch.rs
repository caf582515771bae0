//! The daemon's side of starting a container: spawn the shim (`shim_exe shim_args… <dir>`),
//! stdin from /dev/null (or the attached client), stderr appended to `shim.log`, and read the
//! one line it writes to its stdout once the command has been executed, or has failed to be.
//! The shim puts itself in its own session.
//!
//! The shim stays a child of the process that started it, kept in a [`Reaper`]: the runtime's
//! wait paths reap a shim once they have seen it exit, and each launch reaps any others that
//! have exited meanwhile (no thread per start). After a daemon restart, shims are orphans,
//! reaped by init (or a subreaper).

use std::{
    fs,
    io::{self, Read},
    os::fd::{AsRawFd, OwnedFd},
    path::PathBuf,
    process::{Child, ChildStdout, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use crate::{
    container::ContainerPaths,
    error::{Error, IoContext},
    shim::ATTACH_FD_ENV,
};

/// How long a shim may take to report that the command started.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// The one line a shim writes to its stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Handshake {
    /// The command was executed; `pid` is the container's init on the host.
    Started { pid: i32 },
    /// The command could not be executed; the container has already been recorded as exited.
    Failed { error: String, exit_code: i32 },
}

/// How to run a shim: the executable and the arguments before the container directory.
#[derive(Debug, Clone)]
pub(crate) struct ShimCommand {
    pub exe: PathBuf,
    pub args: Vec<String>,
}

/// Starts the shim for the container at `paths` and returns its report. `attach`, if given,
/// is handed to the shim as a client attached from before the command runs.
pub(crate) fn launch(
    shim: &ShimCommand,
    reaper: &Reaper,
    paths: &ContainerPaths,
    attach: Option<OwnedFd>,
) -> Result<Handshake, Error> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(paths.shim_log())
        .context(|| format!("opening {}", paths.shim_log().display()))?;
    let mut command = Command::new(&shim.exe);
    command.args(&shim.args).arg(paths.dir()).current_dir("/").stdout(Stdio::piped()).stderr(log);
    // An attached client is handed over as the shim's stdin (which the shim then points at
    // /dev/null): with no code to run between fork and exec, the standard library spawns
    // the shim with posix_spawn (vfork), which does not copy this process's page tables as
    // fork does: a cost that grows with the caller (the daemon). The shim starts its own
    // session itself.
    match attach {
        Some(fd) => {
            command.stdin(Stdio::from(fd)).env(ATTACH_FD_ENV, "0");
        }
        None => {
            command.stdin(Stdio::null());
        }
    }
    let spawned = command.spawn().context(|| format!("starting the shim {}", shim.exe.display()));
    // The shim has its copy of the attach stream; ours (held by the command) must go, or the
    // client would never see the stream end.
    drop(command);
    let mut child = spawned?;
    let stdout = child.stdout.take().expect("the shim's stdout is piped");
    let line = read_line(stdout, HANDSHAKE_TIMEOUT);
    if line.is_err() {
        let _ = child.kill();
    }
    reaper.adopt(child);
    let line = line.context(|| "reading the shim's report".to_string())?;
    if line.is_empty() {
        return Err(Error::io("the shim exited without reporting", io::Error::from(io::ErrorKind::UnexpectedEof)));
    }
    serde_json::from_slice(&line).map_err(|e| {
        Error::io(
            format!("the shim reported {:?}", String::from_utf8_lossy(&line)),
            io::Error::new(io::ErrorKind::InvalidData, e),
        )
    })
}

/// Reads up to the first newline (or EOF), giving up after `timeout`.
fn read_line(mut pipe: ChildStdout, timeout: Duration) -> io::Result<Vec<u8>> {
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

/// The shims this process started and has not reaped yet (an exited child stays a zombie until
/// its parent waits for it).
#[derive(Debug, Default)]
pub(crate) struct Reaper {
    state: Mutex<Children>,
}

#[derive(Debug, Default)]
struct Children {
    children: Vec<Child>,
    /// How many were left after the last sweep: the next launch sweeps once the list has
    /// doubled since, so a start costs O(1) amortized whatever the number of running shims.
    after_sweep: usize,
}

impl Reaper {
    /// Keeps `child` until it has exited and been reaped; first reaps the exited others, now
    /// and then.
    fn adopt(&self, child: Child) {
        let mut state = self.lock();
        if state.children.len() >= 2 * state.after_sweep.max(8) {
            state.children.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
            state.after_sweep = state.children.len();
        }
        state.children.push(child);
    }

    /// Reaps the shim with this pid if it is our child and has exited (a waiter calls it once
    /// it has seen the shim exit).
    pub(crate) fn reap(&self, pid: i32) {
        let Ok(pid) = u32::try_from(pid) else { return };
        // A child whose wait fails is gone already (reaped elsewhere): drop it too.
        self.lock().children.retain_mut(|c| c.id() != pid || matches!(c.try_wait(), Ok(None)));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Children> {
        // The list stays consistent whatever panicked while holding it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
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
}
