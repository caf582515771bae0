//! The processes behind a container. The daemon side starts a shim and reads its report
//! ([`launch`]); the shim ([`crate::shim`]) forks the container's init, which enters its
//! namespaces ([`namespaces`]) and root filesystem ([`crate::rootfs`]) and executes the command
//! ([`init`]). Processes are tracked across restarts by pid and start time ([`procfs`]) and
//! waited for and signalled through pidfds ([`pidfd`]). A shim that has started its container
//! gives back the pages it needed only for that ([`memory`]).

pub(crate) mod capabilities;
pub(crate) mod exec;
pub(crate) mod exec_api;
pub(crate) mod init;
pub(crate) mod launch;
pub(crate) mod memory;
pub(crate) mod namespaces;
pub(crate) mod pidfd;
pub(crate) mod procfs;
pub(crate) mod seccomp;
pub(crate) mod signal;
pub(crate) mod terminal;
pub(crate) mod user;
