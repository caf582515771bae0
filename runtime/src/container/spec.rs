//! What a caller asks for ([`ContainerSpec`]) and what the runtime resolves it into against the
//! image, once, at create time ([`ContainerConfig`], saved as `config.json`): the exact command,
//! environment, working directory and hostname, following Docker's rules.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    capabilities,
    error::{Error, IoContext},
};

pub use super::restart::RestartPolicy;

/// `PATH` for images that set none (Docker's default).
pub(crate) const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to run: the caller's request for a new container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Unique name; empty means "use the first 12 characters of the id".
    pub name: String,
    /// Image reference (`name[:tag]`) or id.
    pub image: String,
    /// Replaces the image's Entrypoint (and drops its Cmd unless `cmd` is given too).
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's Cmd.
    pub cmd: Option<Vec<String>>,
    /// `KEY=VALUE` pairs added to the image's environment, overriding it by key.
    pub env: Vec<String>,
    /// Working directory (absolute); defaults to the image's, else `/`.
    pub workdir: Option<String>,
    /// Hostname; defaults to the first 12 characters of the id.
    pub hostname: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// `uid[:gid]` or `name[:group]`, names looked up in the image's `/etc/passwd` and
    /// `/etc/group`; defaults to root.
    pub user: Option<String>,
    /// Mounts the root filesystem read-only (`--read-only`).
    pub read_only: bool,
    /// Bind mounts and named volumes (`-v`), mounted in order after the root filesystem.
    pub mounts: Vec<Mount>,
    /// tmpfs mounts: container path → mount options such as `size=64m,mode=1777` (`--tmpfs`).
    pub tmpfs: BTreeMap<String, String>,
    /// Capabilities added to Docker's default set (`NET_ADMIN`, `CAP_NET_ADMIN` or `ALL`).
    pub cap_add: Vec<String>,
    /// Capabilities removed from Docker's default set (`ALL` removes every one).
    pub cap_drop: Vec<String>,
    /// All capabilities, no masked or read-only paths, a writable `/sys` (`--privileged`).
    pub privileged: bool,
    /// Sets `no_new_privs`: setuid binaries and file capabilities grant nothing.
    pub no_new_privileges: bool,
    /// Runs a small init as pid 1 that reaps zombies and forwards signals (`--init`).
    pub init: bool,
    /// The signal `stop` sends first (name or number); defaults to SIGTERM.
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL; defaults to 10.
    pub stop_timeout: Option<u64>,
    /// Memory limit in bytes (`-m`).
    pub memory: Option<i64>,
    /// CPU limit in billionths of a CPU (`--cpus 1.5` is 1_500_000_000).
    pub nano_cpus: Option<i64>,
    /// Maximum number of processes (`--pids-limit`); zero or negative means unlimited.
    pub pids_limit: Option<i64>,
    /// Host devices made available inside (`--device`).
    pub devices: Vec<Device>,
    /// When the container is started again after it exits (`--restart`); kept with the
    /// container for its supervisor, which the runtime is not.
    pub restart_policy: RestartPolicy,
    /// Gives the container a pseudo-terminal as its stdin, stdout and stderr (`-t`).
    #[serde(default)]
    pub tty: bool,
    /// Keeps the container's stdin open for attached clients to write to (`-i`); without it,
    /// stdin is `/dev/null` (or a terminal nobody types into, with `tty`).
    #[serde(default)]
    pub open_stdin: bool,
    /// Closes the container's stdin when an attached client's input ends (`run -i`).
    #[serde(default)]
    pub stdin_once: bool,
    /// The terminal's first size, (rows, columns), with `tty`.
    #[serde(default)]
    pub console_size: Option<(u16, u16)>,
    /// Whoever runs the container removes it once it has exited (Docker's `AutoRemove`);
    /// the runtime only records it.
    #[serde(default)]
    pub auto_remove: bool,
    /// Its writable layer need not survive a reboot (a swarm task: a reboot brings new
    /// tasks); implied by `auto_remove`. Such layers are mounted without syncs.
    #[serde(default)]
    pub disposable: bool,
    /// The network namespace it runs in: its own with loopback only (the default), one it
    /// is handed, or the host's.
    #[serde(default)]
    pub network: NetworkMode,
    /// Its `/etc/resolv.conf`, when not derived from the host's (a container on the mesh's
    /// networks asks its network's resolver). At most [`MAX_ETC_FILE`] bytes.
    #[serde(default)]
    pub resolv_conf: Option<String>,
    /// Lines added to its `/etc/hosts`: `ADDRESS NAME [ALIAS…]` (its own addresses,
    /// `--add-host`, compose `extra_hosts`).
    #[serde(default)]
    pub extra_hosts: Vec<String>,
}

/// The most a container's `resolv.conf` or its added hosts lines may hold, in bytes.
pub const MAX_ETC_FILE: usize = 64 * 1024;

/// Checks a `/etc/hosts` line the caller adds: an address, then host names.
pub fn check_hosts_line(line: &str) -> Result<(), String> {
    let mut words = line.split_whitespace();
    let addr = words.next().unwrap_or_default();
    addr.parse::<std::net::IpAddr>()
        .map_err(|_| format!("\"{addr}\" is not an IP address: give each host as NAME:IP (NAME=IP in compose)"))?;
    let mut names = 0;
    for name in words {
        let valid = name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            return Err(format!("\"{name}\" is not a valid host name (letters, digits, '-', '_' and dots)"));
        }
        names += 1;
    }
    if names == 0 {
        return Err(format!("the hosts line \"{line}\" names no host"));
    }
    Ok(())
}

