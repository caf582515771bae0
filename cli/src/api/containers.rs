//! `/containers`: standalone containers on this node (no swarm needed), in
//! the Docker Engine API's shapes: requests parsed into calls of the runtime
//! or, where the daemon has a policy (start, restart, create, wait, attach
//! hand-off), of the daemon (`daemon::containers`), and what they return
//! rendered.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use shoal_runtime::{ContainerInfo, ContainerSpec, ContainerState, RestartPolicy, Runtime};

use super::attach;
use super::logs::{LogQuery, LogSource};
use super::{docker, ApiError, ApiResult};
use crate::daemon::containers::Start;
use crate::daemon::Daemon;

/// Runs a blocking runtime call on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    rt: &Arc<Runtime>,
    f: impl FnOnce(&Runtime) -> Result<T, shoal_runtime::Error> + Send + 'static,
) -> ApiResult<T> {
    Ok(crate::daemon::containers::blocking(rt, f).await?)
}

fn state_name(s: ContainerState) -> &'static str {
    match s {
        ContainerState::Created => "created",
        ContainerState::Running => "running",
        ContainerState::Exited => "exited",
    }
}

fn since(ns: Option<i64>) -> String {
    let now = shoal_proto::now_ns();
    docker::human_duration(now - ns.unwrap_or(now))
}

/// `docker ps`'s STATUS column: `Up 5 seconds`, `Exited (0) 2 minutes ago`.
fn status_text(c: &ContainerInfo) -> String {
    let now = shoal_proto::now_ns();
    match c.state {
        ContainerState::Created => "Created".into(),
        ContainerState::Running => {
            format!("Up {}", docker::human_duration(now - c.started_at.unwrap_or(now)))
        }
        ContainerState::Exited => format!(
            "Exited ({}) {} ago",
            c.exit_code.unwrap_or(-1),
            docker::human_duration(now - c.finished_at.unwrap_or(now))
        ),
    }
}

fn summary(c: &ContainerInfo, restarting: bool) -> Value {
    let (state, status) = if restarting {
        ("restarting", format!("Restarting ({}) {} ago", c.exit_code.unwrap_or(0), since(c.finished_at)))
    } else {
        (state_name(c.state), status_text(c))
    };
    json!({
        "Id": c.id,
        "Names": [format!("/{}", c.name)],
        "Image": c.image,
        "ImageID": c.image_id,
        "Command": c.command.join(" "),
        "Created": c.created_at / 1_000_000_000,
        "State": state,
        "Status": status,
        "Labels": c.labels,
        "Pid": c.pid.unwrap_or(0),
        "Ports": [],
        "Mounts": [],
    })
}

fn inspect_json(c: &ContainerInfo, restarting: bool) -> Value {
    let t = |ns: Option<i64>| ns.map(docker::time).unwrap_or_else(|| "0001-01-01T00:00:00Z".into());
    let devices: Vec<Value> = c
        .devices
        .iter()
        .map(|d| {
            let mut parts = d.rsplitn(3, ':');
            let (perms, inside, host) = (parts.next(), parts.next(), parts.next());
            json!({ "PathOnHost": host, "PathInContainer": inside, "CgroupPermissions": perms })
        })
        .collect();
    json!({
        "Id": c.id,
        "Created": docker::time(c.created_at),
        "Path": c.command.first().cloned().unwrap_or_default(),
        "Args": c.command.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": if restarting { "restarting" } else { state_name(c.state) },
            "Running": c.state == ContainerState::Running,
            "Paused": c.paused,
            "Restarting": restarting,
            "OOMKilled": c.oom_killed,
            "Dead": false,
            "Pid": c.pid.unwrap_or(0),
            "ExitCode": c.exit_code.unwrap_or(0),
            "Error": c.error.clone().unwrap_or_default(),
            "StartedAt": t(c.started_at),
            "FinishedAt": t(c.finished_at),
        },
        "Image": c.image_id,
        "Name": format!("/{}", c.name),
        "RestartCount": c.restart_count,
        "Config": {
            "Image": c.image,
            "Labels": c.labels,
            "Cmd": c.command,
            "StopSignal": c.stop_signal,
            "Tty": c.tty,
            "OpenStdin": c.open_stdin,
            "StdinOnce": c.stdin_once,
            "AttachStdin": c.open_stdin,
            "AttachStdout": true,
            "AttachStderr": true,
        },
        "HostConfig": {
            "RestartPolicy": { "Name": c.restart_policy.name(), "MaximumRetryCount": c.restart_policy.max_retries() },
            "Devices": devices,
            "AutoRemove": c.auto_remove,
        },
        "Mounts": [],
        "NetworkSettings": {},
    })
}

#[derive(Deserialize)]
pub struct ListQuery {
    all: Option<String>,
    filters: Option<String>,
}

fn truthy(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("1") | Some("true") | Some("True"))
}

