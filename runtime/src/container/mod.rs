//! Containers on disk: one directory per container under `<root>/containers/<id>/` holding
//! `config.json` (what to run, fixed at create: [`spec`]), `state.json` and `exit.json` (what
//! happened: [`state`]), `restart.json` (restarts by its policy, stops by users: [`restart`]),
//! `container.log` (its output), `shim.log` (the shim's own errors),
//! `lock` (serializes lifecycle operations) and the snapshot (`upper/ work/ rootfs/`, and
//! `upper.boot`: the boot its overlay was last mounted in).
//!
//! Names are claimed in `<root>/containers/names/<name>`, a symlink to the container's id,
//! created with the container and removed just before its directory: claiming a name is one
//! `symlink`, whatever the number of containers, and is atomic across processes. A link whose
//! container directory is gone (a failed creation) is stale, and the next container of that
//! name replaces it under `names/`'s lock; only such links are replaced, so the owner of a
//! link removes it without a lock. A root without `names/` (made by an earlier version) gets
//! it built from the containers' configs when it is opened.
//!
//! Architecture invariant: every fact about a container is in its directory (the name links
//! are an index of the names in its `config.json`), so a new process opening the same root
//! sees exactly what the old one saw.

pub(crate) mod etc;
pub(crate) mod restart;
pub(crate) mod spec;
pub(crate) mod state;

use std::{
    collections::BTreeMap,
    fs, io,
    os::unix::fs::{symlink, DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{Arc, Condvar, Mutex},
};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, IoContext},
    jsonfile,
};
use spec::ContainerConfig;

/// The lifecycle state of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    /// Created, never started.
    Created,
    /// Its command is running.
    Running,
    /// Its command has ended, or could not be started.
    Exited,
}

/// What the runtime knows about a container, as of the call that returned it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    /// 64 lowercase hex characters.
    pub id: String,
    pub name: String,
    /// The image as given at create.
    pub image: String,
    /// `sha256:…` of the image config.
    pub image_id: String,
    pub labels: BTreeMap<String, String>,
    pub state: ContainerState,
    /// Host pid of the container's init, while running.
    pub pid: Option<i32>,
    /// Exit status (128 + signal when killed by one), once exited.
    pub exit_code: Option<i32>,
    /// Why the container failed to start or was lost, if it did or was.
    pub error: Option<String>,
    /// Unix nanoseconds.
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The resolved command line (entrypoint + cmd).
    pub command: Vec<String>,
    /// Whether the kernel's OOM killer killed a process of the container (its exit code is
    /// then usually 137).
    pub oom_killed: bool,
    /// Whether the running container is paused (its cgroup frozen).
    pub paused: bool,
    /// The signal `stop` sends first, by default (`SIGTERM` unless the spec chose another).
    pub stop_signal: String,
    /// Seconds `stop` waits before SIGKILL, by default.
    pub stop_timeout: u64,
    /// When it is to be started again after it exits.
    pub restart_policy: restart::RestartPolicy,
    /// How often its restart policy restarted it since a user last started it.
    pub restart_count: u32,
    /// Whether a user stopped (or killed) it since it was last started by one.
    pub stopped_by_user: bool,
    /// Host devices it gets, as `host path:container path:permissions`.
    pub devices: Vec<String>,
    /// Its stdio is a pseudo-terminal (attached clients get one raw stream).
    pub tty: bool,
    /// Its stdin stays open for attached clients.
    pub open_stdin: bool,
    /// Its stdin closes when an attached client's input ends.
    pub stdin_once: bool,
    /// To be removed once it has exited (see [`crate::ContainerSpec::auto_remove`]).
    pub auto_remove: bool,
}

/// The files of one container.
#[derive(Debug, Clone)]
pub(crate) struct ContainerPaths {
    dir: PathBuf,
}