/// Where a container's network comes from. The runtime makes no network itself: a namespace
/// with interfaces (a sandbox of the mesh) is made by someone else and handed over by path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "mode", content = "path")]
pub enum NetworkMode {
    /// A new network namespace with only `lo` (`--network none`).
    #[default]
    Private,
    /// The network namespace bound at this absolute path (a bind mount of an `nsfs` file,
    /// as `ip netns add` makes), joined when the container starts.
    Join(PathBuf),
    /// The host's network namespace (`--network host`): its interfaces, ports and hostname.
    Host,
}

impl NetworkMode {
    /// Checks what can be checked before the start: a path to join is absolute and names a
    /// network namespace now.
    fn check(&self, name: &str) -> Result<(), Error> {
        let NetworkMode::Join(path) = self else { return Ok(()) };
        if !path.is_absolute() || path.as_os_str().as_encoded_bytes().contains(&0) {
            return Err(Error::invalid(format!(
                "the network namespace {} of container {name} must be an absolute path",
                path.display()
            )));
        }
        network_namespace(path).map_err(|why| {
            Error::invalid(format!(
                "the network namespace {} of container {name} {why}: give the path of a bound network namespace",
                path.display()
            ))
        })
    }
}

/// Whether `path` is a network namespace: `Err` says what it is instead.
fn network_namespace(path: &Path) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot be opened ({e})"))?;
    // NS_GET_NSTYPE, _IO(0xb7, 0x3): the kind of namespace an nsfs file is.
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    // SAFETY: an ioctl without an argument on an fd that `file` owns for the call's length.
    let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
    match kind {
        kind if kind == libc::CLONE_NEWNET => Ok(()),
        -1 => Err("is not a namespace".to_string()),
        _ => Err("is a namespace of another kind".to_string()),
    }
}

/// A host device given to a container, as `--device /dev/host[:/dev/ctr][:rwm]` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// The device node (or a directory of them) on the host.
    pub host_path: String,
    /// Where it appears in the container.
    pub container_path: String,
    /// What the devices cgroup allows: a non-empty subset of `rwm` (read, write, mknod).
    pub permissions: String,
}

impl Device {
    /// Parses Docker's `--device` syntax: `/dev/host`, `/dev/host:/dev/ctr`, `/dev/host:rwm`
    /// or `/dev/host:/dev/ctr:rwm`.
    pub fn parse(text: &str) -> Result<Device, Error> {
        let bad = |why: &str| Error::invalid(format!("invalid device \"{text}\": {why}"));
        let parts: Vec<&str> = text.split(':').collect();
        let (host, container, permissions) = match parts.as_slice() {
            [host] => (*host, *host, "rwm"),
            [host, second] if is_device_permissions(second) => (*host, *host, *second),
            [host, container] => (*host, *container, "rwm"),
            [host, container, permissions] => (*host, *container, *permissions),
            _ => return Err(bad("expected /dev/host[:/dev/container][:rwm]")),
        };
        let device =
            Device { host_path: host.into(), container_path: container.into(), permissions: permissions.into() };
        device.validate().map_err(|e| bad(&e))?;
        Ok(device)
    }

    fn validate(&self) -> Result<(), String> {
        if !self.host_path.starts_with('/') || self.host_path.contains('\0') {
            return Err(format!("the host path \"{}\" must be absolute", self.host_path));
        }
        let target = &self.container_path;
        if !target.starts_with('/') || target.contains('\0') || target.split('/').any(|c| c == "..") {
            return Err(format!("the container path \"{target}\" must be absolute, without \"..\""));
        }
        if !is_device_permissions(&self.permissions) {
            return Err(format!(
                "the permissions \"{}\" must be letters from rwm (read, write, mknod), each at most once",
                self.permissions
            ));
        }
        Ok(())
    }
}

/// Whether `s` is a cgroup device access string: `r`, `w`, `m`, each at most once.
fn is_device_permissions(s: &str) -> bool {
    !s.is_empty() && s.len() <= 3 && s.chars().all(|c| "rwm".contains(c)) && {
        let mut seen: Vec<char> = s.chars().collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len() == s.len()
    }
}

/// What a [`Mount`] puts at its target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    /// A host file or directory (`source` is an absolute host path).
    #[default]
    Bind,
    /// A named volume (`source` is its name), created on first use and kept after the container.
    Volume,
}

/// How mounts made later under a bind mount's source or target propagate between the host
/// and the container (Docker's `bind-propagation`). The container's mounts are slaves of the
/// host's, so the shared kinds, which would send the container's mounts back to the host,
/// cannot be honoured and are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Propagation {
    Private,
    Rprivate,
    Slave,
    Rslave,
}

impl Propagation {
    /// Docker's names: `private`, `rprivate`, `slave`, `rslave` (`shared` and `rshared` are
    /// refused with the reason).
    pub fn parse(text: &str) -> Result<Propagation, Error> {
        match text {
            "private" => Ok(Propagation::Private),
            "rprivate" => Ok(Propagation::Rprivate),
            "slave" => Ok(Propagation::Slave),
            "rslave" => Ok(Propagation::Rslave),
            "shared" | "rshared" => Err(Error::invalid(format!(
                "bind propagation \"{text}\" is not supported: a container's mounts are slaves of the host's, so its own mounts cannot reach the host; use private, rprivate, slave or rslave"
            ))),
            other => Err(Error::invalid(format!(
                "unknown bind propagation \"{}\": use private, rprivate, slave or rslave",
                other.escape_debug()
            ))),
        }
    }