/// `GET /containers/json`: running containers (all with `all`), filtered by Docker's
/// `label`, `name`, `id` and `status` filters.
pub async fn list(State(daemon): State<Arc<Daemon>>, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    let filters = super::Filters::parse(q.filters.as_deref(), &["label", "name", "id", "status"])?;
    for status in filters.get("status") {
        if !matches!(status.as_str(), "created" | "restarting" | "running" | "removing" | "paused" | "exited" | "dead")
        {
            return Err(ApiError::bad_request(format!(
                "invalid filter 'status={status}': use created, restarting, running, paused, exited or dead"
            )));
        }
    }
    // A status filter lists what it names, running or not (as Docker does).
    let all = truthy(&q.all) || !filters.get("status").is_empty();
    let containers = blocking(&daemon.runtime, |rt| rt.list_containers()).await?;
    Ok(Json(Value::Array(
        containers
            .iter()
            .filter(|c| all || c.state == ContainerState::Running)
            .filter(|c| filters.labels_match(|k| c.labels.get(k).map(String::as_str)))
            .filter(|c| filters.any("name", |n| c.name.contains(n.trim_start_matches('/'))))
            .filter(|c| filters.any("id", |i| c.id.starts_with(i)))
            .filter(|c| {
                let is_restarting = daemon.containers.is_restarting(c);
                filters.any("status", |s| match s {
                    "restarting" => is_restarting,
                    "paused" => c.paused,
                    "running" => c.state == ContainerState::Running && !c.paused,
                    other => !is_restarting && state_name(c.state) == other,
                })
            })
            .map(|c| summary(c, daemon.containers.is_restarting(c)))
            .collect(),
    )))
}

pub(super) fn strings(v: &Value, field: &str) -> ApiResult<Option<Vec<String>>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(vec![s.clone()])),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str().map(String::from).ok_or_else(|| ApiError::bad_request(format!("{field}: expected strings")))
            })
            .collect::<ApiResult<Vec<_>>>()
            .map(Some),
        _ => Err(ApiError::bad_request(format!("{field}: expected a list of strings"))),
    }
}

pub(super) fn string(v: &Value, field: &str) -> ApiResult<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(ApiError::bad_request(format!("{field}: expected a string"))),
    }
}

fn int(v: &Value, field: &str) -> ApiResult<Option<i64>> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => {
            n.as_i64().map(Some).ok_or_else(|| ApiError::bad_request(format!("{field}: expected an integer")))
        }
        _ => Err(ApiError::bad_request(format!("{field}: expected an integer"))),
    }
}

fn boolean(v: &Value) -> bool {
    v.as_bool().unwrap_or(false)
}

/// HostConfig settings with no effect yet: refusing them beats running a
/// container without what the user asked for.
fn refuse_unsupported(host: &Map<String, Value>) -> ApiResult<()> {
    const UNSUPPORTED: &[&str] = &["PortBindings", "CpuQuota", "CpuShares", "CpusetCpus", "Ulimits"];
    for key in UNSUPPORTED {
        let set = match host.get(*key) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            // The docker CLI sends every field, unset strings as "".
            Some(Value::String(s)) if s.is_empty() => false,
            Some(Value::Number(n)) => n.as_i64() != Some(0),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::Object(o)) => !o.is_empty(),
            // The docker CLI sends unset string settings as "".
            Some(Value::String(s)) => !s.is_empty(),
            Some(_) => true,
        };
        if set {
            return Err(ApiError::bad_request(format!(
                "HostConfig.{key} is not supported by this daemon yet; run the container without it"
            )));
        }
    }
    if let Some(mode) = host.get("NetworkMode").and_then(|m| m.as_str()) {
        if !matches!(mode, "" | "default" | "none" | "bridge") {
            return Err(ApiError::bad_request(format!(
                "HostConfig.NetworkMode \"{mode}\" is not supported yet: containers get their own network namespace"
            )));
        }
    }
    Ok(())
}

