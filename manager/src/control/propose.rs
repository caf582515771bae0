//! Proposing store batches to raft and turning the outcome into errors a
//! caller can act on.
//!
//! Any manager accepts writes: a manager that is not the leader forwards the
//! work to the leader over the managers' mutual-TLS link (`Raft.Forward`),
//! at most one hop. A manager that finds no leader, or whose write does not
//! commit, answers within [`WRITE_TIMEOUT`] with a "no quorum: N of M
//! managers reachable" error instead of hanging.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use shoal_proto::raft_client::RaftClient;
use shoal_proto::store_action::{Kind, Object};
use shoal_proto::{RaftPayload, RaftWrite, StoreAction, StoreBatch};
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::ca::NodeTls;
use crate::raft::Raft;
use crate::store::{Store, StoreError};

/// Why a proposed batch did not apply.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
pub enum WriteError {
    /// Committed, but the store refused it (version conflict, missing object…).
    #[error(transparent)]
    Rejected(StoreError),
    /// No leader, or no commit in time: too few managers are reachable.
    #[error(
        "no quorum: {reachable} of {total} managers reachable, and writes need {needed}; bring the unreachable managers back (check their daemons and network)"
    )]
    NoQuorum { reachable: usize, total: usize, needed: usize },
    /// A membership change that would break the swarm.
    #[error("{0}")]
    Refused(String),
    /// Sent to a manager that is not (or no longer) the leader, without
    /// leave to forward it again.
    #[error("this manager is not the raft leader; retry")]
    NotLeader,
    #[error("the raft write did not complete: {0}")]
    Unavailable(String),
    /// The leader's raft storage has no room for the write.
    #[error("{0}")]
    NoSpace(String),
}

/// Work only the leader can do. Travels in postcard in `Raft.Forward`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LeaderOp {
    /// Commit one store batch.
    Write(StoreBatch),
    /// Add a manager: as a learner until it has caught up, then as a voter.
    /// Done already when it is a voter.
    AddManager { raft_id: u64, addr: String },
    /// Take a manager out of the voters, refused when the rest would have no
    /// quorum or no manager would be left.
    RemoveManager { raft_id: u64 },
}

/// A write made on this manager, waiting for its raft entry.
struct Pending {
    batch: StoreBatch,
    /// Its size, encoded.
    bytes: usize,
    reply: tokio::sync::oneshot::Sender<Result<u64, Attempt>>,
}

/// How many raft entries of this manager's writes may be in flight at once,
/// and how many writes, and bytes of them, one entry carries at most (a
/// single larger write goes alone: the API bounds what one request sends).
const ENTRIES_IN_FLIGHT: usize = 4;
const WRITES_PER_ENTRY: usize = 256;
const BYTES_PER_ENTRY: usize = 8 << 20;

/// Group commit: the writes made here (by API callers, or forwarded by other
/// managers to this leader) go to raft together. A write goes at once, in an
/// entry of its own, while fewer than [`ENTRIES_IN_FLIGHT`] entries are being
/// committed; otherwise it waits, and every write that waits rides in the
/// next entry: one log append, one fsync and one replication round for all
/// of them, each batch still applied (all or nothing) on its own.
#[derive(Clone)]
struct Batcher {
    raft: Raft,
    queue: Arc<Mutex<Queue>>,
}

#[derive(Default)]
struct Queue {
    in_flight: usize,
    waiting: Vec<Pending>,
}

/// An entry in flight; when it is done (or its writer gave up waiting), the
/// writes that wait go next.
struct Slot(Batcher);

impl Drop for Slot {
    fn drop(&mut self) {
        let mut queue = self.0.queue();
        queue.in_flight -= 1;
        self.0.start_waiting(&mut queue);
    }
}

