//! The node daemon's wiring: the runtime, the swarm membership (a manager
//! and the agent once the node is in a swarm), and the HTTP API.

mod identity;

use std::collections::HashMap;
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
    /// Clients attached to containers that are not started yet, by container id: the next
    /// start hands them the container's stdio.
    pub pending_attach: std::sync::Mutex<HashMap<String, Vec<PendingAttach>>>,
}

/// A client waiting for a container to start, to be handed its attach stream.
pub type PendingAttach = tokio::sync::oneshot::Sender<std::os::unix::net::UnixStream>;

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
        let daemon = Arc::new(Daemon {
            config,
            runtime: Arc::new(runtime),
            hostname: hostname(),
            swarm: RwLock::new(None),
            pending_attach: Default::default(),
        });
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
            addr: identity
                .advertise_addr
                .rsplit_once(':')
                .map(|(h, _)| h.to_string())
                .unwrap_or_else(|| identity.advertise_addr.clone()),
            description: node_description(&self.hostname),
            managers: identity.managers.clone(),
            tls: shoal_manager::ca::tls::client_config(&identity::load_tls(&self.config.data_root)?),
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
        let made = (|| -> anyhow::Result<shoal_manager::ca::RootCa> {
            let ca = shoal_manager::ca::RootCa::generate()?;
            let tls = ca.issue_own(&identity.node_id, NodeRole::Manager, &identity.cluster_id, NODE_CERT_LIFETIME)?;
            identity::save_certificates(&self.config.data_root, &tls, Some(&ca))?;
            identity.save(&self.config.data_root)?;
            Ok(ca)
        })();
        let ca = match made {
            Ok(ca) => ca,
            Err(e) => {
                let _ = std::fs::remove_dir_all(self.config.data_root.join("certificates"));
                return Err(InitError::Failed(e));
            }
        };
        let member = match self.bootstrap(identity.clone(), &ca).await {
            Ok(m) => m,
            Err(e) => {
                // Nothing half-made stays behind: the next init starts clean.
                let _ = std::fs::remove_file(NodeIdentity::path(&self.config.data_root));
                let _ = std::fs::remove_dir_all(self.config.data_root.join("raft"));
                let _ = std::fs::remove_dir_all(self.config.data_root.join("certificates"));
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
            identity::load_tls(&self.config.data_root)?,
            identity::load_ca(&self.config.data_root)?,
        ))
    }

    async fn bootstrap(&self, identity: NodeIdentity, ca: &shoal_manager::ca::RootCa) -> anyhow::Result<Member> {
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
                ca: Some(CaConfig { node_cert_expiry: NODE_CERT_LIFETIME.as_nanos() as i64 }),
            }),
            join_tokens: Some(JoinTokens {
                worker: shoal_manager::ca::make_token(&ca.digest(), &shoal_manager::identity::new_id()),
                manager: shoal_manager::ca::make_token(&ca.digest(), &shoal_manager::identity::new_id()),
            }),
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

    /// `swarm join`: trades the token for a node certificate at a manager
    /// (pinning the swarm's CA by the token's digest), then runs the agent.
    pub async fn swarm_join(&self, remote: &str, token: &str, advertise_addr: &str) -> Result<(), InitError> {
        let mut swarm = self.swarm.write().await;
        if swarm.is_some() {
            return Err(InitError::AlreadyInSwarm);
        }
        let (digest, _) =
            shoal_manager::ca::parse_token(token).map_err(|e| InitError::InvalidArgument(e.to_string()))?;
        let remote = with_default_port(remote);
        let advertise = if advertise_addr.is_empty() {
            identity::primary_address().map(|ip| ip.to_string()).unwrap_or_default()
        } else {
            advertise_addr.to_string()
        };
        let (key_pem, csr) = shoal_manager::ca::new_key_and_csr().map_err(|e| InitError::Failed(e.into()))?;
        let channel = shoal_manager::ca::tls::join_channel(&remote, &digest, std::time::Duration::from_secs(10))
            .await
            .map_err(|e| InitError::Failed(anyhow::anyhow!(e)))?;
        let request = shoal_proto::IssueNodeCertificateRequest {
            token: token.to_string(),
            csr,
            description: Some(node_description(&self.hostname)),
            addr: advertise.clone(),
        };
        let issued = shoal_proto::node_ca_client::NodeCaClient::new(channel)
            .issue_node_certificate(request)
            .await
            .map_err(|s| match s.code() {
                tonic::Code::PermissionDenied | tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => {
                    InitError::InvalidArgument(s.message().to_string())
                }
                _ => InitError::Failed(anyhow::anyhow!("joining through {remote}: {}", s.message())),
            })?
            .into_inner();
        if shoal_manager::ca::cert_digest(&issued.root_ca).as_deref() != Some(digest.as_str()) {
            return Err(InitError::InvalidArgument(
                "the manager sent a CA that does not match the join token's digest: refusing to join".into(),
            ));
        }
        let tls = shoal_manager::ca::NodeTls { root_ca_pem: issued.root_ca, cert_pem: issued.certificate, key_pem };
        let managers = if issued.managers.is_empty() { vec![remote.clone()] } else { issued.managers };
        let identity = NodeIdentity {
            node_id: issued.node_id,
            raft_id: 0,
            cluster_id: issued.cluster_id,
            role: "worker".into(),
            listen_addr: String::new(),
            advertise_addr: advertise,
            managers,
        };
        identity::save_certificates(&self.config.data_root, &tls, None).map_err(InitError::Failed)?;
        identity.save(&self.config.data_root).map_err(InitError::Failed)?;
        let member = self.start_member(identity, None).await.map_err(InitError::Failed)?;
        *swarm = Some(member);
        Ok(())
    }

    /// `swarm leave`: stops the agent (and the manager), removes the task
    /// containers and forgets the swarm. The last manager needs `force`, since
    /// leaving erases the swarm's state.
    pub async fn swarm_leave(&self, force: bool) -> Result<(), InitError> {
        let mut swarm = self.swarm.write().await;
        let Some(member) = swarm.as_ref() else {
            return Err(InitError::InvalidArgument("This node is not part of a swarm".into()));
        };
        if member.manager.is_some() && !force {
            return Err(InitError::InvalidArgument(
                "You are attempting to leave the swarm on a node that is participating as a manager. Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message.".into(),
            ));
        }
        let Some(member) = swarm.take() else { return Ok(()) };
        member.agent_stop.send_replace(true);
        if let Some(m) = member.manager {
            m.shutdown().await;
        }
        let rt = self.runtime.clone();
        let removed = tokio::task::spawn_blocking(move || -> Result<(), shoal_runtime::Error> {
            for c in rt.list_containers()? {
                if c.labels.contains_key(shoal_agent::labels::TASK_ID) {
                    rt.remove_container(&c.id, true)?;
                }
            }
            Ok(())
        })
        .await;
        if let Ok(Err(e)) = removed {
            tracing::warn!(error = %e, "removing task containers while leaving the swarm");
        }
        let root = &self.config.data_root;
        let _ = std::fs::remove_file(NodeIdentity::path(root));
        let _ = std::fs::remove_dir_all(root.join("certificates"));
        let _ = std::fs::remove_dir_all(root.join("raft"));
        Ok(())
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

/// How long node certificates live (swarmkit's default: 90 days).
const NODE_CERT_LIFETIME: std::time::Duration = std::time::Duration::from_secs(90 * 24 * 3600);

fn with_default_port(addr: &str) -> String {
    if addr.contains(':') {
        addr.to_string()
    } else {
        format!("{addr}:2377")
    }
}
