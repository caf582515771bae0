//! Services and tasks: a `ServiceSpec` (and its task template) read from
//! Docker's JSON and rendered to it, and `Service` and `Task` objects rendered.

use std::collections::{BTreeMap, HashMap};

use bollard_stubs::models as bollard;
use serde_json::Value;
use shoal_proto::{
    mount, service_mode, Annotations, ConfigReference, ContainerSpec, DependencyCondition, DnsConfig, EndpointMode,
    EndpointSpec, FailureAction, FileTarget, GlobalService, HealthConfig, Mount, NetworkAttachmentConfig, Placement,
    PortConfig, PortProtocol, PublishMode, ReplicatedService, ResourceRequirements, Resources, RestartCondition,
    RestartPolicy, SecretReference, Service, ServiceDependency, ServiceMode, ServiceSpec, Task, TaskSpec, TaskState,
    Ulimit, UpdateConfig, UpdateOrder,
};

use super::types;
use super::{count, count_from, err, labels, name, nonzero, object_version, read, text, time, SpecError};

type Result<T> = std::result::Result<T, SpecError>;

// ------------------------------------------------------------- rendering

/// A service spec as Docker's `ServiceSpec`.
pub fn service_spec(s: &ServiceSpec) -> types::ServiceSpec {
    let endpoint = s.endpoint.clone().unwrap_or_default();
    types::ServiceSpec {
        spec: bollard::ServiceSpec {
            name: Some(name(&s.annotations)),
            labels: Some(labels(&s.annotations)),
            mode: Some(mode(s.mode.as_ref())),
            update_config: s.update.as_ref().map(update_config),
            endpoint_spec: Some(endpoint_spec(&endpoint)),
            ..Default::default()
        },
        task_template: Some(task_spec(s.task.as_ref().cloned().unwrap_or_default())),
        rollback_config: s.rollback.as_ref().map(update_config),
        depends_on: (!s.depends_on.is_empty()).then(|| s.depends_on.iter().map(dependency).collect()),
    }
}

fn mode(m: Option<&ServiceMode>) -> bollard::ServiceSpecMode {
    match m.and_then(|m| m.mode.as_ref()) {
        Some(service_mode::Mode::Replicated(r)) => bollard::ServiceSpecMode {
            replicated: Some(bollard::ServiceSpecModeReplicated { replicas: Some(count(r.replicas)) }),
            ..Default::default()
        },
        Some(service_mode::Mode::Global(_)) => {
            bollard::ServiceSpecMode { global: Some(HashMap::new()), ..Default::default() }
        }
        None => bollard::ServiceSpecMode::default(),
    }
}

fn dependency(d: &ServiceDependency) -> types::ServiceDependency {
    let condition = match d.condition() {
        DependencyCondition::ServiceStarted => types::DependencyCondition::ServiceStarted,
        DependencyCondition::ServiceHealthy => types::DependencyCondition::ServiceHealthy,
        DependencyCondition::ServiceCompletedSuccessfully => types::DependencyCondition::ServiceCompletedSuccessfully,
    };
    types::ServiceDependency { service: Some(d.service.clone()), condition: Some(condition) }
}

fn endpoint_spec(e: &EndpointSpec) -> bollard::EndpointSpec {
    let mode = match e.mode() {
        EndpointMode::Vip => bollard::EndpointSpecModeEnum::VIP,
        EndpointMode::Dnsrr => bollard::EndpointSpecModeEnum::DNSRR,
    };
    bollard::EndpointSpec { mode: Some(mode), ports: (!e.ports.is_empty()).then(|| e.ports.iter().map(port).collect()) }
}

fn port(p: &PortConfig) -> bollard::EndpointPortConfig {
    let protocol = match p.protocol() {
        PortProtocol::Tcp => bollard::EndpointPortConfigProtocolEnum::TCP,
        PortProtocol::Udp => bollard::EndpointPortConfigProtocolEnum::UDP,
        PortProtocol::Sctp => bollard::EndpointPortConfigProtocolEnum::SCTP,
    };
    let publish_mode = match p.publish_mode() {
        PublishMode::Ingress => bollard::EndpointPortConfigPublishModeEnum::INGRESS,
        PublishMode::Host => bollard::EndpointPortConfigPublishModeEnum::HOST,
    };
    bollard::EndpointPortConfig {
        name: text(&p.name),
        protocol: Some(protocol),
        target_port: Some(p.target_port.into()),
        published_port: (p.published_port != 0).then_some(p.published_port.into()),
        publish_mode: Some(publish_mode),
    }
}