impl Batcher {
    fn new(raft: Raft) -> Batcher {
        Batcher { raft, queue: Arc::default() }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn write(&self, batch: StoreBatch) -> Result<u64, Attempt> {
        let outcome = {
            let mut queue = self.queue();
            if queue.in_flight < ENTRIES_IN_FLIGHT && queue.waiting.is_empty() {
                queue.in_flight += 1;
                Err(batch)
            } else {
                let (reply, outcome) = tokio::sync::oneshot::channel();
                let bytes = prost::Message::encoded_len(&batch);
                queue.waiting.push(Pending { batch, bytes, reply });
                Ok(outcome)
            }
        };
        match outcome {
            // Room for another entry: this write goes at once, by itself.
            Err(batch) => {
                let _slot = Slot(self.clone());
                commit(&self.raft, vec![batch]).await.pop().unwrap_or_else(|| Err(missing_result()))
            }
            Ok(outcome) => outcome.await.unwrap_or_else(|_| Err(Attempt::Retry("the write was dropped".into()))),
        }
    }

    /// Starts entries for the waiting writes while there is room.
    fn start_waiting(&self, queue: &mut Queue) {
        while queue.in_flight < ENTRIES_IN_FLIGHT && !queue.waiting.is_empty() {
            let mut bytes = 0;
            let n = queue
                .waiting
                .iter()
                .take(WRITES_PER_ENTRY)
                .take_while(|p| {
                    bytes += p.bytes;
                    bytes <= BYTES_PER_ENTRY
                })
                .count()
                .max(1);
            let group: Vec<Pending> = queue.waiting.drain(..n).collect();
            queue.in_flight += 1;
            let slot = Slot(self.clone());
            tokio::spawn(async move {
                let (batches, replies): (Vec<StoreBatch>, Vec<_>) =
                    group.into_iter().map(|p| (p.batch, p.reply)).unzip();
                let results = commit(&slot.0.raft, batches).await;
                drop(slot);
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            });
        }
    }
}

fn missing_result() -> Attempt {
    Attempt::Done(WriteError::Unavailable("the raft entry came back without this write's result".into()))
}

/// Commits `batches` as one raft entry; returns each one's outcome.
async fn commit(raft: &Raft, batches: Vec<StoreBatch>) -> Vec<Result<u64, Attempt>> {
    let n = batches.len();
    match raft.client_write(RaftWrite { batches }).await {
        Ok(response) => {
            let index = response.log_id.index;
            let mut results: Vec<Result<u64, Attempt>> = response
                .data
                .0
                .into_iter()
                .map(|r| r.map(|()| index).map_err(|e| Attempt::Done(WriteError::Rejected(e))))
                .collect();
            results.resize_with(n, || Err(missing_result()));
            results
        }
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
            (0..n).map(|_| Err(Attempt::Retry("leadership moved".into()))).collect()
        }
        Err(e) => {
            let why = e.to_string();
            (0..n).map(|_| Err(Attempt::Done(WriteError::Unavailable(why.clone())))).collect()
        }
    }
}

/// How long a write may take (finding a leader included) before it is
/// reported as a quorum problem.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(6);
/// Membership changes wait for a new manager to catch up, which may need a
/// snapshot of the whole store.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(120);

/// Proposes batches through this manager's raft node, or its leader.
#[derive(Clone)]
pub struct Proposer {
    raft: Raft,
    store: Store,
    id: u64,
    tls: Option<NodeTls>,
    clients: Arc<Mutex<HashMap<String, RaftClient<Channel>>>>,
    /// Groups this manager's own raft writes into entries.
    batcher: Batcher,
    /// Whether this manager's raft storage has room for a write.
    storage: Option<crate::raft::health::StorageHealth>,
}

/// One attempt's outcome: final, or worth another try once leadership settles.
enum Attempt {
    Done(WriteError),
    Retry(String),
}

impl Proposer {
    /// A proposer for raft member `id`. Without `tls` it never forwards (a
    /// single manager in tests).
    pub fn new(raft: Raft, store: Store, id: u64, tls: Option<NodeTls>) -> Proposer {
        let batcher = Batcher::new(raft.clone());
        Proposer { raft, store, id, tls, clients: Arc::default(), batcher, storage: None }
    }

    /// Refuses writes, as leader, while `storage` has no room for them.
    pub fn with_storage(mut self, storage: crate::raft::health::StorageHealth) -> Proposer {
        self.storage = Some(storage);
        self
    }

