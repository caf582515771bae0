//! `/volumes`: list, create, inspect, remove and prune local volumes, shaped as Docker's.
//!
//! A volume name in a path or a body is checked by the runtime (Docker's rule, then kept under
//! the volumes directory): a name no volume can have is a 400 "invalid volume name", for a
//! lookup too, never a 404 or a 204.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bollard_stubs::models as bollard;
use serde::Deserialize;
use serde_json::Value;

use super::containers::blocking;
use super::{docker, ApiError, ApiResult, Filters};
use crate::daemon::Daemon;

#[derive(Deserialize)]
pub struct ListQuery {
    filters: Option<String>,
}

/// A boolean filter value as Docker takes it: `true`/`1` or `false`/`0`, anything else a 400.
fn filter_bool(filters: &Filters, key: &str) -> ApiResult<Option<bool>> {
    let mut out = None;
    for value in filters.get(key) {
        let b = match value.as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            other => {
                return Err(ApiError::bad_request(format!("invalid filter '{key}={other}': use true, false, 1 or 0")))
            }
        };
        // As Docker, true wins when both are given.
        out = Some(out.unwrap_or(false) || b);
    }
    Ok(out)
}

/// Docker's `Match` for a filter's values: a value equal to `text`, or a regular expression
/// found in it (`name=db` matches `app_db_1`). A value that is no regular expression is a 400.
struct Patterns(Vec<(String, regex::Regex)>);

impl Patterns {
    fn new(filters: &Filters, key: &str) -> ApiResult<Patterns> {
        filters
            .get(key)
            .iter()
            .map(|value| {
                // Bounded: a hostile pattern cannot make the daemon build a huge automaton.
                let re = regex::RegexBuilder::new(value).size_limit(1 << 20).build().map_err(|e| {
                    ApiError::bad_request(format!("invalid filter '{key}={value}': not a regular expression: {e}"))
                })?;
                Ok((value.clone(), re))
            })
            .collect::<ApiResult<_>>()
            .map(Patterns)
    }

    /// True when there is no such filter or one of its values matches.
    fn matches(&self, text: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|(value, re)| value == text || re.is_match(text))
    }
}

/// Docker's `label!` filter: no `key` or `key=value` given may match.
fn labels_exclude(filters: &Filters, labels: &BTreeMap<String, String>) -> bool {
    filters.get("label!").iter().all(|f| match f.split_once('=') {
        Some((k, v)) => labels.get(k).map(String::as_str) != Some(v),
        None => !labels.contains_key(f.as_str()),
    })
}

/// `GET /volumes[?filters=…]`: Docker's `dangling` (true/false/1/0), `driver`, `label`
/// (`key` or `key=value`, all must match) and `name` filters; any other filter is a 400.
pub async fn list(State(daemon): State<Arc<Daemon>>, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    let filters = Filters::parse(q.filters.as_deref(), &["dangling", "driver", "label", "name"])?;
    let dangling = filter_bool(&filters, "dangling")?;
    let (names, drivers) = (Patterns::new(&filters, "name")?, Patterns::new(&filters, "driver")?);
    let (volumes, in_use) = blocking(&daemon.runtime, move |rt| {
        let in_use = if dangling.is_some() { rt.volumes_in_use()? } else { BTreeSet::new() };
        Ok((rt.list_volumes()?, in_use))
    })
    .await?;
    let listed = volumes
        .iter()
        .filter(|v| dangling.is_none_or(|d| d != in_use.contains(&v.name)))
        .filter(|v| names.matches(&v.name) && drivers.matches(docker::VOLUME_DRIVER))
        .filter(|v| filters.labels_match(|k| v.labels.get(k).map(String::as_str)))
        .map(docker::volume)
        .collect();
    Ok(Json(docker::json(&bollard::VolumeListResponse { volumes: Some(listed), warnings: Some(Vec::new()) })))
}

/// `POST /volumes/create` `{"Name": …, "Driver": "local", "Labels": {…}}` (no name: an
/// anonymous volume). Driver options are refused: the local driver here takes none.
pub async fn create(State(daemon): State<Arc<Daemon>>, body: axum::body::Bytes) -> ApiResult<Response> {
    let v: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?
    };
    let asked = docker::parse_volume_create(&v).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let volume = blocking(&daemon.runtime, move |rt| rt.create_volume(&asked.name, &asked.labels)).await?;
    Ok((StatusCode::CREATED, Json(docker::json(&docker::volume(&volume)))).into_response())
}

