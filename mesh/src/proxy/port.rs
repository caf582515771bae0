//! One published port as its listener and connections see it: its current backends, whether
//! backends get a PROXY header, and how many connections (or flows) are open through it.

use std::{
    collections::HashMap,
    net::SocketAddrV4,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, PoisonError, RwLock,
    },
    time::Duration,
};

use super::{
    balance::{now_ms, Backend},
    Protocol,
};

/// The state of a published port shared by its listener, its connections and the table.
#[derive(Debug)]
pub(super) struct Port {
    pub(super) port: u16,
    pub(super) protocol: Protocol,
    /// Replaced whole by each table; a connection takes the list as it is when it chooses.
    backends: RwLock<Arc<[Arc<Backend>]>>,
    proxy_protocol: AtomicBool,
    open: AtomicUsize,
    /// Limits the port's warnings that traffic could repeat (every backend failing, errors
    /// accepting).
    pub(super) warnings: Throttle,
}

impl Port {
    pub(super) fn new(port: u16, protocol: Protocol, proxy_protocol: bool, backends: &[SocketAddrV4]) -> Arc<Port> {
        let port = Port {
            port,
            protocol,
            backends: RwLock::new(Arc::from([])),
            proxy_protocol: AtomicBool::new(proxy_protocol),
            open: AtomicUsize::new(0),
            warnings: Throttle::new(),
        };
        port.update(proxy_protocol, backends);
        Arc::new(port)
    }

    /// Applies a new entry of the table: new connections use these backends; a backend still
    /// listed keeps its count of open connections.
    pub(super) fn update(&self, proxy_protocol: bool, addrs: &[SocketAddrV4]) {
        self.proxy_protocol.store(proxy_protocol, Ordering::Relaxed);
        let current: HashMap<SocketAddrV4, Arc<Backend>> =
            self.backends().iter().map(|b| (b.addr, b.clone())).collect();
        let next: Arc<[Arc<Backend>]> =
            addrs.iter().map(|addr| current.get(addr).cloned().unwrap_or_else(|| Backend::new(*addr))).collect();
        *self.backends.write().unwrap_or_else(PoisonError::into_inner) = next;
    }

    /// The backends new connections choose from.
    pub(super) fn backends(&self) -> Arc<[Arc<Backend>]> {
        self.backends.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(super) fn proxy_protocol(&self) -> bool {
        self.proxy_protocol.load(Ordering::Relaxed)
    }

    /// Counts a connection (or flow) as open on this port until the guard is dropped.
    pub(super) fn opened(self: &Arc<Port>) -> Open {
        self.open.fetch_add(1, Ordering::Relaxed);
        Open(self.clone())
    }

    /// Connections (or flows) open on this port, those through backends no longer listed
    /// included.
    pub(super) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// A connection (or flow) counted as open on its port.
#[derive(Debug)]
pub(super) struct Open(Arc<Port>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Lets a repeated warning through at most once per [`Throttle::INTERVAL`], so that a flood
/// of failing connections cannot flood the log.
#[derive(Debug)]
pub(super) struct Throttle {
    /// [`now_ms`] from which the next line may go.
    next_ms: AtomicU64,
}

impl Throttle {
    pub(super) const INTERVAL: Duration = Duration::from_secs(10);

    pub(super) fn new() -> Throttle {
        Throttle { next_ms: AtomicU64::new(0) }
    }

    /// Whether a line may be logged now.
    pub(super) fn allow(&self) -> bool {
        let now = now_ms();
        let next = self.next_ms.load(Ordering::Relaxed);
        now >= next
            && self
                .next_ms
                .compare_exchange(next, now + Self::INTERVAL.as_millis() as u64, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::proxy::balance::Lease;

    fn addr(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
    }

    #[test]
    fn a_kept_backend_keeps_its_open_connections() {
        let port = Port::new(80, Protocol::Tcp, false, &[addr(1), addr(2)]);
        let lease = Lease::new(port.backends()[0].clone());
        port.update(true, &[addr(3), addr(1)]);
        let backends = port.backends();
        let kept = backends.iter().find(|b| b.addr == addr(1)).expect("kept");
        assert_eq!(kept.active(), 1);
        assert!(port.proxy_protocol());
        drop(lease);
        assert_eq!(kept.active(), 0);
    }

    #[test]
    fn open_counts_until_dropped() {
        let port = Port::new(80, Protocol::Udp, false, &[]);
        let (a, b) = (port.opened(), port.opened());
        assert_eq!(port.open(), 2);
        drop((a, b));
        assert_eq!(port.open(), 0);
    }

    #[test]
    fn throttle_lets_one_line_through_per_interval() {
        let throttle = Throttle::new();
        assert!(throttle.allow());
        assert!(!throttle.allow());
        assert!(!throttle.allow());
    }
}
