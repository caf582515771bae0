//! What can be wrong with a compose file: errors stop a load, warnings do not.
//!
//! Both point at `file:line:column` the way a compiler does, so an editor or a terminal can
//! jump to the spot.

use std::fmt;
use std::path::PathBuf;

/// Why a compose file could not be turned into a stack.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file is not well-formed YAML.
    #[error("{}:{line}:{column}: {message}", file.display())]
    Yaml { file: PathBuf, line: usize, column: usize, message: String },
    /// The file is YAML but not a valid compose file: a wrong type, a missing or bad value.
    ///
    /// `path` names the key in dotted form, e.g. `services.web.deploy.replicas`.
    #[error("{}:{line}:{column}: {}{message}", file.display(), path_prefix(path))]
    Invalid { file: PathBuf, line: usize, column: usize, path: String, message: String },
    /// The file could not be read; the reason is the error's source.
    #[error("{}: cannot read the compose file", file.display())]
    Io { file: PathBuf, source: std::io::Error },
    /// The stack name cannot name Docker objects.
    #[error(
        "invalid stack name {0:?}: use letters, digits, '_', '.' and '-', \
         starting with a letter or a digit"
    )]
    InvalidStackName(String),
    /// No compose file was given.
    #[error("no compose file given: pass one with -c FILE")]
    NoFile,
    /// The compose model holds something the stack cannot carry yet.
    #[error("{}:{line}:{column}: {}{message}", file.display(), path_prefix(path))]
    Unsupported { file: PathBuf, line: usize, column: usize, path: String, message: String },
}

fn path_prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

/// Something in a compose file that shoal ignores, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.column, self.message)
    }
}
