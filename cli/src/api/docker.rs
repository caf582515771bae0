//! The object model rendered as the Docker Engine API's JSON, and read back
//! from it: PascalCase fields, `Annotations` inlined into specs, `Version`
//! `{Index}`, RFC 3339 times, durations in nanoseconds, lowercase enums.
//!
//! Rendering and parsing share the field names below so that a spec read
//! with `GET /services/{id}` and posted back to `/update` round-trips.

use std::collections::HashMap;

use serde_json::{json, Map, Value};
use shoal_proto::{
    mount, service_mode, Annotations, Cluster, Config, ConfigReference, ContainerSpec, DependencyCondition, DnsConfig,
    EndpointMode, EndpointSpec, FailureAction, FileTarget, GlobalService, HealthConfig, IpamConfig, Mount,
    NetworkAttachmentConfig, NetworkSpec, Node, NodeAvailability, NodeRole, NodeState, Placement, PortConfig,
    PortProtocol, PublishMode, Reachability, ReplicatedService, ResourceRequirements, Resources, RestartCondition,
    RestartPolicy, Secret, SecretReference, Service, ServiceDependency, ServiceMode, ServiceSpec, Task, TaskSpec,
    Ulimit, UpdateConfig, UpdateOrder,
};

/// RFC 3339 with nanoseconds, UTC, as Go's `time.Time` marshals.
pub fn time(ns: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ns as i128)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".into())
}

fn meta(m: &Option<shoal_proto::Meta>) -> (Value, Value, Value) {
    let m = m.unwrap_or_default();
    (json!({ "Index": m.version }), json!(time(m.created_at)), json!(time(m.updated_at)))
}

fn labels(a: &Option<Annotations>) -> Value {
    let mut sorted: Vec<_> = a.as_ref().map(|a| a.labels.iter().collect()).unwrap_or_default();
    sorted.sort();
    Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

fn map_json(m: &HashMap<String, String>) -> Value {
    let mut sorted: Vec<_> = m.iter().collect();
    sorted.sort();
    Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

// ------------------------------------------------------------- rendering

pub fn service_spec(s: &ServiceSpec) -> Value {
    let mut o = Map::new();
    o.insert("Name".into(), json!(s.annotations.as_ref().map(|a| a.name.as_str()).unwrap_or("")));
    o.insert("Labels".into(), labels(&s.annotations));
    o.insert("TaskTemplate".into(), task_spec(s.task.as_ref().cloned().unwrap_or_default()));
    match s.mode.as_ref().and_then(|m| m.mode.as_ref()) {
        Some(service_mode::Mode::Replicated(r)) => {
            o.insert("Mode".into(), json!({"Replicated": {"Replicas": r.replicas}}))
        }
        Some(service_mode::Mode::Global(_)) => o.insert("Mode".into(), json!({"Global": {}})),
        None => o.insert("Mode".into(), json!({})),
    };
    let mode = match s.endpoint.as_ref().map(|e| e.mode()).unwrap_or_default() {
        EndpointMode::Vip => "vip",
        EndpointMode::Dnsrr => "dnsrr",
    };
    let mut endpoint = Map::new();
    endpoint.insert("Mode".into(), json!(mode));
    let ports = s.endpoint.as_ref().map(|e| e.ports.as_slice()).unwrap_or_default();
    if !ports.is_empty() {
        endpoint.insert("Ports".into(), Value::Array(ports.iter().map(port).collect()));
    }
    o.insert("EndpointSpec".into(), Value::Object(endpoint));
    if let Some(u) = &s.update {
        o.insert("UpdateConfig".into(), update_config(u));
    }
    if let Some(u) = &s.rollback {
        o.insert("RollbackConfig".into(), update_config(u));
    }
    if !s.depends_on.is_empty() {
        let deps: Vec<Value> = s
            .depends_on
            .iter()
            .map(|d| json!({ "Service": d.service, "Condition": condition_name(d.condition()) }))
            .collect();
        o.insert("DependsOn".into(), Value::Array(deps));
    }
    Value::Object(o)
}

fn condition_name(c: DependencyCondition) -> &'static str {
    match c {
        DependencyCondition::ServiceStarted => "service_started",
        DependencyCondition::ServiceHealthy => "service_healthy",
        DependencyCondition::ServiceCompletedSuccessfully => "service_completed_successfully",
    }
}

fn protocol_name(p: PortProtocol) -> &'static str {
    match p {
        PortProtocol::Tcp => "tcp",
        PortProtocol::Udp => "udp",
        PortProtocol::Sctp => "sctp",
    }
}

/// A port as Docker's `PortConfig`.
pub fn port(p: &PortConfig) -> Value {
    let mut o = Map::new();
    if !p.name.is_empty() {
        o.insert("Name".into(), json!(p.name));
    }
    o.insert("Protocol".into(), json!(protocol_name(p.protocol())));
    o.insert("TargetPort".into(), json!(p.target_port));
    if p.published_port != 0 {
        o.insert("PublishedPort".into(), json!(p.published_port));
    }
    let mode = match p.publish_mode() {
        PublishMode::Ingress => "ingress",
        PublishMode::Host => "host",
    };
    o.insert("PublishMode".into(), json!(mode));
    Value::Object(o)
}

fn update_config(u: &UpdateConfig) -> Value {
    let action = match u.failure_action() {
        FailureAction::Pause => "pause",
        FailureAction::Continue => "continue",
        FailureAction::Rollback => "rollback",
    };
    let order = match u.order() {
        UpdateOrder::StopFirst => "stop-first",
        UpdateOrder::StartFirst => "start-first",
    };
    json!({
        "Parallelism": u.parallelism,
        "Delay": u.delay,
        "FailureAction": action,
        "Monitor": u.monitor,
        "MaxFailureRatio": u.max_failure_ratio,
        "Order": order,
    })
}

fn file_target(f: &Option<FileTarget>) -> Value {
    let f = f.clone().unwrap_or_default();
    json!({ "Name": f.name, "UID": f.uid, "GID": f.gid, "Mode": f.mode })
}

