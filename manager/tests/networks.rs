//! Networks through a real manager: its loops allocate, and an agent's
//! session (over mutual TLS, as a node dials it) receives its network map
//! and attaches a standalone container to an attachable network.

use std::time::Duration;

use shoal_manager::ca::RootCa;
use shoal_manager::{Bootstrap, Manager, ManagerConfig};
use shoal_proto::dispatcher_client::DispatcherClient;
use shoal_proto::{
    service_mode, Annotations, AttachNetworkRequest, ContainerSpec, DetachNetworkRequest, NetworkAttachmentConfig,
    NetworkMapUpdate, NetworkSpec, NodeDescription, NodeRole, ReplicatedService, ServiceMode, ServiceSpec,
    SessionMessage, SessionRequest, TaskSpec, TaskState,
};
use tonic::transport::{Channel, Endpoint};

const CONTAINER: &str = "4f1c0ffee4f1c0ffee4f1c0ffee4f1c0ffee4f1c0ffee4f1c0ffee4f1c0ffee0";

async fn start(dir: &std::path::Path) -> (Manager, DispatcherClient<Channel>) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let ca = RootCa::generate().expect("a root CA");
    let tls = ca.issue_own("node1", NodeRole::Manager, "c1", Duration::from_secs(3600)).expect("a node certificate");
    let mut config = ManagerConfig::with_defaults(
        dir.join("raft"),
        7,
        "node1".into(),
        format!("127.0.0.1:{port}").parse().expect("a socket address"),
        format!("127.0.0.1:{port}"),
        tls.clone(),
        ca,
    );
    config.election_timeout_min_ms = 150;
    config.election_timeout_max_ms = 300;
    config.heartbeat_ms = 50;
    let m = Manager::start(config).await.expect("starting the manager");
    m.bootstrap(Bootstrap { cluster_id: "c1".into(), ..Default::default() }).await.expect("bootstrapping");
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .expect("an endpoint")
        .tls_config(shoal_manager::ca::tls::client_config(&tls))
        .expect("TLS")
        .connect()
        .await
        .expect("dialing the manager");
    (m, DispatcherClient::new(channel))
}

fn network(name: &str, attachable: bool) -> NetworkSpec {
    NetworkSpec {
        annotations: Some(Annotations { name: name.into(), ..Default::default() }),
        attachable,
        ..Default::default()
    }
}

