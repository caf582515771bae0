//! The node's image store, an OCI image layout under `<root>/images/`:
//! `oci-layout`, `index.json` (one manifest descriptor per reference, named by the
//! `org.opencontainers.image.ref.name` annotation, which holds the full `name:tag`), and
//! content-addressed `blobs/sha256/<hex>`. Blobs are written to `ingest/` while being hashed and
//! renamed into place, so a blob path always holds exactly the bytes its name promises.
//!
//! `ingest/` also holds uploads and the staging directories of archives being loaded. All of
//! it, and every blob no image names, is garbage once nobody works on it: whoever writes such
//! things holds a [`Lease`] (a shared `flock` on `<root>/images/lock`, so it counts across
//! processes too), and [`ImageStore::sweep`] runs only under the exclusive lock
//! ([`ImageStore::try_exclusive`]), so it never removes what a load, import or commit in
//! progress still needs, and removes everything a crashed one left.
//!
//! Architecture invariant: the store only knows blobs, manifests, configs and names; unpacking
//! layers is the snapshotter's job.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs,
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    str::FromStr,
    sync::{Mutex, MutexGuard, PoisonError},
};

use nix::{
    errno::Errno,
    fcntl::{Flock, FlockArg},
};

use oci_spec::image::{
    Descriptor, Digest, DigestAlgorithm, ImageConfiguration, ImageIndex, ImageManifest, MediaType, ANNOTATION_REF_NAME,
};
use sha2::{Digest as _, Sha256};

use super::{reference::Reference, space, ImageSummary};
use crate::{
    confine,
    error::{Error, IoContext},
    jsonfile,
};

/// An image as the store knows it: its manifest, config and the names pointing at it.
#[derive(Debug, Clone)]
pub(crate) struct Image {
    /// `sha256:…` of the config blob, the image's id as Docker shows it.
    pub id: String,
    /// The manifest's descriptor (without a name annotation).
    pub descriptor: Descriptor,
    pub manifest: ImageManifest,
    pub config: ImageConfiguration,
    pub references: Vec<String>,
}

impl Image {
    pub(crate) fn summary(&self) -> ImageSummary {
        ImageSummary {
            id: self.id.clone(),
            references: self.references.clone(),
            size: self.manifest.layers().iter().map(|l| l.size()).sum(),
            created_at: self.config.created().as_deref().and_then(crate::clock::parse_rfc3339_ns).unwrap_or(0),
            labels: self
                .config
                .config()
                .as_ref()
                .and_then(|c| c.labels().clone())
                .unwrap_or_default()
                .into_iter()
                .collect(),
        }
    }
}

/// The image store rooted at `<root>/images`.
#[derive(Debug)]
pub(crate) struct ImageStore {
    dir: PathBuf,
    /// Serializes read-modify-write cycles of `index.json` within this process.
    index_lock: Mutex<()>,
}

