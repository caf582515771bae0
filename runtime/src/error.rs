//! The runtime's one error type. Each message names the object, the reason and, where there is
//! one, the next step; the underlying OS error (if any) is the `source()`.

use std::{io, path::PathBuf};

/// Everything that can go wrong in the runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A container (or other object addressed by id or name) does not exist.
    #[error("no such {kind}: \"{id}\" (list {kind}s to see the ids and names that exist)")]
    NotFound { kind: &'static str, id: String },

    /// The image reference or id matches no image in this node's store.
    #[error("image \"{reference}\" is not on this node: import or pull it first")]
    ImageNotFound { reference: String },

    /// The request clashes with the object's current state (name taken, container running, …).
    #[error("{message}")]
    Conflict { message: String },

    /// The request itself is wrong (bad name, empty command, malformed reference, …).
    #[error("{message}")]
    InvalidArgument { message: String },

    /// The container's command could not be executed; the container is now Exited.
    #[error("{message} in container {container}")]
    Exec { container: String, message: String, exit_code: i32 },

    /// The shim (the per-container helper process) failed before it could report.
    #[error("the shim of container {container} failed: {message} (its log is {})", log.display())]
    Shim { container: String, message: String, log: PathBuf },

    /// A file the runtime wrote earlier cannot be understood any more.
    #[error("{} is damaged: {message}; remove the object it belongs to and recreate it", path.display())]
    Corrupt { path: PathBuf, message: String },

    /// An operating-system call failed; `context` says what the runtime was doing.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io { context: context.into(), source }
    }

    /// The message with every underlying cause appended (`outer: inner: …`, the OS error
    /// last), for logs, answers and pipes that carry text.
    pub fn report(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            out.push_str(": ");
            out.push_str(&cause.to_string());
            source = cause.source();
        }
        out
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Error {
        Error::InvalidArgument { message: message.into() }
    }

    pub(crate) fn conflict(message: impl Into<String>) -> Error {
        Error::Conflict { message: message.into() }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, message: impl Into<String>) -> Error {
        Error::Corrupt { path: path.into(), message: message.into() }
    }

    pub(crate) fn container_not_found(id: impl Into<String>) -> Error {
        Error::NotFound { kind: "container", id: id.into() }
    }

    pub(crate) fn volume_not_found(name: impl Into<String>) -> Error {
        Error::NotFound { kind: "volume", id: name.into() }
    }
}

/// Attaches "what we were doing" to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|source| Error::io(context(), source))
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|errno| Error::io(context(), io::Error::from(errno)))
    }
}