    /// The flags that give a mount this propagation.
    pub(crate) fn flags(self) -> nix::mount::MsFlags {
        use nix::mount::MsFlags;
        match self {
            Propagation::Private => MsFlags::MS_PRIVATE,
            Propagation::Rprivate => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
            Propagation::Slave => MsFlags::MS_SLAVE,
            Propagation::Rslave => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        }
    }
}

/// A bind mount or named volume, as `-v source:target[:ro]` or `--mount` gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub kind: MountKind,
    pub source: String,
    /// Absolute path inside the container.
    pub target: String,
    pub read_only: bool,
    /// Bind only: the propagation of the mount point; `None` keeps the container root's, rslave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation: Option<Propagation>,
    /// Bind only: the mounts under the source are not bound with it (`bind-nonrecursive`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub non_recursive: bool,
    /// Volume only: the volume is not filled from the image's content (`volume-nocopy`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_copy: bool,
    /// Volume only: the labels of the volume, if this mount creates it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volume_labels: BTreeMap<String, String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Mount {
    /// Parses Docker's `-v` syntax: `/host:/ctr[:opts]` (bind), `name:/ctr[:opts]` (volume)
    /// or `/ctr` (an anonymous volume: an empty source); the options are `ro`, `rw`, a bind
    /// propagation, `nocopy` for a volume, and `z`/`Z` (SELinux relabelling, which a host
    /// without SELinux does without).
    pub fn parse(text: &str) -> Result<Mount, Error> {
        let bad = |why: &str| Error::invalid(format!("invalid volume \"{text}\": {why}"));
        let parts: Vec<&str> = text.split(':').collect();
        let (source, target, mode) = match parts.as_slice() {
            [target] if target.starts_with('/') => ("", *target, None),
            [source, target] => (*source, *target, None),
            [source, target, mode] => (*source, *target, Some(*mode)),
            _ => return Err(bad("expected source:target[:ro], or an absolute path for an anonymous volume")),
        };
        let kind = if source.starts_with('/') { MountKind::Bind } else { MountKind::Volume };
        let mut mount = Mount { kind, source: source.to_string(), target: target.to_string(), ..Mount::default() };
        for option in mode.unwrap_or("").split(',').filter(|o| !o.is_empty()) {
            match option {
                "ro" => mount.read_only = true,
                "rw" => mount.read_only = false,
                "z" | "Z" => {}
                "nocopy" => mount.no_copy = true,
                "private" | "rprivate" | "slave" | "rslave" | "shared" | "rshared" => {
                    mount.propagation = Some(Propagation::parse(option).map_err(|e| bad(&e.to_string()))?)
                }
                other => {
                    return Err(bad(&format!("unknown option \"{other}\" (use ro, rw, nocopy or a bind propagation)")))
                }
            }
        }
        mount.validate()?;
        Ok(mount)
    }

    /// Checks the mount as [`Mount::parse`] does.
    pub fn check(&self) -> Result<(), Error> {
        self.validate()
    }

    fn validate(&self) -> Result<(), Error> {
        let bad = |why: String| Error::invalid(format!("invalid mount {}:{}: {why}", self.source, self.target));
        if !self.target.starts_with('/') || self.target.contains('\0') {
            return Err(bad("the target must be an absolute path in the container".to_string()));
        }
        if self.target.split('/').any(|c| c == "..") {
            return Err(bad("the target must not contain \"..\"".to_string()));
        }
        match self.kind {
            MountKind::Bind if !self.source.starts_with('/') || self.source.contains('\0') => {
                Err(bad("a bind mount's source must be an absolute host path".to_string()))
            }
            MountKind::Bind if self.no_copy || !self.volume_labels.is_empty() => {
                Err(bad("nocopy and volume labels are options of a volume, not of a bind mount".to_string()))
            }
            MountKind::Volume if self.propagation.is_some() || self.non_recursive => {
                Err(bad("propagation and non-recursive binds are options of a bind mount, not of a volume".to_string()))
            }
            // Empty: an anonymous volume, named when the container is created.
            MountKind::Volume if !self.source.is_empty() => shoal_proto::names::check_volume_name(&self.source)
                .map_err(|why| Error::invalid(format!("invalid volume name: {why}"))),
            _ => Ok(()),
        }
    }
}

/// The process a container runs, fully resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProcessConfig {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub hostname: String,
    /// What the container's stdio is. (Absent in configs written before it existed.)
    #[serde(default)]
    pub stdio: StdioConfig,
}

/// The container's stdio: pipes to the shim, or a pseudo-terminal the shim holds the master of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct StdioConfig {
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    /// (rows, columns)
    pub console_size: Option<(u16, u16)>,
}

/// A container's immutable configuration (`config.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ContainerConfig {
    pub id: String,
    pub name: String,
    /// The image as the caller named it.
    pub image: String,
    pub image_id: String,
    pub labels: BTreeMap<String, String>,
    pub created_at: i64,
    pub process: ProcessConfig,
    /// Diff ids of the image's layers, bottom first.
    pub layers: Vec<String>,
    /// Mounts, privileges and limits. (Absent in configs written before they existed.)
    #[serde(default)]
    pub host: HostConfig,
}

/// Default seconds `stop` waits before SIGKILL (Docker's).
pub(crate) const DEFAULT_STOP_TIMEOUT: u64 = 10;