/// Docker's HostConfig and the container-level options, onto the runtime's spec.
fn apply_host_config(v: &Value, spec: &mut ContainerSpec) -> ApiResult<()> {
    spec.user = string(&v["User"], "User")?;
    spec.stop_signal = string(&v["StopSignal"], "StopSignal")?;
    spec.stop_timeout = int(&v["StopTimeout"], "StopTimeout")?.map(|t| t.max(0) as u64);
    // `Volumes` (`docker run -v /path`): anonymous volumes, unless a bind below covers the path.
    if let Value::Object(volumes) = &v["Volumes"] {
        for target in volumes.keys() {
            spec.mounts.push(shoal_runtime::Mount::parse(target)?);
        }
    }
    let Some(host) = v.get("HostConfig").and_then(|h| h.as_object()) else { return Ok(()) };
    refuse_unsupported(host)?;
    let h = |k: &str| host.get(k).unwrap_or(&Value::Null);
    // `Volumes` are only what the image or `-v /path` leaves anonymous: any other mount at the
    // same target replaces one; two others at one target are a 400, as Docker answers.
    let anonymous: Vec<String> = spec.mounts.iter().map(|m| m.target.clone()).collect();
    for bind in strings(h("Binds"), "HostConfig.Binds")?.unwrap_or_default() {
        add_mount(spec, &anonymous, shoal_runtime::Mount::parse(&bind)?)?;
    }
    match h("Tmpfs") {
        Value::Null => {}
        Value::Object(t) => {
            for (path, opts) in t {
                let opts = opts.as_str().ok_or_else(|| {
                    ApiError::bad_request(format!("HostConfig.Tmpfs[\"{path}\"]: expected a string of options"))
                })?;
                add_tmpfs(spec, &anonymous, path, opts.to_string())?;
            }
        }
        _ => return Err(ApiError::bad_request("HostConfig.Tmpfs: expected an object of paths to options")),
    }
    host_mounts(h("Mounts"), spec, &anonymous)?;
    spec.read_only = boolean(h("ReadonlyRootfs"));
    spec.privileged = boolean(h("Privileged"));
    spec.init = boolean(h("Init"));
    spec.cap_add = strings(h("CapAdd"), "HostConfig.CapAdd")?.unwrap_or_default();
    spec.cap_drop = strings(h("CapDrop"), "HostConfig.CapDrop")?.unwrap_or_default();
    spec.no_new_privileges = strings(h("SecurityOpt"), "HostConfig.SecurityOpt")?
        .unwrap_or_default()
        .iter()
        .any(|o| o == "no-new-privileges" || o == "no-new-privileges:true" || o == "no-new-privileges=true");
    spec.memory = int(h("Memory"), "HostConfig.Memory")?.filter(|m| *m > 0);
    spec.nano_cpus = int(h("NanoCpus"), "HostConfig.NanoCpus")?.filter(|c| *c > 0);
    spec.pids_limit = int(h("PidsLimit"), "HostConfig.PidsLimit")?.filter(|p| *p > 0);
    spec.devices = devices(h("Devices"))?;
    spec.restart_policy = restart_policy(h("RestartPolicy"))?;
    spec.console_size = console_size(h("ConsoleSize"))?;
    spec.auto_remove = boolean(h("AutoRemove"));
    Ok(())
}

/// Whether `target` is already a mount's or a tmpfs's other than an anonymous volume's.
fn check_free(spec: &mut ContainerSpec, anonymous: &[String], target: &str) -> ApiResult<()> {
    let same = |a: &str| a.trim_end_matches('/') == target.trim_end_matches('/');
    let taken = spec.mounts.iter().any(|m| same(&m.target) && !(m.source.is_empty() && anonymous.contains(&m.target)))
        || spec.tmpfs.keys().any(|t| same(t));
    if taken {
        return Err(ApiError::bad_request(format!("Duplicate mount point: {target}")));
    }
    spec.mounts.retain(|m| !(m.source.is_empty() && anonymous.contains(&m.target) && same(&m.target)));
    Ok(())
}

fn add_mount(spec: &mut ContainerSpec, anonymous: &[String], mount: shoal_runtime::Mount) -> ApiResult<()> {
    check_free(spec, anonymous, &mount.target)?;
    spec.mounts.push(mount);
    Ok(())
}

fn add_tmpfs(spec: &mut ContainerSpec, anonymous: &[String], target: &str, options: String) -> ApiResult<()> {
    check_free(spec, anonymous, target)?;
    spec.tmpfs.insert(target.to_string(), options);
    Ok(())
}

/// A boolean field: absent or `null` is false, anything but a boolean a 400.
fn flag(v: &Value, field: &str) -> ApiResult<bool> {
    match v {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(*b),
        _ => Err(ApiError::bad_request(format!("{field}: expected true or false"))),
    }
}

/// The object at `field` (absent or `null`: none), with only the `known` keys.
fn options<'a>(v: &'a Value, field: &str, known: &[&str]) -> ApiResult<Option<&'a Map<String, Value>>> {
    match v {
        Value::Null => Ok(None),
        Value::Object(o) => {
            if let Some(key) = o.keys().find(|k| !known.contains(&k.as_str())) {
                return Err(ApiError::bad_request(format!(
                    "{field}.{key} is not supported by this daemon: known are {}",
                    known.join(", ")
                )));
            }
            Ok(Some(o))
        }
        _ => Err(ApiError::bad_request(format!("{field}: expected an object"))),
    }
}

