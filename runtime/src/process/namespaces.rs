//! The namespaces a container gets. The shim unshares the pid namespace (which only applies to
//! its children, so the container's init becomes pid 1 there); the init itself then unshares
//! mount, UTS, IPC and cgroup namespaces (after joining its cgroup, so that cgroup is its
//! root), and gets its network namespace as its [`NetworkMode`] says: a new one whose loopback
//! device it brings up, one it joins by path, or the host's.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use nix::{
    fcntl::{open, OFlag},
    sched::{setns, unshare, CloneFlags},
    sys::stat::Mode,
};

use crate::{
    container::spec::NetworkMode,
    error::{Error, IoContext},
};

/// Namespaces the container's init creates for itself, whatever its network.
pub(crate) const INIT_NAMESPACES: CloneFlags = CloneFlags::CLONE_NEWNS
    .union(CloneFlags::CLONE_NEWUTS)
    .union(CloneFlags::CLONE_NEWIPC)
    .union(CloneFlags::CLONE_NEWCGROUP);

/// The container's network, opened before the init changes anything (a path to join is a path
/// of the host's mount namespace).
pub(crate) enum Network {
    Private,
    Join(OwnedFd),
    Host,
}

impl Network {
    /// Opens what `mode` names.
    pub(crate) fn open(mode: &NetworkMode) -> Result<Network, Error> {
        Ok(match mode {
            NetworkMode::Private => Network::Private,
            NetworkMode::Host => Network::Host,
            NetworkMode::Join(path) => Network::Join(
                open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
                    .context(|| format!("opening the network namespace {}", path.display()))?,
            ),
        })
    }

    /// The namespaces to unshare for this network, besides [`INIT_NAMESPACES`].
    fn unshare_flags(&self) -> CloneFlags {
        match self {
            Network::Private => CloneFlags::CLONE_NEWNET,
            Network::Join(_) | Network::Host => CloneFlags::empty(),
        }
    }

    /// Enters the network: joins the namespace handed over, and brings up loopback where the
    /// namespace is the container's own.
    fn enter(self) -> Result<(), Error> {
        match self {
            Network::Host => return Ok(()),
            Network::Private => {}
            Network::Join(fd) => setns(&fd, CloneFlags::CLONE_NEWNET)
                .context(|| "joining the network namespace (is it a network namespace?)".to_string())?,
        }
        loopback_up().context(|| "bringing up the loopback device".to_string())
    }
}

/// The `/proc/<pid>/ns/` files `exec` joins, the mount namespace last (it changes the root
/// from which the others would be opened).
pub(crate) const JOIN_ORDER: [(&str, CloneFlags); 6] = [
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// Run by the shim: its next child starts a new pid namespace as its pid 1.
pub(crate) fn unshare_pid() -> nix::Result<()> {
    unshare(CloneFlags::CLONE_NEWPID)
}

/// Run by the container's init: creates its namespaces and enters its network.
pub(crate) fn unshare_init(network: Network) -> Result<(), Error> {
    unshare(INIT_NAMESPACES | network.unshare_flags())
        .context(|| "creating the mount, uts, ipc, network and cgroup namespaces".to_string())?;
    network.enter()
}

/// Sets `lo` up in the current network namespace.
fn loopback_up() -> io::Result<()> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh fd that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write `request`, which outlives the calls.
    unsafe {
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) < 0 {
            return Err(io::Error::last_os_error());
        }
        request.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
