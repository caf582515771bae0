//! Docker's `filters` query parameter: JSON of `{"key": {"value": true}}`
//! (or the legacy `{"key": ["value"]}`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::ApiError;

/// Parsed filters: each key with its values.
#[derive(Debug, Default, Clone)]
pub struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parses the raw `filters` parameter; `accepted` are the keys the
    /// endpoint knows (others are a 400 naming them, as Docker does).
    pub fn parse(raw: Option<&str>, accepted: &[&str]) -> Result<Filters, ApiError> {
        let Some(raw) = raw.filter(|r| !r.is_empty()) else { return Ok(Filters::default()) };
        let v: Value =
            serde_json::from_str(raw).map_err(|e| ApiError::bad_request(format!("invalid filters parameter: {e}")))?;
        let Value::Object(m) = v else {
            return Err(ApiError::bad_request("invalid filters parameter: expected an object"));
        };
        let mut out = BTreeMap::new();
        for (k, v) in m {
            if !accepted.contains(&k.as_str()) {
                return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
            }
            let values: Vec<String> = match v {
                Value::Object(vals) => {
                    vals.into_iter().filter(|(_, b)| b.as_bool() == Some(true)).map(|(s, _)| s).collect()
                }
                Value::Array(vals) => vals.into_iter().filter_map(|s| s.as_str().map(String::from)).collect(),
                _ => return Err(ApiError::bad_request(format!("invalid filter '{k}': expected an object"))),
            };
            out.insert(k, values);
        }
        Ok(Filters(out))
    }

    /// The values given for `key` (empty: no filter on that key).
    pub fn get(&self, key: &str) -> &[String] {
        self.0.get(key).map(|v| v.as_slice()).unwrap_or(&[])
    }

    /// True when `key` is unfiltered or `pred` holds for one of its values.
    pub fn any(&self, key: &str, pred: impl Fn(&str) -> bool) -> bool {
        let values = self.get(key);
        values.is_empty() || values.iter().any(|v| pred(v))
    }

    /// Docker's label filter: every `key` or `key=value` given must match.
    pub fn labels_match<'a>(&self, labels: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.get("label").iter().all(|f| match f.split_once('=') {
            Some((k, v)) => labels(k) == Some(v),
            None => labels(f).is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms_and_matches_labels() {
        let f = Filters::parse(Some(r#"{"label":{"a=1":true,"b":true}}"#), &["label"]).unwrap();
        let labels = |k: &str| match k {
            "a" => Some("1"),
            "b" => Some("x"),
            _ => None,
        };
        assert!(f.labels_match(labels));
        let f = Filters::parse(Some(r#"{"label":["a=2"]}"#), &["label"]).unwrap();
        assert!(!f.labels_match(labels));
        assert!(Filters::parse(Some(r#"{"nope":{"x":true}}"#), &["label"]).is_err());
    }
}
