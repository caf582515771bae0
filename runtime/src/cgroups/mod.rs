//! Control groups: one per container, `shoal/<id>`, for its resource limits, its freezer
//! (pause) and its OOM record. Which hierarchy the machine uses is detected once, when the
//! runtime opens ([`Hierarchy::detect`]): cgroup v1 (a mount per controller: memory, cpu, pids,
//! freezer, devices) or the v2 unified hierarchy. The container's directories are then fixed in its
//! config ([`CgroupPaths`]), so the shim, a restarted daemon and `exec` all find the same ones.
//!
//! On v1 the container's cgroups nest under the daemon's own cgroup of each controller (so
//! limits the daemon runs under still apply); on v2 they sit at the root of the hierarchy,
//! because v2 forbids enabling controllers below a cgroup that holds processes.
//!
//! Architecture invariant: each version's file writes live in its own module ([`v1`], [`v2`])
//! as functions of a directory, so they can be checked against a fake directory. This module
//! reads the container's config types (`container::spec`: limits, devices, the cgroup's
//! directories); the config never depends on it.

mod bpf;
pub(crate) mod v1;
pub(crate) mod v2;

use std::{
    collections::BTreeMap,
    fs, io,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use crate::{
    container::spec::{CgroupPaths, DeviceConfig, Resources},
    error::{Error, IoContext},
};

/// The v1 controllers a container gets a cgroup in.
pub(crate) const V1_CONTROLLERS: [&str; 5] = ["memory", "cpu", "pids", "freezer", "devices"];

/// Which device nodes a container may open or create.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DeviceAccess<'a> {
    /// Every device (`--privileged`).
    All,
    /// Docker's default set (null, zero, full, random, urandom, tty, console, ptmx, pts, tun;
    /// mknod of any) plus these.
    Default(&'a [DeviceConfig]),
}

/// Docker's (runc's) default device allow list, as devices cgroup rules.
pub(crate) const DEFAULT_DEVICE_RULES: [&str; 12] = [
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
    "c 10:200 rwm",
];

impl DeviceAccess<'_> {
    /// The v1 `devices.allow` lines after a deny-all; `None` for "allow all".
    pub(crate) fn rules(&self) -> Option<Vec<String>> {
        match self {
            DeviceAccess::All => None,
            DeviceAccess::Default(devices) => Some(
                DEFAULT_DEVICE_RULES
                    .iter()
                    .map(|r| r.to_string())
                    .chain(devices.iter().map(DeviceConfig::cgroup_rule))
                    .collect(),
            ),
        }
    }
}

/// Where containers' cgroups go on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hierarchy {
    /// Controller → the directory holding `shoal/`.
    V1(BTreeMap<String, PathBuf>),
    /// The unified hierarchy's mount point.
    V2(PathBuf),
}

impl Hierarchy {
    /// Detects the hierarchy from this process's mounts and cgroups; `None` when neither a v1
    /// memory controller nor a v2 hierarchy with the memory controller is mounted.
    pub(crate) fn detect() -> Result<Option<Hierarchy>, Error> {
        let mountinfo =
            fs::read_to_string("/proc/self/mountinfo").context(|| "reading /proc/self/mountinfo".to_string())?;
        let own = fs::read_to_string("/proc/self/cgroup").context(|| "reading /proc/self/cgroup".to_string())?;
        Ok(Hierarchy::from_tables(&mountinfo, &own, |mount| {
            fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default()
        }))
    }

    /// [`Hierarchy::detect`] on given texts; `controllers` reads a v2 mount's
    /// `cgroup.controllers`.
    pub(crate) fn from_tables(mountinfo: &str, own: &str, controllers: impl Fn(&Path) -> String) -> Option<Hierarchy> {
        let mut v1 = BTreeMap::new();
        let mut v2 = None;
        for line in mountinfo.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let Some(dash) = fields.iter().position(|f| *f == "-") else { continue };
            let (Some(root), Some(point), Some(fstype), Some(options)) =
                (fields.get(3), fields.get(4), fields.get(dash + 1), fields.get(dash + 3))
            else {
                continue;
            };
            match *fstype {
                "cgroup" => {
                    for controller in options.split(',').filter(|o| V1_CONTROLLERS.contains(o)) {
                        let Some(own_path) = own_cgroup(own, Some(controller)) else { continue };
                        let relative = own_path.strip_prefix(root).unwrap_or(own_path.as_str());
                        let dir = Path::new(point).join(relative.trim_start_matches('/'));
                        v1.entry(controller.to_string()).or_insert(dir);
                    }
                }
                "cgroup2" if v2.is_none() => v2 = Some(PathBuf::from(point)),
                _ => {}
            }
        }
        if v1.contains_key("memory") {
            return Some(Hierarchy::V1(v1));
        }
        let v2 = v2?;
        controllers(&v2).split_whitespace().any(|c| c == "memory").then_some(Hierarchy::V2(v2))
    }

    /// Makes sure the runtime can create cgroups here (the `shoal` parent directories); a
    /// machine where it cannot (a read-only cgroupfs inside another container, say) is treated
    /// as one without cgroups, with a warning, rather than failing every start.
    pub(crate) fn usable(self) -> Option<Hierarchy> {
        let parents: Vec<PathBuf> = match &self {
            Hierarchy::V1(dirs) => dirs.values().map(|d| d.join("shoal")).collect(),
            Hierarchy::V2(mount) => vec![mount.join("shoal")],
        };
        for parent in parents {
            if let Err(e) = fs::create_dir_all(&parent) {
                tracing::warn!(
                    "cannot create cgroup {}: {e}; containers will run without cgroups (no limits, pause or OOM reports)",
                    parent.display()
                );
                return None;
            }
        }
        Some(self)
    }

    /// The cgroup of container `id`.
    pub(crate) fn paths_for(&self, id: &str) -> CgroupPaths {
        match self {
            Hierarchy::V1(dirs) => {
                CgroupPaths::V1 { dirs: dirs.iter().map(|(c, d)| (c.clone(), d.join("shoal").join(id))).collect() }
            }
            Hierarchy::V2(mount) => CgroupPaths::V2 { mount: mount.clone(), dir: mount.join("shoal").join(id) },
        }
    }
}

