//! The node daemon's wiring: the runtime, the swarm membership (a manager
//! and the agent once the node is in a swarm), and the HTTP API.

mod identity;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use shoal_manager::{Manager, ManagerConfig};
use shoal_proto::{
    Annotations, CaConfig, Cluster, ClusterSpec, DispatcherConfig, JoinTokens, ManagerStatus, Node, NodeDescription,
    NodeRole, NodeSpec, NodeStatus, OrchestrationConfig, Platform, RaftConfig, Reachability, Resources,
};
use shoal_runtime::Runtime;
use tokio::sync::{watch, RwLock};

pub use identity::NodeIdentity;

/// What `shoal daemon` runs with.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub data_root: PathBuf,
}

/// This node in a swarm: its identity, its manager (if it is one) and its agent.
pub struct Member {
    pub identity: NodeIdentity,
    pub manager: Option<Arc<Manager>>,
    agent_stop: watch::Sender<bool>,
}

/// The daemon: shared by every API handler.
pub struct Daemon {
    pub config: DaemonConfig,
    pub runtime: Arc<Runtime>,
    pub hostname: String,
    pub swarm: RwLock<Option<Member>>,
}

/// Why `swarm init` was refused.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(
        "This node is already part of a swarm. Use \"shoal swarm leave\" to leave this swarm and join another one."
    )]
    AlreadyInSwarm,
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

fn hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into())
}

/// The node's description as its agent reports it.
pub fn node_description(hostname: &str) -> NodeDescription {
    let pages = nix::unistd::sysconf(nix::unistd::SysconfVar::_PHYS_PAGES).ok().flatten().unwrap_or(0);
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(0);
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as i64;
    NodeDescription {
        hostname: hostname.to_string(),
        platform: Some(Platform { architecture: std::env::consts::ARCH.into(), os: std::env::consts::OS.into() }),
        resources: Some(Resources { nano_cpus: cpus * 1_000_000_000, memory_bytes: pages * page, pids: 0 }),
        engine_version: env!("CARGO_PKG_VERSION").into(),
    }
}

impl Daemon {
    /// Opens the runtime and, if this node was in a swarm, rejoins it.
    pub async fn start(config: DaemonConfig) -> anyhow::Result<Arc<Daemon>> {
        std::fs::create_dir_all(&config.data_root)
            .with_context(|| format!("creating the data root {}", config.data_root.display()))?;
        let exe = std::env::current_exe().context("finding the shoal binary to run container shims")?;
        let runtime = Runtime::open(&config.data_root.join("runtime"), exe, vec!["internal-shim".into()])
            .with_context(|| format!("opening the runtime under {}", config.data_root.display()))?;
        let daemon =
            Arc::new(Daemon { config, runtime: Arc::new(runtime), hostname: hostname(), swarm: RwLock::new(None) });
        if let Some(identity) = NodeIdentity::load(&daemon.config.data_root)? {
            tracing::info!(node = %identity.node_id, "rejoining the swarm this node was in");
            let member = daemon.start_member(identity, None).await?;
            *daemon.swarm.write().await = Some(member);
        }
        Ok(daemon)
    }

    /// Starts this node's part in the swarm: its manager (unless `started`
    /// is the one already running) and its agent.
    async fn start_member(&self, identity: NodeIdentity, started: Option<Manager>) -> anyhow::Result<Member> {
        let manager = if let Some(m) = started {
            Some(Arc::new(m))
        } else if identity.role == "manager" {
            Some(Arc::new(Manager::start(self.manager_config(&identity)?).await?))
        } else {
            None
        };
        let (agent_stop, stop_rx) = watch::channel(false);
        let agent_config = shoal_agent::AgentConfig {
            node_id: identity.node_id.clone(),
            addr: identity.advertise_addr.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or_default(),
            description: node_description(&self.hostname),
            managers: identity.managers.clone(),
        };
        tokio::spawn(shoal_agent::run(agent_config, self.runtime.clone(), stop_rx));
        Ok(Member { identity, manager, agent_stop })
    }

