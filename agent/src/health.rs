//! Health checks: Docker's HEALTHCHECK run by the agent, inside the task's
//! container, through the runtime's exec.
//!
//! The first check runs one interval (or start interval) after the monitor
//! starts. A passing check makes the container healthy: the worker reports
//! the task `running` only then (Swarm's rule, so `depends_on:
//! service_healthy` can wait on it). Failures during the start period do
//! not count; after it, `retries` failures in a row make the container
//! unhealthy, and the worker stops it and fails the task.

use std::sync::Arc;
use std::time::Duration;

use shoal_proto::HealthConfig;
use shoal_runtime::{ExecSpec, Runtime};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u64 = 3;
/// How much of a failing check's output goes into the task's error.
const OUTPUT_LIMIT: usize = 200;

/// A health check with Docker's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub cmd: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u64,
    pub start_period: Duration,
    pub start_interval: Duration,
}

fn duration(ns: i64, default: Duration) -> Duration {
    if ns > 0 {
        Duration::from_nanos(ns as u64)
    } else {
        default
    }
}

impl Check {
    /// The check a spec asks for; `None` without one, with `["NONE"]`, or
    /// with an empty test (which would mean the image's own check: images'
    /// checks are not run yet).
    pub fn from_spec(h: Option<&HealthConfig>) -> Option<Check> {
        let h = h?;
        let cmd = match h.test.first().map(String::as_str) {
            Some("CMD") => h.test[1..].to_vec(),
            Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), h.test[1..].join(" ")],
            _ => return None,
        };
        if cmd.first().is_none_or(|c| c.is_empty()) {
            return None;
        }
        let interval = duration(h.interval, DEFAULT_INTERVAL);
        Some(Check {
            cmd,
            interval,
            timeout: duration(h.timeout, DEFAULT_TIMEOUT),
            retries: if h.retries > 0 { h.retries } else { DEFAULT_RETRIES },
            start_period: duration(h.start_period, Duration::ZERO),
            start_interval: duration(h.start_interval, interval),
        })
    }
}

/// What the monitor tells the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The first passing check.
    Healthy,
    /// `retries` checks in a row failed; the reason names the last one.
    Unhealthy(String),
}

/// A running monitor of one container; stops when dropped.
pub struct Monitor {
    pub container_id: String,
    events: mpsc::Receiver<Event>,
    task: JoinHandle<()>,
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Monitor {
    /// Starts checking container `container_id`; `healthy` says whether it
    /// already passed (a container re-adopted as running).
    pub fn start(runtime: Arc<Runtime>, container_id: String, check: Check, healthy: bool) -> Monitor {
        let (tx, events) = mpsc::channel(2);
        let task = tokio::spawn(run(runtime, container_id.clone(), check, healthy, tx));
        Monitor { container_id, events, task }
    }

    /// The next event; pending forever once the monitor has nothing more to say.
    pub async fn next(&mut self) -> Event {
        match self.events.recv().await {
            Some(e) => e,
            None => std::future::pending().await,
        }
    }
}

async fn run(runtime: Arc<Runtime>, id: String, check: Check, mut healthy: bool, tx: mpsc::Sender<Event>) {
    let started = tokio::time::Instant::now();
    let mut failures = 0u64;
    loop {
        let in_start_period = !healthy && started.elapsed() < check.start_period;
        tokio::time::sleep(if in_start_period { check.start_interval } else { check.interval }).await;
        match probe(&runtime, &id, &check).await {
            Ok(()) => {
                failures = 0;
                if !healthy {
                    healthy = true;
                    if tx.send(Event::Healthy).await.is_err() {
                        return;
                    }
                }
            }
            // A failure inside the start period does not count, unless the
            // container was healthy once already.
            Err(_) if !healthy && started.elapsed() < check.start_period => {}
            Err(why) => {
                failures += 1;
                if failures >= check.retries {
                    let _ = tx
                        .send(Event::Unhealthy(format!(
                            "unhealthy container: the health check failed {failures} times in a row; last: {why}"
                        )))
                        .await;
                    return;
                }
            }
        }
    }
}

/// Runs the check once: `Ok` when it exits 0 within the timeout.
async fn probe(runtime: &Arc<Runtime>, id: &str, check: &Check) -> Result<(), String> {
    let rt = runtime.clone();
    let id = id.to_string();
    let spec = ExecSpec { cmd: check.cmd.clone(), ..Default::default() };
    let exec = tokio::task::spawn_blocking(move || rt.exec(&id, &spec));
    match tokio::time::timeout(check.timeout, exec).await {
        Err(_) => Err(format!("timed out after {:?}", check.timeout)),
        Ok(Err(e)) => Err(format!("the check could not run: {e}")),
        Ok(Ok(Err(e))) => Err(e.report()),
        Ok(Ok(Ok(out))) if out.exit_code == 0 => Ok(()),
        Ok(Ok(Ok(out))) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            let text = text.trim();
            let text: String = text.chars().take(OUTPUT_LIMIT).collect();
            Err(if text.is_empty() {
                format!("exit code {}", out.exit_code)
            } else {
                format!("exit code {}: {text}", out.exit_code)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_from_specs() {
        let spec =
            |test: &[&str]| HealthConfig { test: test.iter().map(|s| s.to_string()).collect(), ..Default::default() };
        assert_eq!(Check::from_spec(None), None);
        assert_eq!(Check::from_spec(Some(&spec(&["NONE"]))), None);
        assert_eq!(Check::from_spec(Some(&spec(&[]))), None);
        let c = Check::from_spec(Some(&spec(&["CMD-SHELL", "test -f /ready"]))).unwrap();
        assert_eq!(c.cmd, ["/bin/sh", "-c", "test -f /ready"]);
        assert_eq!((c.interval, c.retries, c.start_interval), (DEFAULT_INTERVAL, 3, DEFAULT_INTERVAL));
        let c = Check::from_spec(Some(&HealthConfig { interval: 1_000_000_000, retries: 2, ..spec(&["CMD", "true"]) }))
            .unwrap();
        assert_eq!((c.cmd.as_slice(), c.interval, c.retries), (&["true".to_string()][..], Duration::from_secs(1), 2));
    }
}
