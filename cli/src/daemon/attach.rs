//! Standalone containers on the swarm's attachable networks (`run --network NET`): the
//! managers give the container's sandbox an address (an attachment task, through the leader's
//! dispatcher), the node's mesh connects the sandbox, and the container joins it. The sandbox
//! is named in a label of the container; a sandbox whose container is gone is taken off its
//! networks and removed (at once when the API removes the container, or by the sweep).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use shoal_agent::network::{NodeNetwork, TaskNetwork, STANDALONE_PREFIX};

use super::{identity, Daemon};

/// The label naming a standalone container's sandbox.
pub const SANDBOX_LABEL: &str = "com.shoal.network.sandbox";

/// How often sandboxes whose containers are gone are looked for.
pub const SWEEP_PERIOD: Duration = Duration::from_secs(10);

/// Why a container cannot have its place on a network.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}

/// What a standalone container on a network gets: its sandbox and how to join it.
pub struct Attached {
    pub sandbox: String,
    pub network: TaskNetwork,
}

impl Daemon {
    /// The node's networks with what calling the managers takes: node id, managers, TLS.
    async fn attach_context(
        &self,
        network: &str,
    ) -> Result<(Arc<NodeNetwork>, String, Vec<String>, tonic::transport::ClientTlsConfig), AttachError> {
        let not_found = || {
            AttachError::NotFound(format!(
                "network {network} not found: a standalone container joins an attachable overlay network of the \
                 swarm this node is in (see `network ls`)"
            ))
        };
        let (node_id, managers) = {
            let swarm = self.swarm.read().await;
            let member = swarm.as_ref().ok_or_else(not_found)?;
            (member.identity.node_id.clone(), member.identity.managers.clone())
        };
        let node = self.node_network().await.ok_or_else(|| {
            AttachError::Failed(format!(
                "network {network}: this node has no container networks (a swarm advertised on loopback, or see \
                 the daemon's log)"
            ))
        })?;
        let tls = identity::load_tls(&self.config.data_root).map_err(|e| AttachError::Failed(format!("{e:#}")))?;
        Ok((node, node_id, managers, shoal_manager::ca::tls::client_config(&tls)))
    }

    /// Gives a new standalone container (named `name`, if it has one) a sandbox on attachable
    /// network `network` (a name or ID), with the network's resolver (forwarding to `dns`'s
    /// servers if it has some). Nothing is left when it fails.
    pub async fn attach_standalone(
        &self,
        network: &str,
        name: &str,
        dns: &shoal_proto::DnsConfig,
        hostname: &str,
    ) -> Result<Attached, AttachError> {
        let (node, node_id, managers, tls) = self.attach_context(network).await?;
        // The managers know the attachment by a container ID of Docker's shape (64 hex digits);
        // the sandbox is named after it.
        let key: String = (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
        let sandbox = format!("{STANDALONE_PREFIX}{key}");
        let container_name = if name.is_empty() { key[..12].to_string() } else { name.to_string() };
        let mut errors = Vec::new();
        let mut attached = None;
        for addr in &managers {
            let mut client = match shoal_agent::connect(addr, &tls).await {
                Ok(c) => c,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            match shoal_agent::attach_network(&mut client, &node_id, &key, &container_name, network, Vec::new()).await {
                Ok(a) => {
                    attached = Some(a);
                    break;
                }
                Err(s) if s.code() == tonic::Code::Unavailable => errors.push(format!("{addr}: {}", s.message())),
                Err(s) if s.code() == tonic::Code::NotFound => {
                    return Err(AttachError::NotFound(format!("network {network} not found: {}", s.message())))
                }
                Err(s) if s.code() == tonic::Code::FailedPrecondition || s.code() == tonic::Code::InvalidArgument => {
                    return Err(AttachError::Refused(s.message().to_string()))
                }
                Err(s) => return Err(AttachError::Failed(format!("attaching to network {network}: {}", s.message()))),
            }
        }
        let Some((task, net)) = attached else {
            return Err(AttachError::Failed(format!(
                "attaching to network {network}: no manager's dispatcher answered as the leader: {}",
                errors.join("; ")
            )));
        };
        let addr = task.networks.first().and_then(|n| n.addresses.first()).cloned().unwrap_or_default();
        match node.prepare_standalone(&sandbox, &net.id, &addr, dns, hostname).await {
            Ok(network) => Ok(Attached { sandbox, network }),
            Err(e) => {
                self.detach_standalone(&sandbox).await;
                Err(AttachError::Failed(format!("connecting to network {network}: {e}")))
            }
        }
    }

    /// Takes standalone sandbox `sandbox` off its networks (its addresses go back to the
    /// managers) and removes it.
    pub async fn detach_standalone(&self, sandbox: &str) {
        let Ok((node, node_id, managers, tls)) = self.attach_context("").await else { return };
        for addr in &managers {
            let Ok(mut client) = shoal_agent::connect(addr, &tls).await else { continue };
            let key = sandbox.strip_prefix(STANDALONE_PREFIX).unwrap_or(sandbox);
            match shoal_agent::detach_network(&mut client, &node_id, key, "").await {
                Ok(_) => break,
                Err(s) if s.code() == tonic::Code::Unavailable => continue,
                Err(s) => {
                    tracing::warn!(sandbox, error = %s.message(), "detaching a standalone container's networks");
                    break;
                }
            }
        }
        node.release_standalone(sandbox).await;
    }

    /// Detaches and removes the standalone sandboxes whose containers are gone.
    pub async fn sweep_standalone(&self) {
        let Some(node) = self.node_network().await else { return };
        let rt = self.runtime.clone();
        let Ok(Ok(containers)) = tokio::task::spawn_blocking(move || rt.list_containers()).await else { return };
        let used: HashSet<String> = containers.iter().filter_map(|c| c.labels.get(SANDBOX_LABEL).cloned()).collect();
        for id in node.mesh().sandboxes().await {
            if id.starts_with(STANDALONE_PREFIX) && !used.contains(&id) {
                tracing::info!(sandbox = %id, "removing the network sandbox of a standalone container that is gone");
                self.detach_standalone(&id).await;
            }
        }
    }

    /// Sweeps every [`SWEEP_PERIOD`] until the daemon stops.
    pub(super) async fn sweep_standalone_forever(self: Arc<Self>) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(SWEEP_PERIOD) => self.sweep_standalone().await,
                () = self.shutdown.token().cancelled() => return,
            }
        }
    }
}