impl ImageStore {
    /// Opens (creating if needed) the layout at `dir`. What crashed loads left in `ingest/` is
    /// removed by the next [`ImageStore::sweep`] (the runtime sweeps when it opens).
    pub(crate) fn open(dir: &Path) -> Result<ImageStore, Error> {
        let store = ImageStore { dir: dir.to_path_buf(), index_lock: Mutex::new(()) };
        fs::create_dir_all(store.dir.join("blobs/sha256"))
            .context(|| format!("creating the image store in {}", dir.display()))?;
        let ingest = store.ingest();
        fs::create_dir_all(&ingest).context(|| format!("creating {}", ingest.display()))?;
        let layout = store.dir.join("oci-layout");
        if !layout.exists() {
            jsonfile::write_bytes(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        if !store.index_path().exists() {
            store.write_index(&ImageIndex::default())?;
        }
        Ok(store)
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join("index.json")
    }

    fn ingest(&self) -> PathBuf {
        self.dir.join("ingest")
    }

    fn blobs(&self) -> PathBuf {
        self.dir.join("blobs/sha256")
    }

    /// Serializes read-modify-write cycles of `index.json` in this process. The mutex guards
    /// no data of its own and the file is replaced atomically, so a panic while it was held
    /// leaves nothing half-done: a poisoned lock is taken over, as everywhere in the runtime.
    fn index_guard(&self) -> MutexGuard<'_, ()> {
        self.index_lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_file(&self) -> Result<fs::File, Error> {
        let path = self.dir.join("lock");
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .context(|| format!("opening {}", path.display()))
    }

    /// Holds the store's garbage collection off until dropped: taken by whatever writes
    /// blobs, staging directories, uploads or layers that no image names yet.
    pub(crate) fn lease(&self) -> Result<Lease, Error> {
        let flock = Flock::lock(self.lock_file()?, FlockArg::LockShared).map_err(|(_, errno)| {
            Error::io(format!("locking {} shared", self.dir.join("lock").display()), errno.into())
        })?;
        Ok(Lease { _flock: flock })
    }

    /// The right to [`ImageStore::sweep`], unless a lease is held (here or in another process).
    pub(crate) fn try_exclusive(&self) -> Result<Option<Exclusive>, Error> {
        match Flock::lock(self.lock_file()?, FlockArg::LockExclusiveNonblock) {
            Ok(flock) => Ok(Some(Exclusive { _flock: flock })),
            Err((_, Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, errno)) => {
                Err(Error::io(format!("locking {} exclusively", self.dir.join("lock").display()), errno.into()))
            }
        }
    }

    /// Removes everything in `ingest/` (uploads, staging directories and blobs of loads and
    /// imports that ended without cleaning up: a crash, a kill) and every blob that no image
    /// in the index names. Returns the bytes freed.
    pub(crate) fn sweep(&self, _exclusive: &Exclusive) -> Result<u64, Error> {
        let mut freed = 0;
        let ingest = self.ingest();
        for entry in fs::read_dir(&ingest).context(|| format!("listing {}", ingest.display()))? {
            let entry = entry.context(|| format!("listing {}", ingest.display()))?;
            freed += remove_entry(&entry.path())?;
        }
        let Some(referenced) = self.referenced_blobs()? else {
            return Ok(freed);
        };
        let blobs = self.blobs();
        for entry in fs::read_dir(&blobs).context(|| format!("listing {}", blobs.display()))? {
            let entry = entry.context(|| format!("listing {}", blobs.display()))?;
            if !referenced.contains(entry.file_name().to_string_lossy().as_ref()) {
                freed += remove_entry(&entry.path())?;
            }
        }
        Ok(freed)
    }

    /// The hex digests of every blob an image in the index needs; `None` when a manifest
    /// cannot be read, so that what it names is not known (nothing may then be swept).
    fn referenced_blobs(&self) -> Result<Option<HashSet<String>>, Error> {
        let mut referenced = HashSet::new();
        for d in self.read_index()?.manifests() {
            referenced.insert(d.digest().digest().to_string());
            let manifest: ImageManifest = match self.read_json_blob(d) {
                Ok(manifest) => manifest,
                Err(e) => {
                    tracing::warn!(error = %e.report(), "an image manifest cannot be read: blobs no image names are kept");
                    return Ok(None);
                }
            };
            referenced.insert(manifest.config().digest().digest().to_string());
            referenced.extend(manifest.layers().iter().map(|l| l.digest().digest().to_string()));
        }
        Ok(Some(referenced))
    }

    /// Where the blob with this descriptor's digest lives (only sha256 is supported).
    pub(crate) fn blob_path(&self, descriptor: &Descriptor) -> Result<PathBuf, Error> {
        self.digest_path(descriptor.digest())
    }

    /// Where the blob `digest` lives: only a sha256 digest (64 hex digits, as [`Digest`]
    /// checks) names a blob; any other is refused rather than made into a path.
    fn digest_path(&self, digest: &Digest) -> Result<PathBuf, Error> {
        let hex = sha256_hex(digest)?;
        confine::child(&self.blobs(), hex, "blob digest")
    }

    /// Starts writing a new blob under `lease`; its digest is known when it is committed.
    pub(crate) fn blob_writer(&self, _lease: &Lease) -> Result<BlobWriter, Error> {
        let path = self.ingest().join(format!("{:016x}", rand::random::<u64>()));
        let file = fs::File::create(&path).context(|| format!("creating {}", path.display()))?;
        Ok(BlobWriter {
            file: space::Metered::new(file, &self.ingest(), "a new image blob"),
            tmp: path,
            blobs: self.blobs(),
            hasher: Sha256::new(),
            size: 0,
            committed: false,
        })
    }

    /// A fresh directory under `ingest/` for staging an archive, under `lease`; deleted when
    /// dropped.
    pub(crate) fn staging_dir(&self, _lease: &Lease) -> Result<StagingDir, Error> {
        let path = self.ingest().join(format!("stage-{:016x}", rand::random::<u64>()));
        fs::create_dir(&path).context(|| format!("creating {}", path.display()))?;
        Ok(StagingDir(path))
    }

    /// A new file under `ingest/` for an image archive or root filesystem sent to the daemon;
    /// it holds its own lease and is deleted when dropped.
    pub(crate) fn upload(&self) -> Result<Upload, Error> {
        let lease = self.lease()?;
        let path = self.ingest().join(format!("upload-{:016x}", rand::random::<u64>()));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .context(|| format!("creating {}", path.display()))?;
        Ok(Upload { file: space::Metered::new(file, &self.ingest(), "the upload"), path, _lease: lease })
    }

    /// Makes free space for `needed` more bytes of staged `what`, or refuses (see [`space`]).
    pub(crate) fn ensure_space(&self, needed: u64, what: &str) -> Result<(), Error> {
        space::ensure(&self.ingest(), needed, what)
    }

    /// Moves the verified file at `src` into the store as the blob `digest` (kept as is if the
    /// store already has it).
    pub(crate) fn adopt_blob(&self, src: &Path, digest: &Digest) -> Result<(), Error> {
        let dest = self.digest_path(digest)?;
        if !dest.exists() {
            fs::rename(src, &dest).context(|| format!("storing blob {}", dest.display()))?;
        }
        Ok(())
    }

    /// Adds `manifest` to the index without a name, unless it is there already.
    pub(crate) fn add_nameless(&self, manifest: &Descriptor) -> Result<(), Error> {
        let _guard = self.index_guard();
        let mut index = self.read_index()?;
        if index.manifests().iter().any(|d| d.digest() == manifest.digest()) {
            return Ok(());
        }
        let mut manifests = index.manifests().clone();
        let mut nameless = manifest.clone();
        nameless.set_annotations(None);
        manifests.push(nameless);
        index.set_manifests(manifests);
        self.write_index(&index)
    }

    /// Stores `data` as a blob (under `lease`) and returns its descriptor.
    pub(crate) fn write_blob(&self, lease: &Lease, media_type: MediaType, data: &[u8]) -> Result<Descriptor, Error> {
        let mut writer = self.blob_writer(lease)?;
        writer.write_all(data).map_err(|e| space::io_error(e, || "writing a blob to the image store".to_string()))?;
        writer.commit(media_type)
    }

    fn read_json_blob<T: serde::de::DeserializeOwned>(&self, d: &Descriptor) -> Result<T, Error> {
        let path = self.blob_path(d)?;
        match jsonfile::read(&path)? {
            Some(value) => Ok(value),
            None => Err(Error::corrupt(path, format!("blob {} is named in the store but missing", d.digest()))),
        }
    }

    fn read_index(&self) -> Result<ImageIndex, Error> {
        Ok(jsonfile::read(&self.index_path())?.unwrap_or_default())
    }

    fn write_index(&self, index: &ImageIndex) -> Result<(), Error> {
        jsonfile::write(&self.index_path(), index)
    }

    /// Points `reference` at `manifest`. A manifest that loses its last name stays in the index
    /// without one (a dangling image), as Docker keeps `<none>` images.
    pub(crate) fn tag(&self, reference: &Reference, manifest: &Descriptor) -> Result<(), Error> {
        let _guard = self.index_guard();
        let mut index = self.read_index()?;
        let name = reference.to_string();
        let mut manifests = Vec::new();
        for mut d in index.manifests().iter().cloned() {
            if ref_name(&d) == Some(name.as_str()) {
                d.set_annotations(None);
            }
            manifests.push(d);
        }
        let mut named = manifest.clone();
        named.set_annotations(Some(HashMap::from([(ANNOTATION_REF_NAME.to_string(), name)])));
        manifests.push(named);
        // Drop nameless duplicates: a manifest needs a nameless entry only when it has no name.
        let has_name: Vec<Digest> =
            manifests.iter().filter(|d| ref_name(d).is_some()).map(|d| d.digest().clone()).collect();
        let mut seen_nameless = Vec::new();
        manifests.retain(|d| {
            if ref_name(d).is_some() {
                return true;
            }
            let keep = !has_name.contains(d.digest()) && !seen_nameless.contains(d.digest());
            seen_nameless.push(d.digest().clone());
            keep
        });
        index.set_manifests(manifests);
        self.write_index(&index)
    }

    /// Removes the name `reference`; an image losing its last name stays, nameless. Returns
    /// whether the name existed.
    pub(crate) fn untag(&self, reference: &str) -> Result<bool, Error> {
        let _guard = self.index_guard();
        let mut index = self.read_index()?;
        let mut manifests = index.manifests().clone();
        let Some(pos) = manifests.iter().position(|d| ref_name(d) == Some(reference)) else {
            return Ok(false);
        };
        let mut removed = manifests.remove(pos);
        if !manifests.iter().any(|d| d.digest() == removed.digest()) {
            removed.set_annotations(None);
            manifests.push(removed);
        }
        index.set_manifests(manifests);
        self.write_index(&index)?;
        Ok(true)
    }

    /// Drops the image with manifest `image.descriptor` from the index, then deletes its
    /// manifest, config and layer blobs unless another image still names them.
    pub(crate) fn delete(&self, image: &Image) -> Result<(), Error> {
        {
            let _guard = self.index_guard();
            let mut index = self.read_index()?;
            let mut manifests = index.manifests().clone();
            manifests.retain(|d| d.digest() != image.descriptor.digest());
            index.set_manifests(manifests);
            self.write_index(&index)?;
        }
        let mut in_use = Vec::new();
        for other in self.list()? {
            in_use.push(other.descriptor.digest().clone());
            in_use.push(other.manifest.config().digest().clone());
            in_use.extend(other.manifest.layers().iter().map(|l| l.digest().clone()));
        }
        let candidates = std::iter::once(&image.descriptor)
            .chain(std::iter::once(image.manifest.config()))
            .chain(image.manifest.layers().iter());
        for d in candidates {
            if in_use.contains(d.digest()) {
                continue;
            }
            let path = self.blob_path(d)?;
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(Error::io(format!("removing blob {}", path.display()), e))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Every image in the store, grouped by manifest, names sorted.
    pub(crate) fn list(&self) -> Result<Vec<Image>, Error> {
        let index = self.read_index()?;
        let mut by_manifest: BTreeMap<String, (Descriptor, Vec<String>)> = BTreeMap::new();
        for d in index.manifests() {
            let entry = by_manifest.entry(d.digest().to_string()).or_insert_with(|| (d.clone(), Vec::new()));
            if let Some(name) = ref_name(d) {
                entry.1.push(name.to_string());
            }
        }
        let mut images = Vec::with_capacity(by_manifest.len());
        for (_, (descriptor, mut references)) in by_manifest {
            references.sort();
            let manifest: ImageManifest = self.read_json_blob(&descriptor)?;
            let config: ImageConfiguration = self.read_json_blob(manifest.config())?;
            let mut descriptor = descriptor;
            descriptor.set_annotations(None);
            images.push(Image { id: manifest.config().digest().to_string(), descriptor, manifest, config, references });
        }
        Ok(images)
    }

    /// Finds an image by `name[:tag]`, by id (`sha256:…`) or by an unambiguous id prefix.
    pub(crate) fn resolve(&self, reference_or_id: &str) -> Result<Option<Image>, Error> {
        let images = self.list()?;
        if let Ok(reference) = Reference::parse(reference_or_id) {
            let name = reference.to_string();
            if let Some(image) = images.iter().find(|i| i.references.contains(&name)) {
                return Ok(Some(image.clone()));
            }
        }
        let prefix = reference_or_id.strip_prefix("sha256:").unwrap_or(reference_or_id);
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let mut matches: Vec<Image> = images
            .into_iter()
            .filter(|i| i.id.strip_prefix("sha256:").is_some_and(|hex| hex.starts_with(prefix)))
            .collect();
        match matches.len() {
            0 => Ok(None),
            1 => Ok(matches.pop()),
            n => {
                let ids: Vec<&str> = matches
                    .iter()
                    .map(|i| i.id.strip_prefix("sha256:").unwrap_or(&i.id))
                    .map(|hex| &hex[..12])
                    .collect();
                Err(Error::invalid(format!(
                    "image ID prefix {reference_or_id} matches {n} images ({}): give more of the ID",
                    ids.join(", ")
                )))
            }
        }
    }
}

/// The hex part of a sha256 digest; other algorithms are refused (the store names blobs by
/// sha256 only).
pub(crate) fn sha256_hex(digest: &Digest) -> Result<&str, Error> {
    match digest.algorithm() {
        DigestAlgorithm::Sha256 => Ok(digest.digest()),
        other => Err(Error::invalid(format!(
            "digest {digest} uses {other}, but only sha256 digests name blobs here: re-create the image with sha256"
        ))),
    }
}

/// Removes a file or directory tree; returns the bytes it held (roughly: file sizes).
pub(crate) fn remove_entry(path: &Path) -> Result<u64, Error> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    let size = if meta.is_dir() { tree_size(path) } else { meta.len() };
    match if meta.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) } {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(format!("removing {}", path.display()), e)),
        _ => Ok(size),
    }
}

