//! shoal's container runtime: the images on this node and the containers made from them.
//!
//! Images live in an OCI image-layout store (`images`); their layers are unpacked once and
//! stacked with overlayfs under each container (`snapshot`). A container (`container`) is a
//! directory of small JSON files; its process runs in its own pid, mount, uts, ipc and network
//! namespaces, pivoted into its overlay root (`rootfs`, `process`), under a per-container
//! shim ([`shim`]) that owns its stdio (`logs`) and exit status, so containers survive a
//! restart of the daemon and are found again by the next [`Runtime`] opened on the same root.
//!
//! Boundary: the runtime knows images and containers on one machine, nothing of services, tasks
//! or the cluster. Every call is blocking (run it on a blocking thread) except
//! [`Runtime::wait_container`].
//!
//! On-disk layout under the root (`<data-root>/runtime`):
//! ```text
//! images/      oci-layout, index.json, lock, blobs/sha256/<hex>, ingest/ (blobs being written, uploads, archives being loaded)
//! layers/      <diff id hex>/ (unpacked layers), init/ and init-noetc/ (mount points, the topmost lower layer)
//! containers/  names/<name> (symlink → <id>), .removed/ (removed containers' directories, deleted in the background)
//!              <id>/ config.json state.json exit.json [restart.json] container.log shim.log lock upper/ work/ rootfs/ upper.boot
//!                   hosts hostname resolv.conf (bound at /etc/… in the container)
//! ../volumes/  <name>/_data, <name>/volume.json (named volumes, kept after their containers;
//!              anonymous ones for an image's VOLUMEs, named by a random id, removed with a
//!              disposable container), .creating-<id>/ (a volume being created)
//! ```
//!
//! Each container also gets a cgroup (`shoal/<id>`, v1 or v2 as detected when the runtime
//! opens: `cgroups`) for its limits, pause and OOM record.

pub mod attach;
mod capabilities;
mod cgroups;
mod clock;
pub mod confine;
mod container;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod images;
mod jsonfile;
mod logs;
mod process;
mod procfs;
mod rootfs;
pub mod shim;
mod signal;
mod snapshot;
mod volumes;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use nix::sys::signal::Signal;

use cgroups::Hierarchy;
use container::{
    restart::RestartRecord,
    spec::{self as container_spec, ContainerConfig},
    state::{self, ExitFile, Observed, StateFile},
    ContainerStore,
};
use error::IoContext;
use images::{reference::Reference, store::ImageStore};
use process::{
    handshake::Handshake,
    launch::{self, Reaper, ShimCommand},
    pidfd::PidFd,
};
use snapshot::Snapshotter;

pub use container::{
    restart::{Backoff, RestartOccasion, RestartPolicy},
    spec::{
        check_hosts_line, tmpfs_options_of, ContainerSpec, Device, Mount, MountKind, NetworkMode, Propagation,
        MAX_ETC_FILE,
    },
    ContainerInfo, ContainerState,
};
pub use error::Error;
pub use images::{changes::CommitChanges, store::Upload, ImageDetails, ImageSummary};
pub use logs::{LogEntry, LogStream};
pub use process::exec_api::{resize_terminal, ExecOutput, ExecProcess, ExecSpec};
pub use volumes::VolumeInfo;

/// How long to wait for a container to die after SIGKILL before giving up.
const KILL_TIMEOUT: Duration = Duration::from_secs(30);
/// Exit code recorded when the shim itself failed to start the container (Docker's 128).
const SHIM_FAILED_EXIT_CODE: i32 = 128;

/// What [`Runtime::prune_images_where`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImagesPruned {
    /// Names taken off the images deleted.
    pub untagged: Vec<String>,
    /// Ids of the images deleted.
    pub deleted: Vec<String>,
    /// Bytes freed: the deleted images' layers and what the sweep removed.
    pub reclaimed: u64,
}

/// The runtime of one node: cheap to clone, safe to share between threads.
#[derive(Debug, Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    images: ImageStore,
    snapshots: Snapshotter,
    containers: ContainerStore,
    shim: ShimCommand,
    /// The shims this process started, until they are reaped.
    reaper: Reaper,
    /// Where named volumes live: `<root>/../volumes`.
    volumes: PathBuf,
    /// `None` on a machine without usable cgroups (limits are then refused).
    cgroups: Option<Hierarchy>,
}

impl Runtime {
    /// Opens (creating if needed) the runtime rooted at `root` (`<data-root>/runtime`).
    /// Containers are started by running `shim_exe shim_args… <container dir>`, which must call
    /// [`shim::main`].
    pub fn open(root: &Path, shim_exe: PathBuf, shim_args: Vec<String>) -> Result<Runtime, Error> {
        fs::create_dir_all(root).context(|| format!("creating {}", root.display()))?;
        let root = fs::canonicalize(root).context(|| format!("resolving {}", root.display()))?;
        let text = root.to_string_lossy();
        if text.contains([',', ':', '\\']) || text.contains(char::is_whitespace) {
            return Err(Error::invalid(format!(
                "the runtime root {} contains ',', ':', '\\' or whitespace, which overlayfs mount options cannot carry: choose another data root",
                root.display()
            )));
        }
        let volumes_dir = root.parent().unwrap_or(&root).join("volumes");
        if let Err(e) = volumes::remove_stale_staging(&volumes_dir) {
            tracing::warn!("cleaning up volumes whose creation was interrupted: {}", e.report());
        }
        let runtime = Runtime {
            inner: Arc::new(Inner {
                images: ImageStore::open(&root.join("images"))?,
                snapshots: Snapshotter::open(&root.join("layers"))?,
                containers: ContainerStore::open(&root.join("containers"))?,
                shim: ShimCommand { exe: shim_exe, args: shim_args },
                reaper: Reaper::default(),
                volumes: volumes_dir,
                cgroups: Hierarchy::detect()?.and_then(Hierarchy::usable),
                root,
            }),
        };
        // What a killed load, import or upload left: nothing else can ever remove it. A store
        // that cannot be swept still opens (the next prune tries again).
        match runtime.collect_garbage() {
            Ok(0) => {}
            Ok(freed) => tracing::info!(freed, "removed what interrupted image loads and imports left"),
            Err(e) => tracing::warn!(error = %e.report(), "cleaning up the image store"),
        }
        Ok(runtime)
    }

