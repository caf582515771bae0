//! One worker per assigned task: it drives the task's container through the
//! runtime (accepted → preparing → starting → running → complete | failed,
//! or shutdown when asked) and reports every change. A task with a health
//! check is `running` only once the check passed, and fails when its
//! container turns unhealthy.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use shoal_proto::{mount, ContainerStatus, Task, TaskState, TaskStatus, DEFAULT_STOP_GRACE_PERIOD_NS};
use shoal_runtime::{ContainerInfo, ContainerSpec, ContainerState, Mount, MountKind, NetworkMode, Runtime};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::files::{self, FileStore};
use crate::health::{self, Check, Monitor};
use crate::labels;
use crate::network::Networks;
use crate::reporter::Reporter;

/// What every worker shares.
#[derive(Clone)]
pub struct WorkerContext {
    pub runtime: Arc<Runtime>,
    pub reporter: Reporter,
    pub node_id: String,
    pub hostname: String,
    /// The secrets and configs the managers sent for this node's tasks.
    pub files: FileStore,
    /// The node's networks, or why it has none.
    pub network: Networks,
    /// The agent's: once cancelled, workers end and leave their containers running (a
    /// restarted agent re-adopts them), which an unassigned task's worker would remove.
    pub shutdown: CancellationToken,
}

impl WorkerContext {
    fn files_root(&self) -> PathBuf {
        files::root(self.runtime.root())
    }
}

/// The runtime mounts and tmpfs of a task's container spec. A bind source
/// must exist on this node; an anonymous volume (no source) is left to the runtime.
/// The spec came from another node: a volume name or a tmpfs mode the rules refuse is the
/// task's error, not a path or a mount option on this node.
fn container_mounts(
    spec: &shoal_proto::ContainerSpec,
    hostname: &str,
) -> Result<(Vec<Mount>, BTreeMap<String, String>), String> {
    let mut mounts = Vec::new();
    let mut tmpfs = BTreeMap::new();
    for m in &spec.mounts {
        match m.r#type() {
            mount::Type::Bind => {
                if !Path::new(&m.source).exists() {
                    return Err(format!(
                        "invalid mount config for type \"bind\": bind source path {} does not exist on node {hostname}: \
                         create it there, or constrain the service to nodes that have it",
                        m.source
                    ));
                }
                mounts.push(Mount {
                    kind: MountKind::Bind,
                    source: m.source.clone(),
                    target: m.target.clone(),
                    read_only: m.read_only,
                    ..Mount::default()
                });
            }
            mount::Type::Volume => {
                // No source: an anonymous volume, which the runtime names and removes with
                // the task's container.
                if !m.source.is_empty() {
                    shoal_proto::names::check_volume_name(&m.source)
                        .map_err(|why| format!("invalid mount config for type \"volume\" at {}: {why}", m.target))?;
                }
                mounts.push(Mount {
                    kind: MountKind::Volume,
                    source: m.source.clone(),
                    target: m.target.clone(),
                    read_only: m.read_only,
                    no_copy: m.volume_nocopy,
                    volume_labels: m.volume_labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                    ..Mount::default()
                });
            }
            mount::Type::Tmpfs => {
                let options = shoal_runtime::tmpfs_options_of(m.tmpfs_size, u64::from(m.tmpfs_mode), m.read_only)
                    .map_err(|e| format!("invalid mount config for type \"tmpfs\" at {}: {e}", m.target))?;
                tmpfs.insert(m.target.clone(), options);
            }
        }
    }
    Ok((mounts, tmpfs))
}

/// The container name of a task: `<service>.<slot>.<task id>`.
fn container_name(task: &Task) -> String {
    format!("{}.{}", task.name(), task.id)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, shoal_runtime::Error> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| e.report()),
        Err(e) => Err(format!("runtime call panicked or was cancelled: {e}")),
    }
}

struct Worker {
    ctx: WorkerContext,
    task_id: String,
    /// The last state this worker reported (it may be ahead of the task the
    /// manager last sent).
    reported: TaskState,
}