/// A ratio of the model (`f32`, as Docker's own type) as the shortest decimal
/// that reads back as the same `f32` (`0.1`, not `0.10000000149011612`), as
/// Go renders a `float32`.
fn ratio(r: f32) -> f64 {
    match r.to_string().parse::<f64>() {
        Ok(shortest) if shortest as f32 == r => shortest,
        _ => r.into(),
    }
}

fn update_config(u: &UpdateConfig) -> bollard::ServiceSpecUpdateConfig {
    use bollard::ServiceSpecUpdateConfigFailureActionEnum as A;
    use bollard::ServiceSpecUpdateConfigOrderEnum as O;
    let action = match u.failure_action() {
        FailureAction::Pause => A::PAUSE,
        FailureAction::Continue => A::CONTINUE,
        FailureAction::Rollback => A::ROLLBACK,
    };
    let order = match u.order() {
        UpdateOrder::StopFirst => O::STOP_FIRST,
        UpdateOrder::StartFirst => O::START_FIRST,
    };
    bollard::ServiceSpecUpdateConfig {
        parallelism: Some(count(u.parallelism)),
        delay: Some(u.delay),
        failure_action: Some(action),
        monitor: Some(u.monitor),
        max_failure_ratio: Some(ratio(u.max_failure_ratio)),
        order: Some(order),
    }
}

fn limits(r: &Option<Resources>) -> bollard::Limit {
    let r = r.unwrap_or_default();
    bollard::Limit { nano_cpus: nonzero(r.nano_cpus), memory_bytes: nonzero(r.memory_bytes), pids: nonzero(r.pids) }
}

fn reservations(r: &Option<Resources>) -> types::Reservations {
    let r = r.unwrap_or_default();
    types::Reservations {
        resources: bollard::ResourceObject {
            nano_cpus: nonzero(r.nano_cpus),
            memory_bytes: nonzero(r.memory_bytes),
            generic_resources: None,
        },
        pids: nonzero(r.pids),
    }
}

fn secret_file(f: &FileTarget) -> bollard::TaskSpecContainerSpecFile {
    bollard::TaskSpecContainerSpecFile {
        name: Some(f.name.clone()),
        uid: Some(f.uid.clone()),
        gid: Some(f.gid.clone()),
        mode: Some(f.mode),
    }
}

fn config_file(f: &FileTarget) -> bollard::TaskSpecContainerSpecFile1 {
    bollard::TaskSpecContainerSpecFile1 {
        name: Some(f.name.clone()),
        uid: Some(f.uid.clone()),
        gid: Some(f.gid.clone()),
        mode: Some(f.mode),
    }
}

fn mount_json(m: &Mount) -> bollard::Mount {
    let kind = m.r#type();
    let typ = match kind {
        mount::Type::Bind => bollard::MountTypeEnum::BIND,
        mount::Type::Volume => bollard::MountTypeEnum::VOLUME,
        mount::Type::Tmpfs => bollard::MountTypeEnum::TMPFS,
    };
    let volume_options = (kind == mount::Type::Volume && (!m.volume_labels.is_empty() || m.volume_nocopy)).then(|| {
        bollard::MountVolumeOptions {
            no_copy: Some(m.volume_nocopy),
            labels: Some(m.volume_labels.clone()),
            ..Default::default()
        }
    });
    let tmpfs_options =
        (kind == mount::Type::Tmpfs && (m.tmpfs_size != 0 || m.tmpfs_mode != 0)).then(|| bollard::MountTmpfsOptions {
            size_bytes: nonzero(m.tmpfs_size),
            mode: (m.tmpfs_mode != 0).then_some(m.tmpfs_mode.into()),
            ..Default::default()
        });
    bollard::Mount {
        typ: Some(typ),
        source: text(&m.source),
        target: Some(m.target.clone()),
        read_only: m.read_only.then_some(true),
        volume_options,
        tmpfs_options,
        ..Default::default()
    }
}

