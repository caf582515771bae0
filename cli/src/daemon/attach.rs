//! Standalone containers on the node's networks: on the default bridge when given none, on
//! the swarm's attachable networks (`run --network NET`, `network connect`): the managers
//! give the container's sandbox an address on each (an attachment task, through the leader's
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

    /// Asks the managers for standalone sandbox `sandbox`'s attachment to `network`: its
    /// address there (CIDR) and the network's id.
    async fn attachment(
        &self,
        sandbox: &str,
        container_name: &str,
        network: &str,
        aliases: Vec<String>,
    ) -> Result<(Arc<NodeNetwork>, String, String), AttachError> {
        let (node, node_id, managers, tls) = self.attach_context(network).await?;
        let key = sandbox.strip_prefix(STANDALONE_PREFIX).unwrap_or(sandbox);
        let mut errors = Vec::new();
        for addr in &managers {
            let mut client = match shoal_agent::connect(addr, &tls).await {
                Ok(c) => c,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            match shoal_agent::attach_network(&mut client, &node_id, key, container_name, network, aliases.clone())
                .await
            {
                Ok((task, net)) => {
                    let addr = task.networks.first().and_then(|n| n.addresses.first()).cloned().unwrap_or_default();
                    return Ok((node, net.id, addr));
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
        Err(AttachError::Failed(format!(
            "attaching to network {network}: no manager's dispatcher answered as the leader: {}",
            errors.join("; ")
        )))
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
        // The managers know the attachment by a container ID of Docker's shape (64 hex digits);
        // the sandbox is named after it.
        let sandbox = self.new_sandbox();
        let key = &sandbox[STANDALONE_PREFIX.len()..];
        let container_name = if name.is_empty() { key[..12].to_string() } else { name.to_string() };
        let (node, network_id, addr) = match self.attachment(&sandbox, &container_name, network, Vec::new()).await {
            Ok(a) => a,
            Err(e) => {
                self.created(&sandbox);
                return Err(e);
            }
        };
        match node.prepare_standalone(&sandbox, &network_id, &addr, dns, hostname).await {
            Ok(network) => Ok(Attached { sandbox, network }),
            Err(e) => {
                self.detach_standalone(&sandbox).await;
                self.created(&sandbox);
                Err(AttachError::Failed(format!("connecting to network {network}: {e}")))
            }
        }
    }

    /// Gives a new standalone container a sandbox on the node's default bridge (Docker's
    /// `bridge` network, NAT to the outside), when the node has networks: `None` when it has
    /// none (the container then has its own namespace with loopback only).
    pub async fn attach_default_bridge(
        &self,
        dns: &shoal_proto::DnsConfig,
        hostname: &str,
    ) -> Result<Option<Attached>, AttachError> {
        let Some(node) = self.node_network().await else { return Ok(None) };
        let sandbox = self.new_sandbox();
        match node.prepare_bridge(&sandbox, dns, hostname).await {
            Ok(network) => Ok(Some(Attached { sandbox, network })),
            Err(e) => {
                self.created(&sandbox);
                Err(AttachError::Failed(format!("connecting to the default bridge: {e}")))
            }
        }
    }

    /// `network connect`: connects standalone container `container` (its sandbox and name)
    /// to one more network, `bridge` or an attachable overlay; returns its new interface.
    pub async fn connect_container(
        &self,
        sandbox: &str,
        container_name: &str,
        network: &str,
        aliases: Vec<String>,
    ) -> Result<shoal_mesh::Interface, AttachError> {
        if network == "bridge" {
            let node = self.node_network().await.ok_or_else(|| {
                AttachError::Refused("this node has no networks: its containers cannot join the bridge".into())
            })?;
            return node.connect_standalone(sandbox, None).await.map_err(AttachError::Failed);
        }
        let (node, network_id, addr) = self.attachment(sandbox, container_name, network, aliases).await?;
        let connected = match node.connect_standalone(sandbox, Some((&network_id, &addr))).await {
            Ok(interface) => self.ask_resolver(&node, sandbox, container_name, &interface).await.map(|()| interface),
            Err(e) => Err(e),
        };
        match connected {
            Ok(interface) => Ok(interface),
            Err(e) => {
                if let Err(undo) = node.disconnect_standalone(sandbox, Some(&network_id)).await {
                    tracing::warn!(sandbox, error = %undo, "taking a container off a network it failed to join");
                }
                self.detach_from_managers(sandbox, &network_id).await;
                Err(AttachError::Failed(format!("connecting to network {network}: {e}")))
            }
        }
    }

    /// Points container `container`'s `resolv.conf` at the resolver of the network it has just
    /// joined through `joined`, when that is its first overlay network (see
    /// [`NodeNetwork::resolv_conf_on_connect`]), so that the names of its networks resolve.
    async fn ask_resolver(
        &self,
        node: &NodeNetwork,
        sandbox: &str,
        container: &str,
        joined: &shoal_mesh::Interface,
    ) -> Result<(), String> {
        let rt = self.runtime.clone();
        let key = container.to_string();
        let current = tokio::task::spawn_blocking(move || rt.resolv_conf(&key))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.report())?;
        let Some(resolv) = node.resolv_conf_on_connect(sandbox, joined, &current).await? else { return Ok(()) };
        self.write_resolv_conf(container, resolv).await
    }

    async fn write_resolv_conf(&self, container: &str, resolv: String) -> Result<(), String> {
        let rt = self.runtime.clone();
        let key = container.to_string();
        tokio::task::spawn_blocking(move || rt.set_resolv_conf(&key, &resolv))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.report())
    }

    /// `network disconnect`: takes standalone sandbox `sandbox` off `network` (`bridge`, or an
    /// overlay's name or ID); its address there goes back to the managers.
    pub async fn disconnect_container(&self, sandbox: &str, container: &str, network: &str) -> Result<(), AttachError> {
        let node = self
            .node_network()
            .await
            .ok_or_else(|| AttachError::NotFound(format!("network {network} not found: this node has no networks")))?;
        if network == "bridge" {
            return node.disconnect_standalone(sandbox, None).await.map_err(AttachError::Failed);
        }
        let map = node.map().await;
        let found = map
            .networks
            .values()
            .find(|n| n.id == network || n.name == network)
            .or_else(|| {
                let mut prefixed = map.networks.values().filter(|n| n.id.starts_with(network));
                prefixed.next().filter(|_| prefixed.next().is_none())
            })
            .map(|n| n.id.clone());
        let leaving = node.interfaces(sandbox).await.into_iter().find(|i| match &i.on {
            shoal_mesh::PortOn::Network { network_id } => found.as_ref() == Some(network_id),
            shoal_mesh::PortOn::Local { .. } => false,
        });
        let (Some(network_id), Some(leaving)) = (found, leaving) else {
            return Err(AttachError::Refused(format!("the container is not connected to network {network}")));
        };
        // Where the container asks for names once it is off (read before: the leaving
        // interface's resolver settings go with it).
        let rt = self.runtime.clone();
        let key = container.to_string();
        let current = tokio::task::spawn_blocking(move || rt.resolv_conf(&key)).await;
        let resolv = match current {
            Ok(Ok(current)) => node.resolv_conf_on_disconnect(sandbox, &leaving, &current).await,
            Ok(Err(e)) => Err(e.report()),
            Err(e) => Err(e.to_string()),
        };
        node.disconnect_standalone(sandbox, Some(&network_id)).await.map_err(AttachError::Failed)?;
        self.detach_from_managers(sandbox, &network_id).await;
        let written = match resolv {
            Ok(Some(resolv)) => self.write_resolv_conf(container, resolv).await,
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        // The container is off the network either way; a resolv.conf left naming its
        // resolver only makes lookups fail, which the log says why.
        if let Err(e) = written {
            tracing::warn!(container, network, error = %e, "the container's resolv.conf still names the network's resolver");
        }
        Ok(())
    }

    /// Gives sandbox `sandbox`'s attachments back to the managers: the one on `network`, or
    /// every one with `""`.
    async fn detach_from_managers(&self, sandbox: &str, network: &str) {
        let Ok((_, node_id, managers, tls)) = self.attach_context("").await else { return };
        let key = sandbox.strip_prefix(STANDALONE_PREFIX).unwrap_or(sandbox);
        for addr in &managers {
            let Ok(mut client) = shoal_agent::connect(addr, &tls).await else { continue };
            match shoal_agent::detach_network(&mut client, &node_id, key, network).await {
                Ok(_) => break,
                Err(s) if s.code() == tonic::Code::Unavailable => continue,
                Err(s) => {
                    tracing::warn!(sandbox, error = %s.message(), "detaching a standalone container's networks");
                    break;
                }
            }
        }
    }

    /// Takes standalone sandbox `sandbox` off its networks (its addresses go back to the
    /// managers) and removes it.
    pub async fn detach_standalone(&self, sandbox: &str) {
        let Some(node) = self.node_network().await else { return };
        self.detach_from_managers(sandbox, "").await;
        node.release_standalone(sandbox).await;
    }

    /// A new standalone sandbox's name, marked as made for a container not created yet (see
    /// [`Daemon::created`]).
    fn new_sandbox(&self) -> String {
        let sandbox = new_sandbox();
        self.attaching.lock().unwrap_or_else(|e| e.into_inner()).insert(sandbox.clone());
        sandbox
    }

    /// Standalone sandbox `sandbox`'s container now exists (or will not): the sweep may take
    /// the sandbox once the container is gone.
    pub fn created(&self, sandbox: &str) {
        self.attaching.lock().unwrap_or_else(|e| e.into_inner()).remove(sandbox);
    }

    /// Detaches and removes the standalone sandboxes whose containers are gone.
    pub async fn sweep_standalone(&self) {
        let Some(node) = self.node_network().await else { return };
        // In this order: a sandbox listed was marked before it was made; unmarked by the time
        // the marks are read, its container was made before the containers are listed.
        let sandboxes = node.mesh().sandboxes().await;
        let attaching = self.attaching.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let rt = self.runtime.clone();
        let Ok(Ok(containers)) = tokio::task::spawn_blocking(move || rt.list_containers()).await else { return };
        let used: HashSet<String> = containers.iter().filter_map(|c| c.labels.get(SANDBOX_LABEL).cloned()).collect();
        for id in sandboxes {
            if id.starts_with(STANDALONE_PREFIX) && !used.contains(&id) && !attaching.contains(&id) {
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

/// A new standalone sandbox's name: the prefix and 64 hex digits (a container ID's shape,
/// which the managers know its attachments by).
fn new_sandbox() -> String {
    let key: String = (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
    format!("{STANDALONE_PREFIX}{key}")
}
