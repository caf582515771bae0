//! Standalone containers: a `POST /containers/create` body read into the
//! runtime's spec, with the checks the runtime does not make (settings this
//! daemon cannot honour yet, options of the wrong mount type, two mounts at
//! one path), each refusal in Docker's words where Docker has some; and a
//! container rendered as `GET /containers/json` lists it and
//! `GET /containers/{id}/json` shows it.

use std::collections::BTreeMap;

use bollard_stubs::models as bollard;
use serde_json::Value;
use shoal_runtime::{
    ContainerInfo, ContainerSpec, ContainerState, Device, Mount, MountKind, Propagation, RestartPolicy,
};

use super::{human_duration, read, time, types, SpecError};

type Result<T> = std::result::Result<T, SpecError>;

/// Reads a `POST /containers/create` body into its typed form.
pub fn read_container_create(v: &Value) -> Result<types::ContainerCreateBody> {
    read(v, "ContainerCreateBody")
}

/// Reads a `POST /containers/create` body as the spec of a container named
/// `name` (empty: named after its id).
pub fn parse_container_create(v: &Value, name: &str) -> Result<ContainerSpec> {
    container_spec(read_container_create(v)?, name)
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// The spec a create body asks for, refused whole if any part of it is not
/// what this daemon can run.
pub fn container_spec(body: types::ContainerCreateBody, name: &str) -> Result<ContainerSpec> {
    if let Some(host) = &body.host_config {
        refuse_unsupported(host)?;
    }
    let b = body.body;
    let image = nonempty(b.image).ok_or_else(|| SpecError::sentence("Image", "Image is required"))?;
    let mut spec = ContainerSpec {
        name: name.to_string(),
        image,
        entrypoint: body.entrypoint.map(|e| e.0),
        cmd: body.cmd.map(|c| c.0),
        env: b.env.unwrap_or_default(),
        workdir: nonempty(b.working_dir),
        hostname: nonempty(b.hostname),
        labels: b.labels.unwrap_or_default().into_iter().collect(),
        tty: b.tty.unwrap_or(false),
        open_stdin: b.open_stdin.unwrap_or(false),
        stdin_once: b.stdin_once.unwrap_or(false),
        user: nonempty(b.user),
        stop_signal: nonempty(b.stop_signal),
        stop_timeout: b.stop_timeout.map(|t| t.max(0) as u64),
        ..Default::default()
    };
    // `Volumes` (`docker run -v /path`): anonymous volumes, unless another mount covers the path.
    // Two paths that are one (`/d` and `/d/`) are one volume, as Docker keeps one mount point
    // per destination.
    for target in body.volumes.unwrap_or_default().keys() {
        let mount = Mount::parse(target).map_err(|e| SpecError::refused(format!("Volumes.{target}"), e))?;
        if !spec.mounts.iter().any(|m| same_path(&m.target, &mount.target)) {
            spec.mounts.push(mount);
        }
    }
    if let Some(host) = body.host_config {
        host_config(host, &mut spec)?;
    }
    Ok(spec)
}

/// HostConfig settings with no effect yet: refusing them beats running a
/// container without what the user asked for. The docker CLI sends every
/// field, unset ones as zero, `""` or empty.
fn refuse_unsupported(host: &types::HostConfig) -> Result<()> {
    let h = &host.config;
    let set = [
        ("PortBindings", h.port_bindings.as_ref().is_some_and(|p| !p.is_empty())),
        ("CpuQuota", h.cpu_quota.is_some_and(|q| q != 0)),
        ("CpuShares", h.cpu_shares.is_some_and(|s| s != 0)),
        ("CpusetCpus", h.cpuset_cpus.as_ref().is_some_and(|c| !c.is_empty())),
        ("Ulimits", h.ulimits.as_ref().is_some_and(|u| !u.is_empty())),
    ];
    if let Some((key, _)) = set.iter().find(|(_, set)| *set) {
        return Err(SpecError::sentence(
            format!("HostConfig.{key}"),
            format!("HostConfig.{key} is not supported by this daemon yet; run the container without it"),
        ));
    }
    if let Some(mode) = h.network_mode.as_deref() {
        if !matches!(mode, "" | "default" | "none" | "bridge" | "host") {
            return Err(SpecError::sentence(
                "HostConfig.NetworkMode",
                format!(
                    "HostConfig.NetworkMode \"{mode}\" is not supported yet: a standalone container gets its own \
                     network namespace (none, bridge) or the host's (host); swarm networks are for services"
                ),
            ));
        }
    }
    Ok(())
}

/// Docker's HostConfig onto the runtime's spec.
fn host_config(host: types::HostConfig, spec: &mut ContainerSpec) -> Result<()> {
    let h = host.config;
    // `Volumes` are only what the image or `-v /path` leaves anonymous: any other mount at the
    // same target replaces one; two others at one target are a 400, as Docker answers.
    let anonymous: Vec<String> = spec.mounts.iter().map(|m| m.target.clone()).collect();
    for (i, bind) in h.binds.unwrap_or_default().iter().enumerate() {
        let field = format!("HostConfig.Binds[{i}]");
        let mount = Mount::parse(bind).map_err(|e| SpecError::refused(&field, e))?;
        add_mount(spec, &anonymous, mount, &field)?;
    }
    // In the order of their paths, so that the same body always fails the same way.
    let tmpfs: BTreeMap<String, String> = h.tmpfs.unwrap_or_default().into_iter().collect();
    for (path, options) in tmpfs {
        add_tmpfs(spec, &anonymous, &path, options, "HostConfig.Tmpfs")?;
    }
    for (i, mount) in host.mounts.unwrap_or_default().into_iter().enumerate() {
        host_mount(mount, &format!("HostConfig.Mounts[{i}]"), spec, &anonymous)?;
    }
    spec.read_only = h.readonly_rootfs.unwrap_or(false);
    spec.privileged = h.privileged.unwrap_or(false);
    spec.init = h.init.unwrap_or(false);
    spec.cap_add = host.cap_add.map(|c| c.0).unwrap_or_default();
    spec.cap_drop = host.cap_drop.map(|c| c.0).unwrap_or_default();
    spec.no_new_privileges = h
        .security_opt
        .unwrap_or_default()
        .iter()
        .any(|o| o == "no-new-privileges" || o == "no-new-privileges:true" || o == "no-new-privileges=true");
    spec.memory = h.memory.filter(|m| *m > 0);
    spec.nano_cpus = h.nano_cpus.filter(|c| *c > 0);
    spec.pids_limit = h.pids_limit.filter(|p| *p > 0);
    spec.devices = devices(h.devices)?;
    spec.restart_policy = restart_policy(host.restart_policy)?;
    spec.console_size = console_size(h.console_size)?;
    spec.auto_remove = h.auto_remove.unwrap_or(false);
    if h.network_mode.as_deref() == Some("host") {
        spec.network = shoal_runtime::NetworkMode::Host;
    }
    for (i, entry) in h.extra_hosts.unwrap_or_default().iter().enumerate() {
        let field = format!("HostConfig.ExtraHosts[{i}]");
        // `NAME:IP` (Docker's, an IPv6 address keeps its colons) or `NAME=IP`.
        let (name, ip) = entry
            .split_once('=')
            .or_else(|| entry.split_once(':'))
            .ok_or_else(|| SpecError::sentence(&field, format!("bad host \"{entry}\": give it as NAME:IP")))?;
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(SpecError::sentence(&field, format!("\"{name}\" is not a valid host name")));
        }
        let line = format!("{ip} {name}");
        shoal_runtime::check_hosts_line(&line).map_err(|why| SpecError::sentence(&field, why))?;
        spec.extra_hosts.push(line);
    }
    let (servers, search, options) =
        (h.dns.unwrap_or_default(), h.dns_search.unwrap_or_default(), h.dns_options.unwrap_or_default());
    if !servers.is_empty() || !search.is_empty() || !options.is_empty() {
        spec.resolv_conf = Some(resolv_conf(&servers, &search, &options)?);
    }
    Ok(())
}

