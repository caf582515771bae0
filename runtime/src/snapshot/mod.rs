//! Root filesystems for containers: image layers unpacked once each ([`layer`]) and stacked
//! read-only under a per-container writable layer with overlayfs ([`overlay`]).
//!
//! Architecture invariant: layers are immutable once unpacked; only a container's `upper/`
//! changes, and only through its overlay mount.

pub(crate) mod layer;
pub(crate) mod overlay;

pub(crate) use overlay::Snapshotter;
