//! Backend choice: the power of two random choices by open connections (or flows), with a
//! backend that just failed a connect chosen last for a while.
//!
//! Two backends are drawn at random and the one with fewer open connections wins: load spreads
//! almost as evenly as "least connections" without every choice looking at every backend, and
//! without all new connections rushing to the one backend that happens to be least loaded.

use std::{
    cell::Cell,
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hasher},
    net::SocketAddrV4,
    ops::Deref,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, OnceLock,
    },
    time::{Duration, Instant},
};

/// How long a backend that failed a connect is chosen only after every other one.
pub(super) const PENALTY: Duration = Duration::from_secs(5);

/// A backend of a published port: a ready task's address and target port.
///
/// One `Backend` lives as long as a table lists it or a connection uses it, so its count of
/// open connections survives table changes that keep it.
#[derive(Debug)]
pub(super) struct Backend {
    pub(super) addr: SocketAddrV4,
    /// Connections (or UDP flows) open through this backend, connecting ones included.
    active: AtomicUsize,
    /// When it last failed a connect, as [`now_ms`] + 1; 0 when it has not failed since its last
    /// success.
    failed_at: AtomicU64,
}

impl Backend {
    pub(super) fn new(addr: SocketAddrV4) -> Arc<Backend> {
        Arc::new(Backend { addr, active: AtomicUsize::new(0), failed_at: AtomicU64::new(0) })
    }

    /// Open connections (or flows) through this backend.
    pub(super) fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    fn penalized(&self, now_ms: u64) -> bool {
        within_penalty(self.failed_at.load(Ordering::Relaxed), now_ms)
    }

    /// Records a failed connect; true when the backend was not failing already (worth a log
    /// line: later failures within the penalty are the same news).
    pub(super) fn failed(&self) -> bool {
        let now = now_ms();
        let before = self.failed_at.swap(now + 1, Ordering::Relaxed);
        !within_penalty(before, now)
    }

    /// Records a successful connect: the backend is no longer chosen last.
    pub(super) fn succeeded(&self) {
        if self.failed_at.load(Ordering::Relaxed) != 0 {
            self.failed_at.store(0, Ordering::Relaxed);
        }
    }
}

/// Whether a failure recorded as `failed_at` (see [`Backend::failed_at`]) still counts at `now_ms`.
fn within_penalty(failed_at: u64, now_ms: u64) -> bool {
    failed_at != 0 && now_ms + 1 < failed_at + PENALTY.as_millis() as u64
}

/// A connection's (or flow's) hold on its backend: counted in the backend's open connections
/// until dropped.
#[derive(Debug)]
pub(super) struct Lease(Arc<Backend>);

impl Lease {
    pub(super) fn new(backend: Arc<Backend>) -> Lease {
        backend.active.fetch_add(1, Ordering::Relaxed);
        Lease(backend)
    }
}

impl Deref for Lease {
    type Target = Backend;
    fn deref(&self) -> &Backend {
        &self.0
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Chooses a backend for a new connection among those not yet `tried` for it: by two random
/// choices among those that have not failed lately, or among the failing ones when no other is
/// left. None when every backend has been tried.
pub(super) fn choose(backends: &[Arc<Backend>], tried: &[SocketAddrV4]) -> Option<Lease> {
    choose_at(backends, tried, now_ms())
}

fn choose_at(backends: &[Arc<Backend>], tried: &[SocketAddrV4], now_ms: u64) -> Option<Lease> {
    let untried = |b: &&Arc<Backend>| !tried.contains(&b.addr);
    let healthy = |b: &&Arc<Backend>| untried(b) && !b.penalized(now_ms);
    let chosen = two_choices(backends, healthy).or_else(|| two_choices(backends, untried))?;
    Some(Lease::new(chosen.clone()))
}

/// The less loaded of two distinct backends drawn at random among those `eligible`, without
/// allocating (the list is walked three times at most).
fn two_choices(backends: &[Arc<Backend>], eligible: impl Fn(&&Arc<Backend>) -> bool + Copy) -> Option<&Arc<Backend>> {
    let count = backends.iter().filter(eligible).count();
    let nth = |n: usize| backends.iter().filter(eligible).nth(n);
    match count {
        0 => None,
        1 => nth(0),
        _ => {
            let first = random_below(count);
            // A second draw among the others: distinct from the first.
            let second = (first + 1 + random_below(count - 1)) % count;
            let (a, b) = (nth(first)?, nth(second)?);
            Some(if b.active() < a.active() { b } else { a })
        }
    }
}

/// Milliseconds on a monotonic clock that starts with the process's first use of it.
pub(super) fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// A uniformly drawn number below `n` (n > 0): xorshift64* per thread, seeded from the
/// standard library's random hash keys. Not for secrets; enough to spread connections.
pub(super) fn random_below(n: usize) -> usize {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(RandomState::new().build_hasher().finish() | 1);
    }
    let x = STATE.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    });
    ((u128::from(x) * n as u128) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn backends(n: u16) -> Vec<Arc<Backend>> {
        (1..=n).map(|i| Backend::new(SocketAddrV4::new(Ipv4Addr::LOCALHOST, i))).collect()
    }

    #[test]
    fn two_backends_the_less_loaded_wins() {
        let list = backends(2);
        let _held: Vec<Lease> = (0..3).map(|_| Lease::new(list[0].clone())).collect();
        for _ in 0..100 {
            let lease = choose_at(&list, &[], 0).expect("two backends");
            assert_eq!(lease.addr.port(), 2);
        }
    }

    #[test]
    fn leases_count_open_connections() {
        let list = backends(1);
        let lease = choose_at(&list, &[], 0).expect("one backend");
        assert_eq!(list[0].active(), 1);
        drop(lease);
        assert_eq!(list[0].active(), 0);
    }

    #[test]
    fn held_connections_spread_over_every_backend() {
        let list = backends(4);
        let held: Vec<Lease> = (0..400).filter_map(|_| choose_at(&list, &[], 0)).collect();
        assert_eq!(held.len(), 400);
        for b in &list {
            // Two choices keep the spread within a few of the mean (100).
            assert!((90..=110).contains(&b.active()), "{} has {}", b.addr, b.active());
        }
    }

    #[test]
    fn tried_backends_are_skipped_until_none_is_left() {
        let list = backends(3);
        let mut tried = Vec::new();
        while let Some(lease) = choose_at(&list, &tried, 0) {
            assert!(!tried.contains(&lease.addr));
            tried.push(lease.addr);
        }
        assert_eq!(tried.len(), 3);
        assert!(choose_at(&[], &[], 0).is_none());
    }

    #[test]
    fn a_failing_backend_is_chosen_last() {
        let list = backends(3);
        list[1].failed_at.store(1000, Ordering::Relaxed);
        let penalty = PENALTY.as_millis() as u64;
        for _ in 0..50 {
            let lease = choose_at(&list, &[], 1000).expect("backends");
            assert_ne!(lease.addr.port(), 2);
        }
        // Only the failing one left untried: it is still tried.
        let tried = [list[0].addr, list[2].addr];
        assert_eq!(choose_at(&list, &tried, 1000).expect("one left").addr.port(), 2);
        // The penalty ends.
        assert!(!list[1].penalized(1000 + penalty));
        list[1].succeeded();
        assert!(!list[1].penalized(1000));
    }

    #[test]
    fn random_below_stays_below() {
        for n in [1, 2, 3, 1000] {
            for _ in 0..1000 {
                assert!(random_below(n) < n);
            }
        }
    }
}
