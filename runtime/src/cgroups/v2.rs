//! cgroup v2: one directory in the unified hierarchy. The controllers are enabled in each
//! ancestor's `cgroup.subtree_control` (those the hierarchy offers among cpu, memory, pids),
//! then limits go to `memory.max` (and `memory.swap.max` equal to it where swap is accounted:
//! Docker's default of twice the limit in memory+swap), `cpu.max` (`quota period`) and
//! `pids.max`; pause writes `cgroup.freeze` and waits for `frozen 1` in `cgroup.events`; OOM
//! kills are counted in `memory.events`.

use std::{
    fs,
    path::{Path, PathBuf},
};

use super::{cpu_quota_us, oom_kill_count, write, CPU_PERIOD_US};
use crate::{
    container::spec::Resources,
    error::{Error, IoContext},
};

const WANTED: [&str; 3] = ["cpu", "memory", "pids"];

/// Creates the container's cgroup `dir` below the hierarchy mounted at `mount`, with limits.
pub(crate) fn create(mount: &Path, dir: &Path, resources: &Resources) -> Result<(), Error> {
    let available = fs::read_to_string(mount.join("cgroup.controllers"))
        .context(|| format!("reading {}", mount.join("cgroup.controllers").display()))?;
    let enable: Vec<String> =
        WANTED.iter().filter(|c| available.split_whitespace().any(|a| a == **c)).map(|c| format!("+{c}")).collect();
    let enable = enable.join(" ");
    // Every ancestor from the mount down to the container's parent delegates the controllers.
    let relative = dir.strip_prefix(mount).map_err(|_| {
        Error::invalid(format!("cgroup {} is not below the hierarchy at {}", dir.display(), mount.display()))
    })?;
    let mut ancestor = mount.to_path_buf();
    let components: Vec<_> = relative.components().collect();
    for (i, component) in components.iter().enumerate() {
        if !enable.is_empty() {
            write(&ancestor.join("cgroup.subtree_control"), &enable)?;
        }
        ancestor.push(component);
        if i + 1 < components.len() || !ancestor.exists() {
            fs::create_dir_all(&ancestor).context(|| format!("creating cgroup {}", ancestor.display()))?;
        }
    }
    if let Some(memory) = resources.memory {
        write(&dir.join("memory.max"), &memory.to_string())?;
        let swap = dir.join("memory.swap.max");
        if swap.exists() {
            write(&swap, &memory.to_string())?;
        }
    }
    if let Some(nano_cpus) = resources.nano_cpus {
        write(&dir.join("cpu.max"), &format!("{} {CPU_PERIOD_US}", cpu_quota_us(nano_cpus)))?;
    }
    if let Some(pids) = resources.pids {
        write(&dir.join("pids.max"), &pids.to_string())?;
    }
    Ok(())
}

/// Asks the kernel to freeze or thaw; returns the file that shows when it is done.
pub(crate) fn freeze(dir: &Path, frozen: bool) -> Result<PathBuf, Error> {
    write(&dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
    Ok(dir.join("cgroup.events"))
}

pub(crate) fn oom_killed(dir: &Path) -> bool {
    fs::read_to_string(dir.join("memory.events")).is_ok_and(|t| oom_kill_count(&t) > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file under `root` with its content, for comparing exact writes.
    fn files(root: &Path) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).expect("read_dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let rel = path.strip_prefix(root).expect("prefix").display().to_string();
                    out.push((rel, fs::read_to_string(&path).expect("read")));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn writes_exactly_the_v2_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mount = tmp.path();
        fs::write(mount.join("cgroup.controllers"), "cpuset cpu io memory hugetlb pids rdma misc\n").expect("write");
        let dir = mount.join("shoal/abc");
        let resources = Resources { memory: Some(64 << 20), nano_cpus: Some(1_500_000_000), pids: Some(100) };
        create(mount, &dir, &resources).expect("create");
        let expected = [
            ("cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n"),
            ("cgroup.subtree_control", "+cpu +memory +pids"),
            ("shoal/abc/cpu.max", "150000 100000"),
            ("shoal/abc/memory.max", "67108864"),
            ("shoal/abc/pids.max", "100"),
            ("shoal/cgroup.subtree_control", "+cpu +memory +pids"),
        ];
        let expected: Vec<(String, String)> = expected.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        assert_eq!(files(mount), expected);

        // Swap is limited only where the kernel accounts it.
        fs::write(dir.join("memory.swap.max"), "max").expect("write");
        create(mount, &dir, &Resources { memory: Some(8 << 20), ..Default::default() }).expect("again");
        assert_eq!(fs::read_to_string(dir.join("memory.swap.max")).expect("read"), "8388608");

        assert_eq!(freeze(&dir, true).expect("freeze"), dir.join("cgroup.events"));
        assert_eq!(fs::read_to_string(dir.join("cgroup.freeze")).expect("read"), "1");
        freeze(&dir, false).expect("thaw");
        assert_eq!(fs::read_to_string(dir.join("cgroup.freeze")).expect("read"), "0");

        assert!(!oom_killed(&dir));
        fs::write(dir.join("memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n").expect("write");
        assert!(oom_killed(&dir));
    }

    #[test]
    fn only_offered_controllers_are_enabled() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fs::write(tmp.path().join("cgroup.controllers"), "memory\n").expect("write");
        create(tmp.path(), &tmp.path().join("shoal/x"), &Resources::default()).expect("create");
        assert_eq!(fs::read_to_string(tmp.path().join("shoal/cgroup.subtree_control")).expect("read"), "+memory");
        assert!(!tmp.path().join("shoal/x/memory.max").exists());
    }
}
