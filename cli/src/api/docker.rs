//! The object model rendered as the Docker Engine API's JSON, and read back
//! from it: PascalCase fields, `Annotations` inlined into specs, `Version`
//! `{Index}`, RFC 3339 times, durations in nanoseconds, lowercase enums.
//!
//! Rendering and parsing share the field names below so that a spec read
//! with `GET /services/{id}` and posted back to `/update` round-trips.

use std::collections::HashMap;

use serde_json::{json, Map, Value};
use shoal_proto::{
    service_mode, Annotations, Cluster, ContainerSpec, EndpointMode, EndpointSpec, GlobalService,
    NetworkAttachmentConfig, Node, NodeAvailability, NodeRole, NodeState, Placement, Reachability, ReplicatedService,
    ResourceRequirements, Resources, RestartCondition, RestartPolicy, Service, ServiceMode, ServiceSpec, Task,
    TaskSpec,
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
    o.insert("EndpointSpec".into(), json!({ "Mode": mode }));
    Value::Object(o)
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
    o.insert("Endpoint".into(), json!({ "Spec": service_spec(&spec)["EndpointSpec"] }));
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
            if get(Some(e), "Ports").as_array().is_some_and(|p| !p.is_empty()) {
                return err("EndpointSpec.Ports", "published ports are not supported yet");
            }
            Some(EndpointSpec { mode: mode as i32 })
        }
    };
    Ok(ServiceSpec {
        annotations: Some(annotations),
        task: Some(task),
        mode: Some(ServiceMode { mode: Some(mode) }),
        endpoint: endpoint.filter(|e| e.mode() != EndpointMode::Vip),
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
