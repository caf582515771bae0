use std::collections::HashMap;

use serde_json::{json, Value};
use shoal_proto::{
    mount, service_mode, Annotations, ConfigReference, ContainerSpec, DependencyCondition, DnsConfig, EndpointMode,
    EndpointSpec, FailureAction, FileTarget, HealthConfig, Mount, NetworkAttachmentConfig, NodeAvailability, NodeRole,
    Placement, PortConfig, PortProtocol, PublishMode, ReplicatedService, ResourceRequirements, Resources,
    RestartCondition, RestartPolicy, SecretReference, ServiceDependency, ServiceMode, ServiceSpec, TaskSpec, Ulimit,
    UpdateConfig, UpdateOrder,
};

use super::*;

/// The body the docker CLI 28.2 sends for
/// `docker service create --detach --name web --replicas 2 --env A=1
/// --label com.example=x --container-label c=1
/// --publish published=8080,target=80 --publish mode=host,target=53,protocol=udp
/// --mount type=volume,source=data,target=/data,volume-label=v=1
/// --mount type=tmpfs,target=/t,tmpfs-size=1024,tmpfs-mode=0700
/// --mount type=bind,source=/srv,target=/srv,readonly
/// --health-cmd true --health-interval 5s --health-retries 2 --health-start-period 1s
/// --restart-condition on-failure --restart-delay 3s --restart-max-attempts 4 --restart-window 10s
/// --update-parallelism 2 --update-delay 1s --update-failure-action rollback
/// --update-max-failure-ratio 0.1 --update-order start-first --update-monitor 2s
/// --rollback-parallelism 1 --rollback-failure-action rollback
/// --constraint node.role==manager --placement-pref spread=node.labels.zone --replicas-max-per-node 3
/// --limit-cpu 0.5 --limit-memory 64M --limit-pids 100 --reserve-cpu 0.25 --reserve-memory 32M
/// --stop-grace-period 7s --stop-signal SIGTERM --user 1000 --workdir /w --hostname h --tty --read-only --init
/// --cap-add NET_ADMIN --cap-drop MKNOD --dns 1.1.1.1 --dns-search example.com --dns-option ndots:2
/// --host db:10.0.0.1 --sysctl net.core.somaxconn=1024 --ulimit nofile=100:200
/// --entrypoint /bin/sh demo:1 -c "sleep 100"`, as captured on its socket.
const CLI_SERVICE_CREATE: &str = r#"{"Name":"web","Labels":{"com.example":"x"},"TaskTemplate":{"ContainerSpec":{"Image":"demo:1","Labels":{"c":"1"},"Command":["/bin/sh"],"Args":["-c","sleep 100"],"Hostname":"h","Env":["A=1"],"Dir":"/w","User":"1000","Init":true,"StopSignal":"SIGTERM","TTY":true,"ReadOnly":true,"Mounts":[{"Type":"volume","Source":"data","Target":"/data","VolumeOptions":{"Labels":{"v":"1"},"DriverConfig":{}}},{"Type":"tmpfs","Target":"/t","TmpfsOptions":{"SizeBytes":1024,"Mode":448}},{"Type":"bind","Source":"/srv","Target":"/srv","ReadOnly":true}],"StopGracePeriod":7000000000,"Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":5000000000,"StartPeriod":1000000000,"Retries":2},"Hosts":["10.0.0.1 db"],"DNSConfig":{"Nameservers":["1.1.1.1"],"Search":["example.com"],"Options":["ndots:2"]},"Sysctls":{"net.core.somaxconn":"1024"},"CapabilityAdd":["CAP_NET_ADMIN"],"CapabilityDrop":["CAP_MKNOD"],"Ulimits":[{"Name":"nofile","Hard":200,"Soft":100}]},"Resources":{"Limits":{"NanoCPUs":500000000,"MemoryBytes":67108864,"Pids":100},"Reservations":{"NanoCPUs":250000000,"MemoryBytes":33554432}},"RestartPolicy":{"Condition":"on-failure","Delay":3000000000,"MaxAttempts":4,"Window":10000000000},"Placement":{"Constraints":["node.role==manager"],"Preferences":[{"Spread":{"SpreadDescriptor":"node.labels.zone"}}],"MaxReplicas":3},"ForceUpdate":0},"Mode":{"Replicated":{"Replicas":2}},"UpdateConfig":{"Parallelism":2,"Delay":1000000000,"FailureAction":"rollback","Monitor":2000000000,"MaxFailureRatio":0.1,"Order":"start-first"},"RollbackConfig":{"Parallelism":1,"FailureAction":"rollback","Monitor":5000000000,"MaxFailureRatio":0,"Order":"stop-first"},"EndpointSpec":{"Mode":"vip","Ports":[{"Protocol":"tcp","TargetPort":80,"PublishedPort":8080,"PublishMode":"ingress"},{"Protocol":"udp","TargetPort":53,"PublishMode":"host"}]}}"#;

/// What the docker CLI 28.2 sends for `docker service create --detach
/// --name withsec --secret source=sec,target=pw,mode=0400 --config
/// source=cfg,target=/etc/c demo:1`.
const CLI_SERVICE_CREATE_SECRETS: &str = r#"{"Name":"withsec","Labels":{},"TaskTemplate":{"ContainerSpec":{"Image":"demo:1","Init":false,"DNSConfig":{},"Secrets":[{"File":{"Name":"pw","UID":"0","GID":"0","Mode":256},"SecretID":"9lxf068qub9ip04dxqte8a5k7","SecretName":"sec"}],"Configs":[{"File":{"Name":"/etc/c","UID":"0","GID":"0","Mode":292},"ConfigID":"djyzqhcm8mgiusyzc1y3d9vr6","ConfigName":"cfg"}]},"Resources":{"Limits":{},"Reservations":{}},"Placement":{},"ForceUpdate":0},"Mode":{"Replicated":{}},"EndpointSpec":{"Mode":"vip"}}"#;

