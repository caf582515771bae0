//! This node's identity in its swarm, kept in `<data-root>/swarm/node.json`
//! so that a restarted daemon rejoins the same swarm with the same IDs.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Who this node is in its swarm.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeIdentity {
    pub node_id: String,
    pub raft_id: u64,
    pub cluster_id: String,
    /// `manager` or `worker`.
    pub role: String,
    pub listen_addr: String,
    pub advertise_addr: String,
    /// Managers' `host:port` addresses the agent dials.
    pub managers: Vec<String>,
    /// The secrets of the join tokens (the manager that made the swarm keeps them).
    pub worker_secret: String,
    pub manager_secret: String,
}

fn secret() -> String {
    // 25 base36 characters, as swarmkit's token secrets.
    shoal_manager::identity::new_id()
}

impl NodeIdentity {
    /// The identity of the first manager of a new swarm.
    pub fn new_manager(listen_addr: String, advertise_addr: String) -> NodeIdentity {
        NodeIdentity {
            node_id: shoal_manager::identity::new_id(),
            raft_id: rand::rng().random_range(1..u64::MAX),
            cluster_id: shoal_manager::identity::new_id(),
            role: "manager".into(),
            listen_addr,
            managers: vec![advertise_addr.clone()],
            advertise_addr,
            worker_secret: secret(),
            manager_secret: secret(),
        }
    }

    /// Where the identity is kept.
    pub fn path(data_root: &Path) -> PathBuf {
        data_root.join("swarm").join("node.json")
    }

    /// Reads the identity; `None` when the node is in no swarm.
    pub fn load(data_root: &Path) -> anyhow::Result<Option<NodeIdentity>> {
        let path = Self::path(data_root);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let id = serde_json::from_slice(&bytes).with_context(|| {
            format!("{} is corrupt: restore it, or remove it and the raft/ folder to leave the swarm", path.display())
        })?;
        Ok(Some(id))
    }

    /// Writes the identity atomically.
    pub fn save(&self, data_root: &Path) -> anyhow::Result<()> {
        let path = Self::path(data_root);
        let dir = path.parent().context("node.json has a parent folder")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    fn token(&self, secret: &str) -> String {
        // The CA digest part arrives with the cluster CA (mutual TLS); until
        // then the cluster ID stands in its place.
        format!("SWMTKN-1-{}-{}", self.cluster_id, secret)
    }

    pub fn worker_token(&self) -> String {
        self.token(&self.worker_secret)
    }

    pub fn manager_token(&self) -> String {
        self.token(&self.manager_secret)
    }
}

/// The first non-loopback IPv4 address of this host, to advertise.
pub fn primary_address() -> Option<IpAddr> {
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    let mut found = None;
    for a in addrs {
        let Some(sin) = a.address.as_ref().and_then(|s| s.as_sockaddr_in()) else { continue };
        let ip = IpAddr::V4(sin.ip());
        if !ip.is_loopback() && a.interface_name != "docker0" {
            found = Some(ip);
            break;
        }
    }
    found
}
