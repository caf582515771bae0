//! Node operations: availability, labels, removal.

use shoal_proto::{NodeRole, NodeSpec, NodeState};

use super::propose::{delete, update, LeaderOp, WriteError};
use super::{Control, ControlError};
use crate::store::StoreError;

impl Control {
    /// Replaces a node's spec (availability, labels, role), if the node is
    /// still at `version`. Promotion only records the wish: the node renews
    /// its certificate as a manager and joins the raft membership itself.
    /// Demotion first takes the node's manager out of the membership (refused
    /// for the last manager, or when the rest would lose quorum).
    pub async fn update_node(&self, key: &str, version: u64, spec: NodeSpec) -> Result<(), ControlError> {
        let mut node = self.store.read().find_node(key)?.clone();
        if let Some(a) = &spec.annotations {
            super::limits::check_labels("node", node.hostname(), &a.labels)?;
        }
        let old_role = node.spec.as_ref().map(|s| s.desired_role()).unwrap_or(node.role());
        if node.version() != version {
            return Err(StoreError::VersionConflict {
                kind: "node".into(),
                id: node.id.clone(),
                current: node.version(),
                given: version,
            }
            .into());
        }
        if spec.desired_role() == NodeRole::Worker && old_role == NodeRole::Manager {
            if let Some(raft_id) = node.manager_status.as_ref().map(|m| m.raft_id) {
                self.proposer.run(LeaderOp::RemoveManager { raft_id }, true).await.map_err(|e| match e {
                    WriteError::Refused(m) => {
                        ControlError::InvalidArgument(format!("node {} can't be demoted: {m}", node.hostname()))
                    }
                    e => e.into(),
                })?;
                // Removing it rewrote the node: apply the rest of the spec on top.
                node = self.store.read().find_node(&node.id)?.clone();
            }
        } else if let Some(meta) = node.meta.as_mut() {
            meta.version = version;
        }
        node.spec = Some(spec);
        self.proposer.propose(vec![update(node)]).await?;
        Ok(())
    }

    /// Removes a node from the swarm: from then on its certificate is
    /// refused and its tasks run elsewhere. A node that is still up needs
    /// `force`; a manager must be demoted first.
    pub async fn remove_node(&self, key: &str, force: bool) -> Result<String, ControlError> {
        let node = self.store.read().find_node(key)?.clone();
        let name = node.hostname().to_string();
        // A demoted manager that is down never renews its certificate, so its
        // role stays "manager": what counts is that it left the raft
        // membership (no manager status) and is wanted as a worker.
        let wanted = node.spec.as_ref().map(|s| s.desired_role()).unwrap_or(node.role());
        if wanted == NodeRole::Manager || node.manager_status.is_some() {
            return Err(ControlError::InvalidArgument(format!(
                "rpc error: node {name} is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal"
            )));
        }
        let down = node.status.as_ref().map(|s| s.state()) == Some(NodeState::Down);
        if !down && !force {
            return Err(ControlError::InvalidArgument(format!(
                "node {name} is not down and can't be removed: stop it first, or use --force"
            )));
        }
        self.proposer.propose(vec![delete(node)]).await?;
        Ok(name)
    }
}