fn resources(r: &Option<Resources>) -> Value {
    let r = r.unwrap_or_default();
    let mut o = Map::new();
    if r.nano_cpus != 0 {
        o.insert("NanoCPUs".into(), json!(r.nano_cpus));
    }
    if r.memory_bytes != 0 {
        o.insert("MemoryBytes".into(), json!(r.memory_bytes));
    }
    if r.pids != 0 {
        o.insert("Pids".into(), json!(r.pids));
    }
    Value::Object(o)
}

pub fn task_spec(t: TaskSpec) -> Value {
    let c = t.container.unwrap_or_default();
    let mut cs = Map::new();
    cs.insert("Image".into(), json!(c.image));
    if !c.labels.is_empty() {
        cs.insert("Labels".into(), map_json(&c.labels));
    }
    if !c.command.is_empty() {
        cs.insert("Command".into(), json!(c.command));
    }
    if !c.args.is_empty() {
        cs.insert("Args".into(), json!(c.args));
    }
    if !c.hostname.is_empty() {
        cs.insert("Hostname".into(), json!(c.hostname));
    }
    if !c.env.is_empty() {
        cs.insert("Env".into(), json!(c.env));
    }
    if !c.dir.is_empty() {
        cs.insert("Dir".into(), json!(c.dir));
    }
    if !c.user.is_empty() {
        cs.insert("User".into(), json!(c.user));
    }
    if !c.stop_signal.is_empty() {
        cs.insert("StopSignal".into(), json!(c.stop_signal));
    }
    if let Some(g) = c.stop_grace_period {
        cs.insert("StopGracePeriod".into(), json!(g));
    }
    if c.tty {
        cs.insert("TTY".into(), json!(true));
    }
    if c.read_only {
        cs.insert("ReadOnly".into(), json!(true));
    }
    if let Some(i) = c.init {
        cs.insert("Init".into(), json!(i));
    }
    if !c.mounts.is_empty() {
        let mounts: Vec<Value> = c
            .mounts
            .iter()
            .map(|m| {
                let mut o = Map::new();
                let kind = match m.r#type() {
                    mount::Type::Bind => "bind",
                    mount::Type::Volume => "volume",
                    mount::Type::Tmpfs => "tmpfs",
                };
                o.insert("Type".into(), json!(kind));
                if !m.source.is_empty() {
                    o.insert("Source".into(), json!(m.source));
                }
                o.insert("Target".into(), json!(m.target));
                if m.read_only {
                    o.insert("ReadOnly".into(), json!(true));
                }
                if m.r#type() == mount::Type::Volume && (!m.volume_labels.is_empty() || m.volume_nocopy) {
                    o.insert(
                        "VolumeOptions".into(),
                        json!({ "NoCopy": m.volume_nocopy, "Labels": map_json(&m.volume_labels) }),
                    );
                }
                if m.r#type() == mount::Type::Tmpfs && (m.tmpfs_size != 0 || m.tmpfs_mode != 0) {
                    let mut t = Map::new();
                    if m.tmpfs_size != 0 {
                        t.insert("SizeBytes".into(), json!(m.tmpfs_size));
                    }
                    if m.tmpfs_mode != 0 {
                        t.insert("Mode".into(), json!(m.tmpfs_mode));
                    }
                    o.insert("TmpfsOptions".into(), Value::Object(t));
                }
                Value::Object(o)
            })
            .collect();
        cs.insert("Mounts".into(), Value::Array(mounts));
    }
    if !c.secrets.is_empty() {
        let refs: Vec<Value> = c
            .secrets
            .iter()
            .map(|r| json!({ "File": file_target(&r.file), "SecretID": r.secret_id, "SecretName": r.secret_name }))
            .collect();
        cs.insert("Secrets".into(), Value::Array(refs));
    }
    if !c.configs.is_empty() {
        let refs: Vec<Value> = c
            .configs
            .iter()
            .map(|r| json!({ "File": file_target(&r.file), "ConfigID": r.config_id, "ConfigName": r.config_name }))
            .collect();
        cs.insert("Configs".into(), Value::Array(refs));
    }
    if let Some(h) = &c.healthcheck {
        let mut o = Map::new();
        o.insert("Test".into(), json!(h.test));
        for (k, v) in [
            ("Interval", h.interval),
            ("Timeout", h.timeout),
            ("StartPeriod", h.start_period),
            ("StartInterval", h.start_interval),
        ] {
            if v != 0 {
                o.insert(k.into(), json!(v));
            }
        }
        if h.retries != 0 {
            o.insert("Retries".into(), json!(h.retries));
        }
        cs.insert("Healthcheck".into(), Value::Object(o));
    }
    if !c.cap_add.is_empty() {
        cs.insert("CapabilityAdd".into(), json!(c.cap_add));
    }
    if !c.cap_drop.is_empty() {
        cs.insert("CapabilityDrop".into(), json!(c.cap_drop));
    }
    if let Some(d) = &c.dns {
        cs.insert(
            "DNSConfig".into(),
            json!({ "Nameservers": d.nameservers, "Search": d.search, "Options": d.options }),
        );
    }
    if !c.hosts.is_empty() {
        cs.insert("Hosts".into(), json!(c.hosts));
    }
    if !c.sysctls.is_empty() {
        cs.insert("Sysctls".into(), map_json(&c.sysctls));
    }
    if !c.ulimits.is_empty() {
        let u: Vec<Value> =
            c.ulimits.iter().map(|u| json!({ "Name": u.name, "Soft": u.soft, "Hard": u.hard })).collect();
        cs.insert("Ulimits".into(), Value::Array(u));
    }
    if c.open_stdin {
        cs.insert("OpenStdin".into(), json!(true));
    }
    let mut o = Map::new();
    o.insert("ContainerSpec".into(), Value::Object(cs));
    let r = t.resources.unwrap_or_default();
    o.insert("Resources".into(), json!({ "Limits": resources(&r.limits), "Reservations": resources(&r.reservations) }));
    if let Some(p) = t.restart {
        let cond = match p.condition() {
            RestartCondition::Any => "any",
            RestartCondition::OnFailure => "on-failure",
            RestartCondition::None => "none",
        };
        let mut rp = Map::new();
        rp.insert("Condition".into(), json!(cond));
        if let Some(d) = p.delay {
            rp.insert("Delay".into(), json!(d));
        }
        rp.insert("MaxAttempts".into(), json!(p.max_attempts));
        if p.window != 0 {
            rp.insert("Window".into(), json!(p.window));
        }
        o.insert("RestartPolicy".into(), Value::Object(rp));
    }
    if let Some(p) = t.placement {
        let mut pl = Map::new();
        if !p.constraints.is_empty() {
            pl.insert("Constraints".into(), json!(p.constraints));
        }
        if p.max_replicas != 0 {
            pl.insert("MaxReplicas".into(), json!(p.max_replicas));
        }
        if !p.spread_preferences.is_empty() {
            let prefs: Vec<Value> =
                p.spread_preferences.iter().map(|d| json!({ "Spread": { "SpreadDescriptor": d } })).collect();
            pl.insert("Preferences".into(), Value::Array(prefs));
        }
        o.insert("Placement".into(), Value::Object(pl));
    }
    if !t.networks.is_empty() {
        let nets: Vec<Value> = t
            .networks
            .iter()
            .map(|n| {
                let mut m = Map::new();
                m.insert("Target".into(), json!(n.target));
                if !n.aliases.is_empty() {
                    m.insert("Aliases".into(), json!(n.aliases));
                }
                Value::Object(m)
            })
            .collect();
        o.insert("Networks".into(), Value::Array(nets));
    }
    o.insert("ForceUpdate".into(), json!(t.force_update));
    o.insert("Runtime".into(), json!("container"));
    Value::Object(o)
}

