//! The compose model to the stack's service specs, as `docker stack deploy` builds them
//! (docker/cli `cli/compose/convert`): names `<stack>_<service>`, the stack namespace label,
//! entrypoint → command, command → args, sorted `KEY=VALUE` environment.
//!
//! The same project and environment always give the same specs, in the same order, so a
//! repeated deploy changes nothing.

use shoal_proto::{
    service_mode, Annotations, ContainerSpec, ReplicatedService, ServiceMode, ServiceSpec, TaskSpec,
    STACK_NAMESPACE_LABEL,
};
use std::collections::HashMap;

use crate::model::{Mode, Project, Service};
use crate::Stack;

/// Label on a service naming the image as the compose file wrote it (before any pinning).
pub(crate) const STACK_IMAGE_LABEL: &str = "com.docker.stack.image";

/// Converts `project` into the stack `name`; `lookup` reads the deploying user's environment
/// for variables the file names without a value.
pub(crate) fn stack(project: &Project, name: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Stack {
    let mut services: Vec<&Service> = project.services.iter().collect();
    services.sort_by(|a, b| a.name.cmp(&b.name));
    Stack {
        name: name.to_owned(),
        services: services.into_iter().map(|service| service_spec(service, name, lookup)).collect(),
    }
}

fn service_spec(service: &Service, stack: &str, lookup: &dyn Fn(&str) -> Option<String>) -> ServiceSpec {
    let namespace = (STACK_NAMESPACE_LABEL.to_owned(), stack.to_owned());
    let Mode::Replicated { replicas } = service.mode;
    ServiceSpec {
        annotations: Some(Annotations {
            name: format!("{stack}_{}", service.name),
            labels: HashMap::from([namespace.clone(), (STACK_IMAGE_LABEL.to_owned(), service.image.clone())]),
        }),
        task: Some(TaskSpec {
            container: Some(ContainerSpec {
                image: service.image.clone(),
                labels: HashMap::from([namespace]),
                command: service.entrypoint.clone().unwrap_or_default(),
                args: service.command.clone().unwrap_or_default(),
                env: environment(service, lookup),
                ..ContainerSpec::default()
            }),
            ..TaskSpec::default()
        }),
        mode: Some(ServiceMode { mode: Some(service_mode::Mode::Replicated(ReplicatedService { replicas })) }),
        endpoint: None,
    }
}

/// `KEY=VALUE` strings sorted as strings (as docker/cli sorts them). A variable without a
/// value takes the deploying user's value, or is left out when they have none.
fn environment(service: &Service, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let mut env: Vec<String> = service
        .environment
        .iter()
        .filter_map(|(name, value)| {
            let value = value.clone().or_else(|| lookup(name))?;
            Some(format!("{name}={value}"))
        })
        .collect();
    env.sort();
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn service(name: &str) -> Service {
        Service {
            name: name.to_owned(),
            image: format!("{name}:1"),
            entrypoint: None,
            command: None,
            environment: BTreeMap::new(),
            mode: Mode::default(),
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn names_labels_and_mode() {
        let project = Project {
            services: vec![Service {
                entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
                command: Some(vec!["echo hi".into()]),
                mode: Mode::Replicated { replicas: 3 },
                ..service("web")
            }],
        };
        let stack = stack(&project, "app", &no_env);
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
        let project = Project { services: vec![service("web"), service("db"), service("cache")] };
        let names: Vec<String> = stack(&project, "s", &no_env)
            .services
            .iter()
            .filter_map(|s| s.annotations.as_ref().map(|a| a.name.clone()))
            .collect();
        assert_eq!(names, ["s_cache", "s_db", "s_web"]);
    }

    #[test]
    fn environment_sorted_and_resolved() {
        let project = Project {
            services: vec![Service {
                environment: BTreeMap::from([
                    ("A_B".to_owned(), Some("2".to_owned())),
                    ("A".to_owned(), Some("1".to_owned())),
                    ("A.B".to_owned(), Some("3".to_owned())),
                    ("FROM_USER".to_owned(), None),
                    ("UNSET".to_owned(), None),
                    ("EMPTY".to_owned(), Some(String::new())),
                ]),
                ..service("web")
            }],
        };
        let lookup = |name: &str| (name == "FROM_USER").then(|| "yes".to_owned());
        let stack = stack(&project, "s", &lookup);
        let env = &stack.services[0].task.as_ref().and_then(|t| t.container.as_ref()).expect("container").env;
        assert_eq!(env, &["A.B=3", "A=1", "A_B=2", "EMPTY=", "FROM_USER=yes"]);
    }
}
