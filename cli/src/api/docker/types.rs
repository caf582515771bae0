//! Where shoal's JSON is not the Engine API's specification as bollard-stubs
//! generates it: wrappers that add shoal's own fields to a bollard type
//! (flattened into it, so the JSON stays one object), and local types where
//! the specification is wrong about what Docker and its CLI actually send, or
//! where shoal reads more strictly than a generated type can (a container
//! mount's unknown options are refused, not ignored).
//!
//! A wrapper replaces some of its bollard type's fields with its own (a field
//! of the same JSON name, typed with another wrapper): serde hands each key to
//! the wrapper's own field first, so the bollard field of that name stays
//! `None` when read, and must be left `None` when rendering.

use std::collections::{BTreeMap, HashMap};

use bollard_stubs::models as bollard;
use serde::{Deserialize, Serialize};

use super::flattened;

/// Docker's `ServiceSpec`, with shoal's task template, compose's
/// `depends_on`, which Docker's API lacks (shoal keeps it so that a stack's
/// first deploy starts services in order), and a `RollbackConfig` typed as
/// Docker types it: the specification gives it an enum of failure actions
/// without `rollback`, which the docker CLI sends
/// (`--rollback-failure-action rollback`) and Docker's daemon takes, its
/// own type being the same `UpdateConfig` as `UpdateConfig`'s.
/// `spec.task_template` and `spec.rollback_config` stay `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    #[serde(flatten, deserialize_with = "flattened")]
    pub spec: bollard::ServiceSpec,
    #[serde(rename = "TaskTemplate", skip_serializing_if = "Option::is_none")]
    pub task_template: Option<TaskSpec>,
    #[serde(rename = "RollbackConfig", skip_serializing_if = "Option::is_none")]
    pub rollback_config: Option<bollard::ServiceSpecUpdateConfig>,
    /// shoal only: the services whose tasks this one's first tasks wait for.
    #[serde(rename = "DependsOn", skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<ServiceDependency>>,
}

/// One of compose's `depends_on` (shoal only).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceDependency {
    /// The full name of the service depended on (`<stack>_<name>`).
    #[serde(rename = "Service", skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(rename = "Condition", skip_serializing_if = "Option::is_none")]
    pub condition: Option<DependencyCondition>,
}

/// When a dependency counts as met; compose's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DependencyCondition {
    #[serde(rename = "service_started", alias = "")]
    ServiceStarted,
    #[serde(rename = "service_healthy")]
    ServiceHealthy,
    #[serde(rename = "service_completed_successfully")]
    ServiceCompletedSuccessfully,
}

/// Docker's `TaskSpec` with shoal's container spec and resources (below).
/// `spec.container_spec` and `spec.resources` stay `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    #[serde(flatten, deserialize_with = "flattened")]
    pub spec: bollard::TaskSpec,
    #[serde(rename = "ContainerSpec", skip_serializing_if = "Option::is_none")]
    pub container_spec: Option<ContainerSpec>,
    #[serde(rename = "Resources", skip_serializing_if = "Option::is_none")]
    pub resources: Option<TaskResources>,
}

/// Docker's `ContainerSpec`, with its health check under the name Docker
/// uses. The specification spells it `HealthCheck`, but Docker's own type
/// (and so the docker CLI) writes `Healthcheck`; Docker reads either, its
/// JSON decoding ignoring case, so `spec.health_check` holds a
/// `HealthCheck` a client sent, and `Healthcheck` wins when both came.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    #[serde(flatten, deserialize_with = "flattened")]
    pub spec: bollard::TaskSpecContainerSpec,
    #[serde(rename = "Healthcheck", skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<bollard::HealthConfig>,
}

/// Docker's task `Resources`, with shoal's reservations (below).
/// `resources.reservations` stays `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskResources {
    #[serde(flatten, deserialize_with = "flattened")]
    pub resources: bollard::TaskSpecResources,
    #[serde(rename = "Reservations", skip_serializing_if = "Option::is_none")]
    pub reservations: Option<Reservations>,
}

/// Docker's reserved resources, plus a `Pids` as limits have: compose's
/// `deploy.resources.reservations.pids`, which Docker's API has no place for.
/// shoal keeps it so that what a stack asked for is not silently dropped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reservations {
    #[serde(flatten, deserialize_with = "flattened")]
    pub resources: bollard::ResourceObject,
    /// shoal only.
    #[serde(rename = "Pids", skip_serializing_if = "Option::is_none")]
    pub pids: Option<i64>,
}

