//! Entry points for the fuzz targets in `runtime/fuzz/`: the parsers and unpackers that take
//! untrusted bytes, reached as the runtime reaches them, without a whole [`crate::Runtime`]
//! (no cgroups, no containers). Hidden from the documentation and not part of the runtime's
//! API: it changes with the internals it exposes.

use std::path::Path;

use crate::{
    error::Error,
    images::{archive, changes::CommitChanges, reference::Reference, store::ImageStore},
    snapshot::{layer, Snapshotter},
};

/// An image store and layer store under one directory, as the runtime keeps them.
pub struct Store {
    images: ImageStore,
    snapshots: Snapshotter,
}

impl Store {
    /// Opens (creating) `root/images` and `root/layers`.
    pub fn open(root: &Path) -> Result<Store, Error> {
        Ok(Store {
            images: ImageStore::open(&root.join("images"))?,
            snapshots: Snapshotter::open(&root.join("layers"))?,
        })
    }

    /// Loads an image archive, as `image load` does (without the sweep that follows a failed
    /// load: the load alone must leave nothing).
    pub fn load(&self, archive: &[u8]) -> Result<Vec<String>, Error> {
        archive::load(&self.images, &self.snapshots, &mut &archive[..])
    }

    /// Saves the images named (names or ids) as one archive, as `image save` does.
    pub fn save(&self, names: &[&str]) -> Result<Vec<u8>, Error> {
        let mut images = Vec::new();
        for name in names {
            let image =
                self.images.resolve(name)?.ok_or_else(|| Error::ImageNotFound { reference: name.to_string() })?;
            let names = image.references.clone();
            images.push((image, names));
        }
        let mut out = Vec::new();
        archive::save(&self.images, &images, &mut out)?;
        Ok(out)
    }
}

/// Unpacks a layer tar into `dir`, as the snapshotter does.
pub fn unpack_layer(tar: &[u8], dir: &Path) -> std::io::Result<()> {
    layer::unpack(tar, dir)
}

/// Parses an image reference into its stored `name:tag` form.
pub fn reference(text: &str) -> Result<String, Error> {
    Ok(Reference::parse(text)?.to_string())
}

/// Applies `--change` instructions to an image's process config given as JSON (an OCI
/// `config`), as import and commit do; returns the changed config as JSON.
pub fn apply_changes(changes: &CommitChanges, config: &str) -> Result<String, serde_json::Error> {
    let mut config: oci_spec::image::Config = serde_json::from_str(config)?;
    changes.apply(&mut config);
    serde_json::to_string(&config)
}
