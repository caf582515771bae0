//! This node's identity in its swarm, kept in `<data-root>/swarm/node.json`
//! so that a restarted daemon rejoins the same swarm with the same IDs.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rand::Rng;
use serde::{Deserialize, Serialize};
pub use shoal_manager::RaftTuning;

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
    /// How this node's manager runs raft (0 = the default).
    #[serde(default)]
    pub raft: RaftTuning,
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
            raft: RaftTuning::default(),
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
}

/// Whether interface `name` is a container bridge (shoal's own or Docker's) rather than one
/// of the host's: its address is no node's address to advertise.
fn is_container_bridge(name: &str) -> bool {
    use shoal_mesh::names;
    [names::GATEWAY_BRIDGE, names::DEFAULT_BRIDGE, "docker0", "docker_gwbridge"].contains(&name)
        || [names::BRIDGE_PREFIX, names::VXLAN_PREFIX, names::VETH_PREFIX, "br-"].iter().any(|p| name.starts_with(p))
}

/// The first non-loopback IPv4 address of this host, to advertise.
pub fn primary_address() -> Option<IpAddr> {
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    let mut found = None;
    for a in addrs {
        let Some(sin) = a.address.as_ref().and_then(|s| s.as_sockaddr_in()) else { continue };
        let ip = IpAddr::V4(sin.ip());
        if !ip.is_loopback() && !is_container_bridge(&a.interface_name) {
            found = Some(ip);
            break;
        }
    }
    found
}

/// Where a node keeps its TLS material.
fn cert_dir(data_root: &Path) -> PathBuf {
    data_root.join("certificates")
}

fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::io::Write::write_all(&mut f, content.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Saves the node's certificate, key and the root (and the root's key on a
/// manager that holds the CA).
pub fn save_certificates(
    data_root: &Path,
    tls: &shoal_manager::ca::NodeTls,
    ca: Option<&shoal_manager::ca::RootCa>,
) -> anyhow::Result<()> {
    let dir = cert_dir(data_root);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    write_private(&dir.join("ca.crt"), &tls.root_ca_pem)?;
    write_private(&dir.join("node.crt"), &tls.cert_pem)?;
    write_private(&dir.join("node.key"), &tls.key_pem)?;
    match ca {
        Some(ca) => write_private(&dir.join("ca.key"), &ca.key_pem)?,
        None => match std::fs::remove_file(dir.join("ca.key")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", dir.join("ca.key").display()))
            }
            _ => {}
        },
    }
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| {
        format!("reading {}: the node's certificates are missing; leave and rejoin the swarm", path.display())
    })
}

/// Loads the node's TLS material.
pub fn load_tls(data_root: &Path) -> anyhow::Result<shoal_manager::ca::NodeTls> {
    let dir = cert_dir(data_root);
    Ok(shoal_manager::ca::NodeTls {
        root_ca_pem: read(&dir.join("ca.crt"))?,
        cert_pem: read(&dir.join("node.crt"))?,
        key_pem: read(&dir.join("node.key"))?,
    })
}

/// Loads the root CA with its key (managers).
pub fn load_ca(data_root: &Path) -> anyhow::Result<shoal_manager::ca::RootCa> {
    let dir = cert_dir(data_root);
    Ok(shoal_manager::ca::RootCa { cert_pem: read(&dir.join("ca.crt"))?, key_pem: read(&dir.join("ca.key"))? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_bridges_are_never_advertised() {
        for name in ["shoal0", "shoal_gwbridge", "sb-4096", "sv-4096", "shv0a1b2c3d4e", "docker0", "br-1234abcd"] {
            assert!(is_container_bridge(name), "{name}");
        }
        for name in ["eth0", "ens3", "wlan0", "lab0", "bond0"] {
            assert!(!is_container_bridge(name), "{name}");
        }
    }
}