    /// Removes, unless an image load, import, upload or commit is under way (in this process
    /// or another on the same root): everything in the store's `ingest/` (uploads, staging
    /// directories, blobs being written), every blob no image names, and every unpacked layer
    /// no image or container uses. Returns the bytes freed (0 when something was under way).
    fn collect_garbage(&self) -> Result<u64, Error> {
        let inner = &self.inner;
        let Some(exclusive) = inner.images.try_exclusive()? else {
            tracing::debug!("an image load or import is under way: the image store is swept another time");
            return Ok(0);
        };
        let mut freed = inner.images.sweep(&exclusive)?;
        let mut in_use: std::collections::HashSet<String> =
            inner.containers.list()?.into_iter().flat_map(|c| c.layers).collect();
        for image in inner.images.list()? {
            in_use.extend(image.config.rootfs().diff_ids().iter().cloned());
        }
        freed += inner.snapshots.sweep(&in_use)?;
        Ok(freed)
    }

    /// After a failed load, import or commit: what it wrote before failing goes now rather
    /// than at the next prune, unless another one is under way.
    fn clean_up_after(&self, failed: &Error) {
        if let Err(e) = self.collect_garbage() {
            tracing::warn!(error = %e.report(), after = %failed, "cleaning up the image store after a failure");
        }
    }

    /// The (canonical) root directory of this runtime.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Imports a root filesystem (a directory, or a tar, optionally gzipped) as a one-layer
    /// image named `reference`.
    pub fn import_image(&self, src: &Path, reference: &str) -> Result<ImageSummary, Error> {
        self.import_image_with(src, reference, &CommitChanges::default())
    }

    /// [`Runtime::import_image`] with the image's config set by `changes` (`--change`).
    pub fn import_image_with(
        &self,
        src: &Path,
        reference: &str,
        changes: &CommitChanges,
    ) -> Result<ImageSummary, Error> {
        let reference = Reference::parse(reference)?;
        let shown = src.display().to_string();
        let image = images::import::import(&self.inner.images, &self.inner.snapshots, src, &shown, &reference, changes)
            .inspect_err(|e| self.clean_up_after(e))?;
        tracing::info!(image = %image.id, %reference, src = %src.display(), "imported image");
        Ok(image.summary())
    }

    /// A new file in the image store for an archive or root filesystem sent to this node, to
    /// be written and then given to [`Runtime::load_upload`] or [`Runtime::import_upload`]. It
    /// is deleted when dropped, and removed at the next open if the process dies first; it may
    /// not grow into the store's spare space.
    pub fn upload(&self) -> Result<Upload, Error> {
        self.inner.images.upload()
    }

    /// [`Runtime::import_image_with`] for a root filesystem tar sent as an [`Upload`] (which is
    /// deleted once read).
    pub fn import_upload(
        &self,
        upload: Upload,
        reference: &str,
        changes: &CommitChanges,
    ) -> Result<ImageSummary, Error> {
        let reference = Reference::parse(reference)?;
        let imported = images::import::import(
            &self.inner.images,
            &self.inner.snapshots,
            upload.path(),
            "the upload",
            &reference,
            changes,
        );
        // The upload's lease would keep the clean-up from running.
        drop(upload);
        let image = imported.inspect_err(|e| self.clean_up_after(e))?;
        tracing::info!(image = %image.id, %reference, "imported image from an upload");
        Ok(image.summary())
    }

    /// [`Runtime::load_images`] for an archive sent as an [`Upload`] (which is deleted once
    /// read).
    pub fn load_upload(&self, upload: Upload) -> Result<Vec<String>, Error> {
        let path = upload.path();
        let loaded = fs::File::open(path)
            .context(|| format!("opening the upload {}", path.display()))
            .and_then(|mut file| images::archive::load(&self.inner.images, &self.inner.snapshots, &mut file));
        drop(upload);
        let loaded = loaded.inspect_err(|e| self.clean_up_after(e))?;
        tracing::info!(?loaded, "loaded images from an upload");
        Ok(loaded)
    }

    /// All images, newest first.
    pub fn list_images(&self) -> Result<Vec<ImageSummary>, Error> {
        let mut images: Vec<_> = self.inner.images.list()?.iter().map(|i| i.summary()).collect();
        images.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        Ok(images)
    }

    /// The image named `reference` (`name[:tag]`, `:latest` implied), or with that id or id
    /// prefix.
    pub fn image(&self, reference: &str) -> Result<Option<ImageSummary>, Error> {
        Ok(self.inner.images.resolve(reference)?.map(|i| i.summary()))
    }

    /// Gives the image `source` (name or id) the additional name `target`, moving `target` off
    /// any image it named before.
    pub fn tag_image(&self, source: &str, target: &str) -> Result<(), Error> {
        let image = self.find_image(source)?;
        let target = Reference::parse(target)?;
        self.inner.images.tag(&target, &image.descriptor)?;
        tracing::info!(image = %image.id, %target, "tagged image");
        Ok(())
    }

    /// The image's config and layers, by name or id.
    pub fn inspect_image(&self, reference: &str) -> Result<ImageDetails, Error> {
        Ok(self.find_image(reference)?.details())
    }

    /// Removes a name, or the image itself once its last name goes (or when given by id):
    /// its blobs and unpacked layers are deleted unless another image shares them. An image a
    /// container uses is refused unless `force`, which only takes its names away. Returns
    /// `Untagged: <name>` and `Deleted: <id>` lines, as Docker prints them.
    pub fn remove_image(&self, reference: &str, force: bool) -> Result<Vec<String>, Error> {
        let image = self.find_image(reference)?;
        let name = Reference::parse(reference).ok().map(|r| r.to_string()).filter(|n| image.references.contains(n));
        let mut report = Vec::new();
        if let Some(name) = &name {
            if image.references.len() > 1 {
                self.inner.images.untag(name)?;
                report.push(format!("Untagged: {name}"));
                return Ok(report);
            }
        } else if image.references.len() > 1 && !force {
            return Err(Error::conflict(format!(
                "image {} has several names ({}): remove them one by one, or force",
                image.id,
                image.references.join(", ")
            )));
        }
        let users = self.image_users(&image.id)?;
        if let Some(user) = users.first() {
            if !force {
                return Err(Error::conflict(format!(
                    "image {reference} is used by container {user}: remove the container first, or force"
                )));
            }
        }
        for name in &image.references {
            self.inner.images.untag(name)?;
            report.push(format!("Untagged: {name}"));
        }
        if users.is_empty() {
            self.delete_image(&image)?;
            report.push(format!("Deleted: {}", image.id));
        }
        tracing::info!(image = %image.id, ?report, "removed image");
        Ok(report)
    }

