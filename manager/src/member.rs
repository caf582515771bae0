//! One manager: its raft member, its store, its gRPC endpoint (raft and
//! dispatcher on one port), and the leader-only control loops, started when
//! it becomes leader and stopped when it stops being leader.
//!
//! The daemon uses a small surface: [`Manager::start`], then
//! [`Manager::bootstrap`] (a new swarm) or [`Manager::join_through`] (an
//! existing one), reads through [`Manager::store`] and writes through
//! [`Manager::control`], and [`Manager::shutdown`], which returns once every
//! task the manager spawned has ended and the raft database is closed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal_proto::{
    Annotations, CaConfig, Cluster, ClusterSpec, DispatcherConfig, JoinTokens, LimitsConfig, ManagerStatus, Node,
    NodeDescription, NodeRole, NodeSpec, NodeStatus, OrchestrationConfig, RaftConfig, Reachability,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::propose::create;
use crate::control::{Control, LeaderOp, Proposer};
use crate::dispatcher::Dispatcher;
use crate::leadership::Leadership;
use crate::raft::log_store::LogStore;
use crate::raft::network::{NetworkFactory, RaftService};
use crate::raft::state_machine::StateMachine;
use crate::raft::Raft;
use crate::store::Store;

/// How a manager runs.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Where raft keeps its database (`<data-root>/raft`).
    pub state_dir: PathBuf,
    /// This manager's raft member ID.
    pub raft_id: u64,
    /// The node ID of the node this manager runs on.
    pub node_id: String,
    /// Where the gRPC endpoint (raft, dispatcher) listens.
    pub listen_addr: SocketAddr,
    /// The `host:port` peers and agents dial.
    pub advertise_addr: String,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Log entries between snapshots.
    pub snapshot_interval: u64,
    /// This manager's certificate and key, and the cluster root.
    pub tls: crate::ca::NodeTls,
    /// What a connection to the manager port may take.
    pub listener: crate::listener::Limits,
    /// The root CA's key, to issue certificates to joining nodes.
    pub ca: crate::ca::RootCa,
}

impl ManagerConfig {
    /// LAN defaults: heartbeat 100 ms, election timeout 250–500 ms. openraft
    /// lets a follower elect only after the leader lease (the greatest
    /// election timeout) plus its own election timeout without word from the
    /// leader, so a dead leader is replaced after 0.75–1 s (etcd: 1 s).
    pub fn with_defaults(
        state_dir: PathBuf,
        raft_id: u64,
        node_id: String,
        listen_addr: SocketAddr,
        advertise_addr: String,
        tls: crate::ca::NodeTls,
        ca: crate::ca::RootCa,
    ) -> ManagerConfig {
        ManagerConfig {
            tls,
            ca,
            state_dir,
            raft_id,
            node_id,
            listen_addr,
            advertise_addr,
            heartbeat_ms: 100,
            election_timeout_min_ms: 250,
            election_timeout_max_ms: 500,
            snapshot_interval: 10_000,
            listener: crate::listener::Limits::default(),
        }
    }

    /// Applies the raft timing chosen at `swarm init` (what it leaves at 0
    /// keeps its default).
    pub fn tune(&mut self, t: RaftTuning) {
        if t.snapshot_interval > 0 {
            self.snapshot_interval = t.snapshot_interval;
        }
        if t.heartbeat_ms > 0 {
            self.heartbeat_ms = t.heartbeat_ms;
        }
        if t.election_timeout_ms > 0 {
            self.election_timeout_min_ms = t.election_timeout_ms;
            self.election_timeout_max_ms = 2 * t.election_timeout_ms;
        }
    }
}

/// Raft timing chosen at `swarm init`, kept with the node's identity so that
/// the manager runs with it after every restart (0: the LAN default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftTuning {
    pub snapshot_interval: u64,
    pub heartbeat_ms: u64,
    /// The least election timeout; the greatest is twice it.
    pub election_timeout_ms: u64,
}

