//! The compose project as shoal understands it: what `load` reads and `convert` consumes.
//!
//! Only what shoal honours is here; values are checked and normalised (commands split into
//! words, environment as a map), but not yet resolved against the process environment.

use std::collections::BTreeMap;

/// A loaded compose file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Project {
    /// In document order.
    pub services: Vec<Service>,
}

/// One entry under `services`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Service {
    pub name: String,
    pub image: String,
    /// Replaces the image's entrypoint; `None` keeps it.
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's command; `None` keeps it.
    pub command: Option<Vec<String>>,
    /// `None` means "take the value from the deploying user's environment, if set".
    pub environment: BTreeMap<String, Option<String>>,
    pub mode: Mode,
}

/// How many tasks a service runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Replicated { replicas: u64 },
}

impl Default for Mode {
    fn default() -> Self {
        Mode::Replicated { replicas: 1 }
    }
}

/// Whether `name` may name a stack or a service: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, the rule
/// Compose and Docker apply.
pub(crate) fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["web", "Web1", "a", "0", "my_app.v2-beta"] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in ["", "_web", "-web", ".web", "my app", "web/1", "wéb", "web:1"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }
}
