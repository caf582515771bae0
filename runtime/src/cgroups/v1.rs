//! cgroup v1: one directory per controller. Limits go to `memory.limit_in_bytes` (and
//! `memory.memsw.limit_in_bytes`, twice the limit as Docker's default swap, where swap is
//! accounted), `cpu.cfs_period_us` + `cpu.cfs_quota_us` and `pids.max`; pause writes
//! `freezer.state`; OOM kills are counted in `memory.oom_control`; device access goes to
//! `devices.deny` (everything) then `devices.allow` (one rule per write).

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use super::{cpu_quota_us, oom_kill_count, write, CPU_PERIOD_US};
use crate::{
    container::spec::Resources,
    error::{Error, IoContext},
};

/// Creates each controller's directory of the container and writes its limits.
pub(crate) fn create(dirs: &BTreeMap<String, PathBuf>, resources: &Resources) -> Result<(), Error> {
    for dir in dirs.values() {
        fs::create_dir_all(dir).context(|| format!("creating cgroup {}", dir.display()))?;
    }
    let dir = |controller: &str| {
        dirs.get(controller).ok_or_else(|| {
            Error::invalid(format!(
                "this machine has no cgroup v1 {controller} controller mounted, so the limit cannot be applied"
            ))
        })
    };
    if let Some(memory) = resources.memory {
        let dir = dir("memory")?;
        write(&dir.join("memory.limit_in_bytes"), &memory.to_string())?;
        let memsw = dir.join("memory.memsw.limit_in_bytes");
        if memsw.exists() {
            write(&memsw, &memory.saturating_mul(2).to_string())?;
        }
    }
    if let Some(nano_cpus) = resources.nano_cpus {
        let dir = dir("cpu")?;
        write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
        write(&dir.join("cpu.cfs_quota_us"), &cpu_quota_us(nano_cpus).to_string())?;
    }
    if let Some(pids) = resources.pids {
        write(&dir("pids")?.join("pids.max"), &pids.to_string())?;
    }
    Ok(())
}

/// Writes the container's device rules: deny everything, then allow the listed devices (or
/// allow everything, for `All`).
pub(crate) fn allow_devices(dir: &Path, access: &super::DeviceAccess<'_>) -> Result<(), Error> {
    match access.rules() {
        None => write(&dir.join("devices.allow"), "a"),
        Some(rules) => {
            write(&dir.join("devices.deny"), "a")?;
            for rule in rules {
                write(&dir.join("devices.allow"), &rule)?;
            }
            Ok(())
        }
    }
}

/// Asks the freezer to freeze or thaw; returns the file that shows when it is done.
pub(crate) fn freeze(dir: &Path, frozen: bool) -> Result<PathBuf, Error> {
    let state = dir.join("freezer.state");
    write(&state, if frozen { "FROZEN" } else { "THAWED" })?;
    Ok(state)
}

pub(crate) fn oom_killed(memory_dir: &Path) -> bool {
    fs::read_to_string(memory_dir.join("memory.oom_control")).is_ok_and(|t| oom_kill_count(&t) > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_limits_per_controller() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dirs: BTreeMap<String, PathBuf> = ["memory", "cpu", "pids", "freezer"]
            .iter()
            .map(|c| (c.to_string(), tmp.path().join(c).join("x")))
            .collect();
        let resources = Resources { memory: Some(32 << 20), nano_cpus: Some(500_000_000), pids: Some(20) };
        create(&dirs, &resources).expect("create");
        let read = |rel: &str| fs::read_to_string(tmp.path().join(rel)).expect(rel);
        assert_eq!(read("memory/x/memory.limit_in_bytes"), "33554432");
        assert_eq!(read("cpu/x/cpu.cfs_period_us"), "100000");
        assert_eq!(read("cpu/x/cpu.cfs_quota_us"), "50000");
        assert_eq!(read("pids/x/pids.max"), "20");
        // No swap accounting file, none written.
        assert!(!tmp.path().join("memory/x/memory.memsw.limit_in_bytes").exists());
        freeze(&dirs["freezer"], true).expect("freeze");
        assert_eq!(read("freezer/x/freezer.state"), "FROZEN");
        fs::write(tmp.path().join("memory/x/memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
            .expect("write");
        assert!(oom_killed(&dirs["memory"]));
    }

    #[test]
    fn device_rules_deny_then_allow() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let device = crate::container::spec::DeviceConfig {
            host_path: "/dev/loop-control".into(),
            path: "/dev/loop-control".into(),
            kind: crate::container::spec::DeviceKind::Char,
            major: 10,
            minor: 237,
            mode: 0o660,
            uid: 0,
            gid: 6,
            permissions: "rw".into(),
        };
        let devices = [device];
        let rules = super::super::DeviceAccess::Default(&devices).rules().expect("rules");
        assert_eq!(rules.first().map(String::as_str), Some("c *:* m"));
        assert_eq!(rules.last().map(String::as_str), Some("c 10:237 rw"));
        assert!(rules.iter().any(|r| r == "c 1:3 rwm"));
        // A fake cgroup file keeps only the last write, which is enough to see the order ended
        // with the device's own rule and began with the deny.
        allow_devices(tmp.path(), &super::super::DeviceAccess::Default(&devices)).expect("write");
        assert_eq!(fs::read_to_string(tmp.path().join("devices.deny")).expect("deny"), "a");
        assert_eq!(fs::read_to_string(tmp.path().join("devices.allow")).expect("allow"), "c 10:237 rw");
        allow_devices(tmp.path(), &super::super::DeviceAccess::All).expect("write");
        assert_eq!(fs::read_to_string(tmp.path().join("devices.allow")).expect("allow"), "a");
    }
}
