//! `image save` and `image load`. A saved archive is an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/…`) that also carries Docker's `manifest.json`, so both
//! `docker load` and OCI tools read it. Loading accepts that, plain OCI layouts and classic
//! `docker save` archives (`manifest.json`, `<id>.json` configs, `<v1 id>/layer.tar`), gzipped
//! or not.
//!
//! Loading is all or nothing: the archive is unpacked into a staging directory under the store's
//! `ingest/`, every blob is checked against its digest and every layer against its diff id
//! (by unpacking it), and only then are blobs moved into the store and names written.
//!
//! Every path an archive names (its entries, `manifest.json`'s `Config` and `Layers`, blobs
//! named by digests) is made by [`crate::confine`] beneath the staging directory, so an archive
//! can neither write nor take anything outside it; what the loader writes itself (the
//! manifests it makes for `docker save` images) lives beside the unpacked archive, never in it.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs,
    io::{self, BufRead, BufReader, Read, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Component, Path, PathBuf},
    str::FromStr,
};

use oci_spec::image::{
    Descriptor, Digest, ImageConfiguration, ImageIndex, ImageIndexBuilder, ImageManifest, ImageManifestBuilder,
    MediaType, ANNOTATION_REF_NAME,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{
    reference::Reference,
    store::{sha256_hex, Image, ImageStore},
};
use crate::{
    confine,
    error::{Error, IoContext},
    snapshot::Snapshotter,
};

/// The largest JSON document (manifest, index, config) an archive may hold: real ones are a
/// few KiB, and each is read whole into memory.
const MAX_DOCUMENT: u64 = 16 << 20;

/// The annotation containerd (and Docker 25+) put the full image name in; `ref.name` then holds
/// only the tag.
const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

/// One entry of Docker's `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Writes `images` (each with the names to record for it) as one archive to `out`.
pub(crate) fn save(store: &ImageStore, images: &[(Image, Vec<String>)], out: impl Write) -> Result<(), Error> {
    let mut tar = tar::Builder::new(out);
    let mut written = HashSet::new();
    let mut index_entries = Vec::new();
    let mut docker = Vec::new();
    for (image, names) in images {
        let config = image.manifest.config();
        for d in std::iter::once(&image.descriptor).chain(std::iter::once(config)).chain(image.manifest.layers()) {
            if written.insert(d.digest().to_string()) {
                let path = store.blob_path(d)?;
                let file = fs::File::open(&path).context(|| format!("opening blob {}", path.display()))?;
                append(&mut tar, &blob_name(d.digest())?, d.size(), file)?;
            }
        }
        if names.is_empty() {
            index_entries.push(image.descriptor.clone());
        }
        for name in names {
            let tag = name.rsplit_once(':').map_or("latest", |(_, tag)| tag);
            let mut d = image.descriptor.clone();
            d.set_annotations(Some(HashMap::from([
                (ANNOTATION_IMAGE_NAME.to_string(), name.clone()),
                (ANNOTATION_REF_NAME.to_string(), tag.to_string()),
            ])));
            index_entries.push(d);
        }
        docker.push(DockerManifest {
            config: blob_name(config.digest())?,
            repo_tags: Some(names.clone()),
            layers: image.manifest.layers().iter().map(|l| blob_name(l.digest())).collect::<Result<_, _>>()?,
        });
    }
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(index_entries)
        .build()
        .expect("an index with schema version and manifests is complete");
    let json = "image documents always serialize";
    for (name, data) in [
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        ("index.json", serde_json::to_vec(&index).expect(json)),
        ("manifest.json", serde_json::to_vec(&docker).expect(json)),
    ] {
        append(&mut tar, name, data.len() as u64, &data[..])?;
    }
    let mut out = tar.into_inner().context(|| "finishing the image archive".to_string())?;
    out.flush().context(|| "writing the image archive".to_string())
}

/// Where an OCI layout keeps the blob `digest`; only sha256 digests (64 hex digits) make one.
fn blob_name(digest: &Digest) -> Result<String, Error> {
    Ok(format!("blobs/sha256/{}", sha256_hex(digest)?))
}

fn append(tar: &mut tar::Builder<impl Write>, name: &str, size: u64, data: impl Read) -> Result<(), Error> {
    let mut header = tar::Header::new_ustar();
    header.set_mode(0o644);
    header.set_size(size);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, name, data).context(|| format!("writing {name} to the image archive"))
}

