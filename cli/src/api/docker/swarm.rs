//! Nodes and the swarm (the cluster object): rendered as Docker's `Node` and
//! `Swarm`; a node's spec (`POST /nodes/{id}/update`) and the swarm's
//! (`POST /swarm/update`) read back.

use bollard_stubs::models as bollard;
use serde_json::Value;
use shoal_proto::{
    Annotations, CaConfig, Cluster, ClusterSpec, DispatcherConfig, LimitsConfig, Node, NodeAvailability, NodeRole,
    NodeSpec, NodeState, OrchestrationConfig, Reachability,
};

use super::{labels, name, object_version, read, SpecError};

/// A node's spec as Docker's `NodeSpec`.
pub fn node_spec(spec: &NodeSpec) -> bollard::NodeSpec {
    let role = match spec.desired_role() {
        NodeRole::Worker => bollard::NodeSpecRoleEnum::WORKER,
        NodeRole::Manager => bollard::NodeSpecRoleEnum::MANAGER,
    };
    let availability = match spec.availability() {
        NodeAvailability::Active => bollard::NodeSpecAvailabilityEnum::ACTIVE,
        NodeAvailability::Pause => bollard::NodeSpecAvailabilityEnum::PAUSE,
        NodeAvailability::Drain => bollard::NodeSpecAvailabilityEnum::DRAIN,
    };
    bollard::NodeSpec {
        name: Some(name(&spec.annotations)),
        labels: Some(labels(&spec.annotations)),
        role: Some(role),
        availability: Some(availability),
    }
}

/// A node as Docker's `Node`; `leader_raft_id` marks the manager that
/// currently leads.
pub fn node(n: &Node, leader_raft_id: Option<u64>) -> bollard::Node {
    let (version, created, updated) = object_version(&n.meta);
    let d = n.description.clone().unwrap_or_default();
    let st = n.status.clone().unwrap_or_default();
    let p = d.platform.clone().unwrap_or_default();
    let r = d.resources.unwrap_or_default();
    let state = match st.state() {
        NodeState::Unknown => bollard::NodeState::UNKNOWN,
        NodeState::Down => bollard::NodeState::DOWN,
        NodeState::Ready => bollard::NodeState::READY,
        NodeState::Disconnected => bollard::NodeState::DISCONNECTED,
    };
    let manager_status = n.manager_status.as_ref().map(|m| {
        let leader = leader_raft_id == Some(m.raft_id);
        // A manager is as reachable as its node's daemon: the leader hears from
        // it through its agent's heartbeats.
        let reachability = match (leader, st.state(), m.reachability()) {
            (true, _, _) | (_, NodeState::Ready, _) => bollard::Reachability::REACHABLE,
            (_, NodeState::Down | NodeState::Disconnected, _) | (_, _, Reachability::Unreachable) => {
                bollard::Reachability::UNREACHABLE
            }
            (_, _, Reachability::Unknown) => bollard::Reachability::UNKNOWN,
            (_, _, Reachability::Reachable) => bollard::Reachability::REACHABLE,
        };
        bollard::ManagerStatus { leader: Some(leader), reachability: Some(reachability), addr: Some(m.addr.clone()) }
    });
    bollard::Node {
        id: Some(n.id.clone()),
        version: Some(version),
        created_at: Some(created),
        updated_at: Some(updated),
        spec: Some(node_spec(&n.spec.clone().unwrap_or_default())),
        description: Some(bollard::NodeDescription {
            hostname: Some(d.hostname),
            platform: Some(bollard::Platform { architecture: Some(p.architecture), os: Some(p.os) }),
            resources: Some(bollard::ResourceObject {
                nano_cpus: Some(r.nano_cpus),
                memory_bytes: Some(r.memory_bytes),
                generic_resources: None,
            }),
            engine: Some(bollard::EngineDescription {
                engine_version: Some(d.engine_version),
                labels: None,
                plugins: Some(Vec::new()),
            }),
            tls_info: Some(bollard::TlsInfo::default()),
        }),
        status: Some(bollard::NodeStatus { state: Some(state), message: Some(st.message), addr: Some(st.addr) }),
        manager_status,
    }
}

/// Reads a Docker `NodeSpec` (`Name`, `Labels`, `Role`, `Availability`).
pub fn parse_node_spec(v: &Value) -> Result<NodeSpec, SpecError> {
    use bollard::NodeSpecAvailabilityEnum as A;
    use bollard::NodeSpecRoleEnum as R;
    let s: bollard::NodeSpec = read(v, "NodeSpec")?;
    let role = match s.role {
        None | Some(R::EMPTY | R::WORKER) => NodeRole::Worker,
        Some(R::MANAGER) => NodeRole::Manager,
    };
    let availability = match s.availability {
        None | Some(A::EMPTY | A::ACTIVE) => NodeAvailability::Active,
        Some(A::PAUSE) => NodeAvailability::Pause,
        Some(A::DRAIN) => NodeAvailability::Drain,
    };
    Ok(NodeSpec {
        annotations: Some(Annotations { name: s.name.unwrap_or_default(), labels: s.labels.unwrap_or_default() }),
        desired_role: role as i32,
        availability: availability as i32,
    })
}

