//! The replicated orchestrator: for every replicated service, exactly one
//! live task per slot 1..=replicas.
//!
//! A pass compares the store with the services' specs and returns the writes
//! that close the gap; it keeps no state of its own, so a missed change or a
//! new leader loses nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use shoal_proto::{DependencyCondition, NodeAvailability, NodeState, Service, StoreAction, Task, TaskState};
use tokio_util::sync::CancellationToken;

use super::new_task;
use super::restart::{restart_delay, should_restart};
use crate::control::propose::{create, update};
use crate::control::Proposer;
use crate::reconcile::run_writer;
use crate::store::{State, Store};

/// Runs the replicated orchestrator until `stop` is cancelled.
pub async fn run(store: Store, proposer: Proposer, stop: CancellationToken) {
    run_writer("orchestrator", store, proposer, stop, |state, now| {
        let (actions, wake) = reconcile(state, now);
        (actions, wake.map(|ns| Duration::from_nanos(ns.max(0) as u64)))
    })
    .await
}

fn live(t: &Task) -> bool {
    t.desired_state() <= TaskState::Running
}

/// One pass: the writes to make, and in how many ns the next pass is due
/// (a restart delay ending), if any.
pub fn reconcile(state: &State, now: i64) -> (Vec<StoreAction>, Option<i64>) {
    let mut actions = Vec::new();
    let mut wake: Option<i64> = None;
    let mut by_service: BTreeMap<&str, Vec<&Task>> = BTreeMap::new();
    // Standalone containers' attachments belong to no service.
    for t in state.tasks.values().filter(|t| t.attachment.is_none()) {
        by_service.entry(t.service_id.as_str()).or_default().push(t);
    }
    for service in state.services.values() {
        let Some(replicas) = service.replicas() else {
            continue;
        };
        let tasks = by_service.remove(service.id.as_str()).unwrap_or_default();
        // A first deploy waits for the service's dependencies (depends_on);
        // once it has tasks, restarts and updates are never held back.
        if tasks.is_empty() && !dependencies_met(state, service) {
            continue;
        }
        reconcile_service(state, service, replicas, &tasks, now, &mut actions, &mut wake);
    }
    // Tasks whose service is gone: make sure they are being removed.
    for tasks in by_service.values() {
        for t in tasks.iter().filter(|t| t.desired_state() < TaskState::Remove) {
            let mut t = (*t).clone();
            t.set_desired_state(TaskState::Remove);
            actions.push(update(t));
        }
    }
    (actions, wake)
}

/// Whether every `depends_on` of `service` is satisfied: its replicas all
/// running (`service_started`; `service_healthy` too, since a task with a
/// health check only reaches `running` once healthy) or all slots completed
/// with exit 0 (`service_completed_successfully`). A dependency that no
/// longer exists holds nothing back.
pub fn dependencies_met(state: &State, service: &Service) -> bool {
    let Some(spec) = service.spec.as_ref() else { return true };
    spec.depends_on.iter().all(|d| {
        let Some(dep) = state.services.values().find(|s| s.name() == d.service) else { return true };
        let wanted = dep.replicas().unwrap_or(1);
        let tasks: Vec<&Task> = state.service_tasks(&dep.id).collect();
        match d.condition() {
            DependencyCondition::ServiceStarted | DependencyCondition::ServiceHealthy => {
                let running = tasks
                    .iter()
                    .filter(|t| t.state() == TaskState::Running && t.desired_state() == TaskState::Running)
                    .count() as u64;
                running >= wanted
            }
            DependencyCondition::ServiceCompletedSuccessfully => (1..=wanted).all(|slot| {
                tasks.iter().any(|t| {
                    (t.slot == slot || dep.replicas().is_none())
                        && t.state() == TaskState::Complete
                        && t.status.as_ref().and_then(|s| s.container.as_ref()).is_none_or(|c| c.exit_code == 0)
                })
            }),
        }
    })
}