/// An image checked and ready to enter the store.
struct Planned {
    manifest: Descriptor,
    /// Staged file → the digest it was verified against.
    blobs: Vec<(PathBuf, Digest)>,
    /// (diff id, staged blob, media type, name in the archive) per layer, bottom first.
    layers: Vec<(String, PathBuf, MediaType, String)>,
    names: Vec<Reference>,
}

/// Reads an image archive from `input` into the store; returns the names loaded (the id for an
/// image without a name).
pub(crate) fn load(store: &ImageStore, snapshots: &Snapshotter, input: &mut dyn Read) -> Result<Vec<String>, Error> {
    let lease = store.lease()?;
    let staging = store.staging_dir(&lease)?;
    // The archive's own files, and apart from them what this loader makes.
    let dir = &staging.path().join("archive");
    let made = &staging.path().join("made");
    for d in [dir, made] {
        fs::create_dir(d).context(|| format!("creating {}", d.display()))?;
    }
    unpack_archive(store, input, dir)?;
    let plans = if dir.join("index.json").is_file() {
        plan_oci(dir)?
    } else if dir.join("manifest.json").is_file() {
        plan_docker(dir, made)?
    } else {
        return Err(Error::invalid(
            "the archive has neither index.json nor manifest.json: it is not an image archive (make one with image save or docker save)",
        ));
    };

    // Unpack every layer (this checks its diff id); on failure, remove what this load unpacked.
    let mut unpacked_here = Vec::new();
    let unpack_all = (|| {
        for plan in &plans {
            for (diff_id, blob, media_type, name) in &plan.layers {
                if snapshots.has_layer(diff_id)? {
                    continue;
                }
                snapshots
                    .ensure_layer(diff_id, blob, media_type)
                    .map_err(|e| Error::invalid(format!("archive layer {name} is damaged: {}", e.report())))?;
                unpacked_here.push(diff_id.clone());
            }
        }
        Ok::<_, Error>(())
    })();
    if let Err(e) = unpack_all {
        for diff_id in &unpacked_here {
            let _ = snapshots.remove_layer(diff_id);
        }
        return Err(e);
    }

    // Every blob first, so that no name ever points at a missing one.
    for (path, digest) in plans.iter().flat_map(|p| &p.blobs) {
        // A blob two images share was moved already.
        if path.exists() {
            store.adopt_blob(path, digest)?;
        }
    }
    let mut loaded = Vec::new();
    for plan in &plans {
        if plan.names.is_empty() {
            store.add_nameless(&plan.manifest)?;
        }
        for name in &plan.names {
            store.tag(name, &plan.manifest)?;
            loaded.push(name.to_string());
        }
        if plan.names.is_empty() {
            loaded.push(plan.manifest.digest().to_string());
        }
    }
    Ok(loaded)
}

fn damaged(e: impl std::fmt::Display) -> Error {
    Error::invalid(format!("the image archive is damaged or truncated: {e}"))
}

/// Unpacks the (possibly gzipped) outer tar: regular files and directories only, each made by
/// [`confine::beneath`] `dir`, none twice, and none beyond the space the store may stage.
fn unpack_archive(store: &ImageStore, input: &mut dyn Read, dir: &Path) -> Result<(), Error> {
    let mut reader = BufReader::with_capacity(256 * 1024, input);
    let head = reader.fill_buf().context(|| "reading the image archive".to_string())?;
    if head.is_empty() {
        return Err(Error::invalid("the image archive is empty"));
    }
    let reader: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(reader))
    } else {
        Box::new(reader)
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(damaged)? {
        let mut entry = entry.map_err(damaged)?;
        let raw = entry.path().map_err(damaged)?.into_owned();
        if raw.components().all(|c| c == Component::CurDir) {
            continue; // "./", the archive's root
        }
        let dest = confine::beneath(dir, &raw, "image archive entry")?;
        let clash = |e: io::Error| match e.kind() {
            io::ErrorKind::AlreadyExists | io::ErrorKind::NotADirectory | io::ErrorKind::IsADirectory => {
                Error::invalid(format!(
                    "the image archive entry {} clashes with another of its entries: {e}",
                    raw.display()
                ))
            }
            _ => Error::io(format!("staging {} from the image archive", raw.display()), e),
        };
        match entry.header().entry_type() {
            tar::EntryType::Directory => fs::create_dir_all(&dest).map_err(clash)?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.header().size().map_err(damaged)?;
                store.ensure_space(size, "the image archive")?;
                if let Some(parent) = dest.parent() {
                    fs::create_dir_all(parent).map_err(clash)?;
                }
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&dest)
                    .map_err(clash)?;
                let copied = io::copy(&mut entry, &mut file).map_err(damaged)?;
                if copied != size {
                    return Err(damaged(format!("{} ends after {copied} of its {size} bytes", raw.display())));
                }
            }
            // Symlinks and the like have no place in an image archive (only in its layers).
            _ => {}
        }
    }
    Ok(())
}