impl Worker {
    fn report(&mut self, state: TaskState, message: &str, err: &str, container: Option<&ContainerInfo>) {
        self.reported = state;
        let status = TaskStatus {
            timestamp: shoal_proto::now_ns(),
            state: state as i32,
            message: message.to_string(),
            err: err.to_string(),
            container: container.map(|c| ContainerStatus {
                container_id: c.id.clone(),
                pid: c.pid.unwrap_or(0),
                exit_code: c.exit_code.unwrap_or(0),
            }),
        };
        self.ctx.reporter.report(&self.task_id, status);
    }

    async fn find_container(&self, task: &Task) -> Option<ContainerInfo> {
        let rt = self.ctx.runtime.clone();
        let name = container_name(task);
        blocking(move || rt.container(&name)).await.ok()
    }

    /// Creates and starts the task's container, reporting each step.
    async fn start(&mut self, task: &Task) -> Option<ContainerInfo> {
        self.report(TaskState::Accepted, "accepted", "", None);
        self.report(TaskState::Preparing, "preparing", "", None);
        let spec = task.spec.as_ref().and_then(|s| s.container.clone()).unwrap_or_default();
        let rt = self.ctx.runtime.clone();
        let image = spec.image.clone();
        match blocking(move || rt.image(&image)).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                let err = format!(
                    "image \"{}\" is not on node {}: import it there with \"shoal image import ROOTFS.tar {}\"",
                    spec.image, self.ctx.hostname, spec.image
                );
                self.report(TaskState::Rejected, "preparing failed", &err, None);
                return None;
            }
            Err(e) => {
                self.report(TaskState::Rejected, "preparing failed", &e, None);
                return None;
            }
        }
        let mut container_labels: BTreeMap<String, String> = spec.labels.clone().into_iter().collect();
        container_labels.insert(labels::SERVICE_ID.into(), task.service_id.clone());
        container_labels.insert(
            labels::SERVICE_NAME.into(),
            task.service_annotations.as_ref().map(|a| a.name.clone()).unwrap_or_default(),
        );
        container_labels.insert(labels::TASK_ID.into(), task.id.clone());
        container_labels.insert(labels::TASK_NAME.into(), task.name().to_string());
        container_labels.insert(labels::NODE_ID.into(), self.ctx.node_id.clone());
        let limits = task.spec.as_ref().and_then(|s| s.resources.as_ref()).and_then(|r| r.limits);
        let (mut mounts, tmpfs) = match container_mounts(&spec, &self.ctx.hostname) {
            Ok(m) => m,
            Err(e) => {
                self.report(TaskState::Rejected, "preparing failed", &e, None);
                return None;
            }
        };
        let root = self.ctx.files_root();
        let (task_id, files_spec, store) = (task.id.clone(), spec.clone(), self.ctx.files.clone());
        match tokio::task::spawn_blocking(move || files::prepare(&root, &task_id, &files_spec, &store)).await {
            Ok(Ok(m)) => mounts.extend(m),
            Ok(Err(e)) => {
                self.report(TaskState::Rejected, "preparing failed", &e, None);
                return None;
            }
            Err(e) => {
                self.report(TaskState::Rejected, "preparing failed", &format!("writing the task's files: {e}"), None);
                return None;
            }
        }
        let network = match &self.ctx.network {
            Networks::On(network) => match network.prepare(task, &spec.hostname).await {
                Ok(n) => Some(n),
                Err(e) => {
                    files::remove(&self.ctx.files_root(), &task.id);
                    let err = format!("connecting the task to its networks on node {}: {e}", self.ctx.hostname);
                    self.report(TaskState::Rejected, "preparing failed", &err, None);
                    return None;
                }
            },
            Networks::Failed(why) if !task.networks.is_empty() => {
                files::remove(&self.ctx.files_root(), &task.id);
                let err = format!("node {} has no container networks: {why}", self.ctx.hostname);
                self.report(TaskState::Rejected, "preparing failed", &err, None);
                return None;
            }
            Networks::Failed(_) | Networks::Loopback => None,
        };
        let mut extra_hosts = network.as_ref().map(|n| n.hosts.clone()).unwrap_or_default();
        extra_hosts.extend(spec.hosts.iter().cloned());
        let cspec = ContainerSpec {
            // A reboot brings new tasks: the writable layer need not be durable.
            disposable: true,
            name: container_name(task),
            image: spec.image.clone(),
            entrypoint: (!spec.command.is_empty()).then(|| spec.command.clone()),
            cmd: (!spec.args.is_empty()).then(|| spec.args.clone()),
            env: spec.env.clone(),
            workdir: (!spec.dir.is_empty()).then(|| spec.dir.clone()),
            hostname: (!spec.hostname.is_empty()).then(|| spec.hostname.clone()),
            labels: container_labels,
            user: (!spec.user.is_empty()).then(|| spec.user.clone()),
            read_only: spec.read_only,
            init: spec.init.unwrap_or(false),
            stop_signal: (!spec.stop_signal.is_empty()).then(|| spec.stop_signal.clone()),
            stop_timeout: spec.stop_grace_period.map(|ns| (ns.max(0) / 1_000_000_000) as u64),
            memory: limits.map(|l| l.memory_bytes).filter(|m| *m > 0),
            nano_cpus: limits.map(|l| l.nano_cpus).filter(|c| *c > 0),
            pids_limit: limits.map(|l| l.pids).filter(|p| *p > 0),
            mounts,
            tmpfs,
            cap_add: spec.cap_add.clone(),
            cap_drop: spec.cap_drop.clone(),
            network: match &network {
                Some(n) => NetworkMode::Join(n.netns.clone()),
                None => NetworkMode::Private,
            },
            resolv_conf: network.map(|n| n.resolv_conf),
            extra_hosts,
            ..Default::default()
        };
        let rt = self.ctx.runtime.clone();
        let created = match blocking(move || rt.create_container(&cspec)).await {
            Ok(c) => c,
            Err(e) => {
                files::remove(&self.ctx.files_root(), &task.id);
                if let Some(network) = self.ctx.network.get() {
                    network.release(task).await;
                }
                self.report(TaskState::Rejected, "preparing failed", &e, None);
                return None;
            }
        };
        self.report(TaskState::Ready, "prepared", "", Some(&created));
        self.report(TaskState::Starting, "starting", "", Some(&created));
        let rt = self.ctx.runtime.clone();
        let id = created.id.clone();
        match blocking(move || rt.start_container(&id)).await {
            Ok(c) => {
                if health_check(task).is_some() {
                    self.report(TaskState::Starting, "started; waiting for the health check to pass", "", Some(&c));
                } else {
                    self.report(TaskState::Running, "started", "", Some(&c));
                }
                Some(c)
            }
            Err(e) => {
                let rt = self.ctx.runtime.clone();
                let id = created.id.clone();
                let info = blocking(move || rt.container(&id)).await.ok();
                self.report(TaskState::Failed, "starting container failed", &e, info.as_ref().or(Some(&created)));
                None
            }
        }
    }

    fn report_exit(&mut self, c: &ContainerInfo) {
        match c.exit_code {
            Some(0) => self.report(TaskState::Complete, "finished", "", Some(c)),
            Some(code) => self.report(TaskState::Failed, "started", &format!("task: non-zero exit ({code})"), Some(c)),
            None => self.report(
                TaskState::Failed,
                "started",
                c.error.as_deref().unwrap_or("container stopped with no exit status"),
                Some(c),
            ),
        }
    }

    async fn stop(&mut self, task: &Task) -> Option<ContainerInfo> {
        let c = self.find_container(task).await?;
        if c.state == ContainerState::Running {
            let grace = task
                .spec
                .as_ref()
                .and_then(|s| s.container.as_ref())
                .and_then(|c| c.stop_grace_period)
                .unwrap_or(DEFAULT_STOP_GRACE_PERIOD_NS)
                .max(0);
            let signal = task
                .spec
                .as_ref()
                .and_then(|s| s.container.as_ref())
                .map(|c| c.stop_signal.clone())
                .filter(|s| !s.is_empty());
            let rt = self.ctx.runtime.clone();
            let id = c.id.clone();
            if let Err(e) =
                blocking(move || rt.stop_container(&id, signal.as_deref(), Duration::from_nanos(grace as u64))).await
            {
                tracing::warn!(container = %c.id, error = %e, "stopping container failed");
            }
        }
        self.find_container(task).await
    }

    async fn remove_container(&self, task: &Task) {
        let rt = self.ctx.runtime.clone();
        let name = container_name(task);
        if let Ok(c) = blocking({
            let rt = rt.clone();
            let name = name.clone();
            move || rt.container(&name)
        })
        .await
        {
            if let Err(e) = blocking(move || rt.remove_container(&c.id, true)).await {
                tracing::warn!(container = %name, error = %e, "removing container failed");
            }
        }
    }
}