/// How many of a service's tasks may wait for a node at once. The
/// orchestrator makes a service's next tasks only as the scheduler places
/// these, so a service that asks for more replicas than the nodes can take
/// (or asks for nodes that do not exist) costs this many tasks, not one per
/// replica.
pub const PENDING_BATCH: usize = 100;

/// Whether a live task still waits for the scheduler to place it.
fn waiting_for_node(t: &Task) -> bool {
    live(t) && t.node_id.is_empty() && t.state() <= TaskState::Pending
}

fn reconcile_service(
    state: &State,
    service: &Service,
    replicas: u64,
    tasks: &[&Task],
    now: i64,
    actions: &mut Vec<StoreAction>,
    wake: &mut Option<i64>,
) {
    let want_spec = service.spec.as_ref().and_then(|s| s.task.as_ref());
    let mut slots: BTreeMap<u64, Vec<&Task>> = BTreeMap::new();
    for t in tasks {
        slots.entry(t.slot).or_default().push(t);
    }
    // New tasks wait for a node: only as many as the batch has room for.
    // Replacing a task that waits itself adds no waiting task.
    let mut room = PENDING_BATCH.saturating_sub(tasks.iter().filter(|t| waiting_for_node(t)).count());
    let mut take_room = |replaced: Option<&Task>| {
        if replaced.is_some_and(waiting_for_node) {
            return true;
        }
        let free = room > 0;
        room = room.saturating_sub(1);
        free
    };
    // Slots that have tasks: keep each one's live task going. Only slots
    // with tasks are visited, so a pass costs what the service has, not
    // what it asks for.
    // (`range(1..=0)` would panic: a service scaled to zero keeps no slot.)
    let kept = if replicas == 0 { slots.range(0..0) } else { slots.range(1..=replicas) };
    for (&slot, history) in kept {
        let live_tasks: Vec<&Task> = history.iter().copied().filter(|t| live(t)).collect();
        if live_tasks.is_empty() {
            if take_room(None) {
                actions.push(create(new_task(service, slot, TaskState::Running, now)));
            }
            continue;
        }
        for t in live_tasks {
            // A task whose node is down, drained or removed runs elsewhere at
            // once, whatever its restart policy: the slot is still wanted.
            let node_gone = !t.node_id.is_empty()
                && state.nodes.get(&t.node_id).is_none_or(|n| {
                    n.status.as_ref().map(|s| s.state()) == Some(NodeState::Down)
                        || n.spec.as_ref().map(|s| s.availability()) == Some(NodeAvailability::Drain)
                });
            if node_gone && !t.state().is_terminal() {
                if take_room(Some(t)) {
                    let mut old = t.clone();
                    old.set_desired_state(TaskState::Shutdown);
                    actions.push(update(old));
                    actions.push(create(new_task(service, slot, TaskState::Running, now)));
                }
            } else if t.state().is_terminal() {
                // The task stopped: replace it if the restart policy says so,
                // after the restart delay.
                if should_restart(t, history.iter().copied(), now) && take_room(Some(t)) {
                    let mut old = t.clone();
                    old.set_desired_state(TaskState::Shutdown);
                    actions.push(update(old));
                    let mut new = new_task(service, slot, TaskState::Ready, now);
                    new.start_after = now.saturating_add(restart_delay(t));
                    if let Some(s) = new.status.as_mut() {
                        s.message = "restarting after the restart delay".into();
                    }
                    actions.push(create(new));
                }
            } else if t.spec.as_ref() != want_spec {
                // The service changed: replace the outdated task at once.
                if take_room(Some(t)) {
                    let mut old = t.clone();
                    old.set_desired_state(TaskState::Shutdown);
                    actions.push(update(old));
                    actions.push(create(new_task(service, slot, TaskState::Running, now)));
                }
            } else if t.desired_state() == TaskState::Ready {
                if t.start_after <= now {
                    let mut t = t.clone();
                    t.set_desired_state(TaskState::Running);
                    actions.push(update(t));
                } else {
                    let left = t.start_after - now;
                    *wake = Some(wake.map_or(left, |w| w.min(left)));
                }
            }
        }
    }
    // Slots that have no task yet, lowest first, as many as there is room
    // for (the iterator is lazy: a count of 2^32 costs nothing).
    let missing = (1..=replicas).filter(|slot| !slots.contains_key(slot)).take(room);
    for slot in missing {
        actions.push(create(new_task(service, slot, TaskState::Running, now)));
    }
    // Slots beyond the replica count: retire their tasks (scale down).
    let Some(beyond) = replicas.checked_add(1) else { return };
    for (_, history) in slots.range(beyond..) {
        for t in history.iter().filter(|t| live(t)) {
            let mut t = (*t).clone();
            t.set_desired_state(TaskState::Shutdown);
            actions.push(update(t));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use shoal_proto::store_action::Object;
    use shoal_proto::{
        service_mode, Annotations, ContainerSpec, ReplicatedService, ServiceMode, ServiceSpec, StoreBatch, TaskSpec,
    };

    fn service(replicas: u64) -> Service {
        Service {
            id: "svc".into(),
            spec: Some(ServiceSpec {
                annotations: Some(Annotations { name: "app_web".into(), ..Default::default() }),
                task: Some(TaskSpec {
                    container: Some(ContainerSpec { image: "demo:1".into(), ..Default::default() }),
                    ..Default::default()
                }),
                mode: Some(ServiceMode { mode: Some(service_mode::Mode::Replicated(ReplicatedService { replicas })) }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Applies passes until nothing is left to do, like the loop would.
    fn converge(store: &Store, now: i64) -> usize {
        let mut writes = 0;
        for i in 0..10 {
            let (actions, _) = reconcile(&store.read(), now);
            if actions.is_empty() {
                return writes;
            }
            writes += actions.len();
            let index = store.applied_index() + 1;
            store.apply(index, &StoreBatch { actions, timestamp: now + i }).unwrap();
        }
        panic!("did not converge");
    }

    fn set_state(store: &Store, f: impl Fn(&Task) -> Option<TaskState>) {
        let actions: Vec<_> = store
            .read()
            .tasks
            .values()
            .filter_map(|t| {
                let s = f(t)?;
                let mut t = t.clone();
                t.status.get_or_insert_default().set_state(s);
                Some(update(t))
            })
            .collect();
        let index = store.applied_index() + 1;
        store.apply(index, &StoreBatch { actions, timestamp: 0 }).unwrap();
    }

    fn running_slots(store: &Store) -> Vec<u64> {
        let mut v: Vec<u64> = store.read().tasks.values().filter(|t| live(t)).map(|t| t.slot).collect();
        v.sort();
        v
    }

    #[test]
    fn creates_one_task_per_slot_and_scales() {
        let store = Store::new();
        store.apply(1, &StoreBatch { actions: vec![create(service(3))], timestamp: 0 }).unwrap();
        converge(&store, 0);
        assert_eq!(running_slots(&store), vec![1, 2, 3]);
        assert_eq!(converge(&store, 0), 0, "a second pass changes nothing");

        let mut s = store.read().services["svc"].clone();
        s.spec = service(1).spec;
        let index = store.applied_index() + 1;
        store.apply(index, &StoreBatch { actions: vec![update(s)], timestamp: 0 }).unwrap();
        converge(&store, 0);
        assert_eq!(running_slots(&store), vec![1]);
    }

    /// Scaling to zero retires every task (and the pass does not panic on
    /// the empty range of slots 1..=0).
    #[test]
    fn scaling_to_zero_retires_every_task() {
        let store = Store::new();
        store.apply(1, &StoreBatch { actions: vec![create(service(3))], timestamp: 0 }).unwrap();
        converge(&store, 0);
        let mut s = store.read().services["svc"].clone();
        s.spec = service(0).spec;
        let index = store.applied_index() + 1;
        store.apply(index, &StoreBatch { actions: vec![update(s)], timestamp: 0 }).unwrap();
        converge(&store, 0);
        assert_eq!(running_slots(&store), Vec::<u64>::new());
        assert_eq!(store.read().tasks.len(), 3, "the tasks are retired, not replaced");
    }

    fn named(id: &str, name: &str, replicas: u64, depends_on: &[(&str, DependencyCondition)]) -> Service {
        let mut s = service(replicas);
        s.id = id.into();
        let spec = s.spec.as_mut().unwrap();
        spec.annotations.as_mut().unwrap().name = name.into();
        spec.depends_on = depends_on
            .iter()
            .map(|(n, c)| shoal_proto::ServiceDependency { service: n.to_string(), condition: *c as i32 })
            .collect();
        s
    }

    fn tasks_of(store: &Store, id: &str) -> usize {
        store.read().service_tasks(id).count()
    }

    #[test]
    fn first_tasks_wait_for_dependencies() {
        for condition in [DependencyCondition::ServiceStarted, DependencyCondition::ServiceHealthy] {
            let store = Store::new();
            let db = named("db", "app_db", 2, &[]);
            let web = named("web", "app_web", 1, &[("app_db", condition)]);
            store.apply(1, &StoreBatch { actions: vec![create(db), create(web)], timestamp: 0 }).unwrap();
            converge(&store, 0);
            assert_eq!((tasks_of(&store, "db"), tasks_of(&store, "web")), (2, 0));
            // One of two replicas running is not enough.
            let first = store.read().service_tasks("db").next().unwrap().id.clone();
            set_state(&store, |t| (t.id == first).then_some(TaskState::Running));
            converge(&store, 0);
            assert_eq!(tasks_of(&store, "web"), 0);
            set_state(&store, |t| (t.service_id == "db").then_some(TaskState::Running));
            converge(&store, 0);
            assert_eq!(tasks_of(&store, "web"), 1);
            // Later, a failing dependency does not hold back web's restarts.
            set_state(&store, |t| (t.service_id == "db").then_some(TaskState::Failed));
            set_state(&store, |t| (t.service_id == "web").then_some(TaskState::Failed));
            converge(&store, 0);
            assert!(tasks_of(&store, "web") > 1, "web's failed task was not replaced");
        }
    }

    #[test]
    fn completed_successfully_needs_exit_zero() {
        let store = Store::new();
        let migrate = named("m", "app_migrate", 1, &[]);
        let web = named("web", "app_web", 1, &[("app_migrate", DependencyCondition::ServiceCompletedSuccessfully)]);
        store.apply(1, &StoreBatch { actions: vec![create(migrate), create(web)], timestamp: 0 }).unwrap();
        converge(&store, 0);
        set_state(&store, |t| (t.service_id == "m").then_some(TaskState::Running));
        converge(&store, 0);
        assert_eq!(tasks_of(&store, "web"), 0, "running is not completed");
        let actions: Vec<_> = store
            .read()
            .service_tasks("m")
            .map(|t| {
                let mut t = t.clone();
                let st = t.status.get_or_insert_default();
                st.set_state(TaskState::Complete);
                st.container = Some(shoal_proto::ContainerStatus { exit_code: 0, ..Default::default() });
                update(t)
            })
            .collect();
        let index = store.applied_index() + 1;
        store.apply(index, &StoreBatch { actions, timestamp: 0 }).unwrap();
        assert!(dependencies_met(&store.read(), &store.read().services["web"]));
    }

    #[test]
    fn failed_task_is_replaced_after_the_restart_delay() {
        let store = Store::new();
        store.apply(1, &StoreBatch { actions: vec![create(service(1))], timestamp: 0 }).unwrap();
        converge(&store, 0);
        set_state(&store, |_| Some(TaskState::Failed));
        converge(&store, 10);
        let (ready, old): (Vec<Task>, Vec<Task>) =
            store.read().tasks.values().cloned().partition(|t| t.desired_state() == TaskState::Ready);
        assert_eq!(ready.len(), 1);
        assert_eq!(old[0].desired_state(), TaskState::Shutdown);
        let (_, wake) = reconcile(&store.read(), 10);
        assert_eq!(wake, Some(shoal_proto::DEFAULT_RESTART_DELAY_NS));
        converge(&store, 10 + shoal_proto::DEFAULT_RESTART_DELAY_NS);
        let t = store.read().tasks[&ready[0].id].clone();
        assert_eq!(t.desired_state(), TaskState::Running);
    }

    #[test]
    fn changed_spec_replaces_tasks_and_removed_service_removes_them() {
        let store = Store::new();
        store.apply(1, &StoreBatch { actions: vec![create(service(2))], timestamp: 0 }).unwrap();
        converge(&store, 0);
        let mut s = store.read().services["svc"].clone();
        if let Some(c) = s.spec.as_mut().and_then(|s| s.task.as_mut()).and_then(|t| t.container.as_mut()) {
            c.image = "demo:2".into();
        }
        let index = store.applied_index() + 1;
        store.apply(index, &StoreBatch { actions: vec![update(s.clone())], timestamp: 0 }).unwrap();
        converge(&store, 0);
        let live: Vec<Task> = store.read().tasks.values().filter(|t| live(t)).cloned().collect();
        assert_eq!(live.len(), 2);
        assert!(live.iter().all(|t| t.spec.as_ref().and_then(|s| s.container.as_ref()).unwrap().image == "demo:2"));

        let s = store.read().services["svc"].clone();
        let index = store.applied_index() + 1;
        store.apply(index, &StoreBatch { actions: vec![crate::control::propose::delete(s)], timestamp: 0 }).unwrap();
        converge(&store, 0);
        assert!(store.read().tasks.values().all(|t| t.desired_state() == TaskState::Remove));
        let _ = Object::Service(Service::default());
    }

    /// Applies one pass each of the orchestrator, the allocator and the
    /// scheduler, as the three loops would; returns how many writes they made.
    fn round(store: &Store, now: i64) -> usize {
        let mut writes = 0;
        for step in 0..3 {
            let pass = match step {
                0 => reconcile(&store.read(), now).0,
                1 => crate::allocator::allocate(&store.read(), now),
                _ => crate::scheduler::schedule(&store.read(), now),
            };
            if pass.is_empty() {
                continue;
            }
            writes += pass.len();
            let index = store.applied_index() + 1;
            store.apply(index, &StoreBatch { actions: pass, timestamp: now }).unwrap();
        }
        writes
    }

    fn ready_node(id: &str) -> shoal_proto::Node {
        shoal_proto::Node {
            id: id.into(),
            status: Some(shoal_proto::NodeStatus { state: NodeState::Ready as i32, ..Default::default() }),
            ..Default::default()
        }
    }

    /// A service that asks for more replicas than can ever be placed (here:
    /// no node at all) holds one batch of waiting tasks, not one task per
    /// replica, however many passes run and however large the count.
    #[test]
    fn an_unsatisfiable_service_holds_one_batch_of_tasks() {
        for replicas in [100_000, 4_294_967_296, u64::MAX] {
            let store = Store::new();
            store.apply(1, &StoreBatch { actions: vec![create(service(replicas))], timestamp: 0 }).unwrap();
            for i in 0..20 {
                round(&store, i);
                assert_eq!(store.read().tasks.len(), PENDING_BATCH, "{replicas} replicas, round {i}");
            }
            assert!(store.read().tasks.values().all(|t| t.state() == TaskState::Pending));
        }
    }

    /// Tasks that wait for a node are replaced when the service changes
    /// (say, to fix what kept them from a node), batch or not.
    #[test]
    fn waiting_tasks_are_replaced_when_the_service_changes() {
        let store = Store::new();
        store.apply(1, &StoreBatch { actions: vec![create(service(1000))], timestamp: 0 }).unwrap();
        round(&store, 0);
        let mut s = store.read().services["svc"].clone();
        if let Some(c) = s.spec.as_mut().and_then(|s| s.task.as_mut()).and_then(|t| t.container.as_mut()) {
            c.image = "demo:2".into();
        }
        let index = store.applied_index() + 1;
        store.apply(index, &StoreBatch { actions: vec![update(s)], timestamp: 0 }).unwrap();
        round(&store, 1);
        let state = store.read();
        let live: Vec<&Task> = state.tasks.values().filter(|t| live(t)).collect();
        assert_eq!(live.len(), PENDING_BATCH);
        assert!(live.iter().all(|t| t.spec.as_ref().and_then(|s| s.container.as_ref()).unwrap().image == "demo:2"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever the count asked for and the nodes there are, no pass
        /// leaves more than a batch of a service's tasks waiting for a node,
        /// no slot beyond the count gets a task, and where nodes can take
        /// them the service grows by a batch per round until it is whole.
        #[test]
        fn waiting_tasks_never_exceed_a_batch(
            replicas in proptest::prop_oneof![0u64..=350, 350u64..=u64::MAX],
            nodes in 0usize..3,
            rounds in 1usize..6,
        ) {
            let store = Store::new();
            let mut actions = vec![create(service(replicas))];
            actions.extend((0..nodes).map(|i| create(ready_node(&format!("n{i}")))));
            store.apply(1, &StoreBatch { actions, timestamp: 0 }).unwrap();
            for i in 0..rounds {
                round(&store, i as i64);
                let state = store.read();
                let waiting = state.tasks.values().filter(|t| waiting_for_node(t)).count();
                proptest::prop_assert!(waiting <= PENDING_BATCH, "{waiting} tasks wait after round {i}");
                proptest::prop_assert!(state.tasks.values().all(|t| t.slot >= 1 && t.slot <= replicas));
                let live = state.tasks.values().filter(|t| live(t)).count() as u64;
                let expected = if nodes == 0 {
                    replicas.min(PENDING_BATCH as u64)
                } else {
                    replicas.min(((i + 1) * PENDING_BATCH) as u64)
                };
                proptest::prop_assert_eq!(live, expected, "after round {}", i);
            }
        }
    }

    #[test]
    fn tasks_on_a_drained_node_are_replaced_at_once() {
        use shoal_proto::{Node, NodeSpec, NodeStatus};
        let store = Store::new();
        let node = Node {
            id: "n1".into(),
            spec: Some(NodeSpec { availability: NodeAvailability::Drain as i32, ..Default::default() }),
            status: Some(NodeStatus { state: NodeState::Ready as i32, ..Default::default() }),
            ..Default::default()
        };
        store.apply(1, &StoreBatch { actions: vec![create(service(1)), create(node)], timestamp: 0 }).unwrap();
        converge(&store, 0);
        // Put the task on the drained node, running.
        let mut t = store.read().tasks.values().next().unwrap().clone();
        t.node_id = "n1".into();
        t.status.get_or_insert_default().set_state(TaskState::Running);
        let index = store.applied_index() + 1;
        store.apply(index, &StoreBatch { actions: vec![update(t.clone())], timestamp: 0 }).unwrap();
        converge(&store, 5);
        let state = store.read();
        assert_eq!(state.tasks[&t.id].desired_state(), TaskState::Shutdown);
        let fresh: Vec<_> = state.tasks.values().filter(|x| x.id != t.id).collect();
        assert_eq!(fresh.len(), 1);
        assert_eq!(fresh[0].desired_state(), TaskState::Running, "no restart delay for a drained node");
    }
}
