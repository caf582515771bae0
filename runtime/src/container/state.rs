//! A container's state, derived from files so that any process (a restarted daemon included)
//! sees the same thing: `state.json` (written empty at create, then by the shim once the
//! command runs: the shim's and the container init's identities), `exit.json` (written by the
//! shim when the container ends) and whether the recorded shim is still alive.
//!
//! Created: no shim recorded. Running: the shim recorded in `state.json` is alive. Exited:
//! `exit.json` exists, or the shim is gone without writing it (exit code 255, with an error).
//! A container with a restart policy also has `restart.json` ([`RestartRecord`]).

use serde::{Deserialize, Serialize};

use super::{
    restart::{RestartPolicy, RestartRecord},
    spec::{ContainerConfig, DEFAULT_STOP_TIMEOUT},
    ContainerInfo, ContainerPaths, ContainerState,
};
use crate::{error::Error, jsonfile, procfs::ProcessIdentity};

/// Exit code for a container whose shim vanished without recording one (as Docker uses).
const LOST_EXIT_CODE: i32 = 255;

/// `state.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct StateFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Started>,
}

/// What the shim records once the container's command has been executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Started {
    /// The shim, which owns the container's stdio and exit status.
    pub shim: ProcessIdentity,
    /// The container's init (its pid 1), as seen from the host.
    pub init: ProcessIdentity,
    pub started_at: i64,
}

/// `exit.json`, written once by the shim when the container ends (or fails to start).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExitFile {
    /// The exit status, or 128 + the signal that killed the process.
    pub exit_code: i32,
    pub finished_at: i64,
    /// Why the container could not run, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The kernel's OOM killer killed a process of the container.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oom_killed: bool,
}

/// A container's derived state together with what was recorded about its processes.
#[derive(Debug, Clone)]
pub(crate) struct Observed {
    pub info: ContainerInfo,
    pub started: Option<Started>,
    pub cgroup: Option<super::spec::CgroupPaths>,
}

/// Derives the current state of the container `config` whose files are at `paths`.
pub(crate) fn observe(paths: &ContainerPaths, config: &ContainerConfig) -> Result<Observed, Error> {
    let state: StateFile = jsonfile::read_volatile(&paths.state())?.unwrap_or_default();
    let mut info = ContainerInfo {
        id: config.id.clone(),
        name: config.name.clone(),
        image: config.image.clone(),
        image_id: config.image_id.clone(),
        labels: config.labels.clone(),
        state: ContainerState::Created,
        pid: None,
        exit_code: None,
        error: None,
        created_at: config.created_at,
        started_at: state.started.map(|s| s.started_at),
        finished_at: None,
        command: config.process.args.clone(),
        oom_killed: false,
        paused: false,
        stop_signal: config.host.stop_signal.clone().unwrap_or_else(|| "SIGTERM".to_string()),
        stop_timeout: config.host.stop_timeout.unwrap_or(DEFAULT_STOP_TIMEOUT),
        restart_policy: config.host.restart_policy,
        restart_count: 0,
        stopped_by_user: false,
        devices: config
            .host
            .devices
            .iter()
            .map(|d| format!("{}:{}:{}", d.host_path.display(), d.path, d.permissions))
            .collect(),
        tty: config.process.stdio.tty,
        open_stdin: config.process.stdio.open_stdin,
        stdin_once: config.process.stdio.stdin_once,
        auto_remove: config.host.auto_remove,
    };
    // Only a supervised container has a record worth a read.
    if config.host.restart_policy != RestartPolicy::No {
        let record: RestartRecord = jsonfile::read(&paths.restart())?.unwrap_or_default();
        info.restart_count = record.count;
        info.stopped_by_user = record.stopped_by_user;
    }
    let mut exit: Option<ExitFile> = jsonfile::read_volatile(&paths.exit())?;
    if exit.is_none() {
        if let Some(started) = state.started {
            if started.shim.is_running() {
                info.state = ContainerState::Running;
                info.pid = Some(started.init.pid);
                info.paused = config.host.cgroup.as_ref().is_some_and(|c| c.is_frozen());
            } else {
                // The shim may have recorded the exit between our two reads.
                exit = jsonfile::read_volatile(&paths.exit())?;
                if exit.is_none() {
                    info.state = ContainerState::Exited;
                    info.exit_code = Some(LOST_EXIT_CODE);
                    info.error = Some(format!(
                        "the container's shim (pid {}) ended without recording an exit status; see {}",
                        started.shim.pid,
                        paths.shim_log().display()
                    ));
                }
            }
        }
    }
    if let Some(exit) = exit {
        info.state = ContainerState::Exited;
        info.exit_code = Some(exit.exit_code);
        info.finished_at = Some(exit.finished_at);
        info.error = exit.error;
        info.oom_killed = exit.oom_killed;
    }
    Ok(Observed { info, started: state.started, cgroup: config.host.cgroup.clone() })
}
