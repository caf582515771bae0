//! The shape every leader-only control loop shares: run a full,
//! level-triggered pass on start, then again whenever the store changes or a
//! deadline the last pass asked for arrives, until its term of leadership
//! (or the manager) ends.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// How long a loop lets store changes gather before its next pass, at least
/// and at most (Swarm's store batches writes for 100 ms).
const COALESCE: Duration = Duration::from_millis(5);
const MAX_COALESCE: Duration = Duration::from_millis(50);

/// Runs `pass` until `stop` is cancelled. `pass` returns how long it may
/// sleep at most before it wants to run again (`None`: until a change).
pub async fn run_loop<F, Fut>(name: &'static str, store: Store, stop: CancellationToken, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<Duration>>,
{
    let mut changes = store.subscribe();
    tracing::debug!(loop_name = name, "control loop started");
    while !stop.is_cancelled() {
        changes.mark_unchanged();
        let started = tokio::time::Instant::now();
        let wake = pass().await;
        let took = started.elapsed();
        let sleep = tokio::time::sleep(wake.unwrap_or(Duration::from_secs(3600)));
        tokio::select! {
            _ = changes.changed() => {
                // Under a burst of writes, one pass sees many of them: passes
                // read the whole store, and while one reads, the state machine
                // waits to apply. Waiting 4× the last pass keeps a loop under
                // a fifth of a core however large the store grows.
                tokio::time::sleep((took * 4).clamp(COALESCE, MAX_COALESCE)).await;
            }
            _ = sleep => {}
            _ = stop.cancelled() => {}
        }
    }
    tracing::debug!(loop_name = name, "control loop stopped");
}

/// Runs a loop whose pass is a pure function of the store: `pass` returns
/// the writes to make and when it wants to run again; the writes are
/// proposed as one batch. A failed write is retried on a short timer.
pub async fn run_writer<F>(
    name: &'static str,
    store: Store,
    proposer: crate::control::Proposer,
    stop: CancellationToken,
    pass: F,
) where
    F: Fn(&crate::store::State, i64) -> (Vec<shoal_proto::StoreAction>, Option<Duration>),
{
    let s = store.clone();
    run_loop(name, store, stop, move || {
        let (actions, wake) = pass(&s.read(), shoal_proto::now_ns());
        let proposer = proposer.clone();
        async move {
            if !actions.is_empty() {
                if let Err(e) = proposer.propose(actions).await {
                    tracing::debug!(loop_name = name, error = %e, "write failed; retrying on the next pass");
                    return Some(Duration::from_millis(200));
                }
            }
            wake
        }
    })
    .await
}