/// Hashes the staged file `rel` and checks it against `expected` (and `size`, when known).
fn verify(dir: &Path, rel: &str, expected: &Digest, size: Option<u64>) -> Result<PathBuf, Error> {
    let path = confine::beneath(dir, rel, "blob")?;
    let lacks =
        || Error::invalid(format!("the image archive lacks blob {rel} ({expected}): it is incomplete or truncated"));
    if !path.is_file() {
        return Err(lacks());
    }
    let mut file = fs::File::open(&path).map_err(|_| lacks())?;
    let mut hasher = Sha256::new();
    let n = io::copy(&mut file, &mut hasher).context(|| format!("reading {}", path.display()))?;
    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    if actual != expected.to_string() {
        return Err(Error::invalid(format!(
            "blob {rel} in the image archive is damaged: its content is {actual}, not {expected}"
        )));
    }
    if let Some(size) = size.filter(|&s| s != n) {
        return Err(Error::invalid(format!("blob {rel} in the image archive has {n} bytes, not {size}")));
    }
    Ok(path)
}

fn sha256_of(path: &Path) -> Result<Digest, Error> {
    let mut file = fs::File::open(path).context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).context(|| format!("reading {}", path.display()))?;
    Ok(Digest::from_str(&format!("sha256:{}", hex::encode(hasher.finalize())))
        .expect("a hex-encoded sha256 is always a valid digest"))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T, Error> {
    let size = fs::metadata(path).context(|| format!("reading {}", path.display()))?.len();
    if size > MAX_DOCUMENT {
        return Err(Error::invalid(format!(
            "{what} in the image archive has {size} bytes, more than any image document needs ({MAX_DOCUMENT})"
        )));
    }
    let data = fs::read(path).context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&data).map_err(|e| Error::invalid(format!("{what} in the image archive is not valid: {e}")))
}

fn plan_oci(dir: &Path) -> Result<Vec<Planned>, Error> {
    let index: ImageIndex = read_json(&dir.join("index.json"), "index.json")?;
    let mut manifests = Vec::new();
    collect_manifests(dir, index.manifests(), &mut manifests, 0)?;
    // One plan per manifest, with every name that points at it.
    let mut by_digest: BTreeMap<String, (Descriptor, Vec<Reference>)> = BTreeMap::new();
    for d in manifests {
        let annotations = d.annotations().clone().unwrap_or_default();
        let name = annotations.get(ANNOTATION_IMAGE_NAME).or_else(|| annotations.get(ANNOTATION_REF_NAME));
        let entry = by_digest.entry(d.digest().to_string()).or_insert_with(|| (d.clone(), Vec::new()));
        if let Some(name) = name {
            entry.1.push(Reference::parse(name)?);
        }
    }
    let mut plans = Vec::new();
    for (_, (mut descriptor, names)) in by_digest {
        let rel = blob_name(descriptor.digest())?;
        let manifest_path = verify(dir, &rel, descriptor.digest(), Some(descriptor.size()))?;
        let manifest: ImageManifest = read_json(&manifest_path, &rel)?;
        let config_rel = blob_name(manifest.config().digest())?;
        let config_path = verify(dir, &config_rel, manifest.config().digest(), Some(manifest.config().size()))?;
        let config: ImageConfiguration = read_json(&config_path, &config_rel)?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(Error::invalid(format!(
                "manifest {rel} lists {} layers but its config {} diff ids",
                manifest.layers().len(),
                diff_ids.len()
            )));
        }
        let mut blobs =
            vec![(manifest_path, descriptor.digest().clone()), (config_path, manifest.config().digest().clone())];
        let mut layers = Vec::new();
        for (layer, diff_id) in manifest.layers().iter().zip(diff_ids) {
            let layer_rel = blob_name(layer.digest())?;
            let path = verify(dir, &layer_rel, layer.digest(), Some(layer.size()))?;
            blobs.push((path.clone(), layer.digest().clone()));
            layers.push((diff_id.clone(), path, layer.media_type().clone(), layer_rel));
        }
        descriptor.set_annotations(None);
        descriptor.set_platform(None);
        plans.push(Planned { manifest: descriptor, blobs, layers, names });
    }
    Ok(plans)
}