/// Running, desired and completed task counts of a service.
#[derive(Debug, Default, Clone, Copy)]
pub struct ServiceCounts {
    pub running: u64,
    pub desired: u64,
    pub completed: u64,
}

pub fn service(s: &Service, counts: Option<ServiceCounts>) -> Value {
    let (version, created, updated) = meta(&s.meta);
    let spec = s.spec.clone().unwrap_or_default();
    let mut o = Map::new();
    o.insert("ID".into(), json!(s.id));
    o.insert("Version".into(), version);
    o.insert("CreatedAt".into(), created);
    o.insert("UpdatedAt".into(), updated);
    o.insert("Spec".into(), service_spec(&spec));
    if let Some(p) = &s.previous_spec {
        o.insert("PreviousSpec".into(), service_spec(p));
    }
    // Published ports are not allocated yet (the routing mesh is to come):
    // the endpoint shows what the spec asks for.
    let endpoint_spec = service_spec(&spec)["EndpointSpec"].clone();
    let mut endpoint = Map::new();
    if let Some(ports) = endpoint_spec.get("Ports") {
        endpoint.insert("Ports".into(), ports.clone());
    }
    endpoint.insert("Spec".into(), endpoint_spec);
    o.insert("Endpoint".into(), Value::Object(endpoint));
    if let Some(c) = counts {
        o.insert(
            "ServiceStatus".into(),
            json!({ "RunningTasks": c.running, "DesiredTasks": c.desired, "CompletedTasks": c.completed }),
        );
    }
    Value::Object(o)
}

pub fn task(t: &Task) -> Value {
    let (version, created, updated) = meta(&t.meta);
    let st = t.status.clone().unwrap_or_default();
    let mut status = Map::new();
    status.insert("Timestamp".into(), json!(time(st.timestamp)));
    status.insert("State".into(), json!(st.state().docker_name()));
    status.insert("Message".into(), json!(st.message));
    if !st.err.is_empty() {
        status.insert("Err".into(), json!(st.err));
    }
    if let Some(c) = &st.container {
        status.insert(
            "ContainerStatus".into(),
            json!({ "ContainerID": c.container_id, "PID": c.pid, "ExitCode": c.exit_code }),
        );
    }
    status.insert("PortStatus".into(), json!({}));
    json!({
        "ID": t.id,
        "Version": version,
        "CreatedAt": created,
        "UpdatedAt": updated,
        "Name": t.name(),
        "Labels": {},
        "Spec": task_spec(t.spec.clone().unwrap_or_default()),
        "ServiceID": t.service_id,
        "Slot": t.slot,
        "NodeID": t.node_id,
        "Status": Value::Object(status),
        "DesiredState": t.desired_state().docker_name(),
    })
}

fn node_state(s: NodeState) -> &'static str {
    match s {
        NodeState::Unknown => "unknown",
        NodeState::Down => "down",
        NodeState::Ready => "ready",
        NodeState::Disconnected => "disconnected",
    }
}

fn role(r: NodeRole) -> &'static str {
    match r {
        NodeRole::Worker => "worker",
        NodeRole::Manager => "manager",
    }
}

/// A node; `leader_raft_id` marks the manager that currently leads.
pub fn node(n: &Node, leader_raft_id: Option<u64>) -> Value {
    let (version, created, updated) = meta(&n.meta);
    let spec = n.spec.clone().unwrap_or_default();
    let d = n.description.clone().unwrap_or_default();
    let st = n.status.clone().unwrap_or_default();
    let availability = match spec.availability() {
        NodeAvailability::Active => "active",
        NodeAvailability::Pause => "pause",
        NodeAvailability::Drain => "drain",
    };
    let p = d.platform.clone().unwrap_or_default();
    let r = d.resources.unwrap_or_default();
    let mut o = json!({
        "ID": n.id,
        "Version": version,
        "CreatedAt": created,
        "UpdatedAt": updated,
        "Spec": {
            "Name": spec.annotations.as_ref().map(|a| a.name.as_str()).unwrap_or(""),
            "Labels": labels(&spec.annotations),
            "Role": role(spec.desired_role()),
            "Availability": availability,
        },
        "Description": {
            "Hostname": d.hostname,
            "Platform": { "Architecture": p.architecture, "OS": p.os },
            "Resources": { "NanoCPUs": r.nano_cpus, "MemoryBytes": r.memory_bytes },
            "Engine": { "EngineVersion": d.engine_version, "Plugins": [] },
            "TLSInfo": {},
        },
        "Status": { "State": node_state(st.state()), "Message": st.message, "Addr": st.addr },
    });
    if let Some(m) = &n.manager_status {
        // A manager is as reachable as its node's daemon: the leader hears from
        // it through its agent's heartbeats.
        let reach = match (leader_raft_id == Some(m.raft_id), st.state(), m.reachability()) {
            (true, _, _) | (_, NodeState::Ready, _) => "reachable",
            (_, NodeState::Down | NodeState::Disconnected, _) | (_, _, Reachability::Unreachable) => "unreachable",
            (_, _, Reachability::Unknown) => "unknown",
            (_, _, Reachability::Reachable) => "reachable",
        };
        o["ManagerStatus"] = json!({
            "Leader": leader_raft_id == Some(m.raft_id),
            "Reachability": reach,
            "Addr": m.addr,
        });
    }
    o
}