/// This process's cgroup path in the v1 hierarchy of `controller` (or in v2's, for `None`),
/// from the text of `/proc/self/cgroup`.
fn own_cgroup(text: &str, controller: Option<&str>) -> Option<String> {
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = match controller {
            Some(c) => list.split(',').any(|l| l == c),
            None => list.is_empty(),
        };
        matches.then(|| path.to_string())
    })
}

/// The operations on one container's cgroup. Its directories are data of the container's
/// config ([`CgroupPaths`], defined with the config it belongs to, which this module reads);
/// what is done with them is here.
impl CgroupPaths {
    /// Creates the cgroup (if needed) and writes its limits and its device rules: on v1 in
    /// `devices.allow`, on v2 (which has no device files) as a `BPF_CGROUP_DEVICE` program
    /// attached to the cgroup ([`bpf`]).
    pub(crate) fn create(&self, resources: &Resources, devices: DeviceAccess<'_>) -> Result<(), Error> {
        match self {
            CgroupPaths::V1 { dirs } => {
                v1::create(dirs, resources)?;
                match dirs.get("devices") {
                    Some(dir) => v1::allow_devices(dir, &devices),
                    None => Ok(()),
                }
            }
            CgroupPaths::V2 { mount, dir } => {
                v2::create(mount, dir, resources)?;
                match devices.rules() {
                    Some(rules) => {
                        let rules = rules.iter().map(|r| bpf::Rule::parse(r)).collect::<Result<Vec<_>, _>>()?;
                        bpf::attach(dir, &rules).map(drop)
                    }
                    None => Ok(()),
                }
            }
        }
    }

    /// Moves the calling process, which must be single-threaded (the container's init, the
    /// exec helper), into the cgroup.
    pub(crate) fn join_self(&self) -> Result<(), Error> {
        // v1: a write to `tasks` moves one thread, which the kernel does without the global
        // lock that moving a whole thread group through `cgroup.procs` takes (its write side
        // waits for an RCU grace period: ~10 ms per start). For a single-threaded process
        // the result is the same. v2 has only `cgroup.procs`.
        let file = match self {
            CgroupPaths::V1 { .. } => "tasks",
            CgroupPaths::V2 { .. } => "cgroup.procs",
        };
        for dir in self.dirs() {
            write(&dir.join(file), "0")?;
        }
        Ok(())
    }

    /// Whether the kernel's OOM killer has killed a process of this cgroup.
    pub(crate) fn oom_killed(&self) -> bool {
        match self {
            CgroupPaths::V1 { dirs } => dirs.get("memory").is_some_and(|d| v1::oom_killed(d)),
            CgroupPaths::V2 { dir, .. } => v2::oom_killed(dir),
        }
    }