/// `HostConfig.Mounts`, what `docker run --mount` sends: `bind` (`BindOptions.Propagation`
/// but the shared kinds, `NonRecursive`, `CreateMountpoint`), `volume` (no `Source`: an
/// anonymous one; `VolumeOptions.NoCopy`, `Labels`) and `tmpfs` (`TmpfsOptions.SizeBytes`,
/// `Mode`). A type or an option this daemon cannot honour is a 400 naming it, never ignored.
fn host_mounts(v: &Value, spec: &mut ContainerSpec, anonymous: &[String]) -> ApiResult<()> {
    let list = match v {
        Value::Null => return Ok(()),
        Value::Array(list) => list,
        _ => return Err(ApiError::bad_request("HostConfig.Mounts: expected a list of mounts")),
    };
    const KEYS: &[&str] = &[
        "Type",
        "Source",
        "Target",
        "ReadOnly",
        "Consistency",
        "BindOptions",
        "VolumeOptions",
        "TmpfsOptions",
        "ImageOptions",
        "ClusterOptions",
    ];
    for (i, m) in list.iter().enumerate() {
        let at = format!("HostConfig.Mounts[{i}]");
        let Some(m) = options(m, &at, KEYS)? else {
            return Err(ApiError::bad_request(format!("{at}: expected a mount")));
        };
        let field = |k: &str| m.get(k).unwrap_or(&Value::Null);
        let kind = string(field("Type"), &format!("{at}.Type"))?.unwrap_or_default();
        let source = string(field("Source"), &format!("{at}.Source"))?.unwrap_or_default();
        let target = string(field("Target"), &format!("{at}.Target"))?.ok_or_else(|| {
            ApiError::bad_request(format!("{at}.Target is required: the absolute path in the container"))
        })?;
        let read_only = flag(field("ReadOnly"), &format!("{at}.ReadOnly"))?;
        let consistency = string(field("Consistency"), &format!("{at}.Consistency"))?.unwrap_or_default();
        if !matches!(consistency.as_str(), "" | "default" | "consistent" | "cached" | "delegated") {
            return Err(ApiError::bad_request(format!(
                "{at}.Consistency \"{consistency}\" is unknown: use default, consistent, cached or delegated"
            )));
        }
        // Options of another type are a mistake Docker refuses too.
        let only = |allowed: &str| -> ApiResult<()> {
            for other in ["BindOptions", "VolumeOptions", "TmpfsOptions", "ImageOptions", "ClusterOptions"] {
                if other != allowed && !field(other).is_null() {
                    return Err(ApiError::bad_request(format!(
                        "{at}.{other} must not be given for a mount of type \"{kind}\""
                    )));
                }
            }
            Ok(())
        };
        let mount = match kind.as_str() {
            "bind" => {
                only("BindOptions")?;
                let o = options(
                    field("BindOptions"),
                    &format!("{at}.BindOptions"),
                    &[
                        "Propagation",
                        "NonRecursive",
                        "CreateMountpoint",
                        "ReadOnlyNonRecursive",
                        "ReadOnlyForceRecursive",
                    ],
                )?;
                let opt = |k: &str| o.and_then(|o| o.get(k)).unwrap_or(&Value::Null);
                let propagation = string(opt("Propagation"), &format!("{at}.BindOptions.Propagation"))?
                    .map(|p| shoal_runtime::Propagation::parse(&p))
                    .transpose()?;
                if flag(opt("ReadOnlyForceRecursive"), &format!("{at}.BindOptions.ReadOnlyForceRecursive"))? {
                    return Err(ApiError::bad_request(format!(
                        "{at}.BindOptions.ReadOnlyForceRecursive is not supported: read-only binds here make the mount itself read-only, not the mounts below it"
                    )));
                }
                flag(opt("ReadOnlyNonRecursive"), &format!("{at}.BindOptions.ReadOnlyNonRecursive"))?;
                let create = flag(opt("CreateMountpoint"), &format!("{at}.BindOptions.CreateMountpoint"))?;
                if source.starts_with('/') && !create && !std::path::Path::new(&source).exists() {
                    return Err(ApiError::bad_request(format!(
                        "invalid mount config for type \"bind\": bind source path does not exist: {source}"
                    )));
                }
                shoal_runtime::Mount {
                    kind: shoal_runtime::MountKind::Bind,
                    source,
                    target,
                    read_only,
                    propagation,
                    non_recursive: flag(opt("NonRecursive"), &format!("{at}.BindOptions.NonRecursive"))?,
                    ..Default::default()
                }
            }
            "volume" => {
                only("VolumeOptions")?;
                let o = options(
                    field("VolumeOptions"),
                    &format!("{at}.VolumeOptions"),
                    &["NoCopy", "Labels", "DriverConfig", "Subpath"],
                )?;
                let opt = |k: &str| o.and_then(|o| o.get(k)).unwrap_or(&Value::Null);
                if let Some(sub) = string(opt("Subpath"), &format!("{at}.VolumeOptions.Subpath"))? {
                    return Err(ApiError::bad_request(format!(
                        "{at}.VolumeOptions.Subpath \"{sub}\" is not supported: mount the whole volume"
                    )));
                }
                if let Some(d) =
                    options(opt("DriverConfig"), &format!("{at}.VolumeOptions.DriverConfig"), &["Name", "Options"])?
                {
                    let name = string(
                        d.get("Name").unwrap_or(&Value::Null),
                        &format!("{at}.VolumeOptions.DriverConfig.Name"),
                    )?;
                    if name.as_deref().is_some_and(|n| n != "local") {
                        return Err(ApiError::bad_request(format!(
                            "{at}.VolumeOptions.DriverConfig.Name: volume driver \"{}\" is not available: the only driver is local",
                            name.unwrap_or_default()
                        )));
                    }
                    if d.get("Options").is_some_and(|o| !o.is_null() && o.as_object().is_none_or(|o| !o.is_empty())) {
                        return Err(ApiError::bad_request(format!(
                            "{at}.VolumeOptions.DriverConfig.Options are not supported: the local driver here makes a plain directory"
                        )));
                    }
                }
                shoal_runtime::Mount {
                    kind: shoal_runtime::MountKind::Volume,
                    source,
                    target,
                    read_only,
                    no_copy: flag(opt("NoCopy"), &format!("{at}.VolumeOptions.NoCopy"))?,
                    volume_labels: super::volumes::string_map(opt("Labels"), &format!("{at}.VolumeOptions.Labels"))?,
                    ..Default::default()
                }
            }
            "tmpfs" => {
                only("TmpfsOptions")?;
                if !source.is_empty() {
                    return Err(ApiError::bad_request(format!("{at}.Source must not be given for a tmpfs mount")));
                }
                let o =
                    options(field("TmpfsOptions"), &format!("{at}.TmpfsOptions"), &["SizeBytes", "Mode", "Options"])?;
                let opt = |k: &str| o.and_then(|o| o.get(k)).unwrap_or(&Value::Null);
                if opt("Options").as_array().is_some_and(|a| !a.is_empty())
                    || !(opt("Options").is_null() || opt("Options").is_array())
                {
                    return Err(ApiError::bad_request(format!(
                        "{at}.TmpfsOptions.Options are not supported: use SizeBytes and Mode"
                    )));
                }
                let size = int(opt("SizeBytes"), &format!("{at}.TmpfsOptions.SizeBytes"))?.unwrap_or(0);
                let mode = match opt("Mode") {
                    Value::Null => 0,
                    v => v.as_u64().ok_or_else(|| {
                        ApiError::bad_request(format!("{at}.TmpfsOptions.Mode: expected permission bits as a number"))
                    })?,
                };
                let tmpfs = shoal_runtime::tmpfs_options_of(size, mode, read_only)
                    .map_err(|e| ApiError::bad_request(format!("{at}.TmpfsOptions: {e}")))?;
                if !target.starts_with('/') {
                    return Err(ApiError::bad_request(format!("{at}.Target \"{target}\" must be an absolute path")));
                }
                add_tmpfs(spec, anonymous, &target, tmpfs)?;
                continue;
            }
            "npipe" | "cluster" | "image" => {
                return Err(ApiError::bad_request(format!(
                    "{at}.Type \"{kind}\" is not supported by this daemon: use bind, volume or tmpfs"
                )))
            }
            "" => return Err(ApiError::bad_request(format!("{at}.Type is required: bind, volume or tmpfs"))),
            other => {
                return Err(ApiError::bad_request(format!(
                    "{at}.Type \"{other}\" is unknown: use bind, volume or tmpfs"
                )))
            }
        };
        mount.check().map_err(|e| ApiError::bad_request(format!("{at}: {e}")))?;
        add_mount(spec, anonymous, mount)?;
    }
    Ok(())
}