impl ContainerPaths {
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
    pub(crate) fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    pub(crate) fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub(crate) fn exit(&self) -> PathBuf {
        self.dir.join("exit.json")
    }
    pub(crate) fn log(&self) -> PathBuf {
        self.dir.join("container.log")
    }
    pub(crate) fn shim_log(&self) -> PathBuf {
        self.dir.join("shim.log")
    }
    pub(crate) fn restart(&self) -> PathBuf {
        self.dir.join("restart.json")
    }
    /// The shim's attach socket (see [`crate::attach`]), while the container runs.
    pub(crate) const ATTACH_SOCKET: &'static str = "attach.sock";
    fn lock(&self) -> PathBuf {
        self.dir.join("lock")
    }

    fn file_name(&self) -> String {
        self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    /// For the shim, which is handed the directory itself.
    pub(crate) fn new(dir: &Path) -> ContainerPaths {
        ContainerPaths { dir: dir.to_path_buf() }
    }
}

/// An exclusive hold on one container's lifecycle (start, stop, remove), across processes.
#[derive(Debug)]
pub(crate) struct ContainerLock {
    _flock: Flock<fs::File>,
}

/// `<root>/containers`.
#[derive(Debug)]
pub(crate) struct ContainerStore {
    dir: PathBuf,
    /// `<root>/containers/names`: one symlink `<name>` → `<id>` per container.
    names: PathBuf,
    /// Serializes, within this process, what `names/`'s flock serializes across processes.
    names_lock: Mutex<()>,
    /// Deletes the directories of removed containers.
    sweeper: Sweeper,
}

impl ContainerStore {
    pub(crate) fn open(dir: &Path) -> Result<ContainerStore, Error> {
        let names = dir.join(NAMES_DIR);
        let sweeper = Sweeper::new(dir.join(REMOVED_DIR));
        let store = ContainerStore { dir: dir.to_path_buf(), names, names_lock: Mutex::new(()), sweeper };
        if fs::symlink_metadata(&store.names).is_err() {
            fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
            store.build_names()?;
        }
        mark_top_directory(dir);
        store.discard_power_cut_leftovers();
        // Left by a process that ended before it had deleted them.
        if fs::read_dir(&store.sweeper.dir).is_ok_and(|mut entries| entries.next().is_some()) {
            store.sweeper.wake();
        }
        Ok(store)
    }

    /// Moves out the directories of disposable containers that a power cut left with an
    /// empty `config.json` (written without fsync, see `create`): no container, and nothing
    /// else would remove them. A config being written is never empty (it is renamed into
    /// place whole), so no container being created is taken.
    fn discard_power_cut_leftovers(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name.to_str().filter(|id| is_id(id)) else { continue };
            let paths = self.paths(id);
            if fs::metadata(paths.config()).is_ok_and(|m| m.len() == 0) {
                tracing::warn!(container = id, "discarding a container whose config a power cut emptied");
                if let Err(e) = self.discard(&paths) {
                    tracing::warn!(container = id, "{}", e.report());
                }
            }
        }
    }

