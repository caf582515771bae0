//! A published UDP port: each client (source address and port) is a flow with a socket of its
//! own connected to the backend chosen for it; the client's datagrams go out through it and the
//! backend's replies come back to the client from the published port, and from the address the
//! client sent to (`IP_PKTINFO`): on a node with several addresses (a floating address in front
//! of the swarm, say) a reply from another one would be dropped by the client.
//!
//! A flow ends after an idle time with no datagram either way, when its backend refuses (an
//! ICMP port unreachable: the client's next datagram starts a flow to another backend), or
//! with its port. Flows are bounded across the proxy; a datagram that would need one more is
//! dropped, as a full network drops it.

use std::{
    collections::HashMap,
    io,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::Duration,
};

use nix::{
    cmsg_space,
    errno::Errno,
    sys::socket::{
        recvmsg, send, sendmsg, setsockopt, sockopt::Ipv4PacketInfo, ControlMessage, ControlMessageOwned, MsgFlags,
        SockaddrIn,
    },
};
use tokio::{io::Interest, net::UdpSocket, sync::OwnedSemaphorePermit};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    balance::{choose, now_ms, Lease},
    port::{Open, Port},
    Shared,
};

/// Room for the largest UDP datagram over IPv4 (65,507 bytes of payload).
const MAX_DATAGRAM: usize = 64 * 1024;

/// Binds `port` on every IPv4 address of the node. Not `SO_REUSEADDR`: for UDP it would let
/// two sockets share the port (and split its datagrams) rather than report it in use, and UDP
/// has no `TIME_WAIT` to wait out.
pub(super) fn bind(port: u16) -> io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))?;
    // Each datagram then says which local address it was sent to.
    setsockopt(&socket, Ipv4PacketInfo, &true)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// One client's flow.
struct Flow {
    client: SocketAddrV4,
    /// Connected to the backend; the backend sees the proxy's address as the client's.
    socket: UdpSocket,
    lease: Lease,
    /// [`now_ms`] of the last datagram either way.
    last: AtomicU64,
    /// The local address the client's last datagram was sent to, which replies leave from
    /// (0: unknown, the kernel chooses).
    local: AtomicU32,
    end: CancellationToken,
    _open: Open,
    _permit: OwnedSemaphorePermit,
}

impl Flow {
    fn touch(&self) {
        self.last.store(now_ms(), Ordering::Relaxed);
    }

    fn local(&self) -> Option<Ipv4Addr> {
        Some(Ipv4Addr::from(self.local.load(Ordering::Relaxed))).filter(|ip| !ip.is_unspecified())
    }
}

/// A port's flows by client.
type Flows = Mutex<HashMap<SocketAddrV4, Arc<Flow>>>;

/// A published UDP port's listening socket and flows.
struct Listener {
    socket: Arc<UdpSocket>,
    flows: Arc<Flows>,
    port: Arc<Port>,
    shared: Arc<Shared>,
    /// The port's end or the proxy's; each flow's `end` is its child.
    stop: CancellationToken,
    tasks: TaskTracker,
}

