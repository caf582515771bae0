//! Standalone containers on attachable networks: a node asks for its
//! container's place on a network (`AttachNetwork`) and gets a task that
//! stands for it, with `attachment` set, on that node, running, and with an
//! address the allocator gave it; `DetachNetwork` deletes such tasks, which
//! releases their addresses. No container is run for them: the node hears of
//! them only in its network map, and so do the other nodes on the network.
//!
//! The allocator stays the only one that hands addresses out: the call
//! creates the task in `new` and waits (bounded) for the allocator's pass.

use std::time::Duration;

use shoal_proto::{
    Annotations, AttachNetworkRequest, AttachNetworkResponse, DetachNetworkRequest, DetachNetworkResponse,
    NetworkAttachmentConfig, NetworkAttachmentSpec, StoreAction, Task, TaskSpec, TaskState, TaskStatus,
};
use tonic::Status;

use super::Dispatcher;
use crate::control::propose::{create, delete};
use crate::control::WriteError;
use crate::identity::new_id;
use crate::store::{State, StoreError};

/// The most standalone containers' attachments one node may hold at once.
pub const MAX_ATTACHMENTS_PER_NODE: usize = 1000;
/// How long an attach waits for the allocator to give the address.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(10);
/// The most aliases one attachment may have, and the longest network key.
const MAX_ALIASES: usize = 64;
const MAX_NAME_BYTES: usize = crate::control::network::MAX_NAME_BYTES;

fn check_name(what: &str, name: &str) -> Result<(), Status> {
    crate::control::check_endpoint_name(what, name).map_err(Status::invalid_argument)
}

/// A container ID as the runtime makes them: 64 lowercase hex digits.
fn check_container_id(id: &str) -> Result<(), Status> {
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Ok(());
    }
    Err(Status::invalid_argument(format!(
        "container ID \"{}\" is not valid: give the full ID (64 lowercase hex digits)",
        id.escape_debug()
    )))
}

