//! Images on this node: the OCI image-layout store ([`store`]), reference parsing
//! ([`reference`]) and the ways images enter the store ([`import`]; load, build and pull come
//! later).

pub(crate) mod import;
pub(crate) mod reference;
pub(crate) mod store;

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
}