    /// Refuses a write at once when this manager's disk is too full for it,
    /// rather than start one that would wait for space.
    fn check_space(&self) -> Result<(), Attempt> {
        match &self.storage {
            Some(s) => s.check_space().map_err(|m| Attempt::Done(WriteError::NoSpace(m))),
            None => Ok(()),
        }
    }

    /// Commits `actions` as one raft entry; returns its log index once applied.
    pub async fn propose(&self, actions: Vec<StoreAction>) -> Result<u64, WriteError> {
        let batch = StoreBatch { actions, timestamp: shoal_proto::now_ns() };
        self.run(LeaderOp::Write(batch), true).await
    }

    /// Does `op` on the leader: here when this manager leads, else (when
    /// `may_forward`) by forwarding it to the leader.
    pub async fn run(&self, op: LeaderOp, may_forward: bool) -> Result<u64, WriteError> {
        let timeout = match op {
            LeaderOp::Write(_) => WRITE_TIMEOUT,
            _ => MEMBERSHIP_TIMEOUT,
        };
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            let attempt = match self.leader(deadline).await {
                None => Err(Attempt::Retry("no leader".into())),
                Some((leader, _)) if leader == self.id => self.run_local(&op, deadline).await,
                Some(_) if !may_forward => return Err(WriteError::NotLeader),
                Some((_, addr)) => match self.forward(&addr, &op, deadline).await {
                    // Read your writes: answer once this manager has applied it too.
                    Ok(index) => {
                        self.wait_applied(index, deadline).await;
                        Ok(index)
                    }
                    e => e,
                },
            };
            match attempt {
                Ok(index) => return Ok(index),
                Err(Attempt::Done(e)) => return Err(e),
                Err(Attempt::Retry(why)) => last = why,
            }
            if Instant::now() + Duration::from_millis(100) >= deadline {
                tracing::debug!(reason = %last, "write gave up");
                return Err(self.no_quorum().await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Does `op` through the manager at `addr` (which passes it to its
    /// leader): how a manager that is not a member yet asks to be added.
    pub async fn run_via(&self, addr: &str, op: LeaderOp) -> Result<u64, WriteError> {
        let deadline = Instant::now() + MEMBERSHIP_TIMEOUT;
        loop {
            match self.forward(addr, &op, deadline).await {
                Ok(index) => return Ok(index),
                Err(Attempt::Done(e)) => return Err(e),
                Err(Attempt::Retry(why)) if Instant::now() + Duration::from_millis(500) >= deadline => {
                    return Err(WriteError::Unavailable(why))
                }
                Err(Attempt::Retry(why)) => tracing::debug!(reason = %why, "retrying through {addr}"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The raft IDs of the voting managers, as this manager knows them.
    pub fn voter_ids(&self) -> BTreeSet<u64> {
        self.voters()
    }

    /// Waits (until `deadline` at most) for this manager to apply `index`.
    async fn wait_applied(&self, index: u64, deadline: Instant) {
        let mut metrics = self.raft.metrics();
        loop {
            if metrics.borrow_and_update().last_applied.is_some_and(|l| l.index >= index) {
                return;
            }
            if tokio::time::timeout_at(deadline, metrics.changed()).await.map(|r| r.is_err()).unwrap_or(true) {
                return;
            }
        }
    }

    /// The leader's raft ID and address, waiting until `deadline` for one.
    async fn leader(&self, deadline: Instant) -> Option<(u64, String)> {
        let mut metrics = self.raft.metrics();
        loop {
            {
                let m = metrics.borrow_and_update();
                if let Some(id) = m.current_leader {
                    if let Some(node) = m.membership_config.membership().get_node(&id) {
                        return Some((id, node.addr.clone()));
                    }
                }
            }
            if tokio::time::timeout_at(deadline, metrics.changed()).await.map(|r| r.is_err()).unwrap_or(true) {
                return None;
            }
        }
    }

    async fn write_local(&self, batch: &StoreBatch, deadline: Instant) -> Result<u64, Attempt> {
        match tokio::time::timeout_at(deadline, self.batcher.write(batch.clone())).await {
            Err(_) => Err(Attempt::Retry("no commit in time".into())),
            Ok(result) => result,
        }
    }

    async fn run_local(&self, op: &LeaderOp, deadline: Instant) -> Result<u64, Attempt> {
        self.check_space()?;
        match op {
            LeaderOp::Write(batch) => self.write_local(batch, deadline).await,
            LeaderOp::AddManager { raft_id, addr } => {
                let voters = self.voters();
                if voters.contains(raft_id) {
                    return Ok(self.applied());
                }
                let node = BasicNode { addr: addr.clone() };
                let added = tokio::time::timeout_at(deadline, self.raft.add_learner(*raft_id, node, true)).await;
                membership_result(added)?;
                let mut voters = self.voters();
                voters.insert(*raft_id);
                let changed = tokio::time::timeout_at(deadline, self.raft.change_membership(voters, false)).await;
                membership_result(changed)
            }
            LeaderOp::RemoveManager { raft_id } => {
                let voters = self.voters();
                if !voters.contains(raft_id) {
                    return Ok(self.applied());
                }
                let rest: BTreeSet<u64> = voters.iter().copied().filter(|v| v != raft_id).collect();
                if rest.is_empty() {
                    return Err(Attempt::Done(WriteError::Refused(
                        "this is the last manager of the swarm: removing it would lose the swarm's state; promote another node first".into(),
                    )));
                }
                let reachable = self.count_reachable(&rest).await;
                let needed = rest.len() / 2 + 1;
                if reachable < needed {
                    return Err(Attempt::Done(WriteError::Refused(format!(
                        "removing this manager would leave {reachable} reachable of {} managers, below the quorum of {needed}: the swarm would stop accepting writes; bring the unreachable managers back first",
                        rest.len()
                    ))));
                }
                let changed = tokio::time::timeout_at(deadline, self.raft.change_membership(rest, false)).await;
                let index = membership_result(changed)?;
                self.record_removed_manager(*raft_id, deadline).await;
                Ok(index)
            }
        }
    }

    /// After `raft_id` left the voters: its node is no longer a manager
    /// (until it is promoted again). Best effort: the membership is what counts.
    async fn record_removed_manager(&self, raft_id: u64, deadline: Instant) {
        for _ in 0..5 {
            let Some(mut node) = self
                .store
                .read()
                .nodes
                .values()
                .find(|n| n.manager_status.as_ref().is_some_and(|m| m.raft_id == raft_id))
                .cloned()
            else {
                return;
            };
            node.manager_status = None;
            if let Some(spec) = node.spec.as_mut() {
                spec.set_desired_role(shoal_proto::NodeRole::Worker);
            }
            let batch = StoreBatch { actions: vec![update(node)], timestamp: shoal_proto::now_ns() };
            match self.write_local(&batch, deadline).await {
                Ok(_) => return,
                Err(Attempt::Done(WriteError::Rejected(StoreError::VersionConflict { .. }))) => continue,
                Err(_) => break,
            }
        }
        tracing::warn!(raft_id, "could not record that a manager left the raft membership");
    }

    async fn forward(&self, addr: &str, op: &LeaderOp, deadline: Instant) -> Result<u64, Attempt> {
        let data = postcard::to_stdvec(op).map_err(|e| Attempt::Done(WriteError::Unavailable(e.to_string())))?;
        let mut client = self.client(addr, deadline).await.map_err(Attempt::Retry)?;
        let mut request = tonic::Request::new(RaftPayload { data });
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
        request.set_timeout(left);
        // The deadline holds here too, whatever the other side does with it.
        let reply = tokio::time::timeout(left, client.forward(request))
            .await
            .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("no answer in time")));
        let reply = match reply {
            Ok(r) => r.into_inner(),
            Err(status) => {
                self.clients.lock().unwrap_or_else(|p| p.into_inner()).remove(addr);
                return Err(Attempt::Retry(format!("forwarding to the leader at {addr}: {}", status.message())));
            }
        };
        let result: Result<u64, WriteError> = postcard::from_bytes(&reply.data)
            .map_err(|e| Attempt::Done(WriteError::Unavailable(format!("malformed reply from the leader: {e}"))))?;
        match result {
            Ok(index) => Ok(index),
            Err(WriteError::NotLeader) => Err(Attempt::Retry("the leader moved".into())),
            // The leader's own deadline ran out: ours decides.
            Err(WriteError::NoQuorum { .. }) => Err(Attempt::Retry("the leader has no quorum".into())),
            Err(e) => Err(Attempt::Done(e)),
        }
    }

    async fn client(&self, addr: &str, deadline: Instant) -> Result<RaftClient<Channel>, String> {
        if let Some(c) = self.clients.lock().unwrap_or_else(|p| p.into_inner()).get(addr) {
            return Ok(c.clone());
        }
        let tls = self.tls.as_ref().ok_or("this manager cannot forward writes (no TLS identity)")?;
        let timeout = deadline.saturating_duration_since(Instant::now()).min(Duration::from_secs(2));
        let channel = crate::ca::tls::connect(addr, tls, timeout).await?;
        // A reply is a write's outcome: small.
        let client = RaftClient::new(channel)
            .max_decoding_message_size(1 << 20)
            .max_encoding_message_size(crate::raft::network::MAX_RAFT_MESSAGE);
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).insert(addr.to_string(), client.clone());
        Ok(client)
    }

    fn voters(&self) -> BTreeSet<u64> {
        self.raft.metrics().borrow().membership_config.membership().voter_ids().collect()
    }

    fn applied(&self) -> u64 {
        self.raft.metrics().borrow().last_applied.map(|l| l.index).unwrap_or(0)
    }

    /// The managers (this one included) that answer a TLS handshake within a second.
    async fn count_reachable(&self, members: &BTreeSet<u64>) -> usize {
        let nodes: Vec<(u64, String)> = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let membership = m.membership_config.membership();
            members.iter().filter_map(|id| membership.get_node(id).map(|n| (*id, n.addr.clone()))).collect()
        };
        let Some(tls) = self.tls.clone() else { return usize::from(members.contains(&self.id)) };
        let probes = nodes.into_iter().map(|(id, addr)| {
            let tls = tls.clone();
            async move { id == self.id || crate::ca::tls::connect(&addr, &tls, Duration::from_secs(1)).await.is_ok() }
        });
        futures::future::join_all(probes).await.into_iter().filter(|up| *up).count()
    }

    /// The error for a write that found no leader or no commit in time.
    async fn no_quorum(&self) -> WriteError {
        let voters = self.voters();
        let total = voters.len();
        let reachable = self.count_reachable(&voters).await;
        WriteError::NoQuorum { reachable, total, needed: total / 2 + 1 }
    }
}

type MembershipResult = Result<
    Result<
        openraft::raft::ClientWriteResponse<crate::raft::TypeConfig>,
        RaftError<u64, ClientWriteError<u64, BasicNode>>,
    >,
    tokio::time::error::Elapsed,
>;

fn membership_result(r: MembershipResult) -> Result<u64, Attempt> {
    match r {
        Err(_) => Err(Attempt::Retry("the membership change did not finish in time".into())),
        Ok(Ok(r)) => Ok(r.log_id.index),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
            Err(Attempt::Retry("leadership moved".into()))
        }
        Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(_))))) => {
            Err(Attempt::Retry("another membership change is in progress".into()))
        }
        Ok(Err(e)) => Err(Attempt::Done(WriteError::Unavailable(e.to_string()))),
    }
}

/// A create action for `object`.
pub fn create(object: impl Into<Object>) -> StoreAction {
    StoreAction { kind: Kind::Create as i32, object: Some(object.into()) }
}

/// An update action for `object`, checked against the version it carries.
pub fn update(object: impl Into<Object>) -> StoreAction {
    StoreAction { kind: Kind::Update as i32, object: Some(object.into()) }
}

/// A delete action for `object`, checked against the version it carries.
pub fn delete(object: impl Into<Object>) -> StoreAction {
    StoreAction { kind: Kind::Delete as i32, object: Some(object.into()) }
}