/// A `resolv.conf` from `--dns`, `--dns-search` and `--dns-option`, each checked; with no
/// server, the container asks the host's (loopback ones dropped), as Docker's does.
fn resolv_conf(servers: &[String], search: &[String], options: &[String]) -> Result<String> {
    let mut out = String::new();
    for (i, s) in servers.iter().enumerate() {
        let ip: std::net::IpAddr = s.parse().map_err(|_| {
            let field = format!("HostConfig.Dns[{i}]");
            SpecError::sentence(&field, format!("{field}: \"{s}\" is not an IP address"))
        })?;
        out.push_str(&format!("nameserver {ip}\n"));
    }
    if servers.is_empty() {
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        for line in host.lines().filter(|l| l.starts_with("nameserver")) {
            let addr = line.split_whitespace().nth(1).unwrap_or_default();
            if addr.parse::<std::net::IpAddr>().is_ok_and(|ip| !ip.is_loopback()) {
                out.push_str(&format!("nameserver {addr}\n"));
            }
        }
    }
    let word = |field: &str, list: &[String]| -> Result<()> {
        for (i, w) in list.iter().enumerate() {
            let ok =
                !w.is_empty() && w.len() <= 253 && w.bytes().all(|b| b.is_ascii_graphic() && b != b'#' && b != b';');
            if !ok {
                let field = format!("HostConfig.{field}[{i}]");
                return Err(SpecError::sentence(&field, format!("{field}: \"{w}\" is not valid there")));
            }
        }
        Ok(())
    };
    word("DnsSearch", search)?;
    word("DnsOptions", options)?;
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    Ok(out)
}

