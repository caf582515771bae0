//! Local volumes as Docker's volume API shows them, and the body of
//! `POST /volumes/create` read back (only the local driver, without options).

use std::collections::BTreeMap;

use bollard_stubs::models as bollard;
use serde_json::Value;
use shoal_runtime::VolumeInfo;

use super::{read, time, SpecError};

/// The only volume driver.
pub const DRIVER: &str = "local";

/// A volume as `GET /volumes` and `GET /volumes/{name}` show it.
pub fn volume(v: &VolumeInfo) -> bollard::Volume {
    bollard::Volume {
        name: v.name.clone(),
        driver: DRIVER.into(),
        mountpoint: v.mountpoint.display().to_string(),
        created_at: Some(time(v.created_at.saturating_mul(1_000_000_000))),
        labels: v.labels.clone().into_iter().collect(),
        scope: Some(bollard::VolumeScopeEnum::LOCAL),
        options: Default::default(),
        ..Default::default()
    }
}

/// What `POST /volumes/create` asks for: a name (empty: an anonymous volume,
/// named by the runtime) and labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeCreate {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// Reads Docker's `VolumeCreateRequest`; an empty body makes an anonymous
/// volume. Another driver, or options for this one, are refused: the local
/// driver here takes none. The name is the runtime's to check.
pub fn parse_volume_create(v: &Value) -> Result<VolumeCreate, SpecError> {
    if v.is_null() {
        return Ok(VolumeCreate::default());
    }
    let r: bollard::VolumeCreateRequest = read(v, "VolumeCreateRequest")?;
    let driver = r.driver.unwrap_or_default();
    if !driver.is_empty() && driver != DRIVER {
        return Err(SpecError::sentence(
            "Driver",
            format!("volume driver \"{driver}\" is not available: the only driver is {DRIVER}"),
        ));
    }
    let options: BTreeMap<String, String> = r.driver_opts.unwrap_or_default().into_iter().collect();
    if !options.is_empty() {
        let keys: Vec<&str> = options.keys().map(String::as_str).collect();
        return Err(SpecError::sentence(
            "DriverOpts",
            format!(
                "volume driver options ({}) are not supported: the {DRIVER} driver here makes a plain directory",
                keys.join(", ")
            ),
        ));
    }
    Ok(VolumeCreate { name: r.name.unwrap_or_default(), labels: r.labels.unwrap_or_default().into_iter().collect() })
}

/// A volume create request as Docker's `VolumeCreateRequest` (what `shoal
/// volume create` sends).
pub fn volume_create_request(c: &VolumeCreate) -> bollard::VolumeCreateRequest {
    bollard::VolumeCreateRequest {
        name: Some(c.name.clone()),
        labels: Some(c.labels.clone().into_iter().collect()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn create_reads_what_the_docker_cli_sends() {
        // docker volume create --label a=b v2
        let asked =
            parse_volume_create(&json!({"Driver": "local", "Labels": {"a": "b"}, "Name": "v2"})).expect("reads");
        assert_eq!(asked, VolumeCreate { name: "v2".into(), labels: BTreeMap::from([("a".into(), "b".into())]) });
        assert_eq!(parse_volume_create(&super::super::json(&volume_create_request(&asked))), Ok(asked));
        assert_eq!(parse_volume_create(&Value::Null), Ok(VolumeCreate::default()));
    }

    #[test]
    fn create_refuses_other_drivers_and_options() {
        let cases = [
            (json!({"Driver": "nfs"}), "volume driver \"nfs\" is not available: the only driver is local"),
            (json!({"DriverOpts": {"type": "nfs", "o": "x"}}), "volume driver options (o, type) are not supported"),
            (json!({"Name": 1}), "invalid Name: "),
            (json!({"Labels": {"a": 1}}), "invalid Labels.a: "),
            (json!([]), "invalid VolumeCreateRequest: "),
        ];
        for (v, expected) in cases {
            let err = parse_volume_create(&v).expect_err(&v.to_string()).to_string();
            assert!(err.starts_with(expected), "{v}: {err}");
        }
    }
}