fn health(h: &HealthConfig) -> bollard::HealthConfig {
    bollard::HealthConfig {
        test: Some(h.test.clone()),
        interval: nonzero(h.interval),
        timeout: nonzero(h.timeout),
        retries: (h.retries != 0).then(|| count(h.retries)),
        start_period: nonzero(h.start_period),
        start_interval: nonzero(h.start_interval),
    }
}

fn container_spec(c: ContainerSpec) -> types::ContainerSpec {
    let list = |v: Vec<String>| (!v.is_empty()).then_some(v);
    let map = |m: HashMap<String, String>| (!m.is_empty()).then_some(m);
    types::ContainerSpec {
        spec: bollard::TaskSpecContainerSpec {
            image: Some(c.image),
            labels: map(c.labels),
            command: list(c.command),
            args: list(c.args),
            hostname: text(&c.hostname),
            env: list(c.env),
            dir: text(&c.dir),
            user: text(&c.user),
            stop_signal: text(&c.stop_signal),
            stop_grace_period: c.stop_grace_period,
            tty: c.tty.then_some(true),
            read_only: c.read_only.then_some(true),
            init: c.init,
            mounts: (!c.mounts.is_empty()).then(|| c.mounts.iter().map(mount_json).collect()),
            secrets: (!c.secrets.is_empty()).then(|| {
                c.secrets
                    .iter()
                    .map(|r| bollard::TaskSpecContainerSpecSecrets {
                        file: r.file.as_ref().map(secret_file),
                        secret_id: Some(r.secret_id.clone()),
                        secret_name: Some(r.secret_name.clone()),
                    })
                    .collect()
            }),
            configs: (!c.configs.is_empty()).then(|| {
                c.configs
                    .iter()
                    .map(|r| bollard::TaskSpecContainerSpecConfigs {
                        file: r.file.as_ref().map(config_file),
                        config_id: Some(r.config_id.clone()),
                        config_name: Some(r.config_name.clone()),
                        runtime: None,
                    })
                    .collect()
            }),
            capability_add: list(c.cap_add),
            capability_drop: list(c.cap_drop),
            dns_config: c.dns.map(|d| bollard::TaskSpecContainerSpecDnsConfig {
                nameservers: Some(d.nameservers),
                search: Some(d.search),
                options: Some(d.options),
            }),
            hosts: list(c.hosts),
            sysctls: map(c.sysctls),
            ulimits: (!c.ulimits.is_empty()).then(|| {
                c.ulimits
                    .iter()
                    .map(|u| bollard::ResourcesUlimits {
                        name: Some(u.name.clone()),
                        soft: Some(u.soft),
                        hard: Some(u.hard),
                    })
                    .collect()
            }),
            open_stdin: c.open_stdin.then_some(true),
            ..Default::default()
        },
        healthcheck: c.healthcheck.as_ref().map(health),
    }
}

/// A task spec as Docker's `TaskSpec`.
pub fn task_spec(t: TaskSpec) -> types::TaskSpec {
    let r = t.resources.unwrap_or_default();
    let restart_policy = t.restart.map(|p| {
        let condition = match p.condition() {
            RestartCondition::Any => bollard::TaskSpecRestartPolicyConditionEnum::ANY,
            RestartCondition::OnFailure => bollard::TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
            RestartCondition::None => bollard::TaskSpecRestartPolicyConditionEnum::NONE,
        };
        bollard::TaskSpecRestartPolicy {
            condition: Some(condition),
            delay: p.delay,
            max_attempts: Some(count(p.max_attempts)),
            window: nonzero(p.window),
        }
    });
    let placement = t.placement.map(|p| bollard::TaskSpecPlacement {
        constraints: (!p.constraints.is_empty()).then_some(p.constraints),
        max_replicas: (p.max_replicas != 0).then(|| count(p.max_replicas)),
        preferences: (!p.spread_preferences.is_empty()).then(|| {
            p.spread_preferences
                .into_iter()
                .map(|d| bollard::TaskSpecPlacementPreferences {
                    spread: Some(bollard::TaskSpecPlacementSpread { spread_descriptor: Some(d) }),
                })
                .collect()
        }),
        platforms: None,
    });
    let networks = t
        .networks
        .into_iter()
        .map(|n| bollard::NetworkAttachmentConfig {
            target: Some(n.target),
            aliases: (!n.aliases.is_empty()).then_some(n.aliases),
            driver_opts: None,
        })
        .collect::<Vec<_>>();
    types::TaskSpec {
        spec: bollard::TaskSpec {
            restart_policy,
            placement,
            networks: (!networks.is_empty()).then_some(networks),
            force_update: Some(t.force_update),
            runtime: Some("container".into()),
            ..Default::default()
        },
        container_spec: Some(container_spec(t.container.unwrap_or_default())),
        resources: Some(types::TaskResources {
            resources: bollard::TaskSpecResources { limits: Some(limits(&r.limits)), ..Default::default() },
            reservations: Some(reservations(&r.reservations)),
        }),
    }
}

