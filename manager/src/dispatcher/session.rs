//! The Dispatcher gRPC service: sessions, heartbeats and status reports.

use std::pin::Pin;

use futures::Stream;
use shoal_proto::dispatcher_server;
use std::collections::BTreeSet;

use crate::store::State;
use shoal_proto::{
    AttachNetworkRequest, AttachNetworkResponse, DetachNetworkRequest, DetachNetworkResponse, HeartbeatRequest,
    HeartbeatResponse, NodeState, SessionMessage, SessionRequest, UpdateTaskStatusRequest, UpdateTaskStatusResponse,
    WeightedPeer,
};
use shoal_proto::{Config, Secret, Task, TaskState};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::network_map::NodeNetworks;
use super::{assigned_to, Dispatcher};
use crate::control::propose::update;
use crate::control::WriteError;
use crate::identity::new_id;
use crate::store::StoreError;

type SessionStream = Pin<Box<dyn Stream<Item = Result<SessionMessage, Status>> + Send>>;

impl Dispatcher {
    /// Marks the node ready with the description and address it reported.
    async fn register(&self, req: &SessionRequest) -> Result<(), Status> {
        for _ in 0..5 {
            let node = {
                let state = self.store.read();
                let Some(node) = state.nodes.get(&req.node_id) else {
                    return Err(Status::not_found(format!(
                        "node {} is not a member of this swarm: join it with \"shoal swarm join\"",
                        req.node_id
                    )));
                };
                let mut node = node.clone();
                node.description = req.description.clone();
                let status = node.status.get_or_insert_default();
                status.set_state(NodeState::Ready);
                status.message.clear();
                status.addr = req.addr.clone();
                node
            };
            match self.proposer.propose(vec![update(node)]).await {
                Ok(_) => return Ok(()),
                Err(WriteError::Rejected(StoreError::VersionConflict { .. })) => continue,
                Err(e) => return Err(Status::unavailable(e.to_string())),
            }
        }
        Err(Status::aborted("registering the node kept conflicting with other writes; retry"))
    }

    /// The managers, the leader (this one) first.
    fn managers(&self) -> Vec<WeightedPeer> {
        let state = self.store.read();
        let mut managers: Vec<(bool, WeightedPeer)> = state
            .nodes
            .values()
            .filter_map(|n| {
                let m = n.manager_status.as_ref()?;
                Some((m.raft_id != self.raft_id, WeightedPeer { node_id: n.id.clone(), addr: m.addr.clone() }))
            })
            .collect();
        managers.sort_by(|a, b| (a.0, &a.1.addr).cmp(&(b.0, &b.1.addr)));
        managers.into_iter().map(|(_, p)| p).collect()
    }
}

/// The secrets and configs that `tasks` (one node's assignments) use, and
/// no others: a node never learns a secret none of its live tasks needs.
pub(super) fn files_of(state: &State, tasks: &[Task]) -> (Vec<Secret>, Vec<Config>) {
    let mut secret_ids = BTreeSet::new();
    let mut config_ids = BTreeSet::new();
    for t in tasks.iter().filter(|t| t.desired_state() <= TaskState::Running) {
        let Some(c) = t.spec.as_ref().and_then(|s| s.container.as_ref()) else { continue };
        secret_ids.extend(c.secrets.iter().map(|r| r.secret_id.as_str()));
        config_ids.extend(c.configs.iter().map(|r| r.config_id.as_str()));
    }
    (
        secret_ids.into_iter().filter_map(|id| state.secrets.get(id).cloned()).collect(),
        config_ids.into_iter().filter_map(|id| state.configs.get(id).cloned()).collect(),
    )
}

#[tonic::async_trait]
impl dispatcher_server::Dispatcher for Dispatcher {
    type SessionStream = SessionStream;