pub fn cluster(c: &Cluster) -> Value {
    let (version, created, updated) = meta(&c.meta);
    let spec = c.spec.clone().unwrap_or_default();
    let limits = shoal_manager::control::limits::Limits::of_spec(&spec);
    let tokens = c.join_tokens.clone().unwrap_or_default();
    let raft = spec.raft.unwrap_or_default();
    json!({
        "ID": c.id,
        "Version": version,
        "CreatedAt": created,
        "UpdatedAt": updated,
        "Spec": {
            "Name": "default",
            "Labels": labels(&spec.annotations),
            "Orchestration": { "TaskHistoryRetentionLimit": spec.orchestration.map(|o| o.task_history_retention_limit).unwrap_or(5) },
            "Raft": { "SnapshotInterval": raft.snapshot_interval, "KeepOldSnapshots": 0, "HeartbeatTick": 1, "ElectionTick": 10 },
            "Dispatcher": { "HeartbeatPeriod": spec.dispatcher.map(|d| d.heartbeat_period).unwrap_or(0) },
            "CAConfig": { "NodeCertExpiry": spec.ca.map(|c| c.node_cert_expiry).unwrap_or(0) },
            // shoal's own: what one request may ask of the swarm.
            "Limits": { "MaxReplicas": limits.max_replicas },
            "TaskDefaults": {},
            "EncryptionConfig": { "AutoLockManagers": false },
        },
        "TLSInfo": {},
        "RootRotationInProgress": false,
        "DefaultAddrPool": ["10.0.0.0/8"],
        "SubnetSize": 24,
        "DataPathPort": 4789,
        "JoinTokens": { "Worker": tokens.worker, "Manager": tokens.manager },
    })
}

// --------------------------------------------------------------- parsing

/// Why a posted spec could not be read; names the field.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

fn err<T>(field: &str, message: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError { field: field.into(), message: message.into() })
}

fn obj<'a>(v: &'a Value, field: &str) -> Result<Option<&'a Map<String, Value>>, SpecError> {
    match v {
        Value::Null => Ok(None),
        Value::Object(m) => Ok(Some(m)),
        _ => err(field, "expected an object"),
    }
}

fn get<'a>(m: Option<&'a Map<String, Value>>, key: &str) -> &'a Value {
    m.and_then(|m| m.get(key)).unwrap_or(&Value::Null)
}

fn string(v: &Value, field: &str) -> Result<String, SpecError> {
    match v {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        _ => err(field, "expected a string"),
    }
}

fn strings(v: &Value, field: &str) -> Result<Vec<String>, SpecError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(a) => a.iter().map(|x| string(x, field)).collect(),
        _ => err(field, "expected a list of strings"),
    }
}

fn string_map(v: &Value, field: &str) -> Result<HashMap<String, String>, SpecError> {
    match v {
        Value::Null => Ok(HashMap::new()),
        Value::Object(m) => m.iter().map(|(k, x)| Ok((k.clone(), string(x, field)?))).collect(),
        _ => err(field, "expected an object of strings"),
    }
}

fn int(v: &Value, field: &str) -> Result<Option<i64>, SpecError> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Ok(Some(i)),
            None => err(field, "expected an integer"),
        },
        _ => err(field, "expected an integer"),
    }
}

fn uint(v: &Value, field: &str) -> Result<Option<u64>, SpecError> {
    match int(v, field)? {
        Some(i) if i < 0 => err(field, "must not be negative"),
        other => Ok(other.map(|i| i as u64)),
    }
}

fn boolean(v: &Value, field: &str) -> Result<Option<bool>, SpecError> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        _ => err(field, "expected true or false"),
    }
}

fn parse_resources(v: &Value, field: &str) -> Result<Option<Resources>, SpecError> {
    let Some(m) = obj(v, field)? else { return Ok(None) };
    let r = Resources {
        nano_cpus: int(get(Some(m), "NanoCPUs"), &format!("{field}.NanoCPUs"))?.unwrap_or(0),
        memory_bytes: int(get(Some(m), "MemoryBytes"), &format!("{field}.MemoryBytes"))?.unwrap_or(0),
        pids: int(get(Some(m), "Pids"), &format!("{field}.Pids"))?.unwrap_or(0),
    };
    // Docker renders empty `{}` limits; they mean "no limits".
    Ok((r != Resources::default()).then_some(r))
}

