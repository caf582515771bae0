//! The processes behind a container. The daemon side starts a shim and reads its report
//! ([`launch`], over the [`handshake`] both sides share); the shim ([`crate::shim`]) forks the
//! container's init, which enters its namespaces ([`namespaces`]) and root filesystem
//! ([`crate::rootfs`]), gets its capabilities ([`crate::capabilities`]) and seccomp filter
//! ([`seccomp`]), and executes the command ([`init`]). Processes are tracked across restarts by
//! pid and start time ([`crate::procfs`]) and waited for and signalled through pidfds
//! ([`pidfd`]). A shim that has started its container gives back the pages it needed only for
//! that ([`memory`]).
//!
//! The names a container's config is checked against at create (capabilities, signals) and the
//! process identity its records keep live outside this module, so that `container` never
//! depends on it: dependencies point from here to the config, not back.

pub(crate) mod exec;
pub(crate) mod exec_api;
pub(crate) mod handshake;
pub(crate) mod init;
pub(crate) mod launch;
pub(crate) mod memory;
pub(crate) mod namespaces;
pub(crate) mod pidfd;
pub(crate) mod seccomp;
pub(crate) mod terminal;
pub(crate) mod user;