    async fn session(&self, request: Request<SessionRequest>) -> Result<Response<SessionStream>, Status> {
        self.check_leader()?;
        self.check_caller(&request, &request.get_ref().node_id)?;
        let req = request.into_inner();
        super::check_node_report(req.description.as_ref(), &[&req.addr])?;
        self.register(&req).await?;
        self.beat(&req.node_id);
        let session_id = new_id();
        let (tx, rx) = mpsc::channel(4);
        let me = self.clone();
        self.tasks.spawn(async move {
            let mut changes = me.store.subscribe();
            let mut leadership = me.leadership.clone();
            let term = *leadership.borrow_and_update();
            if !term.is_leader() {
                let _ = tx.send(Err(Status::unavailable("this manager is not the leader; try another manager"))).await;
                return;
            }
            let mut last: Option<(Vec<(String, u64)>, i32, Vec<WeightedPeer>)> = None;
            // What the node was last told of its networks: the next message
            // carries only what changed since (the first, all of it).
            let mut told: Option<NodeNetworks> = None;
            loop {
                changes.mark_unchanged();
                let (tasks, secrets, configs, desired_role, networks) = {
                    let state = me.store.read();
                    let tasks: Vec<_> =
                        state.tasks.values().filter(|t| assigned_to(t, &req.node_id)).cloned().collect();
                    let (secrets, configs) = files_of(&state, &tasks);
                    let role = state.nodes.get(&req.node_id).and_then(|n| n.spec.as_ref()).map(|s| s.desired_role);
                    (tasks, secrets, configs, role.unwrap_or_default(), NodeNetworks::of(&state, &req.node_id))
                };
                let network_map = match &told {
                    None => Some(networks.full()),
                    Some(old) => networks.update_from(old),
                };
                let fingerprint: Vec<(String, u64)> = tasks
                    .iter()
                    .map(|t| (t.id.clone(), t.version()))
                    .chain(secrets.iter().map(|s| (s.id.clone(), s.version())))
                    .chain(configs.iter().map(|c| (c.id.clone(), c.version())))
                    .collect();
                let managers = me.managers();
                let fingerprint = (fingerprint, desired_role, managers.clone());
                if last.as_ref() != Some(&fingerprint) || network_map.is_some() {
                    let msg = SessionMessage {
                        session_id: session_id.clone(),
                        tasks,
                        managers,
                        heartbeat_period: me.heartbeat_period().as_nanos() as i64,
                        desired_role,
                        secrets,
                        configs,
                        network_map,
                    };
                    if tx.send(Ok(msg)).await.is_err() {
                        return;
                    }
                    last = Some(fingerprint);
                    told = Some(networks);
                }
                tokio::select! {
                    // Let a burst of writes gather before scanning the tasks again.
                    _ = changes.changed() => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
                    // A session belongs to one term: a new term (or none) means
                    // the agent must find the leader again.
                    changed = leadership.changed() => {
                        if changed.is_err() || *leadership.borrow_and_update() != term {
                            let _ = tx.send(Err(Status::unavailable("leadership changed; reconnect"))).await;
                            return;
                        }
                    }
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn heartbeat(&self, request: Request<HeartbeatRequest>) -> Result<Response<HeartbeatResponse>, Status> {
        self.check_leader()?;
        self.check_caller(&request, &request.get_ref().node_id)?;
        let req = request.into_inner();
        let down = {
            let state = self.store.read();
            match state.nodes.get(&req.node_id) {
                None => return Err(Status::not_found(format!("node {} is not a member of this swarm", req.node_id))),
                Some(n) => n.status.as_ref().map(|s| s.state()) != Some(NodeState::Ready),
            }
        };
        if down {
            // The node was marked down (or the leader changed): it must open a
            // new session, which registers it as ready again.
            return Err(Status::failed_precondition("node is not ready: open a new session"));
        }
        self.beat(&req.node_id);
        Ok(Response::new(HeartbeatResponse { period: self.heartbeat_period().as_nanos() as i64 }))
    }

    async fn update_task_status(
        &self,
        request: Request<UpdateTaskStatusRequest>,
    ) -> Result<Response<UpdateTaskStatusResponse>, Status> {
        self.check_leader()?;
        self.check_caller(&request, &request.get_ref().node_id)?;
        let req = request.into_inner();
        self.apply_status_updates(&req.node_id, &req.updates).await?;
        Ok(Response::new(UpdateTaskStatusResponse {}))
    }

    async fn attach_network(
        &self,
        request: Request<AttachNetworkRequest>,
    ) -> Result<Response<AttachNetworkResponse>, Status> {
        self.check_leader()?;
        self.check_caller(&request, &request.get_ref().node_id)?;
        Ok(Response::new(self.attach(request.into_inner()).await?))
    }

    async fn detach_network(
        &self,
        request: Request<DetachNetworkRequest>,
    ) -> Result<Response<DetachNetworkResponse>, Status> {
        self.check_leader()?;
        self.check_caller(&request, &request.get_ref().node_id)?;
        Ok(Response::new(self.detach(request.into_inner()).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{ContainerSpec, SecretReference, SecretSpec, TaskSpec};

    fn task(id: &str, secrets: &[&str], desired: TaskState) -> Task {
        let mut t = Task {
            id: id.into(),
            spec: Some(TaskSpec {
                container: Some(ContainerSpec {
                    secrets: secrets
                        .iter()
                        .map(|s| SecretReference { secret_id: s.to_string(), ..Default::default() })
                        .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        t.set_desired_state(desired);
        t
    }

    #[test]
    fn a_node_gets_only_the_secrets_of_its_live_tasks() {
        let mut state = State::default();
        for id in ["s1", "s2", "s3"] {
            let spec = SecretSpec { data: id.as_bytes().to_vec(), ..Default::default() };
            state.secrets.insert(id.into(), Secret { id: id.into(), spec: Some(spec), ..Default::default() });
        }
        let tasks = [
            task("t1", &["s1"], TaskState::Running),
            task("t2", &["s1", "s2"], TaskState::Ready),
            task("t3", &["s3"], TaskState::Shutdown),
        ];
        let (secrets, configs) = files_of(&state, &tasks);
        let ids: Vec<&str> = secrets.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["s1", "s2"]);
        assert!(configs.is_empty());
    }
}
