//! `container commit`: a container's overlay upper directory becomes one more layer on top of
//! its image's layers. Overlayfs records deletions as 0/0 character devices and replaced
//! directories as opaque ones; the layer carries them as OCI whiteouts (`.wh.<name>`,
//! `.wh..wh..opq`), which the snapshotter turns back into overlayfs form when it unpacks.

use std::{path::Path, path::PathBuf};

use oci_spec::image::{HistoryBuilder, ImageManifestBuilder, MediaType};

use super::{
    changes::CommitChanges,
    import,
    reference::Reference,
    store::{Image, ImageStore},
};
use crate::{clock, error::Error, snapshot::Snapshotter};

/// Makes the image `parent` + the layer archived from `upper`, named `reference` (nameless
/// when `None`). `mount_points` are paths under `upper` the runtime created only to mount
/// over; they are left out when empty.
pub(crate) fn commit(
    store: &ImageStore,
    snapshots: &Snapshotter,
    parent: &Image,
    upper: &Path,
    mount_points: &[PathBuf],
    changes: &CommitChanges,
    reference: Option<&Reference>,
) -> Result<Image, Error> {
    let lease = store.lease()?;
    let writer = import::archive_overlay_upper(upper, store.blob_writer(&lease)?, mount_points)?;
    let layer = writer.commit(MediaType::ImageLayer)?;
    let diff_id = layer.digest().to_string();
    snapshots.ensure_layer(&diff_id, &store.blob_path(&layer)?, layer.media_type())?;

    let mut config = parent.config.clone();
    let created = clock::format_rfc3339(clock::now_ns());
    config.set_created(Some(created.clone()));
    let mut rootfs = config.rootfs().clone();
    let mut diff_ids = rootfs.diff_ids().clone();
    diff_ids.push(diff_id);
    rootfs.set_diff_ids(diff_ids);
    config.set_rootfs(rootfs);
    let mut history = config.history().clone().unwrap_or_default();
    history.push(
        HistoryBuilder::default()
            .created(created)
            .created_by("shoal container commit")
            .comment(changes.comment.clone().unwrap_or_default())
            .build()
            .expect("history entries have no required fields"),
    );
    config.set_history(Some(history));
    let mut process = config.config().clone().unwrap_or_default();
    changes.apply(&mut process);
    config.set_config(Some(process));
    let config = store.write_blob(
        &lease,
        MediaType::ImageConfig,
        &serde_json::to_vec(&config).expect("image configs always serialize"),
    )?;
    let mut layers = parent.manifest.layers().clone();
    layers.push(layer);
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(layers)
        .build()
        .expect("a manifest with schema version, config and layers is complete");
    let manifest = store.write_blob(
        &lease,
        MediaType::ImageManifest,
        &serde_json::to_vec(&manifest).expect("manifests always serialize"),
    )?;
    match reference {
        Some(reference) => store.tag(reference, &manifest)?,
        None => store.add_nameless(&manifest)?,
    }
    store
        .list()?
        .into_iter()
        .find(|i| i.descriptor.digest() == manifest.digest())
        .ok_or_else(|| Error::ImageNotFound { reference: manifest.digest().to_string() })
}