pub fn parse_task_spec(v: &Value) -> Result<TaskSpec, SpecError> {
    let f = "TaskTemplate";
    let t = obj(v, f)?;
    let c = obj(get(t, "ContainerSpec"), "TaskTemplate.ContainerSpec")?;
    let cf = |k: &str| format!("TaskTemplate.ContainerSpec.{k}");
    let container = ContainerSpec {
        image: string(get(c, "Image"), &cf("Image"))?,
        labels: string_map(get(c, "Labels"), &cf("Labels"))?,
        command: strings(get(c, "Command"), &cf("Command"))?,
        args: strings(get(c, "Args"), &cf("Args"))?,
        hostname: string(get(c, "Hostname"), &cf("Hostname"))?,
        env: strings(get(c, "Env"), &cf("Env"))?,
        dir: string(get(c, "Dir"), &cf("Dir"))?,
        user: string(get(c, "User"), &cf("User"))?,
        stop_signal: string(get(c, "StopSignal"), &cf("StopSignal"))?,
        stop_grace_period: int(get(c, "StopGracePeriod"), &cf("StopGracePeriod"))?,
        tty: boolean(get(c, "TTY"), &cf("TTY"))?.unwrap_or(false),
        read_only: boolean(get(c, "ReadOnly"), &cf("ReadOnly"))?.unwrap_or(false),
        init: boolean(get(c, "Init"), &cf("Init"))?,
        mounts: list(get(c, "Mounts"), &cf("Mounts"), parse_mount)?,
        secrets: list(get(c, "Secrets"), &cf("Secrets"), |v, f| {
            let m = obj(v, f)?;
            Ok(SecretReference {
                secret_id: string(get(m, "SecretID"), &format!("{f}.SecretID"))?,
                secret_name: string(get(m, "SecretName"), &format!("{f}.SecretName"))?,
                file: parse_file_target(get(m, "File"), &format!("{f}.File"))?,
            })
        })?,
        configs: list(get(c, "Configs"), &cf("Configs"), |v, f| {
            let m = obj(v, f)?;
            Ok(ConfigReference {
                config_id: string(get(m, "ConfigID"), &format!("{f}.ConfigID"))?,
                config_name: string(get(m, "ConfigName"), &format!("{f}.ConfigName"))?,
                file: parse_file_target(get(m, "File"), &format!("{f}.File"))?,
            })
        })?,
        healthcheck: match obj(get(c, "Healthcheck"), &cf("Healthcheck"))? {
            None => None,
            Some(h) => {
                let hf = |k: &str| format!("TaskTemplate.ContainerSpec.Healthcheck.{k}");
                Some(HealthConfig {
                    test: strings(get(Some(h), "Test"), &hf("Test"))?,
                    interval: int(get(Some(h), "Interval"), &hf("Interval"))?.unwrap_or(0),
                    timeout: int(get(Some(h), "Timeout"), &hf("Timeout"))?.unwrap_or(0),
                    retries: uint(get(Some(h), "Retries"), &hf("Retries"))?.unwrap_or(0),
                    start_period: int(get(Some(h), "StartPeriod"), &hf("StartPeriod"))?.unwrap_or(0),
                    start_interval: int(get(Some(h), "StartInterval"), &hf("StartInterval"))?.unwrap_or(0),
                })
            }
        },
        cap_add: strings(get(c, "CapabilityAdd"), &cf("CapabilityAdd"))?,
        cap_drop: strings(get(c, "CapabilityDrop"), &cf("CapabilityDrop"))?,
        dns: match obj(get(c, "DNSConfig"), &cf("DNSConfig"))? {
            None => None,
            Some(d) => Some(DnsConfig {
                nameservers: strings(get(Some(d), "Nameservers"), &cf("DNSConfig.Nameservers"))?,
                search: strings(get(Some(d), "Search"), &cf("DNSConfig.Search"))?,
                options: strings(get(Some(d), "Options"), &cf("DNSConfig.Options"))?,
            }),
        },
        hosts: strings(get(c, "Hosts"), &cf("Hosts"))?,
        sysctls: string_map(get(c, "Sysctls"), &cf("Sysctls"))?,
        ulimits: list(get(c, "Ulimits"), &cf("Ulimits"), |v, f| {
            let m = obj(v, f)?;
            Ok(Ulimit {
                name: string(get(m, "Name"), &format!("{f}.Name"))?,
                soft: int(get(m, "Soft"), &format!("{f}.Soft"))?.unwrap_or(0),
                hard: int(get(m, "Hard"), &format!("{f}.Hard"))?.unwrap_or(0),
            })
        })?,
        open_stdin: boolean(get(c, "OpenStdin"), &cf("OpenStdin"))?.unwrap_or(false),
    };
    let res = obj(get(t, "Resources"), "TaskTemplate.Resources")?;
    let limits = parse_resources(get(res, "Limits"), "TaskTemplate.Resources.Limits")?;
    let reservations = parse_resources(get(res, "Reservations"), "TaskTemplate.Resources.Reservations")?;
    let resources =
        (limits.is_some() || reservations.is_some()).then_some(ResourceRequirements { limits, reservations });
    let restart = match obj(get(t, "RestartPolicy"), "TaskTemplate.RestartPolicy")? {
        None => None,
        Some(r) => {
            let rf = |k: &str| format!("TaskTemplate.RestartPolicy.{k}");
            let condition = match string(get(Some(r), "Condition"), &rf("Condition"))?.as_str() {
                "" | "any" => RestartCondition::Any,
                "on-failure" => RestartCondition::OnFailure,
                "none" => RestartCondition::None,
                other => return err(&rf("Condition"), format!("\"{other}\" is not one of any, on-failure, none")),
            };
            Some(RestartPolicy {
                condition: condition as i32,
                delay: int(get(Some(r), "Delay"), &rf("Delay"))?,
                max_attempts: uint(get(Some(r), "MaxAttempts"), &rf("MaxAttempts"))?.unwrap_or(0),
                window: int(get(Some(r), "Window"), &rf("Window"))?.unwrap_or(0),
            })
        }
    };
    let placement = match obj(get(t, "Placement"), "TaskTemplate.Placement")? {
        None => None,
        Some(p) => Some(Placement {
            constraints: strings(get(Some(p), "Constraints"), "TaskTemplate.Placement.Constraints")?,
            max_replicas: uint(get(Some(p), "MaxReplicas"), "TaskTemplate.Placement.MaxReplicas")?.unwrap_or(0),
            spread_preferences: list(get(Some(p), "Preferences"), "TaskTemplate.Placement.Preferences", |v, f| {
                let spread = obj(get(obj(v, f)?, "Spread"), &format!("{f}.Spread"))?;
                string(get(spread, "SpreadDescriptor"), &format!("{f}.Spread.SpreadDescriptor"))
            })?,
        }),
    };
    let networks = match get(t, "Networks") {
        Value::Null => Vec::new(),
        Value::Array(a) => a
            .iter()
            .map(|n| {
                let m = obj(n, "TaskTemplate.Networks[]")?;
                Ok(NetworkAttachmentConfig {
                    target: string(get(m, "Target"), "TaskTemplate.Networks[].Target")?,
                    aliases: strings(get(m, "Aliases"), "TaskTemplate.Networks[].Aliases")?,
                })
            })
            .collect::<Result<_, SpecError>>()?,
        _ => return err("TaskTemplate.Networks", "expected a list"),
    };
    Ok(TaskSpec {
        container: Some(container),
        resources,
        restart,
        placement,
        networks,
        force_update: uint(get(t, "ForceUpdate"), "TaskTemplate.ForceUpdate")?.unwrap_or(0),
    })
}

