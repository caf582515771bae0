//! The node daemon: the runtime, the policy for standalone containers
//! ([`containers`]: starts, auto-removal, attach hand-off; [`restart`]: the
//! restart policies), exec instances ([`exec`]), the swarm membership (a
//! manager and the agent once the node is in a swarm), and how it all stops
//! ([`shutdown`]).
//!
//! Architecture invariant: the HTTP API calls into the daemon, never the
//! reverse; nothing here knows HTTP.

pub mod attach;
pub mod containers;
pub mod exec;
mod identity;
mod restart;
mod shutdown;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use shoal_agent::network::{Networks, NodeNetwork};
use shoal_manager::{Manager, ManagerConfig};
use shoal_proto::{NodeDescription, NodeRole, Platform, Resources};
use shoal_runtime::Runtime;
use tokio::sync::{watch, RwLock};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use identity::{NodeIdentity, RaftTuning};
use shutdown::Shutdown;

/// What `shoal daemon` runs with.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub data_root: PathBuf,
    /// Whether standalone containers get the node's default bridge outside a swarm too
    /// (`--bridge none`: not; they get loopback only there, as with dockerd's `-b none`).
    pub bridge: bool,
}

/// This node in a swarm: its identity, its manager (if it is one) and its agent.
pub struct Member {
    pub identity: NodeIdentity,
    pub manager: Option<Arc<Manager>>,
    /// Stops the agent (a child of the daemon's shutdown token).
    agent_stop: CancellationToken,
    agent: JoinHandle<()>,
    /// The node's networks, which the agent keeps converged to the managers' map.
    pub network: Networks,
}

/// How long stopping waits for the agent to end (its workers finish what they are doing).
const AGENT_STOP_WAIT: Duration = Duration::from_secs(10);
/// How long the daemon's shutdown waits for its tasks once cancelled.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

impl Member {
    /// Stops the agent and the manager, and waits for the agent to end: containers keep
    /// running.
    async fn stop(self) {
        self.agent_stop.cancel();
        if let Some(m) = self.manager {
            m.shutdown().await;
        }
        if tokio::time::timeout(AGENT_STOP_WAIT, self.agent).await.is_err() {
            tracing::warn!("the agent did not stop within {AGENT_STOP_WAIT:?}; going on without it");
        }
    }
}

/// The daemon: shared by every API handler.
pub struct Daemon {
    pub config: DaemonConfig,
    pub runtime: Arc<Runtime>,
    /// The standalone containers' policy: starts, restarts, auto-removal, attach hand-off.
    pub containers: containers::Containers,
    /// Exec instances made through Docker's exec API.
    pub execs: exec::Execs,
    pub hostname: String,
    pub swarm: RwLock<Option<Member>>,
    /// The node's networks with the node id they were opened for: kept across the restarts
    /// of the node's member (a new certificate, a new role), dropped when it leaves.
    node_network: tokio::sync::Mutex<Option<(String, Arc<NodeNetwork>)>>,
    /// Standalone sandboxes made for containers not created yet: the sweep leaves them be.
    attaching: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The stop signal and the tasks it stops.
    shutdown: Shutdown,
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

/// The name of the shim binary, installed next to `shoal`.
const SHIM_BINARY: &str = "shoal-shim";

/// The container shim (`shoal-shim`, see `shoal_runtime::shim`): the binary of that name next
/// to the running `shoal`. Each container start executes it, so it is a small binary of its
/// own rather than `shoal` again.
pub fn shim_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the shoal binary, next to which the container shim lives")?;
    let shim = exe.with_file_name(SHIM_BINARY);
    if !shim.is_file() {
        anyhow::bail!(
            "the container shim {} is missing: install {SHIM_BINARY} next to {} (`cargo build -p shoal -p shoal-runtime` builds both)",
            shim.display(),
            exe.display()
        );
    }
    Ok(shim)
}

