//! The daemon's policy for standalone containers, in calls the API's handlers make: what
//! creating refuses, what a start is (the runtime's start, then the restart policy's watcher,
//! the removal of an `AutoRemove` container once it exits, and the streams of the clients that
//! attached before the start), what a restart and a wait for the exit (or the removal) are,
//! and whether a container waits out its restart back-off.
//!
//! Boundary: no HTTP here. The handlers parse a request into one of these calls and render
//! what it returns; the runtime does the work on the machine.

use std::collections::{HashMap, VecDeque};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_runtime::{ContainerInfo, ContainerSpec, ContainerState, RestartPolicy, Runtime};

use super::restart::Supervisor;
use super::shutdown::Shutdown;

/// How many removed `AutoRemove` containers' ends are remembered.
const AUTO_REMOVED_KEPT: usize = 256;

/// Why a container or exec operation was refused or failed; the API answers each kind with
/// its status.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// What the call names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The call clashes with the current state (running, paused, started already).
    #[error("{0}")]
    Conflict(String),
    /// The call asks for something contradictory.
    #[error("{0}")]
    InvalidArgument(String),
    /// The runtime refused or failed.
    #[error(transparent)]
    Runtime(#[from] shoal_runtime::Error),
    /// The thread of a runtime call panicked or was cancelled.
    #[error("{0}")]
    Internal(String),
}

/// Runs a blocking runtime call on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    rt: &Arc<Runtime>,
    f: impl FnOnce(&Runtime) -> Result<T, shoal_runtime::Error> + Send + 'static,
) -> Result<T, ContainerError> {
    let rt = rt.clone();
    Ok(tokio::task::spawn_blocking(move || f(&rt)).await.map_err(|e| ContainerError::Internal(e.to_string()))??)
}

/// A client waiting for a container to start, to be handed its attach stream.
pub type PendingAttach = tokio::sync::oneshot::Sender<UnixStream>;

/// A registered client's end: receives the stream when the container starts.
pub type Waiting = tokio::sync::oneshot::Receiver<UnixStream>;

/// What a start found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The container was running already: nothing was done.
    AlreadyRunning,
    /// The container was started.
    Started,
}

/// The standalone containers' policy: their restart watchers, the removal of `AutoRemove`
/// ones, and the clients waiting for a start.
pub struct Containers {
    runtime: Arc<Runtime>,
    /// Restarts standalone containers per their restart policy.
    restarts: Arc<Supervisor>,
    /// Clients attached to containers that are not started yet, by container id: the next
    /// start hands them the container's stdio.
    pending_attach: Mutex<HashMap<String, Vec<PendingAttach>>>,
    /// How the latest `AutoRemove` containers this daemon removed ended, for clients still
    /// waiting for them (`docker run --rm` waits for the removal and then reads the exit code).
    auto_removed: Arc<Mutex<VecDeque<ContainerInfo>>>,
    /// The watchers and removals run until the daemon stops.
    shutdown: Shutdown,
}

impl Containers {
    pub fn new(runtime: Arc<Runtime>, shutdown: Shutdown) -> Containers {
        Containers {
            restarts: Supervisor::new(runtime.clone(), shutdown.clone()),
            runtime,
            pending_attach: Mutex::default(),
            auto_removed: Arc::default(),
            shutdown,
        }
    }

    /// At daemon start: re-adopts the containers that kept running while no daemon watched,
    /// starts the exited ones their restart policy wants running, and has the `AutoRemove`
    /// ones started before removed once they exit (now, if they have), as if this daemon had
    /// watched them all along.
    pub fn resume(&self) {
        let restarts = self.restarts.clone();
        self.shutdown.spawn(async move { restarts.resume().await });
        let runtime = self.runtime.clone();
        let removal = self.auto_removal();
        self.shutdown.spawn(async move {
            let listed = tokio::task::spawn_blocking(move || runtime.list_containers()).await;
            match listed {
                Ok(Ok(containers)) => containers
                    .into_iter()
                    .filter(|c| c.auto_remove && c.started_at.is_some())
                    .for_each(|c| removal.remove_when_exited(c.id)),
                Ok(Err(e)) => tracing::warn!(error = %e, "listing containers to remove the --rm ones that exited"),
                Err(e) => tracing::warn!(error = %e, "listing containers to remove the --rm ones that exited"),
            }
        });
    }