/// The image manifests an index names, following nested indexes (keeping those for this
/// machine's platform, or without one).
fn collect_manifests(dir: &Path, entries: &[Descriptor], out: &mut Vec<Descriptor>, depth: u32) -> Result<(), Error> {
    if depth > 4 {
        return Err(Error::invalid("the image archive nests indexes too deeply"));
    }
    for d in entries {
        match d.media_type() {
            MediaType::ImageIndex => {
                let rel = blob_name(d.digest())?;
                let path = verify(dir, &rel, d.digest(), Some(d.size()))?;
                let nested: ImageIndex = read_json(&path, &rel)?;
                let before = out.len();
                let ours = nested.manifests().iter().filter(|m| {
                    m.platform().as_ref().is_none_or(|p| {
                        p.os().to_string() == "linux" && p.architecture().to_string() == go_arch(std::env::consts::ARCH)
                    })
                });
                let ours: Vec<Descriptor> = ours.cloned().collect();
                collect_manifests(dir, &ours, out, depth + 1)?;
                // Names written on the outer entry belong to what it points at.
                for m in &mut out[before..] {
                    if m.annotations().is_none() {
                        m.set_annotations(d.annotations().clone());
                    }
                }
            }
            _ => out.push(d.clone()),
        }
    }
    Ok(())
}

fn go_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Plans the images of a classic `docker save` archive unpacked in `dir`; the manifests made
/// for them are written to `made`.
fn plan_docker(dir: &Path, made: &Path) -> Result<Vec<Planned>, Error> {
    let entries: Vec<DockerManifest> = read_json(&dir.join("manifest.json"), "manifest.json")?;
    let mut plans = Vec::new();
    for (n, entry) in entries.iter().enumerate() {
        let config_path = confine::beneath(dir, &entry.config, "manifest.json's Config")?;
        if !config_path.is_file() {
            return Err(Error::invalid(format!(
                "the image archive lacks {}, which manifest.json names: it is incomplete or truncated",
                entry.config
            )));
        }
        let config_digest = sha256_of(&config_path)?;
        check_named_digest(&entry.config, &config_digest)?;
        let config: ImageConfiguration = read_json(&config_path, &entry.config)?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != entry.layers.len() {
            return Err(Error::invalid(format!(
                "manifest.json lists {} layers for {} but its config {} diff ids",
                entry.layers.len(),
                entry.config,
                diff_ids.len()
            )));
        }
        let config_size = fs::metadata(&config_path).context(|| format!("reading {}", config_path.display()))?.len();
        let mut blobs = vec![(config_path, config_digest.clone())];
        let mut layers = Vec::new();
        let mut layer_descriptors = Vec::new();
        for (rel, diff_id) in entry.layers.iter().zip(diff_ids) {
            let path = confine::beneath(dir, rel, "manifest.json's layer")?;
            if !path.is_file() {
                return Err(Error::invalid(format!(
                    "the image archive lacks layer {rel}, which manifest.json names: it is incomplete or truncated"
                )));
            }
            let digest = sha256_of(&path)?;
            check_named_digest(rel, &digest)?;
            let mut magic = [0u8; 2];
            let gzipped =
                fs::File::open(&path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && magic == [0x1f, 0x8b];
            let media_type = if gzipped { MediaType::ImageLayerGzip } else { MediaType::ImageLayer };
            let size = fs::metadata(&path).context(|| format!("reading {}", path.display()))?.len();
            layer_descriptors.push(Descriptor::new(media_type.clone(), size, digest.clone()));
            blobs.push((path.clone(), digest));
            layers.push((diff_id.clone(), path, media_type, rel.clone()));
        }
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(MediaType::ImageConfig, config_size, config_digest))
            .layers(layer_descriptors)
            .build()
            .expect("a manifest with schema version, config and layers is complete");
        let data = serde_json::to_vec(&manifest).expect("manifests always serialize");
        let manifest_path = made.join(format!("manifest-{n}"));
        fs::write(&manifest_path, &data).context(|| format!("writing {}", manifest_path.display()))?;
        let digest = sha256_of(&manifest_path)?;
        blobs.push((manifest_path, digest.clone()));
        let names = entry.repo_tags.iter().flatten().map(|t| Reference::parse(t)).collect::<Result<Vec<_>, _>>()?;
        plans.push(Planned {
            manifest: Descriptor::new(MediaType::ImageManifest, data.len() as u64, digest),
            blobs,
            layers,
            names,
        });
    }
    Ok(plans)
}

