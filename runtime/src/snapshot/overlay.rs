//! The overlay snapshotter. Layers live unpacked in `<root>/layers/<diff id hex>/` (unpacked
//! into a temp dir, checked against their diff id, then renamed into place, so a layer dir is
//! always complete). A container's snapshot is `upper/`, `work/` and `rootfs/` in its own
//! directory; `rootfs/` is the overlay mount point, mounted in the host's mount namespace.
//!
//! Overlays of disposable containers (`--rm`, and swarm tasks, which a reboot replaces with new
//! tasks anyway) are mounted `volatile` where the kernel has it (5.10+): overlayfs then never syncs
//! the upper filesystem, so neither a container's writes nor the unmount at its removal (which
//! otherwise syncs the whole filesystem under `upper/`) wait for the disk. The price: after a
//! crash of the machine the upper layer may be torn. The kernel marks a volatile upper with
//! `work/work/incompat/volatile` and refuses to mount it again; before each mount the
//! snapshotter reads `upper.boot` (the boot id it recorded when it last mounted the snapshot):
//! written in this boot, the previous overlay went away with the machine up and its upper is
//! intact, so the marker is removed; written in an earlier boot (or missing), the upper is
//! discarded and the container starts again from its image with an empty upper layer, as
//! a new container from the same image would. Other containers keep Docker's behaviour: their
//! writable layer is synced and survives a reboot.

