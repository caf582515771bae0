//! `api_bodies`: arbitrary bytes as the body of each API post that reads
//! Docker's objects (service create and update, node update, swarm update,
//! network create, secret and config create, container create, exec create
//! and start, volume create), read as the handlers read them. Invariants:
//! nothing panics, and a body that reads renders back to JSON text that reads
//! as the same value. A container spec that reads holds only mounts the
//! runtime accepts (named volumes by Docker's rule, absolute targets without
//! `..`), never two at one path.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde_json::Value;
use shoal::api::docker;

/// `object` as the API sends it (JSON text), read back as a body.
fn sent<T: Serialize>(object: &T) -> Value {
    let text = serde_json::to_vec(object).expect("rendering never fails");
    serde_json::from_slice(&text).expect("rendered JSON reads")
}

fuzz_target!(|body: &[u8]| {
    // The handlers refuse a body that is not JSON before reading anything.
    let Ok(v) = serde_json::from_slice::<Value>(body) else { return };

    if let Ok(spec) = docker::parse_service_spec(&v) {
        let again = docker::parse_service_spec(&sent(&docker::service_spec(&spec)));
        assert_eq!(again.as_ref(), Ok(&spec), "a service spec read from {v} does not read back");
    }
    if let Ok(spec) = docker::parse_node_spec(&v) {
        let again = docker::parse_node_spec(&sent(&docker::node_spec(&spec)));
        assert_eq!(again.as_ref(), Ok(&spec), "a node spec read from {v} does not read back");
    }
    if let Ok(spec) = docker::parse_swarm_spec(&v) {
        let again = docker::parse_swarm_spec(&sent(&docker::swarm_spec(&spec)));
        assert_eq!(again.as_ref(), Ok(&spec), "a swarm spec read from {v} does not read back");
    }
    if let Ok(spec) = docker::parse_network_create(&v) {
        let again = docker::parse_network_create(&sent(&docker::network_spec(&spec)));
        assert_eq!(again.as_ref(), Ok(&spec), "a network spec read from {v} does not read back");
    }
    if let Ok(spec) = docker::parse_file_object_spec(&v) {
        let annotations = Some(shoal_proto::Annotations { name: spec.name.clone(), labels: spec.labels.clone() });
        let data = spec.data.clone().unwrap_or_default();
        let again = docker::parse_file_object_spec(&sent(&docker::file_object_spec(&annotations, &data)));
        // A rendered spec always carries its data; absent data reads as none
        // to create with, which is what it renders.
        let expected = docker::FileObjectSpec { data: Some(data), ..spec };
        assert_eq!(again.as_ref(), Ok(&expected), "a secret spec read from {v} does not read back");
    }
    if let Ok(body) = docker::read_container_create(&v) {
        let spec = docker::container_spec(body.clone(), "c");
        // The typed body is what a client sends (`shoal run` builds one): sent as JSON text,
        // it asks for the same container.
        let again = docker::read_container_create(&sent(&body)).and_then(|b| docker::container_spec(b, "c"));
        assert_eq!(again, spec, "a container create body read from {v} does not read back");
        if let Ok(spec) = spec {
            let mut targets: Vec<&str> = spec.mounts.iter().map(|m| m.target.trim_end_matches('/')).collect();
            targets.extend(spec.tmpfs.keys().map(|t| t.trim_end_matches('/')));
            let count = targets.len();
            targets.sort_unstable();
            targets.dedup();
            assert_eq!(targets.len(), count, "two mounts at one path from {v}");
            for m in &spec.mounts {
                assert!(m.check().is_ok(), "a mount the runtime refuses ({m:?}) read from {v}");
            }
        }
    }
    if let Ok(asked) = docker::parse_exec_create(&v) {
        let again = docker::parse_exec_create(&sent(&docker::exec_config(&asked)));
        assert_eq!(again.as_ref(), Ok(&asked), "an exec read from {v} does not read back");
    }
    let _ = docker::parse_exec_start(&v);
    if let Ok(asked) = docker::parse_volume_create(&v) {
        let again = docker::parse_volume_create(&sent(&docker::volume_create_request(&asked)));
        assert_eq!(again.as_ref(), Ok(&asked), "a volume create read from {v} does not read back");
    }
});