    /// Deletes every image that has no name and no container; returns their ids.
    pub fn prune_images(&self) -> Result<Vec<String>, Error> {
        Ok(self.prune_images_where(true, |_| true)?.deleted)
    }

    /// Deletes the images no container uses that have no name (all of them, named or not,
    /// unless `dangling_only`) and for which `select` holds, then sweeps the store (see
    /// [`Runtime::open`]): uploads and staging left by killed loads, blobs and unpacked layers
    /// nothing uses.
    pub fn prune_images_where(
        &self,
        dangling_only: bool,
        select: impl Fn(&ImageSummary) -> bool,
    ) -> Result<ImagesPruned, Error> {
        let mut pruned = ImagesPruned::default();
        for image in self.inner.images.list()? {
            let summary = image.summary();
            if (dangling_only && !image.references.is_empty()) || !select(&summary) {
                continue;
            }
            if !self.image_users(&image.id)?.is_empty() {
                continue;
            }
            for name in &image.references {
                self.inner.images.untag(name)?;
                pruned.untagged.push(name.clone());
            }
            self.delete_image(&image)?;
            pruned.reclaimed += summary.size;
            pruned.deleted.push(image.id);
        }
        pruned.reclaimed += self.collect_garbage()?;
        tracing::info!(deleted = ?pruned.deleted, reclaimed = pruned.reclaimed, "pruned images");
        Ok(pruned)
    }

    /// Writes the images named by `references` (names or ids) to `out` as one archive that
    /// both OCI tools and `docker load` read.
    pub fn save_images(&self, references: &[&str], out: &mut impl std::io::Write) -> Result<(), Error> {
        let mut images: Vec<(images::store::Image, Vec<String>)> = Vec::new();
        for reference in references {
            let image = self.find_image(reference)?;
            let name = Reference::parse(reference).ok().map(|r| r.to_string()).filter(|n| image.references.contains(n));
            match images.iter_mut().find(|(i, _)| i.id == image.id) {
                Some((_, names)) => names.extend(name.filter(|n| !names.contains(n))),
                None => images.push((image, name.into_iter().collect())),
            }
        }
        images::archive::save(&self.inner.images, &images, out)
    }

    /// Loads the images in an archive made by [`Runtime::save_images`], `docker save` or an OCI
    /// tool (gzipped or not). Every blob is checked first: a damaged archive loads nothing.
    /// Returns the names loaded (the id of an image without one).
    pub fn load_images(&self, input: &mut impl std::io::Read) -> Result<Vec<String>, Error> {
        let loaded = images::archive::load(&self.inner.images, &self.inner.snapshots, input)
            .inspect_err(|e| self.clean_up_after(e))?;
        tracing::info!(?loaded, "loaded images");
        Ok(loaded)
    }

    /// Makes a new image from a container: its image's layers plus one layer holding what the
    /// container changed (deletions as whiteouts), with `changes` applied to the config and
    /// named `reference` (nameless if empty). A running container is frozen meanwhile, when it
    /// has a cgroup.
    pub fn commit_container(
        &self,
        id_or_name: &str,
        reference: &str,
        changes: &CommitChanges,
    ) -> Result<ImageSummary, Error> {
        let inner = &self.inner;
        let reference = if reference.is_empty() { None } else { Some(Reference::parse(reference)?) };
        let config = inner.containers.find(id_or_name)?;
        let _lock = inner.containers.lock(&config)?;
        let paths = inner.containers.paths(&config.id);
        let parent = inner.images.resolve(&config.image_id)?.ok_or_else(|| {
            Error::conflict(format!(
                "container {} was made from image {}, which is gone: it cannot be committed",
                config.name, config.image_id
            ))
        })?;
        let mut mount_points: Vec<PathBuf> = ["proc", "sys", "dev"].iter().map(PathBuf::from).collect();
        mount_points.extend(container_spec::ETC_FILES.iter().map(|f| Path::new("etc").join(f)));
        for m in &config.host.mounts {
            let (container_spec::MountConfig::Bind { target, .. } | container_spec::MountConfig::Tmpfs { target, .. }) =
                m;
            mount_points.push(PathBuf::from(target.trim_start_matches('/')));
        }
        let observed = state::observe(&paths, &config)?;
        inner.snapshots.recover(paths.dir())?;
        let freeze = match (&config.host.cgroup, observed.info.state) {
            (Some(cgroup), ContainerState::Running) if !observed.info.paused => Some(cgroup),
            _ => None,
        };
        if let Some(cgroup) = freeze {
            cgroup.freeze(true)?;
        }
        let result = images::commit::commit(
            &inner.images,
            &inner.snapshots,
            &parent,
            &paths.dir().join("upper"),
            &mount_points,
            changes,
            reference.as_ref(),
        );
        if let Some(cgroup) = freeze {
            cgroup.freeze(false)?;
        }
        let image = result.inspect_err(|e| self.clean_up_after(e))?;
        tracing::info!(container = %config.name, image = %image.id, "committed container");
        Ok(image.summary())
    }

    fn find_image(&self, reference: &str) -> Result<images::store::Image, Error> {
        self.inner.images.resolve(reference)?.ok_or_else(|| Error::ImageNotFound { reference: reference.to_string() })
    }

    /// Names of the containers made from image `id`.
    fn image_users(&self, id: &str) -> Result<Vec<String>, Error> {
        Ok(self.inner.containers.list()?.into_iter().filter(|c| c.image_id == id).map(|c| c.name).collect())
    }

    /// Deletes the image's blobs and those of its unpacked layers no image or container uses.
    fn delete_image(&self, image: &images::store::Image) -> Result<(), Error> {
        self.inner.images.delete(image)?;
        let mut in_use: Vec<String> = self.inner.containers.list()?.into_iter().flat_map(|c| c.layers).collect();
        for other in self.inner.images.list()? {
            in_use.extend(other.config.rootfs().diff_ids().iter().cloned());
        }
        for diff_id in image.config.rootfs().diff_ids() {
            if !in_use.contains(diff_id) {
                self.inner.snapshots.remove_layer(diff_id)?;
            }
        }
        Ok(())
    }

