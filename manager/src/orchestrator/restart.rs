//! The restart policy: whether a stopped task gets a replacement, and when.

use shoal_proto::{RestartCondition, Task, TaskState, DEFAULT_RESTART_DELAY_NS};

/// The delay before a replacement task starts (ns).
pub fn restart_delay(task: &Task) -> i64 {
    task.spec.as_ref().and_then(|s| s.restart.as_ref()).and_then(|r| r.delay).unwrap_or(DEFAULT_RESTART_DELAY_NS).max(0)
}

/// Whether `task`, now stopped in state `task.state()`, should be replaced.
/// `history` holds the earlier tasks of the same slot.
pub fn should_restart<'a>(task: &Task, history: impl Iterator<Item = &'a Task>, now: i64) -> bool {
    let policy = task.spec.as_ref().and_then(|s| s.restart).unwrap_or_default();
    let state = task.state();
    let wanted = match policy.condition() {
        RestartCondition::None => false,
        RestartCondition::OnFailure => state != TaskState::Complete,
        RestartCondition::Any => true,
    };
    if !wanted {
        return false;
    }
    if policy.max_attempts == 0 {
        return true;
    }
    // Restarts so far: earlier tasks of the slot that stopped and were
    // replaced, counted within the window when one is set.
    let since = if policy.window > 0 { now - policy.window } else { i64::MIN };
    let restarts = history
        .filter(|t| t.id != task.id && t.desired_state() >= TaskState::Shutdown && t.state().is_terminal())
        .filter(|t| t.meta.as_ref().map(|m| m.created_at).unwrap_or(0) >= since)
        .count() as u64;
    restarts < policy.max_attempts
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{RestartPolicy, TaskSpec, TaskStatus};

    fn task(condition: RestartCondition, max: u64, state: TaskState) -> Task {
        let mut t = Task {
            id: shoal_proto::now_ns().to_string() + &format!("{:?}", state),
            spec: Some(TaskSpec {
                restart: Some(RestartPolicy { condition: condition as i32, max_attempts: max, ..Default::default() }),
                ..Default::default()
            }),
            status: Some(TaskStatus::default()),
            ..Default::default()
        };
        if let Some(s) = t.status.as_mut() {
            s.set_state(state);
        }
        t
    }

    #[test]
    fn conditions() {
        assert!(should_restart(&task(RestartCondition::Any, 0, TaskState::Complete), [].iter(), 0));
        assert!(!should_restart(&task(RestartCondition::OnFailure, 0, TaskState::Complete), [].iter(), 0));
        assert!(should_restart(&task(RestartCondition::OnFailure, 0, TaskState::Failed), [].iter(), 0));
        assert!(!should_restart(&task(RestartCondition::None, 0, TaskState::Failed), [].iter(), 0));
    }

    #[test]
    fn max_attempts_counts_replaced_tasks() {
        let mut old = task(RestartCondition::Any, 2, TaskState::Failed);
        old.id = "old".into();
        old.set_desired_state(TaskState::Shutdown);
        let now = task(RestartCondition::Any, 2, TaskState::Failed);
        assert!(should_restart(&now, [old.clone()].iter(), 0));
        let mut old2 = old.clone();
        old2.id = "old2".into();
        assert!(!should_restart(&now, [old, old2].iter(), 0));
    }
}
