//! Exec instances (Docker's exec API): made for a running container, run once (to their end
//! with the output collected, or spawned with their stdio handed to the caller), then kept with
//! their exit code for the client that asks how they ended. The latest [`KEPT`] are
//! remembered; the oldest ended ones go first.
//!
//! Boundary: the records and what running one means; the API's handlers parse requests into
//! these calls, and stream and render what they return.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use shoal_runtime::{ContainerState, ExecOutput, ExecProcess, ExecSpec, Runtime};

use super::containers::{blocking, ContainerError};

/// How many exec instances are remembered; the oldest ended ones go first.
pub const KEPT: usize = 256;

/// Exit code recorded for an instance whose command could not be run (Docker's "cannot
/// invoke").
const CANNOT_RUN: i32 = 126;

/// The daemon's exec instances, and the runtime they run on.
pub struct Execs {
    runtime: Arc<Runtime>,
    instances: Instances,
}

/// The exec instances, by id.
#[derive(Default)]
struct Instances(Mutex<HashMap<String, Exec>>);

/// One exec instance.
#[derive(Clone)]
pub struct Exec {
    /// The id of its container.
    pub container: String,
    pub spec: ExecSpec,
    /// Whether its client wants the command's stdout, and its stderr.
    pub stdout: bool,
    pub stderr: bool,
    /// Made at (for forgetting the oldest first).
    seq: u64,
    pub state: Run,
    /// The terminal's master while it runs with one (for resizing).
    terminal: Option<Arc<OwnedFd>>,
}

/// Where an instance is in its one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    Created,
    Running,
    Exited(i32),
}

impl Instances {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Exec>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, id: String, exec: Exec) {
        let mut execs = self.lock();
        while execs.len() >= KEPT {
            let oldest = execs
                .iter()
                .filter(|(_, e)| e.state != Run::Running)
                .min_by_key(|(_, e)| e.seq)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(id) => execs.remove(&id),
                None => break,
            };
        }
        execs.insert(id, exec);
    }

    fn get(&self, id: &str) -> Result<Exec, ContainerError> {
        self.lock().get(id).cloned().ok_or_else(|| not_found(id))
    }

    fn set(&self, id: &str, state: Run) {
        if let Some(e) = self.lock().get_mut(id) {
            e.state = state;
            if state != Run::Running {
                e.terminal = None;
            }
        }
    }

    fn set_terminal(&self, id: &str, terminal: Option<Arc<OwnedFd>>) {
        if let Some(e) = self.lock().get_mut(id) {
            e.terminal = terminal;
        }
    }

    /// Marks `id` running unless it ran already (an instance runs once).
    fn begin(&self, id: &str) -> Result<Exec, ContainerError> {
        let mut execs = self.lock();
        let exec = execs.get_mut(id).ok_or_else(|| not_found(id))?;
        if exec.state != Run::Created {
            return Err(ContainerError::Conflict(format!("exec instance {id} has already been started")));
        }
        exec.state = Run::Running;
        Ok(exec.clone())
    }
}

fn not_found(id: &str) -> ContainerError {
    ContainerError::NotFound(format!("No such exec instance: {id}"))
}

impl Execs {
    pub fn new(runtime: Arc<Runtime>) -> Execs {
        Execs { runtime, instances: Instances::default() }
    }

    /// Makes an exec instance of `spec` in container `container`, which must be running and
    /// not paused; `stdout` and `stderr` say which of the command's streams its client wants.
    /// Returns the instance's id.
    pub async fn create(
        &self,
        container: &str,
        spec: ExecSpec,
        stdout: bool,
        stderr: bool,
    ) -> Result<String, ContainerError> {
        let key = container.to_string();
        let c = blocking(&self.runtime, move |rt| rt.container(&key)).await?;
        if c.state != ContainerState::Running {
            return Err(ContainerError::Conflict(format!("container {} is not running: start it first", c.name)));
        }
        if c.paused {
            return Err(ContainerError::Conflict(format!("container {} is paused: unpause it first", c.name)));
        }
        let exec_id: String = (0..4).map(|_| format!("{:016x}", rand::random::<u64>())).collect();
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let exec = Exec {
            container: c.id,
            spec,
            stdout,
            stderr,
            seq: SEQ.fetch_add(1, Ordering::Relaxed),
            state: Run::Created,
            terminal: None,
        };
        self.instances.insert(exec_id.clone(), exec);
        Ok(exec_id)
    }

