//! `--change` instructions (one per line). Invariants: parsing never panics; changes that
//! parse apply to an image config, which then carries them (every ENV entry and label), and
//! applying them again changes nothing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_runtime::{fuzzing::apply_changes, CommitChanges};

fuzz_target!(|text: &str| {
    let lines: Vec<String> = text.lines().map(String::from).collect();
    let Ok(changes) = CommitChanges::parse(&lines) else { return };
    let base = r#"{"Env":["PATH=/bin","KEEP=1"],"Labels":{"a":"b"},"ExposedPorts":{"22/tcp":{}}}"#;
    let once = apply_changes(&changes, base).expect("a config with changes applied serializes");
    let twice = apply_changes(&changes, &once).expect("and reads back");
    // As values: labels are a map, serialized in no particular order.
    let config: serde_json::Value = serde_json::from_str(&once).expect("JSON");
    let again: serde_json::Value = serde_json::from_str(&twice).expect("JSON");
    assert_eq!(config, again, "applying the changes again changed the config");
    for entry in &changes.env {
        let env = config["Env"].as_array().expect("an Env list");
        assert!(env.iter().any(|e| e.as_str() == Some(entry.as_str())), "ENV {entry} is missing: {once}");
    }
    for (key, value) in &changes.labels {
        assert_eq!(config["Labels"][key].as_str(), Some(value.as_str()), "LABEL {key} is missing: {once}");
    }
});