/// Whether two mount targets name one path.
fn same_path(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Refuses `target` if a mount or tmpfs other than an anonymous volume has it already, and
/// takes it from an anonymous volume that has it.
fn claim_target(spec: &mut ContainerSpec, anonymous: &[String], target: &str, field: &str) -> Result<()> {
    let same = |a: &str| same_path(a, target);
    let replaceable = |m: &Mount| m.source.is_empty() && anonymous.contains(&m.target);
    let taken = spec.mounts.iter().any(|m| same(&m.target) && !replaceable(m)) || spec.tmpfs.keys().any(|t| same(t));
    if taken {
        return Err(SpecError::sentence(field, format!("Duplicate mount point: {target}")));
    }
    spec.mounts.retain(|m| !(replaceable(m) && same(&m.target)));
    Ok(())
}

fn add_mount(spec: &mut ContainerSpec, anonymous: &[String], mount: Mount, field: &str) -> Result<()> {
    claim_target(spec, anonymous, &mount.target, field)?;
    spec.mounts.push(mount);
    Ok(())
}

fn add_tmpfs(spec: &mut ContainerSpec, anonymous: &[String], target: &str, options: String, field: &str) -> Result<()> {
    claim_target(spec, anonymous, target, field)?;
    spec.tmpfs.insert(target.to_string(), options);
    Ok(())
}

/// One of `HostConfig.Mounts`, what `docker run --mount` sends: `bind` (`BindOptions.Propagation`
/// but the shared kinds, `NonRecursive`, `CreateMountpoint`), `volume` (no `Source`: an
/// anonymous one; `VolumeOptions.NoCopy`, `Labels`) and `tmpfs` (`TmpfsOptions.SizeBytes`,
/// `Mode`). A type or an option this daemon cannot honour is refused, naming it, never ignored.
fn host_mount(m: types::Mount, at: &str, spec: &mut ContainerSpec, anonymous: &[String]) -> Result<()> {
    let say = |field: &str, sentence: String| SpecError::sentence(format!("{at}.{field}"), sentence);
    let kind = m.typ.unwrap_or_default();
    let source = m.source.unwrap_or_default();
    let target = nonempty(m.target)
        .ok_or_else(|| say("Target", format!("{at}.Target is required: the absolute path in the container")))?;
    let read_only = m.read_only.unwrap_or(false);
    let consistency = m.consistency.unwrap_or_default();
    if !matches!(consistency.as_str(), "" | "default" | "consistent" | "cached" | "delegated") {
        return Err(say(
            "Consistency",
            format!("{at}.Consistency \"{consistency}\" is unknown: use default, consistent, cached or delegated"),
        ));
    }
    // Options of another type are a mistake Docker refuses too.
    let given = [
        ("BindOptions", m.bind_options.is_some()),
        ("VolumeOptions", m.volume_options.is_some()),
        ("TmpfsOptions", m.tmpfs_options.is_some()),
        ("ImageOptions", m.image_options.is_some()),
        ("ClusterOptions", m.cluster_options.is_some()),
    ];
    let only = |allowed: &str| match given.iter().find(|(other, set)| *set && *other != allowed) {
        Some((other, _)) => Err(say(other, format!("{at}.{other} must not be given for a mount of type \"{kind}\""))),
        None => Ok(()),
    };
    let mount = match kind.as_str() {
        "bind" => {
            only("BindOptions")?;
            let o = m.bind_options.unwrap_or_default();
            let propagation = nonempty(o.propagation)
                .map(|p| Propagation::parse(&p))
                .transpose()
                .map_err(|e| SpecError::refused(format!("{at}.BindOptions.Propagation"), e))?;
            if o.read_only_force_recursive.unwrap_or(false) {
                return Err(say(
                    "BindOptions.ReadOnlyForceRecursive",
                    format!(
                        "{at}.BindOptions.ReadOnlyForceRecursive is not supported: read-only binds here make the \
                         mount itself read-only, not the mounts below it"
                    ),
                ));
            }
            let create = o.create_mountpoint.unwrap_or(false);
            if source.starts_with('/') && !create && !std::path::Path::new(&source).exists() {
                return Err(say(
                    "Source",
                    format!("invalid mount config for type \"bind\": bind source path does not exist: {source}"),
                ));
            }
            Mount {
                kind: MountKind::Bind,
                source,
                target,
                read_only,
                propagation,
                non_recursive: o.non_recursive.unwrap_or(false),
                ..Default::default()
            }
        }
        "volume" => {
            only("VolumeOptions")?;
            let o = m.volume_options.unwrap_or_default();
            if let Some(sub) = nonempty(o.subpath) {
                return Err(say(
                    "VolumeOptions.Subpath",
                    format!("{at}.VolumeOptions.Subpath \"{sub}\" is not supported: mount the whole volume"),
                ));
            }
            if let Some(driver) = o.driver_config {
                if let Some(name) = nonempty(driver.name).filter(|n| n != "local") {
                    return Err(say(
                        "VolumeOptions.DriverConfig.Name",
                        format!(
                            "{at}.VolumeOptions.DriverConfig.Name: volume driver \"{name}\" is not available: the \
                             only driver is local"
                        ),
                    ));
                }
                if driver.options.is_some_and(|o| !o.is_empty()) {
                    return Err(say(
                        "VolumeOptions.DriverConfig.Options",
                        format!(
                            "{at}.VolumeOptions.DriverConfig.Options are not supported: the local driver here makes \
                             a plain directory"
                        ),
                    ));
                }
            }
            Mount {
                kind: MountKind::Volume,
                source,
                target,
                read_only,
                no_copy: o.no_copy.unwrap_or(false),
                volume_labels: o.labels.unwrap_or_default(),
                ..Default::default()
            }
        }
        "tmpfs" => {
            only("TmpfsOptions")?;
            if !source.is_empty() {
                return Err(say("Source", format!("{at}.Source must not be given for a tmpfs mount")));
            }
            let o = m.tmpfs_options.unwrap_or_default();
            if o.options.is_some_and(|o| !o.is_empty()) {
                return Err(say(
                    "TmpfsOptions.Options",
                    format!("{at}.TmpfsOptions.Options are not supported: use SizeBytes and Mode"),
                ));
            }
            let tmpfs = shoal_runtime::tmpfs_options_of(o.size_bytes.unwrap_or(0), o.mode.unwrap_or(0), read_only)
                .map_err(|e| say("TmpfsOptions", format!("{at}.TmpfsOptions: {e}")))?;
            if !target.starts_with('/') {
                return Err(say("Target", format!("{at}.Target \"{target}\" must be an absolute path")));
            }
            return add_tmpfs(spec, anonymous, &target, tmpfs, at);
        }
        "npipe" | "cluster" | "image" => {
            return Err(say(
                "Type",
                format!("{at}.Type \"{kind}\" is not supported by this daemon: use bind, volume or tmpfs"),
            ))
        }
        "" => return Err(say("Type", format!("{at}.Type is required: bind, volume or tmpfs"))),
        other => return Err(say("Type", format!("{at}.Type \"{other}\" is unknown: use bind, volume or tmpfs"))),
    };
    mount.check().map_err(|e| SpecError::sentence(at, format!("{at}: {e}")))?;
    add_mount(spec, anonymous, mount, at)
}

/// `HostConfig.Devices`: `[{PathOnHost, PathInContainer, CgroupPermissions}]`.
fn devices(list: Option<Vec<bollard::DeviceMapping>>) -> Result<Vec<Device>> {
    let list = list.unwrap_or_default();
    let mut devices = Vec::with_capacity(list.len());
    for (i, d) in list.into_iter().enumerate() {
        let at = format!("HostConfig.Devices[{i}]");
        let host = nonempty(d.path_on_host).ok_or_else(|| {
            SpecError::sentence(format!("{at}.PathOnHost"), format!("{at}.PathOnHost is required: name a host device"))
        })?;
        let inside = nonempty(d.path_in_container).unwrap_or_else(|| host.clone());
        let permissions = nonempty(d.cgroup_permissions).unwrap_or_else(|| "rwm".into());
        devices.push(Device::parse(&format!("{host}:{inside}:{permissions}")).map_err(|e| SpecError::refused(at, e))?);
    }
    Ok(devices)
}

/// `HostConfig.RestartPolicy`: `{Name, MaximumRetryCount}`.
fn restart_policy(policy: Option<types::RestartPolicy>) -> Result<RestartPolicy> {
    let Some(policy) = policy else { return Ok(RestartPolicy::No) };
    RestartPolicy::from_parts(&policy.name.unwrap_or_default(), policy.maximum_retry_count.unwrap_or(0))
        .map_err(|e| SpecError::refused("HostConfig.RestartPolicy", e))
}

/// `HostConfig.ConsoleSize`: `[rows, columns]`; `[0, 0]` or absent means unknown.
fn console_size(size: Option<Vec<usize>>) -> Result<Option<(u16, u16)>> {
    let bad = || {
        SpecError::sentence(
            "HostConfig.ConsoleSize",
            "HostConfig.ConsoleSize: expected [rows, columns], each 0 to 65535",
        )
    };
    let Some(size) = size else { return Ok(None) };
    let [rows, cols] = size.as_slice() else { return Err(bad()) };
    let dim = |d: usize| u16::try_from(d).map_err(|_| bad());
    let (rows, cols) = (dim(*rows)?, dim(*cols)?);
    Ok((rows > 0 && cols > 0).then_some((rows, cols)))
}

/// A container's state as Docker names it (its `StateString`): a running
/// container that is paused is `paused`, one its restart policy is about to
/// start again `restarting`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shown {
    Created,
    Running,
    Paused,
    Restarting,
    Exited,
}