    /// Removes the directory of a container (whose snapshot is unmounted and whose name is
    /// released): moves it into `.removed/` (one rename: the container is gone for every
    /// process from then on), where a background thread deletes it. Deleting is the slow part
    /// of a removal: on a filesystem mounted with `discard` each directory deleted waits for
    /// the disk to discard its block.
    pub(crate) fn discard(&self, paths: &ContainerPaths) -> Result<(), Error> {
        let gone = self.sweeper.dir.join(format!("{}-{:08x}", paths.file_name(), rand::random::<u32>()));
        let mut renamed = fs::rename(&paths.dir, &gone);
        if matches!(&renamed, Err(e) if e.kind() == io::ErrorKind::NotFound) && paths.dir.exists() {
            // The first removal under this root: `.removed/` does not exist yet.
            fs::create_dir_all(&self.sweeper.dir).context(|| format!("creating {}", self.sweeper.dir.display()))?;
            renamed = fs::rename(&paths.dir, &gone);
        }
        match renamed {
            Ok(()) => {
                self.sweeper.wake();
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("moving {} to {}", paths.dir.display(), gone.display()), e)),
        }
    }

    /// Builds `names/` from the containers' configs (a root made before names had links),
    /// in a temporary directory renamed into place, so it appears complete or not at all.
    fn build_names(&self) -> Result<(), Error> {
        let tmp = self.dir.join(format!(".{NAMES_DIR}.tmp-{}-{:08x}", std::process::id(), rand::random::<u32>()));
        fs::create_dir(&tmp).context(|| format!("creating {}", tmp.display()))?;
        let built = (|| {
            for config in self.list()? {
                symlink(&config.id, tmp.join(&config.name))
                    .context(|| format!("linking the name {} to container {}", config.name, config.id))?;
            }
            Ok(())
        })();
        let renamed = built.and_then(|()| {
            fs::rename(&tmp, &self.names).context(|| format!("renaming {} to {}", tmp.display(), self.names.display()))
        });
        if let Err(e) = renamed {
            let _ = fs::remove_dir_all(&tmp);
            // Another process opening the same root built it first: theirs is as good.
            if !self.names.is_dir() {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Holds `names/`'s lock (within this process and across processes) while `f` runs.
    fn with_names_locked<T>(&self, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
        let _guard = self.names_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let dir = fs::File::open(&self.names).context(|| format!("opening {}", self.names.display()))?;
        let _flock = Flock::lock(dir, FlockArg::LockExclusive)
            .map_err(|(_, errno)| Error::io(format!("locking {}", self.names.display()), errno.into()))?;
        f()
    }

    /// The id the name link `name` points at, if there is one.
    fn name_target(&self, name: &str) -> Result<Option<String>, Error> {
        let link = self.names.join(name);
        match fs::read_link(&link) {
            Ok(target) => Ok(Some(target.to_string_lossy().into_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", link.display()), e)),
        }
    }

    /// Claims `name` for container `id` (whose directory exists already).
    fn claim_name(&self, name: &str, id: &str) -> Result<(), Error> {
        let link = self.names.join(name);
        let link_error = |e| Error::io(format!("creating {}", link.display()), e);
        match symlink(id, &link) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(link_error(e)),
            Err(_) => {}
        }
        self.with_names_locked(|| loop {
            match self.name_target(name)? {
                Some(other) if is_id(&other) && self.paths(&other).dir.exists() => {
                    return Err(Error::conflict(format!(
                        "the container name \"{name}\" is already used by container {}: remove that container or choose another name",
                        &other[..12]
                    )))
                }
                // Stale: its container is gone.
                Some(_) => fs::remove_file(&link).or_else(not_found_ok).map_err(link_error)?,
                None => {}
            }
            match symlink(id, &link) {
                Ok(()) => return Ok(()),
                // Claimed meanwhile by a creator not holding the lock: look again.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(link_error(e)),
            }
        })
    }

    /// Gives up `name` if it is container `id`'s. Called while the container's directory still
    /// exists, so no creator can have replaced the link meanwhile (only a link to a directory
    /// that is gone is ever replaced): no lock is needed.
    pub(crate) fn release_name(&self, name: &str, id: &str) -> Result<(), Error> {
        if self.name_target(name)?.as_deref() == Some(id) {
            let link = self.names.join(name);
            fs::remove_file(&link).or_else(not_found_ok).context(|| format!("removing {}", link.display()))?;
        }
        Ok(())
    }

    pub(crate) fn paths(&self, id: &str) -> ContainerPaths {
        ContainerPaths { dir: self.dir.join(id) }
    }

    /// The configs of all containers, in no particular order.
    pub(crate) fn list(&self) -> Result<Vec<ContainerConfig>, Error> {
        let context = || format!("listing {}", self.dir.display());
        let mut configs = Vec::new();
        for entry in fs::read_dir(&self.dir).context(context)? {
            let name = entry.context(context)?.file_name();
            let Some(id) = name.to_str().filter(|id| is_id(id)) else {
                continue;
            };
            // A container being removed right now may have lost its config already; a
            // disposable one's may be empty after a power cut (see `create`).
            if let Some(config) = jsonfile::read_volatile::<ContainerConfig>(&self.paths(id).config())? {
                configs.push(config);
            }
        }
        Ok(configs)
    }

    /// Finds a container by full id, name, or unambiguous id prefix.
    pub(crate) fn find(&self, id_or_name: &str) -> Result<ContainerConfig, Error> {
        if is_id(id_or_name) {
            if let Some(config) = jsonfile::read_volatile(&self.paths(id_or_name).config())? {
                return Ok(config);
            }
        }
        let name = id_or_name.strip_prefix('/').unwrap_or(id_or_name);
        if validate_name(name).is_ok() {
            if let Some(id) = self.name_target(name)?.filter(|id| is_id(id)) {
                let config: Option<ContainerConfig> = jsonfile::read_volatile(&self.paths(&id).config())?;
                if let Some(config) = config.filter(|c| c.name == name) {
                    return Ok(config);
                }
            }
        }
        let configs = self.list()?;
        // A container whose link is missing (a crash while it was being removed).
        if let Some(config) = configs.iter().find(|c| c.name == name) {
            return Ok(config.clone());
        }
        let is_prefix =
            !id_or_name.is_empty() && id_or_name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if is_prefix {
            let mut matches = configs.into_iter().filter(|c| c.id.starts_with(id_or_name));
            match (matches.next(), matches.next()) {
                (Some(config), None) => return Ok(config),
                (Some(_), Some(_)) => {
                    return Err(Error::invalid(format!(
                        "container id prefix \"{id_or_name}\" matches several containers: give more digits"
                    )))
                }
                (None, _) => {}
            }
        }
        Err(Error::container_not_found(id_or_name))
    }

    /// Creates the directory and files of a new container; `prepare` fills in the snapshot.
    /// Nothing is left behind on failure.
    pub(crate) fn create(
        &self,
        config: &ContainerConfig,
        prepare: impl FnOnce(&Path) -> Result<(), Error>,
    ) -> Result<ContainerPaths, Error> {
        validate_name(&config.name)?;
        let paths = self.paths(&config.id);
        fs::DirBuilder::new().mode(0o711).create(&paths.dir).context(|| format!("creating {}", paths.dir.display()))?;
        if let Err(e) = self.claim_name(&config.name, &config.id) {
            let _ = fs::remove_dir(&paths.dir);
            return Err(e);
        }
        let result = (|| {
            prepare(&paths.dir)?;
            // Written last: a directory without config.json is not a container. A disposable
            // container (removed once it exits, replaced after a reboot) does not wait for the
            // disk: after a power cut its config may be empty, and it is no container then.
            if config.host.disposable {
                jsonfile::write_volatile(&paths.config(), config)
            } else {
                jsonfile::write(&paths.config(), config)
            }
        })();
        if let Err(e) = result {
            let _ = self.release_name(&config.name, &config.id);
            let _ = fs::remove_dir_all(&paths.dir);
            return Err(e);
        }
        Ok(paths)
    }

    /// Takes the container's lifecycle lock, then checks it still exists.
    pub(crate) fn lock(&self, config: &ContainerConfig) -> Result<ContainerLock, Error> {
        let paths = self.paths(&config.id);
        let file =
            fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(paths.lock());
        let file = match file {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Error::container_not_found(&config.name)),
            Err(e) => return Err(Error::io(format!("opening {}", paths.lock().display()), e)),
        };
        let flock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| Error::io(format!("locking {}", paths.lock().display()), errno.into()))?;
        // Whoever held the lock before us may have removed the container.
        if !paths.config().exists() {
            return Err(Error::container_not_found(&config.name));
        }
        Ok(ContainerLock { _flock: flock })
    }
}

/// ext4's "top of directory hierarchies" attribute (`chattr +T`).
const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;

/// Tells ext4 that the directories in `dir` (one per container) are unrelated, so its
/// allocator spreads them, and the files made in each, over the filesystem's block groups
/// instead of packing them into `dir`'s. Without it every container's files are made in one
/// group, full of the inodes of containers removed in the last minutes, and on a filesystem
/// without a journal ext4 walks past each of those (it does not reuse an inode freed in the
/// last minute or more) for every new file: about a millisecond per container start at a few
/// starts a second. Best effort: other filesystems do not have the attribute, and nothing depends on it.
fn mark_top_directory(dir: &Path) {
    let Ok(file) = fs::File::open(dir) else {
        return;
    };
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int to the pointer given, which is valid for the call.
    if unsafe { libc::ioctl(fd, libc::FS_IOC_GETFLAGS, &mut flags) } != 0 || flags & FS_TOPDIR_FL != 0 {
        return;
    }
    flags |= FS_TOPDIR_FL;
    // SAFETY: FS_IOC_SETFLAGS reads one int from the pointer given, which is valid for the call.
    if unsafe { libc::ioctl(fd, libc::FS_IOC_SETFLAGS, &flags) } != 0 {
        tracing::debug!(dir = %dir.display(), "could not mark the containers' directory as a top directory");
    }
}

/// The directory of name links, in `<root>/containers` (not an id, so never taken for a container).
const NAMES_DIR: &str = "names";

/// Where removed containers' directories wait to be deleted, in `<root>/containers`.
const REMOVED_DIR: &str = ".removed";

/// Deletes what is in one directory, on a thread of its own, started at the first
/// [`Sweeper::wake`] and woken by each later one. A process that ends leaves the rest to the
/// next one that opens the same root.
#[derive(Debug)]
struct Sweeper {
    dir: PathBuf,
    state: Arc<(Mutex<SweepState>, Condvar)>,
}

#[derive(Debug, Default)]
struct SweepState {
    started: bool,
    /// Woken since the thread last listed the directory.
    pending: bool,
    /// The store is gone: the thread ends.
    closed: bool,
}

impl Sweeper {
    fn new(dir: PathBuf) -> Sweeper {
        Sweeper { dir, state: Arc::default() }
    }

    fn wake(&self) {
        let (lock, wakeup) = &*self.state;
        let mut state = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.pending = true;
        if state.started {
            wakeup.notify_one();
            return;
        }
        let shared = Arc::clone(&self.state);
        let dir = self.dir.clone();
        match std::thread::Builder::new().name("container-sweeper".into()).spawn(move || sweep(&dir, &shared)) {
            Ok(_) => state.started = true,
            // Deleted by the next process, or the next wake.
            Err(e) => tracing::warn!("starting the thread that deletes removed containers: {e}"),
        }
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        let (lock, wakeup) = &*self.state;
        lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).closed = true;
        wakeup.notify_one();
    }
}

fn sweep(dir: &Path, shared: &(Mutex<SweepState>, Condvar)) {
    let (lock, wakeup) = shared;
    loop {
        {
            let mut state = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            while !state.pending && !state.closed {
                state = wakeup.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            if state.closed {
                return;
            }
            state.pending = false;
        }
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Err(e) = fs::remove_dir_all(entry.path()).or_else(not_found_ok) {
                tracing::warn!(path = %entry.path().display(), "deleting a removed container's files: {e}");
            }
        }
    }
}

fn not_found_ok(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

/// A new random container id: 64 lowercase hex characters.
pub(crate) fn new_id() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

pub(crate) fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Docker's rule for container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn validate_name(name: &str) -> Result<(), Error> {
    let valid = name.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        && name.len() <= 255;
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid container name \"{name}\": use letters, digits, '_', '.' and '-', starting with a letter or digit"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids() {
        assert!(validate_name("web.1.abc_d-e").is_ok());
        for bad in ["", ".web", "web/1", "a b"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        let id = new_id();
        assert!(is_id(&id));
        assert!(!is_id(&id[1..]));
        assert!(!is_id(&id.to_uppercase()));
    }
}