/// The sizes of the files under `dir`, not following symlinks.
fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(_) => total += entry.metadata().map(|m| m.len()).unwrap_or(0),
                Err(_) => {}
            }
        }
    }
    total
}

/// A shared hold on the store's lock: no sweep runs while it lives ([`ImageStore::lease`]).
pub(crate) struct Lease {
    _flock: Flock<fs::File>,
}

/// The exclusive hold on the store's lock that [`ImageStore::sweep`] needs.
pub(crate) struct Exclusive {
    _flock: Flock<fs::File>,
}

/// A file under `ingest/` receiving an upload; removed (and its lease let go) when dropped.
pub struct Upload {
    file: space::Metered<fs::File>,
    path: PathBuf,
    _lease: Lease,
}

impl Upload {
    /// Where the upload is, to read it back once written.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `data`; refused once the store's spare space would be eaten into.
    pub fn append(&mut self, data: &[u8]) -> Result<(), Error> {
        self.file.write_all(data).map_err(|e| space::io_error(e, || format!("writing {}", self.path.display())))
    }

    /// Flushes what was appended, before the upload is read back.
    pub fn finish(&mut self) -> Result<(), Error> {
        self.file.flush().context(|| format!("writing {}", self.path.display()))
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload").field("path", &self.path).finish()
    }
}

fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations().as_ref().and_then(|a| a.get(ANNOTATION_REF_NAME)).map(String::as_str)
}

/// A directory under `ingest/` that disappears with its guard.
pub(crate) struct StagingDir(PathBuf);

impl StagingDir {
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A blob being written: hashed as it goes, renamed to its digest on commit, deleted if dropped.
pub(crate) struct BlobWriter {
    file: space::Metered<fs::File>,
    tmp: PathBuf,
    blobs: PathBuf,
    hasher: Sha256,
    size: u64,
    committed: bool,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter {
    /// Moves the blob into place under its digest and describes it.
    pub(crate) fn commit(mut self, media_type: MediaType) -> Result<Descriptor, Error> {
        let hex = hex::encode(self.hasher.clone().finalize());
        self.file.get_mut().sync_all().context(|| format!("flushing {}", self.tmp.display()))?;
        let dest = self.blobs.join(&hex);
        if dest.exists() {
            // Same digest, same bytes: keep the existing blob.
            let _ = fs::remove_file(&self.tmp);
        } else {
            fs::rename(&self.tmp, &dest).context(|| format!("storing blob {}", dest.display()))?;
        }
        self.committed = true;
        let digest = Digest::from_str(&format!("sha256:{hex}")).expect("a hex-encoded sha256 is always a valid digest");
        Ok(Descriptor::new(media_type, self.size, digest))
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ImageStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(&dir.path().join("images")).expect("open store");
        (dir, store)
    }

    fn manifest(store: &ImageStore, created: &str) -> Descriptor {
        let lease = store.lease().expect("lease");
        let config =
            oci_spec::image::ImageConfigurationBuilder::default().created(created.to_string()).build().expect("config");
        let config = store
            .write_blob(&lease, MediaType::ImageConfig, &serde_json::to_vec(&config).expect("json"))
            .expect("config blob");
        let manifest = oci_spec::image::ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config)
            .layers(vec![])
            .build()
            .expect("manifest");
        store
            .write_blob(&lease, MediaType::ImageManifest, &serde_json::to_vec(&manifest).expect("json"))
            .expect("manifest blob")
    }