impl Daemon {
    /// Opens the runtime and, if this node was in a swarm, rejoins it.
    pub async fn start(config: DaemonConfig) -> anyhow::Result<Arc<Daemon>> {
        std::fs::create_dir_all(&config.data_root)
            .with_context(|| format!("creating the data root {}", config.data_root.display()))?;
        let runtime = Runtime::open(&config.data_root.join("runtime"), shim_binary()?, Vec::new())
            .with_context(|| format!("opening the runtime under {}", config.data_root.display()))?;
        crate::api::remove_old_uploads(&config.data_root);
        let runtime = Arc::new(runtime);
        let shutdown = Shutdown::default();
        let daemon = Arc::new(Daemon {
            config,
            containers: containers::Containers::new(runtime.clone(), shutdown.clone()),
            execs: exec::Execs::new(runtime.clone()),
            runtime,
            hostname: hostname(),
            swarm: RwLock::new(None),
            node_network: tokio::sync::Mutex::new(None),
            attaching: std::sync::Mutex::new(std::collections::HashSet::new()),
            shutdown,
        });
        daemon.containers.resume();
        daemon.shutdown.spawn(daemon.clone().sweep_standalone_forever());
        if let Some(identity) = NodeIdentity::load(&daemon.config.data_root)? {
            tracing::info!(node = %identity.node_id, "rejoining the swarm this node was in");
            let member = daemon.start_member(identity, None).await?;
            *daemon.swarm.write().await = Some(member);
        } else if daemon.config.bridge {
            daemon.open_local_network().await;
        }
        Ok(daemon)
    }

    /// Starts this node's part in the swarm: its manager (unless `started`
    /// is the one already running) and its agent.
    async fn start_member(
        self: &Arc<Self>,
        identity: NodeIdentity,
        started: Option<Manager>,
    ) -> anyhow::Result<Member> {
        let manager = if let Some(m) = started {
            Some(Arc::new(m))
        } else if identity.role == "manager" {
            Some(Arc::new(Manager::start(self.manager_config(&identity)?).await?))
        } else {
            None
        };
        let agent_stop = self.shutdown.token().child_token();
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
        let role = if identity.role == "manager" { NodeRole::Manager } else { NodeRole::Worker };
        let (role_tx, role_rx) = watch::channel(role as i32);
        let (managers_tx, managers_rx) = watch::channel(identity.managers.clone());
        let told = shoal_agent::Told { desired_role: role_tx, managers: managers_tx };
        let network = self.open_network(&identity.node_id, &agent_config.addr).await;
        let agent = self.shutdown.track(shoal_agent::run(
            agent_config,
            self.runtime.clone(),
            network.clone(),
            agent_stop.clone(),
            told,
        ));
        // Both end with the agent, which holds the other ends of their channels.
        self.shutdown.spawn(self.clone().follow_role(identity.node_id.clone(), role, role_rx));
        self.shutdown.spawn(self.clone().follow_managers(identity.node_id.clone(), managers_rx));
        Ok(Member { identity, manager, agent_stop, agent, network })
    }

    /// This node's networks: the swarm's, when it is in one that has given it some, else its
    /// default bridge alone (outside a swarm, unless the daemon runs with `--bridge none`).
    pub async fn node_network(&self) -> Option<Arc<NodeNetwork>> {
        if let Some(network) = self.swarm.read().await.as_ref().and_then(|m| m.network.get().cloned()) {
            return Some(network);
        }
        let opened = self.node_network.lock().await;
        opened.as_ref().filter(|(id, _)| id.is_empty()).map(|(_, n)| n.clone())
    }

    /// Opens the node's networks outside a swarm: its default bridge, for standalone
    /// containers. A node where they cannot be opened gives its containers loopback only;
    /// the reason is logged.
    async fn open_local_network(&self) {
        let mut opened = self.node_network.lock().await;
        let dir = self.config.data_root.join("mesh");
        match NodeNetwork::open_local(&dir, self.shutdown.token().child_token()).await {
            Ok(n) => *opened = Some((String::new(), n)),
            Err(e) => tracing::error!(
                error = %e,
                "the node's default bridge cannot be made: standalone containers get loopback only"
            ),
        }
    }

