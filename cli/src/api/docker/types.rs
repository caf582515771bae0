//! Where shoal's JSON is not the Engine API's specification as bollard-stubs
//! generates it: wrappers that add shoal's own fields to a bollard type
//! (flattened into it, so the JSON stays one object), and local types where
//! the specification is wrong about what Docker and its CLI actually send.
//!
//! A wrapper replaces some of its bollard type's fields with its own (a field
//! of the same JSON name, typed with another wrapper): serde hands each key to
//! the wrapper's own field first, so the bollard field of that name stays
//! `None` when read, and must be left `None` when rendering.

use std::collections::HashMap;

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