    #[test]
    fn index_round_trip_with_ref_names() {
        let (_dir, store) = store();
        let m1 = manifest(&store, "2024-01-01T00:00:00Z");
        let web1 = Reference::parse("web:1").expect("ref");
        let web = Reference::parse("web").expect("ref");
        store.tag(&web1, &m1).expect("tag");
        store.tag(&web, &m1).expect("tag");

        let raw = fs::read_to_string(store.index_path()).expect("index");
        let index: ImageIndex = serde_json::from_str(&raw).expect("valid OCI index");
        assert_eq!(index.schema_version(), 2);
        let names: Vec<_> = index.manifests().iter().filter_map(ref_name).collect();
        assert_eq!(names, ["web:1", "web:latest"]);

        let images = store.list().expect("list");
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].references, ["web:1", "web:latest"]);
        assert_eq!(images[0].summary().created_at, 1_704_067_200_000_000_000);
        let by_name = store.resolve("web").expect("resolve").expect("found");
        let by_id = store.resolve(&images[0].id[7..19]).expect("resolve").expect("found");
        assert_eq!(by_name.id, by_id.id);
        assert!(store.resolve("other").expect("resolve").is_none());

        // Moving "web:latest" to a new manifest leaves the old one with only "web:1".
        let m2 = manifest(&store, "2024-01-02T00:00:00Z");
        store.tag(&web, &m2).expect("retag");
        let images = store.list().expect("list");
        assert_eq!(images.len(), 2);
        let mut refs: Vec<_> = images.iter().map(|i| i.references.clone()).collect();
        refs.sort();
        assert_eq!(refs, [vec!["web:1".to_string()], vec!["web:latest".to_string()]]);

        // Moving the last name away keeps the old image, nameless, exactly once.
        store.tag(&web1, &m2).expect("retag");
        let images = store.list().expect("list");
        assert_eq!(images.len(), 2);
        assert!(images.iter().any(|i| i.references.is_empty()));
        let index = store.read_index().expect("index");
        assert_eq!(index.manifests().len(), 3);
    }
}
