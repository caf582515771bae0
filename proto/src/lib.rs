//! shoal's one object model and its RPCs.
//!
//! Everything here is generated at build time from `proto/*.proto` (by protox
//! and tonic-prost-build), plus small helpers on the generated types. No other
//! crate defines a parallel copy of these types: the manager stores them, the
//! dispatcher streams them, the agent runs them and the HTTP API renders them.

#[allow(clippy::all, missing_docs)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/shoal.v1.rs"));
}

pub use generated::*;

/// The label that groups the objects of one stack.
pub const STACK_NAMESPACE_LABEL: &str = "com.docker.stack.namespace";

/// The default time a task gets to stop before it is killed (10 s).
pub const DEFAULT_STOP_GRACE_PERIOD_NS: i64 = 10_000_000_000;

/// The default delay before a task is restarted (5 s).
pub const DEFAULT_RESTART_DELAY_NS: i64 = 5_000_000_000;

impl TaskState {
    /// True once the task has stopped for good: it never runs again.
    pub fn is_terminal(self) -> bool {
        self as i32 > TaskState::Running as i32
    }

    /// The lowercase name Docker's API uses (`running`, `complete`, …).
    pub fn docker_name(self) -> &'static str {
        match self {
            TaskState::New => "new",
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Accepted => "accepted",
            TaskState::Preparing => "preparing",
            TaskState::Ready => "ready",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Complete => "complete",
            TaskState::Shutdown => "shutdown",
            TaskState::Failed => "failed",
            TaskState::Rejected => "rejected",
            TaskState::Remove => "remove",
            TaskState::Orphaned => "orphaned",
        }
    }

    /// Parses a Docker state name; the inverse of [`TaskState::docker_name`].
    pub fn from_docker_name(name: &str) -> Option<TaskState> {
        Some(match name {
            "new" => TaskState::New,
            "pending" => TaskState::Pending,
            "assigned" => TaskState::Assigned,
            "accepted" => TaskState::Accepted,
            "preparing" => TaskState::Preparing,
            "ready" => TaskState::Ready,
            "starting" => TaskState::Starting,
            "running" => TaskState::Running,
            "complete" => TaskState::Complete,
            "shutdown" => TaskState::Shutdown,
            "failed" => TaskState::Failed,
            "rejected" => TaskState::Rejected,
            "remove" => TaskState::Remove,
            "orphaned" => TaskState::Orphaned,
            _ => return None,
        })
    }
}

impl Task {
    /// The task's current state (`new` when no status was ever recorded).
    pub fn state(&self) -> TaskState {
        self.status.as_ref().map(|s| s.state()).unwrap_or(TaskState::New)
    }

    /// The task's name: `<service>.<slot>` or `<service>.<node id>`.
    pub fn name(&self) -> &str {
        self.annotations.as_ref().map(|a| a.name.as_str()).unwrap_or("")
    }

    /// The version of the object (0 when never stored).
    pub fn version(&self) -> u64 {
        self.meta.as_ref().map(|m| m.version).unwrap_or(0)
    }
}

impl Service {
    /// The service's name.
    pub fn name(&self) -> &str {
        self.spec.as_ref().and_then(|s| s.annotations.as_ref()).map(|a| a.name.as_str()).unwrap_or("")
    }

    /// The version of the object (0 when never stored).
    pub fn version(&self) -> u64 {
        self.meta.as_ref().map(|m| m.version).unwrap_or(0)
    }

    /// Replica count of a replicated service; `None` for other modes.
    pub fn replicas(&self) -> Option<u64> {
        match self.spec.as_ref()?.mode.as_ref()?.mode.as_ref()? {
            service_mode::Mode::Replicated(r) => Some(r.replicas),
            _ => None,
        }
    }
}

impl Node {
    /// The node's hostname (or its spec name when it has none).
    pub fn hostname(&self) -> &str {
        self.description.as_ref().map(|d| d.hostname.as_str()).filter(|h| !h.is_empty()).unwrap_or(self.id.as_str())
    }

    /// The version of the object (0 when never stored).
    pub fn version(&self) -> u64 {
        self.meta.as_ref().map(|m| m.version).unwrap_or(0)
    }
}

macro_rules! into_store_object {
    ($($t:ident),*) => {$(
        impl From<$t> for store_action::Object {
            fn from(o: $t) -> Self {
                store_action::Object::$t(o)
            }
        }
    )*};
}
into_store_object!(Node, Service, Task, Network, Cluster, Secret, Config);

macro_rules! named_object {
    ($($t:ident),*) => {$(
        impl $t {
            /// The object's name.
            pub fn name(&self) -> &str {
                self.spec.as_ref().and_then(|s| s.annotations.as_ref()).map(|a| a.name.as_str()).unwrap_or("")
            }

            /// The object's labels.
            pub fn labels(&self) -> Option<&std::collections::HashMap<String, String>> {
                self.spec.as_ref().and_then(|s| s.annotations.as_ref()).map(|a| &a.labels)
            }

            /// The version of the object (0 when never stored).
            pub fn version(&self) -> u64 {
                self.meta.as_ref().map(|m| m.version).unwrap_or(0)
            }
        }
    )*};
}
named_object!(Network, Secret, Config);

/// The most data a secret or config may hold (500 KiB, as Docker).
pub const MAX_SECRET_SIZE: usize = 500 * 1024;

/// Where a secret's relative target lands in a container.
pub const SECRETS_DIR: &str = "/run/secrets";

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_follow_running() {
        assert!(!TaskState::Running.is_terminal());
        assert!(!TaskState::New.is_terminal());
        assert!(TaskState::Complete.is_terminal());
        assert!(TaskState::Orphaned.is_terminal());
    }

    #[test]
    fn docker_names_round_trip() {
        for s in [TaskState::New, TaskState::Running, TaskState::Failed, TaskState::Orphaned] {
            assert_eq!(TaskState::from_docker_name(s.docker_name()), Some(s));
        }
    }
}

/// The rules for names users give to objects, checked wherever a name enters (the API, the
/// CLI, compose files, mounts), so that every entry point refuses the same names.
pub mod names {
    /// The longest volume name accepted (a file name must fit in 255 bytes).
    pub const VOLUME_NAME_MAX: usize = 255;

    /// Checks `name` against Docker's rule for volume names, `[a-zA-Z0-9][a-zA-Z0-9_.-]+`
    /// (at most 255 bytes). The error says what is wrong and what to use instead.
    pub fn check_volume_name(name: &str) -> Result<(), String> {
        let valid = name.len() >= 2
            && name.len() <= VOLUME_NAME_MAX
            && name.as_bytes()[0].is_ascii_alphanumeric()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if valid {
            return Ok(());
        }
        Err(format!(
            "\"{}\" is not a valid volume name: use 2 to {VOLUME_NAME_MAX} letters, digits, '_', '.' and '-', starting with a letter or digit",
            name.escape_debug()
        ))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn volume_names_follow_dockers_rule() {
            for good in ["db", "app_data", "v.1", "9-lives", "a..", "x..."] {
                assert!(check_volume_name(good).is_ok(), "{good}");
            }
            for bad in ["", "a", "..", ".x", "/etc", "a/b", "_x", "-x", "a b", "é1", &"a".repeat(256)] {
                assert!(check_volume_name(bad).is_err(), "{bad}");
            }
        }
    }
}