impl RaftTuning {
    /// Refuses timing raft cannot work with, saying what would.
    pub fn check(&self) -> Result<(), String> {
        let heartbeat = if self.heartbeat_ms > 0 { self.heartbeat_ms } else { 100 };
        let election = if self.election_timeout_ms > 0 { self.election_timeout_ms } else { 250 };
        if election < 2 * heartbeat {
            return Err(format!(
                "the raft election timeout ({election} ms) must be at least 2 heartbeats ({} ms)",
                2 * heartbeat
            ));
        }
        Ok(())
    }
}

/// What `swarm init` asks of a new swarm beyond its first manager's own
/// configuration (addresses, raft timing: [`ManagerConfig`]).
#[derive(Debug, Clone, Default)]
pub struct Bootstrap {
    /// The swarm's ID, as this manager's certificate names it.
    pub cluster_id: String,
    /// This node, as its agent describes it.
    pub description: NodeDescription,
    /// Replicas one service may ask for (0: the default).
    pub max_replicas: u64,
}

/// Why a manager could not start or bootstrap.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error(transparent)]
    Open(#[from] crate::raft::log_store::OpenError),
    #[error("raft storage: {0}")]
    Storage(#[from] crate::raft::StorageError),
    #[error("raft configuration: {0}")]
    Config(#[from] openraft::ConfigError),
    #[error("raft: {0}")]
    Raft(String),
    #[error("listening on {addr}: {source}: is another daemon using this port? choose another with --listen-addr")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Write(#[from] crate::control::WriteError),
    #[error("creating {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    InvalidArgument(String),
}

/// A running manager.
pub struct Manager {
    config: ManagerConfig,
    raft: Raft,
    store: Store,
    proposer: Proposer,
    dispatcher: Dispatcher,
    /// Cancelled by [`Manager::shutdown`]: every task of this manager stops.
    stop: CancellationToken,
    /// Every long-running task this manager spawned, so that shutdown waits
    /// for them.
    tasks: TaskTracker,
    /// What is wrong with the raft storage, if anything.
    storage: crate::raft::health::StorageHealth,
    /// Resolves when the raft database is closed.
    closed: std::sync::Mutex<Option<crate::raft::log_store::Closed>>,
}

impl Manager {
    /// Opens the raft state under `config.state_dir`, starts the gRPC
    /// endpoint and the leadership watcher.
    pub async fn start(config: ManagerConfig) -> Result<Manager, ManagerError> {
        std::fs::create_dir_all(&config.state_dir)
            .map_err(|source| ManagerError::Io { path: config.state_dir.clone(), source })?;
        let db_path = config.state_dir.join("raft.redb");
        let stop = CancellationToken::new();
        let (log, closed) = LogStore::open(&db_path, stop.clone())?;
        let storage = log.health();
        let log = log
            .leading_as(config.raft_id)
            .map_err(|e| ManagerError::Raft(format!("starting the raft log's flush thread: {e}")))?;
        let gate = log.commit_gate();
        let store = Store::new();
        let sm = StateMachine::open(store.clone(), &log)?;
        let raft_config = openraft::Config {
            cluster_name: "shoal".into(),
            heartbeat_interval: config.heartbeat_ms,
            election_timeout_min: config.election_timeout_min_ms,
            election_timeout_max: config.election_timeout_max_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_interval),
            max_in_snapshot_log_to_keep: config.snapshot_interval.min(500),
            ..Default::default()
        }
        .validate()?;
        let tasks = TaskTracker::new();
        let network = NetworkFactory::new(config.tls.clone(), gate.clone(), tasks.clone());
        let raft = Raft::new(config.raft_id, Arc::new(raft_config), network, log, sm)
            .await
            .map_err(|e| ManagerError::Raft(e.to_string()))?;
        let proposer = Proposer::new(raft.clone(), store.clone(), config.raft_id, Some(config.tls.clone()))
            .with_storage(storage.clone());
        let (leadership_tx, leadership) = watch::channel(Leadership::Follower);
        let dispatcher = Dispatcher::new(store.clone(), proposer.clone(), leadership, config.raft_id, tasks.clone());

        let tls = crate::ca::tls::server_config(&config.tls).map_err(ManagerError::Raft)?;
        let listener = tokio::net::TcpListener::bind(config.listen_addr)
            .await
            .map_err(|source| ManagerError::Listen { addr: config.listen_addr, source })?;
        let (incoming, count_streams) =
            crate::listener::serve(listener, Arc::new(tls), config.listener, stop.clone(), &tasks);
        let ca_service = crate::ca::server::NodeCaService {
            store: store.clone(),
            proposer: proposer.clone(),
            ca: config.ca.clone(),
        };
        let router = tonic::transport::Server::builder()
            // Longer than the longest request (adding a manager waits up to
            // 2 minutes for it to catch up); a response stream is not bound by it.
            .timeout(Duration::from_secs(150))
            .max_concurrent_streams(Some(256))
            // A peer that vanished with a stream open is found out.
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .layer(count_streams)
            .add_service(
                shoal_proto::raft_server::RaftServer::new(RaftService::new(raft.clone(), proposer.clone()))
                    .max_decoding_message_size(crate::raft::network::MAX_RAFT_MESSAGE),
            )
            .add_service(shoal_proto::dispatcher_server::DispatcherServer::new(dispatcher.clone()))
            .add_service(shoal_proto::node_ca_server::NodeCaServer::new(ca_service));
        let stopped = stop.clone().cancelled_owned();
        tasks.spawn(async move {
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, stopped).await {
                tracing::error!(error = %e, "the manager's gRPC endpoint stopped");
            }
        });

        let manager = Manager {
            config,
            raft,
            store,
            proposer,
            dispatcher,
            stop,
            tasks,
            storage,
            closed: std::sync::Mutex::new(Some(closed)),
        };
        manager.watch_leadership(leadership_tx);
        manager.send_held_back_commits(gate);
        Ok(manager)
    }

    /// When the network held back a commit index because this leader had
    /// not flushed it yet (see `raft::log_store`), tells the followers once
    /// the flush is done, instead of at the next heartbeat.
    fn send_held_back_commits(&self, gate: crate::raft::log_store::CommitGate) {
        let raft = self.raft.clone();
        let mut durable = gate.durable();
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            loop {
                tokio::select! {
                    changed = durable.changed() => if changed.is_err() { return },
                    _ = stop.cancelled() => return,
                }
                if gate.take_held_back() && raft.trigger().heartbeat().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Starts the control loops whenever this manager is leader and stops
    /// them when it is not: each term of leadership gets a token of its own
    /// (a child of the manager's), cancelled when the term ends.
    fn watch_leadership(&self, leadership: watch::Sender<Leadership>) {
        // The server metrics change with leadership and membership only (the
        // full metrics change with every write).
        let mut metrics = self.raft.server_metrics();
        let raft = self.raft.clone();
        let id = self.config.raft_id;
        let store = self.store.clone();
        let proposer = self.proposer.clone();
        let dispatcher = self.dispatcher.clone();
        let stop = self.stop.clone();
        let tasks = self.tasks.clone();
        self.tasks.spawn(async move {
            let mut term: Option<CancellationToken> = None;
            loop {
                let now = {
                    let m = metrics.borrow_and_update();
                    if m.current_leader == Some(id) && m.state.is_leader() {
                        Leadership::Leader { term: m.vote.leader_id().term }
                    } else {
                        Leadership::Follower
                    }
                };
                let was = *leadership.borrow();
                if was != now {
                    if let Some(ended) = term.take() {
                        tracing::info!("this manager is no longer the raft leader: stopping the control loops");
                        ended.cancel();
                    }
                    if now.is_leader() {
                        let token = stop.child_token();
                        // The loops act on the store: not before it holds every write committed
                        // before this term (a restarted manager replays its log first), or they
                        // would undo what they cannot see yet.
                        let (raft, store, proposer, dispatcher) =
                            (raft.clone(), store.clone(), proposer.clone(), dispatcher.clone());
                        let (loops, term_token) = (tasks.clone(), token.clone());
                        tasks.spawn(async move {
                            tokio::select! {
                                r = raft.ensure_linearizable() => if let Err(e) = r {
                                    tracing::info!(error = %e, "leadership ended before the store caught up");
                                    return;
                                },
                                _ = term_token.cancelled() => return,
                            }
                            tracing::info!("this manager is now the raft leader: starting the control loops");
                            let token = term_token;
                            loops.spawn(crate::orchestrator::replicated::run(
                                store.clone(),
                                proposer.clone(),
                                token.clone(),
                            ));
                            loops.spawn(crate::orchestrator::taskreaper::run(
                                store.clone(),
                                proposer.clone(),
                                token.clone(),
                            ));
                            loops.spawn(crate::allocator::run(store.clone(), proposer.clone(), token.clone()));
                            loops.spawn(crate::scheduler::run(store.clone(), proposer.clone(), token.clone()));
                            loops.spawn(crate::dispatcher::run_liveness(dispatcher, token));
                        });
                        term = Some(token);
                    }
                    leadership.send_replace(now);
                }
                tokio::select! {
                    r = metrics.changed() => if r.is_err() { break },
                    _ = stop.cancelled() => break,
                }
            }
            if let Some(ended) = term.take() {
                ended.cancel();
            }
            leadership.send_replace(Leadership::Follower);
        });
    }

    /// Makes this manager the first member of a new swarm: initializes
    /// raft with it alone, then commits the cluster object (the defaults of
    /// every setting, `init`'s limits, new join tokens that pin this
    /// manager's CA) and this node, as a manager.
    pub async fn bootstrap(&self, init: Bootstrap) -> Result<(), ManagerError> {
        crate::control::limits::check_max_replicas(init.max_replicas)
            .map_err(|e| ManagerError::InvalidArgument(format!("--max-replicas: {e}")))?;
        let token = || crate::ca::make_token(&self.config.ca.digest(), &crate::identity::new_id());
        let max_replicas = match init.max_replicas {
            0 => crate::control::limits::DEFAULT_MAX_REPLICAS,
            n => n,
        };
        let cluster = Cluster {
            id: init.cluster_id,
            spec: Some(ClusterSpec {
                annotations: Some(Annotations { name: "default".into(), ..Default::default() }),
                orchestration: Some(OrchestrationConfig {
                    task_history_retention_limit: crate::orchestrator::taskreaper::DEFAULT_TASK_HISTORY,
                }),
                raft: Some(RaftConfig {
                    snapshot_interval: self.config.snapshot_interval,
                    heartbeat_ms: self.config.heartbeat_ms,
                    election_timeout_min_ms: self.config.election_timeout_min_ms,
                    election_timeout_max_ms: self.config.election_timeout_max_ms,
                }),
                dispatcher: Some(DispatcherConfig {
                    heartbeat_period: crate::dispatcher::DEFAULT_HEARTBEAT_PERIOD.as_nanos() as i64,
                }),
                ca: Some(CaConfig { node_cert_expiry: crate::ca::DEFAULT_CERT_LIFETIME.as_nanos() as i64 }),
                limits: Some(LimitsConfig { max_replicas }),
            }),
            join_tokens: Some(JoinTokens { worker: token(), manager: token() }),
            ..Default::default()
        };
        let mut node = Node {
            id: self.config.node_id.clone(),
            spec: Some(NodeSpec { desired_role: NodeRole::Manager as i32, ..Default::default() }),
            description: Some(init.description),
            status: Some(NodeStatus::default()),
            manager_status: Some(ManagerStatus {
                raft_id: self.config.raft_id,
                addr: self.config.advertise_addr.clone(),
                leader: false,
                reachability: Reachability::Reachable as i32,
            }),
            ..Default::default()
        };
        node.set_role(NodeRole::Manager);
        let members =
            BTreeMap::from([(self.config.raft_id, openraft::BasicNode { addr: self.config.advertise_addr.clone() })]);
        self.raft.initialize(members).await.map_err(|e| ManagerError::Raft(e.to_string()))?;
        self.wait_for_leader(Duration::from_secs(10)).await?;
        self.proposer.propose(vec![create(cluster), create(node)]).await?;
        Ok(())
    }

    /// Waits until some member is leader.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<u64, ManagerError> {
        let m = self
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a raft leader")
            .await
            .map_err(|e| ManagerError::Raft(format!("no raft leader within {timeout:?}: {e}")))?;
        m.current_leader.ok_or_else(|| ManagerError::Raft("no raft leader".into()))
    }

    /// Asks the manager at `via` to add this (started, empty) manager to the
    /// raft membership: it joins as a learner, catches up, then votes.
    pub async fn join_through(&self, via: &str) -> Result<(), ManagerError> {
        let op = LeaderOp::AddManager { raft_id: self.config.raft_id, addr: self.config.advertise_addr.clone() };
        self.proposer.run_via(via, op).await?;
        Ok(())
    }

    /// Takes manager `raft_id` out of the raft membership, refused when it
    /// would leave no manager or no quorum.
    pub async fn remove_manager(&self, raft_id: u64) -> Result<(), ManagerError> {
        self.proposer.run(LeaderOp::RemoveManager { raft_id }, true).await?;
        Ok(())
    }

    /// How many managers vote, as this manager knows it.
    pub fn voter_count(&self) -> usize {
        self.proposer.voter_ids().len()
    }

    /// The raft ID of the current leader, as this manager knows it.
    pub fn current_leader(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// Why this manager cannot take writes as it should, if it cannot: its
    /// raft storage waits for space, or failed and stopped raft (which then
    /// needs a restart of the daemon).
    pub fn storage_problem(&self) -> Option<String> {
        if let Err(fatal) = &self.raft.metrics().borrow().running_state {
            return Some(format!(
                "raft stopped on this manager: {fatal}; restart its daemon (if the raft log is damaged, the error \
                 then says how to recover)"
            ));
        }
        self.storage.problem()
    }

    /// The log index of the last entry applied to this manager's store.
    pub fn applied_index(&self) -> u64 {
        self.raft.metrics().borrow().last_applied.map(|l| l.index).unwrap_or(0)
    }

    /// The log index the latest snapshot covers, if one was taken.
    pub fn snapshot_index(&self) -> Option<u64> {
        self.raft.metrics().borrow().snapshot.map(|l| l.index)
    }

    /// The control API of this manager.
    pub fn control(&self) -> Control {
        Control::new(self.store.clone(), self.proposer.clone())
    }

    /// The store this manager serves reads from.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// This manager's configuration.
    pub fn config(&self) -> &ManagerConfig {
        &self.config
    }

    /// Stops the loops, the gRPC endpoint and raft, waits (up to 5 s) for
    /// every task this manager spawned to end, and (up to 5 s more) until
    /// the raft database is closed, so that it can be opened again.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not shut down cleanly");
        }
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(5), self.tasks.wait()).await.is_err() {
            tracing::warn!(tasks = self.tasks.len(), "manager tasks were still running 5 s after shutdown");
        }
        let closed = self.closed.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(closed) = closed {
            if tokio::time::timeout(Duration::from_secs(5), closed).await.is_err() {
                tracing::warn!("the raft database was still in use 5 s after shutdown");
            }
        }
    }
}