/// Running, desired and completed task counts of a service.
#[derive(Debug, Default, Clone, Copy)]
pub struct ServiceCounts {
    pub running: u64,
    pub desired: u64,
    pub completed: u64,
}

/// A service as Docker's `Service`; its status when `counts` are given.
pub fn service(s: &Service, counts: Option<ServiceCounts>) -> types::Service {
    let (version, created, updated) = object_version(&s.meta);
    let spec = service_spec(&s.spec.clone().unwrap_or_default());
    // The endpoint's ports are those the allocator gave (a port published as 0 has its
    // number there); until it has, what the spec asks for.
    let endpoint_spec = spec.spec.endpoint_spec.clone();
    let allocated = s.endpoint.as_ref().map(|e| e.ports.as_slice()).unwrap_or(&[]);
    let ports = if allocated.is_empty() {
        endpoint_spec.as_ref().and_then(|e| e.ports.clone())
    } else {
        Some(allocated.iter().map(port).collect())
    };
    types::Service {
        service: bollard::Service {
            id: Some(s.id.clone()),
            version: Some(version),
            created_at: Some(created),
            updated_at: Some(updated),
            endpoint: Some(bollard::ServiceEndpoint {
                ports,
                spec: endpoint_spec,
                virtual_ips: s.endpoint.as_ref().filter(|e| !e.virtual_ips.is_empty()).map(|e| {
                    e.virtual_ips
                        .iter()
                        .map(|v| bollard::ServiceEndpointVirtualIps {
                            network_id: Some(v.network_id.clone()),
                            addr: Some(v.addr.clone()),
                        })
                        .collect()
                }),
            }),
            service_status: counts.map(|c| bollard::ServiceServiceStatus {
                running_tasks: Some(c.running),
                desired_tasks: Some(c.desired),
                completed_tasks: Some(c.completed),
            }),
            ..Default::default()
        },
        spec: Some(spec),
        previous_spec: s.previous_spec.as_ref().map(service_spec),
    }
}

fn task_state(s: TaskState) -> bollard::TaskState {
    match s {
        TaskState::New => bollard::TaskState::NEW,
        TaskState::Pending => bollard::TaskState::PENDING,
        TaskState::Assigned => bollard::TaskState::ASSIGNED,
        TaskState::Accepted => bollard::TaskState::ACCEPTED,
        TaskState::Preparing => bollard::TaskState::PREPARING,
        TaskState::Ready => bollard::TaskState::READY,
        TaskState::Starting => bollard::TaskState::STARTING,
        TaskState::Running => bollard::TaskState::RUNNING,
        TaskState::Complete => bollard::TaskState::COMPLETE,
        TaskState::Shutdown => bollard::TaskState::SHUTDOWN,
        TaskState::Failed => bollard::TaskState::FAILED,
        TaskState::Rejected => bollard::TaskState::REJECTED,
        TaskState::Remove => bollard::TaskState::REMOVE,
        TaskState::Orphaned => bollard::TaskState::ORPHANED,
    }
}

