//! Simulated hosts on one Linux machine (`shoal machine …`): each machine is
//! a network namespace with its own address on a lab bridge, a UTS namespace
//! so its hostname is its name, and its own `shoal daemon` with its own data
//! root and socket. Faults are real: stop a daemon, cut a link, kill it.
//!
//! Everything a lab makes lives under its root (`--lab-root`, default
//! `/var/lib/shoal/lab`) and in network devices named after it, so that
//! several labs (e.g. parallel tests) never meet.

mod net;

use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// A lab: where its machines live and the bridge that links them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lab {
    pub root: PathBuf,
    /// A short tag derived from the root, in every device and netns name.
    pub tag: String,
    pub bridge: String,
    /// The bridge's address; machines get the next ones in its /24.
    pub gateway: Ipv4Addr,
}

/// One simulated host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub name: String,
    pub index: u32,
    pub addr: Ipv4Addr,
    pub netns: String,
}

fn tag_for(root: &Path) -> String {
    // FNV-1a of the path: stable, short, no dependency.
    let mut h: u32 = 0x811c9dc5;
    for b in root.as_os_str().as_encoded_bytes() {
        h ^= *b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    format!("{:04x}", h & 0xffff)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

impl Lab {
    /// Opens (or sets up the description of) the lab at `root`. The third
    /// octet of its subnet comes from the tag, unless `subnet` names one.
    pub fn open(root: &Path, subnet: Option<Ipv4Addr>) -> anyhow::Result<Lab> {
        std::fs::create_dir_all(root).with_context(|| format!("creating the lab root {}", root.display()))?;
        let root = root.canonicalize().with_context(|| format!("resolving {}", root.display()))?;
        let file = root.join("lab.json");
        if let Ok(bytes) = std::fs::read(&file) {
            return serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is corrupt: run `shoal lab down`", file.display()));
        }
        let tag = tag_for(&root);
        let third = u8::from_str_radix(&tag[2..], 16).unwrap_or(0);
        let gateway = subnet.unwrap_or(Ipv4Addr::new(10, 213, third, 1));
        let lab = Lab { bridge: format!("shl{tag}"), tag, root: root.clone(), gateway };
        std::fs::write(&file, serde_json::to_vec_pretty(&lab)?)?;
        Ok(lab)
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join("machines").join(name)
    }

    pub fn data_root(&self, name: &str) -> PathBuf {
        self.dir(name).join("data")
    }

    pub fn socket(&self, name: &str) -> PathBuf {
        self.dir(name).join("shoal.sock")
    }

    fn uts_file(&self, name: &str) -> PathBuf {
        self.dir(name).join("uts")
    }

    /// Every machine of the lab, by index.
    pub fn machines(&self) -> anyhow::Result<Vec<Machine>> {
        let mut out = Vec::new();
        let dir = self.root.join("machines");
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(out) };
        for e in entries.flatten() {
            let f = e.path().join("machine.json");
            if let Ok(bytes) = std::fs::read(&f) {
                out.push(
                    serde_json::from_slice::<Machine>(&bytes).with_context(|| format!("{} is corrupt", f.display()))?,
                );
            }
        }
        out.sort_by_key(|m| m.index);
        Ok(out)
    }

    pub fn machine(&self, name: &str) -> anyhow::Result<Machine> {
        let f = self.dir(name).join("machine.json");
        let bytes = std::fs::read(&f).map_err(|_| {
            anyhow::anyhow!("no machine named \"{name}\" in the lab at {}: see `shoal machine ls`", self.root.display())
        })?;
        serde_json::from_slice(&bytes).with_context(|| format!("{} is corrupt", f.display()))
    }

    /// Creates a machine and starts its daemon.
    pub fn create(&self, name: &str, addr: Option<Ipv4Addr>) -> anyhow::Result<Machine> {
        if !valid_name(name) {
            bail!("invalid machine name \"{name}\": use up to 32 letters, digits and '-', starting with a letter or digit");
        }
        if self.dir(name).join("machine.json").exists() {
            bail!("machine \"{name}\" already exists: remove it with `shoal machine rm {name}` first");
        }
        let existing = self.machines()?;
        let index =
            (1..250).find(|i| existing.iter().all(|m| m.index != *i)).context("the lab is full (249 machines)")?;
        let o = self.gateway.octets();
        let addr = addr.unwrap_or(Ipv4Addr::new(o[0], o[1], o[2], o[3].wrapping_add(index as u8)));
        if existing.iter().any(|m| m.addr == addr) || addr == self.gateway {
            bail!("address {addr} is taken in this lab: choose another with --addr");
        }
        let machine = Machine { name: name.into(), index, addr, netns: format!("shl{}-{name}", self.tag) };
        std::fs::create_dir_all(self.data_root(name))?;
        let result = (|| {
            net::ensure_bridge(self)?;
            net::add_machine(self, &machine)?;
            let uts = self.uts_file(name);
            std::fs::write(&uts, b"")?;
            run(Command::new("unshare").arg(format!("--uts={}", uts.display())).args(["hostname", name]))
                .context("creating the machine's UTS namespace")?;
            std::fs::write(self.dir(name).join("machine.json"), serde_json::to_vec_pretty(&machine)?)?;
            self.start(&machine)
        })();
        if let Err(e) = result {
            let _ = self.remove(&machine);
            return Err(e.context(format!("creating machine {name}")));
        }
        Ok(machine)
    }

    /// A command that runs inside the machine's network and UTS namespaces.
    pub fn command_in(&self, m: &Machine, program: impl AsRef<std::ffi::OsStr>) -> anyhow::Result<Command> {
        let netns = std::fs::File::open(format!("/run/netns/{}", m.netns))
            .with_context(|| format!("opening the network namespace of {}", m.name))?;
        let uts = std::fs::File::open(self.uts_file(&m.name))
            .with_context(|| format!("opening the UTS namespace of {}", m.name))?;
        let mut cmd = Command::new(program);
        cmd.env("SHOAL_HOST", format!("unix://{}", self.socket(&m.name).display()));
        // SAFETY: only async-signal-safe calls (setns) run between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
                nix::sched::setns(&uts, nix::sched::CloneFlags::CLONE_NEWUTS).map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        Ok(cmd)
    }

    fn pid_file(&self, name: &str) -> PathBuf {
        self.dir(name).join("daemon.pid")
    }

    /// The daemon's pid, if it runs.
    pub fn daemon_pid(&self, name: &str) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.pid_file(name)).ok()?.trim().parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        let data = self.data_root(name).display().to_string();
        (cmdline.contains("daemon") && cmdline.contains(&data)).then_some(pid)
    }

    /// Starts the machine's daemon and waits until it answers.
    pub fn start(&self, m: &Machine) -> anyhow::Result<()> {
        if self.daemon_pid(&m.name).is_some() {
            return Ok(());
        }
        let exe = std::env::current_exe().context("finding the shoal binary")?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir(&m.name).join("daemon.log"))?;
        let mut cmd = self.command_in(m, &exe)?;
        cmd.arg("daemon")
            .arg("--data-root")
            .arg(self.data_root(&m.name))
            .arg("--socket")
            .arg(self.socket(&m.name))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        let child = cmd.spawn().with_context(|| format!("starting the daemon of {}", m.name))?;
        std::fs::write(self.pid_file(&m.name), child.id().to_string())?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(self.socket(&m.name)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("the daemon of {} did not start; see {}", m.name, self.dir(&m.name).join("daemon.log").display())
    }

    /// Stops the machine's daemon (SIGTERM, then SIGKILL after 10 s).
    /// Its containers keep running, as on a real host.
    pub fn stop(&self, m: &Machine) -> anyhow::Result<()> {
        let Some(pid) = self.daemon_pid(&m.name) else { return Ok(()) };
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.daemon_pid(&m.name).is_some() {
            if Instant::now() > deadline {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(50));
            reap();
        }
        Ok(())
    }

    /// Removes a machine: its daemon, containers, mounts, namespaces and files.
    pub fn remove(&self, m: &Machine) -> anyhow::Result<()> {
        if let Some(pid) = self.daemon_pid(&m.name) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            reap();
        }
        kill_processes_under(&self.data_root(&m.name));
        unmount_under(&self.dir(&m.name));
        remove_cgroups_of(&self.data_root(&m.name));
        net::remove_machine(m);
        let _ = std::fs::remove_dir_all(self.dir(&m.name));
        Ok(())
    }

    /// Removes every machine, the bridge and the lab root.
    pub fn down(&self) -> anyhow::Result<()> {
        for m in self.machines()? {
            self.remove(&m)?;
        }
        net::remove_bridge(self);
        unmount_under(&self.root);
        let _ = std::fs::remove_dir_all(&self.root);
        Ok(())
    }
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Reaps exited children (the daemons this process started).
fn reap() {
    while let Ok(s) = nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
        if s == nix::sys::wait::WaitStatus::StillAlive {
            break;
        }
    }
}