/// Docker's `Service` with shoal's spec, and `PreviousSpec`, which Docker's
/// type has (and `docker service rollback` reads) but the specification
/// leaves out. `service.spec` stays `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Service {
    #[serde(flatten, deserialize_with = "flattened")]
    pub service: bollard::Service,
    #[serde(rename = "Spec", skip_serializing_if = "Option::is_none")]
    pub spec: Option<ServiceSpec>,
    #[serde(rename = "PreviousSpec", skip_serializing_if = "Option::is_none")]
    pub previous_spec: Option<ServiceSpec>,
}

/// Docker's `Task` with shoal's task spec, and `NetworksAttachments`,
/// which Docker's type has (the task's address on each of its networks) but
/// the specification leaves out. `task.spec` stays `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Task {
    #[serde(flatten, deserialize_with = "flattened")]
    pub task: bollard::Task,
    #[serde(rename = "Spec", skip_serializing_if = "Option::is_none")]
    pub spec: Option<TaskSpec>,
    #[serde(rename = "NetworksAttachments", skip_serializing_if = "Option::is_none")]
    pub networks_attachments: Option<Vec<NetworkAttachment>>,
}

/// A task's place on one network, as Docker's `swarm.NetworkAttachment`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkAttachment {
    #[serde(rename = "Network")]
    pub network: SwarmNetwork,
    /// CIDR (`10.0.1.5/24`).
    #[serde(rename = "Addresses", default)]
    pub addresses: Vec<String>,
}

/// A network as swarm objects embed it (Docker's `swarm.Network`), which
/// the specification has no type for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SwarmNetwork {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Version")]
    pub version: bollard::ObjectVersion,
    #[serde(rename = "CreatedAt")]
    pub created_at: String,
    #[serde(rename = "UpdatedAt")]
    pub updated_at: String,
    #[serde(rename = "Spec")]
    pub spec: SwarmNetworkSpec,
    /// The driver and what it was given: the VNI, as
    /// `com.docker.network.driver.overlay.vxlanid_list`.
    #[serde(rename = "DriverState")]
    pub driver_state: SwarmDriver,
    #[serde(rename = "IPAMOptions", skip_serializing_if = "Option::is_none")]
    pub ipam_options: Option<IpamOptions>,
}

/// Docker's `swarm.NetworkSpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SwarmNetworkSpec {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Labels", default)]
    pub labels: HashMap<String, String>,
    #[serde(rename = "DriverConfiguration", skip_serializing_if = "Option::is_none")]
    pub driver_configuration: Option<SwarmDriver>,
    #[serde(rename = "Internal", default, skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
    #[serde(rename = "Attachable", default, skip_serializing_if = "std::ops::Not::not")]
    pub attachable: bool,
    #[serde(rename = "IPAMOptions", skip_serializing_if = "Option::is_none")]
    pub ipam_options: Option<IpamOptions>,
    #[serde(rename = "Scope")]
    pub scope: String,
}

/// Docker's `swarm.Driver`: a name and its options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwarmDriver {
    #[serde(rename = "Name", default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(rename = "Options", skip_serializing_if = "Option::is_none")]
    pub options: Option<HashMap<String, String>>,
}

/// Docker's `swarm.IPAMOptions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamOptions {
    #[serde(rename = "Driver")]
    pub driver: SwarmDriver,
    #[serde(rename = "Configs", default)]
    pub configs: Vec<SwarmIpamConfig>,
}

/// Docker's `swarm.IPAMConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwarmIpamConfig {
    #[serde(rename = "Subnet", default, skip_serializing_if = "String::is_empty")]
    pub subnet: String,
    #[serde(rename = "Range", default, skip_serializing_if = "String::is_empty")]
    pub range: String,
    #[serde(rename = "Gateway", default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
}

/// Docker's network as `GET /networks` lists it, with `Containers`, which a
/// swarm network on a manager shows as `null` (Go's nil map), not absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Network {
    #[serde(flatten, deserialize_with = "flattened")]
    pub network: bollard::Network,
    #[serde(rename = "Containers")]
    pub containers: Option<HashMap<String, bollard::EndpointResource>>,
}

/// A secret's spec (a config's is the same without `Driver`), with `Driver`
/// and `Templating` as Docker reads them: the specification makes a driver's
/// `Name` required, where Docker's type takes `{}` as "no driver".
/// `spec.driver` and `spec.templating` stay `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SecretSpec {
    #[serde(flatten, deserialize_with = "flattened")]
    pub spec: bollard::SecretSpec,
    #[serde(rename = "Driver", skip_serializing_if = "Option::is_none")]
    pub driver: Option<Driver>,
    #[serde(rename = "Templating", skip_serializing_if = "Option::is_none")]
    pub templating: Option<Driver>,
}