    /// Creates a container (not started) from `spec`.
    pub fn create_container(&self, spec: &ContainerSpec) -> Result<ContainerInfo, Error> {
        let inner = &self.inner;
        let image =
            inner.images.resolve(&spec.image)?.ok_or_else(|| Error::ImageNotFound { reference: spec.image.clone() })?;
        let id = container::new_id();
        let name = if spec.name.is_empty() { id[..12].to_string() } else { spec.name.clone() };
        let process = container_spec::resolve_process(spec, image.config.config().as_ref(), &name, &id)?;
        let diff_ids = image.config.rootfs().diff_ids().clone();
        let layers = image.manifest.layers();
        if layers.len() != diff_ids.len() {
            return Err(Error::corrupt(
                inner.root.join("images"),
                format!("image {} lists {} layers but {} diff ids", image.id, layers.len(), diff_ids.len()),
            ));
        }
        // A layer unpacked again (its directory lost) is unnamed until then: leased.
        let mut lease = None;
        for (layer, diff_id) in layers.iter().zip(&diff_ids) {
            if inner.snapshots.has_layer(diff_id)? {
                continue;
            }
            if lease.is_none() {
                lease = Some(inner.images.lease()?);
            }
            let blob = inner.images.blob_path(layer)?;
            inner.snapshots.ensure_layer(diff_id, &blob, layer.media_type())?;
        }
        drop(lease);
        // Anonymous volumes: the mounts without a source, and the image's VOLUMEs that no
        // mount covers.
        let mut spec = spec.clone();
        let mut anonymous = Vec::new();
        for mount in spec.mounts.iter_mut().filter(|m| m.kind == MountKind::Volume && m.source.is_empty()) {
            mount.source = container::new_id();
            anonymous.push(mount.source.clone());
        }
        let image_volumes = image.config.config().as_ref().and_then(|c| c.volumes().clone()).unwrap_or_default();
        for target in image_volumes {
            let covered = spec.mounts.iter().any(|m| volumes::same_path(&m.target, &target))
                || spec.tmpfs.keys().any(|t| volumes::same_path(t, &target));
            if !covered {
                let volume = container::new_id();
                spec.mounts.push(Mount { kind: MountKind::Volume, source: volume.clone(), target, ..Mount::default() });
                anonymous.push(volume);
            }
        }
        let spec = &spec;
        let dir = inner.containers.paths(&id);
        let mut host = container_spec::resolve_host(spec, &name, dir.dir(), &inner.volumes)?;
        host.anonymous_volumes = anonymous;
        if host.stop_signal.is_none() {
            // The image's STOPSIGNAL, when the caller chose none.
            let image_signal = image.config.config().as_ref().and_then(|c| c.stop_signal().clone());
            if let Some(signal) = image_signal.filter(|s| !s.is_empty()) {
                host.stop_signal = Some(signal::parse(&signal)?.as_str().to_string());
            }
        }
        match &inner.cgroups {
            Some(hierarchy) => host.cgroup = Some(hierarchy.paths_for(&id)),
            None if host.resources.any() => {
                return Err(Error::invalid(format!(
                    "container {name} asks for resource limits, but this machine has no usable cgroups (neither a v1 memory controller nor a v2 hierarchy with controllers is mounted)"
                )))
            }
            None => {}
        }
        let mut made = Vec::new();
        let forget_made = |made: &[String]| {
            for volume in made {
                if let Err(e) = volumes::remove(&inner.volumes, volume) {
                    tracing::warn!(volume, "removing an anonymous volume of a container not created: {}", e.report());
                }
            }
        };
        for mount in spec.mounts.iter().filter(|m| m.kind == MountKind::Volume) {
            // The labels go to a volume this mount creates; an existing one keeps its own.
            if let Err(e) = volumes::create(&inner.volumes, &mount.source, &mount.volume_labels) {
                forget_made(&made);
                return Err(e);
            }
            if host.anonymous_volumes.contains(&mount.source) {
                made.push(mount.source.clone());
            }
        }
        let hostname = process.hostname.clone();
        let network = host.network.clone();
        let (resolv, extra_hosts) = (spec.resolv_conf.clone(), spec.extra_hosts.clone());
        let config = ContainerConfig {
            id,
            name,
            image: spec.image.clone(),
            image_id: image.id.clone(),
            labels: spec.labels.clone(),
            created_at: clock::now_ns(),
            process,
            layers: diff_ids,
            host,
        };
        let paths = inner
            .containers
            .create(&config, |dir| {
                inner.snapshots.prepare(dir)?;
                container::etc::write(dir, &hostname, &network, resolv.as_deref(), &extra_hosts)
            })
            .inspect_err(|_| forget_made(&made))?;
        tracing::info!(container = %config.name, id = %config.id, image = %config.image, "created container");
        Ok(state::observe(&paths, &config)?.info)
    }

    /// Starts a created (or exited) container; a running one is returned as it is. Returns once
    /// its command runs, or with the reason it could not be executed (the container is then
    /// Exited, with that error). A start by a user clears the container's restart count and
    /// its record of a stop by a user.
    pub fn start_container(&self, id_or_name: &str) -> Result<ContainerInfo, Error> {
        Ok(self.start(id_or_name, None)?.0)
    }

    /// Starts a container as [`Runtime::start_container`] does, with a client attached to its
    /// stdio from before its command runs (see [`attach`] for what flows on the stream). A
    /// running container is attached to as it is.
    pub fn start_container_attached(&self, id_or_name: &str) -> Result<(ContainerInfo, UnixStream), Error> {
        let (ours, shims) = UnixStream::pair().context(|| "creating the attach stream".to_string())?;
        let (info, launched) = self.start(id_or_name, Some(shims.into()))?;
        if launched {
            return Ok((info, ours));
        }
        let attached = self.attach_container(&info.id)?;
        Ok((info, attached))
    }

    /// Connects to the stdio of a running container (see [`attach`]): its output from now on,
    /// and a way to write its stdin and resize its terminal.
    pub fn attach_container(&self, id_or_name: &str) -> Result<UnixStream, Error> {
        let observed = self.observe(id_or_name)?;
        let name = &observed.info.name;
        if observed.info.state != ContainerState::Running {
            return Err(Error::conflict(format!("container {name} is not running: start it first")));
        }
        let paths = self.inner.containers.paths(&observed.info.id);
        let dir = fs::File::open(paths.dir()).context(|| format!("opening {}", paths.dir().display()))?;
        UnixStream::connect(attach::socket_path(&dir)).context(|| format!("attaching to container {name}"))
    }

