//! The compose model to the stack's objects, as `docker stack deploy` builds them
//! (docker/cli `cli/compose/convert`): names `<stack>_<name>`, the stack namespace label on
//! every object, entrypoint → command, command → args, sorted `KEY=VALUE` environment,
//! durations in ns, mounts, ports, health checks, secrets and configs (their data read from
//! the files and variables the compose file names), networks (`<stack>_default` for services
//! that name none) and `depends_on`.
//!
//! The same model always gives the same objects, in the same order, so a repeated deploy
//! changes nothing.

use shoal_proto::{
    mount, service_mode, Annotations, ConfigReference, ConfigSpec, ContainerSpec, DependencyCondition, DnsConfig,
    EndpointMode, EndpointSpec, FailureAction, FileTarget, GlobalService, HealthConfig, IpamConfig, Mount,
    NetworkAttachmentConfig, NetworkSpec, Placement, PortConfig, PortProtocol, PublishMode, ReplicatedService,
    ResourceRequirements, Resources, RestartCondition, RestartPolicy, SecretReference, SecretSpec, ServiceDependency,
    ServiceMode, ServiceSpec, TaskSpec, Ulimit, UpdateConfig, UpdateOrder, MAX_SECRET_SIZE, STACK_NAMESPACE_LABEL,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::model::{self, Compose, FileObject, Restart, Service};
use crate::{External, Stack};

/// Label on a service naming the image as the compose file wrote it (before any pinning).
pub(crate) const STACK_IMAGE_LABEL: &str = "com.docker.stack.image";

/// The network a service joins when it names none.
const DEFAULT_NETWORK: &str = "default";

/// Why the model cannot become a stack: the dotted path at fault (from the root of the
/// compose file) and the reason.
#[derive(Debug)]
pub(crate) struct Unsupported {
    pub keys: Vec<String>,
    pub message: String,
}

impl Unsupported {
    fn at(keys: &[&str], message: String) -> Unsupported {
        Unsupported { keys: keys.iter().map(|k| (*k).to_owned()).collect(), message }
    }
}

/// Converts `compose` into the stack `name`; `vars` gives the values of secrets and configs
/// read from `environment:`.
pub(crate) fn stack(compose: &Compose, name: &str, vars: &BTreeMap<String, String>) -> Result<Stack, Unsupported> {
    let services = compose
        .services
        .iter()
        .map(|(service_name, service)| service_spec(compose, service_name, service, name))
        .collect::<Result<_, _>>()?;
    let mut external = External::default();
    let mut secrets = Vec::new();
    for (key, object) in &compose.secrets {
        let object_name = object_name(key, object.name.as_deref(), object.external, name);
        if object.external {
            external.secrets.push(object_name);
            continue;
        }
        let (labels, data) = file_object("secrets", key, object, name, vars)?;
        secrets.push(SecretSpec { annotations: Some(Annotations { name: object_name, labels }), data });
    }
    let mut configs = Vec::new();
    for (key, object) in &compose.configs {
        let object_name = object_name(key, object.name.as_deref(), object.external, name);
        if object.external {
            external.configs.push(object_name);
            continue;
        }
        let (labels, data) = file_object("configs", key, object, name, vars)?;
        configs.push(ConfigSpec { annotations: Some(Annotations { name: object_name, labels }), data });
    }
    let mut networks = Vec::new();
    for key in used_networks(compose) {
        let declared = compose.networks.get(&key).cloned().unwrap_or_default();
        let network_name = network_name(compose, &key, name);
        if declared.external {
            external.networks.push(network_name);
            continue;
        }
        let mut labels: HashMap<String, String> = declared.labels.clone().into_iter().collect();
        labels.insert(STACK_NAMESPACE_LABEL.to_owned(), name.to_owned());
        let ipam = declared
            .ipam
            .as_ref()
            .map(|ipam| {
                ipam.config
                    .iter()
                    .map(|pool| IpamConfig {
                        subnet: pool.subnet.clone().unwrap_or_default(),
                        gateway: pool.gateway.clone().unwrap_or_default(),
                        ip_range: pool.ip_range.clone().unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        networks.push(NetworkSpec {
            annotations: Some(Annotations { name: network_name, labels }),
            driver: declared.driver.clone().unwrap_or_else(|| "overlay".to_owned()),
            internal: declared.internal,
            attachable: declared.attachable,
            driver_opts: declared.driver_opts.clone().into_iter().collect(),
            ipam,
            ingress: false,
        });
    }
    networks.sort_by(|a, b| a.annotations.as_ref().map(|a| &a.name).cmp(&b.annotations.as_ref().map(|a| &a.name)));
    secrets.sort_by(|a, b| a.annotations.as_ref().map(|a| &a.name).cmp(&b.annotations.as_ref().map(|a| &a.name)));
    configs.sort_by(|a, b| a.annotations.as_ref().map(|a| &a.name).cmp(&b.annotations.as_ref().map(|a| &a.name)));
    for list in [&mut external.networks, &mut external.secrets, &mut external.configs] {
        list.sort();
        list.dedup();
    }
    Ok(Stack { name: name.to_owned(), services, networks, secrets, configs, external })
}

/// The compose keys of the networks the services join (`default` for those that name none).
fn used_networks(compose: &Compose) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for service in compose.services.values() {
        if service.network_mode.is_some() {
            continue;
        }
        if service.networks.is_empty() {
            used.insert(DEFAULT_NETWORK.to_owned());
        }
        used.extend(service.networks.keys().cloned());
    }
    used
}

/// The cluster name of a secret or config: its `name:` (as written, like an external one's
/// key), or `<stack>_<key>`.
/// The store name of the secret or config a service reference names.
fn reference_name(
    declared: &BTreeMap<String, crate::model::FileObject>,
    r: &crate::model::FileRef,
    stack: &str,
) -> String {
    let d = declared.get(&r.source);
    object_name(&r.source, d.and_then(|d| d.name.as_deref()), d.is_some_and(|d| d.external), stack)
}

fn object_name(key: &str, name: Option<&str>, external: bool, stack: &str) -> String {
    match name {
        Some(name) => name.to_owned(),
        None if external => key.to_owned(),
        None => format!("{stack}_{key}"),
    }
}

/// The labels and data of a secret or config from `file:`, `environment:` or `content:`.
fn file_object(
    kind: &str,
    key: &str,
    object: &FileObject,
    stack: &str,
    vars: &BTreeMap<String, String>,
) -> Result<(HashMap<String, String>, Vec<u8>), Unsupported> {
    let singular = kind.trim_end_matches('s');
    let (data, at) = if let Some(file) = &object.file {
        let data =
            crate::read::read_bounded(std::path::Path::new(file), MAX_SECRET_SIZE as u64, &format!("a {singular}"))
                .map_err(|e| {
                    let next = if e.kind() == std::io::ErrorKind::FileTooLarge {
                        "name a smaller file"
                    } else {
                        "create it or fix the path"
                    };
                    Unsupported::at(
                        &[kind, key, "file"],
                        format!("cannot read the {singular} file {file}: {e}; {next}"),
                    )
                })?;
        (data, "file")
    } else if let Some(variable) = &object.environment {
        let value = vars.get(variable).ok_or_else(|| {
            Unsupported::at(
                &[kind, key, "environment"],
                format!("the variable {variable} is not set: export it before deploying"),
            )
        })?;
        (value.clone().into_bytes(), "environment")
    } else if let Some(content) = &object.content {
        (content.clone().into_bytes(), "content")
    } else {
        return Err(Unsupported::at(
            &[kind, key],
            format!("the {singular} needs one of file, environment or content (or external: true)"),
        ));
    };
    if data.len() > MAX_SECRET_SIZE {
        return Err(Unsupported::at(
            &[kind, key, at],
            format!("the {singular} is {} bytes; at most {MAX_SECRET_SIZE} (500 KiB) are allowed", data.len()),
        ));
    }
    let mut labels: HashMap<String, String> = object.labels.clone().into_iter().collect();
    labels.insert(STACK_NAMESPACE_LABEL.to_owned(), stack.to_owned());
    Ok((labels, data))
}

fn nanos(d: model::Duration) -> i64 {
    i64::try_from(d.0).unwrap_or(i64::MAX)
}

fn service_spec(compose: &Compose, name: &str, service: &Service, stack: &str) -> Result<ServiceSpec, Unsupported> {
    let namespace = (STACK_NAMESPACE_LABEL.to_owned(), stack.to_owned());
    let image = service.image.clone().unwrap_or_default();
    let deploy = service.deploy.clone().unwrap_or_default();

    let mut service_labels: HashMap<String, String> = deploy.labels.clone().into_iter().collect();
    service_labels.extend([namespace.clone(), (STACK_IMAGE_LABEL.to_owned(), image.clone())]);
    let mut container_labels: HashMap<String, String> = service.labels.clone().into_iter().collect();
    container_labels.extend([namespace]);

    let mode = match deploy.mode.unwrap_or(model::Mode::Replicated) {
        model::Mode::Replicated => {
            service_mode::Mode::Replicated(ReplicatedService { replicas: deploy.replicas.unwrap_or(1) })
        }
        model::Mode::Global => service_mode::Mode::Global(GlobalService {}),
        job @ (model::Mode::ReplicatedJob | model::Mode::GlobalJob) => {
            let job = if job == model::Mode::ReplicatedJob { "replicated-job" } else { "global-job" };
            return Err(Unsupported::at(
                &["services", name, "deploy", "mode"],
                format!("{job:?} mode is not supported yet: use \"replicated\" or \"global\""),
            ));
        }
    };

    let dns =
        (!service.dns.is_empty() || !service.dns_search.is_empty() || !service.dns_opt.is_empty()).then(|| DnsConfig {
            nameservers: service.dns.clone(),
            search: service.dns_search.clone(),
            options: service.dns_opt.clone(),
        });
    let container = ContainerSpec {
        image,
        labels: container_labels,
        command: service.entrypoint.clone().map(|c| c.0).unwrap_or_default(),
        args: service.command.clone().map(|c| c.0).unwrap_or_default(),
        hostname: service.hostname.clone().unwrap_or_default(),
        env: environment(service),
        dir: service.working_dir.clone().unwrap_or_default(),
        user: service.user.clone().unwrap_or_default(),
        stop_signal: service.stop_signal.clone().unwrap_or_default(),
        stop_grace_period: service.stop_grace_period.map(nanos),
        tty: service.tty,
        read_only: service.read_only,
        init: service.init,
        mounts: mounts(compose, name, service, stack)?,
        secrets: service
            .secrets
            .iter()
            .map(|r| SecretReference {
                secret_id: String::new(),
                secret_name: reference_name(&compose.secrets, r, stack),
                file: Some(file_target(r)),
            })
            .collect(),
        configs: service
            .configs
            .iter()
            .map(|r| ConfigReference {
                config_id: String::new(),
                config_name: reference_name(&compose.configs, r, stack),
                file: Some(file_target(r)),
            })
            .collect(),
        healthcheck: service.healthcheck.as_ref().map(healthcheck),
        cap_add: service.cap_add.clone(),
        cap_drop: service.cap_drop.clone(),
        dns,
        hosts: service.extra_hosts.iter().map(|(host, ip)| format!("{ip} {host}")).collect(),
        sysctls: service.sysctls.clone().into_iter().collect(),
        ulimits: service
            .ulimits
            .iter()
            .map(|(name, u)| Ulimit { name: name.clone(), soft: u.soft, hard: u.hard })
            .collect(),
        open_stdin: service.stdin_open,
    };

    let resources = deploy.resources.as_ref().map(|r| ResourceRequirements {
        limits: r.limits.as_ref().map(resources),
        reservations: r.reservations.as_ref().map(resources),
    });

    let placement = deploy.placement.as_ref().map(|p| Placement {
        constraints: p.constraints.clone(),
        max_replicas: p.max_replicas_per_node.unwrap_or(0),
        spread_preferences: p.preferences.iter().map(|p| p.spread.clone()).collect(),
    });

    let mut networks: Vec<NetworkAttachmentConfig> = Vec::new();
    if service.network_mode.is_none() {
        let mut attached: Vec<(&str, Vec<String>)> =
            service.networks.iter().map(|(key, a)| (key.as_str(), a.aliases.clone())).collect();
        if attached.is_empty() {
            attached.push((DEFAULT_NETWORK, Vec::new()));
        }
        for (key, mut aliases) in attached {
            if !aliases.iter().any(|a| a == name) {
                aliases.push(name.to_owned());
            }
            networks.push(NetworkAttachmentConfig { target: network_name(compose, key, stack), aliases });
        }
    }
    networks.sort_by(|a, b| a.target.cmp(&b.target));

    let endpoint_mode = match deploy.endpoint_mode {
        Some(model::EndpointMode::Dnsrr) => EndpointMode::Dnsrr,
        Some(model::EndpointMode::Vip) | None => EndpointMode::Vip,
    };
    let ports = ports(name, service)?;
    let endpoint = (deploy.endpoint_mode.is_some() || !ports.is_empty())
        .then(|| EndpointSpec { mode: endpoint_mode.into(), ports });

    Ok(ServiceSpec {
        annotations: Some(Annotations { name: format!("{stack}_{name}"), labels: service_labels }),
        task: Some(TaskSpec {
            container: Some(container),
            resources,
            restart: restart_policy(service, &deploy),
            placement,
            networks,
            force_update: 0,
        }),
        mode: Some(ServiceMode { mode: Some(mode) }),
        endpoint,
        update: deploy.update_config.as_ref().map(update_config),
        rollback: deploy.rollback_config.as_ref().map(update_config),
        depends_on: service
            .depends_on
            .iter()
            .map(|(dependency, d)| ServiceDependency {
                service: format!("{stack}_{dependency}"),
                condition: match d.condition {
                    model::Condition::ServiceStarted => DependencyCondition::ServiceStarted,
                    model::Condition::ServiceHealthy => DependencyCondition::ServiceHealthy,
                    model::Condition::ServiceCompletedSuccessfully => DependencyCondition::ServiceCompletedSuccessfully,
                }
                .into(),
            })
            .collect(),
    })
}

/// Where a secret or config goes: the target (default: the source's name), as root, 0444.
fn file_target(r: &model::FileRef) -> FileTarget {
    FileTarget {
        name: r.target.clone().unwrap_or_else(|| r.source.clone()),
        uid: r.uid.clone().unwrap_or_else(|| "0".to_owned()),
        gid: r.gid.clone().unwrap_or_else(|| "0".to_owned()),
        mode: r.mode.map_or(0o444, |m| m.0),
    }
}

/// `volumes:` as mounts: binds (absolute host paths), named volumes (`<stack>_<name>`, or
/// the top-level volume's `name:`, labelled with the stack), anonymous volumes and tmpfs.
fn mounts(compose: &Compose, name: &str, service: &Service, stack: &str) -> Result<Vec<Mount>, Unsupported> {
    service
        .volumes
        .iter()
        .map(|m| {
            let mut out = Mount { target: m.target.clone(), read_only: m.read_only, ..Mount::default() };
            match m.kind {
                model::MountKind::Bind => {
                    out.set_type(mount::Type::Bind);
                    out.source = m.source.clone().unwrap_or_default();
                }
                model::MountKind::Volume => {
                    out.set_type(mount::Type::Volume);
                    out.volume_nocopy = m.volume.as_ref().is_some_and(|v| v.nocopy);
                    if let Some(source) = &m.source {
                        let declared = compose.volumes.get(source).cloned().unwrap_or_default();
                        out.source = match (&declared.name, declared.external) {
                            (Some(n), _) => n.clone(),
                            (None, true) => source.clone(),
                            (None, false) => format!("{stack}_{source}"),
                        };
                        // The key and `name:` were checked at load; the stack's prefix can
                        // still make the whole too long.
                        shoal_proto::names::check_volume_name(&out.source)
                            .map_err(|why| Unsupported::at(&["volumes", source], format!("in stack {stack}: {why}")))?;
                        if !declared.external {
                            let mut labels: HashMap<String, String> = declared.labels.into_iter().collect();
                            labels.insert(STACK_NAMESPACE_LABEL.to_owned(), stack.to_owned());
                            out.volume_labels = labels;
                        }
                    }
                }
                model::MountKind::Tmpfs => {
                    out.set_type(mount::Type::Tmpfs);
                    if let Some(t) = &m.tmpfs {
                        out.tmpfs_size = t.size.map_or(0, |s| i64::try_from(s.0).unwrap_or(i64::MAX));
                        out.tmpfs_mode = t.mode.map_or(0, |m| m.0);
                    }
                }
                other => {
                    return Err(Unsupported::at(
                        &["services", name, "volumes"],
                        format!(
                            "mount type {:?} is not supported: use bind, volume or tmpfs",
                            format!("{other:?}").to_lowercase()
                        ),
                    ))
                }
            }
            Ok(out)
        })
        .collect()
}

/// `ports:` sorted by published port, then target and protocol, as docker/cli sorts them.
fn ports(name: &str, service: &Service) -> Result<Vec<PortConfig>, Unsupported> {
    let mut out = Vec::new();
    for port in &service.ports {
        let published = match port.published.as_deref() {
            None => 0,
            Some(text) => text.parse::<u32>().map_err(|_| {
                Unsupported::at(
                    &["services", name, "ports"],
                    format!(
                        "published port range {text:?} for target {} is not supported in a swarm: publish one port, \
                         or map a range to a range of the same size (\"8000-8001:80-81\")",
                        port.target
                    ),
                )
            })?,
        };
        out.push(PortConfig {
            name: port.name.clone().unwrap_or_default(),
            protocol: match port.protocol {
                model::Protocol::Tcp => PortProtocol::Tcp,
                model::Protocol::Udp => PortProtocol::Udp,
                model::Protocol::Sctp => PortProtocol::Sctp,
            }
            .into(),
            target_port: u32::from(port.target),
            published_port: published,
            publish_mode: match port.mode {
                model::PortMode::Ingress => PublishMode::Ingress,
                model::PortMode::Host => PublishMode::Host,
            }
            .into(),
            proxy_protocol: false,
        });
    }
    out.sort_by_key(|p| (p.published_port, p.target_port, p.protocol));
    Ok(out)
}

/// `healthcheck:`; `disable: true` is `["NONE"]`, as Docker writes it.
fn healthcheck(h: &model::Healthcheck) -> HealthConfig {
    if h.disable {
        return HealthConfig { test: vec!["NONE".to_owned()], ..HealthConfig::default() };
    }
    HealthConfig {
        test: h.test.clone().unwrap_or_default(),
        interval: h.interval.map_or(0, nanos),
        timeout: h.timeout.map_or(0, nanos),
        retries: h.retries.unwrap_or(0),
        start_period: h.start_period.map_or(0, nanos),
        start_interval: h.start_interval.map_or(0, nanos),
    }
}

/// `update_config` / `rollback_config`; parallelism is 1 when the block leaves it out.
fn update_config(u: &model::UpdateConfig) -> UpdateConfig {
    UpdateConfig {
        parallelism: u.parallelism.unwrap_or(1),
        delay: u.delay.map_or(0, nanos),
        failure_action: match u.failure_action {
            Some(model::FailureAction::Continue) => FailureAction::Continue,
            Some(model::FailureAction::Rollback) => FailureAction::Rollback,
            Some(model::FailureAction::Pause) | None => FailureAction::Pause,
        }
        .into(),
        monitor: u.monitor.map_or(0, nanos),
        max_failure_ratio: u.max_failure_ratio.unwrap_or(0.0) as f32,
        order: match u.order {
            Some(model::UpdateOrder::StartFirst) => UpdateOrder::StartFirst,
            Some(model::UpdateOrder::StopFirst) | None => UpdateOrder::StopFirst,
        }
        .into(),
    }
}

/// The cluster name of network `key`: its `name:`, or `<stack>_<key>`.
fn network_name(compose: &Compose, key: &str, stack: &str) -> String {
    match compose.networks.get(key).and_then(|n| n.name.clone()) {
        Some(name) => name,
        None => format!("{stack}_{key}"),
    }
}

fn resources(values: &model::ResourceValues) -> Resources {
    Resources {
        nano_cpus: values.cpus.map_or(0, |c| i64::try_from(c.0).unwrap_or(i64::MAX)),
        memory_bytes: values.memory.map_or(0, |m| i64::try_from(m.0).unwrap_or(i64::MAX)),
        pids: values.pids.unwrap_or(0),
    }
}

/// `deploy.restart_policy`, or else the service's `restart:` as Docker maps it.
fn restart_policy(service: &Service, deploy: &model::Deploy) -> Option<RestartPolicy> {
    if let Some(policy) = &deploy.restart_policy {
        let condition = match policy.condition {
            Some(model::RestartCondition::None) => RestartCondition::None,
            Some(model::RestartCondition::OnFailure) => RestartCondition::OnFailure,
            Some(model::RestartCondition::Any) | None => RestartCondition::Any,
        };
        return Some(RestartPolicy {
            condition: condition.into(),
            delay: policy.delay.map(nanos),
            max_attempts: policy.max_attempts.unwrap_or(0),
            window: policy.window.map_or(0, nanos),
        });
    }
    let (condition, max_attempts) = match service.restart? {
        Restart::No => (RestartCondition::None, 0),
        Restart::Always | Restart::UnlessStopped => (RestartCondition::Any, 0),
        Restart::OnFailure(attempts) => (RestartCondition::OnFailure, attempts.unwrap_or(0)),
    };
    Some(RestartPolicy { condition: condition.into(), delay: None, max_attempts, window: 0 })
}

/// `KEY=VALUE` strings sorted as strings (as docker/cli sorts them); a variable still
/// without a value (the deploying user has none) is left out.
fn environment(service: &Service) -> Vec<String> {
    let mut env: Vec<String> = service
        .environment
        .iter()
        .filter_map(|(name, value)| value.as_ref().map(|value| format!("{name}={value}")))
        .collect();
    env.sort();
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn service(image: &str) -> Service {
        Service { image: Some(image.to_owned()), ..Service::default() }
    }

    fn compose(services: Vec<(&str, Service)>) -> Compose {
        Compose { services: services.into_iter().map(|(n, s)| (n.to_owned(), s)).collect(), ..Compose::default() }
    }

    fn convert(compose: &Compose) -> Stack {
        stack(compose, "app", &BTreeMap::new()).unwrap_or_else(|e| panic!("{}", e.message))
    }

    #[test]
    fn names_labels_and_mode() {
        let compose = compose(vec![(
            "web",
            Service {
                entrypoint: Some(model::Command(vec!["/bin/sh".into(), "-c".into()])),
                command: Some(model::Command(vec!["echo hi".into()])),
                deploy: Some(model::Deploy { replicas: Some(3), ..model::Deploy::default() }),
                ..service("web:1")
            },
        )]);
        let stack = convert(&compose);
        assert_eq!(stack.name, "app");
        let spec = &stack.services[0];
        let annotations = spec.annotations.as_ref().expect("annotations");
        assert_eq!(annotations.name, "app_web");
        assert_eq!(
            annotations.labels,
            HashMap::from([
                (STACK_NAMESPACE_LABEL.to_owned(), "app".to_owned()),
                (STACK_IMAGE_LABEL.to_owned(), "web:1".to_owned()),
            ])
        );
        let container = spec.task.as_ref().and_then(|t| t.container.as_ref()).expect("container");
        assert_eq!(container.image, "web:1");
        assert_eq!(container.labels, HashMap::from([(STACK_NAMESPACE_LABEL.to_owned(), "app".to_owned())]));
        assert_eq!(container.command, ["/bin/sh", "-c"]);
        assert_eq!(container.args, ["echo hi"]);
        assert_eq!(
            spec.mode,
            Some(ServiceMode { mode: Some(service_mode::Mode::Replicated(ReplicatedService { replicas: 3 })) })
        );
    }

    #[test]
    fn services_sorted_by_name() {
        let compose = compose(vec![("web", service("x")), ("db", service("x")), ("cache", service("x"))]);
        let names: Vec<String> =
            convert(&compose).services.iter().filter_map(|s| s.annotations.as_ref().map(|a| a.name.clone())).collect();
        assert_eq!(names, ["app_cache", "app_db", "app_web"]);
    }

    #[test]
    fn environment_sorted_without_unset_variables() {
        let compose = compose(vec![(
            "web",
            Service {
                environment: BTreeMap::from([
                    ("A_B".to_owned(), Some("2".to_owned())),
                    ("A".to_owned(), Some("1".to_owned())),
                    ("A.B".to_owned(), Some("3".to_owned())),
                    ("UNSET".to_owned(), None),
                    ("EMPTY".to_owned(), Some(String::new())),
                ]),
                ..service("x")
            },
        )]);
        let stack = convert(&compose);
        let env = &stack.services[0].task.as_ref().and_then(|t| t.container.as_ref()).expect("container").env;
        assert_eq!(env, &["A.B=3", "A=1", "A_B=2", "EMPTY="]);
    }

    #[test]
    fn restart_falls_back_to_the_service_restart() {
        let with = |restart| Service { restart: Some(restart), ..service("x") };
        let policy = |s: &Service| restart_policy(s, &model::Deploy::default());
        let on_failure = policy(&with(Restart::OnFailure(Some(3)))).expect("a policy");
        assert_eq!((on_failure.condition(), on_failure.max_attempts), (RestartCondition::OnFailure, 3));
        assert_eq!(policy(&with(Restart::No)).map(|p| p.condition()), Some(RestartCondition::None));
        assert_eq!(policy(&with(Restart::Always)).map(|p| p.condition()), Some(RestartCondition::Any));
        assert_eq!(policy(&service("x")), None);
    }

    #[test]
    fn jobs_are_refused() {
        let compose = compose(vec![(
            "once",
            Service {
                deploy: Some(model::Deploy { mode: Some(model::Mode::ReplicatedJob), ..model::Deploy::default() }),
                ..service("x")
            },
        )]);
        let err = stack(&compose, "app", &BTreeMap::new()).expect_err("unsupported");
        assert_eq!(err.keys, ["services", "once", "deploy", "mode"]);
    }

    fn load(yaml: &str, files: &[(&str, &str)], vars: &[(&str, &str)]) -> Result<Stack, crate::Error> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).expect("write a file");
        }
        let compose = dir.path().join("compose.yml");
        std::fs::write(&compose, yaml).expect("write the compose file");
        let options = crate::LoadOptions {
            files: vec![compose],
            env: vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..crate::LoadOptions::default()
        };
        crate::load_project(&options)?.to_stack("app").map(|l| l.stack)
    }

    fn container_of(stack: &Stack, i: usize) -> &ContainerSpec {
        stack.services[i].task.as_ref().and_then(|t| t.container.as_ref()).expect("a container spec")
    }

    #[test]
    fn secrets_and_configs_become_objects_and_references() {
        let stack = load(
            "services:\n  web:\n    image: x\n    secrets:\n      - pw\n      - {source: key, target: api, uid: '5', mode: 0400}\n    \
             configs: [conf]\nsecrets:\n  pw: {file: ./pw.txt, labels: {a: b}}\n  key: {environment: KEY}\n  \
             shared: {external: true}\nconfigs:\n  conf: {file: ./c.toml, name: fixed_name}\n",
            &[("pw.txt", "hunter2"), ("c.toml", "x = 1")],
            &[("KEY", "from-env")],
        )
        .expect("valid");
        let names: Vec<&str> =
            stack.secrets.iter().filter_map(|s| s.annotations.as_ref()).map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["app_key", "app_pw"]);
        assert_eq!(stack.secrets[0].data, b"from-env");
        assert_eq!(stack.secrets[1].data, b"hunter2");
        let labels = &stack.secrets[1].annotations.as_ref().expect("annotations").labels;
        assert_eq!(labels.get("a").map(String::as_str), Some("b"));
        assert_eq!(labels.get(STACK_NAMESPACE_LABEL).map(String::as_str), Some("app"));
        assert_eq!(stack.external.secrets, ["shared"]);
        assert_eq!(stack.configs[0].annotations.as_ref().map(|a| a.name.as_str()), Some("fixed_name"));
        let c = container_of(&stack, 0);
        assert_eq!(c.secrets[0].secret_name, "app_pw");
        assert_eq!(
            c.secrets[0].file,
            Some(FileTarget { name: "pw".into(), uid: "0".into(), gid: "0".into(), mode: 0o444 })
        );
        assert_eq!(
            c.secrets[1].file,
            Some(FileTarget { name: "api".into(), uid: "5".into(), gid: "0".into(), mode: 0o400 })
        );
        assert_eq!(c.configs[0].config_name, "fixed_name");
    }

    #[test]
    fn secret_sources_that_are_missing_are_errors_at_their_key() {
        let err = load("services:\n  web: {image: x, secrets: [pw]}\nsecrets:\n  pw: {file: ./nope}\n", &[], &[])
            .expect_err("missing file");
        let text = err.to_string();
        assert!(text.contains("compose.yml:4:") && text.contains("secrets.pw.file") && text.contains("nope"), "{text}");
        let err =
            load("services:\n  web: {image: x, secrets: [pw]}\nsecrets:\n  pw: {environment: UNSET_X}\n", &[], &[])
                .expect_err("unset variable");
        assert!(err.to_string().contains("UNSET_X is not set"), "{err}");
    }

    #[test]
    fn endless_secret_and_config_files_stop_at_the_limit() {
        for kind in ["secrets", "configs"] {
            let yaml = format!("services:\n  web: {{image: x, {kind}: [z]}}\n{kind}:\n  z: {{file: /dev/zero}}\n");
            let text = load(&yaml, &[], &[]).expect_err("endless file").to_string();
            assert!(text.contains(&format!("{kind}.z.file")) && text.contains("500 KiB (512000 bytes)"), "{text}");
        }
    }

    #[test]
    fn networks_volumes_ports_health_and_dependencies() {
        let stack = load(
            "services:\n  web:\n    image: x\n    ports: ['8080:80', {target: 53, published: 5353, protocol: udp, mode: host}]\n    \
             volumes: [data:/data, /srv:/srv:ro, {type: tmpfs, target: /t, tmpfs: {size: 1m}}]\n    \
             healthcheck: {test: curl -f localhost, interval: 2s, retries: 4}\n    depends_on: {db: {condition: service_healthy}}\n    \
             networks: {front: {aliases: [w]}}\n    deploy: {update_config: {delay: 5s, order: start-first}}\n  \
             db:\n    image: y\n    healthcheck: {disable: true}\nnetworks:\n  front: {}\nvolumes:\n  data: {}\n",
            &[],
            &[],
        )
        .expect("valid");
        let names: Vec<&str> =
            stack.networks.iter().filter_map(|n| n.annotations.as_ref()).map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["app_default", "app_front"]);
        assert_eq!(stack.networks[0].driver, "overlay");
        let (db, web) = (&stack.services[0], &stack.services[1]);
        assert_eq!(db.task.as_ref().map(|t| t.networks[0].target.as_str()), Some("app_default"));
        assert_eq!(container_of(&stack, 0).healthcheck.as_ref().map(|h| h.test.clone()), Some(vec!["NONE".to_owned()]));
        let net = &web.task.as_ref().expect("task").networks;
        assert_eq!(
            (net[0].target.as_str(), net[0].aliases.clone()),
            ("app_front", vec!["w".to_owned(), "web".to_owned()])
        );
        let c = container_of(&stack, 1);
        assert_eq!(c.mounts.len(), 3);
        assert_eq!((c.mounts[0].r#type(), c.mounts[0].source.as_str()), (mount::Type::Volume, "app_data"));
        assert_eq!((c.mounts[1].r#type(), c.mounts[1].read_only), (mount::Type::Bind, true));
        assert_eq!((c.mounts[2].r#type(), c.mounts[2].tmpfs_size), (mount::Type::Tmpfs, 1 << 20));
        let h = c.healthcheck.as_ref().expect("a healthcheck");
        assert_eq!(
            (h.test.as_slice(), h.interval, h.retries),
            (&["CMD-SHELL".to_owned(), "curl -f localhost".to_owned()][..], 2_000_000_000, 4)
        );
        let ports = &web.endpoint.as_ref().expect("an endpoint").ports;
        assert_eq!(
            ports.iter().map(|p| (p.published_port, p.target_port)).collect::<Vec<_>>(),
            [(5353, 53), (8080, 80)]
        );
        assert_eq!((ports[0].protocol(), ports[0].publish_mode()), (PortProtocol::Udp, PublishMode::Host));
        let u = web.update.as_ref().expect("an update config");
        assert_eq!((u.parallelism, u.delay, u.order()), (1, 5_000_000_000, UpdateOrder::StartFirst));
        assert_eq!(web.depends_on[0].service, "app_db");
        assert_eq!(web.depends_on[0].condition(), DependencyCondition::ServiceHealthy);
    }
}