/// A task as Docker's `Task`; `networks` are the store's, by ID, for its
/// `NetworksAttachments` (an attachment to a network that is gone is left out).
pub fn task(t: &Task, networks: &BTreeMap<String, shoal_proto::Network>) -> types::Task {
    let (version, created, updated) = object_version(&t.meta);
    let st = t.status.clone().unwrap_or_default();
    let status = bollard::TaskStatus {
        timestamp: Some(time(st.timestamp)),
        state: Some(task_state(st.state())),
        message: Some(st.message.clone()),
        err: text(&st.err),
        container_status: st.container.map(|c| bollard::ContainerStatus {
            container_id: Some(c.container_id),
            pid: Some(c.pid.into()),
            exit_code: Some(c.exit_code.into()),
        }),
        port_status: Some(bollard::PortStatus::default()),
    };
    types::Task {
        task: bollard::Task {
            id: Some(t.id.clone()),
            version: Some(version),
            created_at: Some(created),
            updated_at: Some(updated),
            name: Some(t.name().to_string()),
            labels: Some(HashMap::new()),
            service_id: Some(t.service_id.clone()),
            slot: Some(count(t.slot)),
            node_id: Some(t.node_id.clone()),
            status: Some(status),
            desired_state: Some(task_state(t.desired_state())),
            ..Default::default()
        },
        spec: Some(task_spec_of(t)),
        networks_attachments: (!t.networks.is_empty()).then(|| {
            t.networks
                .iter()
                .filter_map(|a| {
                    Some(types::NetworkAttachment {
                        network: super::swarm_network(networks.get(&a.network_id)?),
                        addresses: a.addresses.clone(),
                    })
                })
                .collect()
        }),
    }
}

/// A task's spec; a standalone container's attachment shows as Docker's
/// `NetworkAttachmentSpec` (naming the container) and no container spec.
fn task_spec_of(t: &Task) -> types::TaskSpec {
    let mut spec = task_spec(t.spec.clone().unwrap_or_default());
    if let Some(a) = &t.attachment {
        spec.container_spec = None;
        spec.spec.network_attachment_spec =
            Some(bollard::TaskSpecNetworkAttachmentSpec { container_id: Some(a.container_id.clone()) });
    }
    spec
}

// --------------------------------------------------------------- parsing

/// Reads a Docker `ServiceSpec`. An absent `Mode` or `Replicas` means one
/// replica, as Docker's daemon does.
pub fn parse_service_spec(v: &Value) -> Result<ServiceSpec> {
    service_spec_from(read(v, "ServiceSpec")?)
}

fn service_spec_from(s: types::ServiceSpec) -> Result<ServiceSpec> {
    let types::ServiceSpec { spec, task_template, rollback_config, depends_on } = s;
    let annotations = Annotations { name: spec.name.unwrap_or_default(), labels: spec.labels.unwrap_or_default() };
    let task = task_spec_from(task_template.unwrap_or_default())?;
    let mode = mode_from(spec.mode)?;
    let endpoint = spec.endpoint_spec.map(endpoint_from).transpose()?;
    let depends_on = depends_on
        .unwrap_or_default()
        .into_iter()
        .map(|d| {
            let condition = match d.condition {
                None | Some(types::DependencyCondition::ServiceStarted) => DependencyCondition::ServiceStarted,
                Some(types::DependencyCondition::ServiceHealthy) => DependencyCondition::ServiceHealthy,
                Some(types::DependencyCondition::ServiceCompletedSuccessfully) => {
                    DependencyCondition::ServiceCompletedSuccessfully
                }
            };
            ServiceDependency { service: d.service.unwrap_or_default(), condition: condition as i32 }
        })
        .collect();
    Ok(ServiceSpec {
        annotations: Some(annotations),
        task: Some(task),
        mode: Some(ServiceMode { mode: Some(mode) }),
        endpoint: endpoint.filter(|e| e.mode() != EndpointMode::Vip || !e.ports.is_empty()),
        update: spec.update_config.map(|u| update_config_from(u, "UpdateConfig")).transpose()?,
        rollback: rollback_config.map(|u| update_config_from(u, "RollbackConfig")).transpose()?,
        depends_on,
    })
}