/// `HostConfig.Devices`: `[{PathOnHost, PathInContainer, CgroupPermissions}]`.
fn devices(v: &Value) -> ApiResult<Vec<shoal_runtime::Device>> {
    let list = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(list) => list,
        _ => return Err(ApiError::bad_request("HostConfig.Devices: expected a list of devices")),
    };
    list.iter()
        .enumerate()
        .map(|(i, d)| {
            let field = |k: &str| string(&d[k], &format!("HostConfig.Devices[{i}].{k}"));
            let host = field("PathOnHost")?.ok_or_else(|| {
                ApiError::bad_request(format!("HostConfig.Devices[{i}].PathOnHost is required: name a host device"))
            })?;
            let inside = field("PathInContainer")?.unwrap_or_else(|| host.clone());
            let perms = field("CgroupPermissions")?.unwrap_or_else(|| "rwm".into());
            Ok(shoal_runtime::Device::parse(&format!("{host}:{inside}:{perms}"))?)
        })
        .collect()
}

/// `HostConfig.RestartPolicy`: `{Name, MaximumRetryCount}`.
fn restart_policy(v: &Value) -> ApiResult<RestartPolicy> {
    match v {
        Value::Null => Ok(RestartPolicy::No),
        Value::Object(_) => {
            let name = string(&v["Name"], "HostConfig.RestartPolicy.Name")?.unwrap_or_default();
            let max = int(&v["MaximumRetryCount"], "HostConfig.RestartPolicy.MaximumRetryCount")?.unwrap_or(0);
            Ok(RestartPolicy::from_parts(&name, max)?)
        }
        _ => Err(ApiError::bad_request("HostConfig.RestartPolicy: expected {\"Name\": …, \"MaximumRetryCount\": …}")),
    }
}

/// `HostConfig.ConsoleSize`: `[rows, columns]`; `[0, 0]` or absent means unknown.
fn console_size(v: &Value) -> ApiResult<Option<(u16, u16)>> {
    let bad = || ApiError::bad_request("HostConfig.ConsoleSize: expected [rows, columns], each 0 to 65535");
    match v {
        Value::Null => Ok(None),
        Value::Array(a) => {
            let [rows, cols] = a.as_slice() else { return Err(bad()) };
            let dim = |d: &Value| d.as_u64().and_then(|d| u16::try_from(d).ok()).ok_or_else(bad);
            let (rows, cols) = (dim(rows)?, dim(cols)?);
            Ok((rows > 0 && cols > 0).then_some((rows, cols)))
        }
        _ => Err(bad()),
    }
}