/// The container's surroundings, resolved at create.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct HostConfig {
    /// As the caller gave it; resolved inside the container at start.
    pub user: Option<String>,
    pub read_only: bool,
    /// In mount order.
    pub mounts: Vec<MountConfig>,
    /// Capability names (`CAP_…`); `None` (old configs) leaves them untouched.
    pub capabilities: Option<Vec<String>>,
    pub privileged: bool,
    pub no_new_privileges: bool,
    pub init: bool,
    /// Canonical signal name (`SIGTERM`).
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<u64>,
    pub resources: Resources,
    /// The container's cgroup, when this machine has cgroups.
    pub cgroup: Option<CgroupPaths>,
    /// Host devices created in the container and allowed by its devices cgroup.
    pub devices: Vec<DeviceConfig>,
    /// Kept for the container's supervisor.
    pub restart_policy: RestartPolicy,
    pub auto_remove: bool,
    /// See [`ContainerSpec::disposable`].
    #[serde(default)]
    pub disposable: bool,
    /// The anonymous volumes made for the image's `VOLUME`s that no mount covers (names
    /// under the volumes directory): removed with a disposable container, kept otherwise.
    pub anonymous_volumes: Vec<String>,
    /// Configs written before network modes existed read as `Private`, what they got.
    pub network: NetworkMode,
}

/// The directories of one container's cgroup, fixed at create (see [`crate::cgroups`], which
/// makes, joins, freezes and removes them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "version", rename_all = "lowercase")]
pub(crate) enum CgroupPaths {
    V1 { dirs: BTreeMap<String, PathBuf> },
    V2 { mount: PathBuf, dir: PathBuf },
}

/// Character or block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DeviceKind {
    Char,
    Block,
}

impl DeviceKind {
    /// The letter of a devices cgroup rule.
    pub(crate) fn letter(self) -> char {
        match self {
            DeviceKind::Char => 'c',
            DeviceKind::Block => 'b',
        }
    }
}

/// One device node the container gets, read from the host's node at create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeviceConfig {
    /// The host's node (bind-mounted instead where mknod is not allowed).
    pub host_path: PathBuf,
    /// Absolute path in the container.
    pub path: String,
    pub kind: DeviceKind,
    pub major: u64,
    pub minor: u64,
    /// Permission bits of the host's node.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// `rwm` subset for the devices cgroup.
    pub permissions: String,
}

impl DeviceConfig {
    /// The devices cgroup (v1 `devices.allow`) rule for this device: `c 1:3 rwm`.
    pub(crate) fn cgroup_rule(&self) -> String {
        format!("{} {}:{} {}", self.kind.letter(), self.major, self.minor, self.permissions)
    }
}

/// Reads the host's device `device.host_path` (every device under it, if a directory) into
/// the nodes the container gets.
pub(crate) fn resolve_device(device: &Device, name: &str) -> Result<Vec<DeviceConfig>, Error> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let host = Path::new(&device.host_path);
    let meta = std::fs::metadata(host).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::invalid(format!(
                "device {} for container {name} does not exist on this host: give a device node that does",
                host.display()
            ))
        } else {
            Error::io(format!("inspecting device {} for container {name}", host.display()), e)
        }
    })?;
    let node = |path: &Path, meta: &std::fs::Metadata, target: String| -> Option<DeviceConfig> {
        let kind = if meta.file_type().is_char_device() {
            DeviceKind::Char
        } else if meta.file_type().is_block_device() {
            DeviceKind::Block
        } else {
            return None;
        };
        let rdev = meta.rdev();
        Some(DeviceConfig {
            host_path: path.to_path_buf(),
            path: target,
            kind,
            major: nix::sys::stat::major(rdev),
            minor: nix::sys::stat::minor(rdev),
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            permissions: device.permissions.clone(),
        })
    };
    if let Some(one) = node(host, &meta, device.container_path.clone()) {
        return Ok(vec![one]);
    }
    if !meta.is_dir() {
        return Err(Error::invalid(format!(
            "{} is not a device node (nor a directory of them), so it cannot be given to container {name} as a device",
            host.display()
        )));
    }
    // A directory: every device below it, at the same place under the container path.
    let mut found = Vec::new();
    let mut pending = vec![host.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).context(|| format!("listing devices in {}", dir.display()))? {
            let entry = entry.context(|| format!("listing devices in {}", dir.display()))?;
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            if meta.is_dir() {
                pending.push(path);
                continue;
            }
            let Ok(relative) = path.strip_prefix(host) else { continue };
            let target = format!("{}/{}", device.container_path.trim_end_matches('/'), relative.display());
            found.extend(node(&path, &meta, target));
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// Resource limits; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Resources {
    pub memory: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub pids: Option<i64>,
}

impl Resources {
    pub(crate) fn any(&self) -> bool {
        self.memory.is_some() || self.nano_cpus.is_some() || self.pids.is_some()
    }
}

/// One mount the init makes, resolved to host paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum MountConfig {
    Bind {
        source: PathBuf,
        target: String,
        read_only: bool,
        /// `None`: the container root's (rslave).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        propagation: Option<Propagation>,
        #[serde(default, skip_serializing_if = "is_false")]
        non_recursive: bool,
        /// A volume that is not filled from the image at start.
        #[serde(default, skip_serializing_if = "is_false")]
        no_copy: bool,
    },
    Tmpfs {
        target: String,
        options: String,
    },
}

impl MountConfig {
    /// A plain recursive, read-write bind.
    fn bind(source: PathBuf, target: String) -> MountConfig {
        MountConfig::Bind { source, target, read_only: false, propagation: None, non_recursive: false, no_copy: false }
    }
}