/// A secret driver or templating driver, its name optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Driver {
    #[serde(rename = "Name", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "Options", skip_serializing_if = "Option::is_none")]
    pub options: Option<HashMap<String, String>>,
}

/// Docker's `POST /containers/create` body, with shoal's `HostConfig` and
/// with `Cmd`, `Entrypoint` and `Volumes` as Docker reads them: the
/// commands as [`StrSlice`]s, and `Volumes` with any value for each path
/// (Docker's type is `map[string]struct{}`, which ignores what a value holds;
/// the specification's generated type refuses all but `{}`), in the order of
/// their paths. `body.cmd`, `body.entrypoint`, `body.volumes` and
/// `body.host_config` stay `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerCreateBody {
    #[serde(flatten, deserialize_with = "flattened")]
    pub body: bollard::ContainerCreateBody,
    #[serde(rename = "Cmd", skip_serializing_if = "Option::is_none")]
    pub cmd: Option<StrSlice>,
    #[serde(rename = "Entrypoint", skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<StrSlice>,
    #[serde(rename = "Volumes", skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(rename = "HostConfig", skip_serializing_if = "Option::is_none")]
    pub host_config: Option<HostConfig>,
}

/// Docker's `HostConfig` as a container create reads it, with shoal's
/// `Mounts` (below), `CapAdd` and `CapDrop` as the [`StrSlice`]s Docker's own
/// type makes them, and a `RestartPolicy` whose `Name` is any text: Docker
/// reads the name as a string and refuses an unknown one after, saying which
/// policies there are, where the specification's enum makes it a decoding
/// error. `config.mounts`, `config.cap_add`, `config.cap_drop` and
/// `config.restart_policy` stay `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostConfig {
    #[serde(flatten, deserialize_with = "flattened")]
    pub config: bollard::HostConfig,
    #[serde(rename = "Mounts", skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<Mount>>,
    #[serde(rename = "CapAdd", skip_serializing_if = "Option::is_none")]
    pub cap_add: Option<StrSlice>,
    #[serde(rename = "CapDrop", skip_serializing_if = "Option::is_none")]
    pub cap_drop: Option<StrSlice>,
    #[serde(rename = "RestartPolicy", skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
}

/// A container's restart policy, its name as text (see [`HostConfig`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    #[serde(rename = "Name", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "MaximumRetryCount", skip_serializing_if = "Option::is_none")]
    pub maximum_retry_count: Option<i64>,
}

/// One of a container's `HostConfig.Mounts` (`docker run --mount`). Not
/// bollard's `Mount`, for two reasons. Its `Type` is text, as in Docker's own
/// type, which checks it after reading: an unknown type gets an answer naming
/// the types there are. And a field this daemon does not know, here or in the
/// options, is refused rather than ignored (`deny_unknown_fields`, which
/// serde has only for a type of its own): a mount that silently is not what
/// was asked for is worse than an error. `ImageOptions` and `ClusterOptions`
/// (the latter missing from the specification) are kept only to be refused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    #[serde(rename = "Type", skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    #[serde(rename = "Source", skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(rename = "Target", skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(rename = "ReadOnly", skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    #[serde(rename = "Consistency", skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
    #[serde(rename = "BindOptions", skip_serializing_if = "Option::is_none")]
    pub bind_options: Option<BindOptions>,
    #[serde(rename = "VolumeOptions", skip_serializing_if = "Option::is_none")]
    pub volume_options: Option<VolumeOptions>,
    #[serde(rename = "TmpfsOptions", skip_serializing_if = "Option::is_none")]
    pub tmpfs_options: Option<TmpfsOptions>,
    #[serde(rename = "ImageOptions", skip_serializing_if = "Option::is_none")]
    pub image_options: Option<serde_json::Value>,
    #[serde(rename = "ClusterOptions", skip_serializing_if = "Option::is_none")]
    pub cluster_options: Option<serde_json::Value>,
}

/// A bind mount's options; `Propagation` as text, checked by the runtime,
/// which names the kinds it supports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindOptions {
    #[serde(rename = "Propagation", skip_serializing_if = "Option::is_none")]
    pub propagation: Option<String>,
    #[serde(rename = "NonRecursive", skip_serializing_if = "Option::is_none")]
    pub non_recursive: Option<bool>,
    #[serde(rename = "CreateMountpoint", skip_serializing_if = "Option::is_none")]
    pub create_mountpoint: Option<bool>,
    #[serde(rename = "ReadOnlyNonRecursive", skip_serializing_if = "Option::is_none")]
    pub read_only_non_recursive: Option<bool>,
    #[serde(rename = "ReadOnlyForceRecursive", skip_serializing_if = "Option::is_none")]
    pub read_only_force_recursive: Option<bool>,
}

