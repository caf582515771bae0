//! Secrets and configs: rendered as Docker's `Secret` (never its data) and
//! `Config`, and their specs (`{Name, Labels, Data}`, the data in base64)
//! read back and rendered, for `POST /secrets/create` and `/configs/create`.

use std::collections::HashMap;

use base64::Engine;
use bollard_stubs::models as bollard;
use serde_json::Value;
use shoal_proto::{Annotations, Config, Secret};

use super::{err, labels, name, object_version, read, types, SpecError};

fn base64_encode(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A secret or config spec with its data, as `POST /secrets/create` takes it.
pub fn file_object_spec(a: &Option<Annotations>, data: &[u8]) -> types::SecretSpec {
    types::SecretSpec {
        spec: bollard::SecretSpec {
            name: Some(name(a)),
            labels: Some(labels(a)),
            data: Some(base64_encode(data)),
            ..Default::default()
        },
        driver: None,
        templating: None,
    }
}

/// A secret's or config's spec as posted: `Data` absent on label updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileObjectSpec {
    pub name: String,
    pub labels: HashMap<String, String>,
    pub data: Option<Vec<u8>>,
}

/// Reads `{Name, Labels, Data}` (Data in base64) of a secret or config.
pub fn parse_file_object_spec(v: &Value) -> Result<FileObjectSpec, SpecError> {
    let s: types::SecretSpec = read(v, "Spec")?;
    if s.driver.and_then(|d| d.name).is_some_and(|n| !n.is_empty()) {
        return err("Driver", "secret drivers are not supported: give the data");
    }
    if s.templating.and_then(|t| t.name).is_some_and(|n| !n.is_empty()) {
        return err("Templating", "templating is not supported");
    }
    let data = match s.spec.data {
        None => None,
        Some(text) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| SpecError::new("Data", format!("invalid base64: {e}")))?,
        ),
    };
    Ok(FileObjectSpec { name: s.spec.name.unwrap_or_default(), labels: s.spec.labels.unwrap_or_default(), data })
}

/// A secret as Docker shows it: never its data.
pub fn secret(s: &Secret) -> bollard::Secret {
    let (version, created, updated) = object_version(&s.meta);
    let spec = s.spec.clone().unwrap_or_default();
    bollard::Secret {
        id: Some(s.id.clone()),
        version: Some(version),
        created_at: Some(created),
        updated_at: Some(updated),
        spec: Some(bollard::SecretSpec {
            name: Some(s.name().to_string()),
            labels: Some(labels(&spec.annotations)),
            ..Default::default()
        }),
    }
}

/// A config as Docker shows it, data included.
pub fn config(c: &Config) -> bollard::Config {
    let (version, created, updated) = object_version(&c.meta);
    let spec = c.spec.clone().unwrap_or_default();
    bollard::Config {
        id: Some(c.id.clone()),
        version: Some(version),
        created_at: Some(created),
        updated_at: Some(updated),
        spec: Some(bollard::ConfigSpec {
            name: Some(c.name().to_string()),
            labels: Some(labels(&spec.annotations)),
            data: Some(base64_encode(&spec.data)),
            templating: None,
        }),
    }
}
