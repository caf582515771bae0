//! `shoal machine …` and `shoal lab down`: simulated hosts.

use std::path::{Path, PathBuf};

use bollard_stubs::models::LocalNodeState;
use serde_json::json;

use super::table::Table;
use super::{print_json, s, Format};
use crate::client::Client;
use crate::lab::Lab;

pub async fn ls(lab: &Lab, format: Format) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for m in lab.machines()? {
        let running = lab.daemon_pid(&m.name).is_some();
        let swarm = if running {
            let client = Client::new(&format!("unix://{}", lab.socket(&m.name).display()))?;
            match super::swarm::swarm_info(&client).await {
                Ok(swarm) => match swarm.local_node_state {
                    Some(LocalNodeState::ACTIVE) if super::swarm::is_manager(&swarm) => "manager".to_string(),
                    Some(LocalNodeState::ACTIVE) => "worker".to_string(),
                    state => state.map(|s| s.to_string()).unwrap_or_default(),
                },
                Err(_) => "unknown".into(),
            }
        } else {
            String::new()
        };
        rows.push(json!({
            "Name": m.name,
            "Address": m.addr.to_string(),
            "Daemon": if running { "running" } else { "stopped" },
            "Swarm": swarm,
            "Socket": format!("unix://{}", lab.socket(&m.name).display()),
        }));
    }
    if format == Format::Json {
        return print_json(&serde_json::Value::Array(rows));
    }
    let mut t = Table::new(&["NAME", "ADDRESS", "DAEMON", "SWARM", "SOCKET"]);
    for r in &rows {
        t.row(["Name", "Address", "Daemon", "Swarm", "Socket"].iter().map(|k| s(r, &[k]).to_string()).collect());
    }
    t.print();
    Ok(())
}

/// Runs `cmd` inside the machine, with its daemon's socket in `SHOAL_HOST`;
/// returns the command's exit code.
pub fn ssh(lab: &Lab, name: &str, cmd: &[String]) -> anyhow::Result<i32> {
    let m = lab.machine(name)?;
    let Some((program, args)) = cmd.split_first() else {
        anyhow::bail!("give the command to run: shoal machine ssh {name} -- COMMAND [ARGS…]");
    };
    // `shoal` inside a machine is this very binary.
    let program = if program == "shoal" {
        std::env::current_exe().map_err(|e| anyhow::anyhow!("finding the shoal binary: {e}"))?
    } else {
        PathBuf::from(program)
    };
    let status = lab
        .command_in(&m, &program)?
        .args(args)
        .status()
        .map_err(|e| anyhow::anyhow!("running {} on {name}: {e}", program.display()))?;
    Ok(status.code().unwrap_or(128 + status.signal_or_zero()))
}

trait SignalOrZero {
    fn signal_or_zero(&self) -> i32;
}

impl SignalOrZero for std::process::ExitStatus {
    fn signal_or_zero(&self) -> i32 {
        std::os::unix::process::ExitStatusExt::signal(self).unwrap_or(0)
    }
}

/// `scp SRC MACHINE:DST`: machines share this host's filesystem, so a
/// relative DST lands in the machine's own folder and an absolute one where
/// it says.
pub fn scp(lab: &Lab, src: &Path, dst: &str) -> anyhow::Result<PathBuf> {
    let Some((name, path)) = dst.split_once(':') else {
        anyhow::bail!("the destination must be MACHINE:PATH, e.g. n1:/tmp/file");
    };
    let m = lab.machine(name)?;
    let target = if Path::new(path).is_absolute() {
        PathBuf::from(path)
    } else {
        lab.data_root(&m.name).parent().map(|d| d.join("files").join(path)).unwrap_or_else(|| PathBuf::from(path))
    };
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    }
    std::fs::copy(src, &target)
        .map_err(|e| anyhow::anyhow!("copying {} to {}: {e}", src.display(), target.display()))?;
    Ok(target)
}