/// Receives the port's datagrams until `stop` (the port's end or the proxy's), and starts the
/// flows' tasks on `tasks`.
pub(super) async fn serve(
    socket: UdpSocket,
    port: Arc<Port>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    let listener = Listener { socket: Arc::new(socket), flows: Arc::default(), port, shared, stop, tasks };
    // One buffer per port, held as long as it listens.
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut control = cmsg_space!(libc::in_pktinfo);
    loop {
        let received = tokio::select! {
            biased;
            _ = listener.stop.cancelled() => break,
            received = listener.socket.async_io(Interest::READABLE, || receive(&listener.socket, &mut buf, &mut control)) => received,
        };
        match received {
            Ok(Received { len, client: Some(client), local }) => listener.forward(client, local, &buf[..len]),
            Ok(Received { client: None, .. }) => {}
            Err(error) => {
                let port = listener.port.port;
                if listener.port.warnings.allow() {
                    tracing::warn!(port, %error, "routing mesh: receiving on port {port}/udp failed");
                }
                // A short pause keeps an error that repeats from spinning.
                tokio::select! {
                    _ = listener.stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
            }
        }
    }
    for (_, flow) in listener.flows.lock().unwrap_or_else(PoisonError::into_inner).drain() {
        flow.end.cancel();
    }
}

impl Listener {
    /// Sends a client's datagram, sent to the node's `local` address, to its flow's backend.
    fn forward(&self, client: SocketAddrV4, local: Option<Ipv4Addr>, datagram: &[u8]) {
        // A second time only when the flow's backend has refused: a new flow, another backend.
        for _ in 0..2 {
            let Some(flow) = self.flow(client) else { return };
            flow.local.store(local.map_or(0, u32::from), Ordering::Relaxed);
            // Sent straight, not through tokio's readiness (which a new socket lacks until the
            // reactor has polled it): a flow never waits to send.
            match send(flow.socket.as_raw_fd(), datagram, MsgFlags::MSG_DONTWAIT) {
                Ok(_) => return flow.touch(),
                // The socket's send queue is full: dropped, as a full queue on the way would.
                Err(Errno::EAGAIN) => return,
                Err(errno) => {
                    let error = io::Error::from(errno);
                    // An earlier datagram was refused (port unreachable).
                    refused(&self.port, &flow.lease, &error);
                    end(&self.flows, &flow);
                }
            }
        }
    }

    /// The client's flow, started (with a backend chosen) when it has none. None when its
    /// datagram must be dropped: no backend, too many flows, or no socket for it.
    fn flow(&self, client: SocketAddrV4) -> Option<Arc<Flow>> {
        if let Some(flow) = self.flows.lock().unwrap_or_else(PoisonError::into_inner).get(&client) {
            return Some(flow.clone());
        }
        let (port, shared) = (&self.port, &self.shared);
        let lease = choose(&port.backends(), &[])?;
        let Ok(permit) = shared.flows.clone().try_acquire_owned() else {
            if shared.flow_warnings.allow() {
                tracing::warn!(port = port.port, %client, limit = shared.config.max_udp_flows, "routing mesh: too many UDP flows: datagrams of new flows are dropped");
            }
            return None;
        };
        let socket = match open(lease.addr, shared.config.source) {
            Ok(socket) => socket,
            Err(error) => {
                // The node's error (no file descriptor, no port), not the backend's.
                if port.warnings.allow() {
                    tracing::warn!(port = port.port, %client, backend = %lease.addr, %error, "routing mesh: cannot open a UDP flow: datagram dropped");
                }
                return None;
            }
        };
        tracing::debug!(port = port.port, %client, backend = %lease.addr, "UDP flow started");
        let flow = Arc::new(Flow {
            client,
            socket,
            lease,
            last: AtomicU64::new(now_ms()),
            local: AtomicU32::new(0),
            end: self.stop.child_token(),
            _open: port.opened(),
            _permit: permit,
        });
        self.flows.lock().unwrap_or_else(PoisonError::into_inner).insert(client, flow.clone());
        let idle = shared.config.udp_idle_timeout;
        self.tasks.spawn(replies(flow.clone(), self.socket.clone(), self.flows.clone(), port.clone(), idle));
        Some(flow)
    }
}

/// A datagram received on a published port.
struct Received {
    len: usize,
    /// None for a sender that is not IPv4 (which an IPv4 socket does not receive).
    client: Option<SocketAddrV4>,
    /// The node's address it was sent to.
    local: Option<Ipv4Addr>,
}

/// Receives a datagram into `buf`, with the address it was sent to in `control`.
fn receive(socket: &UdpSocket, buf: &mut [u8], control: &mut [u8]) -> io::Result<Received> {
    let mut iov = [io::IoSliceMut::new(buf)];
    let message = recvmsg::<SockaddrIn>(socket.as_raw_fd(), &mut iov, Some(control), MsgFlags::empty())?;
    // Without it (a truncated control message, which the buffer's size rules out) the reply's
    // address is the kernel's choice; the datagram still goes.
    let mut cmsgs = message.cmsgs().into_iter().flatten();
    let local = cmsgs.find_map(|cmsg| match cmsg {
        ControlMessageOwned::Ipv4PacketInfo(info) => {
            // The datagram's destination, unless it was a broadcast: then the address of the
            // interface it came in on.
            let destination = Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr));
            let interface = Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr));
            Some(if destination.is_broadcast() || destination.is_multicast() { interface } else { destination })
        }
        _ => None,
    });
    Ok(Received { len: message.bytes, client: message.address.map(SocketAddrV4::from), local })
}