#[derive(Deserialize)]
pub struct CreateQuery {
    name: Option<String>,
}

pub async fn create(
    State(daemon): State<Arc<Daemon>>,
    Query(q): Query<CreateQuery>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let v: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    if let Some(host) = v.get("HostConfig").and_then(|h| h.as_object()) {
        refuse_unsupported(host)?;
    }
    let image = string(&v["Image"], "Image")?.ok_or_else(|| ApiError::bad_request("Image is required"))?;
    let labels: BTreeMap<String, String> = match &v["Labels"] {
        Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect(),
        _ => BTreeMap::new(),
    };
    let mut spec = ContainerSpec {
        name: q.name.unwrap_or_default(),
        image,
        entrypoint: strings(&v["Entrypoint"], "Entrypoint")?,
        cmd: strings(&v["Cmd"], "Cmd")?,
        env: strings(&v["Env"], "Env")?.unwrap_or_default(),
        workdir: string(&v["WorkingDir"], "WorkingDir")?,
        hostname: string(&v["Hostname"], "Hostname")?,
        labels,
        tty: boolean(&v["Tty"]),
        open_stdin: boolean(&v["OpenStdin"]),
        stdin_once: boolean(&v["StdinOnce"]),
        ..Default::default()
    };
    apply_host_config(&v, &mut spec)?;
    let c = daemon.containers.create(spec).await?;
    Ok((StatusCode::CREATED, Json(json!({ "Id": c.id, "Warnings": [] }))).into_response())
}

/// `POST /containers/{id}/start`: `304` when it runs already.
pub async fn start(State(daemon): State<Arc<Daemon>>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    Ok(match daemon.containers.start(&id).await? {
        Start::AlreadyRunning => StatusCode::NOT_MODIFIED,
        Start::Started => StatusCode::NO_CONTENT,
    })
}

#[derive(Deserialize)]
pub struct AttachQuery {
    stream: Option<String>,
    stdin: Option<String>,
    stdout: Option<String>,
    stderr: Option<String>,
}

/// `POST /containers/{id}/attach?stream=1&stdin=1&stdout=1&stderr=1`: upgrades the
/// connection (`101`, `Upgrade: tcp`) to the container's stdio: its output from now on, raw
/// with a tty and in Docker's multiplexed frames without, and the client's bytes as its stdin.
/// A container not started yet is attached to from its start, so nothing is missed.
pub async fn attach(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    Query(q): Query<AttachQuery>,
    mut req: axum::extract::Request,
) -> ApiResult<Response> {
    let c = blocking(&daemon.runtime, move |rt| rt.container(&id)).await?;
    if !truthy(&q.stream) {
        return Err(ApiError::bad_request(
            "attach without stream=1 (replaying logs only) is not supported: use the logs endpoint",
        ));
    }
    let want = attach::Wanted { stdin: truthy(&q.stdin), stdout: truthy(&q.stdout), stderr: truthy(&q.stderr) };
    let upgrade = hyper::upgrade::on(&mut req);
    let waiting = daemon.containers.register_attach(&c);
    let tty = c.tty;
    let streaming = daemon.clone();
    daemon.spawn(async move {
        let client = match upgrade.await {
            Ok(upgraded) => hyper_util::rt::TokioIo::new(upgraded),
            Err(e) => {
                tracing::warn!(container = %c.name, "attach: the connection was not upgraded: {e}");
                return;
            }
        };
        let Some(stream) = streaming.containers.attach_stream(&c, waiting).await else { return };
        if let Err(e) = attach::pump(client, stream, c.tty, want).await {
            tracing::debug!(container = %c.name, "attach ended: {e}");
        }
    });
    attach::switching_protocols(tty)
}

#[derive(Deserialize)]
pub struct ResizeQuery {
    h: Option<String>,
    w: Option<String>,
}

impl ResizeQuery {
    /// The rows and columns asked for.
    pub(super) fn size(&self) -> ApiResult<(u16, u16)> {
        let dim = |v: &Option<String>, what: &str| {
            v.as_deref().unwrap_or("0").parse::<u16>().map_err(|_| {
                ApiError::bad_request(format!("resize: {what} must be a number of {what} from 0 to 65535"))
            })
        };
        Ok((dim(&self.h, "rows")?, dim(&self.w, "columns")?))
    }
}

/// `POST /containers/{id}/resize?h=ROWS&w=COLUMNS`: the terminal's new size.
pub async fn resize(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    Query(q): Query<ResizeQuery>,
) -> ApiResult<StatusCode> {
    let (rows, cols) = q.size()?;
    let c = blocking(&daemon.runtime, move |rt| rt.container(&id)).await?;
    if !c.tty {
        return Err(ApiError::bad_request(format!(
            "container {} has no terminal to resize (it was created without -t)",
            c.name
        )));
    }
    if c.state != ContainerState::Running {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("container {} is not running", c.name)));
    }
    blocking(&daemon.runtime, move |rt| rt.resize_container_tty(&c.id, rows, cols)).await?;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
pub struct StopQuery {
    t: Option<u64>,
    signal: Option<String>,
}