/// Kills every process whose command line names `dir` (container shims)
/// and their descendants.
pub fn kill_processes_under(dir: &Path) {
    let needle = dir.display().to_string();
    let mut parents: Vec<(i32, i32)> = Vec::new();
    let mut roots = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        // This process names the directory too (`internal-cleanup DIR`): it must live on.
        if pid != std::process::id() as i32 && String::from_utf8_lossy(&cmdline).contains(&needle) {
            roots.push(pid);
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if let Some(ppid) =
            stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)).and_then(|p| p.parse().ok())
        {
            parents.push((pid, ppid));
        }
    }
    let mut all = roots;
    let mut i = 0;
    while i < all.len() {
        let p = all[i];
        all.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    for pid in all.into_iter().rev() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    reap();
}

/// Unmounts everything mounted under `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    let prefix = dir.display().to_string();
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Deletes the (now empty) cgroups of the containers under a data root:
/// `shoal/<container id>` in every hierarchy, which a killed daemon leaves.
pub fn remove_cgroups_of(data_root: &Path) {
    let Ok(entries) = std::fs::read_dir(data_root.join("runtime").join("containers")) else { return };
    let ids: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    if ids.is_empty() {
        return;
    }
    fn walk(dir: &Path, depth: usize, ids: &[String]) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let path = e.path();
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if dir.file_name().is_some_and(|n| n == "shoal") && ids.contains(&name) {
                let _ = std::fs::remove_dir(&path);
            } else if depth > 0 {
                walk(&path, depth - 1, ids);
            }
        }
    }
    walk(Path::new("/sys/fs/cgroup"), 5, &ids);
}

/// Removes what a data root's daemon left on the host when it died with its
/// containers still there: their processes, mounts and cgroups (the files
/// stay). Used by tests and by `machine rm`.
pub fn clean_data_root(data_root: &Path) {
    kill_processes_under(data_root);
    unmount_under(data_root);
    remove_cgroups_of(data_root);
}
