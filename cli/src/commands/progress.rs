//! Waiting for services to converge, with a live progress view: per service
//! running/desired and the newest task error. Fails fast with the reason
//! when a service cannot converge (image missing, no suitable node, a task
//! that keeps failing), instead of hanging.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde_json::Value;

use super::{n, parse_time, s};
use crate::client::{filters, Client};

/// Failed attempts of one service (since the wait began) before giving up.
const MAX_FAILURES: usize = 3;
/// How long a task may wait for a node (or a network address) before the
/// wait gives up.
const PENDING_GRACE: Duration = Duration::from_secs(15);

/// Waits until every service in `ids` runs all its desired tasks (those of
/// its current spec). `since` (Unix ns) is when the change was made: older
/// task failures do not count.
pub async fn wait_converged(client: &Client, ids: &[String], since: i64, timeout: Duration) -> anyhow::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_lines: BTreeMap<String, String> = BTreeMap::new();
    let pairs: Vec<(&str, &str)> = ids.iter().map(|id| ("service", id.as_str())).collect();
    let mut with_uptodate = pairs.clone();
    with_uptodate.push(("_up-to-date", "true"));
    loop {
        let services = client.get("/services?status=true").await?;
        let tasks = client.get(&format!("/tasks?filters={}", filters(&with_uptodate))).await?;
        let tasks = tasks.as_array().cloned().unwrap_or_default();
        let mut done = true;
        for id in ids {
            let Some(svc) = services.as_array().and_then(|a| a.iter().find(|s| s["ID"].as_str() == Some(id))) else {
                anyhow::bail!("service {id} was removed while waiting for it");
            };
            let name = s(svc, &["Spec", "Name"]).to_string();
            let desired = n(svc, &["Spec", "Mode", "Replicated", "Replicas"]) as usize;
            let mine: Vec<&Value> = tasks.iter().filter(|t| t["ServiceID"].as_str() == Some(id)).collect();
            let live: Vec<&&Value> = mine.iter().filter(|t| s(t, &["DesiredState"]) == "running").collect();
            let running_slots: HashSet<i64> =
                live.iter().filter(|t| s(t, &["Status", "State"]) == "running").map(|t| n(t, &["Slot"])).collect();
            let running = running_slots.len();
            let recent = |t: &&&Value| parse_time(s(t, &["CreatedAt"])).unwrap_or(0) >= since;
            let failures: Vec<&&Value> = mine
                .iter()
                .filter(recent)
                .filter(|t| matches!(s(t, &["Status", "State"]), "failed" | "rejected"))
                .collect();
            let newest_err = mine
                .iter()
                .filter(|t| !s(t, &["Status", "Err"]).is_empty())
                .max_by_key(|t| parse_time(s(t, &["Status", "Timestamp"])).unwrap_or(0))
                .map(|t| s(t, &["Status", "Err"]).to_string());
            let mut line = format!("{name}: {running}/{desired} running");
            // Converged: every slot runs an up-to-date task and nothing else
            // is still meant to run (a scale-down has been applied).
            let converged = running == desired && live.len() == desired;
            if !converged {
                done = false;
                if let Some(e) = &newest_err {
                    line.push_str(&format!(" ({e})"));
                }
            }
            if last_lines.get(id) != Some(&line) {
                eprintln!("{line}");
                last_lines.insert(id.clone(), line);
            }
            if running < desired {
                if let Some(t) = failures.iter().find(|t| s(t, &["Status", "State"]) == "rejected") {
                    anyhow::bail!(
                        "service {name} cannot converge: task {} was rejected: {}",
                        s(t, &["Name"]),
                        s(t, &["Status", "Err"])
                    );
                }
                if failures.len() >= MAX_FAILURES {
                    anyhow::bail!(
                        "service {name} cannot converge: its tasks failed {} times; the last error: {}",
                        failures.len(),
                        newest_err.unwrap_or_default()
                    );
                }
                // Waiting for a node (`pending`), or for a network address
                // (`new`, with an error saying which network is full).
                let stuck = live.iter().find(|t| {
                    let waiting = match s(t, &["Status", "State"]) {
                        "pending" => true,
                        "new" => !s(t, &["Status", "Err"]).is_empty(),
                        _ => false,
                    };
                    waiting
                        && shoal_proto::now_ns() - parse_time(s(t, &["CreatedAt"])).unwrap_or(i64::MAX)
                            > PENDING_GRACE.as_nanos() as i64
                });
                if let Some(t) = stuck {
                    anyhow::bail!("service {name} cannot converge: {}", s(t, &["Status", "Err"]));
                }
            }
        }
        if done {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "services did not converge within {}s; see \"shoal service ps\" for their tasks",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
