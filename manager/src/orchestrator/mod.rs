//! Orchestrators: make the set of tasks match what services ask for.
//!
//! - [`replicated`]: one task per slot 1..=replicas, replacing failed and
//!   outdated tasks and retiring extra slots;
//! - [`restart`]: the restart policy (condition, delay, attempts in a window);
//! - [`taskreaper`]: deletes tasks of removed services once they stopped, and
//!   old terminated tasks beyond the cluster's history limit.

pub mod replicated;
pub mod restart;
pub mod taskreaper;

use shoal_proto::{Annotations, Service, Task, TaskState, TaskStatus};

use crate::identity::new_id;

/// A new task for `slot` of `service`, in state `new`.
pub fn new_task(service: &Service, slot: u64, desired: TaskState, now: i64) -> Task {
    let spec = service.spec.clone().unwrap_or_default();
    let mut t = Task {
        id: new_id(),
        service_id: service.id.clone(),
        slot,
        spec: spec.task.clone(),
        annotations: Some(Annotations { name: format!("{}.{}", service.name(), slot), ..Default::default() }),
        service_annotations: spec.annotations.clone(),
        status: Some(TaskStatus { timestamp: now, message: "created".into(), ..Default::default() }),
        ..Default::default()
    };
    t.set_desired_state(desired);
    t
}