fn shown(c: &ContainerInfo, restarting: bool) -> Shown {
    match c.state {
        _ if restarting => Shown::Restarting,
        ContainerState::Running if c.paused => Shown::Paused,
        ContainerState::Running => Shown::Running,
        ContainerState::Created => Shown::Created,
        ContainerState::Exited => Shown::Exited,
    }
}

/// `docker ps`'s STATUS column, as Docker words it: `Up 5 seconds`,
/// `Up 5 seconds (Paused)`, `Restarting (1) 2 seconds ago`, `Exited (0) 2 minutes ago`.
fn status_text(c: &ContainerInfo, restarting: bool) -> String {
    let now = shoal_proto::now_ns();
    let since = |ns: Option<i64>| human_duration(now - ns.unwrap_or(now));
    match shown(c, restarting) {
        Shown::Restarting => format!("Restarting ({}) {} ago", c.exit_code.unwrap_or(0), since(c.finished_at)),
        Shown::Created => "Created".into(),
        Shown::Paused => format!("Up {} (Paused)", since(c.started_at)),
        Shown::Running => format!("Up {}", since(c.started_at)),
        Shown::Exited => format!("Exited ({}) {} ago", c.exit_code.unwrap_or(-1), since(c.finished_at)),
    }
}

/// A container as `GET /containers/json` lists it; `restarting`: its restart
/// policy is about to start it again.
pub fn container_summary(c: &ContainerInfo, restarting: bool) -> types::ContainerSummary {
    use bollard::ContainerSummaryStateEnum as S;
    let state = match shown(c, restarting) {
        Shown::Restarting => S::RESTARTING,
        Shown::Paused => S::PAUSED,
        Shown::Running => S::RUNNING,
        Shown::Created => S::CREATED,
        Shown::Exited => S::EXITED,
    };
    types::ContainerSummary {
        summary: bollard::ContainerSummary {
            id: Some(c.id.clone()),
            names: Some(vec![format!("/{}", c.name)]),
            image: Some(c.image.clone()),
            image_id: Some(c.image_id.clone()),
            command: Some(c.command.join(" ")),
            created: Some(c.created_at / 1_000_000_000),
            state: Some(state),
            status: Some(status_text(c, restarting)),
            labels: Some(c.labels.clone().into_iter().collect()),
            ports: Some(Vec::new()),
            mounts: Some(Vec::new()),
            ..Default::default()
        },
        pid: Some(i64::from(c.pid.unwrap_or(0))),
    }
}