    /// `swarm init`: creates a one-manager swarm with this node in it.
    pub async fn swarm_init(&self, listen_addr: &str, advertise_addr: &str) -> Result<String, InitError> {
        let mut swarm = self.swarm.write().await;
        if swarm.is_some() {
            return Err(InitError::AlreadyInSwarm);
        }
        let listen = if listen_addr.is_empty() { "0.0.0.0:2377" } else { listen_addr };
        let listen: SocketAddr = with_default_port(listen).parse().map_err(|_| {
            InitError::InvalidArgument(format!("invalid listen address \"{listen_addr}\": use IP:PORT"))
        })?;
        let advertise = if advertise_addr.is_empty() {
            let ip = if listen.ip().is_unspecified() {
                identity::primary_address().ok_or_else(|| {
                    InitError::InvalidArgument(
                        "could not choose an address to advertise: give one with --advertise-addr".into(),
                    )
                })?
            } else {
                listen.ip()
            };
            SocketAddr::new(ip, listen.port()).to_string()
        } else {
            with_default_port(advertise_addr)
        };
        let identity = NodeIdentity::new_manager(listen.to_string(), advertise.clone());
        identity.save(&self.config.data_root).map_err(InitError::Failed)?;
        let member = match self.bootstrap(identity.clone()).await {
            Ok(m) => m,
            Err(e) => {
                // Nothing half-made stays behind: the next init starts clean.
                let _ = std::fs::remove_file(NodeIdentity::path(&self.config.data_root));
                let _ = std::fs::remove_dir_all(self.config.data_root.join("raft"));
                return Err(InitError::Failed(e));
            }
        };
        let node_id = identity.node_id.clone();
        *swarm = Some(member);
        Ok(node_id)
    }

    /// How this node's manager runs.
    fn manager_config(&self, identity: &NodeIdentity) -> anyhow::Result<ManagerConfig> {
        let listen: SocketAddr = identity
            .listen_addr
            .parse()
            .with_context(|| format!("listen address {} in node.json", identity.listen_addr))?;
        Ok(ManagerConfig::with_defaults(
            self.config.data_root.join("raft"),
            identity.raft_id,
            identity.node_id.clone(),
            listen,
            identity.advertise_addr.clone(),
        ))
    }

    async fn bootstrap(&self, identity: NodeIdentity) -> anyhow::Result<Member> {
        let config = self.manager_config(&identity)?;
        let manager = Manager::start(config.clone()).await?;
        let cluster = Cluster {
            id: identity.cluster_id.clone(),
            spec: Some(ClusterSpec {
                annotations: Some(Annotations { name: "default".into(), ..Default::default() }),
                orchestration: Some(OrchestrationConfig { task_history_retention_limit: 5 }),
                raft: Some(RaftConfig {
                    snapshot_interval: config.snapshot_interval,
                    heartbeat_ms: config.heartbeat_ms,
                    election_timeout_min_ms: config.election_timeout_min_ms,
                    election_timeout_max_ms: config.election_timeout_max_ms,
                }),
                dispatcher: Some(DispatcherConfig {
                    heartbeat_period: shoal_manager::dispatcher::DEFAULT_HEARTBEAT_PERIOD.as_nanos() as i64,
                }),
                ca: Some(CaConfig { node_cert_expiry: 90 * 24 * 3600 * 1_000_000_000 }),
            }),
            join_tokens: Some(JoinTokens { worker: identity.worker_token(), manager: identity.manager_token() }),
            ..Default::default()
        };
        let mut node = Node {
            id: identity.node_id.clone(),
            spec: Some(NodeSpec { desired_role: NodeRole::Manager as i32, ..Default::default() }),
            description: Some(node_description(&self.hostname)),
            status: Some(NodeStatus::default()),
            manager_status: Some(ManagerStatus {
                raft_id: identity.raft_id,
                addr: identity.advertise_addr.clone(),
                leader: false,
                reachability: Reachability::Reachable as i32,
            }),
            ..Default::default()
        };
        node.set_role(NodeRole::Manager);
        if let Err(e) = manager.bootstrap(cluster, node).await {
            manager.shutdown().await;
            return Err(e.into());
        }
        self.start_member(identity, Some(manager)).await
    }

    /// Stops the agent and the manager; containers keep running.
    pub async fn shutdown(&self) {
        if let Some(member) = self.swarm.write().await.take() {
            member.agent_stop.send_replace(true);
            if let Some(m) = member.manager {
                m.shutdown().await;
            }
        }
    }

    /// The data root.
    pub fn data_root(&self) -> &Path {
        &self.config.data_root
    }
}

fn with_default_port(addr: &str) -> String {
    if addr.contains(':') {
        addr.to_string()
    } else {
        format!("{addr}:2377")
    }
}