pub async fn stop(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    Query(q): Query<StopQuery>,
) -> ApiResult<StatusCode> {
    let c = blocking(&daemon.runtime, move |rt| rt.container(&id)).await?;
    let was_running = c.state == ContainerState::Running;
    let timeout = std::time::Duration::from_secs(q.t.unwrap_or(10));
    // Also when it is not running: a stop keeps its restart policy from starting it again.
    blocking(&daemon.runtime, move |rt| rt.stop_container(&c.id, q.signal.as_deref(), timeout)).await?;
    Ok(if was_running { StatusCode::NO_CONTENT } else { StatusCode::NOT_MODIFIED })
}

/// `POST /containers/{id}/restart?t=N&signal=S`: stops the container (if running) and starts
/// it again, as a user's start (its restart count starts over).
pub async fn restart(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    Query(q): Query<StopQuery>,
) -> ApiResult<StatusCode> {
    daemon.containers.restart(&id, q.signal, q.t.map(std::time::Duration::from_secs)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct KillQuery {
    signal: Option<String>,
}

pub async fn kill(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    Query(q): Query<KillQuery>,
) -> ApiResult<StatusCode> {
    let signal = q.signal.unwrap_or_else(|| "SIGKILL".into());
    blocking(&daemon.runtime, move |rt| rt.kill_container(&id, &signal)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct WaitQuery {
    condition: Option<String>,
}

/// `POST /containers/{id}/wait[?condition=not-running|next-exit|removed]`: the headers go
/// out at once (the docker CLI waits for them before it starts the container), the body
/// `{"StatusCode": …}` once the container has exited and, for `removed`, is gone.
pub async fn wait(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> ApiResult<Response> {
    let removed = match q.condition.as_deref() {
        None | Some("" | "not-running" | "next-exit") => false,
        Some("removed") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "wait condition \"{other}\" is unknown: use not-running, next-exit or removed"
            )))
        }
    };
    let c = blocking(&daemon.runtime, move |rt| rt.container(&id)).await?;
    let body = futures::stream::once(async move {
        let done = match daemon.containers.wait_exit(&c.id, removed).await {
            Ok(done) => done,
            Err(e) => {
                return Ok(Bytes::from(json!({ "StatusCode": -1, "Error": { "Message": e.to_string() } }).to_string()))
            }
        };
        let error = done.error.map(|m| json!({ "Message": m }));
        Ok::<_, std::io::Error>(Bytes::from(
            json!({ "StatusCode": done.exit_code.unwrap_or(-1), "Error": error }).to_string(),
        ))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/json")
        .body(axum::body::Body::from_stream(body))
        .map_err(|e| ApiError::internal(e.to_string()))
}

#[derive(Deserialize)]
pub struct RemoveQuery {
    force: Option<String>,
    /// Its anonymous volumes too.
    v: Option<String>,
}

pub async fn remove(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> ApiResult<StatusCode> {
    let (force, volumes) = (truthy(&q.force), truthy(&q.v));
    blocking(&daemon.runtime, move |rt| {
        if volumes {
            rt.remove_container_and_volumes(&id, force)
        } else {
            rt.remove_container(&id, force)
        }
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn inspect(State(daemon): State<Arc<Daemon>>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let c = blocking(&daemon.runtime, move |rt| rt.container(&id)).await?;
    Ok(Json(inspect_json(&c, daemon.containers.is_restarting(&c))))
}

/// `GET /containers/{id}/logs`: with `follow`, the stream ends when the
/// container has exited and its last lines were sent.
pub async fn logs(
    State(daemon): State<Arc<Daemon>>,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Response> {
    let c = blocking(&daemon.runtime, move |rt| rt.container(&id)).await?;
    let source = LogSource { container_id: c.id.clone(), details: String::new() };
    let rt = daemon.runtime.clone();
    let finished = async move {
        let _ = rt.wait_container(&c.id).await;
    };
    super::logs::respond(daemon.runtime.clone(), &q, move || vec![source.clone()], finished).await
}

pub async fn pause(State(daemon): State<Arc<Daemon>>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    blocking(&daemon.runtime, move |rt| rt.pause_container(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn unpause(State(daemon): State<Arc<Daemon>>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    blocking(&daemon.runtime, move |rt| rt.unpause_container(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_runtime::{MountKind, Propagation};

    fn spec_of(v: Value) -> ApiResult<ContainerSpec> {
        let mut spec = ContainerSpec::default();
        apply_host_config(&v, &mut spec).map(|()| spec)
    }

    fn mounts(list: Value) -> ApiResult<ContainerSpec> {
        spec_of(json!({ "HostConfig": { "Mounts": list } }))
    }

    #[test]
    fn host_config_mounts_are_honoured() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().to_str().expect("UTF-8 temp path");
        let spec = mounts(json!([
            {"Type": "bind", "Source": src, "Target": "/in", "ReadOnly": true,
             "BindOptions": {"Propagation": "rslave", "NonRecursive": true}},
            {"Type": "volume", "Source": "data", "Target": "/data",
             "VolumeOptions": {"NoCopy": true, "Labels": {"a": "1"}, "DriverConfig": {"Name": "local"}}},
            {"Type": "volume", "Target": "/anon"},
            {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 65536, "Mode": 0o1770}}
        ]))
        .expect("valid mounts");
        let bind = &spec.mounts[0];
        assert_eq!(
            (bind.kind, bind.source.as_str(), bind.target.as_str(), bind.read_only),
            (MountKind::Bind, src, "/in", true)
        );
        assert_eq!((bind.propagation, bind.non_recursive), (Some(Propagation::Rslave), true));
        let volume = &spec.mounts[1];
        assert_eq!((volume.kind, volume.source.as_str(), volume.no_copy), (MountKind::Volume, "data", true));
        assert_eq!(volume.volume_labels.get("a").map(String::as_str), Some("1"));
        assert_eq!((spec.mounts[2].kind, spec.mounts[2].source.as_str()), (MountKind::Volume, ""));
        assert_eq!(spec.tmpfs.get("/t").map(String::as_str), Some("size=65536,mode=1770"));
    }

    #[test]
    fn host_config_mounts_refuse_what_they_cannot_honour() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().to_str().expect("UTF-8 temp path");
        let missing = dir.path().join("missing");
        let missing = missing.to_str().expect("UTF-8 temp path");
        let cases = [
            (json!([{"Type": "npipe", "Source": "x", "Target": "/p"}]), "npipe"),
            (json!([{"Type": "cluster", "Target": "/p"}]), "cluster"),
            (json!([{"Type": "image", "Source": "busybox", "Target": "/p"}]), "image"),
            (json!([{"Type": "weird", "Target": "/p"}]), "weird"),
            (json!([{"Target": "/p"}]), "Type is required"),
            (json!([{"Type": "bind", "Source": src, "Target": "/p", "Surprise": 1}]), "Surprise"),
            (
                json!([{"Type": "bind", "Source": src, "Target": "/p", "BindOptions": {"Propagation": "rshared"}}]),
                "rshared",
            ),
            (
                json!([{"Type": "bind", "Source": src, "Target": "/p", "BindOptions": {"ReadOnlyForceRecursive": true}}]),
                "ReadOnlyForceRecursive",
            ),
            (json!([{"Type": "bind", "Source": src, "Target": "/p", "BindOptions": {"Unknown": true}}]), "Unknown"),
            (json!([{"Type": "bind", "Source": missing, "Target": "/p"}]), "does not exist"),
            (json!([{"Type": "bind", "Source": "relative", "Target": "/p"}]), "absolute host path"),
            (
                json!([{"Type": "bind", "Source": src, "Target": "/p", "VolumeOptions": {"NoCopy": true}}]),
                "VolumeOptions",
            ),
            (json!([{"Type": "volume", "Source": "..", "Target": "/p"}]), "invalid volume name"),
            (json!([{"Type": "volume", "Source": "/etc", "Target": "/p"}]), "invalid volume name"),
            (json!([{"Type": "volume", "Source": "v1", "Target": "/p", "VolumeOptions": {"Subpath": "x"}}]), "Subpath"),
            (
                json!([{"Type": "volume", "Source": "v1", "Target": "/p", "VolumeOptions": {"DriverConfig": {"Name": "nfs"}}}]),
                "nfs",
            ),
            (
                json!([{"Type": "volume", "Source": "v1", "Target": "/p", "VolumeOptions": {"DriverConfig": {"Options": {"o": "x"}}}}]),
                "Options",
            ),
            (json!([{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"Mode": 0o10000}}]), "beyond 0o7777"),
            (
                json!([{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"Mode": 4294967296u64 + 0o755}}]),
                "beyond 0o7777",
            ),
            (json!([{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"Mode": -1}}]), "Mode"),
            (json!([{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"Options": [["exec", ""]]}}]), "Options"),
            (json!([{"Type": "tmpfs", "Source": "x", "Target": "/t"}]), "Source"),
            (json!([{"Type": "volume", "Target": "/d"}, {"Type": "tmpfs", "Target": "/d/"}]), "Duplicate mount point"),
        ];
        for (list, expected) in cases {
            let err = mounts(list.clone()).expect_err(&list.to_string());
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{list}");
            assert!(err.message.contains(expected), "{list}: {}", err.message);
        }
        // A bind over a path the image's or `-v /path`'s anonymous volume would take replaces it.
        let spec = spec_of(json!({"Volumes": {"/d": {}}, "HostConfig": {"Mounts": [
            {"Type": "bind", "Source": src, "Target": "/d"}
        ]}}))
        .expect("a bind over an anonymous volume");
        assert_eq!(spec.mounts.len(), 1);
        assert_eq!(spec.mounts[0].source, src);
        let err = spec_of(json!({"HostConfig": {"Binds": [format!("{src}:/d")], "Tmpfs": {"/d": ""}}}))
            .expect_err("two mounts at one target");
        assert!(err.message.contains("Duplicate mount point"), "{}", err.message);
        let err = spec_of(json!({"HostConfig": {"Binds": ["../../x:/d"]}})).expect_err("a path as a volume name");
        assert!(err.message.contains("volume"), "{}", err.message);
    }
}
