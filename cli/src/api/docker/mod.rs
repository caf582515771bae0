//! The object model rendered as the Docker Engine API's JSON, and read back
//! from it. The JSON's shapes are the Engine API's own types, as
//! `bollard-stubs` generates them from its specification (`types.rs` holds
//! shoal's additions and the specification's mistakes); this module converts
//! them to and from the model in `shoal_proto` and checks what the types
//! cannot say (port ranges, supported modes, counts that must not be negative).
//!
//! Besides the swarm's objects, the standalone ones are here too: containers
//! (a create body read into the runtime's spec, with the checks of what this
//! daemon can run), exec instances, images, volumes, and the daemon's version.
//!
//! Reading is strict: a field of the wrong type, or a value shoal cannot run,
//! is a [`SpecError`] naming the field, such as
//! `invalid TaskTemplate.ContainerSpec.Mounts[0].Type: …`. Unknown fields are
//! ignored, as Docker does. Rendering then reading back gives the same spec, so
//! a spec read with `GET /services/{id}` and posted to `/update` round-trips.
//!
//! Boundary: shapes and conversions only; the handlers beside this module
//! decide what to do with them.

mod container;
mod exec;
mod file_object;
mod image;
mod network;
mod service;
mod swarm;
mod system;
pub mod types;
mod volume;

use std::cell::RefCell;

use bollard_stubs::models as bollard;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

pub use container::{
    container_inspect, container_spec, container_summary, container_wait, parse_container_create, read_container_create,
};
pub use exec::{exec_config, exec_inspect, parse_exec_create, parse_exec_start, ExecCreate, ExecStart};
pub use file_object::{config, file_object_spec, parse_file_object_spec, secret, FileObjectSpec};
pub use image::{image_deleted, image_inspect, image_prune, image_summary};
pub use network::{network, network_spec, parse_network_create, swarm_network, with_node_view, VXLAN_ID_OPTION};
pub use service::{parse_service_spec, service, service_spec, task, ServiceCounts};
pub use swarm::{cluster, cluster_info, node, node_spec, parse_node_spec, parse_swarm_spec, swarm_spec};
pub use system::{container_counts, version};
pub use volume::{parse_volume_create, volume, volume_create_request, VolumeCreate, DRIVER as VOLUME_DRIVER};

/// RFC 3339 with nanoseconds, UTC, as Go's `time.Time` marshals.
pub fn time(ns: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ns as i128)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".into())
}

/// Docker's `units.HumanDuration`: "5 seconds", "About a minute", "2 hours".
pub fn human_duration(ns: i64) -> String {
    let secs = ns / 1_000_000_000;
    if secs < 1 {
        return "Less than a second".into();
    }
    if secs == 1 {
        return "1 second".into();
    }
    if secs < 60 {
        return format!("{secs} seconds");
    }
    let mins = secs / 60;
    if mins == 1 {
        return "About a minute".into();
    }
    if mins < 60 {
        return format!("{mins} minutes");
    }
    let hours = (secs as f64 / 3600.0).round() as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", hours / 24 / 365)
}

/// The JSON of a rendered object, its object keys sorted (as Go sorts a
/// map's), so that the same object always reads the same.
pub fn json<T: Serialize>(object: &T) -> Value {
    serde_json::to_value(object).expect("the API's types have string keys and no fallible serializers")
}

/// Why a posted object could not be read: the field, as a path such as
/// `EndpointSpec.Ports[0].TargetPort` (or the object's name when the object
/// itself is wrong), and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub field: String,
    pub message: String,
    /// The error is about the whole object, not one of its fields.
    whole: bool,
    /// `message` is a whole sentence that names the field itself, in the
    /// words Docker answers with (`Duplicate mount point: /data`).
    sentence: bool,
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.sentence {
            f.write_str(&self.message)
        } else {
            write!(f, "invalid {}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for SpecError {}

impl SpecError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> SpecError {
        SpecError { field: field.into(), message: message.into(), whole: false, sentence: false }
    }

    /// An error about `field` said by `sentence` alone.
    fn sentence(field: impl Into<String>, sentence: impl Into<String>) -> SpecError {
        SpecError { sentence: true, ..SpecError::new(field, sentence) }
    }

    /// A runtime's refusal of what `field` holds, in the runtime's words.
    fn refused(field: impl Into<String>, e: shoal_runtime::Error) -> SpecError {
        SpecError::sentence(field, e.report())
    }

    fn whole(what: &str, message: impl Into<String>) -> SpecError {
        SpecError { whole: true, ..SpecError::new(what, message) }
    }

    /// The same error, for an object read as a part (`outer`, such as
    /// `Services[2]`) of a larger one.
    pub fn within(self, outer: &str) -> SpecError {
        let field = if self.whole { outer.to_string() } else { join(outer, &self.field) };
        SpecError { field, whole: false, ..self }
    }
}

fn err<T>(field: impl Into<String>, message: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError::new(field, message))
}

