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

/// The most bytes of store actions a loop proposes in one write: a larger
/// pass (a service of thousands of tasks scaled down, say) goes to raft in
/// several writes, so that no raft entry grows with the store.
pub const MAX_PASS_WRITE_BYTES: usize = 4 << 20;

/// Splits `actions` into writes of at most [`MAX_PASS_WRITE_BYTES`] each
/// (an action larger than that goes alone), in order.
pub fn split_by_size(actions: Vec<shoal_proto::StoreAction>) -> Vec<Vec<shoal_proto::StoreAction>> {
    use prost::Message;
    let mut writes = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for action in actions {
        let size = action.encoded_len();
        if !current.is_empty() && bytes + size > MAX_PASS_WRITE_BYTES {
            writes.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(action);
    }
    if !current.is_empty() {
        writes.push(current);
    }
    writes
}

/// Runs a loop whose pass is a pure function of the store: `pass` returns
/// the writes to make and when it wants to run again; the writes are
/// proposed in order, in as few raft writes as [`MAX_PASS_WRITE_BYTES`]
/// allows. A failed write is retried on a short timer (the next pass
/// computes what is still to do).
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
            for write in split_by_size(actions) {
                if let Err(e) = proposer.propose(write).await {
                    tracing::debug!(loop_name = name, error = %e, "write failed; retrying on the next pass");
                    return Some(Duration::from_millis(200));
                }
            }
            wake
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::propose::update;

    #[test]
    fn large_passes_split_into_bounded_writes_in_order() {
        let task = |i: u64| {
            let mut t = shoal_proto::Task { id: format!("t{i}"), slot: i, ..Default::default() };
            t.annotations = Some(shoal_proto::Annotations { name: "x".repeat(100_000), ..Default::default() });
            update(t)
        };
        let writes = split_by_size((0..100).map(task).collect());
        assert!(writes.len() > 1, "10 MB of actions in one write");
        let sizes: Vec<usize> =
            writes.iter().map(|w| w.iter().map(prost::Message::encoded_len).sum::<usize>()).collect();
        assert!(sizes.iter().all(|s| *s <= MAX_PASS_WRITE_BYTES), "{sizes:?}");
        let slots: Vec<u64> = writes
            .iter()
            .flatten()
            .map(|a| match &a.object {
                Some(shoal_proto::store_action::Object::Task(t)) => t.slot,
                _ => u64::MAX,
            })
            .collect();
        assert_eq!(slots, (0..100).collect::<Vec<_>>());
        assert!(split_by_size(Vec::new()).is_empty());
    }
}