fn update_config_from(u: bollard::ServiceSpecUpdateConfig, f: &str) -> Result<UpdateConfig> {
    use bollard::ServiceSpecUpdateConfigFailureActionEnum as A;
    use bollard::ServiceSpecUpdateConfigOrderEnum as O;
    let action = match u.failure_action {
        None | Some(A::EMPTY | A::PAUSE) => FailureAction::Pause,
        Some(A::CONTINUE) => FailureAction::Continue,
        Some(A::ROLLBACK) => FailureAction::Rollback,
    };
    let order = match u.order {
        None | Some(O::EMPTY | O::STOP_FIRST) => UpdateOrder::StopFirst,
        Some(O::START_FIRST) => UpdateOrder::StartFirst,
    };
    // Docker's type is a float32: the ratio is checked as Docker checks it.
    let ratio = u.max_failure_ratio.unwrap_or(0.0) as f32;
    if !(0.0..=1.0).contains(&ratio) {
        return err(format!("{f}.MaxFailureRatio"), "must be between 0 and 1");
    }
    Ok(UpdateConfig {
        parallelism: count_from(u.parallelism, &format!("{f}.Parallelism"))?.unwrap_or(0),
        delay: u.delay.unwrap_or(0),
        failure_action: action as i32,
        monitor: u.monitor.unwrap_or(0),
        max_failure_ratio: ratio,
        order: order as i32,
    })
}

fn mode_from(m: Option<bollard::ServiceSpecMode>) -> Result<service_mode::Mode> {
    let m = m.unwrap_or_default();
    let given = [m.replicated.is_some(), m.global.is_some(), m.replicated_job.is_some(), m.global_job.is_some()];
    if given.iter().filter(|g| **g).count() > 1 {
        return err("Mode", "must specify only one service mode");
    }
    if m.replicated_job.is_some() || m.global_job.is_some() {
        return err("Mode", "jobs (replicated-job, global-job) are not supported yet");
    }
    if m.global.is_some() {
        return Ok(service_mode::Mode::Global(GlobalService {}));
    }
    let replicas = count_from(m.replicated.and_then(|r| r.replicas), "Mode.Replicated.Replicas")?.unwrap_or(1);
    Ok(service_mode::Mode::Replicated(ReplicatedService { replicas }))
}

fn endpoint_from(e: bollard::EndpointSpec) -> Result<EndpointSpec> {
    use bollard::EndpointSpecModeEnum as M;
    let mode = match e.mode {
        None | Some(M::EMPTY | M::VIP) => EndpointMode::Vip,
        Some(M::DNSRR) => EndpointMode::Dnsrr,
    };
    let ports = e
        .ports
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, p)| port_from(p, &format!("EndpointSpec.Ports[{i}]")))
        .collect::<Result<Vec<_>>>()?;
    if mode == EndpointMode::Dnsrr && ports.iter().any(|p| p.publish_mode() == PublishMode::Ingress) {
        return err("EndpointSpec.Ports", "port published with ingress mode can't be used with dnsrr mode");
    }
    Ok(EndpointSpec { mode: mode as i32, ports })
}

fn port_number(p: Option<i64>, field: &str) -> Result<u32> {
    match p {
        None => Ok(0),
        Some(p) if p < 0 => err(field, "must not be negative"),
        Some(p) => {
            u32::try_from(p).ok().filter(|p| *p <= 65535).map_or_else(|| err(field, "a port is at most 65535"), Ok)
        }
    }
}

fn port_from(p: bollard::EndpointPortConfig, f: &str) -> Result<PortConfig> {
    use bollard::EndpointPortConfigProtocolEnum as P;
    use bollard::EndpointPortConfigPublishModeEnum as M;
    let protocol = match p.protocol {
        None | Some(P::EMPTY | P::TCP) => PortProtocol::Tcp,
        Some(P::UDP) => PortProtocol::Udp,
        Some(P::SCTP) => PortProtocol::Sctp,
    };
    let mode = match p.publish_mode {
        None | Some(M::EMPTY | M::INGRESS) => PublishMode::Ingress,
        Some(M::HOST) => PublishMode::Host,
    };
    let target = port_number(p.target_port, &format!("{f}.TargetPort"))?;
    if target == 0 {
        return err(format!("{f}.TargetPort"), "a target port between 1 and 65535 is required");
    }
    Ok(PortConfig {
        name: p.name.unwrap_or_default(),
        protocol: protocol as i32,
        target_port: target,
        published_port: port_number(p.published_port, &format!("{f}.PublishedPort"))?,
        publish_mode: mode as i32,
        proxy_protocol: false,
    })
}