/// The cluster's settings as Docker's `SwarmSpec`: those shoal has; Docker's
/// others at the values shoal behaves as.
pub fn swarm_spec(spec: &ClusterSpec) -> bollard::SwarmSpec {
    let raft = spec.raft.unwrap_or_default();
    bollard::SwarmSpec {
        name: Some("default".into()),
        labels: Some(labels(&spec.annotations)),
        orchestration: Some(bollard::SwarmSpecOrchestration {
            task_history_retention_limit: spec.orchestration.map(|o| o.task_history_retention_limit),
        }),
        raft: Some(bollard::SwarmSpecRaft {
            snapshot_interval: Some(raft.snapshot_interval),
            keep_old_snapshots: Some(0),
            log_entries_for_slow_followers: None,
            election_tick: Some(10),
            heartbeat_tick: Some(1),
        }),
        dispatcher: Some(bollard::SwarmSpecDispatcher {
            heartbeat_period: Some(spec.dispatcher.map(|d| d.heartbeat_period).unwrap_or(0)),
        }),
        ca_config: Some(bollard::SwarmSpecCaConfig {
            node_cert_expiry: Some(spec.ca.map(|c| c.node_cert_expiry).unwrap_or(0)),
            ..Default::default()
        }),
        encryption_config: Some(bollard::SwarmSpecEncryptionConfig { auto_lock_managers: Some(false) }),
        task_defaults: Some(bollard::SwarmSpecTaskDefaults::default()),
    }
}

/// The cluster as Docker's `Swarm` (`GET /swarm`), join tokens included.
pub fn cluster(c: &Cluster) -> bollard::Swarm {
    let (version, created, updated) = object_version(&c.meta);
    let mut spec = c.spec.clone().unwrap_or_default();
    // Docker's default task history, which the orchestrator keeps when the
    // cluster has no setting of its own.
    spec.orchestration.get_or_insert(OrchestrationConfig { task_history_retention_limit: 5 });
    let tokens = c.join_tokens.clone().unwrap_or_default();
    bollard::Swarm {
        id: Some(c.id.clone()),
        version: Some(version),
        created_at: Some(created),
        updated_at: Some(updated),
        spec: Some(swarm_spec(&spec)),
        tls_info: Some(bollard::TlsInfo::default()),
        root_rotation_in_progress: Some(false),
        data_path_port: Some(4789),
        default_addr_pool: Some(vec!["10.0.0.0/8".into()]),
        subnet_size: Some(24),
        join_tokens: Some(bollard::JoinTokens { worker: Some(tokens.worker), manager: Some(tokens.manager) }),
    }
}

/// The cluster as the `Swarm.Cluster` of `GET /info` shows it: Docker's
/// `ClusterInfo`, the cluster without its join tokens, which only
/// `GET /swarm` gives.
pub fn cluster_info(c: &Cluster) -> bollard::ClusterInfo {
    let s = cluster(c);
    bollard::ClusterInfo {
        id: s.id,
        version: s.version,
        created_at: s.created_at,
        updated_at: s.updated_at,
        spec: s.spec,
        tls_info: s.tls_info,
        root_rotation_in_progress: s.root_rotation_in_progress,
        data_path_port: s.data_path_port,
        default_addr_pool: s.default_addr_pool,
        subnet_size: s.subnet_size,
    }
}

/// Reads the settings of `POST /swarm/update`: task history, heartbeat period
/// and certificate expiry (a zero period or expiry, or an absent one, leaves
/// the setting as it is). An empty body changes nothing.
pub fn parse_swarm_spec(v: &Value) -> Result<ClusterSpec, SpecError> {
    if v.is_null() {
        return Ok(ClusterSpec::default());
    }
    let s: bollard::SwarmSpec = read(v, "SwarmSpec")?;
    Ok(ClusterSpec {
        orchestration: s
            .orchestration
            .and_then(|o| o.task_history_retention_limit)
            .map(|l| OrchestrationConfig { task_history_retention_limit: l }),
        dispatcher: s
            .dispatcher
            .and_then(|d| d.heartbeat_period)
            .filter(|p| *p != 0)
            .map(|p| DispatcherConfig { heartbeat_period: p }),
        ca: s.ca_config.and_then(|c| c.node_cert_expiry).filter(|e| *e != 0).map(|e| CaConfig { node_cert_expiry: e }),
        limits: match &v["Limits"] {
            Value::Null => None,
            l => read::<ShoalLimits>(l, "Limits")?.max_replicas.map(|max_replicas| LimitsConfig { max_replicas }),
        },
        ..Default::default()
    })
}

/// shoal's own part of a swarm spec (Docker's has no such field): what one
/// request may ask for, `Limits.MaxReplicas` replicas per service.
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct ShoalLimits {
    max_replicas: Option<u64>,
}
