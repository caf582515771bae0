//! Why the data plane could not do what it was asked: each error names the device, rule,
//! sandbox or file, the reason, and what to do next.

use std::{io, path::PathBuf};

/// An error of the data plane.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// A request the mesh refuses: a bad sandbox id, an address outside its network, a
    /// network not in the applied map.
    #[error("{0}")]
    Invalid(String),
    /// The sandbox named does not exist on this node.
    #[error("sandbox {0} does not exist on this node: create it first")]
    NoSandbox(String),
    /// A netlink request failed.
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: io::Error,
    },
    /// A file, mount or namespace operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// `nft` refused a batch or could not be run; nothing of the batch was applied.
    #[error("{what}: nft: {message}")]
    Nft { what: String, message: String },
    /// A state file of the mesh does not read.
    #[error("mesh state file {}: {why}: remove it and apply the map again", path.display())]
    State { path: PathBuf, why: String },
}

impl MeshError {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> MeshError {
        MeshError::Io { what: what.into(), source }
    }

    pub(crate) fn netlink(what: impl Into<String>, source: rtnetlink::Error) -> MeshError {
        let source = match source {
            rtnetlink::Error::NetlinkError(message) => message.to_io(),
            other => io::Error::other(other.to_string()),
        };
        MeshError::Netlink { what: what.into(), source }
    }
}

/// Adds what was being done to a failed I/O result.
pub(crate) trait IoContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, MeshError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, MeshError> {
        self.map_err(|e| MeshError::io(what(), e))
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, MeshError> {
        self.map_err(|e| MeshError::io(what(), io::Error::from(e)))
    }
}