use std::{
    ffi::CString,
    fs,
    io::{self, BufReader, Read},
    os::unix::{
        ffi::OsStrExt,
        fs::{FileTypeExt, MetadataExt, PermissionsExt},
    },
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::image::MediaType;
use sha2::{Digest as _, Sha256};

use super::layer;
use crate::{
    container::spec::ETC_FILES,
    error::{Error, IoContext},
};

/// The kernel refuses mount options longer than a page.
const MAX_MOUNT_DATA: usize = 4095;

/// Docker's (pre-OCI) layer media types, which manifests from `docker save` and registries use.
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Where the kernel marks a workdir whose overlay was mounted `volatile` (relative to the
/// snapshot's directory).
const VOLATILE_MARKER: &str = "work/work/incompat/volatile";
/// The boot id of the machine when the snapshot was last mounted (in the snapshot's directory).
const BOOT_FILE: &str = "upper.boot";
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// Owns `<root>/layers` and the overlay mounts of container snapshots.
#[derive(Debug)]
pub(crate) struct Snapshotter {
    dir: PathBuf,
    /// This boot's id (empty when the kernel does not tell).
    boot_id: String,
    /// Whether overlays are mounted `volatile`; cleared the first time the kernel refuses it.
    volatile: AtomicBool,
}

impl Snapshotter {
    /// Opens the layer directory, discarding unpacks interrupted long ago.
    pub(crate) fn open(dir: &Path) -> Result<Snapshotter, Error> {
        fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        crate::jsonfile::remove_stale(dir, |name| name.starts_with(".tmp-"))?;
        let boot_id = fs::read_to_string(BOOT_ID).map(|id| id.trim().to_string()).unwrap_or_default();
        // Without a boot id a volatile upper could not be told safe from torn after a reboot.
        let volatile = AtomicBool::new(!boot_id.is_empty());
        Ok(Snapshotter { dir: dir.to_path_buf(), boot_id, volatile })
    }

    fn layer_dir(&self, diff_id: &str) -> Result<PathBuf, Error> {
        match diff_id.strip_prefix("sha256:") {
            Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(self.dir.join(hex)),
            _ => Err(Error::invalid(format!("layer diff id \"{diff_id}\" is not a sha256 digest"))),
        }
    }

    /// Removes every unpacked layer whose diff id is not in `in_use`, and what unpacks that
    /// ended without cleaning up left (`.tmp-<diff id>…`). The caller holds the image
    /// store's exclusive lock, so no unpack is under way (an init layer's `.tmp-init…` is made
    /// without it, and only removed once stale). Returns the bytes freed.
    pub(crate) fn sweep(&self, in_use: &std::collections::HashSet<String>) -> Result<u64, Error> {
        let mut freed = 0;
        let context = || format!("listing {}", self.dir.display());
        for entry in fs::read_dir(&self.dir).context(context)? {
            let entry = entry.context(context)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_layer = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
            let unused_layer = is_layer && !in_use.contains(&format!("sha256:{name}"));
            let interrupted = name.starts_with(".tmp-") && !name.starts_with(".tmp-init");
            if unused_layer || interrupted {
                freed += crate::images::store::remove_entry(&entry.path())?;
            }
        }
        crate::jsonfile::remove_stale(&self.dir, |name| name.starts_with(".tmp-init"))?;
        Ok(freed)
    }

    /// Whether the layer `diff_id` is unpacked already.
    pub(crate) fn has_layer(&self, diff_id: &str) -> Result<bool, Error> {
        Ok(self.layer_dir(diff_id)?.is_dir())
    }

    /// Deletes the unpacked layer `diff_id`, if it is there; the caller knows nothing uses it.
    pub(crate) fn remove_layer(&self, diff_id: &str) -> Result<(), Error> {
        let dir = self.layer_dir(diff_id)?;
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(format!("removing {}", dir.display()), e)),
            _ => Ok(()),
        }
    }

    /// Unpacks the layer blob at `blob` unless it already is; returns the layer directory.
    pub(crate) fn ensure_layer(&self, diff_id: &str, blob: &Path, media_type: &MediaType) -> Result<PathBuf, Error> {
        let dest = self.layer_dir(diff_id)?;
        if dest.is_dir() {
            return Ok(dest);
        }
        let file = fs::File::open(blob).context(|| format!("opening layer {}", blob.display()))?;
        let file = BufReader::with_capacity(256 * 1024, file);
        let reader: Box<dyn Read> = match media_type {
            MediaType::ImageLayer => Box::new(file),
            MediaType::Other(t) if t == DOCKER_LAYER => Box::new(file),
            MediaType::ImageLayerGzip => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
            MediaType::Other(t) if t == DOCKER_LAYER_GZIP => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
            other => {
                return Err(Error::invalid(format!(
                    "layer {diff_id} has media type {other}, which this runtime cannot unpack"
                )))
            }
        };
        let mut reader = HashingReader { inner: reader, hasher: Sha256::new() };
        let tmp = self.dir.join(format!(".tmp-{}-{:08x}", &diff_id[7..19], rand::random::<u32>()));
        fs::create_dir(&tmp).context(|| format!("creating {}", tmp.display()))?;
        let unpacked = (|| {
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
            layer::unpack(&mut reader, &tmp)?;
            // The hash covers the whole stream, including the padding after the last entry.
            io::copy(&mut reader, &mut io::sink())?;
            Ok::<_, io::Error>(())
        })();
        let result = match unpacked {
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                Err(Error::invalid(format!("layer {diff_id} ({}) cannot be unpacked: {e}", blob.display())))
            }
            Err(e) => Err(Error::io(format!("unpacking layer {diff_id} from {}", blob.display()), e)),
            Ok(()) => {
                let actual = format!("sha256:{}", hex::encode(reader.hasher.finalize()));
                if actual == diff_id {
                    Ok(())
                } else {
                    Err(Error::corrupt(blob, format!("its content is {actual}, not the diff id {diff_id}")))
                }
            }
        };
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = fs::remove_dir_all(&tmp);
            // Another thread unpacking the same layer got there first: theirs is as good.
            if !dest.is_dir() {
                return Err(Error::io(format!("storing layer {}", dest.display()), e));
            }
        }
        Ok(dest)
    }

    /// Creates the empty `upper/`, `work/` and `rootfs/` of a new snapshot in `dir`.
    pub(crate) fn prepare(&self, dir: &Path) -> Result<(), Error> {
        for sub in ["upper", "work", "rootfs"] {
            let path = dir.join(sub);
            fs::create_dir(&path).context(|| format!("creating {}", path.display()))?;
        }
        // The container's "/" takes its mode from upper/: make it what images expect.
        fs::set_permissions(dir.join("upper"), fs::Permissions::from_mode(0o755))
            .context(|| format!("setting the mode of {}", dir.join("upper").display()))
    }

    /// Where the snapshot in `dir` is mounted.
    pub(crate) fn rootfs(dir: &Path) -> PathBuf {
        dir.join("rootfs")
    }

    /// Before the upper layer of the snapshot in `dir` is read without its overlay (a commit):
    /// if it is not mounted, makes it usable after a `volatile` mount ([`Self::recover_upper`]).
    pub(crate) fn recover(&self, dir: &Path) -> Result<(), Error> {
        if !is_mounted(&Self::rootfs(dir))? {
            self.recover_upper(dir)?;
        }
        Ok(())
    }

    /// Makes the upper layer of the unmounted snapshot in `dir` usable again after a
    /// `volatile` mount: keeps it if that mount was in this boot, else empties it (see the
    /// module's documentation). Returns whether it was emptied.
    fn recover_upper(&self, dir: &Path) -> Result<bool, Error> {
        let marker = dir.join(VOLATILE_MARKER);
        if fs::symlink_metadata(&marker).is_err() {
            return Ok(false);
        }
        let recorded = fs::read_to_string(dir.join(BOOT_FILE)).unwrap_or_default();
        let same_boot = !self.boot_id.is_empty() && recorded.trim() == self.boot_id;
        if same_boot {
            // The machine stayed up since: the upper layer is intact.
            let incompat = dir.join("work/work/incompat");
            fs::remove_dir_all(&incompat).context(|| format!("removing {}", incompat.display()))?;
            return Ok(false);
        }
        tracing::warn!(
            snapshot = %dir.display(),
            "the machine restarted since this container's overlay was mounted without syncs: its writable layer may be torn and is discarded"
        );
        for sub in ["upper", "work"] {
            let path = dir.join(sub);
            match fs::remove_dir_all(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(Error::io(format!("discarding {}", path.display()), e))
                }
                _ => {}
            }
            fs::create_dir(&path).context(|| format!("creating {}", path.display()))?;
        }
        fs::set_permissions(dir.join("upper"), fs::Permissions::from_mode(0o755))
            .context(|| format!("setting the mode of {}", dir.join("upper").display()))?;
        Ok(true)
    }

    /// Mounts the snapshot in `dir` over the layers `diff_ids` (bottom first), unless mounted.
    /// Mounts the snapshot in `dir` over the layers `diff_ids`; `disposable` snapshots (of
    /// containers nobody restarts after a reboot) are mounted `volatile`.
    pub(crate) fn mount(&self, dir: &Path, diff_ids: &[String], disposable: bool) -> Result<(), Error> {
        let target = Self::rootfs(dir);
        if is_mounted(&target)? {
            return Ok(());
        }
        self.recover_upper(dir)?;
        let mut layers = Vec::with_capacity(diff_ids.len());
        for diff_id in diff_ids.iter().rev() {
            let layer = self.layer_dir(diff_id)?;
            if !layer.is_dir() {
                return Err(Error::corrupt(&layer, format!("layer {diff_id} is missing from the layer store")));
            }
            layers.push(layer);
        }
        // The mount points, topmost (and overlayfs's one lower layer for an image without
        // layers).
        let init = self.init_layer(etc_is_directory(&layers))?;
        let lowers: Vec<String> = std::iter::once(&init).chain(&layers).map(|l| l.display().to_string()).collect();
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            lowers.join(":"),
            dir.join("upper").display(),
            dir.join("work").display()
        );
        if data.len() > MAX_MOUNT_DATA {
            return Err(Error::invalid(format!(
                "the image has too many layers ({}) for one overlay mount under {}",
                diff_ids.len(),
                self.dir.display()
            )));
        }
        let context = || format!("mounting the overlay root filesystem at {}", target.display());
        if disposable && self.volatile.load(Ordering::Relaxed) {
            // Recorded before the mount: a crash right after it must find this boot's id.
            let boot = dir.join(BOOT_FILE);
            if fs::read_to_string(&boot).map(|b| b.trim() != self.boot_id).unwrap_or(true) {
                crate::jsonfile::write_bytes_volatile(&boot, self.boot_id.as_bytes())?;
            }
            let volatile = format!("{data},volatile");
            match mount(Some("overlay"), &target, Some("overlay"), MsFlags::empty(), Some(volatile.as_str())) {
                Ok(()) => return Ok(()),
                // A kernel before 5.10: mount as usual from now on.
                Err(nix::errno::Errno::EINVAL) if fs::symlink_metadata(dir.join(VOLATILE_MARKER)).is_err() => {
                    tracing::info!("this kernel's overlayfs has no volatile mounts: overlays sync their upper layer");
                    self.volatile.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(Error::io(context(), e.into())),
            }
        }
        mount(Some("overlay"), &target, Some("overlay"), MsFlags::empty(), Some(data.as_str())).context(context)
    }

    /// The init layer: a lower layer above the image's with the mount points every container
    /// needs (`/proc`, `/dev`, `/sys`, and with `etc`, `/etc/hosts`, `/etc/hostname` and
    /// `/etc/resolv.conf`), so they are not made in each container's upper layer at its start
    /// and deleted at its removal. Made once, shared by every container (Docker makes the
    /// same entries in a per-container init layer). Without `etc` for an image whose `/etc`
    /// is not a directory: a directory above it would hide what it is.
    fn init_layer(&self, etc: bool) -> Result<PathBuf, Error> {
        let name = if etc { "init" } else { "init-noetc" };
        let dest = self.dir.join(name);
        if dest.is_dir() {
            return Ok(dest);
        }
        let tmp = self.dir.join(format!(".tmp-{name}-{:08x}", rand::random::<u32>()));
        let made = (|| {
            let dir = |path: &Path| {
                fs::create_dir(path)?;
                fs::set_permissions(path, fs::Permissions::from_mode(0o755))
            };
            dir(&tmp)?;
            for sub in INIT_DIRS {
                dir(&tmp.join(sub))?;
            }
            if etc {
                dir(&tmp.join("etc"))?;
                for file in ETC_FILES {
                    let path = tmp.join("etc").join(file);
                    fs::File::create(&path)?;
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
                }
            }
            fs::rename(&tmp, &dest)
        })();
        if let Err(e) = made {
            let _ = fs::remove_dir_all(&tmp);
            // Another thread or process made it first: theirs is as good.
            if !dest.is_dir() {
                return Err(Error::io(format!("making the init layer {}", dest.display()), e));
            }
        }
        Ok(dest)
    }

    /// Unmounts the snapshot in `dir` if it is mounted.
    pub(crate) fn unmount(&self, dir: &Path) -> Result<(), Error> {
        let target = Self::rootfs(dir);
        while is_mounted(&target)? {
            match umount2(&target, MntFlags::empty()) {
                Err(nix::errno::Errno::EBUSY) => umount2(&target, MntFlags::MNT_DETACH),
                other => other,
            }
            .context(|| format!("unmounting {}", target.display()))?;
        }
        Ok(())
    }
}

