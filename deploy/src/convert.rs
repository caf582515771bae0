//! The compose model to the stack's service specs, as `docker stack deploy` builds them
//! (docker/cli `cli/compose/convert`): names `<stack>_<service>`, the stack namespace label,
//! entrypoint → command, command → args, sorted `KEY=VALUE` environment, durations in ns.
//!
//! The same model always gives the same specs, in the same order, so a repeated deploy
//! changes nothing. What the specs cannot carry yet stays in the model (see `Project`).

use shoal_proto::{
    service_mode, Annotations, ContainerSpec, EndpointMode, EndpointSpec, GlobalService, NetworkAttachmentConfig,
    Placement, ReplicatedService, ResourceRequirements, Resources, RestartCondition, RestartPolicy, ServiceMode,
    ServiceSpec, TaskSpec, STACK_NAMESPACE_LABEL,
};
use std::collections::HashMap;

use crate::model::{self, Compose, Restart, Service};
use crate::Stack;

/// Label on a service naming the image as the compose file wrote it (before any pinning).
pub(crate) const STACK_IMAGE_LABEL: &str = "com.docker.stack.image";

/// Why a service cannot become a spec yet: the dotted path at fault and the reason.
#[derive(Debug)]
pub(crate) struct Unsupported {
    pub service: String,
    pub keys: &'static [&'static str],
    pub message: String,
}

/// Converts `compose` into the stack `name`.
pub(crate) fn stack(compose: &Compose, name: &str) -> Result<Stack, Unsupported> {
    let services = compose
        .services
        .iter()
        .map(|(service_name, service)| service_spec(compose, service_name, service, name))
        .collect::<Result<_, _>>()?;
    Ok(Stack { name: name.to_owned(), services })
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
            return Err(Unsupported {
                service: name.to_owned(),
                keys: &["deploy", "mode"],
                message: format!("{job:?} mode is not supported yet: use \"replicated\" or \"global\""),
            });
        }
    };

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
    };

    let resources = deploy.resources.as_ref().map(|r| ResourceRequirements {
        limits: r.limits.as_ref().map(resources),
        reservations: r.reservations.as_ref().map(resources),
    });

    let placement = deploy
        .placement
        .as_ref()
        .map(|p| Placement { constraints: p.constraints.clone(), max_replicas: p.max_replicas_per_node.unwrap_or(0) });

    let mut networks: Vec<NetworkAttachmentConfig> = service
        .networks
        .iter()
        .map(|(key, attachment)| {
            let mut aliases = attachment.aliases.clone();
            if !aliases.iter().any(|a| a == name) {
                aliases.push(name.to_owned());
            }
            NetworkAttachmentConfig { target: network_name(compose, key, stack), aliases }
        })
        .collect();
    networks.sort_by(|a, b| a.target.cmp(&b.target));

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
        endpoint: deploy.endpoint_mode.map(|m| EndpointSpec {
            mode: match m {
                model::EndpointMode::Vip => EndpointMode::Vip,
                model::EndpointMode::Dnsrr => EndpointMode::Dnsrr,
            }
            .into(),
        }),
    })
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
        stack(compose, "app").unwrap_or_else(|e| panic!("{}", e.message))
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
        let err = stack(&compose, "app").expect_err("unsupported");
        assert_eq!((err.service.as_str(), err.keys), ("once", &["deploy", "mode"][..]));
    }
}