    /// Sets the window size of a running container's terminal.
    pub fn resize_container_tty(&self, id_or_name: &str, rows: u16, cols: u16) -> Result<(), Error> {
        let mut stream = self.attach_container(id_or_name)?;
        std::io::Write::write_all(&mut stream, &attach::resize_frame(rows, cols))
            .context(|| format!("resizing the terminal of container {id_or_name}"))
    }

    /// Starts the container unless it runs; also says whether this call launched it.
    fn start(&self, id_or_name: &str, attach: Option<std::os::fd::OwnedFd>) -> Result<(ContainerInfo, bool), Error> {
        let inner = &self.inner;
        let config = inner.containers.find(id_or_name)?;
        let _lock = inner.containers.lock(&config)?;
        let paths = inner.containers.paths(&config.id);
        if config.host.restart_policy != RestartPolicy::No {
            jsonfile::write(&paths.restart(), &RestartRecord::default())?;
        }
        self.start_locked(&config, &paths, attach)
    }

    /// Starts an exited container again for its restart policy, counting the restart, unless
    /// a user stopped it meanwhile or it is not exited any more (then `Ok(None)`). The check
    /// and the start happen under the container's lock, so a concurrent stop by a user is
    /// either seen here or stops the restarted container.
    pub fn restart_by_policy(&self, id_or_name: &str) -> Result<Option<ContainerInfo>, Error> {
        let inner = &self.inner;
        let config = inner.containers.find(id_or_name)?;
        let _lock = inner.containers.lock(&config)?;
        let paths = inner.containers.paths(&config.id);
        let observed = state::observe(&paths, &config)?;
        if observed.info.state != ContainerState::Exited || observed.info.stopped_by_user {
            return Ok(None);
        }
        let record = RestartRecord { count: observed.info.restart_count.saturating_add(1), stopped_by_user: false };
        jsonfile::write(&paths.restart(), &record)?;
        tracing::info!(container = %config.name, restarts = record.count, policy = %config.host.restart_policy, "restarting container");
        self.start_locked(&config, &paths, None).map(|(info, _)| Some(info))
    }

    /// Records that a user stopped the container, so its restart policy leaves it stopped.
    fn record_user_stop(&self, config: &ContainerConfig) -> Result<(), Error> {
        if config.host.restart_policy == RestartPolicy::No {
            return Ok(());
        }
        let _lock = self.inner.containers.lock(config)?;
        let paths = self.inner.containers.paths(&config.id);
        let mut record: RestartRecord = jsonfile::read(&paths.restart())?.unwrap_or_default();
        record.stopped_by_user = true;
        jsonfile::write(&paths.restart(), &record)
    }

    /// Starts the container (its lock held) unless it runs; also says whether this call
    /// launched it.
    fn start_locked(
        &self,
        config: &ContainerConfig,
        paths: &container::ContainerPaths,
        attach: Option<std::os::fd::OwnedFd>,
    ) -> Result<(ContainerInfo, bool), Error> {
        let inner = &self.inner;
        let observed = state::observe(paths, config)?;
        match observed.info.state {
            ContainerState::Running => return Ok((observed.info, false)),
            ContainerState::Exited => {
                // A restart: forget the previous run (its logs stay).
                fs::remove_file(paths.exit())
                    .or_else(|e| match e.kind() {
                        std::io::ErrorKind::NotFound => Ok(()),
                        _ => Err(e),
                    })
                    .context(|| format!("removing {}", paths.exit().display()))?;
                jsonfile::write_volatile(&paths.state(), &StateFile::default())?;
            }
            ContainerState::Created => {}
        }
        if let Some(cgroup) = &config.host.cgroup {
            let devices = if config.host.privileged {
                cgroups::DeviceAccess::All
            } else {
                cgroups::DeviceAccess::Default(&config.host.devices)
            };
            cgroup.create(&config.host.resources, devices)?;
        }
        inner.snapshots.mount(paths.dir(), &config.layers, config.host.disposable)?;
        // Volumes start with what the image has at their paths (see `volumes`).
        let rootfs = Snapshotter::rootfs(paths.dir());
        for mount in &config.host.mounts {
            if let container_spec::MountConfig::Bind { source, target, no_copy: false, .. } = mount {
                if source.starts_with(&inner.volumes) {
                    volumes::fill_if_empty(source, &rootfs, target)?;
                }
            }
        }
        match launch::launch(&inner.shim, &inner.reaper, paths, attach) {
            Ok(Handshake::Started { pid }) => {
                tracing::info!(container = %config.name, pid, "started container");
                Ok((state::observe(paths, config)?.info, true))
            }
            Ok(Handshake::Failed { error, exit_code }) => {
                Err(Error::Exec { container: config.name.clone(), message: error, exit_code })
            }
            Err(e) => {
                let message = e.report();
                // Make the failure visible in the container's state, unless the shim did.
                if !paths.exit().exists() {
                    jsonfile::write_volatile(
                        &paths.exit(),
                        &ExitFile {
                            exit_code: SHIM_FAILED_EXIT_CODE,
                            finished_at: clock::now_ns(),
                            error: Some(message.clone()),
                            oom_killed: false,
                        },
                    )?;
                }
                Err(Error::Shim { container: config.name.clone(), message, log: paths.shim_log() })
            }
        }
    }

    /// Stops a running container: sends `signal` (default: the container's stop signal,
    /// SIGTERM unless its spec chose another), then SIGKILL after `timeout`, and returns once
    /// it has exited. Stopping a container that is not running does nothing (but a stop
    /// always keeps its restart policy from starting it again).
    pub fn stop_container(&self, id_or_name: &str, signal: Option<&str>, timeout: Duration) -> Result<(), Error> {
        self.record_user_stop(&self.inner.containers.find(id_or_name)?)?;
        let observed = self.observe(id_or_name)?;
        let signal = signal.unwrap_or(&observed.info.stop_signal);
        let signal = signal::parse(signal)?;
        self.stop_observed(&observed, signal, timeout)
    }

    /// Stops a running container with its own stop signal and stop timeout (see
    /// [`ContainerSpec::stop_signal`] and [`ContainerSpec::stop_timeout`]).
    pub fn stop_container_default(&self, id_or_name: &str) -> Result<(), Error> {
        self.record_user_stop(&self.inner.containers.find(id_or_name)?)?;
        let observed = self.observe(id_or_name)?;
        let signal = signal::parse(&observed.info.stop_signal)?;
        self.stop_observed(&observed, signal, Duration::from_secs(observed.info.stop_timeout))
    }