fn check_network_key(key: &str) -> Result<(), Status> {
    if key.is_empty() || key.len() > MAX_NAME_BYTES {
        return Err(Status::invalid_argument(format!(
            "the network is named by its name or ID, 1 to {MAX_NAME_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Checks what a node sends: it is stored, and reaches every node on the network.
pub(super) fn check_attach(req: &AttachNetworkRequest) -> Result<(), Status> {
    check_container_id(&req.container_id)?;
    check_name("container name", req.container_name.strip_prefix('/').unwrap_or(&req.container_name))?;
    check_network_key(&req.network)?;
    if req.aliases.len() > MAX_ALIASES {
        return Err(Status::invalid_argument(format!(
            "{} aliases, more than {MAX_ALIASES}: give fewer",
            req.aliases.len()
        )));
    }
    for alias in &req.aliases {
        check_name("alias", alias)?;
    }
    Ok(())
}

/// The live attachment tasks of container `container_id` on `node_id`.
fn attachments<'a>(state: &'a State, node_id: &'a str, container_id: &'a str) -> impl Iterator<Item = &'a Task> + 'a {
    state.tasks.values().filter(move |t| {
        t.node_id == node_id
            && t.attachment.as_ref().is_some_and(|a| a.container_id == container_id)
            && t.desired_state() <= TaskState::Running
            && !t.state().is_terminal()
    })
}

fn network_of(t: &Task) -> &str {
    t.spec.as_ref().and_then(|s| s.networks.first()).map(|n| n.target.as_str()).unwrap_or("")
}

/// What an attach request comes to: the task that already stands for the
/// container on that network, or the one to create.
#[derive(Debug)]
pub(super) enum Plan {
    Existing(String),
    Create(Box<Task>),
}

/// Decides an attach request against the store.
pub(super) fn plan_attach(state: &State, req: &AttachNetworkRequest, now: i64) -> Result<Plan, Status> {
    let network = state.find_network(&req.network).map_err(|e| match e {
        StoreError::NotFound { .. } => Status::not_found(format!(
            "network {} not found: create it with \"shoal network create --attachable {}\"",
            req.network, req.network
        )),
        other => Status::invalid_argument(other.to_string()),
    })?;
    if !network.spec.as_ref().is_some_and(|s| s.attachable) {
        return Err(Status::failed_precondition(format!(
            "network {} is not attachable: standalone containers can join only networks created with \
             --attachable (attachable: true in a compose file)",
            network.name()
        )));
    }
    if let Some(t) = attachments(state, &req.node_id, &req.container_id).find(|t| network_of(t) == network.id) {
        return Ok(Plan::Existing(t.id.clone()));
    }
    let on_node = state.tasks.values().filter(|t| t.attachment.is_some() && t.node_id == req.node_id).count();
    if on_node >= MAX_ATTACHMENTS_PER_NODE {
        return Err(Status::resource_exhausted(format!(
            "node {} holds {on_node} attachments of standalone containers, the most one node may: disconnect some first",
            req.node_id
        )));
    }
    let name = req.container_name.strip_prefix('/').unwrap_or(&req.container_name).to_string();
    let mut task = Task {
        id: new_id(),
        node_id: req.node_id.clone(),
        annotations: Some(Annotations { name: name.clone(), ..Default::default() }),
        spec: Some(TaskSpec {
            networks: vec![NetworkAttachmentConfig { target: network.id.clone(), aliases: req.aliases.clone() }],
            ..Default::default()
        }),
        attachment: Some(NetworkAttachmentSpec { container_id: req.container_id.clone(), container_name: name }),
        status: Some(TaskStatus { timestamp: now, message: crate::allocator::WAITING.into(), ..Default::default() }),
        ..Default::default()
    };
    task.set_desired_state(TaskState::Running);
    Ok(Plan::Create(Box::new(task)))
}

/// The attachment tasks a detach request deletes.
pub(super) fn plan_detach(state: &State, req: &DetachNetworkRequest) -> Result<Vec<Task>, Status> {
    let network_id = match req.network.as_str() {
        "" => None,
        key => Some(state.find_network(key).map_err(|e| Status::not_found(e.to_string()))?.id.as_str()),
    };
    let tasks: Vec<Task> = attachments(state, &req.node_id, &req.container_id)
        .filter(|t| network_id.is_none_or(|id| network_of(t) == id))
        .cloned()
        .collect();
    if tasks.is_empty() && network_id.is_some() {
        return Err(Status::not_found(format!(
            "container {} is not connected to network {}",
            req.container_id, req.network
        )));
    }
    Ok(tasks)
}

impl Dispatcher {
    /// Commits `actions`, turning a store refusal into a status.
    async fn commit(&self, actions: Vec<StoreAction>) -> Result<(), WriteError> {
        self.proposer.propose(actions).await.map(|_| ())
    }

    pub(super) async fn attach(&self, req: AttachNetworkRequest) -> Result<AttachNetworkResponse, Status> {
        check_attach(&req)?;
        let plan = plan_attach(&self.store.read(), &req, shoal_proto::now_ns())?;
        let id = match plan {
            Plan::Existing(id) => id,
            Plan::Create(task) => {
                let id = task.id.clone();
                self.commit(vec![create(*task)]).await.map_err(|e| Status::unavailable(e.to_string()))?;
                id
            }
        };
        let task = self.wait_allocated(&id).await?;
        let network = self.store.read().networks.get(network_of(&task)).cloned();
        Ok(AttachNetworkResponse { attachment: Some(task), network })
    }

    /// Waits until the allocator has given attachment `id` its address; on
    /// an error or the timeout, deletes it (nothing is left half made).
    async fn wait_allocated(&self, id: &str) -> Result<Task, Status> {
        let deadline = tokio::time::Instant::now() + ATTACH_TIMEOUT;
        let mut changes = self.store.subscribe();
        loop {
            changes.borrow_and_update();
            let failure = {
                let state = self.store.read();
                let Some(t) = state.tasks.get(id) else {
                    return Err(Status::aborted("the attachment was removed before it got its address; retry"));
                };
                let err = t.status.as_ref().map(|s| s.err.as_str()).unwrap_or("");
                if t.state() == TaskState::Running && !t.networks.is_empty() {
                    return Ok(t.clone());
                }
                (!err.is_empty()).then(|| Status::resource_exhausted(err.to_string()))
            };
            let failure = match failure {
                Some(f) => Some(f),
                None => tokio::select! {
                    changed = changes.changed() => match changed {
                        Ok(()) => None,
                        Err(_) => Some(Status::unavailable("the manager is stopping")),
                    },
                    _ = tokio::time::sleep_until(deadline) => Some(Status::deadline_exceeded(format!(
                        "no address was allocated within {} s: the managers may be overloaded; retry",
                        ATTACH_TIMEOUT.as_secs()
                    ))),
                },
            };
            if let Some(status) = failure {
                self.remove_task(id).await;
                return Err(status);
            }
        }
    }

    /// Deletes task `id` if it is still there, retrying on conflicts.
    async fn remove_task(&self, id: &str) {
        for _ in 0..5 {
            let Some(task) = self.store.read().tasks.get(id).cloned() else { return };
            match self.commit(vec![delete(task)]).await {
                Ok(()) | Err(WriteError::Rejected(StoreError::NotFound { .. })) => return,
                Err(WriteError::Rejected(StoreError::VersionConflict { .. })) => continue,
                Err(e) => {
                    tracing::warn!(task = id, error = %e, "removing an attachment that got no address failed");
                    return;
                }
            }
        }
    }

    pub(super) async fn detach(&self, req: DetachNetworkRequest) -> Result<DetachNetworkResponse, Status> {
        check_container_id(&req.container_id)?;
        if !req.network.is_empty() {
            check_network_key(&req.network)?;
        }
        for _ in 0..5 {
            let tasks = plan_detach(&self.store.read(), &req)?;
            let removed: Vec<String> = tasks.iter().map(|t| t.id.clone()).collect();
            if tasks.is_empty() {
                return Ok(DetachNetworkResponse { removed });
            }
            match self.commit(tasks.into_iter().map(delete).collect()).await {
                Ok(()) => return Ok(DetachNetworkResponse { removed }),
                Err(WriteError::Rejected(StoreError::VersionConflict { .. } | StoreError::NotFound { .. })) => continue,
                Err(e) => return Err(Status::unavailable(e.to_string())),
            }
        }
        Err(Status::aborted("detaching kept conflicting with other writes; retry"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{Network, NetworkSpec};

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn request(network: &str) -> AttachNetworkRequest {
        AttachNetworkRequest {
            node_id: "n1".into(),
            container_id: ID.into(),
            container_name: "tool".into(),
            network: network.into(),
            aliases: vec!["t".into()],
        }
    }

    fn state() -> State {
        let mut state = State::default();
        for (id, attachable) in [("open", true), ("closed", false)] {
            let annotations = Some(shoal_proto::Annotations { name: id.into(), ..Default::default() });
            let spec = NetworkSpec { annotations, attachable, ..Default::default() };
            state.networks.insert(id.into(), Network { id: id.into(), spec: Some(spec), ..Default::default() });
        }
        state
    }

    #[test]
    fn what_a_node_sends_is_checked() {
        check_attach(&request("open")).expect("a sane request");
        let bad = [
            AttachNetworkRequest { container_id: "abc".into(), ..request("open") },
            AttachNetworkRequest { container_id: format!("{}/", &ID[1..]), ..request("open") },
            AttachNetworkRequest { container_name: "../x".into(), ..request("open") },
            AttachNetworkRequest { container_name: "a b".into(), ..request("open") },
            AttachNetworkRequest { aliases: vec!["-x".into()], ..request("open") },
            AttachNetworkRequest { aliases: vec!["x".repeat(256)], ..request("open") },
            AttachNetworkRequest { aliases: vec!["a".into(); MAX_ALIASES + 1], ..request("open") },
            AttachNetworkRequest { network: String::new(), ..request("open") },
        ];
        for r in bad {
            let err = check_attach(&r).expect_err("refused");
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{r:?}");
        }
    }

    #[test]
    fn only_attachable_networks_take_containers_and_a_node_takes_so_many() {
        let mut state = state();
        let Plan::Create(task) = plan_attach(&state, &request("open"), 7).expect("a plan") else {
            panic!("a new attachment")
        };
        assert_eq!(task.node_id, "n1");
        assert_eq!(task.name(), "tool");
        assert_eq!(task.desired_state(), TaskState::Running);
        assert_eq!(task.state(), TaskState::New, "the allocator gives the address");
        let err = plan_attach(&state, &request("closed"), 7).expect_err("not attachable");
        assert!(err.message().contains("network closed is not attachable"), "{}", err.message());
        let err = plan_attach(&state, &request("nowhere"), 7).expect_err("no such network");
        assert_eq!(err.code(), tonic::Code::NotFound);
        // The same container again: the same task.
        state.tasks.insert(task.id.clone(), (*task).clone());
        assert!(matches!(plan_attach(&state, &request("open"), 7), Ok(Plan::Existing(id)) if id == task.id));
        for i in 1..MAX_ATTACHMENTS_PER_NODE {
            let mut t = (*task).clone();
            t.id = format!("t{i}");
            t.attachment.as_mut().expect("an attachment").container_id = format!("{i:064x}");
            state.tasks.insert(t.id.clone(), t);
        }
        let mut other = request("open");
        other.container_id = "f".repeat(64);
        let err = plan_attach(&state, &other, 7).expect_err("too many");
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        // Detaching by network, or from all.
        let mut detach = DetachNetworkRequest { node_id: "n1".into(), container_id: ID.into(), network: "open".into() };
        assert_eq!(plan_detach(&state, &detach).expect("a detach").len(), 1);
        detach.network = "closed".into();
        assert_eq!(plan_detach(&state, &detach).expect_err("not on it").code(), tonic::Code::NotFound);
        detach.network.clear();
        detach.container_id = "e".repeat(64);
        assert!(plan_detach(&state, &detach).expect("nothing to detach").is_empty());
    }
}