/// Reads a Docker `ServiceSpec`. An absent `Mode` or `Replicas` means one
/// replica, as Docker's daemon does.
pub fn parse_service_spec(v: &Value) -> Result<ServiceSpec, SpecError> {
    let Some(s) = obj(v, "ServiceSpec")? else { return err("ServiceSpec", "the request body is empty") };
    let annotations = Annotations {
        name: string(get(Some(s), "Name"), "Name")?,
        labels: string_map(get(Some(s), "Labels"), "Labels")?,
    };
    let task = parse_task_spec(get(Some(s), "TaskTemplate"))?;
    let mode = match obj(get(Some(s), "Mode"), "Mode")? {
        None => service_mode::Mode::Replicated(ReplicatedService { replicas: 1 }),
        Some(m) if m.contains_key("Global") => service_mode::Mode::Global(GlobalService {}),
        Some(m) if m.contains_key("ReplicatedJob") || m.contains_key("GlobalJob") => {
            return err("Mode", "jobs (replicated-job, global-job) are not supported yet")
        }
        Some(m) => {
            let r = obj(get(Some(m), "Replicated"), "Mode.Replicated")?;
            let replicas = uint(get(r, "Replicas"), "Mode.Replicated.Replicas")?.unwrap_or(1);
            service_mode::Mode::Replicated(ReplicatedService { replicas })
        }
    };
    let endpoint = match obj(get(Some(s), "EndpointSpec"), "EndpointSpec")? {
        None => None,
        Some(e) => {
            let mode = match string(get(Some(e), "Mode"), "EndpointSpec.Mode")?.as_str() {
                "" | "vip" => EndpointMode::Vip,
                "dnsrr" => EndpointMode::Dnsrr,
                other => return err("EndpointSpec.Mode", format!("\"{other}\" is not one of vip, dnsrr")),
            };
            let ports = list(get(Some(e), "Ports"), "EndpointSpec.Ports", parse_port)?;
            if mode == EndpointMode::Dnsrr && ports.iter().any(|p| p.publish_mode() == PublishMode::Ingress) {
                return err("EndpointSpec.Ports", "port published with ingress mode can't be used with dnsrr mode");
            }
            Some(EndpointSpec { mode: mode as i32, ports })
        }
    };
    let depends_on = list(get(Some(s), "DependsOn"), "DependsOn", |v, f| {
        let m = obj(v, f)?;
        let condition = match string(get(m, "Condition"), &format!("{f}.Condition"))?.as_str() {
            "" | "service_started" => DependencyCondition::ServiceStarted,
            "service_healthy" => DependencyCondition::ServiceHealthy,
            "service_completed_successfully" => DependencyCondition::ServiceCompletedSuccessfully,
            other => {
                return err(
                    &format!("{f}.Condition"),
                    format!(
                        "\"{other}\" is not one of service_started, service_healthy, service_completed_successfully"
                    ),
                )
            }
        };
        Ok(ServiceDependency {
            service: string(get(m, "Service"), &format!("{f}.Service"))?,
            condition: condition as i32,
        })
    })?;
    Ok(ServiceSpec {
        annotations: Some(annotations),
        task: Some(task),
        mode: Some(ServiceMode { mode: Some(mode) }),
        endpoint: endpoint.filter(|e| e.mode() != EndpointMode::Vip || !e.ports.is_empty()),
        update: parse_update_config(get(Some(s), "UpdateConfig"), "UpdateConfig")?,
        rollback: parse_update_config(get(Some(s), "RollbackConfig"), "RollbackConfig")?,
        depends_on,
    })
}

/// A list whose items `item` reads; the field names the item's index.
fn list<T>(v: &Value, field: &str, item: impl Fn(&Value, &str) -> Result<T, SpecError>) -> Result<Vec<T>, SpecError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(a) => a.iter().enumerate().map(|(i, x)| item(x, &format!("{field}[{i}]"))).collect(),
        _ => err(field, "expected a list"),
    }
}

fn parse_mount(v: &Value, f: &str) -> Result<Mount, SpecError> {
    let m = obj(v, f)?;
    let kind = match string(get(m, "Type"), &format!("{f}.Type"))?.as_str() {
        "" | "volume" => mount::Type::Volume,
        "bind" => mount::Type::Bind,
        "tmpfs" => mount::Type::Tmpfs,
        other => return err(&format!("{f}.Type"), format!("\"{other}\" is not one of bind, volume, tmpfs")),
    };
    let vo = obj(get(m, "VolumeOptions"), &format!("{f}.VolumeOptions"))?;
    let to = obj(get(m, "TmpfsOptions"), &format!("{f}.TmpfsOptions"))?;
    let mut out = Mount {
        source: string(get(m, "Source"), &format!("{f}.Source"))?,
        target: string(get(m, "Target"), &format!("{f}.Target"))?,
        read_only: boolean(get(m, "ReadOnly"), &format!("{f}.ReadOnly"))?.unwrap_or(false),
        tmpfs_size: int(get(to, "SizeBytes"), &format!("{f}.TmpfsOptions.SizeBytes"))?.unwrap_or(0),
        tmpfs_mode: uint(get(to, "Mode"), &format!("{f}.TmpfsOptions.Mode"))?.unwrap_or(0) as u32,
        volume_labels: string_map(get(vo, "Labels"), &format!("{f}.VolumeOptions.Labels"))?,
        volume_nocopy: boolean(get(vo, "NoCopy"), &format!("{f}.VolumeOptions.NoCopy"))?.unwrap_or(false),
        ..Mount::default()
    };
    out.set_type(kind);
    Ok(out)
}

fn parse_file_target(v: &Value, f: &str) -> Result<Option<FileTarget>, SpecError> {
    let Some(m) = obj(v, f)? else { return Ok(None) };
    Ok(Some(FileTarget {
        name: string(get(Some(m), "Name"), &format!("{f}.Name"))?,
        uid: string(get(Some(m), "UID"), &format!("{f}.UID"))?,
        gid: string(get(Some(m), "GID"), &format!("{f}.GID"))?,
        mode: uint(get(Some(m), "Mode"), &format!("{f}.Mode"))?.unwrap_or(0o444) as u32,
    }))
}