    /// Pauses a running container: freezes every process in its cgroup.
    pub fn pause_container(&self, id_or_name: &str) -> Result<(), Error> {
        self.freeze(id_or_name, true)
    }

    /// Resumes a paused container.
    pub fn unpause_container(&self, id_or_name: &str) -> Result<(), Error> {
        self.freeze(id_or_name, false)
    }

    fn freeze(&self, id_or_name: &str, frozen: bool) -> Result<(), Error> {
        let config = self.inner.containers.find(id_or_name)?;
        let _lock = self.inner.containers.lock(&config)?;
        let observed = state::observe(&self.inner.containers.paths(&config.id), &config)?;
        let name = &config.name;
        if observed.info.state != ContainerState::Running {
            return Err(Error::conflict(format!("container {name} is not running")));
        }
        if observed.info.paused == frozen {
            let now = if frozen { "already paused" } else { "not paused" };
            return Err(Error::conflict(format!("container {name} is {now}")));
        }
        let cgroup = config.host.cgroup.as_ref().ok_or_else(|| {
            Error::invalid(format!("container {name} has no cgroup (this machine has none), so it cannot be paused"))
        })?;
        cgroup.freeze(frozen)?;
        tracing::info!(container = %name, paused = frozen, "container paused or resumed");
        Ok(())
    }

    fn stop_observed(&self, observed: &Observed, signal: Signal, timeout: Duration) -> Result<(), Error> {
        let (ContainerState::Running, Some(started)) = (observed.info.state, observed.started) else {
            return Ok(());
        };
        let name = &observed.info.name;
        let Some(shim) = PidFd::open(&started.shim).context(|| format!("opening the shim of container {name}"))? else {
            return Ok(()); // ended meanwhile
        };
        let send = |signal: Signal| -> Result<(), Error> {
            if let Some(init) =
                PidFd::open(&started.init).context(|| format!("opening the init of container {name}"))?
            {
                init.signal(signal).context(|| format!("sending {signal} to container {name}"))?;
            }
            Ok(())
        };
        send(signal)?;
        // A frozen process acts on no signal, SIGKILL included, until thawed.
        if observed.info.paused {
            if let Some(cgroup) = &observed.cgroup {
                cgroup.freeze(false)?;
            }
        }
        let waited = |t| -> Result<bool, Error> {
            let exited = shim.wait_timeout(t).context(|| format!("waiting for container {name} to exit"))?;
            if exited {
                self.inner.reaper.reap(started.shim.pid);
            }
            Ok(exited)
        };
        if waited(timeout)? {
            return Ok(());
        }
        tracing::info!(container = %name, "container did not exit in time, killing it");
        send(Signal::SIGKILL)?;
        if waited(KILL_TIMEOUT)? {
            return Ok(());
        }
        Err(Error::conflict(format!(
            "container {name} did not exit within {}s of SIGKILL (its shim is pid {})",
            KILL_TIMEOUT.as_secs(),
            started.shim.pid
        )))
    }

    /// Sends `signal` (a name like `SIGHUP`/`HUP` or a number) to a running container's init.
    /// SIGKILL or the container's stop signal counts as a stop by a user (as in Docker): its
    /// restart policy does not start it again.
    pub fn kill_container(&self, id_or_name: &str, signal: &str) -> Result<(), Error> {
        let signal = signal::parse(signal)?;
        let observed = self.observe(id_or_name)?;
        let name = &observed.info.name;
        let not_running = || Error::conflict(format!("container {name} is not running"));
        let started = match (observed.info.state, observed.started) {
            (ContainerState::Running, Some(started)) => started,
            _ => return Err(not_running()),
        };
        if signal == Signal::SIGKILL || signal.as_str() == observed.info.stop_signal {
            self.record_user_stop(&self.inner.containers.find(id_or_name)?)?;
        }
        let init = PidFd::open(&started.init)
            .context(|| format!("opening the init of container {name}"))?
            .ok_or_else(not_running)?;
        init.signal(signal).context(|| format!("sending {signal} to container {name}"))
    }

    /// Removes a container: its overlay is unmounted and its directory deleted. A running
    /// container is refused unless `force`, which kills it first.
    pub fn remove_container(&self, id_or_name: &str, force: bool) -> Result<(), Error> {
        self.remove_container_with(id_or_name, force, false)
    }

    /// Removes the container as [`Runtime::remove_container`] does, and its anonymous volumes
    /// too (`rm -v`; a disposable container's go with it anyway).
    pub fn remove_container_and_volumes(&self, id_or_name: &str, force: bool) -> Result<(), Error> {
        self.remove_container_with(id_or_name, force, true)
    }

    fn remove_container_with(&self, id_or_name: &str, force: bool, volumes: bool) -> Result<(), Error> {
        let inner = &self.inner;
        let config = inner.containers.find(id_or_name)?;
        let _lock = inner.containers.lock(&config)?;
        let paths = inner.containers.paths(&config.id);
        let observed = state::observe(&paths, &config)?;
        if observed.info.state == ContainerState::Running {
            if !force {
                return Err(Error::conflict(format!(
                    "container {} is running: stop it first, or remove it with force",
                    config.name
                )));
            }
            self.stop_observed(&observed, Signal::SIGKILL, KILL_TIMEOUT)?;
        }
        inner.snapshots.unmount(paths.dir())?;
        if let Some(cgroup) = &config.host.cgroup {
            cgroup.remove()?;
        }
        inner.containers.release_name(&config.name, &config.id)?;
        // A caller waiting for the lock (a restart by the policy, a stop) finds the container
        // gone once it holds it.
        inner.containers.discard(&paths)?;
        if config.host.disposable || volumes {
            for volume in &config.host.anonymous_volumes {
                // The name comes from the container's config on disk: held to the rule too.
                if let Err(e) = volumes::remove(&inner.volumes, volume) {
                    tracing::warn!(volume, "removing an anonymous volume: {}", e.report());
                }
            }
        }
        tracing::info!(container = %config.name, id = %config.id, "removed container");
        Ok(())
    }

    /// Every volume (named and anonymous), by name.
    pub fn list_volumes(&self) -> Result<Vec<VolumeInfo>, Error> {
        volumes::list(&self.inner.volumes)
    }

    /// One volume. A name no volume can have (see `shoal_proto::names`) is refused as invalid,
    /// never looked up.
    pub fn volume(&self, name: &str) -> Result<VolumeInfo, Error> {
        volumes::info(&self.inner.volumes, name)?.ok_or_else(|| Error::volume_not_found(name))
    }