    /// Opens the node's networks (`<data-root>/mesh`), the node's advertised address being
    /// the overlays' underlay. A node whose networks cannot be opened still runs tasks that
    /// need none; the reason is logged, and tasks attached to networks are rejected with it.
    async fn open_network(&self, node_id: &str, addr: &str) -> Networks {
        let mut opened = self.node_network.lock().await;
        if let Some((id, network)) = opened.as_ref() {
            if id == node_id {
                return Networks::On(network.clone());
            }
        }
        // Opened outside a swarm (the default bridge): the same networks become the swarm
        // node's, standalone containers keeping their places. On loopback they stay local.
        let local = opened.as_ref().filter(|(id, _)| id.is_empty()).map(|(_, n)| n.clone());
        if let Some(network) = local {
            let underlay = match addr.parse::<std::net::Ipv4Addr>() {
                Ok(a) if a.is_loopback() => {
                    tracing::info!(addr, "the node is advertised on loopback: its tasks get loopback only");
                    return Networks::Loopback;
                }
                Ok(a) => a,
                Err(_) => return Networks::Failed(format!("its advertised address {addr} is not an IPv4 address")),
            };
            return match network.identify(node_id, underlay).await {
                Ok(()) => {
                    *opened = Some((node_id.to_string(), network.clone()));
                    Networks::On(network)
                }
                Err(e) => {
                    tracing::error!(error = %e, "the node's container networks cannot join the swarm");
                    Networks::Failed(format!("they could not join the swarm: {e}"))
                }
            };
        }
        *opened = None;
        let underlay = match addr.parse::<std::net::Ipv4Addr>() {
            Ok(a) if a.is_loopback() => {
                tracing::info!(
                    addr,
                    "the node is advertised on loopback: its containers get loopback only \
                     (advertise a host address for container networks)"
                );
                return Networks::Loopback;
            }
            Ok(a) => a,
            Err(_) => {
                let why = format!("its advertised address {addr} is not an IPv4 address");
                tracing::error!("the node has no container networks: {why}");
                return Networks::Failed(why);
            }
        };
        let dir = self.config.data_root.join("mesh");
        match NodeNetwork::open(&dir, node_id, underlay, self.shutdown.token().child_token()).await {
            Ok(n) => {
                *opened = Some((node_id.to_string(), n.clone()));
                Networks::On(n)
            }
            Err(e) => {
                tracing::error!(error = %e, "the node's container networks cannot be opened: tasks on networks will be rejected");
                Networks::Failed(format!("they could not be opened: {e}"))
            }
        }
    }

    /// `swarm init`: creates a one-manager swarm with this node in it, with
    /// the raft timing and the per-service replica limit (0: the defaults)
    /// the user gave.
    pub async fn swarm_init(
        self: &Arc<Self>,
        listen_addr: &str,
        advertise_addr: &str,
        raft: RaftTuning,
        max_replicas: u64,
    ) -> Result<String, InitError> {
        raft.check().map_err(InitError::InvalidArgument)?;
        shoal_manager::control::limits::check_max_replicas(max_replicas)
            .map_err(|e| InitError::InvalidArgument(e.to_string()))?;
        let mut swarm = self.swarm.write().await;
        if swarm.is_some() {
            return Err(InitError::AlreadyInSwarm);
        }
        let listen = parse_listen(listen_addr)?;
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
        let mut identity = NodeIdentity::new_manager(listen.to_string(), advertise.clone());
        identity.raft = raft;
        let made = (|| -> anyhow::Result<()> {
            let ca = shoal_manager::ca::RootCa::generate()?;
            let lifetime = shoal_manager::ca::DEFAULT_CERT_LIFETIME;
            let tls = ca.issue_own(&identity.node_id, NodeRole::Manager, &identity.cluster_id, lifetime)?;
            identity::save_certificates(&self.config.data_root, &tls, Some(&ca))?;
            identity.save(&self.config.data_root)
        })();
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(self.config.data_root.join("certificates"));
            return Err(InitError::Failed(e));
        }
        let member = match self.bootstrap(identity.clone(), max_replicas).await {
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
        let mut config = ManagerConfig::with_defaults(
            self.config.data_root.join("raft"),
            identity.raft_id,
            identity.node_id.clone(),
            listen,
            identity.advertise_addr.clone(),
            identity::load_tls(&self.config.data_root)?,
            identity::load_ca(&self.config.data_root)?,
        );
        config.tune(identity.raft);
        Ok(config)
    }