/// What the docker CLI 28.2 sends for `docker service scale plain=3` (the
/// spec it read, changed).
const CLI_SERVICE_SCALE: &str = r#"{"Name":"plain","Labels":{},"TaskTemplate":{"ContainerSpec":{"Image":"demo:1","Env":["B=2"],"Init":false,"DNSConfig":{}},"Resources":{"Limits":{},"Reservations":{}},"Placement":{},"ForceUpdate":0,"Runtime":"container"},"Mode":{"Replicated":{"Replicas":3}},"EndpointSpec":{"Mode":"vip"}}"#;

fn body(text: &str) -> Value {
    serde_json::from_str(text).expect("a test body is JSON")
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Renders `spec` as the API does (to JSON text) and reads it back.
fn rendered_and_read(spec: &ServiceSpec) -> ServiceSpec {
    let text = serde_json::to_string(&json(&service_spec(spec))).expect("rendering");
    parse_service_spec(&body(&text)).expect("a rendered spec reads back")
}

/// The spec an empty body reads as: what the model's defaults read back as.
fn minimal() -> ServiceSpec {
    parse_service_spec(&json!({})).expect("an empty spec reads")
}

fn mount(kind: mount::Type, source: &str, target: &str) -> Mount {
    let mut m = Mount { source: source.into(), target: target.into(), ..Default::default() };
    m.set_type(kind);
    m
}

/// The spec `CLI_SERVICE_CREATE` asks for.
fn cli_service_create_spec() -> ServiceSpec {
    let mut data = mount(mount::Type::Volume, "data", "/data");
    data.volume_labels = labels(&[("v", "1")]);
    let mut tmpfs = mount(mount::Type::Tmpfs, "", "/t");
    (tmpfs.tmpfs_size, tmpfs.tmpfs_mode) = (1024, 0o700);
    let mut srv = mount(mount::Type::Bind, "/srv", "/srv");
    srv.read_only = true;
    let mut restart =
        RestartPolicy { delay: Some(3_000_000_000), max_attempts: 4, window: 10_000_000_000, ..Default::default() };
    restart.set_condition(RestartCondition::OnFailure);
    let mut update = UpdateConfig {
        parallelism: 2,
        delay: 1_000_000_000,
        monitor: 2_000_000_000,
        max_failure_ratio: 0.1,
        ..Default::default()
    };
    update.set_failure_action(FailureAction::Rollback);
    update.set_order(UpdateOrder::StartFirst);
    let mut rollback = UpdateConfig { parallelism: 1, monitor: 5_000_000_000, ..Default::default() };
    rollback.set_failure_action(FailureAction::Rollback);
    let mut udp = PortConfig { target_port: 53, ..Default::default() };
    udp.set_protocol(PortProtocol::Udp);
    udp.set_publish_mode(PublishMode::Host);
    ServiceSpec {
        annotations: Some(Annotations { name: "web".into(), labels: labels(&[("com.example", "x")]) }),
        task: Some(TaskSpec {
            container: Some(ContainerSpec {
                image: "demo:1".into(),
                labels: labels(&[("c", "1")]),
                command: strings(&["/bin/sh"]),
                args: strings(&["-c", "sleep 100"]),
                hostname: "h".into(),
                env: strings(&["A=1"]),
                dir: "/w".into(),
                user: "1000".into(),
                stop_signal: "SIGTERM".into(),
                stop_grace_period: Some(7_000_000_000),
                tty: true,
                read_only: true,
                init: Some(true),
                mounts: vec![data, tmpfs, srv],
                healthcheck: Some(HealthConfig {
                    test: strings(&["CMD-SHELL", "true"]),
                    interval: 5_000_000_000,
                    start_period: 1_000_000_000,
                    retries: 2,
                    ..Default::default()
                }),
                cap_add: strings(&["CAP_NET_ADMIN"]),
                cap_drop: strings(&["CAP_MKNOD"]),
                dns: Some(DnsConfig {
                    nameservers: strings(&["1.1.1.1"]),
                    search: strings(&["example.com"]),
                    options: strings(&["ndots:2"]),
                }),
                hosts: strings(&["10.0.0.1 db"]),
                sysctls: labels(&[("net.core.somaxconn", "1024")]),
                ulimits: vec![Ulimit { name: "nofile".into(), soft: 100, hard: 200 }],
                ..Default::default()
            }),
            resources: Some(ResourceRequirements {
                limits: Some(Resources { nano_cpus: 500_000_000, memory_bytes: 64 << 20, pids: 100 }),
                reservations: Some(Resources { nano_cpus: 250_000_000, memory_bytes: 32 << 20, pids: 0 }),
            }),
            restart: Some(restart),
            placement: Some(Placement {
                constraints: strings(&["node.role==manager"]),
                max_replicas: 3,
                spread_preferences: strings(&["node.labels.zone"]),
            }),
            networks: Vec::new(),
            force_update: 0,
        }),
        mode: Some(ServiceMode { mode: Some(service_mode::Mode::Replicated(ReplicatedService { replicas: 2 })) }),
        endpoint: Some(EndpointSpec {
            mode: EndpointMode::Vip as i32,
            ports: vec![PortConfig { target_port: 80, published_port: 8080, ..Default::default() }, udp],
        }),
        update: Some(update),
        rollback: Some(rollback),
        depends_on: Vec::new(),
    }
}

/// A spec with every field the model has set to something other than its
/// default, and the shoal-only ones (reservation pids, `DependsOn`).
fn full_spec() -> ServiceSpec {
    let mut spec = cli_service_create_spec();
    let task = spec.task.as_mut().expect("a task");
    let c = task.container.as_mut().expect("a container");
    c.open_stdin = true;
    c.secrets = vec![SecretReference {
        secret_id: "s1".into(),
        secret_name: "app_pw".into(),
        file: Some(FileTarget { name: "pw".into(), uid: "0".into(), gid: "0".into(), mode: 0o400 }),
    }];
    c.configs = vec![ConfigReference {
        config_id: "c1".into(),
        config_name: "app_c".into(),
        file: Some(FileTarget { name: "/etc/c".into(), uid: "1".into(), gid: "2".into(), mode: 0o644 }),
    }];
    c.mounts[0].volume_nocopy = true;
    c.mounts.push(mount(mount::Type::Volume, "", "/anonymous"));
    if let Some(h) = c.healthcheck.as_mut() {
        (h.timeout, h.start_interval) = (3, 4);
    }
    if let Some(r) = task.resources.as_mut().and_then(|r| r.reservations.as_mut()) {
        r.pids = 7;
    }
    task.networks = vec![
        NetworkAttachmentConfig { target: "app_front".into(), aliases: strings(&["web", "www"]) },
        NetworkAttachmentConfig { target: "app_back".into(), aliases: Vec::new() },
    ];
    task.force_update = 9;
    let mut healthy = ServiceDependency { service: "app_db".into(), ..Default::default() };
    healthy.set_condition(DependencyCondition::ServiceHealthy);
    let mut done = ServiceDependency { service: "app_init".into(), ..Default::default() };
    done.set_condition(DependencyCondition::ServiceCompletedSuccessfully);
    spec.depends_on = vec![ServiceDependency { service: "app_cache".into(), ..Default::default() }, healthy, done];
    spec
}

#[test]
fn the_docker_clis_service_create_body_reads_as_the_spec_it_asks_for() {
    assert_eq!(parse_service_spec(&body(CLI_SERVICE_CREATE)).unwrap(), cli_service_create_spec());
}

#[test]
fn the_docker_clis_bodies_for_secrets_configs_and_scale_read_as_asked() {
    let spec = parse_service_spec(&body(CLI_SERVICE_CREATE_SECRETS)).unwrap();
    let c = spec.task.as_ref().and_then(|t| t.container.clone()).unwrap();
    assert_eq!(
        c.secrets,
        vec![SecretReference {
            secret_id: "9lxf068qub9ip04dxqte8a5k7".into(),
            secret_name: "sec".into(),
            file: Some(FileTarget { name: "pw".into(), uid: "0".into(), gid: "0".into(), mode: 0o400 }),
        }]
    );
    assert_eq!(c.configs[0].file.as_ref().map(|f| (f.name.as_str(), f.mode)), Some(("/etc/c", 0o444)));
    assert_eq!((c.init, c.dns), (Some(false), Some(DnsConfig::default())));
    // `"Replicated": {}`: one replica, as Docker's daemon takes it.
    assert_eq!(spec.mode.and_then(|m| m.mode), Some(service_mode::Mode::Replicated(ReplicatedService { replicas: 1 })));
    let scaled = parse_service_spec(&body(CLI_SERVICE_SCALE)).unwrap();
    assert_eq!(
        scaled.mode.and_then(|m| m.mode),
        Some(service_mode::Mode::Replicated(ReplicatedService { replicas: 3 }))
    );
    assert_eq!((scaled.endpoint, scaled.task.and_then(|t| t.resources)), (None, None));
}

#[test]
fn a_spec_rendered_and_read_back_is_the_same_spec() {
    let mut global = full_spec();
    global.mode = Some(ServiceMode { mode: Some(service_mode::Mode::Global(Default::default())) });
    let mut dnsrr = minimal();
    dnsrr.endpoint = Some(EndpointSpec { mode: EndpointMode::Dnsrr as i32, ports: Vec::new() });
    for spec in [cli_service_create_spec(), full_spec(), global, dnsrr] {
        assert_eq!(rendered_and_read(&spec), spec);
    }
    // Specs as read from bodies render and read back the same too.
    for text in [CLI_SERVICE_CREATE, CLI_SERVICE_CREATE_SECRETS, CLI_SERVICE_SCALE] {
        let spec = parse_service_spec(&body(text)).unwrap();
        assert_eq!(rendered_and_read(&spec), spec);
    }
}

#[test]
fn a_service_as_listed_carries_its_spec_and_its_previous_one() {
    let s = shoal_proto::Service {
        id: "svc".into(),
        meta: Some(shoal_proto::Meta { version: 12, created_at: 1_000_000_123, updated_at: 2_000_000_000 }),
        spec: Some(full_spec()),
        previous_spec: Some(cli_service_create_spec()),
        endpoint: Some(shoal_proto::Endpoint {
            virtual_ips: vec![shoal_proto::EndpointVirtualIp { network_id: "n1".into(), addr: "10.0.1.2/24".into() }],
            // As allocated: the host-mode port published as 0 got its number.
            ports: full_spec()
                .endpoint
                .map(|e| e.ports)
                .unwrap_or_default()
                .into_iter()
                .map(|mut p| {
                    if p.published_port == 0 {
                        p.published_port = 30000;
                    }
                    p
                })
                .collect(),
        }),
    };
    let v = json(&service(&s, Some(ServiceCounts { running: 1, desired: 2, completed: 0 })));
    let published: Vec<u64> = v["Endpoint"]["Ports"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["PublishedPort"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(published, [8080, 30000], "{}", v["Endpoint"]);
    assert!(v["Spec"]["EndpointSpec"]["Ports"][1]["PublishedPort"].is_null(), "the spec stays as asked");
    assert_eq!((v["ID"].clone(), v["Version"]["Index"].clone()), (json!("svc"), json!(12)));
    assert_eq!(v["CreatedAt"], "1970-01-01T00:00:01.000000123Z");
    assert_eq!(parse_service_spec(&v["Spec"]).unwrap(), full_spec());
    // `docker service rollback` reads the previous spec, which the Engine
    // API's specification leaves out of a service.
    assert_eq!(parse_service_spec(&v["PreviousSpec"]).unwrap(), cli_service_create_spec());
    assert_eq!(v["Endpoint"]["Ports"][0], v["Spec"]["EndpointSpec"]["Ports"][0]);
    assert_eq!(v["Endpoint"]["Spec"], v["Spec"]["EndpointSpec"]);
    assert_eq!(v["Endpoint"]["VirtualIPs"], json!([{"NetworkID": "n1", "Addr": "10.0.1.2/24"}]));
    assert_eq!(v["ServiceStatus"], json!({"RunningTasks": 1, "DesiredTasks": 2, "CompletedTasks": 0}));
    let v = json(&service(&shoal_proto::Service::default(), None));
    assert_eq!((v.get("PreviousSpec"), v.get("ServiceStatus")), (None, None));
    assert_eq!(v["Endpoint"].get("VirtualIPs"), None, "no network, no virtual IP, as Docker shows it");
}

#[test]
fn stack_fields_round_trip() {
    let v = json!({
        "Name": "app_web",
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": "demo:1",
                "Mounts": [
                    {"Type": "volume", "Source": "app_data", "Target": "/data", "VolumeOptions": {"Labels": {"a": "b"}}},
                    {"Type": "bind", "Source": "/srv", "Target": "/srv", "ReadOnly": true},
                    {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1024, "Mode": 448}}
                ],
                "Secrets": [{"File": {"Name": "pw", "UID": "0", "GID": "0", "Mode": 292}, "SecretID": "x", "SecretName": "app_pw"}],
                "Configs": [{"File": {"Name": "/etc/c", "UID": "1", "GID": "2", "Mode": 420}, "ConfigID": "y", "ConfigName": "app_c"}],
                "Healthcheck": {"Test": ["CMD", "true"], "Interval": 1000, "Retries": 2},
                "CapabilityAdd": ["NET_ADMIN"],
                "Hosts": ["10.0.0.1 db"],
                "Ulimits": [{"Name": "nofile", "Soft": 1, "Hard": 2}]
            },
            "Placement": {"Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}]}
        },
        "EndpointSpec": {"Mode": "vip", "Ports": [{"Protocol": "udp", "TargetPort": 53, "PublishedPort": 5353, "PublishMode": "host"}]},
        "UpdateConfig": {"Parallelism": 2, "Delay": 5, "FailureAction": "rollback", "Monitor": 7, "MaxFailureRatio": 0.25, "Order": "start-first"},
        "DependsOn": [{"Service": "app_db", "Condition": "service_healthy"}]
    });
    let spec = parse_service_spec(&v).unwrap();
    let c = spec.task.as_ref().unwrap().container.as_ref().unwrap();
    assert_eq!((c.mounts.len(), c.mounts[2].tmpfs_mode), (3, 0o700));
    assert_eq!(spec.endpoint.as_ref().unwrap().ports[0].published_port, 5353);
    assert_eq!(spec.update.as_ref().unwrap().max_failure_ratio, 0.25);
    assert_eq!(spec.depends_on[0].condition(), DependencyCondition::ServiceHealthy);
    assert_eq!(rendered_and_read(&spec), spec);
    let bad = json!({"Name": "x", "EndpointSpec": {"Ports": [{"TargetPort": 70000}]}});
    assert_eq!(
        parse_service_spec(&bad).unwrap_err().to_string(),
        "invalid EndpointSpec.Ports[0].TargetPort: a port is at most 65535"
    );
}

#[test]
fn missing_replicas_means_one_and_bad_types_name_the_field() {
    let spec = parse_service_spec(&json!({"Name": "x", "TaskTemplate": {"ContainerSpec": {"Image": "i"}}})).unwrap();
    assert!(matches!(spec.mode.unwrap().mode, Some(service_mode::Mode::Replicated(ReplicatedService { replicas: 1 }))));
    let e = parse_service_spec(&json!({"Name": "x", "Mode": {"Replicated": {"Replicas": "three"}}})).unwrap_err();
    assert_eq!(e.to_string(), "invalid Mode.Replicated.Replicas: invalid type: string \"three\", expected i64");
    let e = parse_service_spec(&json!({"Name": "x", "Mode": {"Replicated": {"Replicas": -1}}})).unwrap_err();
    assert_eq!(e.to_string(), "invalid Mode.Replicated.Replicas: must not be negative");
}

#[test]
fn errors_inside_flattened_objects_name_the_whole_path() {
    // Each of these fields sits in a part of a wrapper that serde reads out
    // of sight of the path tracker.
    let cases = [
        (json!({"TaskTemplate": {"RestartPolicy": {"Delay": "5s"}}}), "TaskTemplate.RestartPolicy.Delay"),
        (
            json!({"TaskTemplate": {"ContainerSpec": {"Mounts": [{}, {"Target": 1}]}}}),
            "TaskTemplate.ContainerSpec.Mounts[1].Target",
        ),
        (
            json!({"TaskTemplate": {"Resources": {"Reservations": {"MemoryBytes": true}}}}),
            "TaskTemplate.Resources.Reservations.MemoryBytes",
        ),
        (
            json!({"TaskTemplate": {"Resources": {"Reservations": {"Pids": "x"}}}}),
            "TaskTemplate.Resources.Reservations.Pids",
        ),
        (
            json!({"TaskTemplate": {"ContainerSpec": {"Healthcheck": {"Test": "true"}}}}),
            "TaskTemplate.ContainerSpec.Healthcheck.Test",
        ),
        (json!({"RollbackConfig": {"Order": 1}}), "RollbackConfig.Order"),
        (json!({"DependsOn": [{"Service": ["a"]}]}), "DependsOn[0].Service"),
        (json!({"Labels": {"a": 1}}), "Labels.a"),
        (json!({"Name": "x", "TaskTemplate": 5}), "TaskTemplate"),
        (json!([]), "ServiceSpec"),
    ];
    for (v, field) in cases {
        let e = parse_service_spec(&v).unwrap_err();
        assert_eq!(e.field, field, "{v}: {e}");
        assert!(e.to_string().starts_with(&format!("invalid {field}: invalid type")), "{e}");
    }
    // A second read starts afresh: nothing of the first error's path stays.
    assert_eq!(parse_service_spec(&json!({"Name": 1})).unwrap_err().field, "Name");
}

#[test]
fn rollback_failure_action_rollback_is_read_as_docker_does() {
    // The specification's RollbackConfig has no `rollback` action; the docker
    // CLI sends it (`--rollback-failure-action rollback`) and Docker takes it.
    let spec = parse_service_spec(&body(CLI_SERVICE_CREATE)).unwrap();
    assert_eq!(spec.rollback.as_ref().map(|r| r.failure_action()), Some(FailureAction::Rollback));
    let v = json(&service_spec(&spec));
    assert_eq!(v["RollbackConfig"]["FailureAction"], "rollback");
}

#[test]
fn max_failure_ratio_renders_as_docker_renders_a_float32() {
    let spec = parse_service_spec(&body(CLI_SERVICE_CREATE)).unwrap();
    let text = serde_json::to_string(&json(&service_spec(&spec))).unwrap();
    assert!(text.contains(r#""MaxFailureRatio":0.1,"#), "{text}");
    for r in [0.0f32, 0.1, 0.25, 1.0 / 3.0, 0.7, 1e-7, 1.0] {
        let mut spec = minimal();
        spec.update = Some(UpdateConfig { max_failure_ratio: r, ..Default::default() });
        assert_eq!(rendered_and_read(&spec).update.map(|u| u.max_failure_ratio), Some(r));
    }
}

#[test]
fn a_secret_without_a_file_renders_without_one() {
    let mut spec = minimal();
    spec.task = Some(TaskSpec {
        container: Some(ContainerSpec {
            secrets: vec![SecretReference { secret_name: "pw".into(), ..Default::default() }],
            configs: vec![ConfigReference { config_name: "c".into(), ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    });
    let v = json(&service_spec(&spec));
    assert_eq!(v["TaskTemplate"]["ContainerSpec"]["Secrets"], json!([{"SecretID": "", "SecretName": "pw"}]));
    assert_eq!(rendered_and_read(&spec), spec);
}

#[test]
fn file_modes_too_large_for_docker_are_refused_not_cut() {
    let tmpfs = json!({"TaskTemplate": {"ContainerSpec": {"Mounts": [
        {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"Mode": 4_294_967_296u64 + 0o700}}
    ]}}});
    let e = parse_service_spec(&tmpfs).unwrap_err();
    assert_eq!(e.field, "TaskTemplate.ContainerSpec.Mounts[0].TmpfsOptions.Mode");
    let secret =
        json!({"TaskTemplate": {"ContainerSpec": {"Secrets": [{"File": {"Mode": 4_294_967_296u64 + 0o400}}]}}});
    assert_eq!(parse_service_spec(&secret).unwrap_err().field, "TaskTemplate.ContainerSpec.Secrets[0].File.Mode");
}

#[test]
fn a_health_check_spelled_as_the_specification_spells_it_is_read() {
    let v = json!({"TaskTemplate": {"ContainerSpec": {"HealthCheck": {"Test": ["CMD", "true"], "Retries": 3}}}});
    let spec = parse_service_spec(&v).unwrap();
    let h = spec.task.and_then(|t| t.container).and_then(|c| c.healthcheck);
    assert_eq!(h.map(|h| (h.test, h.retries)), Some((strings(&["CMD", "true"]), 3)));
    // Docker's own spelling wins when both came.
    let v = json!({"TaskTemplate": {"ContainerSpec": {
        "HealthCheck": {"Test": ["CMD", "false"]}, "Healthcheck": {"Test": ["CMD", "true"]}
    }}});
    let spec = parse_service_spec(&v).unwrap();
    let h = spec.task.and_then(|t| t.container).and_then(|c| c.healthcheck);
    assert_eq!(h.map(|h| h.test), Some(strings(&["CMD", "true"])));
}

#[test]
fn modes_read_as_dockers_daemon_reads_them() {
    let mode = |m: Value| parse_service_spec(&json!({"Mode": m})).map(|s| s.mode.and_then(|m| m.mode));
    assert_eq!(mode(json!({"Global": {}})), Ok(Some(service_mode::Mode::Global(Default::default()))));
    // A null mode is no mode: one replica.
    assert_eq!(
        mode(json!({"Global": null})),
        Ok(Some(service_mode::Mode::Replicated(ReplicatedService { replicas: 1 })))
    );
    assert_eq!(
        mode(json!({"Global": {}, "Replicated": {"Replicas": 2}})).unwrap_err().to_string(),
        "invalid Mode: must specify only one service mode"
    );
    assert_eq!(mode(json!({"ReplicatedJob": {}})).unwrap_err().field, "Mode");
}

#[test]
fn options_of_another_mount_type_are_not_kept() {
    let v = json!({"TaskTemplate": {"ContainerSpec": {"Mounts": [
        {"Type": "bind", "Source": "/srv", "Target": "/srv", "VolumeOptions": {"NoCopy": true, "Labels": {"a": "b"}}, "TmpfsOptions": {"SizeBytes": 5}},
        {"Type": "volume", "Target": "/v", "TmpfsOptions": {"Mode": 448}}
    ]}}});
    let spec = parse_service_spec(&v).unwrap();
    let mounts = spec.task.as_ref().and_then(|t| t.container.as_ref()).map(|c| c.mounts.clone()).unwrap();
    assert_eq!(mounts, vec![mount(mount::Type::Bind, "/srv", "/srv"), mount(mount::Type::Volume, "", "/v")]);
    assert_eq!(rendered_and_read(&spec), spec);
    // Their types are still checked.
    let bad =
        json!({"TaskTemplate": {"ContainerSpec": {"Mounts": [{"Type": "bind", "VolumeOptions": {"NoCopy": 1}}]}}});
    assert_eq!(
        parse_service_spec(&bad).unwrap_err().field,
        "TaskTemplate.ContainerSpec.Mounts[0].VolumeOptions.NoCopy"
    );
    let image =
        json!({"TaskTemplate": {"ContainerSpec": {"Mounts": [{"Type": "image", "Source": "i", "Target": "/i"}]}}});
    assert_eq!(
        parse_service_spec(&image).unwrap_err().to_string(),
        "invalid TaskTemplate.ContainerSpec.Mounts[0].Type: \"image\" mounts are not supported: use bind, volume or tmpfs"
    );
}

#[test]
fn a_task_renders_its_spec_and_status() {
    let mut t = shoal_proto::Task {
        id: "t1".into(),
        spec: full_spec().task,
        service_id: "svc".into(),
        slot: 2,
        node_id: "n1".into(),
        annotations: Some(Annotations { name: "web.2".into(), labels: HashMap::new() }),
        ..Default::default()
    };
    t.set_desired_state(shoal_proto::TaskState::Running);
    let mut status = shoal_proto::TaskStatus {
        message: "started".into(),
        container: Some(shoal_proto::ContainerStatus { container_id: "c1".into(), pid: 7, exit_code: 0 }),
        ..Default::default()
    };
    status.set_state(shoal_proto::TaskState::Starting);
    t.status = Some(status);
    t.networks = vec![shoal_proto::NetworkAttachment {
        network_id: "n1".into(),
        addresses: vec!["10.0.1.5/24".into()],
        aliases: vec!["web".into()],
    }];
    let n = shoal_proto::Network {
        id: "n1".into(),
        spec: Some(shoal_proto::NetworkSpec {
            annotations: Some(Annotations { name: "app_back".into(), labels: HashMap::new() }),
            driver: "overlay".into(),
            ..Default::default()
        }),
        allocated: Some(shoal_proto::IpamConfig {
            subnet: "10.0.1.0/24".into(),
            gateway: "10.0.1.1".into(),
            ..Default::default()
        }),
        vni: 4097,
        ..Default::default()
    };
    let networks = [("n1".to_string(), n)].into_iter().collect();
    let v = json(&task(&t, &networks));
    assert_eq!(v["NetworksAttachments"][0]["Addresses"], json!(["10.0.1.5/24"]));
    let attached = &v["NetworksAttachments"][0]["Network"];
    assert_eq!((attached["ID"].clone(), attached["Spec"]["Name"].clone()), (json!("n1"), json!("app_back")));
    assert_eq!(attached["DriverState"], json!({"Name": "overlay", "Options": {VXLAN_ID_OPTION: "4097"}}));
    assert_eq!(
        attached["IPAMOptions"],
        json!({"Driver": {"Name": "default"}, "Configs": [{"Subnet": "10.0.1.0/24", "Gateway": "10.0.1.1"}]})
    );
    // An attachment to a network that is gone is left out; none at all, no field.
    assert_eq!(json(&task(&t, &Default::default()))["NetworksAttachments"], json!([]));
    t.networks.clear();
    assert_eq!(json(&task(&t, &networks)).get("NetworksAttachments"), None);
    assert_eq!(
        (v["Name"].clone(), v["Slot"].clone(), v["DesiredState"].clone()),
        (json!("web.2"), json!(2), json!("running"))
    );
    assert_eq!(v["Status"]["State"], "starting");
    assert_eq!(v["Status"]["ContainerStatus"], json!({"ContainerID": "c1", "PID": 7, "ExitCode": 0}));
    assert_eq!(v["Status"].get("Err"), None);
    let mut template = json!({});
    template["TaskTemplate"] = v["Spec"].clone();
    assert_eq!(parse_service_spec(&template).unwrap().task, full_spec().task);
}

#[test]
fn the_docker_clis_node_update_body_reads_as_asked_and_round_trips() {
    let spec = parse_node_spec(&body(r#"{"Labels":{"zone":"a"},"Role":"manager","Availability":"drain"}"#)).unwrap();
    assert_eq!(spec.annotations.as_ref().map(|a| a.labels.clone()), Some(labels(&[("zone", "a")])));
    assert_eq!((spec.desired_role(), spec.availability()), (NodeRole::Manager, NodeAvailability::Drain));
    assert_eq!(parse_node_spec(&json(&node_spec(&spec))).unwrap(), spec);
    let e = parse_node_spec(&json!({"Availability": "gone"})).unwrap_err();
    assert_eq!(e.field, "Availability");
    assert_eq!(parse_node_spec(&Value::Null).unwrap_err().to_string(), "invalid NodeSpec: the request body is empty");
}

#[test]
fn the_docker_clis_swarm_update_body_reads_as_asked_and_round_trips() {
    let v = body(
        r#"{"Name":"default","Labels":{},"Orchestration":{"TaskHistoryRetentionLimit":7},"Raft":{"SnapshotInterval":10000,"KeepOldSnapshots":0,"ElectionTick":10,"HeartbeatTick":1},"Dispatcher":{"HeartbeatPeriod":2000000000},"CAConfig":{"NodeCertExpiry":7776000000000000},"TaskDefaults":{},"EncryptionConfig":{"AutoLockManagers":false}}"#,
    );
    let spec = parse_swarm_spec(&v).unwrap();
    assert_eq!(spec.orchestration.map(|o| o.task_history_retention_limit), Some(7));
    assert_eq!(spec.dispatcher.map(|d| d.heartbeat_period), Some(2_000_000_000));
    assert_eq!(spec.ca.map(|c| c.node_cert_expiry), Some(7_776_000_000_000_000));
    assert_eq!(parse_swarm_spec(&json(&swarm_spec(&spec))).unwrap(), spec);
    assert_eq!(parse_swarm_spec(&Value::Null).unwrap(), shoal_proto::ClusterSpec::default());
    // The swarm's object shows Docker's default task history when the
    // cluster has none of its own.
    let c = json(&cluster(&shoal_proto::Cluster::default()));
    assert_eq!(c["Spec"]["Orchestration"]["TaskHistoryRetentionLimit"], 5);
    // A wrong type is refused, not skipped.
    let e = parse_swarm_spec(&json!({"Orchestration": "7"})).unwrap_err();
    assert_eq!(e.field, "Orchestration");
    let e = parse_swarm_spec(&json!({"Dispatcher": {"HeartbeatPeriod": "5s"}})).unwrap_err();
    assert_eq!(e.field, "Dispatcher.HeartbeatPeriod");
}

#[test]
fn the_docker_clis_network_create_body_reads_as_asked_and_round_trips() {
    let v = body(
        r#"{"Driver":"overlay","Scope":"","IPAM":{"Driver":"default","Options":{},"Config":[{"Subnet":"10.9.0.0/24"}]},"Internal":false,"Attachable":true,"Ingress":false,"ConfigOnly":false,"ConfigFrom":null,"Options":{"o":"1"},"Labels":{"l":"1"},"Name":"nw"}"#,
    );
    let spec = parse_network_create(&v).unwrap();
    assert_eq!(
        spec.annotations.as_ref().map(|a| (a.name.as_str(), a.labels.clone())),
        Some(("nw", labels(&[("l", "1")])))
    );
    assert_eq!((spec.driver.as_str(), spec.attachable, spec.internal), ("overlay", true, false));
    assert_eq!((spec.ipam[0].subnet.as_str(), spec.driver_opts.clone()), ("10.9.0.0/24", labels(&[("o", "1")])));
    assert_eq!(parse_network_create(&json(&network_spec(&spec))).unwrap(), spec);
    let e = parse_network_create(&json!({"Name": "n", "Ingress": true})).unwrap_err();
    assert_eq!(e.field, "Ingress");
    // As listed, a swarm network's containers are null, as Docker shows them.
    let mut n = shoal_proto::Network { id: "n1".into(), spec: Some(spec), ..Default::default() };
    let listed = json(&network(&n));
    assert_eq!((listed["Containers"].clone(), listed["Scope"].clone()), (Value::Null, json!("swarm")));
    assert!(listed.as_object().is_some_and(|o| o.contains_key("Containers")));
    assert_eq!(listed["Options"], json!({"o": "1"}), "no VNI yet, none shown");
    // Allocated: its subnet, gateway and VNI.
    n.allocated = Some(shoal_proto::IpamConfig {
        subnet: "10.0.3.0/24".into(),
        gateway: "10.0.3.1".into(),
        ..Default::default()
    });
    n.vni = 4100;
    let inspected = json(&network(&n));
    assert_eq!(inspected["IPAM"]["Config"], json!([{"Subnet": "10.0.3.0/24", "Gateway": "10.0.3.1"}]));
    assert_eq!(inspected["Options"], json!({"o": "1", VXLAN_ID_OPTION: "4100"}));
    // On a node: the containers attached there and the peers.
    let endpoint = bollard_stubs::models::EndpointResource {
        name: Some("tool".into()),
        ipv4_address: Some("10.0.3.2/24".into()),
        ..Default::default()
    };
    let peer = bollard_stubs::models::PeerInfo { name: Some("n2".into()), ip: Some("192.168.7.2".into()) };
    let local = json(&with_node_view(network(&n), vec![("c1".into(), endpoint)], vec![peer]));
    assert_eq!(local["Containers"]["c1"]["IPv4Address"], "10.0.3.2/24");
    assert_eq!(local["Peers"], json!([{"Name": "n2", "IP": "192.168.7.2"}]));
}

#[test]
fn the_docker_clis_secret_and_config_bodies_read_as_asked() {
    let s = parse_file_object_spec(&body(r#"{"Name":"sec","Labels":{},"Data":"czNjcmV0Cg=="}"#)).unwrap();
    assert_eq!(s, FileObjectSpec { name: "sec".into(), labels: HashMap::new(), data: Some(b"s3cret\n".to_vec()) });
    let c = parse_file_object_spec(&body(r#"{"Name":"cfg","Labels":{"a":"b"},"Data":"Y29uZgo="}"#)).unwrap();
    assert_eq!((c.labels, c.data), (labels(&[("a", "b")]), Some(b"conf\n".to_vec())));
    let a = Some(Annotations { name: "pw".into(), labels: labels(&[("k", "v")]) });
    let read = parse_file_object_spec(&json(&file_object_spec(&a, b"\x00\xffdata"))).unwrap();
    assert_eq!(
        read,
        FileObjectSpec { name: "pw".into(), labels: labels(&[("k", "v")]), data: Some(b"\x00\xffdata".to_vec()) }
    );
    // A driver without a name is no driver, as Docker reads it (the
    // specification would refuse it); a named one is refused.
    assert!(parse_file_object_spec(&json!({"Name": "s", "Driver": {}, "Templating": {}})).is_ok());
    assert_eq!(parse_file_object_spec(&json!({"Name": "s", "Driver": {"Name": "vault"}})).unwrap_err().field, "Driver");
    assert_eq!(parse_file_object_spec(&json!({"Name": "s", "Data": "%%"})).unwrap_err().field, "Data");
    // A secret's data never leaves; a config's does.
    let secret_object = shoal_proto::Secret {
        spec: Some(shoal_proto::SecretSpec { annotations: a.clone(), data: b"x".to_vec() }),
        ..Default::default()
    };
    assert_eq!(json(&secret(&secret_object))["Spec"].get("Data"), None);
    let config_object = shoal_proto::Config {
        spec: Some(shoal_proto::ConfigSpec { annotations: a, data: b"x".to_vec() }),
        ..Default::default()
    };
    assert_eq!(json(&config(&config_object))["Spec"]["Data"], "eA==");
}

#[test]
fn an_error_within_a_larger_body_names_its_place() {
    let e = parse_service_spec(&json!({"Mode": {"Replicated": {"Replicas": -1}}})).unwrap_err();
    assert_eq!(
        e.within("Services[2]").to_string(),
        "invalid Services[2].Mode.Replicated.Replicas: must not be negative"
    );
    let e = parse_service_spec(&json!(5)).unwrap_err();
    assert_eq!(
        e.within("Services[0]").to_string(),
        "invalid Services[0]: invalid type: integer `5`, expected struct ServiceSpec"
    );
}

#[test]
fn the_deepest_bodies_serde_json_reads_are_read_on_a_request_threads_stack() {
    // serde_json reads at most 127 levels of nesting; unknown fields of a flattened
    // struct are buffered level by level, and the API reads bodies on tokio's
    // worker threads (2 MiB stacks).
    let deep = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let bodies = [
        format!(
            r#"{{"TaskTemplate": {{"ContainerSpec": {{"Unknown": {d}}}, "Unknown": {d}}}, "Unknown": {d}}}"#,
            d = deep(124)
        ),
        format!(r#"{{"TaskTemplate": {{"ContainerSpec": {{"Mounts": {d}}}}}}}"#, d = deep(124)),
        format!(r#"{{"Labels": {{"a": {d}}}}}"#, d = deep(125)),
    ];
    let reads = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            bodies
                .iter()
                .map(|b| {
                    let v: Value = serde_json::from_str(b).expect("within serde_json's depth");
                    parse_service_spec(&v).map(|_| ()).map_err(|e| e.field)
                })
                .collect::<Vec<_>>()
        })
        .expect("spawning a reader")
        .join()
        .expect("the reader does not overflow its stack");
    assert_eq!(reads[0], Ok(()));
    assert_eq!(reads[1], Err("TaskTemplate.ContainerSpec.Mounts[0][0]".to_string()));
    assert_eq!(reads[2], Err("Labels.a".to_string()));
}

#[test]
fn human_durations_match_docker() {
    assert_eq!(human_duration(500_000_000), "Less than a second");
    assert_eq!(human_duration(5_000_000_000), "5 seconds");
    assert_eq!(human_duration(90_000_000_000), "About a minute");
    assert_eq!(human_duration(3 * 3600 * 1_000_000_000), "3 hours");
}

#[test]
fn tmpfs_modes_beyond_the_permission_bits_are_refused() {
    // Not truncated to 32 bits or masked into 0o7777.
    for mode in [0o10000u64, 0o100777, 1 << 32 | 0o755] {
        let bad = json!({"Name": "w", "TaskTemplate": {"ContainerSpec": {"Image": "x", "Mounts": [
            {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"Mode": mode}}
        ]}}});
        let e = parse_service_spec(&bad).expect_err("mode beyond 0o7777");
        assert!(e.field.contains("TmpfsOptions.Mode"), "{e}");
    }
}

/// Docker's `GET /info` shows the cluster as a `ClusterInfo`, which has no
/// join tokens (only `GET /swarm` gives them); shoal's showed the whole
/// `Swarm`, tokens included.
#[test]
fn info_shows_the_cluster_without_its_join_tokens() {
    let c = shoal_proto::Cluster {
        id: "cluster1".into(),
        join_tokens: Some(shoal_proto::JoinTokens { worker: "SWMTKN-w".into(), manager: "SWMTKN-m".into() }),
        ..Default::default()
    };
    let shown = json(&cluster_info(&c));
    assert_eq!(shown["ID"], "cluster1");
    assert!(shown.get("JoinTokens").is_none(), "{shown}");
    assert!(!shown.to_string().contains("SWMTKN"), "{shown}");
    assert_eq!(json(&cluster(&c))["JoinTokens"]["Worker"], "SWMTKN-w");
}

/// Docker counts a paused container as paused, not running; shoal counted it running.
#[test]
fn info_counts_paused_containers_apart() {
    use shoal_runtime::{ContainerInfo, ContainerState};
    let c = |state: ContainerState, paused: bool| ContainerInfo {
        id: String::new(),
        name: String::new(),
        image: String::new(),
        image_id: String::new(),
        labels: Default::default(),
        state,
        pid: None,
        exit_code: None,
        error: None,
        created_at: 0,
        started_at: None,
        finished_at: None,
        command: Vec::new(),
        oom_killed: false,
        paused,
        stop_signal: String::new(),
        stop_timeout: 10,
        restart_policy: Default::default(),
        restart_count: 0,
        stopped_by_user: false,
        devices: Vec::new(),
        tty: false,
        open_stdin: false,
        stdin_once: false,
        auto_remove: false,
    };
    let containers = [
        c(ContainerState::Running, false),
        c(ContainerState::Running, true),
        c(ContainerState::Exited, false),
        c(ContainerState::Created, false),
    ];
    assert_eq!(container_counts(&containers), (1, 1, 2));
}