fn parse_port(v: &Value, f: &str) -> Result<PortConfig, SpecError> {
    let m = obj(v, f)?;
    let protocol = match string(get(m, "Protocol"), &format!("{f}.Protocol"))?.as_str() {
        "" | "tcp" => PortProtocol::Tcp,
        "udp" => PortProtocol::Udp,
        "sctp" => PortProtocol::Sctp,
        other => return err(&format!("{f}.Protocol"), format!("\"{other}\" is not one of tcp, udp, sctp")),
    };
    let mode = match string(get(m, "PublishMode"), &format!("{f}.PublishMode"))?.as_str() {
        "" | "ingress" => PublishMode::Ingress,
        "host" => PublishMode::Host,
        other => return err(&format!("{f}.PublishMode"), format!("\"{other}\" is not one of ingress, host")),
    };
    let port = |k: &str| -> Result<u32, SpecError> {
        match uint(get(m, k), &format!("{f}.{k}"))? {
            Some(p) if p > 65535 => err(&format!("{f}.{k}"), "a port is at most 65535"),
            other => Ok(other.unwrap_or(0) as u32),
        }
    };
    let target = port("TargetPort")?;
    if target == 0 {
        return err(&format!("{f}.TargetPort"), "a target port between 1 and 65535 is required");
    }
    Ok(PortConfig {
        name: string(get(m, "Name"), &format!("{f}.Name"))?,
        protocol: protocol as i32,
        target_port: target,
        published_port: port("PublishedPort")?,
        publish_mode: mode as i32,
    })
}

fn parse_update_config(v: &Value, f: &str) -> Result<Option<UpdateConfig>, SpecError> {
    let Some(m) = obj(v, f)? else { return Ok(None) };
    let action = match string(get(Some(m), "FailureAction"), &format!("{f}.FailureAction"))?.as_str() {
        "" | "pause" => FailureAction::Pause,
        "continue" => FailureAction::Continue,
        "rollback" => FailureAction::Rollback,
        other => {
            return err(&format!("{f}.FailureAction"), format!("\"{other}\" is not one of pause, continue, rollback"))
        }
    };
    let order = match string(get(Some(m), "Order"), &format!("{f}.Order"))?.as_str() {
        "" | "stop-first" => UpdateOrder::StopFirst,
        "start-first" => UpdateOrder::StartFirst,
        other => return err(&format!("{f}.Order"), format!("\"{other}\" is not one of stop-first, start-first")),
    };
    let ratio = match get(Some(m), "MaxFailureRatio") {
        Value::Null => 0.0,
        Value::Number(n) => n.as_f64().unwrap_or(0.0) as f32,
        _ => return err(&format!("{f}.MaxFailureRatio"), "expected a number"),
    };
    if !(0.0..=1.0).contains(&ratio) {
        return err(&format!("{f}.MaxFailureRatio"), "must be between 0 and 1");
    }
    Ok(Some(UpdateConfig {
        parallelism: uint(get(Some(m), "Parallelism"), &format!("{f}.Parallelism"))?.unwrap_or(0),
        delay: int(get(Some(m), "Delay"), &format!("{f}.Delay"))?.unwrap_or(0),
        failure_action: action as i32,
        monitor: int(get(Some(m), "Monitor"), &format!("{f}.Monitor"))?.unwrap_or(0),
        max_failure_ratio: ratio,
        order: order as i32,
    }))
}

// ------------------------------------------------- networks, secrets, configs

/// A swarm network as Docker's `GET /networks` shows it.
pub fn network(n: &shoal_proto::Network) -> Value {
    let (_, created, _) = meta(&n.meta);
    let spec = n.spec.clone().unwrap_or_default();
    let allocated = n.allocated.clone().unwrap_or_default();
    let mut ipam = Vec::new();
    if !allocated.subnet.is_empty() {
        ipam.push(json!({ "Subnet": allocated.subnet, "Gateway": allocated.gateway }));
    }
    json!({
        "Name": n.name(),
        "Id": n.id,
        "Created": created,
        "Scope": "swarm",
        "Driver": spec.driver,
        "EnableIPv4": true,
        "EnableIPv6": false,
        "IPAM": { "Driver": "default", "Options": null, "Config": ipam },
        "Internal": spec.internal,
        "Attachable": spec.attachable,
        "Ingress": false,
        "ConfigFrom": { "Network": "" },
        "ConfigOnly": false,
        "Containers": null,
        "Options": map_json(&spec.driver_opts),
        "Labels": labels(&spec.annotations),
    })
}

/// Reads Docker's `POST /networks/create` body.
pub fn parse_network_create(v: &Value) -> Result<NetworkSpec, SpecError> {
    let Some(m) = obj(v, "NetworkCreateRequest")? else {
        return err("NetworkCreateRequest", "the request body is empty");
    };
    let m = Some(m);
    let ipam = obj(get(m, "IPAM"), "IPAM")?;
    let configs = list(get(ipam, "Config"), "IPAM.Config", |v, f| {
        let c = obj(v, f)?;
        Ok(IpamConfig {
            subnet: string(get(c, "Subnet"), &format!("{f}.Subnet"))?,
            gateway: string(get(c, "Gateway"), &format!("{f}.Gateway"))?,
            ip_range: string(get(c, "IPRange"), &format!("{f}.IPRange"))?,
        })
    })?;
    if boolean(get(m, "Ingress"), "Ingress")?.unwrap_or(false) {
        return err("Ingress", "ingress networks are not supported yet (the routing mesh is to come)");
    }
    Ok(NetworkSpec {
        annotations: Some(Annotations {
            name: string(get(m, "Name"), "Name")?,
            labels: string_map(get(m, "Labels"), "Labels")?,
        }),
        driver: string(get(m, "Driver"), "Driver")?,
        internal: boolean(get(m, "Internal"), "Internal")?.unwrap_or(false),
        attachable: boolean(get(m, "Attachable"), "Attachable")?.unwrap_or(false),
        driver_opts: string_map(get(m, "Options"), "Options")?,
        ipam: configs,
    })
}

