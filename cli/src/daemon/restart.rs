//! The restart policies of standalone containers (`--restart`): one watcher task per
//! container that has a policy and has been started, which waits for it to exit, asks the
//! policy, waits Docker's back-off and starts it again through the runtime. When the daemon
//! starts it re-adopts running containers (they kept running under their shims) and starts
//! the exited ones their policy wants running.
//!
//! The facts live with the container (its policy, restart count and whether a user stopped
//! it, in the runtime's files), so a daemon killed at any point finds them again; only the
//! back-off delay and the "restarting" flag are in memory, as in Docker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_runtime::{Backoff, ContainerInfo, ContainerState, RestartOccasion, RestartPolicy, Runtime};

use super::shutdown::Shutdown;

/// Watches the standalone containers that have a restart policy.
pub struct Supervisor {
    runtime: Arc<Runtime>,
    /// Container id → whether it is waiting out its back-off (Docker's "restarting").
    watched: Mutex<HashMap<String, Arc<AtomicBool>>>,
    /// The watchers run until the daemon stops.
    shutdown: Shutdown,
}

impl Supervisor {
    pub fn new(runtime: Arc<Runtime>, shutdown: Shutdown) -> Arc<Supervisor> {
        Arc::new(Supervisor { runtime, watched: Mutex::new(HashMap::new()), shutdown })
    }

    /// At daemon start: watches the running containers with a policy and starts the exited
    /// ones it wants running (`always` even after a stop by a user; `unless-stopped` not).
    pub async fn resume(self: &Arc<Self>) {
        let rt = self.runtime.clone();
        let containers = match tokio::task::spawn_blocking(move || rt.list_containers()).await {
            Ok(Ok(list)) => list,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "listing containers to apply their restart policies");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "listing containers to apply their restart policies");
                return;
            }
        };
        for c in containers.into_iter().filter(|c| c.restart_policy != RestartPolicy::No) {
            match c.state {
                ContainerState::Running => {
                    tracing::info!(container = %c.name, pid = c.pid.unwrap_or(0), "re-adopted running container");
                    self.watch(&c.id);
                }
                ContainerState::Exited => {
                    let wanted = c.restart_policy.should_restart(
                        c.exit_code.unwrap_or(0),
                        c.restart_count,
                        c.stopped_by_user,
                        RestartOccasion::DaemonStart,
                    );
                    if !wanted {
                        continue;
                    }
                    tracing::info!(container = %c.name, policy = %c.restart_policy, "starting container for its restart policy");
                    let rt = self.runtime.clone();
                    let id = c.id.clone();
                    match tokio::task::spawn_blocking(move || rt.start_container(&id)).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::warn!(container = %c.name, error = %e, "restart at daemon start failed"),
                        Err(e) => tracing::warn!(container = %c.name, error = %e, "restart at daemon start failed"),
                    }
                    // Also after a failed start: the policy goes on from its exit.
                    self.watch(&c.id);
                }
                ContainerState::Created => {}
            }
        }
    }

    /// Makes sure container `id` is watched (after a user started it). Containers without a
    /// policy end their watcher at their first exit.
    pub fn watch(self: &Arc<Self>, id: &str) {
        let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        if watched.contains_key(id) {
            return;
        }
        let restarting = Arc::new(AtomicBool::new(false));
        watched.insert(id.to_string(), restarting.clone());
        self.shutdown.spawn(self.clone().supervise(id.to_string(), restarting));
    }

    /// Whether container `id` exited and is waiting to be restarted.
    pub fn is_restarting(&self, id: &str) -> bool {
        let watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        watched.get(id).is_some_and(|r| r.load(Ordering::Relaxed))
    }

    async fn supervise(self: Arc<Self>, id: String, restarting: Arc<AtomicBool>) {
        let mut backoff = Backoff::default();
        loop {
            let exited = match self.runtime.wait_container(&id).await {
                Ok(info) => info,
                Err(shoal_runtime::Error::NotFound { .. }) => {
                    self.forget(&id);
                    return;
                }
                Err(e) => {
                    tracing::warn!(container = %id, error = %e, "waiting for container; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            // What a user did meanwhile (stop, start, remove) is in the current state.
            let Some(now) = self.current(&id).await else {
                self.forget(&id);
                return;
            };
            if now.state != ContainerState::Exited {
                continue;
            }
            let wanted = now.restart_policy.should_restart(
                now.exit_code.unwrap_or(0),
                now.restart_count,
                now.stopped_by_user,
                RestartOccasion::Exited,
            );
            if !wanted {
                if self.leave(&id).await {
                    return;
                }
                continue;
            }
            let ran = match (exited.started_at, exited.finished_at) {
                (Some(start), Some(end)) if end > start => Duration::from_nanos((end - start) as u64),
                _ => Duration::ZERO,
            };
            let delay = backoff.next(ran);
            restarting.store(true, Ordering::Relaxed);
            tracing::info!(container = %now.name, exit_code = now.exit_code.unwrap_or(0), ?delay, "container exited; its restart policy starts it again");
            tokio::time::sleep(delay).await;
            let rt = self.runtime.clone();
            let key = id.clone();
            let restarted = tokio::task::spawn_blocking(move || rt.restart_by_policy(&key)).await;
            restarting.store(false, Ordering::Relaxed);
            match restarted {
                Ok(Ok(_)) => {}
                Ok(Err(shoal_runtime::Error::NotFound { .. })) => {
                    self.forget(&id);
                    return;
                }
                // The container is exited again with the reason; the policy decides on that.
                Ok(Err(e)) => tracing::warn!(container = %now.name, error = %e, "restart failed"),
                Err(e) => tracing::warn!(container = %now.name, error = %e, "restart failed"),
            }
        }
    }

    /// The container's state now; `None` once it is gone.
    async fn current(&self, id: &str) -> Option<ContainerInfo> {
        let rt = self.runtime.clone();
        let key = id.to_string();
        match tokio::task::spawn_blocking(move || rt.container(&key)).await {
            Ok(Ok(info)) => Some(info),
            Ok(Err(shoal_runtime::Error::NotFound { .. })) => None,
            Ok(Err(e)) => {
                tracing::warn!(container = %id, error = %e, "reading container state");
                None
            }
            Err(_) => None,
        }
    }

    /// Stops watching `id`, unless a user started it again meanwhile (then `false`: keep
    /// watching). Checked under the lock [`Supervisor::watch`] takes, so a start is never
    /// left unwatched.
    async fn leave(self: &Arc<Self>, id: &str) -> bool {
        let this = self.clone();
        let key = id.to_string();
        tokio::task::spawn_blocking(move || {
            let mut watched = this.watched.lock().unwrap_or_else(|p| p.into_inner());
            let running = this.runtime.container(&key).is_ok_and(|c| c.state == ContainerState::Running);
            if !running {
                watched.remove(&key);
            }
            !running
        })
        .await
        .unwrap_or(true)
    }

    fn forget(&self, id: &str) {
        self.watched.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}