/// A container as `GET /containers/{id}/json` shows it.
pub fn container_inspect(c: &ContainerInfo, restarting: bool) -> bollard::ContainerInspectResponse {
    use bollard::ContainerStateStatusEnum as S;
    use bollard::RestartPolicyNameEnum as R;
    let status = match shown(c, restarting) {
        Shown::Restarting => S::RESTARTING,
        Shown::Paused => S::PAUSED,
        Shown::Running => S::RUNNING,
        Shown::Created => S::CREATED,
        Shown::Exited => S::EXITED,
    };
    let t = |ns: Option<i64>| ns.map(time).unwrap_or_else(|| "0001-01-01T00:00:00Z".into());
    let devices = c
        .devices
        .iter()
        .map(|d| {
            let mut parts = d.rsplitn(3, ':');
            let (permissions, inside, host) = (parts.next(), parts.next(), parts.next());
            bollard::DeviceMapping {
                path_on_host: host.map(String::from),
                path_in_container: inside.map(String::from),
                cgroup_permissions: permissions.map(String::from),
            }
        })
        .collect();
    let restart_name = match c.restart_policy {
        RestartPolicy::No => R::NO,
        RestartPolicy::OnFailure { .. } => R::ON_FAILURE,
        RestartPolicy::Always => R::ALWAYS,
        RestartPolicy::UnlessStopped => R::UNLESS_STOPPED,
    };
    bollard::ContainerInspectResponse {
        id: Some(c.id.clone()),
        created: Some(time(c.created_at)),
        path: Some(c.command.first().cloned().unwrap_or_default()),
        args: Some(c.command.iter().skip(1).cloned().collect()),
        state: Some(bollard::ContainerState {
            status: Some(status),
            running: Some(c.state == ContainerState::Running),
            paused: Some(c.paused),
            restarting: Some(restarting),
            oom_killed: Some(c.oom_killed),
            dead: Some(false),
            pid: Some(i64::from(c.pid.unwrap_or(0))),
            exit_code: Some(i64::from(c.exit_code.unwrap_or(0))),
            error: Some(c.error.clone().unwrap_or_default()),
            started_at: Some(t(c.started_at)),
            finished_at: Some(t(c.finished_at)),
            health: None,
        }),
        image: Some(c.image_id.clone()),
        name: Some(format!("/{}", c.name)),
        restart_count: Some(i64::from(c.restart_count)),
        config: Some(bollard::ContainerConfig {
            image: Some(c.image.clone()),
            labels: Some(c.labels.clone().into_iter().collect()),
            cmd: Some(c.command.clone()),
            stop_signal: Some(c.stop_signal.clone()),
            tty: Some(c.tty),
            open_stdin: Some(c.open_stdin),
            stdin_once: Some(c.stdin_once),
            attach_stdin: Some(c.open_stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        }),
        host_config: Some(bollard::HostConfig {
            restart_policy: Some(bollard::RestartPolicy {
                name: Some(restart_name),
                maximum_retry_count: Some(i64::from(c.restart_policy.max_retries())),
            }),
            devices: Some(devices),
            auto_remove: Some(c.auto_remove),
            ..Default::default()
        }),
        mounts: Some(Vec::new()),
        network_settings: Some(bollard::NetworkSettings::default()),
        ..Default::default()
    }
}

/// What `POST /containers/{id}/wait` answers once the container has ended:
/// its exit code (`-1` if it has none) and why it could not run, if it could not.
pub fn container_wait(exit_code: Option<i32>, error: Option<String>) -> bollard::ContainerWaitResponse {
    bollard::ContainerWaitResponse {
        status_code: i64::from(exit_code.unwrap_or(-1)),
        error: error.map(|message| bollard::ContainerWaitExitError { message: Some(message) }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The spec of a create body of image `demo` with `v`'s fields.
    fn spec_of(mut v: Value) -> Result<ContainerSpec> {
        v["Image"] = json!("demo");
        parse_container_create(&v, "")
    }

    fn mounts(list: Value) -> Result<ContainerSpec> {
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
            let err = mounts(list.clone()).expect_err(&list.to_string()).to_string();
            assert!(err.contains(expected), "{list}: {err}");
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
        assert!(err.to_string().contains("Duplicate mount point"), "{err}");
        let err = spec_of(json!({"HostConfig": {"Binds": ["../../x:/d"]}})).expect_err("a path as a volume name");
        assert!(err.to_string().contains("volume"), "{err}");
    }

    /// What the docker CLI 28.2 sends, as captured on its socket (the fuzz target's seeds).
    const CLI_RUN: &str = include_str!("../../../fuzz/corpus/api_bodies/container-create-cli-run.json");
    const CLI_RESTART: &str = include_str!("../../../fuzz/corpus/api_bodies/container-create-cli-restart.json");
    const CLI_OPTIONS: &str = include_str!("../../../fuzz/corpus/api_bodies/container-create-cli-options.json");
    const CLI_TTY_RM: &str = include_str!("../../../fuzz/corpus/api_bodies/container-create-cli-tty-rm.json");

    fn cli(text: &str) -> ContainerSpec {
        let v: Value = serde_json::from_str(text).expect("a captured body is JSON");
        parse_container_create(&v, "c").expect("what the docker CLI sends reads")
    }

    #[test]
    fn create_bodies_of_the_docker_cli_read() {
        // docker run --name c1 -e A=1 -l x=y -v /data --tmpfs /t:size=64k
        //   --mount type=volume,src=vol1,dst=/v bb:1 echo hi
        let run = cli(CLI_RUN);
        assert_eq!((run.name.as_str(), run.image.as_str()), ("c", "bb:1"));
        assert_eq!(run.cmd, Some(vec!["echo".to_string(), "hi".to_string()]));
        assert_eq!((run.entrypoint.as_ref(), run.env.as_slice()), (None, ["A=1".to_string()].as_slice()));
        assert_eq!(run.labels.get("x").map(String::as_str), Some("y"));
        let targets: Vec<(&str, &str)> = run.mounts.iter().map(|m| (m.source.as_str(), m.target.as_str())).collect();
        assert_eq!(targets, [("", "/data"), ("vol1", "/v")]);
        assert_eq!(run.tmpfs.get("/t").map(String::as_str), Some("size=64k"));
        assert_eq!((run.restart_policy, run.console_size, run.tty), (RestartPolicy::No, None, false));

        // docker create --name c2 --restart on-failure:3 bb:1 sleep 100
        assert_eq!(cli(CLI_RESTART).restart_policy, RestartPolicy::OnFailure { max_retries: 3 });

        // docker create -t -i --device /dev/null:/dev/mynull:rw --cap-add NET_ADMIN --cap-drop MKNOD
        //   --read-only --memory 64m --cpus 0.5 --pids-limit 50 --security-opt no-new-privileges
        //   --init --stop-signal SIGINT --stop-timeout 5 --user 1:1 -w / -h myhost
        //   --entrypoint /bin/sh --mount type=bind,src=/tmp,dst=/host,readonly,bind-propagation=rslave
        //   --mount type=tmpfs,dst=/run,tmpfs-size=1m,tmpfs-mode=1770 -l a=b bb:1 -c true
        let o = cli(CLI_OPTIONS);
        assert_eq!((o.tty, o.open_stdin, o.stdin_once), (true, true, true));
        assert_eq!(o.entrypoint, Some(vec!["/bin/sh".to_string()]));
        assert_eq!(
            (o.user.as_deref(), o.workdir.as_deref(), o.hostname.as_deref()),
            (Some("1:1"), Some("/"), Some("myhost"))
        );
        assert_eq!((o.stop_signal.as_deref(), o.stop_timeout), (Some("SIGINT"), Some(5)));
        assert_eq!(
            (o.cap_add.as_slice(), o.cap_drop.as_slice()),
            (["CAP_NET_ADMIN".to_string()].as_slice(), ["CAP_MKNOD".to_string()].as_slice())
        );
        assert_eq!((o.read_only, o.no_new_privileges, o.init, o.privileged), (true, true, true, false));
        assert_eq!((o.memory, o.nano_cpus, o.pids_limit), (Some(64 << 20), Some(500_000_000), Some(50)));
        assert_eq!(o.devices, vec![Device::parse("/dev/null:/dev/mynull:rw").expect("a device")]);
        let bind = &o.mounts[0];
        assert_eq!(
            (bind.kind, bind.source.as_str(), bind.target.as_str(), bind.read_only),
            (MountKind::Bind, "/tmp", "/host", true)
        );
        assert_eq!(bind.propagation, Some(Propagation::Rslave));
        assert_eq!(o.tmpfs.get("/run").map(String::as_str), Some("size=1048576,mode=1770"));

        // docker run -it --rm bb:1 sh -c 'echo hi' (in a terminal the CLI did not size)
        let tty = cli(CLI_TTY_RM);
        assert_eq!((tty.tty, tty.open_stdin, tty.console_size, tty.auto_remove), (true, true, None, true));
    }

    /// Docker decodes the body into typed fields and answers 400 for a value of the wrong
    /// type; shoal used to read such a value as its default (`"Tty": "yes"` as false, a
    /// label that is a number as ""), or a single string as a list.
    #[test]
    fn create_refuses_values_of_the_wrong_type() {
        let cases = [
            (json!({"Labels": {"a": 1}}), "Labels.a"),
            (json!({"Tty": "yes"}), "Tty"),
            (json!({"OpenStdin": 1}), "OpenStdin"),
            (json!({"Env": "A=1"}), "Env"),
            (json!({"Volumes": ["/d"]}), "Volumes"),
            (json!({"HostConfig": {"Privileged": "true"}}), "HostConfig.Privileged"),
            (json!({"HostConfig": {"ReadonlyRootfs": 1}}), "HostConfig.ReadonlyRootfs"),
            (json!({"HostConfig": {"Binds": "/a:/b"}}), "HostConfig.Binds"),
            (json!({"HostConfig": {"AutoRemove": "yes"}}), "HostConfig.AutoRemove"),
            (json!({"HostConfig": []}), "HostConfig"),
        ];
        for (body, field) in cases {
            let err = spec_of(body.clone()).expect_err(&body.to_string());
            assert_eq!(err.field, field, "{body}: {err}");
            assert!(err.to_string().starts_with(&format!("invalid {field}: ")), "{body}: {err}");
        }
        // What Docker's own types take stays taken: a command, or a capability, as one string.
        let spec = spec_of(json!({"Cmd": "true", "Entrypoint": "/bin/sh", "HostConfig": {"CapAdd": "NET_ADMIN"}}))
            .expect("strings where Docker takes them");
        assert_eq!((spec.cmd, spec.entrypoint), (Some(vec!["true".to_string()]), Some(vec!["/bin/sh".to_string()])));
        assert_eq!(spec.cap_add, ["NET_ADMIN"]);
        assert!(spec_of(json!({"Volumes": {"/d": {"ignored": 1}}})).is_ok(), "Docker ignores a volume's value");
    }

    /// Docker keeps one mount point per destination: `/d` and `/d/` in `Volumes` are one
    /// anonymous volume, where shoal made two at one path.
    #[test]
    fn one_anonymous_volume_per_path() {
        let spec = spec_of(json!({"Volumes": {"/d": {}, "/d/": {}, "/e": {}}})).expect("volumes");
        let targets: Vec<&str> = spec.mounts.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(targets, ["/d", "/e"]);
    }

    #[test]
    fn create_keeps_its_refusals() {
        let cases = [
            (json!({"Image": ""}), "Image is required"),
            (
                json!({"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "8080"}]}}}),
                "HostConfig.PortBindings is not supported",
            ),
            (json!({"HostConfig": {"CpuShares": 512}}), "HostConfig.CpuShares is not supported"),
            (
                json!({"HostConfig": {"NetworkMode": "web_net"}}),
                "HostConfig.NetworkMode \"web_net\" is not supported yet",
            ),
            (json!({"HostConfig": {"ExtraHosts": ["db"]}}), "give it as NAME:IP"),
            (json!({"HostConfig": {"ExtraHosts": ["db:not-an-ip"]}}), "is not an IP address"),
            (json!({"HostConfig": {"ExtraHosts": ["bad name:10.0.0.1"]}}), "is not a valid host name"),
            (json!({"HostConfig": {"Dns": ["8.8.8.x"]}}), "HostConfig.Dns[0]"),
            (json!({"HostConfig": {"DnsSearch": ["a\nb"]}}), "HostConfig.DnsSearch[0]"),
            (json!({"HostConfig": {"RestartPolicy": {"Name": "sometimes"}}}), "sometimes"),
            (
                json!({"HostConfig": {"Devices": [{"PathInContainer": "/dev/x"}]}}),
                "HostConfig.Devices[0].PathOnHost is required",
            ),
            (json!({"HostConfig": {"ConsoleSize": [1, 70000]}}), "expected [rows, columns], each 0 to 65535"),
            (json!({"HostConfig": {"ConsoleSize": [1]}}), "expected [rows, columns], each 0 to 65535"),
            (json!({"HostConfig": {"Binds": ["../../x:/d"]}}), "invalid volume name"),
        ];
        for (mut body, expected) in cases {
            if body.get("Image").is_none() {
                body["Image"] = json!("demo");
            }
            let err = parse_container_create(&body, "").expect_err(&body.to_string()).to_string();
            assert!(err.contains(expected), "{body}: {err}");
        }
        let err = parse_container_create(&Value::Null, "").expect_err("no body");
        assert_eq!(err.to_string(), "invalid ContainerCreateBody: the request body is empty");
    }

    fn container(state: ContainerState, paused: bool) -> ContainerInfo {
        let now = shoal_proto::now_ns();
        ContainerInfo {
            id: "a".repeat(64),
            name: "web".into(),
            image: "demo:1".into(),
            image_id: "sha256:1".into(),
            labels: Default::default(),
            state,
            pid: Some(42),
            exit_code: (state == ContainerState::Exited).then_some(3),
            error: None,
            created_at: now - 10_000_000_000,
            started_at: Some(now - 5_000_000_000),
            finished_at: (state == ContainerState::Exited).then_some(now),
            command: vec!["sleep".into(), "9".into()],
            oom_killed: false,
            paused,
            stop_signal: "SIGTERM".into(),
            stop_timeout: 10,
            restart_policy: RestartPolicy::OnFailure { max_retries: 2 },
            restart_count: 1,
            stopped_by_user: false,
            devices: vec!["/dev/null:/dev/n:rw".into()],
            tty: false,
            open_stdin: false,
            stdin_once: false,
            auto_remove: false,
        }
    }

    /// Docker shows a paused container as `paused` (its `StateString`) and its status as
    /// `Up … (Paused)`; shoal showed it as `running`, while its `status=running` filter
    /// already left it out.
    #[test]
    fn a_paused_container_shows_as_paused() {
        let paused = container(ContainerState::Running, true);
        let listed = super::super::json(&container_summary(&paused, false));
        assert_eq!(listed["State"], "paused", "{listed}");
        assert!(
            listed["Status"].as_str().is_some_and(|s| s.starts_with("Up ") && s.ends_with(" (Paused)")),
            "{listed}"
        );
        let shown = super::super::json(&container_inspect(&paused, false));
        assert_eq!(
            (&shown["State"]["Status"], &shown["State"]["Running"], &shown["State"]["Paused"]),
            (&json!("paused"), &json!(true), &json!(true))
        );

        let running = container(ContainerState::Running, false);
        assert_eq!(super::super::json(&container_summary(&running, false))["State"], "running");
        assert_eq!(super::super::json(&container_summary(&running, true))["State"], "restarting");
        let exited = super::super::json(&container_summary(&container(ContainerState::Exited, false), false));
        assert_eq!(exited["State"], "exited");
        assert!(exited["Status"].as_str().is_some_and(|s| s.starts_with("Exited (3) ")), "{exited}");
    }

    #[test]
    fn inspect_shows_what_the_runtime_keeps() {
        let c = container(ContainerState::Running, false);
        let v = super::super::json(&container_inspect(&c, false));
        assert_eq!(v["Name"], "/web");
        assert_eq!((&v["Path"], &v["Args"]), (&json!("sleep"), &json!(["9"])));
        assert_eq!(v["State"]["Pid"], 42);
        assert_eq!(v["HostConfig"]["RestartPolicy"], json!({"Name": "on-failure", "MaximumRetryCount": 2}));
        assert_eq!(
            v["HostConfig"]["Devices"],
            json!([{"PathOnHost": "/dev/null", "PathInContainer": "/dev/n", "CgroupPermissions": "rw"}])
        );
        assert_eq!(v["State"]["FinishedAt"], "0001-01-01T00:00:00Z");
        let listed = super::super::json(&container_summary(&c, false));
        assert_eq!(
            (&listed["Names"], &listed["Pid"], &listed["Command"]),
            (&json!(["/web"]), &json!(42), &json!("sleep 9"))
        );
    }
}