fn limits_from(l: Option<bollard::Limit>) -> Option<Resources> {
    let l = l?;
    let r = Resources {
        nano_cpus: l.nano_cpus.unwrap_or(0),
        memory_bytes: l.memory_bytes.unwrap_or(0),
        pids: l.pids.unwrap_or(0),
    };
    // Docker renders empty `{}` limits; they mean "no limits".
    (r != Resources::default()).then_some(r)
}

fn reservations_from(r: Option<types::Reservations>) -> Option<Resources> {
    let r = r?;
    let r = Resources {
        nano_cpus: r.resources.nano_cpus.unwrap_or(0),
        memory_bytes: r.resources.memory_bytes.unwrap_or(0),
        pids: r.pids.unwrap_or(0),
    };
    (r != Resources::default()).then_some(r)
}

/// A file mode read from a signed field (Docker's type is a `uint32`).
fn file_mode(m: Option<i64>, field: &str) -> Result<u32> {
    match m {
        None => Ok(0),
        Some(m) if m < 0 => err(field, "must not be negative"),
        Some(m) => u32::try_from(m).map_or_else(|_| err(field, "is not a file mode: too large"), Ok),
    }
}

fn mount_from(m: bollard::Mount, f: &str) -> Result<Mount> {
    use bollard::MountTypeEnum as T;
    let kind = match m.typ {
        None | Some(T::EMPTY | T::VOLUME) => mount::Type::Volume,
        Some(T::BIND) => mount::Type::Bind,
        Some(T::TMPFS) => mount::Type::Tmpfs,
        Some(other @ (T::IMAGE | T::NPIPE | T::CLUSTER)) => {
            return err(format!("{f}.Type"), format!("\"{other}\" mounts are not supported: use bind, volume or tmpfs"))
        }
    };
    // Options for another type of mount than this one's mean nothing to it
    // (Docker's daemon refuses them when it starts the container; shoal's
    // agent would ignore them): they are not kept.
    let volume = m.volume_options.filter(|_| kind == mount::Type::Volume).unwrap_or_default();
    let tmpfs = m.tmpfs_options.filter(|_| kind == mount::Type::Tmpfs).unwrap_or_default();
    // Permission bits only: a larger mode is refused, not truncated or masked.
    let mode_field = format!("{f}.TmpfsOptions.Mode");
    let tmpfs_mode = file_mode(tmpfs.mode, &mode_field)?;
    if tmpfs_mode > 0o7777 {
        return err(mode_field, format!("{tmpfs_mode:#o} is beyond 0o7777: give only permission bits"));
    }
    let mut out = Mount {
        source: m.source.unwrap_or_default(),
        target: m.target.unwrap_or_default(),
        read_only: m.read_only.unwrap_or(false),
        tmpfs_size: tmpfs.size_bytes.unwrap_or(0),
        tmpfs_mode,
        volume_labels: volume.labels.unwrap_or_default(),
        volume_nocopy: volume.no_copy.unwrap_or(false),
        ..Mount::default()
    };
    out.set_type(kind);
    Ok(out)
}

/// A secret's or config's file; its mode is Docker's default, 0444, when not given.
fn file_target(name: Option<String>, uid: Option<String>, gid: Option<String>, mode: Option<u32>) -> FileTarget {
    FileTarget {
        name: name.unwrap_or_default(),
        uid: uid.unwrap_or_default(),
        gid: gid.unwrap_or_default(),
        mode: mode.unwrap_or(0o444),
    }
}