/// A network spec as shoal's stack deploy sends it (the create request's shape).
pub fn network_spec(s: &NetworkSpec) -> Value {
    let config: Vec<Value> =
        s.ipam.iter().map(|c| json!({ "Subnet": c.subnet, "Gateway": c.gateway, "IPRange": c.ip_range })).collect();
    json!({
        "Name": s.annotations.as_ref().map(|a| a.name.as_str()).unwrap_or(""),
        "Labels": labels(&s.annotations),
        "Driver": s.driver,
        "Internal": s.internal,
        "Attachable": s.attachable,
        "Options": map_json(&s.driver_opts),
        "IPAM": { "Driver": "default", "Config": config },
    })
}

fn base64_encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A secret or config spec with its data, as `POST /secrets/create` takes it.
pub fn file_object_spec(a: &Option<Annotations>, data: &[u8]) -> Value {
    json!({
        "Name": a.as_ref().map(|a| a.name.as_str()).unwrap_or(""),
        "Labels": labels(a),
        "Data": base64_encode(data),
    })
}

/// A secret's or config's spec as posted: `Data` absent on label updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileObjectSpec {
    pub name: String,
    pub labels: HashMap<String, String>,
    pub data: Option<Vec<u8>>,
}

/// Reads `{Name, Labels, Data}` (Data in base64) of a secret or config.
pub fn parse_file_object_spec(v: &Value) -> Result<FileObjectSpec, SpecError> {
    use base64::Engine;
    let Some(m) = obj(v, "Spec")? else { return err("Spec", "the request body is empty") };
    let m = Some(m);
    if let Some(driver) = obj(get(m, "Driver"), "Driver")? {
        if !string(get(Some(driver), "Name"), "Driver.Name")?.is_empty() {
            return err("Driver", "secret drivers are not supported: give the data");
        }
    }
    if let Some(t) = obj(get(m, "Templating"), "Templating")? {
        if !string(get(Some(t), "Name"), "Templating.Name")?.is_empty() {
            return err("Templating", "templating is not supported");
        }
    }
    let data = match get(m, "Data") {
        Value::Null => None,
        Value::String(text) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| SpecError { field: "Data".into(), message: format!("invalid base64: {e}") })?,
        ),
        _ => return err("Data", "expected base64 text"),
    };
    Ok(FileObjectSpec { name: string(get(m, "Name"), "Name")?, labels: string_map(get(m, "Labels"), "Labels")?, data })
}

/// A secret as Docker shows it: never its data.
pub fn secret(s: &Secret) -> Value {
    let (version, created, updated) = meta(&s.meta);
    let spec = s.spec.clone().unwrap_or_default();
    json!({
        "ID": s.id,
        "Version": version,
        "CreatedAt": created,
        "UpdatedAt": updated,
        "Spec": { "Name": s.name(), "Labels": labels(&spec.annotations) },
    })
}

/// A config as Docker shows it, data included.
pub fn config(c: &Config) -> Value {
    let (version, created, updated) = meta(&c.meta);
    let spec = c.spec.clone().unwrap_or_default();
    json!({
        "ID": c.id,
        "Version": version,
        "CreatedAt": created,
        "UpdatedAt": updated,
        "Spec": { "Name": c.name(), "Labels": labels(&spec.annotations), "Data": base64_encode(&spec.data) },
    })
}

/// Reads a Docker `NodeSpec` (`Name`, `Labels`, `Role`, `Availability`).
pub fn parse_node_spec(v: &Value) -> Result<shoal_proto::NodeSpec, SpecError> {
    let Some(s) = obj(v, "NodeSpec")? else { return err("NodeSpec", "the request body is empty") };
    let role = match string(get(Some(s), "Role"), "Role")?.as_str() {
        "" | "worker" => NodeRole::Worker,
        "manager" => NodeRole::Manager,
        other => return err("Role", format!("\"{other}\" is not one of worker, manager")),
    };
    let availability = match string(get(Some(s), "Availability"), "Availability")?.as_str() {
        "" | "active" => NodeAvailability::Active,
        "pause" => NodeAvailability::Pause,
        "drain" => NodeAvailability::Drain,
        other => return err("Availability", format!("\"{other}\" is not one of active, pause, drain")),
    };
    Ok(shoal_proto::NodeSpec {
        annotations: Some(Annotations {
            name: string(get(Some(s), "Name"), "Name")?,
            labels: string_map(get(Some(s), "Labels"), "Labels")?,
        }),
        desired_role: role as i32,
        availability: availability as i32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_spec_round_trips() {
        let v = json!({
            "Name": "app_web",
            "Labels": {"com.docker.stack.namespace": "app"},
            "TaskTemplate": {
                "ContainerSpec": {"Image": "demo:1", "Args": ["httpd", "-f"], "Env": ["A=1"], "StopGracePeriod": 5},
                "RestartPolicy": {"Condition": "on-failure", "Delay": 100, "MaxAttempts": 3},
                "ForceUpdate": 2
            },
            "Mode": {"Replicated": {"Replicas": 3}}
        });
        let spec = parse_service_spec(&v).unwrap();
        assert_eq!(spec.task.as_ref().unwrap().container.as_ref().unwrap().args, vec!["httpd", "-f"]);
        let again = parse_service_spec(&service_spec(&spec)).unwrap();
        assert_eq!(spec, again);
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
        assert_eq!(parse_service_spec(&service_spec(&spec)).unwrap(), spec);
        let bad = json!({"Name": "x", "EndpointSpec": {"Ports": [{"TargetPort": 70000}]}});
        assert_eq!(
            parse_service_spec(&bad).unwrap_err().to_string(),
            "EndpointSpec.Ports[0].TargetPort: a port is at most 65535"
        );
    }

    #[test]
    fn missing_replicas_means_one_and_bad_types_name_the_field() {
        let spec =
            parse_service_spec(&json!({"Name": "x", "TaskTemplate": {"ContainerSpec": {"Image": "i"}}})).unwrap();
        assert!(matches!(
            spec.mode.unwrap().mode,
            Some(service_mode::Mode::Replicated(ReplicatedService { replicas: 1 }))
        ));
        let e = parse_service_spec(&json!({"Name": "x", "Mode": {"Replicated": {"Replicas": "three"}}})).unwrap_err();
        assert_eq!(e.to_string(), "Mode.Replicated.Replicas: expected an integer");
    }
}