    /// Whether `c` exited and waits out its restart back-off (a container a user started
    /// meanwhile is running, whatever its old watcher thinks).
    pub fn is_restarting(&self, c: &ContainerInfo) -> bool {
        c.state != ContainerState::Running && self.restarts.is_restarting(&c.id)
    }

    /// Creates a container; refuses an `AutoRemove` one with a restart policy.
    pub async fn create(&self, spec: ContainerSpec) -> Result<ContainerInfo, ContainerError> {
        if spec.auto_remove && spec.restart_policy != RestartPolicy::No {
            return Err(ContainerError::InvalidArgument(format!(
                "HostConfig.AutoRemove cannot go with restart policy {}: a container removed when it exits cannot be restarted",
                spec.restart_policy
            )));
        }
        blocking(&self.runtime, move |rt| rt.create_container(&spec)).await
    }

    /// Starts container `id` as a user does: hands it to its restart policy (even a start that
    /// failed is an exit the policy acts on) or, with `AutoRemove`, to removal once it exits,
    /// and gives the clients that attached before the start their streams (the first one from
    /// before the command runs). A start that failed leaves the container for its client to
    /// remove (and to read its exit code from first), as Docker does.
    pub async fn start(&self, id: &str) -> Result<Start, ContainerError> {
        let key = id.to_string();
        let c = blocking(&self.runtime, move |rt| rt.container(&key)).await?;
        if c.state == ContainerState::Running {
            return Ok(Start::AlreadyRunning);
        }
        let waiting = self.pending_attach.lock().map(|mut p| p.remove(&c.id)).ok().flatten().unwrap_or_default();
        if waiting.is_empty() {
            self.start_watched(c).await?;
            return Ok(Start::Started);
        }
        // The first client waiting gets the stream attached before the command runs; any other
        // attaches as the container runs.
        let id = c.id.clone();
        let started = blocking(&self.runtime, move |rt| rt.start_container_attached(&id)).await;
        if c.restart_policy != RestartPolicy::No {
            self.restarts.watch(&c.id);
        }
        let (_, stream) = started?;
        if c.auto_remove {
            self.auto_removal().remove_when_exited(c.id.clone());
        }
        let mut waiting = waiting.into_iter();
        if let Some(first) = waiting.next() {
            let _ = first.send(stream);
        }
        for other in waiting {
            let id = c.id.clone();
            if let Ok(stream) = blocking(&self.runtime, move |rt| rt.attach_container(&id)).await {
                let _ = other.send(stream);
            }
        }
        Ok(Start::Started)
    }

    /// Stops container `id` (if it runs: `signal`, then SIGKILL after `timeout`, by default its
    /// own stop timeout) and starts it again as a user's start (its restart count starts over).
    pub async fn restart(
        &self,
        id: &str,
        signal: Option<String>,
        timeout: Option<Duration>,
    ) -> Result<(), ContainerError> {
        let key = id.to_string();
        let c = blocking(&self.runtime, move |rt| rt.container(&key)).await?;
        let timeout = timeout.unwrap_or(Duration::from_secs(c.stop_timeout));
        let key = c.id.clone();
        blocking(&self.runtime, move |rt| rt.stop_container(&key, signal.as_deref(), timeout)).await?;
        self.start_watched(c).await
    }

    /// Starts a container as a user does, and hands it to its restart policy, or, with
    /// `AutoRemove`, to removal once it exits.
    async fn start_watched(&self, c: ContainerInfo) -> Result<(), ContainerError> {
        let id = c.id.clone();
        let started = blocking(&self.runtime, move |rt| rt.start_container(&id)).await;
        // Even a start that failed is an exit the policy acts on.
        if c.restart_policy != RestartPolicy::No {
            self.restarts.watch(&c.id);
        }
        if started.is_ok() && c.auto_remove {
            self.auto_removal().remove_when_exited(c.id.clone());
        }
        started.map(drop)
    }