/// A volume mount's options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeOptions {
    #[serde(rename = "NoCopy", skip_serializing_if = "Option::is_none")]
    pub no_copy: Option<bool>,
    #[serde(rename = "Labels", skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "DriverConfig", skip_serializing_if = "Option::is_none")]
    pub driver_config: Option<MountDriver>,
    #[serde(rename = "Subpath", skip_serializing_if = "Option::is_none")]
    pub subpath: Option<String>,
}

/// The volume driver a volume mount names, and its options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountDriver {
    #[serde(rename = "Name", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "Options", skip_serializing_if = "Option::is_none")]
    pub options: Option<BTreeMap<String, String>>,
}

/// A tmpfs mount's options; `Mode` unsigned, as Docker's `os.FileMode` is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TmpfsOptions {
    #[serde(rename = "SizeBytes", skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    #[serde(rename = "Mode", skip_serializing_if = "Option::is_none")]
    pub mode: Option<u64>,
    #[serde(rename = "Options", skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<Vec<String>>>,
}

/// A command or list of names as Docker reads one (`strslice.StrSlice`): a
/// list of strings, or one string, which is a list of that one. The
/// specification says so in words, but its schema, and so bollard's type,
/// takes only the list. Always written as a list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct StrSlice(pub Vec<String>);

impl<'de> Deserialize<'de> for StrSlice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<StrSlice, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = StrSlice;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<StrSlice, E> {
                Ok(StrSlice(vec![s.to_string()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<StrSlice, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(StrSlice(items))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Docker's container as `GET /containers/json` lists it, with `Pid`, which
/// Docker's list leaves to inspect (shoal only: where each container's init
/// runs, for a listing that needs no inspect per container).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerSummary {
    #[serde(flatten, deserialize_with = "flattened")]
    pub summary: bollard::ContainerSummary,
    /// shoal only.
    #[serde(rename = "Pid", skip_serializing_if = "Option::is_none")]
    pub pid: Option<i64>,
}

/// The answer to a request that makes an object with an id (`POST /commit`,
/// `POST /containers/{id}/exec`): `{"Id": …}`. bollard's `IdResponse` writes
/// its field as `id`, reading `Id` only as an alias.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdResponse {
    #[serde(rename = "Id", alias = "ID")]
    pub id: String,
}

/// A line of the JSON message stream `POST /images/load` answers with
/// (Docker's `jsonmessage.JSONMessage`, which the specification leaves
/// without a schema there): what was loaded, as text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadResponse {
    #[serde(rename = "stream", skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
}

/// Docker's `GET /info`, with shoal's swarm part (below). `info.swarm`
/// stays `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SystemInfo {
    #[serde(flatten, deserialize_with = "flattened")]
    pub info: bollard::SystemInfo,
    #[serde(rename = "Swarm", skip_serializing_if = "Option::is_none")]
    pub swarm: Option<SwarmInfo>,
}

/// Docker's `Swarm` part of `GET /info`, with `Raft`: shoal only, a
/// manager's own view of raft, which Docker does not show.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SwarmInfo {
    #[serde(flatten, deserialize_with = "flattened")]
    pub swarm: bollard::SwarmInfo,
    /// shoal only.
    #[serde(rename = "Raft", skip_serializing_if = "Option::is_none")]
    pub raft: Option<RaftStatus>,
}

/// A manager's view of raft (shoal only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftStatus {
    /// This manager's raft id.
    #[serde(rename = "ID")]
    pub id: u64,
    /// The raft id of the manager it knows to lead, if any.
    #[serde(rename = "Leader")]
    pub leader: Option<u64>,
    /// The index of the last entry it applied.
    #[serde(rename = "Applied")]
    pub applied: u64,
    /// The index its latest snapshot covers, if it has one.
    #[serde(rename = "Snapshot")]
    pub snapshot: Option<u64>,
    /// How many managers vote.
    #[serde(rename = "Voters")]
    pub voters: u64,
}

/// Docker's `Node` with shoal's manager status (below). `node.manager_status`
/// stays `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Node {
    #[serde(flatten, deserialize_with = "flattened")]
    pub node: bollard::Node,
    #[serde(rename = "ManagerStatus", skip_serializing_if = "Option::is_none")]
    pub manager_status: Option<ManagerStatus>,
}

/// Docker's `ManagerStatus`, with `Error`: shoal only, why this manager
/// cannot take writes (its raft storage), shown on its own node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ManagerStatus {
    #[serde(flatten, deserialize_with = "flattened")]
    pub status: bollard::ManagerStatus,
    /// shoal only.
    #[serde(rename = "Error", skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