/// The directories of the init layer ([`Snapshotter::init_layer`]).
const INIT_DIRS: [&str; 3] = ["proc", "dev", "sys"];

/// Whether `/etc` in the image with these layers (topmost first) is a directory, or absent.
fn etc_is_directory(layers: &[PathBuf]) -> bool {
    for layer in layers {
        match fs::symlink_metadata(layer.join("etc")) {
            Ok(meta) if meta.is_dir() => return true,
            // A whiteout: deleted by this layer, so absent.
            Ok(meta) if meta.file_type().is_char_device() && meta.rdev() == 0 => return true,
            Ok(_) => return false,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(_) => return false,
        }
    }
    true
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The mount points of this process's mount namespace, from `/proc/self/mountinfo`.
pub(crate) fn mount_points() -> Result<Vec<PathBuf>, Error> {
    let info = fs::read_to_string("/proc/self/mountinfo").context(|| "reading /proc/self/mountinfo".to_string())?;
    Ok(info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .collect())
}

/// Whether `path` is the root of a mount: asked of `statx` (no walk of every mount point),
/// or of mountinfo on a kernel whose `statx` does not tell (before 5.8).
fn is_mounted(path: &Path) -> Result<bool, Error> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::invalid(format!("the path {} contains a NUL byte", path.display())))?;
    // SAFETY: statx only writes the struct it is given; an all-zero statx is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a valid, writable statx for the duration of the call.
    let rc = unsafe {
        libc::statx(libc::AT_FDCWD, c_path.as_ptr(), libc::AT_SYMLINK_NOFOLLOW, libc::STATX_BASIC_STATS, &mut stx)
    };
    let mount_root = libc::STATX_ATTR_MOUNT_ROOT as u64;
    if rc == 0 && stx.stx_attributes_mask & mount_root != 0 {
        return Ok(stx.stx_attributes & mount_root != 0);
    }
    Ok(mount_points()?.iter().any(|p| p == path))
}

/// Undoes mountinfo's octal escapes (`\040` for a space, …).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let value = bytes[i + 1..i + 4].iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(u8::try_from(value).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo_paths() {
        assert_eq!(unescape_mountinfo(r"/a\040b"), "/a b");
        assert_eq!(unescape_mountinfo(r"/x\134y"), r"/x\y");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}