/// The files a container gets at `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`, kept in
/// its directory.
pub(crate) const ETC_FILES: [&str; 3] = ["hosts", "hostname", "resolv.conf"];

/// Resolves the host side of `spec` for container `name` whose directory will be `dir`;
/// named volumes live under `volumes_dir`.
pub(crate) fn resolve_host(
    spec: &ContainerSpec,
    name: &str,
    dir: &Path,
    volumes_dir: &Path,
) -> Result<HostConfig, Error> {
    let mut mounts: Vec<MountConfig> =
        ETC_FILES.iter().map(|file| MountConfig::bind(dir.join(file), format!("/etc/{file}"))).collect();
    for (target, options) in &spec.tmpfs {
        if !target.starts_with('/') || target.split('/').any(|c| c == "..") || target.contains('\0') {
            return Err(Error::invalid(format!(
                "invalid tmpfs target \"{target}\" for container {name}: use an absolute path without \"..\""
            )));
        }
        tmpfs_options(options).map_err(|why| {
            Error::invalid(format!("invalid tmpfs options \"{options}\" for {target} in container {name}: {why}"))
        })?;
        mounts.push(MountConfig::Tmpfs { target: target.clone(), options: options.clone() });
    }
    for mount in &spec.mounts {
        mount.validate()?;
        let source = match mount.kind {
            MountKind::Bind => PathBuf::from(&mount.source),
            MountKind::Volume => crate::volumes::data_dir(volumes_dir, &mount.source)?,
        };
        mounts.push(MountConfig::Bind {
            source,
            target: mount.target.clone(),
            read_only: mount.read_only,
            propagation: mount.propagation,
            non_recursive: mount.non_recursive,
            no_copy: mount.no_copy,
        });
    }
    let stop_signal =
        spec.stop_signal.as_deref().map(crate::signal::parse).transpose()?.map(|s| s.as_str().to_string());
    for (what, value) in [("memory", spec.memory), ("cpus", spec.nano_cpus)] {
        if value.is_some_and(|v| v <= 0) {
            return Err(Error::invalid(format!("the {what} limit of container {name} must be positive")));
        }
    }
    if spec.memory.is_some_and(|m| m < 6 * 1024 * 1024) {
        return Err(Error::invalid(format!(
            "the memory limit of container {name} is below the minimum of 6 MiB that Docker allows"
        )));
    }
    let mut devices = Vec::new();
    for device in &spec.devices {
        device.validate().map_err(|why| {
            Error::invalid(format!(
                "invalid device {}:{} for container {name}: {why}",
                device.host_path, device.container_path
            ))
        })?;
        devices.extend(resolve_device(device, name)?);
    }
    spec.network.check(name)?;
    if spec.resolv_conf.as_ref().is_some_and(|r| r.len() > MAX_ETC_FILE || r.contains('\0')) {
        return Err(Error::invalid(format!(
            "the resolv.conf of container {name} is over {MAX_ETC_FILE} bytes or holds a NUL byte"
        )));
    }
    if spec.extra_hosts.iter().map(|l| l.len() + 1).sum::<usize>() > MAX_ETC_FILE {
        return Err(Error::invalid(format!("the added hosts of container {name} are over {MAX_ETC_FILE} bytes")));
    }
    for line in &spec.extra_hosts {
        check_hosts_line(line).map_err(|why| Error::invalid(format!("added host of container {name}: {why}")))?;
    }
    Ok(HostConfig {
        user: spec.user.clone().filter(|u| !u.is_empty()),
        read_only: spec.read_only,
        mounts,
        capabilities: Some(capabilities::resolve(&spec.cap_add, &spec.cap_drop, spec.privileged)?),
        privileged: spec.privileged,
        no_new_privileges: spec.no_new_privileges,
        init: spec.init,
        stop_signal,
        stop_timeout: spec.stop_timeout,
        resources: Resources {
            memory: spec.memory,
            nano_cpus: spec.nano_cpus,
            pids: spec.pids_limit.filter(|p| *p > 0),
        },
        cgroup: None,
        devices,
        restart_policy: spec.restart_policy,
        auto_remove: spec.auto_remove,
        disposable: spec.disposable || spec.auto_remove,
        anonymous_volumes: Vec::new(),
        network: spec.network.clone(),
    })
}

/// The highest permission bits a tmpfs can be given (setuid, setgid, sticky, rwx for all).
const MODE_BITS: u32 = 0o7777;

/// Splits tmpfs options into mount flags and the data string tmpfs understands. Docker's
/// defaults are `noexec,nosuid,nodev`; `exec`, `suid` and `dev` lift them. The values of the
/// data options are checked here, as the kernel would read them, so that a bad one is refused
/// at create rather than failing the start: `mode` octal up to 7777, `size` a number of bytes
/// with an optional `k`, `m`, `g` or `%`, `nr_inodes`/`nr_blocks` with `k`, `m` or `g`, and
/// `uid`/`gid` numbers.
pub(crate) fn tmpfs_options(options: &str) -> Result<(nix::mount::MsFlags, String), String> {
    use nix::mount::MsFlags;
    let mut flags = MsFlags::MS_NOEXEC | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let mut data = Vec::new();
    let number = |value: &str, suffixes: &[char]| {
        let digits = value.strip_suffix(|c: char| suffixes.contains(&c.to_ascii_lowercase())).unwrap_or(value);
        !digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit())
    };
    for option in options.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        match option {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => flags &= !MsFlags::MS_RDONLY,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "exec" => flags &= !MsFlags::MS_NOEXEC,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "suid" => flags &= !MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "dev" => flags &= !MsFlags::MS_NODEV,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            _ => {
                let valid = match option.split_once('=') {
                    Some(("mode", value)) => parse_mode(value).map(|_| true)?,
                    Some(("size", value)) => number(value, &['k', 'm', 'g', '%']),
                    Some(("nr_inodes" | "nr_blocks", value)) => number(value, &['k', 'm', 'g']),
                    Some(("uid" | "gid", value)) => value.parse::<u32>().is_ok(),
                    _ => return Err(format!("unknown option \"{}\"", option.escape_debug())),
                };
                if !valid {
                    return Err(format!("invalid value in \"{}\"", option.escape_debug()));
                }
                data.push(option.to_string())
            }
        }
    }
    Ok((flags, data.join(",")))
}

