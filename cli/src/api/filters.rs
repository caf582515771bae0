//! Docker's `filters` query parameter: JSON of `{"key": {"value": true}}`
//! (or the legacy `{"key": ["value"]}`). Anything else (a plain string, a value that is not
//! a boolean, a list item that is not a string) is a 400, as Docker's JSON decoding refuses
//! it, rather than read as "no filter".

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
            let wrong = |what: &str| {
                ApiError::bad_request(format!(
                    "invalid filter '{k}': {what}; give {{\"{k}\": {{\"value\": true}}}} or {{\"{k}\": [\"value\"]}}"
                ))
            };
            let values: Vec<String> = match v {
                // A value mapped to false is given but switched off, as before.
                Value::Object(vals) => {
                    let mut values = Vec::new();
                    for (s, b) in vals {
                        match b {
                            Value::Bool(true) => values.push(s),
                            Value::Bool(false) => {}
                            _ => return Err(wrong(&format!("the value \"{s}\" maps to {b}, not to true or false"))),
                        }
                    }
                    values
                }
                Value::Array(vals) => {
                    let mut values = Vec::new();
                    for s in vals {
                        match s {
                            Value::String(s) => values.push(s),
                            other => return Err(wrong(&format!("{other} is not a string"))),
                        }
                    }
                    values
                }
                other => return Err(wrong(&format!("{other} is neither an object nor a list"))),
            };
            out.insert(k, values);
        }
        Ok(Filters(out))
    }

    /// Whether `key` was given at all (perhaps with no value switched on).
    pub fn contains(&self, key: &str) -> bool {
        self.0.contains_key(key)
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

    #[test]
    fn wrong_types_are_refused_not_ignored() {
        for raw in [
            r#"{"dangling":"true"}"#,
            r#"{"dangling":true}"#,
            r#"{"dangling":{"true":"yes"}}"#,
            r#"{"dangling":{"true":1}}"#,
            r#"{"dangling":[true]}"#,
            r#"{"dangling":null}"#,
        ] {
            let err = Filters::parse(Some(raw), &["dangling"]).expect_err(raw);
            assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST, "{raw}");
            assert!(err.message.contains("dangling"), "{raw}: {}", err.message);
        }
        let f = Filters::parse(Some(r#"{"dangling":{"true":false}}"#), &["dangling"]).expect("a switched-off value");
        assert!(f.contains("dangling") && f.get("dangling").is_empty());
    }
}