/// Reads session messages until one carries a network map that `done` accepts.
async fn map_until(
    stream: &mut tonic::Streaming<SessionMessage>,
    what: &str,
    mut done: impl FnMut(&NetworkMapUpdate) -> bool,
) -> NetworkMapUpdate {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let msg = stream.message().await.expect("the session").expect("a message");
            if let Some(map) = msg.network_map {
                if done(&map) {
                    return map;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no network map with {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_gets_its_network_map_and_attaches_containers() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (m, mut client) = start(dir.path()).await;
    let control = m.control();
    let tools = control.create_network(network("tools", true)).await.expect("an attachable network");
    control.create_network(network("private", false)).await.expect("a network");

    let session = SessionRequest {
        node_id: "node1".into(),
        description: Some(NodeDescription { hostname: "node1".into(), ..Default::default() }),
        addr: "127.0.0.1".into(),
    };
    let mut stream = client.session(session).await.expect("a session").into_inner();
    let first = stream.message().await.expect("the session").expect("a first message");
    let map = first.network_map.expect("the first message carries the map");
    assert!(map.full && map.networks.is_empty(), "a node with nothing on any network hears of none: {map:?}");

    // A service on `private`: its task gets an address, a node, and the node
    // the network with the task's endpoint and the service's virtual IP.
    let spec = ServiceSpec {
        annotations: Some(Annotations { name: "web".into(), ..Default::default() }),
        task: Some(TaskSpec {
            container: Some(ContainerSpec { image: "demo:1".into(), ..Default::default() }),
            networks: vec![NetworkAttachmentConfig { target: "private".into(), aliases: vec!["www".into()] }],
            ..Default::default()
        }),
        mode: Some(ServiceMode { mode: Some(service_mode::Mode::Replicated(ReplicatedService { replicas: 1 })) }),
        ..Default::default()
    };
    let web = control.create_service(spec).await.expect("a service");
    let map = map_until(&mut stream, "the service's endpoint", |m| !m.endpoints.is_empty()).await;
    assert!(!map.full, "an increment");
    assert_eq!(map.networks.iter().map(|n| n.name()).collect::<Vec<_>>(), ["private"]);
    assert!(map.networks[0].vni >= 4096);
    let endpoint = &map.endpoints[0];
    assert!(endpoint.address.starts_with("10.0.") && endpoint.address.ends_with("/24"), "{endpoint:?}");
    assert_eq!((endpoint.node_id.as_str(), endpoint.service_id.as_str()), ("node1", web.as_str()));
    assert_eq!(endpoint.aliases, ["www"]);
    let service = map.services.iter().find(|s| s.service_id == web).expect("the service's record");
    assert!(!service.virtual_ip.is_empty() && service.virtual_ip != endpoint.address, "{service:?}");
    let task = m.store().read().service_tasks(&web).next().cloned().expect("the task");
    assert_eq!(task.state(), TaskState::Assigned);

    // A standalone container on `tools`.
    let attach = |network: &str| AttachNetworkRequest {
        node_id: "node1".into(),
        container_id: CONTAINER.into(),
        container_name: "/tool".into(),
        network: network.into(),
        aliases: vec!["t".into()],
    };
    let attached = client.attach_network(attach("tools")).await.expect("attached").into_inner();
    let t = attached.attachment.expect("the attachment task");
    assert_eq!(t.state(), TaskState::Running);
    assert_eq!(t.networks[0].network_id, tools);
    let address = t.networks[0].addresses[0].clone();
    let net = attached.network.expect("the network");
    let subnet = net.allocated.as_ref().map(|a| a.subnet.clone()).unwrap_or_default();
    assert_eq!(
        address.rsplit_once('.').map(|(p, _)| p),
        subnet.rsplit_once('.').map(|(p, _)| p),
        "{address} in {subnet}"
    );
    let map =
        map_until(&mut stream, "the container's endpoint", |m| m.endpoints.iter().any(|e| e.name == "tool")).await;
    assert_eq!(map.networks.iter().map(|n| n.name()).collect::<Vec<_>>(), ["tools"], "only what changed");
    // Asking again gives the same place.
    let again = client.attach_network(attach("tools")).await.expect("attached again").into_inner();
    assert_eq!(again.attachment.map(|a| a.id), Some(t.id.clone()));
    // Not on a network that does not take standalone containers, nor with a bad ID.
    let refused = client.attach_network(attach("private")).await.expect_err("private is not attachable");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(refused.message().contains("network private is not attachable"), "{}", refused.message());
    let mut bad = attach("tools");
    bad.container_id = "../../etc".into();
    let refused = client.attach_network(bad).await.expect_err("a bad container ID");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    // The network cannot go while the container is on it.
    let err = control.remove_network("tools").await.expect_err("tools is in use");
    assert!(err.to_string().contains("in use by container tool"), "{err}");

    // Detached: the address is free, the node forgets the network, and it can go.
    let detach =
        DetachNetworkRequest { node_id: "node1".into(), container_id: CONTAINER.into(), network: String::new() };
    let removed = client.detach_network(detach).await.expect("detached").into_inner().removed;
    assert_eq!(removed, std::slice::from_ref(&t.id));
    let map = map_until(&mut stream, "the network's removal", |m| !m.removed_networks.is_empty()).await;
    assert_eq!(map.removed_networks, std::slice::from_ref(&tools));
    assert_eq!(map.removed_endpoints, [format!("{tools}/{}", t.id)]);
    control.remove_network("tools").await.expect("tools is free");
    m.shutdown().await;
}