/// A tmpfs `mode=` value: octal permission bits, at most 7777.
fn parse_mode(value: &str) -> Result<u32, String> {
    match u32::from_str_radix(value, 8) {
        Ok(mode) if mode <= MODE_BITS && !value.starts_with('+') => Ok(mode),
        Ok(_) => Err(format!("tmpfs mode {value} is beyond 7777: give permission bits in octal, e.g. 1777")),
        Err(_) => {
            Err(format!("invalid tmpfs mode \"{}\": give permission bits in octal, e.g. 1777", value.escape_debug()))
        }
    }
}

/// The tmpfs options (as [`ContainerSpec::tmpfs`] takes them) of Docker's `TmpfsOptions`:
/// `size_bytes` (0: the kernel's default, half the memory), `mode` permission bits (0: the
/// kernel's default, 1777; above 0o7777 refused, never truncated or masked), read-only.
pub fn tmpfs_options_of(size_bytes: i64, mode: u64, read_only: bool) -> Result<String, Error> {
    if size_bytes < 0 {
        return Err(Error::invalid(format!(
            "tmpfs size {size_bytes} is negative: give a size in bytes, or 0 for the default"
        )));
    }
    if mode > u64::from(MODE_BITS) {
        return Err(Error::invalid(format!(
            "tmpfs mode {mode:#o} is beyond 0o7777: give only permission bits (e.g. 0o1777, which is 1023)"
        )));
    }
    let mut options = Vec::new();
    if size_bytes > 0 {
        options.push(format!("size={size_bytes}"));
    }
    if mode > 0 {
        options.push(format!("mode={mode:o}"));
    }
    if read_only {
        options.push("ro".to_string());
    }
    Ok(options.join(","))
}