    /// Exec instance `id` as it is now.
    pub fn get(&self, id: &str) -> Result<Exec, ContainerError> {
        self.instances.get(id)
    }

    /// Starts the one run of instance `id`: marks it running (refused if it ran already) and
    /// returns it, for [`Execs::run`] or [`Execs::spawn`].
    pub fn begin(&self, id: &str) -> Result<Exec, ContainerError> {
        self.instances.begin(id)
    }

    /// Runs the begun instance `id` (as `exec`, as it is to run) to its end with its output
    /// collected, and records its exit code.
    pub async fn run(&self, id: &str, exec: &Exec) -> Result<ExecOutput, ContainerError> {
        let (container, spec) = (exec.container.clone(), exec.spec.clone());
        let out = blocking(&self.runtime, move |rt| rt.exec(&container, &spec)).await;
        self.instances.set(id, Run::Exited(out.as_ref().map(|o| o.exit_code).unwrap_or(CANNOT_RUN)));
        out
    }

    /// Spawns the begun instance `id` (as `exec`, as it is to run) with its stdio handed back,
    /// and keeps its terminal for resizes; one that cannot be spawned is recorded as ended.
    /// [`Execs::finish`] waits for it.
    pub async fn spawn(&self, id: &str, exec: &Exec) -> Result<ExecProcess, ContainerError> {
        let (container, spec) = (exec.container.clone(), exec.spec.clone());
        let process = match blocking(&self.runtime, move |rt| rt.exec_spawn(&container, &spec)).await {
            Ok(p) => p,
            Err(e) => {
                self.instances.set(id, Run::Exited(CANNOT_RUN));
                return Err(e);
            }
        };
        self.instances.set_terminal(id, process.terminal.as_ref().and_then(|t| t.try_clone().ok()).map(Arc::new));
        Ok(process)
    }

    /// Waits for the spawned instance `id` to end and records its exit code: returns it, with
    /// what went wrong when the command could not be run.
    pub async fn finish(&self, id: &str, process: ExecProcess) -> (i32, Option<String>) {
        let ended = tokio::task::spawn_blocking(move || process.wait()).await;
        let (code, failure) = match ended {
            Ok(Ok(code)) => (code, None),
            Ok(Err(shoal_runtime::Error::Exec { message, exit_code, .. })) => (exit_code, Some(message)),
            Ok(Err(e)) => (CANNOT_RUN, Some(e.to_string())),
            Err(e) => (CANNOT_RUN, Some(e.to_string())),
        };
        self.instances.set(id, Run::Exited(code));
        (code, failure)
    }

    /// Resizes the terminal of instance `id` while it runs (without one there is nothing to
    /// resize).
    pub fn resize(&self, id: &str, rows: u16, cols: u16) -> Result<(), ContainerError> {
        let exec = self.instances.get(id)?;
        if let Some(master) = exec.terminal {
            shoal_runtime::resize_terminal(master.as_fd(), rows, cols)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(seq: u64, state: Run) -> Exec {
        Exec {
            container: "c".into(),
            spec: ExecSpec::default(),
            stdout: true,
            stderr: true,
            seq,
            state,
            terminal: None,
        }
    }

    #[test]
    fn the_oldest_ended_instances_go_first_and_running_ones_stay() {
        let execs = Instances::default();
        execs.insert("running".into(), exec(0, Run::Running));
        for i in 1..KEPT as u64 {
            execs.insert(format!("e{i}"), exec(i, Run::Exited(0)));
        }
        assert_eq!(execs.lock().len(), KEPT);
        execs.insert("new".into(), exec(KEPT as u64, Run::Created));
        assert_eq!(execs.lock().len(), KEPT);
        assert!(execs.get("running").is_ok(), "a running instance is never forgotten");
        assert!(matches!(execs.get("e1"), Err(ContainerError::NotFound(_))), "the oldest ended one goes");
        assert!(execs.get("e2").is_ok());
        assert!(execs.get("new").is_ok());
    }

    #[test]
    fn an_instance_runs_once() {
        let execs = Instances::default();
        execs.insert("x".into(), exec(0, Run::Created));
        assert_eq!(execs.begin("x").map(|e| e.state).ok(), Some(Run::Running));
        assert!(matches!(execs.begin("x"), Err(ContainerError::Conflict(_))));
        assert!(matches!(execs.begin("nope"), Err(ContainerError::NotFound(_))));
        execs.set("x", Run::Exited(3));
        assert_eq!(execs.get("x").map(|e| e.state).ok(), Some(Run::Exited(3)));
    }
}