    /// Creates the named volume `name` with `labels` (an existing one is returned as it is);
    /// an empty name makes an anonymous one.
    pub fn create_volume(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<VolumeInfo, Error> {
        let name = if name.is_empty() { container::new_id() } else { name.to_string() };
        let volume = volumes::create(&self.inner.volumes, &name, labels)?;
        tracing::info!(volume = name, "created volume");
        Ok(volume)
    }

    /// The names of the volumes some container (even a stopped one) mounts.
    pub fn volumes_in_use(&self) -> Result<BTreeSet<String>, Error> {
        let mut used = BTreeSet::new();
        for config in self.inner.containers.list()? {
            for mount in &config.host.mounts {
                if let container_spec::MountConfig::Bind { source, .. } = mount {
                    if let Some(name) = self.volume_of(source) {
                        used.insert(name);
                    }
                }
            }
        }
        Ok(used)
    }

    /// The volume whose data directory `path` is, if it is one.
    fn volume_of(&self, path: &Path) -> Option<String> {
        let dir = path.parent()?;
        (path.file_name()? == "_data" && dir.parent()? == self.inner.volumes)
            .then(|| dir.file_name()?.to_str().map(str::to_string))
            .flatten()
    }

    /// The containers (names) whose mounts use volume `name`.
    fn volume_users(&self, name: &str) -> Result<Vec<String>, Error> {
        Ok(self
            .inner
            .containers
            .list()?
            .into_iter()
            .filter(|c| {
                c.host.mounts.iter().any(|m| {
                    matches!(m, container_spec::MountConfig::Bind { source, .. }
                        if self.volume_of(source).as_deref() == Some(name))
                })
            })
            .map(|c| c.name)
            .collect())
    }

    /// Removes volume `name` and its data; refused while a container (even a stopped one)
    /// uses it, unless `force`.
    pub fn remove_volume(&self, name: &str, force: bool) -> Result<(), Error> {
        let volume = self.volume(name)?;
        let users = self.volume_users(&volume.name)?;
        if !users.is_empty() && !force {
            return Err(Error::conflict(format!(
                "volume {name} is in use by container {}: remove the container first, or remove the volume with force",
                users.join(", ")
            )));
        }
        if !volumes::remove(&self.inner.volumes, &volume.name)? {
            return Err(Error::volume_not_found(name));
        }
        tracing::info!(volume = name, "removed volume");
        Ok(())
    }

    /// Removes the volumes no container uses that `select` picks: with `all`, named and
    /// anonymous ones, else only anonymous ones (as Docker's prune does); returns their names.
    pub fn prune_volumes(&self, all: bool, select: impl Fn(&VolumeInfo) -> bool) -> Result<Vec<String>, Error> {
        let used = self.volumes_in_use()?;
        let mut removed = Vec::new();
        for volume in self.list_volumes()? {
            let anonymous = container::is_id(&volume.name);
            if !(all || anonymous) || used.contains(&volume.name) || !select(&volume) {
                continue;
            }
            match self.remove_volume(&volume.name, false) {
                Ok(()) => removed.push(volume.name),
                // Taken by a container created meanwhile, or removed by someone else.
                Err(Error::Conflict { .. } | Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// All containers with their current state, newest first. A container whose files cannot
    /// be read is left out (and logged).
    pub fn list_containers(&self) -> Result<Vec<ContainerInfo>, Error> {
        let inner = &self.inner;
        let mut infos = Vec::new();
        for config in inner.containers.list()? {
            match state::observe(&inner.containers.paths(&config.id), &config) {
                Ok(observed) => infos.push(observed.info),
                Err(e) => tracing::warn!(container = %config.name, "skipping container: {}", e.report()),
            }
        }
        infos.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        Ok(infos)
    }

    /// One container by id, name or unambiguous id prefix, with its current state.
    pub fn container(&self, id_or_name: &str) -> Result<ContainerInfo, Error> {
        Ok(self.observe(id_or_name)?.info)
    }

    /// The `/etc/resolv.conf` the container sees (its own file, bound over the image's).
    pub fn resolv_conf(&self, id_or_name: &str) -> Result<String, Error> {
        let config = self.inner.containers.find(id_or_name)?;
        let path = self.inner.containers.paths(&config.id).dir().join("resolv.conf");
        container::etc::read_resolv_conf(&path)
    }

    /// Replaces the container's `/etc/resolv.conf` with `content`, in place: a running
    /// container sees the new servers at its next lookup (its file is a bind mount of this
    /// one, so a rename would not reach it), as when Docker's network connect starts its
    /// embedded resolver.
    pub fn set_resolv_conf(&self, id_or_name: &str, content: &str) -> Result<(), Error> {
        let config = self.inner.containers.find(id_or_name)?;
        let path = self.inner.containers.paths(&config.id).dir().join("resolv.conf");
        container::etc::rewrite_resolv_conf(&path, content)
    }

    /// The container's output; with `tail`, only the last `tail` lines.
    pub fn read_logs(&self, id_or_name: &str, tail: Option<usize>) -> Result<Vec<LogEntry>, Error> {
        let config = self.inner.containers.find(id_or_name)?;
        logs::read(&self.inner.containers.paths(&config.id).log(), tail)
    }

    /// Resolves when the container has exited (waiting first for it to be started, if it is
    /// only created), with its final state. Works for containers started by another process.
    pub async fn wait_container(&self, id_or_name: &str) -> Result<ContainerInfo, Error> {
        let id = {
            let runtime = self.clone();
            let key = id_or_name.to_string();
            blocking(move || runtime.inner.containers.find(&key)).await?.id
        };
        loop {
            let runtime = self.clone();
            let key = id.clone();
            let observed = blocking(move || runtime.observe(&key)).await?;
            match (observed.info.state, observed.started) {
                (ContainerState::Exited, _) => return Ok(observed.info),
                (ContainerState::Running, Some(started)) => {
                    let name = &observed.info.name;
                    let shim =
                        PidFd::open(&started.shim).context(|| format!("opening the shim of container {name}"))?;
                    if let Some(shim) = shim {
                        shim.exited().await.context(|| format!("waiting for container {name}"))?;
                    }
                    self.inner.reaper.reap(started.shim.pid);
                }
                _ => {
                    // Not started yet, or removed while it was read (its directory moved
                    // between the reads of its config and its state): then say so now.
                    let runtime = self.clone();
                    let key = id.clone();
                    blocking(move || runtime.inner.containers.find(&key)).await?;
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
            }
        }
    }

    /// [`Runtime::wait_container`] for a blocking caller: returns the container's final state
    /// once it has exited, or an error after `timeout`.
    pub fn wait_container_blocking(&self, id_or_name: &str, timeout: Duration) -> Result<ContainerInfo, Error> {
        // No deadline (a timeout too long to add) waits as long as it takes.
        let deadline = std::time::Instant::now().checked_add(timeout);
        let id = self.inner.containers.find(id_or_name)?.id;
        loop {
            let observed = self.observe(&id)?;
            let left =
                deadline.map_or(Duration::from_secs(3600), |d| d.saturating_duration_since(std::time::Instant::now()));
            if observed.info.state == ContainerState::Exited {
                return Ok(observed.info);
            }
            if left.is_zero() {
                return Err(Error::io(
                    format!("waiting for container {} to exit", observed.info.name),
                    std::io::Error::from(std::io::ErrorKind::TimedOut),
                ));
            }
            match (observed.info.state, observed.started) {
                (ContainerState::Running, Some(started)) => {
                    let name = &observed.info.name;
                    let shim =
                        PidFd::open(&started.shim).context(|| format!("opening the shim of container {name}"))?;
                    if let Some(shim) = shim {
                        if shim.wait_timeout(left).context(|| format!("waiting for container {name}"))? {
                            self.inner.reaper.reap(started.shim.pid);
                        }
                    }
                }
                _ => std::thread::sleep(left.min(Duration::from_millis(100))),
            }
        }
    }

    /// Runs `spec.cmd` inside the running container `id_or_name` (its namespaces, cgroup,
    /// user, capabilities) and returns its exit code and output once it ends.
    pub fn exec(&self, id_or_name: &str, spec: &ExecSpec) -> Result<ExecOutput, Error> {
        let (config, paths, request) = self.exec_request(id_or_name, spec)?;
        process::exec_api::run(&self.inner.shim, &paths, &request, &config.name)
    }

    /// Starts `spec.cmd` inside the running container `id_or_name` and hands back its stdio
    /// while it runs: a terminal's master with `spec.tty`, else pipes (stdin if `spec.stdin`).
    pub fn exec_spawn(&self, id_or_name: &str, spec: &ExecSpec) -> Result<ExecProcess, Error> {
        let (config, paths, request) = self.exec_request(id_or_name, spec)?;
        process::exec_api::spawn(&self.inner.shim, &paths, &request, spec, &config.name)
    }

    fn exec_request(
        &self,
        id_or_name: &str,
        spec: &ExecSpec,
    ) -> Result<(ContainerConfig, container::ContainerPaths, process::exec::ExecRequest), Error> {
        let inner = &self.inner;
        let config = inner.containers.find(id_or_name)?;
        let paths = inner.containers.paths(&config.id);
        let observed = state::observe(&paths, &config)?;
        let name = &config.name;
        let started = match (observed.info.state, observed.started) {
            (ContainerState::Running, Some(started)) => started,
            _ => return Err(Error::conflict(format!("container {name} is not running: start it first"))),
        };
        if observed.info.paused {
            return Err(Error::conflict(format!("container {name} is paused: unpause it first")));
        }
        let request = process::exec_api::request(&config, started.init, spec)?;
        Ok((config, paths, request))
    }

    fn observe(&self, id_or_name: &str) -> Result<Observed, Error> {
        let config = self.inner.containers.find(id_or_name)?;
        state::observe(&self.inner.containers.paths(&config.id), &config)
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Error> + Send + 'static) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::io("running a blocking runtime call", std::io::Error::other(e.to_string())))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_is_shareable() {
        fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
        assert_send_sync::<super::Runtime>();
    }

    /// A data root with markers where the daemon keeps its state, and one beside it.
    fn data_root_with_markers(tmp: &Path) -> (Runtime, Vec<PathBuf>) {
        let data = tmp.join("data");
        let mut markers = Vec::new();
        for dir in [data.join("raft"), data.join("certificates"), tmp.join("x"), tmp.join("outside")] {
            fs::create_dir_all(&dir).expect("mkdir");
            fs::write(dir.join("marker"), "keep").expect("write marker");
            markers.push(dir.join("marker"));
        }
        let rt = Runtime::open(&data.join("runtime"), PathBuf::from("/nonexistent/shim"), Vec::new()).expect("open");
        (rt, markers)
    }

    #[test]
    fn volume_names_cannot_reach_outside_the_volumes_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (rt, markers) = data_root_with_markers(tmp.path());
        rt.create_volume("kept", &BTreeMap::new()).expect("a valid name");
        let outside = tmp.path().join("outside");
        let absolute = outside.to_str().expect("UTF-8 temp path");
        for bad in ["..", ".", "../../x", "../x", absolute, "/etc", "a/b", "", "-x", "a"] {
            let refused = |what: &str, r: Result<(), Error>| match r {
                Err(Error::InvalidArgument { message }) => {
                    assert!(message.contains("invalid volume name"), "{what} {bad:?}: {message}")
                }
                other => panic!("{what} {bad:?} was not refused as an invalid name: {other:?}"),
            };
            refused("remove", rt.remove_volume(bad, true));
            refused("inspect", rt.volume(bad).map(drop));
            // An empty name asks for an anonymous volume.
            if !bad.is_empty() {
                refused("create", rt.create_volume(bad, &BTreeMap::new()).map(drop));
            }
        }
        for marker in &markers {
            assert!(marker.exists(), "{} was removed", marker.display());
        }
        assert_eq!(rt.list_volumes().expect("list").iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["kept"]);
        let labelled = rt.create_volume("labelled", &BTreeMap::from([("a".into(), "1".into())])).expect("create");
        assert_eq!(rt.volume("labelled").expect("inspect").labels, labelled.labels);
        assert_eq!(labelled.labels.get("a").map(String::as_str), Some("1"));
        rt.remove_volume("labelled", false).expect("remove");
        assert!(matches!(rt.volume("labelled"), Err(Error::NotFound { .. })));
        // A symlink planted in the volumes directory is no volume, and is not followed.
        std::os::unix::fs::symlink(&outside, tmp.path().join("data/volumes/planted")).expect("symlink");
        assert!(rt.remove_volume("planted", true).is_err());
        assert!(rt.volume("planted").is_err());
        assert!(outside.join("marker").exists());
    }
}