    /// Freezes (`true`) or thaws the cgroup's processes, and waits until the kernel is done.
    pub(crate) fn freeze(&self, frozen: bool) -> Result<(), Error> {
        let (file, value) = match self {
            CgroupPaths::V1 { dirs } => {
                let dir = dirs.get("freezer").ok_or_else(|| {
                    Error::invalid("this machine has no cgroup v1 freezer mounted: pause is not possible")
                })?;
                (v1::freeze(dir, frozen)?, if frozen { "FROZEN" } else { "THAWED" })
            }
            CgroupPaths::V2 { dir, .. } => (v2::freeze(dir, frozen)?, if frozen { "frozen 1" } else { "frozen 0" }),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let state = fs::read_to_string(&file).context(|| format!("reading {}", file.display()))?;
            if state.lines().any(|l| l.trim() == value) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::io(
                    format!("waiting for {} to read {value}", file.display()),
                    io::Error::from(io::ErrorKind::TimedOut),
                ));
            }
            // v1 may stay FREEZING when a task is busy in the kernel: ask again.
            if let CgroupPaths::V1 { dirs } = self {
                if let Some(dir) = dirs.get("freezer") {
                    v1::freeze(dir, frozen)?;
                }
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Whether the cgroup is frozen (paused).
    pub(crate) fn is_frozen(&self) -> bool {
        match self {
            CgroupPaths::V1 { dirs } => dirs
                .get("freezer")
                .and_then(|d| fs::read_to_string(d.join("freezer.state")).ok())
                .is_some_and(|s| s.trim() != "THAWED"),
            CgroupPaths::V2 { dir, .. } => fs::read_to_string(dir.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1"),
        }
    }

    /// Deletes the cgroup (it must be empty: the container has ended). Missing is fine.
    pub(crate) fn remove(&self) -> Result<(), Error> {
        for dir in self.dirs() {
            let mut tries = 0;
            loop {
                match fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    // The last task's exit may not have reached the cgroup yet,
                    // or a straggler of the container survived it: kill what is
                    // left, and give a loaded machine time to reap it.
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 1000 => {
                        if tries % 50 == 0 {
                            kill_members(&dir);
                        }
                        tries += 1;
                        thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => return Err(Error::io(format!("removing cgroup {}", dir.display()), e)),
                }
            }
        }
        Ok(())
    }

    fn dirs(&self) -> Vec<PathBuf> {
        match self {
            CgroupPaths::V1 { dirs } => dirs.values().cloned().collect(),
            CgroupPaths::V2 { dir, .. } => vec![dir.clone()],
        }
    }
}

/// Sends SIGKILL to every process still in a cgroup being removed.
fn kill_members(dir: &Path) {
    let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) else { return };
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

/// Writes one cgroup control file.
pub(crate) fn write(path: &Path, value: &str) -> Result<(), Error> {
    fs::write(path, value).context(|| format!("writing \"{value}\" to {}", path.display()))
}

/// The CFS period Docker uses for `--cpus` (100 ms).
pub(crate) const CPU_PERIOD_US: i64 = 100_000;

/// The CFS quota for `nano_cpus` per [`CPU_PERIOD_US`].
pub(crate) fn cpu_quota_us(nano_cpus: i64) -> i64 {
    (nano_cpus.saturating_mul(CPU_PERIOD_US) / 1_000_000_000).max(1000)
}

/// The `oom_kill N` count in a `memory.oom_control` or `memory.events` text.
fn oom_kill_count(text: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO_V1: &str = "\
30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
33 30 0:29 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
34 30 0:30 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
35 30 0:31 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const OWN_V1: &str = "8:pids:/\n6:freezer:/\n4:memory:/jobs/42\n1:cpu:/\n0::/\n";

    #[test]
    fn detects_v1_under_the_own_cgroup() {
        let h = Hierarchy::from_tables(MOUNTINFO_V1, OWN_V1, |_| String::new()).expect("v1");
        let paths = h.paths_for("abc");
        let CgroupPaths::V1 { dirs } = paths else { panic!("not v1: {paths:?}") };
        assert_eq!(dirs["memory"], Path::new("/sys/fs/cgroup/memory/jobs/42/shoal/abc"));
        assert_eq!(dirs["cpu"], Path::new("/sys/fs/cgroup/cpu/shoal/abc"));
        assert_eq!(dirs.len(), 4);
    }

    #[test]
    fn detects_v2_only_with_controllers() {
        let info = "35 25 0:31 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(Hierarchy::from_tables(info, "0::/user.slice\n", |_| String::new()), None);
        let h = Hierarchy::from_tables(info, "0::/user.slice\n", |_| "cpuset cpu io memory pids".into());
        assert_eq!(h, Some(Hierarchy::V2(PathBuf::from("/sys/fs/cgroup"))));
        let Some(CgroupPaths::V2 { dir, .. }) = h.map(|h| h.paths_for("abc")) else { panic!("not v2") };
        assert_eq!(dir, Path::new("/sys/fs/cgroup/shoal/abc"));
        // v1 memory wins over an empty unified mount.
        assert!(matches!(Hierarchy::from_tables(MOUNTINFO_V1, OWN_V1, |_| "memory".into()), Some(Hierarchy::V1(_))));
    }

    #[test]
    fn cpu_quota_and_oom_counts() {
        assert_eq!(cpu_quota_us(1_500_000_000), 150_000);
        assert_eq!(cpu_quota_us(1), 1000);
        assert_eq!(oom_kill_count("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"), 2);
        assert_eq!(oom_kill_count("low 0\nhigh 0\nmax 0\noom 0\n"), 0);
    }
}
