//! Network namespaces: the node's own (where the mesh's bridges live) and the sandboxes', each
//! kept alive by a bind mount of its `nsfs` file, as `ip netns add` does.
//!
//! Work inside a namespace (opening a netlink socket, writing a sysctl) runs on a thread of
//! its own that enters the namespace with `setns` and then ends, never on a thread of a pool
//! that would carry the namespace on to other work, and never in a fork.

use std::{
    fs,
    io::{self, ErrorKind},
    os::{
        fd::{AsFd, BorrowedFd, OwnedFd},
        unix::fs::OpenOptionsExt,
    },
    path::{Path, PathBuf},
};

use nix::{
    mount::{mount, umount2, MntFlags, MsFlags},
    sched::{setns, unshare, CloneFlags},
};

use crate::error::{IoContext, MeshError};

/// An open network namespace.
#[derive(Debug)]
pub(crate) struct NetNs {
    fd: OwnedFd,
    /// What to call it in errors.
    name: String,
}

impl NetNs {
    /// The network namespace of the calling thread.
    pub(crate) fn current() -> Result<NetNs, MeshError> {
        NetNs::open(Path::new("/proc/thread-self/ns/net"), "the node's network namespace")
    }

    /// The network namespace bound at `path`.
    pub(crate) fn open(path: &Path, name: &str) -> Result<NetNs, MeshError> {
        let file = fs::File::open(path).context(|| format!("opening {name} at {}", path.display()))?;
        Ok(NetNs { fd: file.into(), name: name.to_string() })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Runs `work` on a new thread inside this namespace and returns what it returns.
    pub(crate) async fn run<T, F>(&self, what: &str, work: F) -> Result<T, MeshError>
    where
        T: Send + 'static,
        F: FnOnce() -> io::Result<T> + Send + 'static,
    {
        let fd = self.fd.try_clone().context(|| format!("{what}: duplicating the namespace's fd"))?;
        let context = format!("{what} in {}", self.name);
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("mesh-netns".to_string())
            .spawn(move || {
                let result = setns(&fd, CloneFlags::CLONE_NEWNET).map_err(io::Error::from).and_then(|()| work());
                let _ = tx.send(result);
            })
            .context(|| format!("{context}: starting a thread"))?;
        match rx.await {
            Ok(result) => result.context(|| context),
            Err(_) => Err(MeshError::io(context, io::Error::other("the thread ended without an answer"))),
        }
    }
}

/// Makes a new network namespace and binds it at `path` (a file made for it). A file left
/// there unbound (by a reboot) is reused; a bound one is an error.
pub(crate) async fn create_bound(path: &Path) -> Result<(), MeshError> {
    if is_bound(path) {
        return Err(MeshError::Invalid(format!("a network namespace is already bound at {}", path.display())));
    }
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o444)
        .open(path)
        .context(|| format!("creating {}", path.display()))?;
    let target: PathBuf = path.to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("mesh-netns-new".to_string())
        .spawn(move || {
            // The thread's own namespace, which ends with it unless the mount holds it.
            let result = unshare(CloneFlags::CLONE_NEWNET).and_then(|()| {
                mount(Some("/proc/thread-self/ns/net"), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            });
            let _ = tx.send(result.map_err(io::Error::from));
        })
        .context(|| format!("creating a network namespace for {}: starting a thread", path.display()))?;
    let result = match rx.await {
        Ok(result) => result,
        Err(_) => Err(io::Error::other("the thread ended without an answer")),
    };
    if let Err(e) = result {
        let _ = fs::remove_file(path);
        return Err(MeshError::io(format!("creating a network namespace bound at {}", path.display()), e));
    }
    Ok(())
}

/// Whether a namespace is bound at `path` (its file system is `nsfs`).
pub(crate) fn is_bound(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

/// Unbinds the namespace at `path` (it ends once no process is in it) and removes the file.
/// Nothing there is no error.
pub(crate) fn unbind(path: &Path) -> Result<(), MeshError> {
    if is_bound(path) {
        umount2(path, MntFlags::MNT_DETACH)
            .context(|| format!("unmounting the network namespace {}", path.display()))?;
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(MeshError::io(format!("removing {}", path.display()), e)),
        _ => Ok(()),
    }
}
