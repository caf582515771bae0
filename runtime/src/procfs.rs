//! Process identity that survives pid reuse: a pid plus its start time (clock ticks since boot,
//! field 22 of `/proc/<pid>/stat`). A recorded identity whose pid now has another start time, or
//! is a zombie, is a process that has ended.

use std::fs;

use serde::{Deserialize, Serialize};

/// A pid together with the start time of the process that had it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProcessIdentity {
    pub pid: i32,
    pub start_time: u64,
}

impl ProcessIdentity {
    /// The identity of the live process `pid`, if there is one.
    pub(crate) fn of(pid: i32) -> Option<ProcessIdentity> {
        let (state, start_time) = stat(pid)?;
        (state != 'Z' && state != 'X').then_some(ProcessIdentity { pid, start_time })
    }

    /// The identity of `pid` even if it has exited but not been reaped yet: for a parent
    /// naming its own child, whose pid cannot be reused before it is waited for.
    pub(crate) fn of_child(pid: i32) -> Option<ProcessIdentity> {
        stat(pid).map(|(_, start_time)| ProcessIdentity { pid, start_time })
    }

    /// Whether this very process is still running (not exited, not a zombie, pid not reused).
    pub(crate) fn is_running(&self) -> bool {
        ProcessIdentity::of(self.pid) == Some(*self)
    }
}

/// `(state, start time)` of `pid` from `/proc/<pid>/stat`.
fn stat(pid: i32) -> Option<(char, u64)> {
    if pid <= 0 {
        return None;
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state (field 3), the start time is field 22: 18 fields further.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some((state, start_time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_itself_and_rejects_other_start_times() {
        let me = ProcessIdentity::of(std::process::id() as i32).expect("own stat");
        assert!(me.is_running());
        assert!(me.start_time > 0);
        let reused = ProcessIdentity { start_time: me.start_time + 1, ..me };
        assert!(!reused.is_running());
        assert_eq!(ProcessIdentity::of(-1), None);
    }
}
