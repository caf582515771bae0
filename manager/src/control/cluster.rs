//! Cluster operations: settings and join token rotation.

use shoal_proto::ClusterSpec;

use super::propose::update;
use super::{Control, ControlError};
use crate::identity::new_id;

/// Which join tokens to replace.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rotate {
    pub worker: bool,
    pub manager: bool,
}

fn rotated(token: &str) -> String {
    // SWMTKN-1-<digest>-<secret>: keep the CA digest, replace the secret.
    match token.rfind('-') {
        Some(i) => format!("{}-{}", &token[..i], new_id()),
        None => token.to_string(),
    }
}

impl Control {
    /// Replaces the cluster's settings that `spec` carries (if still at
    /// `version`; the others stay) and rotates the join tokens asked for;
    /// nodes that already joined are not affected.
    pub async fn update_cluster(&self, version: u64, spec: ClusterSpec, rotate: Rotate) -> Result<(), ControlError> {
        if let Some(o) = &spec.orchestration {
            if o.task_history_retention_limit < -1 {
                return Err(ControlError::InvalidArgument(
                    "Orchestration.TaskHistoryRetentionLimit: use -1 (keep all) or a count".into(),
                ));
            }
        }
        if let Some(d) = &spec.dispatcher {
            if d.heartbeat_period != 0 && d.heartbeat_period < 100_000_000 {
                return Err(ControlError::InvalidArgument("Dispatcher.HeartbeatPeriod: at least 100ms".into()));
            }
        }
        if let Some(ca) = &spec.ca {
            if ca.node_cert_expiry != 0 && ca.node_cert_expiry < 60_000_000_000 {
                return Err(ControlError::InvalidArgument("CAConfig.NodeCertExpiry: at least 1 minute".into()));
            }
        }
        if let Some(l) = &spec.limits {
            super::limits::check_max_replicas(l.max_replicas)
                .map_err(|e| ControlError::InvalidArgument(format!("Limits.MaxReplicas: {e}")))?;
        }
        let mut cluster = self
            .store
            .read()
            .cluster()
            .cloned()
            .ok_or_else(|| ControlError::Unavailable("the swarm is still starting; retry".into()))?;
        if let Some(meta) = cluster.meta.as_mut() {
            meta.version = version;
        }
        let mut merged = cluster.spec.clone().unwrap_or_default();
        if spec.orchestration.is_some() {
            merged.orchestration = spec.orchestration;
        }
        if spec.dispatcher.is_some() {
            merged.dispatcher = spec.dispatcher;
        }
        if spec.ca.is_some() {
            merged.ca = spec.ca;
        }
        if spec.annotations.is_some() {
            merged.annotations = spec.annotations;
        }
        if let Some(mut l) = spec.limits {
            if l.max_replicas == 0 {
                l.max_replicas = super::limits::DEFAULT_MAX_REPLICAS;
            }
            merged.limits = Some(l);
        }
        cluster.spec = Some(merged);
        if let Some(tokens) = cluster.join_tokens.as_mut() {
            if rotate.worker {
                tokens.worker = rotated(&tokens.worker);
            }
            if rotate.manager {
                tokens.manager = rotated(&tokens.manager);
            }
        }
        self.proposer.propose(vec![update(cluster)]).await?;
        Ok(())
    }
}