/// A file named after a digest (`<hex>.json`, `blobs/sha256/<hex>`) must hold exactly that.
fn check_named_digest(rel: &str, actual: &Digest) -> Result<(), Error> {
    let file = Path::new(rel).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = file.strip_suffix(".json").unwrap_or(&file);
    if stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit()) && stem != actual.digest() {
        return Err(Error::invalid(format!(
            "blob {rel} in the image archive is damaged: its content is {actual}, not sha256:{stem}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store and snapshotter in a fresh temp dir, with a marker file next to them.
    struct Fixture {
        dir: tempfile::TempDir,
        store: ImageStore,
        snapshots: Snapshotter,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(&dir.path().join("images")).expect("store");
        let snapshots = Snapshotter::open(&dir.path().join("layers")).expect("snapshots");
        Fixture { dir, store, snapshots }
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    /// A config with no layers, as JSON: enough for a one-image archive.
    fn empty_config() -> Vec<u8> {
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec()
    }

    fn docker_archive(manifest: &serde_json::Value, files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        let manifest = serde_json::to_vec(manifest).expect("json");
        append(&mut tar, "manifest.json", manifest.len() as u64, &manifest[..]).expect("append");
        for (name, data) in files {
            append(&mut tar, name, data.len() as u64, *data).expect("append");
        }
        tar.into_inner().expect("tar")
    }

    #[test]
    fn docker_manifest_paths_never_leave_the_archive() {
        let f = fixture();
        // Host files an archive might name: a JSON file that reads as a config, and an empty
        // tar that is a valid layer.
        let config_marker = f.dir.path().join("important.json");
        fs::write(&config_marker, empty_config()).expect("marker");
        let layer_marker = f.dir.path().join("important.tar");
        fs::write(&layer_marker, [0u8; 1024]).expect("marker");
        let layer_diff_id = format!("sha256:{}", hex::encode(Sha256::digest([0u8; 1024])));
        let layer_config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{layer_diff_id}"]}}}}"#
        );
        let staging_depth = "../../../"; // ingest/stage-…/ → images/ingest → images → temp root
        type Files<'a> = Vec<(&'a str, &'a [u8])>;
        let cases: Vec<(serde_json::Value, Files)> = vec![
            (
                serde_json::json!([{ "Config": config_marker.display().to_string(), "RepoTags": ["evil:1"], "Layers": [] }]),
                vec![],
            ),
            (
                serde_json::json!([{ "Config": format!("{staging_depth}important.json"), "RepoTags": ["evil:2"], "Layers": [] }]),
                vec![],
            ),
            (
                serde_json::json!([{ "Config": "c.json", "RepoTags": ["evil:3"], "Layers": [layer_marker.display().to_string()] }]),
                vec![("c.json", layer_config.as_bytes())],
            ),
            (
                serde_json::json!([{ "Config": "c.json", "RepoTags": ["evil:4"], "Layers": [format!("{staging_depth}important.tar")] }]),
                vec![("c.json", layer_config.as_bytes())],
            ),
        ];
        for (manifest, files) in cases {
            let archive = docker_archive(&manifest, &files);
            let err = load(&f.store, &f.snapshots, &mut &archive[..]).expect_err("an escaping path must be refused");
            assert!(err.to_string().contains("refused"), "{err}");
            assert_eq!(fs::read(&config_marker).expect("the config marker stays"), empty_config(), "{manifest}");
            assert_eq!(fs::read(&layer_marker).expect("the layer marker stays"), [0u8; 1024], "{manifest}");
            assert!(entries(&f.dir.path().join("images/blobs/sha256")).is_empty(), "{manifest}");
            assert!(entries(&f.dir.path().join("images/ingest")).is_empty(), "{manifest}");
            assert!(f.store.list().expect("list").is_empty(), "{manifest}");
        }
    }

    #[test]
    fn oci_digests_make_no_path_but_a_sha256_one() {
        let f = fixture();
        let sha512 = format!("sha512:{}", "a".repeat(128));
        let other = "other:../../../../important.json";
        for digest in [sha512.as_str(), other] {
            let index = format!(
                r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{digest}","size":2}}]}}"#
            );
            let mut tar = tar::Builder::new(Vec::new());
            append(&mut tar, "index.json", index.len() as u64, index.as_bytes()).expect("append");
            let archive = tar.into_inner().expect("tar");
            let err = load(&f.store, &f.snapshots, &mut &archive[..]).expect_err(digest);
            let text = err.to_string();
            assert!(matches!(err, Error::InvalidArgument { .. }), "{digest}: {text}");
            assert!(text.contains("sha256") || text.contains("index.json"), "{digest}: {text}");
            assert!(entries(&f.dir.path().join("images/ingest")).is_empty());
        }
    }

    #[test]
    fn what_the_loader_makes_never_overwrites_an_archive_file() {
        // A classic archive whose layer file has the name the loader once gave the manifests it
        // makes: the layer must be stored as itself, and the image must be whole.
        let f = fixture();
        let mut layer = tar::Builder::new(Vec::new());
        append(&mut layer, "etc/hostname", 4, &b"box\n"[..]).expect("append");
        let layer = layer.into_inner().expect("tar");
        let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&layer)));
        let config =
            format!(r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#);
        for name in ["shoal-manifest-0", "manifest-0", "made/manifest-0"] {
            let manifest = serde_json::json!([{ "Config": "c.json", "RepoTags": ["clash:1"], "Layers": [name] }]);
            let archive = docker_archive(&manifest, &[("c.json", config.as_bytes()), (name, &layer[..])]);
            assert_eq!(load(&f.store, &f.snapshots, &mut &archive[..]).expect(name), ["clash:1"]);
            let image = f.store.resolve("clash:1").expect("resolve").expect("loaded");
            let stored = fs::read(f.store.blob_path(&image.manifest.layers()[0]).expect("path")).expect("layer blob");
            assert_eq!(stored, layer, "{name}");
            assert_eq!(f.store.list().expect("the store is whole").len(), 1);
        }
    }

    #[test]
    fn the_fuzz_seeds_load_or_are_refused_as_meant() {
        let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/image_archive");
        for (file, names) in [
            ("saved-tiny.tar", vec!["tiny:1"]),
            ("docker-classic.tar", vec!["seed:1"]),
            ("docker-classic.tar.gz", vec!["seed:1"]),
            ("oci-whiteouts.tar", vec!["seed/oci:2"]),
        ] {
            let f = fixture();
            let data = fs::read(seeds.join(file)).expect("a committed seed");
            assert_eq!(load(&f.store, &f.snapshots, &mut &data[..]).expect(file), names, "{file}");
        }
        let f = fixture();
        let data = fs::read(seeds.join("escaping-paths.tar")).expect("a committed seed");
        let err = load(&f.store, &f.snapshots, &mut &data[..]).expect_err("escaping paths");
        assert!(err.to_string().contains("refused"), "{err}");
    }

    #[test]
    fn files_named_by_digest_must_hold_it() {
        let digest = Digest::from_str(&format!("sha256:{}", "a".repeat(64))).expect("digest");
        let other = "b".repeat(64);
        assert!(check_named_digest(&format!("{}.json", "a".repeat(64)), &digest).is_ok());
        assert!(check_named_digest(&format!("blobs/sha256/{}", "a".repeat(64)), &digest).is_ok());
        assert!(check_named_digest("0123abcd/layer.tar", &digest).is_ok()); // a v1 id names nothing
        let err = check_named_digest(&format!("blobs/sha256/{other}"), &digest).expect_err("mismatch");
        assert!(err.to_string().contains(&other), "{err}");
    }

    #[test]
    fn outer_archive_stays_inside_and_must_be_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..9].copy_from_slice(b"../escape");
        header.set_size(1);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        tar.append(&header, &b"x"[..]).expect("append");
        let data = tar.into_inner().expect("tar");
        let store = ImageStore::open(&dir.path().join("images")).expect("store");
        let err = unpack_archive(&store, &mut &data[..], dir.path()).expect_err("escape");
        assert!(err.to_string().contains("refused"), "{err}");
        assert!(!dir.path().parent().expect("parent").join("escape").exists());

        assert!(unpack_archive(&store, &mut &b""[..], dir.path()).is_err());
        let mut tar = tar::Builder::new(Vec::new());
        append(&mut tar, "index.json", 4000, &[b'{'; 4000][..]).expect("append");
        let data = tar.into_inner().expect("tar");
        let err = unpack_archive(&store, &mut &data[..2000], dir.path()).expect_err("cut");
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}
