//! The overlay snapshotter. Layers live unpacked in `<root>/layers/<diff id hex>/` (unpacked
//! into a temp dir, checked against their diff id, then renamed into place, so a layer dir is
//! always complete). A container's snapshot is `upper/`, `work/` and `rootfs/` in its own
//! directory; `rootfs/` is the overlay mount point, mounted in the host's mount namespace.

use std::{
    fs,
    io::{self, BufReader, Read},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::image::MediaType;
use sha2::{Digest as _, Sha256};

use super::layer;
use crate::error::{Error, IoContext};

/// The kernel refuses mount options longer than a page.
const MAX_MOUNT_DATA: usize = 4095;

/// Docker's (pre-OCI) layer media types, which manifests from `docker save` and registries use.
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Owns `<root>/layers` and the overlay mounts of container snapshots.
#[derive(Debug)]
pub(crate) struct Snapshotter {
    dir: PathBuf,
}

impl Snapshotter {
    /// Opens the layer directory, discarding unpacks interrupted long ago.
    pub(crate) fn open(dir: &Path) -> Result<Snapshotter, Error> {
        fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        crate::jsonfile::remove_stale(dir, |name| name.starts_with(".tmp-"))?;
        Ok(Snapshotter { dir: dir.to_path_buf() })
    }

    fn layer_dir(&self, diff_id: &str) -> Result<PathBuf, Error> {
        match diff_id.strip_prefix("sha256:") {
            Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(self.dir.join(hex)),
            _ => Err(Error::invalid(format!("layer diff id \"{diff_id}\" is not a sha256 digest"))),
        }
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

    /// Mounts the snapshot in `dir` over the layers `diff_ids` (bottom first), unless mounted.
    pub(crate) fn mount(&self, dir: &Path, diff_ids: &[String]) -> Result<(), Error> {
        let target = Self::rootfs(dir);
        if is_mounted(&target)? {
            return Ok(());
        }
        let mut lowers = Vec::with_capacity(diff_ids.len().max(1));
        for diff_id in diff_ids.iter().rev() {
            let layer = self.layer_dir(diff_id)?;
            if !layer.is_dir() {
                return Err(Error::corrupt(&layer, format!("layer {diff_id} is missing from the layer store")));
            }
            lowers.push(layer.display().to_string());
        }
        if lowers.is_empty() {
            // overlayfs needs a lower layer; an image without layers starts empty.
            let empty = self.dir.join("empty");
            fs::create_dir_all(&empty).context(|| format!("creating {}", empty.display()))?;
            lowers.push(empty.display().to_string());
        }
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
        mount(Some("overlay"), &target, Some("overlay"), MsFlags::empty(), Some(data.as_str()))
            .context(|| format!("mounting the overlay root filesystem at {}", target.display()))
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

fn is_mounted(path: &Path) -> Result<bool, Error> {
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