    /// Waits for container `id` to exit and, with `until_removed`, to be gone too (removal
    /// follows the exit closely with `AutoRemove`, or waits for a user); returns how it ended.
    /// An `AutoRemove` container this daemon removed meanwhile ended as the daemon saw it.
    pub async fn wait_exit(&self, id: &str, until_removed: bool) -> Result<ContainerInfo, shoal_runtime::Error> {
        let done = match self.runtime.wait_container(id).await {
            Ok(done) => done,
            Err(e) => self.auto_removed(id).ok_or(e)?,
        };
        if until_removed {
            let mut pause = Duration::from_millis(2);
            loop {
                let rt = self.runtime.clone();
                let key = id.to_string();
                match tokio::task::spawn_blocking(move || rt.container(&key)).await {
                    Ok(Ok(_)) => tokio::time::sleep(pause).await,
                    _ => break,
                }
                pause = (pause * 2).min(Duration::from_millis(100));
            }
        }
        Ok(done)
    }

    /// Registers a client for the next start of `c` (if it is not started yet), before its
    /// connection is upgraded, so that a start the client sends as soon as it is attached finds
    /// it waiting.
    pub fn register_attach(&self, c: &ContainerInfo) -> Option<Waiting> {
        if c.state != ContainerState::Created {
            return None;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pending_attach.lock().ok()?.entry(c.id.clone()).or_default().push(tx);
        Some(rx)
    }

    /// A stream to the shim of `c`: from its start if `waiting` (see
    /// [`Containers::register_attach`]), else at once if it runs; `None` once it has exited. A
    /// waiting client also checks now and then whether the container started without it (a
    /// start racing with the registration).
    pub async fn attach_stream(&self, c: &ContainerInfo, mut waiting: Option<Waiting>) -> Option<UnixStream> {
        loop {
            if let Some(rx) = waiting.as_mut() {
                tokio::select! {
                    got = rx => return got.ok(),
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
            let rt = self.runtime.clone();
            let id = c.id.clone();
            let state = tokio::task::spawn_blocking(move || rt.container(&id)).await.ok()?.ok()?.state;
            match state {
                ContainerState::Exited => return None,
                ContainerState::Running => {
                    let rt = self.runtime.clone();
                    let id = c.id.clone();
                    return match tokio::task::spawn_blocking(move || rt.attach_container(&id)).await.ok()? {
                        Ok(stream) => Some(stream),
                        Err(e) => {
                            tracing::warn!(container = %c.name, "attach: {e}");
                            None
                        }
                    };
                }
                ContainerState::Created if waiting.is_none() => waiting = self.register_attach(c),
                ContainerState::Created => {}
            }
        }
    }

    /// How the `AutoRemove` container `id`, removed by this daemon, ended.
    fn auto_removed(&self, id: &str) -> Option<ContainerInfo> {
        let kept = self.auto_removed.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter().rev().find(|c| c.id == id).cloned()
    }

    fn auto_removal(&self) -> AutoRemoval {
        AutoRemoval {
            runtime: self.runtime.clone(),
            removed: self.auto_removed.clone(),
            shutdown: self.shutdown.clone(),
        }
    }
}

/// What removing `AutoRemove` containers once they exit takes, for the tasks that do it.
struct AutoRemoval {
    runtime: Arc<Runtime>,
    removed: Arc<Mutex<VecDeque<ContainerInfo>>>,
    shutdown: Shutdown,
}

impl AutoRemoval {
    /// Removes the `AutoRemove` container `id` once it has exited, remembering how it ended.
    fn remove_when_exited(&self, id: String) {
        let (runtime, removed) = (self.runtime.clone(), self.removed.clone());
        self.shutdown.spawn(async move {
            let Ok(done) = runtime.wait_container(&id).await else { return };
            {
                let mut kept = removed.lock().unwrap_or_else(|p| p.into_inner());
                if kept.len() >= AUTO_REMOVED_KEPT {
                    kept.pop_front();
                }
                kept.push_back(done);
            }
            let removing = tokio::task::spawn_blocking(move || runtime.remove_container(&id, true)).await;
            match removing {
                // Removed already: by a user, or by its client (`run --rm` removes it too).
                Ok(Err(shoal_runtime::Error::NotFound { .. })) | Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "removing a --rm container that exited"),
                Err(e) => tracing::warn!(error = %e, "removing a --rm container that exited"),
            }
        });
    }
}