fn container_spec_from(c: types::ContainerSpec) -> Result<ContainerSpec> {
    let f = |k: &str| format!("TaskTemplate.ContainerSpec.{k}");
    let types::ContainerSpec { spec: c, healthcheck } = c;
    let healthcheck = match healthcheck.or(c.health_check) {
        None => None,
        Some(h) => Some(HealthConfig {
            test: h.test.unwrap_or_default(),
            interval: h.interval.unwrap_or(0),
            timeout: h.timeout.unwrap_or(0),
            retries: count_from(h.retries, &f("Healthcheck.Retries"))?.unwrap_or(0),
            start_period: h.start_period.unwrap_or(0),
            start_interval: h.start_interval.unwrap_or(0),
        }),
    };
    let mounts = c
        .mounts
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, m)| mount_from(m, &f(&format!("Mounts[{i}]"))))
        .collect::<Result<Vec<_>>>()?;
    Ok(ContainerSpec {
        image: c.image.unwrap_or_default(),
        labels: c.labels.unwrap_or_default(),
        command: c.command.unwrap_or_default(),
        args: c.args.unwrap_or_default(),
        hostname: c.hostname.unwrap_or_default(),
        env: c.env.unwrap_or_default(),
        dir: c.dir.unwrap_or_default(),
        user: c.user.unwrap_or_default(),
        stop_signal: c.stop_signal.unwrap_or_default(),
        stop_grace_period: c.stop_grace_period,
        tty: c.tty.unwrap_or(false),
        read_only: c.read_only.unwrap_or(false),
        init: c.init,
        mounts,
        secrets: c
            .secrets
            .unwrap_or_default()
            .into_iter()
            .map(|r| SecretReference {
                secret_id: r.secret_id.unwrap_or_default(),
                secret_name: r.secret_name.unwrap_or_default(),
                file: r.file.map(|t| file_target(t.name, t.uid, t.gid, t.mode)),
            })
            .collect(),
        configs: c
            .configs
            .unwrap_or_default()
            .into_iter()
            .map(|r| ConfigReference {
                config_id: r.config_id.unwrap_or_default(),
                config_name: r.config_name.unwrap_or_default(),
                file: r.file.map(|t| file_target(t.name, t.uid, t.gid, t.mode)),
            })
            .collect(),
        healthcheck,
        cap_add: c.capability_add.unwrap_or_default(),
        cap_drop: c.capability_drop.unwrap_or_default(),
        dns: c.dns_config.map(|d| DnsConfig {
            nameservers: d.nameservers.unwrap_or_default(),
            search: d.search.unwrap_or_default(),
            options: d.options.unwrap_or_default(),
        }),
        hosts: c.hosts.unwrap_or_default(),
        sysctls: c.sysctls.unwrap_or_default(),
        ulimits: c
            .ulimits
            .unwrap_or_default()
            .into_iter()
            .map(|u| Ulimit { name: u.name.unwrap_or_default(), soft: u.soft.unwrap_or(0), hard: u.hard.unwrap_or(0) })
            .collect(),
        open_stdin: c.open_stdin.unwrap_or(false),
    })
}

fn task_spec_from(t: types::TaskSpec) -> Result<TaskSpec> {
    let types::TaskSpec { spec: t, container_spec, resources } = t;
    let container = container_spec_from(container_spec.unwrap_or_default())?;
    let (limits, reservations) = match resources {
        None => (None, None),
        Some(r) => (limits_from(r.resources.limits), reservations_from(r.reservations)),
    };
    let resources =
        (limits.is_some() || reservations.is_some()).then_some(ResourceRequirements { limits, reservations });
    let restart = match t.restart_policy {
        None => None,
        Some(p) => {
            use bollard::TaskSpecRestartPolicyConditionEnum as C;
            let condition = match p.condition {
                None | Some(C::EMPTY | C::ANY) => RestartCondition::Any,
                Some(C::ON_FAILURE) => RestartCondition::OnFailure,
                Some(C::NONE) => RestartCondition::None,
            };
            Some(RestartPolicy {
                condition: condition as i32,
                delay: p.delay,
                max_attempts: count_from(p.max_attempts, "TaskTemplate.RestartPolicy.MaxAttempts")?.unwrap_or(0),
                window: p.window.unwrap_or(0),
            })
        }
    };
    let placement = match t.placement {
        None => None,
        Some(p) => Some(Placement {
            constraints: p.constraints.unwrap_or_default(),
            max_replicas: count_from(p.max_replicas, "TaskTemplate.Placement.MaxReplicas")?.unwrap_or(0),
            spread_preferences: p
                .preferences
                .unwrap_or_default()
                .into_iter()
                .map(|p| p.spread.and_then(|s| s.spread_descriptor).unwrap_or_default())
                .collect(),
        }),
    };
    let networks = t
        .networks
        .unwrap_or_default()
        .into_iter()
        .map(|n| NetworkAttachmentConfig {
            target: n.target.unwrap_or_default(),
            aliases: n.aliases.unwrap_or_default(),
        })
        .collect();
    Ok(TaskSpec {
        container: Some(container),
        resources,
        restart,
        placement,
        networks,
        force_update: t.force_update.unwrap_or(0),
    })
}
