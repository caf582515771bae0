//! The agent's session loop: dial a manager, register, follow assignments,
//! heartbeat, and reconnect (to the next manager, with back-off) when the
//! session breaks.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use shoal_proto::dispatcher_client::DispatcherClient;
use shoal_proto::{HeartbeatRequest, NodeDescription, SessionRequest, Task};
use shoal_runtime::Runtime;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::files::FileStore;
use crate::network::Networks;
use crate::reporter::Reporter;
use crate::worker::{self, WorkerContext};

/// What the managers tell a node, for the daemon to act on.
pub struct Told {
    /// The role the node's spec asks for (`NodeRole` as i32).
    pub desired_role: watch::Sender<i32>,
    /// The managers' addresses, the leader first.
    pub managers: watch::Sender<Vec<String>>,
}

/// What the agent needs to know about its node and its managers.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node_id: String,
    /// The address this node is reached at.
    pub addr: String,
    pub description: NodeDescription,
    /// Managers' `host:port` addresses, tried in turn.
    pub managers: Vec<String>,
    /// Mutual TLS to the managers: this node's certificate and the root.
    pub tls: ClientTlsConfig,
}

/// Runs the agent until `shutdown` is cancelled, and returns once its
/// workers have ended too. Containers keep running when the agent stops: a
/// restarted agent re-adopts them. `told` follows what the managers tell
/// this node about itself and the swarm.
/// `network` is the node's (see [`crate::network::NodeNetwork`]), fed the network maps the managers send.
pub async fn run(
    config: AgentConfig,
    runtime: Arc<Runtime>,
    network: Networks,
    shutdown: CancellationToken,
    told: Told,
) {
    let reporter = Reporter::default();
    let files = FileStore::default();
    let mut workers: HashMap<String, watch::Sender<Task>> = HashMap::new();
    let running = TaskTracker::new();
    let mut managers = config.managers.clone();
    let mut next = 0usize;
    let mut backoff = Duration::from_millis(100);
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        let addr = managers[next % managers.len().max(1)].clone();
        next += 1;
        let ctx = WorkerContext {
            runtime: runtime.clone(),
            reporter: reporter.clone(),
            node_id: config.node_id.clone(),
            hostname: config.description.hostname.clone(),
            files: files.clone(),
            network: network.clone(),
            shutdown: shutdown.clone(),
        };
        tokio::select! {
            result = session(&config, &addr, &ctx, &mut workers, &running, &mut managers, &told) => {
                match result {
                    Ok(()) => backoff = Duration::from_millis(100),
                    // A live manager that does not lead: try the next one at once.
                    Err(SessionEnd::NotLeader) => backoff = Duration::from_millis(25),
                    Err(SessionEnd::Failed(e)) => tracing::warn!(manager = %addr, error = %e, "session with manager ended"),
                }
            }
            _ = shutdown.cancelled() => break,
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => break,
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
    // The workers see the same cancellation and end without touching their containers.
    drop(workers);
    running.close();
    running.wait().await;
}

/// A client of the dispatcher of the manager at `addr`, over mutual TLS.
pub async fn connect(addr: &str, tls: &ClientTlsConfig) -> Result<DispatcherClient<Channel>, String> {
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .map_err(|e| format!("bad manager address {addr}: {e}"))?
        .tls_config(tls.clone())
        .map_err(|e| format!("TLS configuration: {e}"))?
        .connect_timeout(Duration::from_secs(3))
        .tcp_keepalive(Some(Duration::from_secs(10)));
    let channel = endpoint.connect().await.map_err(|e| format!("cannot reach manager {addr}: {e}"))?;
    Ok(DispatcherClient::new(channel))
}

/// Why a session ended.
enum SessionEnd {
    /// The manager answered that it is not the leader.
    NotLeader,
    Failed(String),
}

impl From<String> for SessionEnd {
    fn from(e: String) -> Self {
        SessionEnd::Failed(e)
    }
}

async fn session(
    config: &AgentConfig,
    addr: &str,
    ctx: &WorkerContext,
    workers: &mut HashMap<String, watch::Sender<Task>>,
    running: &TaskTracker,
    managers: &mut Vec<String>,
    told: &Told,
) -> Result<(), SessionEnd> {
    let mut client = connect(addr, &config.tls).await?;
    let request = SessionRequest {
        node_id: config.node_id.clone(),
        description: Some(config.description.clone()),
        addr: config.addr.clone(),
    };
    let mut stream = match client.session(request).await {
        Ok(s) => s.into_inner(),
        Err(s) if s.code() == tonic::Code::Unavailable && s.message().contains("not the leader") => {
            return Err(SessionEnd::NotLeader)
        }
        Err(s) => return Err(s.message().to_string().into()),
    };
    let first = stream
        .message()
        .await
        .map_err(|s| s.message().to_string())?
        .ok_or_else(|| "the manager closed the session".to_string())?;
    let session_id = first.session_id.clone();
    let mut period = Duration::from_nanos(first.heartbeat_period.max(100_000_000) as u64);
    tracing::info!(manager = %addr, "session with manager open");

    let delivery = ctx.reporter.deliver(client.clone(), config.node_id.clone(), session_id.clone());
    tokio::pin!(delivery);
    let mut message = Some(first);
    let mut first_assignment = true;
    let mut next_heartbeat = tokio::time::Instant::now() + period;
    loop {
        if let Some(msg) = message.take() {
            let peers: Vec<String> = msg.managers.iter().map(|m| m.addr.clone()).filter(|a| !a.is_empty()).collect();
            if !peers.is_empty() {
                told.managers.send_if_modified(|m| {
                    let changed = *m != peers;
                    m.clone_from(&peers);
                    changed
                });
                *managers = peers;
            }
            told.desired_role.send_if_modified(|r| std::mem::replace(r, msg.desired_role) != msg.desired_role);
            ctx.files.replace(msg.secrets, msg.configs);
            // The map first: the tasks of this assignment join its networks.
            if let (Some(network), Some(update)) = (ctx.network.get(), msg.network_map) {
                network.update(update);
            }
            apply_assignments(ctx, workers, running, msg.tasks, first_assignment).await;
            first_assignment = false;
        }
        tokio::select! {
            next = stream.message() => match next {
                Ok(Some(m)) => message = Some(m),
                Ok(None) => return Err(SessionEnd::Failed("the manager closed the session".into())),
                Err(s) if s.message().contains("leadership changed") => return Err(SessionEnd::NotLeader),
                Err(s) => return Err(s.message().to_string().into()),
            },
            // A deadline, not a sleep per turn: messages arriving more often than the period
            // must not hold the heartbeat back.
            _ = tokio::time::sleep_until(next_heartbeat) => {
                next_heartbeat = tokio::time::Instant::now() + period;
                let mut req = tonic::Request::new(HeartbeatRequest {
                    node_id: config.node_id.clone(),
                    session_id: session_id.clone(),
                });
                req.set_timeout(period);
                match client.heartbeat(req).await {
                    Ok(r) => {
                        period = Duration::from_nanos(r.into_inner().period.max(100_000_000) as u64);
                        next_heartbeat = next_heartbeat.min(tokio::time::Instant::now() + period);
                    }
                    Err(s) => return Err(format!("heartbeat refused: {}", s.message()).into()),
                }
            }
            r = &mut delivery => {
                return Err(format!("task status report failed: {}", r.err().map(|s| s.message().to_string()).unwrap_or_default()).into());
            }
        }
    }
}

/// Starts a worker for each new task (on `running`), passes changes to
/// existing workers, and stops the workers (removing the containers) of
/// tasks no longer assigned. On the first assignment of a session it also
/// removes task containers that belong to no assigned task.
async fn apply_assignments(
    ctx: &WorkerContext,
    workers: &mut HashMap<String, watch::Sender<Task>>,
    running: &TaskTracker,
    tasks: Vec<Task>,
    first: bool,
) {
    let assigned: HashSet<String> = tasks.iter().map(|t| t.id.clone()).collect();
    // Dropping a worker's sender tells it that its task is gone.
    workers.retain(|id, _| assigned.contains(id));
    for task in tasks {
        match workers.get(&task.id) {
            Some(tx) => {
                tx.send_if_modified(|current| {
                    if current != &task {
                        *current = task.clone();
                        true
                    } else {
                        false
                    }
                });
            }
            None => {
                let (tx, rx) = watch::channel(task.clone());
                running.spawn(worker::run(ctx.clone(), rx));
                workers.insert(task.id, tx);
            }
        }
    }
    if first {
        worker::remove_orphans(ctx, &assigned).await;
    }
}

/// How long an attach may take: the manager waits up to 10 s for the
/// allocator, and the call travels to the leader and back.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(15);

/// Gives standalone container `container_id` (named `container_name`) of
/// node `node_id` a place on an attachable network (its name or ID), as
/// `docker run --network NET` and `docker network connect` need: the
/// managers allocate its address, and every node on that network (this one
/// included) learns of it through its network map. Returns the attachment
/// task (`networks[0].addresses[0]` is the container's address, CIDR) and
/// the network (subnet, gateway, VNI) to build the container's interface
/// from. Asking again for the same container and network returns the same
/// task. A network that is not attachable is refused (`FailedPrecondition`,
/// naming it); an unknown one is `NotFound`. Call it on a client of the
/// leader's dispatcher, as the session's.
pub async fn attach_network(
    client: &mut DispatcherClient<Channel>,
    node_id: &str,
    container_id: &str,
    container_name: &str,
    network: &str,
    aliases: Vec<String>,
) -> Result<(Task, shoal_proto::Network), tonic::Status> {
    let mut request = tonic::Request::new(shoal_proto::AttachNetworkRequest {
        node_id: node_id.to_string(),
        container_id: container_id.to_string(),
        container_name: container_name.to_string(),
        network: network.to_string(),
        aliases,
    });
    request.set_timeout(ATTACH_TIMEOUT);
    let response = client.attach_network(request).await?.into_inner();
    match (response.attachment, response.network) {
        (Some(task), Some(network)) => Ok((task, network)),
        _ => Err(tonic::Status::internal("the manager answered an attach without the attachment or its network")),
    }
}

/// Takes standalone container `container_id` of node `node_id` off a
/// network (its name or ID), or off every network when `network` is empty
/// (when the container is removed); its addresses are released. Returns
/// the IDs of the attachment tasks removed.
pub async fn detach_network(
    client: &mut DispatcherClient<Channel>,
    node_id: &str,
    container_id: &str,
    network: &str,
) -> Result<Vec<String>, tonic::Status> {
    let mut request = tonic::Request::new(shoal_proto::DetachNetworkRequest {
        node_id: node_id.to_string(),
        container_id: container_id.to_string(),
        network: network.to_string(),
    });
    request.set_timeout(ATTACH_TIMEOUT);
    Ok(client.detach_network(request).await?.into_inner().removed)
}