/// The task's health check, if it has one.
fn health_check(task: &Task) -> Option<Check> {
    Check::from_spec(task.spec.as_ref().and_then(|s| s.container.as_ref()).and_then(|c| c.healthcheck.as_ref()))
}

/// Drives one task until it is no longer assigned (its sender is dropped),
/// then removes its container; or until the agent stops, leaving the
/// container as it is.
pub async fn run(ctx: WorkerContext, mut rx: watch::Receiver<Task>) {
    let first = rx.borrow().clone();
    let mut w = Worker { ctx, task_id: first.id.clone(), reported: first.state() };
    let mut monitor: Option<Monitor> = None;
    let mut released = false;
    loop {
        if w.ctx.shutdown.is_cancelled() {
            return;
        }
        let task = rx.borrow_and_update().clone();
        let current = w.reported.max(task.state());
        let desired = task.desired_state();
        let check = health_check(&task);
        let mut running: Option<ContainerInfo> = None;
        if desired >= TaskState::Shutdown {
            monitor = None;
            let stopped = w.stop(&task).await;
            if !current.is_terminal() {
                w.report(TaskState::Shutdown, "shutdown", "", stopped.as_ref());
            }
        } else if desired == TaskState::Running && !current.is_terminal() {
            match w.find_container(&task).await {
                Some(c) if c.state == ContainerState::Running => {
                    // Re-adopted after a restart, or already reported. With a
                    // health check, `running` waits for the first pass.
                    if current != TaskState::Running && check.is_none() {
                        w.report(TaskState::Running, "started", "", Some(&c));
                    }
                    running = Some(c);
                }
                Some(c) if c.state == ContainerState::Exited => w.report_exit(&c),
                Some(_) | None if current >= TaskState::Starting => {
                    w.report(TaskState::Failed, "container lost", "the task's container is gone from this node", None)
                }
                Some(_) | None => running = w.start(&task).await,
            }
        }
        match (&running, check) {
            (Some(c), Some(check)) => {
                if monitor.as_ref().is_none_or(|m| m.container_id != c.id) {
                    let healthy = w.reported == TaskState::Running;
                    monitor = Some(Monitor::start(w.ctx.runtime.clone(), c.id.clone(), check, healthy));
                }
            }
            _ => monitor = None,
        }
        // An ended task's container needs no network: its sandbox goes now, not when the
        // task is reaped (its addresses are free for other tasks once it has ended).
        if w.reported.is_terminal() && !released {
            if let Some(network) = w.ctx.network.get() {
                network.release(&task).await;
            }
            released = true;
        }
        // Wait for the container to exit, its health to change, or the task to change.
        let rt = w.ctx.runtime.clone();
        let container = running.clone();
        let exited = async move {
            match container {
                Some(c) => rt.wait_container(&c.id).await.ok(),
                None => std::future::pending().await,
            }
        };
        let health_event = async {
            match monitor.as_mut() {
                Some(m) => m.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // The agent dropping its senders as it stops is no unassignment.
            () = w.ctx.shutdown.cancelled() => return,
            changed = rx.changed() => {
                if changed.is_err() {
                    if w.ctx.shutdown.is_cancelled() {
                        return;
                    }
                    break;
                }
            }
            info = exited => match info {
                Some(info) => w.report_exit(&info),
                // The runtime could not wait on the container: look again
                // shortly rather than spin.
                None => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
            },
            event = health_event => match event {
                health::Event::Healthy => {
                    if w.reported < TaskState::Running {
                        let info = w.find_container(&task).await.or(running);
                        w.report(TaskState::Running, "started; healthy", "", info.as_ref());
                    }
                }
                health::Event::Unhealthy(why) => {
                    monitor = None;
                    let stopped = w.stop(&task).await;
                    w.report(TaskState::Failed, "unhealthy container", &why, stopped.as_ref());
                }
            },
        }
    }
    drop(monitor);
    // No longer assigned: the task was reaped, so its container goes too.
    let task = rx.borrow().clone();
    w.stop(&task).await;
    w.remove_container(&task).await;
    if let Some(network) = w.ctx.network.get() {
        network.release(&task).await;
    }
    let root = w.ctx.files_root();
    let _ = tokio::task::spawn_blocking(move || files::remove(&root, &task.id)).await;
}

/// Removes task containers of this node that belong to no assigned task.
pub async fn remove_orphans(ctx: &WorkerContext, assigned: &HashSet<String>) {
    let rt = ctx.runtime.clone();
    let Ok(containers) = blocking(move || rt.list_containers()).await else { return };
    for c in containers {
        let Some(task_id) = c.labels.get(labels::TASK_ID) else { continue };
        if assigned.contains(task_id) {
            continue;
        }
        tracing::info!(container = %c.name, "removing the container of a task no longer assigned here");
        let rt = ctx.runtime.clone();
        let id = c.id.clone();
        if let Err(e) = blocking(move || rt.remove_container(&id, true)).await {
            tracing::warn!(container = %c.name, error = %e, "removing container failed");
        }
    }
    if let Some(network) = ctx.network.get() {
        network.remove_other_sandboxes(assigned).await;
    }
    let root = ctx.files_root();
    let assigned = assigned.clone();
    let _ = tokio::task::spawn_blocking(move || {
        for task_id in files::tasks_with_files(&root) {
            if !assigned.contains(&task_id) {
                files::remove(&root, &task_id);
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(mounts: Vec<shoal_proto::Mount>) -> shoal_proto::ContainerSpec {
        shoal_proto::ContainerSpec { mounts, ..Default::default() }
    }

    fn volume(source: &str) -> shoal_proto::Mount {
        let mut m = shoal_proto::Mount { source: source.into(), target: "/data".into(), ..Default::default() };
        m.set_type(mount::Type::Volume);
        m
    }

    #[test]
    fn task_mounts_from_another_node_are_held_to_the_rules() {
        for bad in ["..", "../../x", "/etc", "a/b", ".hidden"] {
            let err = container_mounts(&spec(vec![volume(bad)]), "n1").expect_err(bad);
            assert!(err.contains("not a valid volume name"), "{bad}: {err}");
        }
        let mut tmpfs = shoal_proto::Mount { target: "/t".into(), tmpfs_mode: 0o100777, ..Default::default() };
        tmpfs.set_type(mount::Type::Tmpfs);
        let err = container_mounts(&spec(vec![tmpfs.clone()]), "n1").expect_err("mode beyond 7777");
        assert!(err.contains("beyond 0o7777"), "{err}");

        tmpfs.tmpfs_mode = 0o1770;
        tmpfs.tmpfs_size = 1 << 20;
        let mut labelled = volume("app_data");
        labelled.volume_labels.insert("com.docker.stack.namespace".into(), "app".into());
        labelled.volume_nocopy = true;
        let (mounts, tmpfs) = container_mounts(&spec(vec![labelled, volume(""), tmpfs]), "n1").expect("valid");
        assert_eq!(tmpfs.get("/t").map(String::as_str), Some("size=1048576,mode=1770"));
        assert_eq!((mounts[0].source.as_str(), mounts[0].no_copy), ("app_data", true));
        assert_eq!(mounts[0].volume_labels.get("com.docker.stack.namespace").map(String::as_str), Some("app"));
        assert_eq!(mounts[1].source, "");
    }
}