    /// Starts this node's manager and has it make the new swarm (the
    /// manager builds the cluster object and the first node), then the agent.
    async fn bootstrap(self: &Arc<Self>, identity: NodeIdentity, max_replicas: u64) -> anyhow::Result<Member> {
        let manager = Manager::start(self.manager_config(&identity)?).await?;
        let init = shoal_manager::Bootstrap {
            cluster_id: identity.cluster_id.clone(),
            description: node_description(&self.hostname),
            max_replicas,
        };
        if let Err(e) = manager.bootstrap(init).await {
            manager.shutdown().await;
            return Err(e.into());
        }
        self.start_member(identity, Some(manager)).await
    }

    /// `swarm join`: trades the token for a node certificate at a manager
    /// (pinning the swarm's CA by the token's digest), then runs the agent;
    /// with a manager token it also starts a manager and has it added to the
    /// raft membership, returning once it votes.
    pub async fn swarm_join(
        self: &Arc<Self>,
        remote: &str,
        token: &str,
        listen_addr: &str,
        advertise_addr: &str,
    ) -> Result<(), InitError> {
        let mut swarm = self.swarm.write().await;
        if swarm.is_some() {
            return Err(InitError::AlreadyInSwarm);
        }
        let (digest, _) =
            shoal_manager::ca::parse_token(token).map_err(|e| InitError::InvalidArgument(e.to_string()))?;
        let remote = with_default_port(remote);
        let listen = parse_listen(listen_addr)?;
        let advertise_ip = if advertise_addr.is_empty() {
            identity::primary_address().map(|ip| ip.to_string()).unwrap_or_default()
        } else {
            advertise_addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(advertise_addr).to_string()
        };
        let manager_addr = format!("{advertise_ip}:{}", listen.port());
        let (key_pem, csr) = shoal_manager::ca::new_key_and_csr().map_err(|e| InitError::Failed(e.into()))?;
        let channel = shoal_manager::ca::tls::join_channel(&remote, &digest, std::time::Duration::from_secs(10))
            .await
            .map_err(|e| InitError::Failed(anyhow::anyhow!(e)))?;
        let request = shoal_proto::IssueNodeCertificateRequest {
            token: token.to_string(),
            csr,
            description: Some(node_description(&self.hostname)),
            addr: advertise_ip.clone(),
            manager_addr: manager_addr.clone(),
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
        let mut managers = if issued.managers.is_empty() { vec![remote.clone()] } else { issued.managers.clone() };
        if !managers.contains(&remote) {
            managers.insert(0, remote.clone());
        }
        let identity = NodeIdentity {
            node_id: issued.node_id.clone(),
            raft_id: 0,
            cluster_id: issued.cluster_id.clone(),
            role: "worker".into(),
            listen_addr: String::new(),
            advertise_addr: advertise_ip,
            managers,
            raft: RaftTuning::default(),
        };
        let (identity, manager) = self
            .take_role(identity, &issued, key_pem, listen, std::slice::from_ref(&remote))
            .await
            .map_err(InitError::Failed)?;
        let member = self.start_member(identity, manager).await.map_err(InitError::Failed)?;
        *swarm = Some(member);
        Ok(())
    }

    /// Saves the certificate `issued` for `identity`'s node and, when it makes
    /// the node a manager, starts the manager and has it added to the raft
    /// membership through one of `via`. On failure nothing new is left on disk.
    async fn take_role(
        &self,
        mut identity: NodeIdentity,
        issued: &shoal_proto::IssueNodeCertificateResponse,
        key_pem: String,
        listen: SocketAddr,
        via: &[String],
    ) -> anyhow::Result<(NodeIdentity, Option<Manager>)> {
        let tls = shoal_manager::ca::NodeTls {
            root_ca_pem: issued.root_ca.clone(),
            cert_pem: issued.certificate.clone(),
            key_pem,
        };
        let root = &self.config.data_root;
        if issued.role() == NodeRole::Worker {
            identity.role = "worker".into();
            identity.raft_id = 0;
            identity.listen_addr.clear();
            identity.advertise_addr =
                identity.advertise_addr.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or(identity.advertise_addr);
            identity::save_certificates(root, &tls, None)?;
            identity.save(root)?;
            let _ = std::fs::remove_dir_all(root.join("raft"));
            return Ok((identity, None));
        }
        anyhow::ensure!(!issued.root_ca_key.is_empty(), "the manager did not send the CA key a new manager needs");
        let ca = shoal_manager::ca::RootCa { cert_pem: issued.root_ca.clone(), key_pem: issued.root_ca_key.clone() };
        let host = identity.advertise_addr.rsplit_once(':').map(|(h, _)| h.to_string());
        let host = host.unwrap_or_else(|| identity.advertise_addr.clone());
        identity.role = "manager".into();
        identity.raft_id = issued.raft_id;
        identity.listen_addr = listen.to_string();
        identity.advertise_addr = format!("{host}:{}", listen.port());
        let _ = std::fs::remove_dir_all(root.join("raft"));
        identity::save_certificates(root, &tls, Some(&ca))?;
        let started = async {
            let manager = Manager::start(self.manager_config(&identity)?).await?;
            let mut last = None;
            for addr in via {
                match manager.join_through(addr).await {
                    Ok(()) => {
                        last = None;
                        break;
                    }
                    Err(e) => last = Some(anyhow::anyhow!("joining the raft membership through {addr}: {e}")),
                }
            }
            if let Some(e) = last {
                manager.shutdown().await;
                return Err(e);
            }
            identity.save(root)?;
            anyhow::Ok(manager)
        }
        .await;
        match started {
            Ok(manager) => Ok((identity, Some(manager))),
            Err(e) => {
                let _ = std::fs::remove_dir_all(root.join("raft"));
                let _ = std::fs::remove_file(root.join("certificates").join("ca.key"));
                Err(e)
            }
        }
    }

    /// Follows the role the managers ask of this node: when it differs from
    /// the node's certificate, renews the certificate for the new role and
    /// restarts this node's part in the swarm as a manager or a worker. Also
    /// renews the certificate at a random point between 50% and 80% of its
    /// lifetime.
    async fn follow_role(self: Arc<Self>, node_id: String, current: NodeRole, mut desired: watch::Receiver<i32>) {
        let mut renew_at = self.renewal_deadline();
        loop {
            tokio::select! {
                changed = desired.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let want = NodeRole::try_from(*desired.borrow_and_update()).unwrap_or(current);
                    if want == current {
                        continue;
                    }
                    tracing::info!(from = ?current, to = ?want, "the swarm changed this node's role");
                }
                _ = tokio::time::sleep_until(renew_at) => {
                    tracing::info!("renewing this node's certificate");
                }
            }
            match self.change_role(&node_id).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "renewing this node's certificate failed; retrying");
                    renew_at = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                }
            }
        }
    }

    /// Keeps the managers' addresses the swarm tells this node in node.json, so
    /// that after a restart it finds a manager even if the one it joined
    /// through is gone.
    async fn follow_managers(self: Arc<Self>, node_id: String, mut managers: watch::Receiver<Vec<String>>) {
        while managers.changed().await.is_ok() {
            let list = managers.borrow_and_update().clone();
            let mut swarm = self.swarm.write().await;
            let Some(member) = swarm.as_mut().filter(|m| m.identity.node_id == node_id) else { return };
            if member.identity.managers == list {
                continue;
            }
            member.identity.managers = list;
            if let Err(e) = member.identity.save(&self.config.data_root) {
                tracing::warn!(error = format!("{e:#}"), "saving the managers' addresses in node.json");
            }
        }
    }

    /// When this node's certificate is due for renewal.
    fn renewal_deadline(&self) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        let validity =
            identity::load_tls(&self.config.data_root).ok().and_then(|t| shoal_manager::ca::validity(&t.cert_pem));
        let Some((from, to)) = validity else {
            tracing::warn!("cannot read this node's certificate's validity; checking again in an hour");
            return now + std::time::Duration::from_secs(3600);
        };
        let fraction = rand::Rng::random_range(&mut rand::rng(), 0.5..0.8);
        let at = shoal_manager::ca::renewal_time(from, to, fraction);
        now + at.duration_since(std::time::SystemTime::now()).unwrap_or_default()
    }

    /// Renews this node's certificate for the role its spec asks for, then
    /// restarts the agent (and starts or stops the manager) with it.
    /// (Boxed: it restarts the member, whose follower task calls it again.)
    fn change_role<'a>(
        self: &'a Arc<Self>,
        node_id: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send + 'a>> {
        Box::pin(self.change_role_now(node_id))
    }

    async fn change_role_now(self: &Arc<Self>, node_id: &str) -> anyhow::Result<()> {
        let mut swarm = self.swarm.write().await;
        let Some(member) = swarm.as_ref() else { return Ok(()) };
        anyhow::ensure!(member.identity.node_id == node_id, "the node left the swarm");
        let identity = member.identity.clone();
        let listen = parse_listen(&identity.listen_addr).map_err(|e| anyhow::anyhow!("{e}"))?;
        let host = identity.advertise_addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(&identity.advertise_addr);
        let (key_pem, csr) = shoal_manager::ca::new_key_and_csr()?;
        let tls = identity::load_tls(&self.config.data_root)?;
        let request =
            shoal_proto::RenewNodeCertificateRequest { csr, manager_addr: format!("{host}:{}", listen.port()) };
        let mut issued = None;
        let mut errors = Vec::new();
        for addr in &identity.managers {
            let channel = match shoal_manager::ca::tls::connect(addr, &tls, std::time::Duration::from_secs(3)).await {
                Ok(c) => c,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            match shoal_proto::node_ca_client::NodeCaClient::new(channel).renew_node_certificate(request.clone()).await
            {
                Ok(r) => {
                    issued = Some((addr.clone(), r.into_inner()));
                    break;
                }
                Err(s) => errors.push(format!("{addr}: {}", s.message())),
            }
        }
        let Some((via, issued)) = issued else {
            anyhow::bail!("no manager renewed this node's certificate: {}", errors.join("; "));
        };
        let was_manager = member.manager.is_some();
        let becomes_manager = issued.role() == NodeRole::Manager;
        anyhow::ensure!(
            !becomes_manager || !issued.root_ca_key.is_empty(),
            "the manager did not send the CA key a manager needs"
        );
        let Some(old) = swarm.take() else { return Ok(()) };
        old.stop().await;
        if was_manager == becomes_manager {
            // Same role, new certificate: restart with it.
            let tls = shoal_manager::ca::NodeTls {
                root_ca_pem: issued.root_ca.clone(),
                cert_pem: issued.certificate.clone(),
                key_pem,
            };
            let ca = becomes_manager.then(|| shoal_manager::ca::RootCa {
                cert_pem: issued.root_ca.clone(),
                key_pem: issued.root_ca_key.clone(),
            });
            let saved = identity::save_certificates(&self.config.data_root, &tls, ca.as_ref());
            let manager = if was_manager { Some(Manager::start(self.manager_config(&identity)?).await?) } else { None };
            *swarm = Some(self.start_member(identity, manager).await?);
            return saved;
        }
        let via: Vec<String> = std::iter::once(via).chain(identity.managers.iter().cloned()).collect();
        let result = self.take_role(identity.clone(), &issued, key_pem, listen, &via).await;
        let (identity, manager) = match result {
            Ok(r) => r,
            Err(e) => {
                // Carry on as before with the old certificate; the next attempt retries.
                let manager =
                    if was_manager { Some(Manager::start(self.manager_config(&identity)?).await?) } else { None };
                *swarm = Some(self.start_member(identity, manager).await?);
                return Err(e);
            }
        };
        *swarm = Some(self.start_member(identity, manager).await?);
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
        if let Some(m) = &member.manager {
            let voters = m.voter_count();
            if voters <= 1 && !force {
                return Err(InitError::InvalidArgument(
                    "You are attempting to leave the swarm on a node that is participating as a manager. Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message.".into(),
                ));
            }
            if voters > 1 {
                if let Err(e) = m.remove_manager(m.config().raft_id).await {
                    if !force {
                        return Err(InitError::InvalidArgument(format!(
                            "This node can't leave the swarm: {e}. Use `--force` to leave anyway."
                        )));
                    }
                    tracing::warn!(error = %e, "leaving the raft membership failed; leaving anyway (--force)");
                }
            }
        }
        let Some(member) = swarm.take() else { return Ok(()) };
        let network = member.network.clone();
        member.stop().await;
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
        if let Some(network) = network.get() {
            if let Err(e) = network.mesh().remove_all().await {
                tracing::warn!(error = %e, "removing the node's networks while leaving the swarm");
            }
        }
        *self.node_network.lock().await = None;
        let root = &self.config.data_root;
        let _ = std::fs::remove_file(NodeIdentity::path(root));
        let _ = std::fs::remove_dir_all(root.join("certificates"));
        let _ = std::fs::remove_dir_all(root.join("raft"));
        Ok(())
    }

    /// Stops the agent and the manager, then every task the daemon started (restart
    /// watchers, auto-removals, role followers, the API server and its attached streams),
    /// waiting for them at most [`SHUTDOWN_WAIT`]; containers keep running.
    pub async fn shutdown(&self) {
        if let Some(member) = self.swarm.write().await.take() {
            member.stop().await;
        }
        self.shutdown.stop(SHUTDOWN_WAIT).await;
    }

    /// Runs `task` until it ends or the daemon stops (see [`Shutdown::spawn`]).
    pub fn spawn<F>(&self, task: F) -> JoinHandle<()>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.shutdown.spawn(task)
    }

    /// Runs `task`, which ends on its own once [`Daemon::stopping`] resolves; the daemon's
    /// shutdown waits for it (see [`Shutdown::track`]).
    pub fn track<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.shutdown.track(task)
    }

    /// Resolves once the daemon stops.
    pub fn stopping(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.shutdown.requested()
    }

    /// The data root.
    pub fn data_root(&self) -> &Path {
        &self.config.data_root
    }
}

/// A listen address (`IP[:PORT]`), 0.0.0.0:2377 when empty.
fn parse_listen(listen_addr: &str) -> Result<SocketAddr, InitError> {
    let listen = if listen_addr.is_empty() { "0.0.0.0:2377" } else { listen_addr };
    with_default_port(listen)
        .parse()
        .map_err(|_| InitError::InvalidArgument(format!("invalid listen address \"{listen_addr}\": use IP:PORT")))
}

fn with_default_port(addr: &str) -> String {
    if addr.contains(':') {
        addr.to_string()
    } else {
        format!("{addr}:2377")
    }
}
