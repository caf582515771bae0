//! One manager: its raft member, its store, its gRPC endpoint (raft and
//! dispatcher on one port), and the leader-only control loops, started when
//! it becomes leader and stopped when it stops being leader.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use shoal_proto::{Cluster, Node};
use tokio::sync::watch;

use crate::control::propose::create;
use crate::control::{Control, LeaderOp, Proposer};
use crate::dispatcher::Dispatcher;
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
        }
    }
}

/// Why a manager could not start or bootstrap.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("opening the raft database {path}: {source}")]
    Database { path: PathBuf, source: redb::Error },
    #[error("raft storage: {0}")]
    Storage(#[from] crate::raft::StorageError),
    #[error("raft configuration: {0}")]
    Config(#[from] openraft::ConfigError),
    #[error("raft: {0}")]
    Raft(String),
    #[error("listening on {addr}: {source}: is another daemon using this port? choose another with --listen-addr")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Write(#[from] crate::control::WriteError),
    #[error("creating {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// A running manager.
pub struct Manager {
    config: ManagerConfig,
    raft: Raft,
    store: Store,
    proposer: Proposer,
    dispatcher: Dispatcher,
    shutdown: watch::Sender<bool>,
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
        let (log, closed) =
            LogStore::open(&db_path).map_err(|source| ManagerError::Database { path: db_path.clone(), source })?;
        let log = log
            .leading_as(config.raft_id)
            .map_err(|e| ManagerError::Database { path: db_path, source: redb::Error::Io(e) })?;
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
        let network = NetworkFactory::new(config.tls.clone(), gate.clone());
        let raft = Raft::new(config.raft_id, Arc::new(raft_config), network, log, sm)
            .await
            .map_err(|e| ManagerError::Raft(e.to_string()))?;
        let proposer = Proposer::new(raft.clone(), store.clone(), config.raft_id, Some(config.tls.clone()));
        let (shutdown, _) = watch::channel(false);
        let (leader_tx, leader_rx) = watch::channel(false);
        let dispatcher = Dispatcher::new(store.clone(), proposer.clone(), leader_rx, config.raft_id);

        let listener = tokio::net::TcpListener::bind(config.listen_addr)
            .await
            .map_err(|source| ManagerError::Listen { addr: config.listen_addr, source })?;
        // Raft messages are small and latency-bound: no Nagle delay on replies.
        let incoming = tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(listener), |s| {
            s.and_then(|s| s.set_nodelay(true).map(|()| s))
        });
        let ca_service = crate::ca::server::NodeCaService {
            store: store.clone(),
            proposer: proposer.clone(),
            ca: config.ca.clone(),
        };
        let router = tonic::transport::Server::builder()
            .tls_config(crate::ca::tls::server_config(&config.tls))
            .map_err(|e| ManagerError::Raft(format!("TLS configuration: {e}")))?
            .add_service(
                shoal_proto::raft_server::RaftServer::new(RaftService::new(raft.clone(), proposer.clone()))
                    .max_decoding_message_size(usize::MAX),
            )
            .add_service(shoal_proto::dispatcher_server::DispatcherServer::new(dispatcher.clone()))
            .add_service(shoal_proto::node_ca_server::NodeCaServer::new(ca_service));
        let mut stop = shutdown.subscribe();
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
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
            shutdown,
            closed: std::sync::Mutex::new(Some(closed)),
        };
        manager.watch_leadership(leader_tx);
        manager.send_held_back_commits(gate);
        Ok(manager)
    }

    /// When the network held back a commit index because this leader had
    /// not flushed it yet (see `raft::log_store`), tells the followers once
    /// the flush is done, instead of at the next heartbeat.
    fn send_held_back_commits(&self, gate: crate::raft::log_store::CommitGate) {
        let raft = self.raft.clone();
        let mut durable = gate.durable();
        let mut shutdown = self.shutdown.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = durable.changed() => if changed.is_err() { return },
                    _ = shutdown.wait_for(|s| *s) => return,
                }
                if gate.take_held_back() && raft.trigger().heartbeat().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Starts the control loops whenever this manager is leader and stops
    /// them when it is not.
    fn watch_leadership(&self, leader_tx: watch::Sender<bool>) {
        // The server metrics change with leadership and membership only (the
        // full metrics change with every write).
        let mut metrics = self.raft.server_metrics();
        let id = self.config.raft_id;
        let store = self.store.clone();
        let proposer = self.proposer.clone();
        let dispatcher = self.dispatcher.clone();
        let mut shutdown = self.shutdown.subscribe();
        tokio::spawn(async move {
            let mut loops: Option<watch::Sender<bool>> = None;
            loop {
                let is_leader = {
                    let m = metrics.borrow_and_update();
                    m.current_leader == Some(id) && m.state.is_leader()
                };
                if is_leader && loops.is_none() {
                    tracing::info!("this manager is now the raft leader: starting the control loops");
                    let (stop_tx, stop_rx) = watch::channel(false);
                    tokio::spawn(crate::orchestrator::replicated::run(
                        store.clone(),
                        proposer.clone(),
                        stop_rx.clone(),
                    ));
                    tokio::spawn(crate::orchestrator::taskreaper::run(
                        store.clone(),
                        proposer.clone(),
                        stop_rx.clone(),
                    ));
                    tokio::spawn(crate::scheduler::run(store.clone(), proposer.clone(), stop_rx.clone()));
                    tokio::spawn(crate::dispatcher::run_liveness(dispatcher.clone(), stop_rx));
                    loops = Some(stop_tx);
                } else if !is_leader {
                    if let Some(stop) = loops.take() {
                        tracing::info!("this manager is no longer the raft leader: stopping the control loops");
                        let _ = stop.send(true);
                    }
                }
                leader_tx.send_if_modified(|was| std::mem::replace(was, is_leader) != is_leader);
                tokio::select! {
                    r = metrics.changed() => if r.is_err() { break },
                    _ = shutdown.changed() => break,
                }
            }
            if let Some(stop) = loops.take() {
                let _ = stop.send(true);
            }
            leader_tx.send_replace(false);
        });
    }

    /// Makes this manager the first member of a new cluster and commits the
    /// cluster object and this node.
    pub async fn bootstrap(&self, cluster: Cluster, node: Node) -> Result<(), ManagerError> {
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

    /// Stops the loops, the gRPC endpoint and raft, and waits (up to 5 s)
    /// until the raft database is closed, so that it can be opened again.
    pub async fn shutdown(&self) {
        self.shutdown.send_replace(true);
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not shut down cleanly");
        }
        let closed = self.closed.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(closed) = closed {
            if tokio::time::timeout(Duration::from_secs(5), closed).await.is_err() {
                tracing::warn!("the raft database was still in use 5 s after shutdown");
            }
        }
    }
}
