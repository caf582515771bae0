//! Hostile input, end to end: every reproduction a security review and a
//! chaos run found, replayed against real daemons through the API, the CLI,
//! compose files and the manager port, each checking afterwards that marker
//! files outside and inside the data root are intact and nothing is left
//! behind.
//!
//! - `images`: archives naming host files, whiteouts of the layer directory,
//!   leftovers of killed loads and failed imports, filters, undecodable queries.
//! - `volumes`: volume names that leave the volumes directory (API, CLI,
//!   compose), `HostConfig.Mounts`, endless secret files.
//! - `manager`: replica counts and spec sizes, a full raft disk, silent and
//!   flooding connections on the manager port, a damaged raft log.

#[path = "hostile/images.rs"]
mod images;
#[path = "hostile/manager.rs"]
mod manager;
#[path = "hostile/volumes.rs"]
mod volumes;
