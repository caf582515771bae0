//! The daemon's side of starting a container: spawn the shim (`shim_exe shim_args… <dir>`),
//! stdin from /dev/null (or the attached client), stderr appended to `shim.log`, and read the
//! one line it writes to its stdout once the command has been executed, or has failed to be
//! (the wire of both is [`super::handshake`]'s). The shim puts itself in its own session.
//!
//! The shim stays a child of the process that started it, kept in a [`Reaper`]: the runtime's
//! wait paths reap a shim once they have seen it exit, and each launch reaps any others that
//! have exited meanwhile (no thread per start). After a daemon restart, shims are orphans,
//! reaped by init (or a subreaper).

use std::{
    fs,
    os::fd::OwnedFd,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::Duration,
};

use super::handshake::{self, Handshake, ATTACH_FD_ENV};
use crate::{
    container::ContainerPaths,
    error::{Error, IoContext},
};

/// How long a shim may take to report that the command started.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

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
    let line = handshake::read_line(stdout, HANDSHAKE_TIMEOUT);
    if line.is_err() {
        let _ = child.kill();
    }
    reaper.adopt(child);
    let line = line.context(|| "reading the shim's report".to_string())?;
    Handshake::parse(&line)
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
