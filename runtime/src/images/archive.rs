//! `image save` and `image load`. A saved archive is an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/…`) that also carries Docker's `manifest.json`, so both
//! `docker load` and OCI tools read it. Loading accepts that, plain OCI layouts and classic
//! `docker save` archives (`manifest.json`, `<id>.json` configs, `<v1 id>/layer.tar`), gzipped
//! or not.
//!
//! Loading is all or nothing: the archive is unpacked into a staging directory under the store's
//! `ingest/`, every blob is checked against its digest and every layer against its diff id
//! (by unpacking it), and only then are blobs moved into the store and names written.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs,
    io::{self, BufRead, BufReader, Read, Write},
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
    store::{Image, ImageStore},
};
use crate::{
    error::{Error, IoContext},
    snapshot::Snapshotter,
};

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
                append(&mut tar, &blob_name(d.digest()), d.size(), file)?;
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
            config: blob_name(config.digest()),
            repo_tags: Some(names.clone()),
            layers: image.manifest.layers().iter().map(|l| blob_name(l.digest())).collect(),
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

fn blob_name(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.digest())
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
    let staging = store.staging_dir()?;
    let dir = staging.path();
    unpack_archive(input, dir)?;
    let plans = if dir.join("index.json").is_file() {
        plan_oci(dir)?
    } else if dir.join("manifest.json").is_file() {
        plan_docker(dir)?
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

/// Unpacks the (possibly gzipped) outer tar: regular files and directories only, nothing
/// outside `dir`.
fn unpack_archive(input: &mut dyn Read, dir: &Path) -> Result<(), Error> {
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
        let mut rel = PathBuf::new();
        for c in raw.components() {
            match c {
                Component::Normal(part) => rel.push(part),
                Component::CurDir => {}
                _ => {
                    return Err(Error::invalid(format!("the image archive entry {} leaves the archive", raw.display())))
                }
            }
        }
        if rel.as_os_str().is_empty() {
            continue;
        }
        let dest = dir.join(&rel);
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                fs::create_dir_all(&dest).context(|| format!("creating {}", dest.display()))?
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(parent) = dest.parent() {
                    fs::create_dir_all(parent).context(|| format!("creating {}", parent.display()))?;
                }
                let size = entry.header().size().map_err(damaged)?;
                let mut file = fs::File::create(&dest).context(|| format!("creating {}", dest.display()))?;
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
    let path = dir.join(rel);
    let mut file = fs::File::open(&path).map_err(|_| {
        Error::invalid(format!("the image archive lacks blob {rel} ({expected}): it is incomplete or truncated"))
    })?;
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
        let rel = blob_name(descriptor.digest());
        let manifest_path = verify(dir, &rel, descriptor.digest(), Some(descriptor.size()))?;
        let manifest: ImageManifest = read_json(&manifest_path, &rel)?;
        let config_rel = blob_name(manifest.config().digest());
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
            let layer_rel = blob_name(layer.digest());
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
                let rel = blob_name(d.digest());
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

fn plan_docker(dir: &Path) -> Result<Vec<Planned>, Error> {
    let entries: Vec<DockerManifest> = read_json(&dir.join("manifest.json"), "manifest.json")?;
    let mut plans = Vec::new();
    for (n, entry) in entries.iter().enumerate() {
        let config_path = dir.join(&entry.config);
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
            let path = dir.join(rel);
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
        let manifest_path = dir.join(format!("shoal-manifest-{n}"));
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
        let err = unpack_archive(&mut &data[..], dir.path()).expect_err("escape");
        assert!(err.to_string().contains("leaves the archive"), "{err}");
        assert!(!dir.path().parent().expect("parent").join("escape").exists());

        assert!(unpack_archive(&mut &b""[..], dir.path()).is_err());
        let mut tar = tar::Builder::new(Vec::new());
        append(&mut tar, "index.json", 4000, &[b'{'; 4000][..]).expect("append");
        let data = tar.into_inner().expect("tar");
        let err = unpack_archive(&mut &data[..2000], dir.path()).expect_err("cut");
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}
