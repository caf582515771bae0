//! Loads the compose files under `tests/fixtures/` through the public API, as the CLI does.

use std::path::PathBuf;

use shoal_deploy::{load_stack, Error, Loaded};
use shoal_proto::{service_mode, ContainerSpec, ServiceSpec, STACK_NAMESPACE_LABEL};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn load(name: &str, stack: &str) -> Result<Loaded, Error> {
    load_stack(&[fixture(name)], stack)
}

fn container(spec: &ServiceSpec) -> &ContainerSpec {
    spec.task.as_ref().and_then(|task| task.container.as_ref()).expect("every service has a container spec")
}

fn replicas(spec: &ServiceSpec) -> u64 {
    match spec.mode.as_ref().and_then(|mode| mode.mode) {
        Some(service_mode::Mode::Replicated(replicated)) => replicated.replicas,
        other => panic!("not replicated: {other:?}"),
    }
}

#[test]
fn web_and_db() {
    let loaded = load("web-and-db.yml", "app").unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let stack = loaded.stack;
    assert_eq!(stack.name, "app");

    let names: Vec<&str> =
        stack.services.iter().filter_map(|s| s.annotations.as_ref().map(|a| a.name.as_str())).collect();
    assert_eq!(names, ["app_db", "app_web"]);

    let (db, web) = (&stack.services[0], &stack.services[1]);
    let labels = &web.annotations.as_ref().expect("annotations").labels;
    assert_eq!(labels.get(STACK_NAMESPACE_LABEL).map(String::as_str), Some("app"));
    assert_eq!(labels.get("com.docker.stack.image").map(String::as_str), Some("nginx:1.27"));
    let web_container = container(web);
    assert_eq!(web_container.image, "nginx:1.27");
    assert_eq!(web_container.labels.get(STACK_NAMESPACE_LABEL).map(String::as_str), Some("app"));
    assert_eq!(web_container.command, ["/docker-entrypoint.sh"]);
    assert_eq!(web_container.args, ["nginx", "-g", "daemon off;"]);
    assert_eq!(web_container.env, ["LOG_LEVEL=info", "TZ=UTC", "UPSTREAM=db:5432", "WORKERS=4"]);
    assert_eq!(replicas(web), 3);

    let db_container = container(db);
    assert!(db_container.command.is_empty() && db_container.args.is_empty());
    // The bare variable is not set in the test's environment, so it is left out.
    assert_eq!(db_container.env, ["POSTGRES_DB=app", "POSTGRES_PASSWORD=example"]);
    assert_eq!(replicas(db), 1);
}

#[test]
fn loading_twice_gives_the_same_stack() {
    let first = load("web-and-db.yml", "app").unwrap_or_else(|e| panic!("{e}"));
    let second = load("web-and-db.yml", "app").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first, second);
}

#[test]
fn compose_features_are_warned_about() {
    let file = fixture("compose-features.yml");
    let loaded = load("compose-features.yml", "shop").unwrap_or_else(|e| panic!("{e}"));
    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    let at = |line: usize, column: usize, message: &str| format!("{}:{line}:{column}: {message}", file.display());
    assert_eq!(
        warnings,
        [
            at(6, 5, "services.api.build: not supported by shoal yet, ignored"),
            at(8, 5, "services.api.container_name: not supported by shoal yet, ignored"),
        ]
    );
    let health = container(&loaded.stack.services[0]).healthcheck.clone().expect("the healthcheck is kept");
    assert!(!health.test.is_empty(), "{health:?}");
    let api = &loaded.stack.services[0];
    assert_eq!(replicas(api), 2);
    assert_eq!(container(api).env, ["DEBUG=1"]);
    let limits = api.task.as_ref().and_then(|t| t.resources.as_ref()).and_then(|r| r.limits.as_ref());
    assert_eq!(limits.map(|l| l.nano_cpus), Some(500_000_000));
}