/// `GET /volumes/{name}`.
pub async fn inspect(State(daemon): State<Arc<Daemon>>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let volume = blocking(&daemon.runtime, move |rt| rt.volume(&name)).await?;
    Ok(Json(docker::json(&docker::volume(&volume))))
}

#[derive(Deserialize)]
pub struct RemoveQuery {
    force: Option<String>,
}

/// `DELETE /volumes/{name}[?force=1]`: refused (409) while a container uses it, unless forced.
pub async fn remove(
    State(daemon): State<Arc<Daemon>>,
    Path(name): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> ApiResult<StatusCode> {
    let force = matches!(q.force.as_deref(), Some("1" | "true" | "True"));
    blocking(&daemon.runtime, move |rt| rt.remove_volume(&name, force)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct PruneQuery {
    filters: Option<String>,
}

/// `POST /volumes/prune[?filters=…]`: removes the volumes no container uses; as Docker (API
/// 1.42+), only anonymous ones unless `all` (true/false/1/0). `label` and `label!` narrow
/// what is removed; any other filter is a 400.
pub async fn prune(State(daemon): State<Arc<Daemon>>, Query(q): Query<PruneQuery>) -> ApiResult<Json<Value>> {
    let filters = Filters::parse(q.filters.as_deref(), &["label", "label!", "all"])?;
    let all = filter_bool(&filters, "all")?.unwrap_or(false);
    let removed = blocking(&daemon.runtime, move |rt| {
        rt.prune_volumes(all, |v| {
            filters.labels_match(|k| v.labels.get(k).map(String::as_str)) && labels_exclude(&filters, &v.labels)
        })
    })
    .await?;
    let pruned = bollard::VolumePruneResponse { volumes_deleted: Some(removed), space_reclaimed: Some(0) };
    Ok(Json(docker::json(&pruned)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filters(raw: &str, accepted: &[&str]) -> Filters {
        Filters::parse(Some(raw), accepted).expect("valid filters")
    }

    #[test]
    fn boolean_filters_take_only_docker_values() {
        assert_eq!(
            filter_bool(&filters(r#"{"dangling":{"true":true}}"#, &["dangling"]), "dangling").ok(),
            Some(Some(true))
        );
        assert_eq!(filter_bool(&filters(r#"{"dangling":["0"]}"#, &["dangling"]), "dangling").ok(), Some(Some(false)));
        assert_eq!(filter_bool(&filters("{}", &["dangling"]), "dangling").ok(), Some(None));
        for bad in ["yes", "TRUE", "", "2"] {
            let raw = format!(r#"{{"dangling":["{bad}"]}}"#);
            let err = filter_bool(&filters(&raw, &["dangling"]), "dangling").expect_err(bad);
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn name_filters_match_as_docker_does() {
        let p = Patterns::new(&filters(r#"{"name":{"db":true}}"#, &["name"]), "name").expect("valid");
        assert!(p.matches("app_db_1") && p.matches("db") && !p.matches("web"));
        let p = Patterns::new(&filters(r#"{"name":{"^db$":true}}"#, &["name"]), "name").expect("valid");
        assert!(p.matches("db") && !p.matches("app_db"));
        assert!(Patterns::new(&filters(r#"{"name":{"(":true}}"#, &["name"]), "name").is_err());
        assert!(Patterns::new(&filters("{}", &["name"]), "name").expect("none").matches("anything"));
    }

    #[test]
    fn negated_labels_exclude() {
        let labels = BTreeMap::from([("keep".to_string(), "yes".to_string())]);
        assert!(!labels_exclude(&filters(r#"{"label!":{"keep":true}}"#, &["label!"]), &labels));
        assert!(!labels_exclude(&filters(r#"{"label!":{"keep=yes":true}}"#, &["label!"]), &labels));
        assert!(labels_exclude(&filters(r#"{"label!":{"keep=no":true}}"#, &["label!"]), &labels));
        assert!(labels_exclude(&filters("{}", &["label!"]), &labels));
    }
}