/// A path in a JSON object: `outer` then `inner`, which may be an index.
fn join(outer: &str, inner: &str) -> String {
    match (outer, inner) {
        ("." | "", _) => inner.to_string(),
        (_, "." | "") => outer.to_string(),
        _ if inner.starts_with('[') => format!("{outer}{inner}"),
        _ => format!("{outer}.{inner}"),
    }
}

thread_local! {
    /// Where in flattened structs the error being read happened, innermost
    /// first (see [`flattened`]).
    static FLATTENED_ERROR_PATH: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// `deserialize_with` for a `#[serde(flatten)]` field. serde reads a flattened
/// struct from a buffer of the fields its holder did not claim, out of sight
/// of the path tracker, which would name the holder for an error inside it;
/// so the flattened struct is read with a tracker of its own, whose path
/// [`read`] adds to the holder's.
fn flattened<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    let mut track = serde_path_to_error::Track::new();
    T::deserialize(serde_path_to_error::Deserializer::new(d, &mut track)).inspect_err(|_| {
        let inner = track.path().to_string();
        FLATTENED_ERROR_PATH.with_borrow_mut(|path| path.push(inner));
    })
}

/// Reads a `T` from a posted body; `what` names the body itself in errors.
fn read<T: DeserializeOwned>(v: &Value, what: &str) -> Result<T, SpecError> {
    if v.is_null() {
        return Err(SpecError::whole(what, "the request body is empty"));
    }
    FLATTENED_ERROR_PATH.with_borrow_mut(Vec::clear);
    serde_path_to_error::deserialize(v).map_err(|e| {
        let inner = FLATTENED_ERROR_PATH.with_borrow_mut(std::mem::take);
        let field = inner.iter().rev().fold(e.path().to_string(), |outer, i| join(&outer, i));
        match field.as_str() {
            "." => SpecError::whole(what, e.into_inner().to_string()),
            _ => SpecError::new(field, e.into_inner().to_string()),
        }
    })
}

fn object_version(m: &Option<shoal_proto::Meta>) -> (bollard::ObjectVersion, String, String) {
    let m = m.unwrap_or_default();
    (bollard::ObjectVersion { index: Some(m.version) }, time(m.created_at), time(m.updated_at))
}

fn name(a: &Option<shoal_proto::Annotations>) -> String {
    a.as_ref().map(|a| a.name.clone()).unwrap_or_default()
}

fn labels(a: &Option<shoal_proto::Annotations>) -> std::collections::HashMap<String, String> {
    a.as_ref().map(|a| a.labels.clone()).unwrap_or_default()
}

/// A non-empty string, as an optional field Docker leaves out when empty.
fn text(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// A non-zero number, as an optional field Docker leaves out when zero.
fn nonzero(n: i64) -> Option<i64> {
    (n != 0).then_some(n)
}

/// A count of the model (unsigned) as the specification's signed integer.
/// Counts are read through [`count_from`], so they fit; a larger one (only a
/// client's own model could hold it) is shown as the largest there is.
fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A count read from a signed field, which Docker's own type makes unsigned.
fn count_from(n: Option<i64>, field: &str) -> Result<Option<u64>, SpecError> {
    match n {
        Some(n) if n < 0 => err(field, "must not be negative"),
        other => Ok(other.map(|n| n as u64)),
    }
}

#[cfg(test)]
mod tests;