/// Sends `data` to `client` from `local` (the kernel's choice when None).
fn reply(listener: &UdpSocket, data: &[u8], client: SocketAddrV4, local: Option<Ipv4Addr>) -> io::Result<usize> {
    let info = local.map(|local| libc::in_pktinfo {
        ipi_ifindex: 0,
        ipi_spec_dst: libc::in_addr { s_addr: u32::from(local).to_be() },
        ipi_addr: libc::in_addr { s_addr: 0 },
    });
    let one;
    let control: &[ControlMessage] = match &info {
        Some(info) => {
            one = [ControlMessage::Ipv4PacketInfo(info)];
            &one
        }
        None => &[],
    };
    let to = SockaddrIn::from(client);
    Ok(sendmsg(listener.as_raw_fd(), &[io::IoSlice::new(data)], control, MsgFlags::empty(), Some(&to))?)
}

/// A socket from `source` (any local address when None) connected to `backend`.
fn open(backend: SocketAddrV4, source: Option<Ipv4Addr>) -> io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(SocketAddr::from((source.unwrap_or(Ipv4Addr::UNSPECIFIED), 0)))?;
    socket.connect(backend)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// Sends the backend's replies to the client from the published port until the flow has been
/// idle for `idle` or ends.
async fn replies(flow: Arc<Flow>, listener: Arc<UdpSocket>, flows: Arc<Flows>, port: Arc<Port>, idle: Duration) {
    loop {
        let quiet = Duration::from_millis(now_ms().saturating_sub(flow.last.load(Ordering::Relaxed)));
        let Some(left) = idle.checked_sub(quiet).filter(|left| !left.is_zero()) else { break };
        let ready = tokio::select! {
            biased;
            _ = flow.end.cancelled() => break,
            ready = flow.socket.readable() => ready,
            // Then the flow's last datagram is read again: one may have gone out meanwhile.
            _ = tokio::time::sleep(left) => continue,
        };
        if ready.is_err() || !pass_replies(&flow, &listener, &port).await {
            break;
        }
    }
    tracing::debug!(port = port.port, client = %flow.client, backend = %flow.lease.addr, "UDP flow ended");
    end(&flows, &flow);
}

/// Sends what the backend has sent to the client; false when the flow must end.
async fn pass_replies(flow: &Flow, listener: &UdpSocket, port: &Port) -> bool {
    // Held only while replies are waiting, as a TCP connection's buffer is.
    let mut buf = Vec::with_capacity(MAX_DATAGRAM);
    loop {
        buf.clear();
        match flow.socket.try_recv_buf(&mut buf) {
            Ok(_) => {
                flow.touch();
                let (client, local) = (flow.client, flow.local());
                let sent = listener.async_io(Interest::WRITABLE, || reply(listener, &buf, client, local)).await;
                if let Err(error) = sent {
                    tracing::debug!(port = port.port, client = %flow.client, %error, "sending a UDP reply failed");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(error) => {
                refused(port, &flow.lease, &error);
                return false;
            }
        }
    }
}

/// Notes a backend's refusal of a flow's datagram.
fn refused(port: &Port, lease: &Lease, error: &io::Error) {
    if error.kind() == io::ErrorKind::ConnectionRefused && lease.failed() {
        tracing::warn!(port = port.port, backend = %lease.addr, "routing mesh: backend of port {}/udp refuses datagrams; new flows go to the others first", port.port);
    } else {
        tracing::debug!(port = port.port, backend = %lease.addr, %error, "UDP flow failed");
    }
}

/// Ends `flow` and forgets it, unless its client already has a newer one.
fn end(flows: &Flows, flow: &Arc<Flow>) {
    flow.end.cancel();
    let mut flows = flows.lock().unwrap_or_else(PoisonError::into_inner);
    if flows.get(&flow.client).is_some_and(|current| Arc::ptr_eq(current, flow)) {
        flows.remove(&flow.client);
    }
}
