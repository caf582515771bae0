//! How the daemon stops: one cancellation token that every long-running task it starts
//! watches (restart watchers, auto-removals, the agent, the role followers, the API server and
//! its attached streams), and the tracker of those tasks, so that stopping waits for them.
//!
//! Boundary: it knows tasks, not what they do; each task decides what stopping means for it
//! (most are dropped at their next await, as when the process exits; the agent and the API
//! server wind down on their own).

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;

/// The daemon's stop signal and its long-running tasks. Clones share both.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tasks: TaskTracker,
}

impl Shutdown {
    /// Runs `task` until it ends or the daemon stops, whichever comes first: a stop drops it at
    /// its next await (a blocking call it waits for still finishes on its thread).
    pub fn spawn<F>(&self, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.token.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = token.cancelled() => {}
                () = task => {}
            }
        })
    }

    /// Runs `task`, which watches [`Shutdown::token`] (or a child of it) itself and ends on its
    /// own once it is cancelled; stopping waits for it.
    pub fn track<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(task)
    }

    /// The token cancelled when the daemon stops.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Resolves once the daemon stops.
    pub fn requested(&self) -> WaitForCancellationFutureOwned {
        self.token.clone().cancelled_owned()
    }

    /// Cancels every task, then waits for them to end, at most `within`. `false` when some
    /// were still running then (they are dropped with the process).
    pub async fn stop(&self, within: Duration) -> bool {
        self.token.cancel();
        self.tasks.close();
        let ended = tokio::time::timeout(within, self.tasks.wait()).await.is_ok();
        if !ended {
            tracing::warn!(left = self.tasks.len(), "daemon tasks still running after {within:?}; leaving them");
        }
        ended
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn stop_cancels_and_waits_for_every_task() {
        let shutdown = Shutdown::default();
        // A task dropped at the stop, and one that winds down on its own after it.
        let dropped = Arc::new(AtomicBool::new(true));
        let flag = dropped.clone();
        shutdown.spawn(async move {
            std::future::pending::<()>().await;
            flag.store(false, Ordering::SeqCst);
        });
        let wound_down = Arc::new(AtomicBool::new(false));
        let flag = wound_down.clone();
        let token = shutdown.token().clone();
        shutdown.track(async move {
            token.cancelled().await;
            tokio::task::yield_now().await;
            flag.store(true, Ordering::SeqCst);
        });
        assert!(shutdown.stop(Duration::from_secs(10)).await);
        assert!(dropped.load(Ordering::SeqCst));
        assert!(wound_down.load(Ordering::SeqCst), "stop returned before the task it waits for ended");
    }

    #[tokio::test]
    async fn stop_gives_up_on_a_task_that_ignores_it() {
        let shutdown = Shutdown::default();
        shutdown.track(std::future::pending::<()>());
        assert!(!shutdown.stop(Duration::from_millis(20)).await);
    }
}