/// Resolves the process of container `name` (id `id`) from `spec` and the image's `config`.
pub(crate) fn resolve_process(
    spec: &ContainerSpec,
    image: Option<&oci_spec::image::Config>,
    name: &str,
    id: &str,
) -> Result<ProcessConfig, Error> {
    let entrypoint = match &spec.entrypoint {
        Some(entrypoint) => entrypoint.clone(),
        None => image.and_then(|c| c.entrypoint().clone()).unwrap_or_default(),
    };
    let cmd = match (&spec.cmd, &spec.entrypoint) {
        (Some(cmd), _) => cmd.clone(),
        // A new entrypoint does not inherit the image's arguments.
        (None, Some(_)) => Vec::new(),
        (None, None) => image.and_then(|c| c.cmd().clone()).unwrap_or_default(),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() || args[0].is_empty() {
        return Err(Error::invalid(format!(
            "no command for container {name}: image \"{}\" has no Entrypoint or Cmd, so give a command",
            spec.image
        )));
    }

    // On the host's network the host's name is the default, as with Docker.
    let hostname = match (&spec.hostname, &spec.network) {
        (Some(hostname), _) => hostname.clone(),
        (None, NetworkMode::Host) => nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| id[..12].to_string()),
        (None, _) => id[..12].to_string(),
    };
    if hostname.is_empty()
        || hostname.len() > 64
        || !hostname.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(Error::invalid(format!(
            "invalid hostname \"{hostname}\" for container {name}: use 1 to 64 letters, digits, '-' and '.'"
        )));
    }

    let mut env: Vec<String> = Vec::new();
    let image_env = image.and_then(|c| c.env().clone()).unwrap_or_default();
    for var in image_env.iter().chain(&spec.env) {
        let Some((key, _)) = var.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(Error::invalid(format!(
                "invalid environment variable \"{var}\" for container {name}: expected KEY=VALUE"
            )));
        };
        env.retain(|v| v.split_once('=').map(|(k, _)| k) != Some(key));
        env.push(var.clone());
    }
    let has = |env: &[String], key: &str| env.iter().any(|v| v.starts_with(&format!("{key}=")));
    if !has(&env, "PATH") {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    if !has(&env, "HOSTNAME") {
        env.push(format!("HOSTNAME={hostname}"));
    }
    // A chosen user's HOME comes from the image's /etc/passwd, at start.
    if !has(&env, "HOME") && spec.user.as_deref().is_none_or(str::is_empty) {
        env.push("HOME=/root".to_string());
    }

    let cwd = spec
        .workdir
        .clone()
        .or_else(|| image.and_then(|c| c.working_dir().clone()))
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".to_string());
    if !cwd.starts_with('/') {
        return Err(Error::invalid(format!(
            "working directory \"{cwd}\" of container {name} must be an absolute path"
        )));
    }

    let stdio = StdioConfig {
        tty: spec.tty,
        open_stdin: spec.open_stdin,
        stdin_once: spec.stdin_once,
        console_size: spec.console_size.filter(|&(rows, cols)| spec.tty && rows > 0 && cols > 0),
    };
    let process = ProcessConfig { args, env, cwd, hostname, stdio };
    let has_nul = process.args.iter().chain(&process.env).chain([&process.cwd]).any(|s| s.contains('\0'));
    if has_nul {
        return Err(Error::invalid(format!(
            "the command, environment or working directory of container {name} contains a NUL byte"
        )));
    }
    Ok(process)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::ConfigBuilder;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    fn image(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> oci_spec::image::Config {
        let mut b = ConfigBuilder::default();
        if let Some(e) = entrypoint {
            b = b.entrypoint(strings(e));
        }
        if let Some(c) = cmd {
            b = b.cmd(strings(c));
        }
        b.env(strings(&["PATH=/bin", "A=image"])).build().expect("config")
    }

    fn args(spec: &ContainerSpec, image: Option<&oci_spec::image::Config>) -> Result<Vec<String>, Error> {
        resolve_process(spec, image, "web.1", ID).map(|p| p.args)
    }

    #[test]
    fn entrypoint_and_cmd_follow_docker() {
        let img = image(Some(&["/entry"]), Some(&["default"]));
        let mut spec = ContainerSpec::default();
        assert_eq!(args(&spec, Some(&img)).expect("ok"), ["/entry", "default"]);

        spec.cmd = Some(strings(&["x"]));
        assert_eq!(args(&spec, Some(&img)).expect("ok"), ["/entry", "x"]);

        spec.cmd = None;
        spec.entrypoint = Some(strings(&["/other"]));
        assert_eq!(args(&spec, Some(&img)).expect("ok"), ["/other"]);

        spec.cmd = Some(strings(&["y"]));
        assert_eq!(args(&spec, Some(&img)).expect("ok"), ["/other", "y"]);

        // An empty entrypoint override clears the image's and runs cmd alone.
        spec.entrypoint = Some(vec![]);
        assert_eq!(args(&spec, Some(&img)).expect("ok"), ["y"]);

        let cmd_only = image(None, Some(&["sh"]));
        assert_eq!(args(&ContainerSpec::default(), Some(&cmd_only)).expect("ok"), ["sh"]);
    }

    #[test]
    fn volumes_parse_like_docker() {
        let m = Mount::parse("/srv/data:/data:ro").expect("bind");
        assert_eq!(
            m,
            Mount {
                kind: MountKind::Bind,
                source: "/srv/data".into(),
                target: "/data".into(),
                read_only: true,
                ..Mount::default()
            }
        );
        let m = Mount::parse("/srv/data:/data:rslave").expect("bind");
        assert_eq!(m.propagation, Some(Propagation::Rslave));
        let m = Mount::parse("cache:/var/cache:nocopy").expect("volume");
        assert!(m.no_copy);
        let m = Mount::parse("cache:/var/cache").expect("volume");
        assert_eq!((m.kind, m.read_only), (MountKind::Volume, false));
        // A target alone: an anonymous volume.
        let m = Mount::parse("/data").expect("anonymous");
        assert_eq!((m.kind, m.source.as_str(), m.target.as_str()), (MountKind::Volume, "", "/data"));
        for bad in
            ["a", "a:b", "x/y:/data", "/a:/b:rx", "/a:/b/../c", "a:b:c:d", "/a/../b", "/a:/b:shared", "v:/b:rslave"]
        {
            assert!(Mount::parse(bad).is_err(), "{bad}");
        }
        // Names that would leave the volumes directory are no volume names.
        for bad in ["..:/data", ".:/data", "..%2F:/data", "-x:/data", "a:/data"] {
            let err = Mount::parse(bad).expect_err(bad).to_string();
            assert!(err.contains("invalid volume name") || err.contains("invalid volume"), "{bad}: {err}");
        }
    }

    #[test]
    fn devices_parse_like_docker() {
        let d = |host: &str, inside: &str, perms: &str| Device {
            host_path: host.into(),
            container_path: inside.into(),
            permissions: perms.into(),
        };
        assert_eq!(Device::parse("/dev/fuse").expect("one"), d("/dev/fuse", "/dev/fuse", "rwm"));
        assert_eq!(Device::parse("/dev/null:/dev/mynull").expect("two"), d("/dev/null", "/dev/mynull", "rwm"));
        assert_eq!(Device::parse("/dev/null:r").expect("perms"), d("/dev/null", "/dev/null", "r"));
        assert_eq!(Device::parse("/dev/sda:/dev/xvda:rw").expect("three"), d("/dev/sda", "/dev/xvda", "rw"));
        for bad in ["dev/null", "/dev/null:rwx", "/dev/null:/x:rr", "/dev/null:/a/../b", "/a:/b:r:w", "/dev/null:/x:q"]
        {
            assert!(Device::parse(bad).is_err(), "{bad}");
        }
        // Resolved from the host's node: a character device with its numbers.
        let spec = ContainerSpec { devices: vec![d("/dev/null", "/dev/mynull", "rw")], ..Default::default() };
        let host = resolve_host(&spec, "c", Path::new("/c"), Path::new("/v")).expect("ok");
        assert_eq!(host.devices.len(), 1);
        assert_eq!((host.devices[0].major, host.devices[0].minor), (1, 3));
        assert_eq!(host.devices[0].cgroup_rule(), "c 1:3 rw");
        let missing = ContainerSpec { devices: vec![d("/dev/nosuch", "/dev/x", "rwm")], ..Default::default() };
        let err = resolve_host(&missing, "c", Path::new("/c"), Path::new("/v")).expect_err("missing");
        assert!(err.to_string().contains("/dev/nosuch"), "{err}");
        let not_a_device = ContainerSpec { devices: vec![d("/etc/hostname", "/dev/x", "rwm")], ..Default::default() };
        assert!(resolve_host(&not_a_device, "c", Path::new("/c"), Path::new("/v")).is_err());
    }

    #[test]
    fn host_config_resolves_mounts_and_limits() {
        let spec = ContainerSpec {
            mounts: vec![Mount::parse("vol1:/v").expect("vol")],
            tmpfs: BTreeMap::from([("/run".to_string(), "size=1m,exec".to_string())]),
            stop_signal: Some("quit".into()),
            pids_limit: Some(-1),
            ..Default::default()
        };
        let host = resolve_host(&spec, "c", Path::new("/c"), Path::new("/vols")).expect("ok");
        assert_eq!(host.mounts.len(), 5);
        assert_eq!(host.mounts[0], MountConfig::bind("/c/hosts".into(), "/etc/hosts".into()));
        assert!(matches!(&host.mounts[4], MountConfig::Bind { source, .. } if source == Path::new("/vols/vol1/_data")));
        assert_eq!(host.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(host.resources.pids, None);
        let (flags, data) = tmpfs_options("size=1m,exec").expect("ok");
        assert!(!flags.contains(nix::mount::MsFlags::MS_NOEXEC) && flags.contains(nix::mount::MsFlags::MS_NOSUID));
        assert_eq!(data, "size=1m");
        assert!(tmpfs_options("bogus").is_err());
        assert_eq!(
            tmpfs_options("mode=1777,size=64m,uid=1000").map(|(_, d)| d),
            Ok("mode=1777,size=64m,uid=1000".into())
        );
        for bad in ["mode=17777", "mode=8", "mode=", "mode=-1", "mode=+7", "size=1x", "size=", "uid=x", "nr_inodes=1%"]
        {
            assert!(tmpfs_options(bad).is_err(), "{bad}");
        }
        assert_eq!(tmpfs_options_of(1 << 20, 0o1770, true).ok().as_deref(), Some("size=1048576,mode=1770,ro"));
        assert_eq!(tmpfs_options_of(0, 0, false).ok().as_deref(), Some(""));
        // Beyond the permission bits: refused, not truncated to what fits or masked.
        for (size, mode) in [(0, 0o10000), (0, 0o107777), (0, 1 << 32), (-1, 0)] {
            assert!(tmpfs_options_of(size, mode, false).is_err(), "{size} {mode:o}");
        }
        let tiny = ContainerSpec { memory: Some(1024), ..Default::default() };
        assert!(resolve_host(&tiny, "c", Path::new("/c"), Path::new("/v")).is_err());
    }

    #[test]
    fn empty_command_is_an_error() {
        let err = args(&ContainerSpec::default(), None).expect_err("no command");
        assert!(matches!(err, Error::InvalidArgument { .. }));
        assert!(err.to_string().contains("web.1"), "{err}");
        let spec = ContainerSpec { entrypoint: Some(vec![]), ..Default::default() };
        assert!(args(&spec, Some(&image(None, Some(&["sh"])))).is_err());
    }

    #[test]
    fn env_merges_by_key_with_defaults() {
        let spec =
            ContainerSpec { cmd: Some(strings(&["sh"])), env: strings(&["A=spec", "B=1"]), ..Default::default() };
        let p = resolve_process(&spec, Some(&image(None, None)), "c", ID).expect("ok");
        assert_eq!(p.env, ["PATH=/bin", "A=spec", "B=1", "HOSTNAME=0123456789ab", "HOME=/root"]);
        assert_eq!(p.cwd, "/");
        assert_eq!(p.hostname, "0123456789ab");

        let p = resolve_process(&spec, None, "c", ID).expect("ok");
        assert_eq!(p.env[0], format!("PATH={DEFAULT_PATH}"));

        let bad = ContainerSpec { env: strings(&["NOVALUE"]), ..spec.clone() };
        assert!(resolve_process(&bad, None, "c", ID).is_err());
        let relative = ContainerSpec { workdir: Some("app".into()), ..spec };
        assert!(resolve_process(&relative, None, "c", ID).is_err());
    }

    #[test]
    fn network_modes_are_stored_and_old_configs_read_as_private() {
        // Configs and specs written before network modes existed: a private namespace.
        let host: HostConfig = serde_json::from_str("{}").expect("old host config");
        assert_eq!(host.network, NetworkMode::Private);
        let spec: ContainerSpec = serde_json::from_value(
            serde_json::to_value(ContainerSpec::default())
                .map(|mut v| {
                    v.as_object_mut().expect("an object").remove("network");
                    v
                })
                .expect("spec"),
        )
        .expect("old spec");
        assert_eq!(spec.network, NetworkMode::Private);
        for mode in [NetworkMode::Private, NetworkMode::Host, NetworkMode::Join("/run/netns/a".into())] {
            let json = serde_json::to_string(&mode).expect("json");
            assert_eq!(serde_json::from_str::<NetworkMode>(&json).expect("read back"), mode, "{json}");
        }
        let join = ContainerSpec { network: NetworkMode::Join("netns/a".into()), ..Default::default() };
        let err = resolve_host(&join, "c", Path::new("/c"), Path::new("/v")).expect_err("relative");
        assert!(err.to_string().contains("netns/a") && err.to_string().contains("absolute"), "{err}");
    }
}
