//! The manager's state lives in raft on disk: it survives a restart, with
//! and without a snapshot, and stale writes are refused.

use std::time::Duration;

use shoal_manager::ca::RootCa;
use shoal_manager::control::ControlError;
use shoal_manager::{Bootstrap, Manager, ManagerConfig};
use shoal_proto::{
    service_mode, Annotations, ContainerSpec, NodeRole, ReplicatedService, ServiceMode, ServiceSpec, TaskSpec,
};

fn config(dir: &std::path::Path, snapshot_interval: u64) -> ManagerConfig {
    let ca = RootCa::generate().expect("a root CA");
    let tls = ca.issue_own("node1", NodeRole::Manager, "c1", Duration::from_secs(3600)).expect("a node certificate");
    let mut c = ManagerConfig::with_defaults(
        dir.join("raft"),
        7,
        "node1".into(),
        "127.0.0.1:0".parse().expect("a socket address"),
        "127.0.0.1:1".into(),
        tls,
        ca,
    );
    c.snapshot_interval = snapshot_interval;
    c.election_timeout_min_ms = 150;
    c.election_timeout_max_ms = 300;
    c.heartbeat_ms = 50;
    c
}

fn spec(name: &str, replicas: u64) -> ServiceSpec {
    ServiceSpec {
        annotations: Some(Annotations { name: name.into(), ..Default::default() }),
        task: Some(TaskSpec {
            container: Some(ContainerSpec { image: "demo:1".into(), ..Default::default() }),
            ..Default::default()
        }),
        mode: Some(ServiceMode { mode: Some(service_mode::Mode::Replicated(ReplicatedService { replicas })) }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_restarts_and_snapshots() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let m = Manager::start(config(dir.path(), 20)).await.expect("starting the manager");
    m.bootstrap(Bootstrap { cluster_id: "c1".into(), ..Default::default() })
        .await
        .expect("bootstrapping a one-manager cluster");
    let control = m.control();
    // A secret: in the log and the snapshot, sealed on disk.
    let marker = b"plaintext-marker-4711".to_vec();
    let secret = control
        .create_file_object::<shoal_proto::Secret>("pw".into(), Default::default(), marker.clone())
        .await
        .expect("creating a secret");
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(control.create_service(spec(&format!("svc{i}"), 0)).await.expect("creating a service"));
    }
    // A stale version is refused and changes nothing.
    let version = m.store().read().services[&ids[0]].version();
    let err = control.update_service(&ids[0], version - 1, spec("svc0", 2)).await.unwrap_err();
    assert!(matches!(err, ControlError::Conflict(_)), "{err}");
    control.update_service(&ids[0], version, spec("svc0", 2)).await.expect("an update at the current version");
    assert!(m.snapshot_index().is_some(), "30 writes with a snapshot every 20 entries took no snapshot");
    m.shutdown().await;
    drop(m);
    let mut files = vec![dir.path().to_path_buf()];
    let mut read = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).expect("a state dir").map(|e| e.expect("an entry").path()));
            continue;
        }
        let bytes = std::fs::read(&path).expect("a state file");
        assert!(!bytes.windows(marker.len()).any(|w| w == marker), "the secret is in plain text in {}", path.display());
        read += bytes.len();
    }
    assert!(read > 0, "no state files were read");

    // The restarted manager elects itself and has every object back.
    let m = Manager::start(config(dir.path(), 20)).await.expect("restarting the manager");
    m.wait_for_leader(Duration::from_secs(10)).await.expect("a leader after the restart");
    {
        let state = m.store().read();
        assert_eq!(state.services.len(), 30);
        assert_eq!(state.services[&ids[0]].replicas(), Some(2));
        assert!(state.nodes.contains_key("node1"));
        assert!(state.cluster().is_some());
        let data = state.secrets[&secret].spec.as_ref().map(|s| s.data.clone());
        assert_eq!(data, Some(marker), "the secret's data after the restart");
    }
    // And it keeps accepting writes.
    m.control().remove_service(&ids[1]).await.expect("a write after the restart");
    assert_eq!(m.store().read().services.len(), 29);
    m.shutdown().await;
}

/// Writes made at the same time share raft entries (group commit), yet each
/// keeps its own outcome: of two creates of one name exactly one wins, the
/// others all land, and all of it survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_entries_but_keep_their_own_outcome() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let m = std::sync::Arc::new(Manager::start(config(dir.path(), 1000)).await.expect("starting the manager"));
    m.bootstrap(Bootstrap { cluster_id: "c1".into(), ..Default::default() })
        .await
        .expect("bootstrapping a one-manager cluster");
    let before = m.store().applied_index();
    // 100 unique names, and 50 names asked for twice.
    let names: Vec<String> = (0..100)
        .map(|i| format!("unique{i}"))
        .chain((0..50).flat_map(|i| [format!("twice{i}"), format!("twice{i}")]))
        .collect();
    let writes: Vec<_> = names
        .iter()
        .map(|name| {
            let m = m.clone();
            let name = name.clone();
            tokio::spawn(async move { (name.clone(), m.control().create_service(spec(&name, 0)).await) })
        })
        .collect();
    let mut won = std::collections::HashMap::<String, usize>::new();
    for w in writes {
        let (name, result) = w.await.expect("a write task");
        match result {
            Ok(_) => *won.entry(name).or_default() += 1,
            Err(ControlError::Conflict(msg)) if name.starts_with("twice") => {
                assert!(msg.contains("already exists"), "{name}: {msg}");
            }
            Err(e) => panic!("creating {name}: {e}"),
        }
    }
    assert_eq!(won.len(), 150, "every name is created once: {won:?}");
    assert!(won.values().all(|n| *n == 1), "a name was created twice: {won:?}");
    let entries = m.store().applied_index() - before;
    assert!(entries < 200, "200 concurrent writes took {entries} raft entries: none were grouped");
    m.shutdown().await;
    drop(m);

    let m = Manager::start(config(dir.path(), 1000)).await.expect("restarting the manager");
    m.wait_for_leader(Duration::from_secs(10)).await.expect("a leader after the restart");
    {
        let state = m.store().read();
        assert_eq!(state.services.len(), 150);
        for name in won.keys() {
            assert!(state.service_named(name).is_some(), "{name} is gone after the restart");
        }
    }
    m.shutdown().await;
}
