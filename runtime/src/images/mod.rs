//! Images on this node: the OCI image-layout store ([`store`]), reference parsing
//! ([`reference`]) and the ways images enter and leave the store ([`import`], [`archive`] for save and
//! load, [`commit`]; build and pull come later); [`changes`] is `--change` for import and commit;
//! [`space`] keeps what they stage from filling the disk.

pub(crate) mod archive;
pub(crate) mod changes;
pub(crate) mod commit;
pub(crate) mod import;
pub(crate) mod reference;
pub(crate) mod space;
pub(crate) mod store;

#[cfg(test)]
mod garbage_tests;

use serde::{Deserialize, Serialize};

/// What `image ls` shows about an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSummary {
    /// `sha256:…` digest of the image config (Docker's image id).
    pub id: String,
    /// The `name:tag` references pointing at the image, sorted; empty for a dangling image.
    pub references: Vec<String>,
    /// Total size of the image's layer blobs in bytes.
    pub size: u64,
    /// When the image was created, unix nanoseconds.
    pub created_at: i64,
    /// The image's labels (its config's `Labels`).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// What `image inspect` shows: the summary plus the config a container starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageDetails {
    /// `sha256:…` digest of the image config (Docker's image id).
    pub id: String,
    /// The `name:tag` references pointing at the image, sorted.
    pub references: Vec<String>,
    /// When the image was created, unix nanoseconds.
    pub created_at: i64,
    /// Total size of the image's layer blobs in bytes.
    pub size: u64,
    /// `KEY=value` environment entries.
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    pub entrypoint: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub labels: std::collections::BTreeMap<String, String>,
    /// `port/proto` entries (`80/tcp`).
    pub exposed_ports: Vec<String>,
    /// Paths the image declares as volumes.
    pub volumes: Vec<String>,
    /// The signal `stop` sends first, if the image chose one.
    pub stop_signal: String,
    /// Diff ids (digests of the uncompressed layer tars), bottom layer first.
    pub diff_ids: Vec<String>,
}

impl store::Image {
    pub(crate) fn details(&self) -> ImageDetails {
        let summary = self.summary();
        let config = self.config.config().clone().unwrap_or_default();
        ImageDetails {
            id: summary.id,
            references: summary.references,
            created_at: summary.created_at,
            size: summary.size,
            env: config.env().clone().unwrap_or_default(),
            cmd: config.cmd().clone().unwrap_or_default(),
            entrypoint: config.entrypoint().clone().unwrap_or_default(),
            working_dir: config.working_dir().clone().unwrap_or_default(),
            user: config.user().clone().unwrap_or_default(),
            labels: config.labels().clone().unwrap_or_default().into_iter().collect(),
            exposed_ports: config.exposed_ports().clone().unwrap_or_default(),
            volumes: config.volumes().clone().unwrap_or_default(),
            stop_signal: config.stop_signal().clone().unwrap_or_default(),
            diff_ids: self.config.rootfs().diff_ids().clone(),
        }
    }
}