#[test]
fn unknown_keys_are_errors_with_a_suggestion() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("compose.yml");
    std::fs::write(&path, "services:\n  api:\n    image: x\n    enviroment:\n      DEBUG: 1\n").expect("write");
    let err = load_stack(std::slice::from_ref(&path), "app").expect_err("a typo");
    assert_eq!(
        err.to_string(),
        format!("{}:4:5: services.api.enviroment: unknown key (did you mean \"environment\"?)", path.display())
    );
}

#[test]
fn wrong_type_is_reported_like_a_compiler() {
    let file = fixture("bad-replicas.yml");
    let err = load("bad-replicas.yml", "app").expect_err("replicas is not a number");
    assert!(
        matches!(&err, Error::Invalid { line: 5, column: 17, path, .. }
            if path == "services.web.deploy.replicas"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("{}:5:17: services.web.deploy.replicas: expected an integer, found \"three\"", file.display())
    );
}

#[test]
fn malformed_yaml_is_reported_with_its_position() {
    let err = load("malformed.yml", "app").expect_err("unclosed flow sequence");
    let Error::Yaml { file, line, column, message } = &err else {
        panic!("not a YAML error: {err:?}");
    };
    assert_eq!(file, &fixture("malformed.yml"));
    assert_eq!((*line, *column), (5, 5), "{message}");
    assert!(err.to_string().starts_with(&format!("{}:5:5: ", file.display())), "{err}");
}

#[test]
fn missing_file() {
    let err = load("no-such-file.yml", "app").expect_err("the file does not exist");
    let Error::Io { file, source } = &err else {
        panic!("not an I/O error: {err:?}");
    };
    assert_eq!(file, &fixture("no-such-file.yml"));
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
    assert_eq!(err.to_string(), format!("{}: cannot read the compose file", file.display()));
}

#[test]
fn file_label_is_used_as_given() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("docker-compose.yml");
    std::fs::write(&path, "services:\n  web:\n    image: x\n    build: .\n").expect("write the compose file");
    let loaded = load_stack(std::slice::from_ref(&path), "app").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.warnings.len(), 1);
    assert_eq!(loaded.warnings[0].file, path);
    assert_eq!(
        loaded.warnings[0].to_string(),
        format!("{}:4:5: services.web.build: not supported by shoal yet, ignored", path.display())
    );
}

#[test]
fn one_anchor_merged_into_hundreds_of_services_is_fine() {
    let mut yaml = String::from("x-common: &common\n  image: demo:1\n  deploy: { replicas: 2 }\nservices:\n");
    for i in 0..300 {
        yaml.push_str(&format!("  s{i}:\n    <<: *common\n"));
    }
    let loaded = shoal_deploy::load_stack_from_str(std::path::Path::new("many.yml"), &yaml, "app")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.stack.services.len(), 300);
    assert!(loaded.stack.services.iter().all(|s| replicas(s) == 2));
}

#[test]
fn encrypted_networks_are_refused_where_they_are_asked_for() {
    let yaml = "services:\n  web:\n    image: x\n    networks: [back]\nnetworks:\n  back:\n    driver: overlay\n    driver_opts:\n      encrypted: \"\"\n";
    let err = shoal_deploy::load_stack_from_str(std::path::Path::new("stack.yml"), yaml, "app")
        .expect_err("an encrypted overlay");
    assert!(
        matches!(&err, Error::Invalid { line: 9, column: 7, path, .. } if path == "networks.back.driver_opts.encrypted"),
        "{err:?}"
    );
    assert!(err.to_string().contains("encrypted overlay networks are not available yet"), "{err}");
    // An external network is not the stack's to create: its options are not read.
    let external = "services:\n  web:\n    image: x\n    networks: [back]\nnetworks:\n  back:\n    external: true\n";
    shoal_deploy::load_stack_from_str(std::path::Path::new("stack.yml"), external, "app").expect("an external network");
}
