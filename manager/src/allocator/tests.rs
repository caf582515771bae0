//! The allocator fed stores: what it gives, what it refuses to give twice,
//! and (a property test) that no sequence of deploys, scales, updates,
//! removals, failures and attachments ever leaves two live holders with one
//! address.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use proptest::prelude::*;
use shoal_proto::{
    service_mode, Annotations, ContainerSpec, EndpointMode, EndpointSpec, IpamConfig, Network, NetworkAttachmentConfig,
    NetworkAttachmentSpec, NetworkSpec, Node, NodeState, NodeStatus, ReplicatedService, Service, ServiceMode,
    ServiceSpec, StoreAction, StoreBatch, Task, TaskSpec, TaskState, STACK_NAMESPACE_LABEL,
};

use super::*;
use crate::control::propose::{create, delete};
use crate::ipam::AddressSpace;
use crate::store::{holds_addresses, StoreError};

fn network(id: &str, subnet: &str, attachable: bool) -> Network {
    let gateway = Ipv4Addr::from(crate::ipam::Subnet::parse(subnet).expect("a subnet").first_host()).to_string();
    Network {
        id: id.into(),
        spec: Some(NetworkSpec {
            annotations: Some(Annotations { name: format!("st_{id}"), ..Default::default() }),
            driver: "overlay".into(),
            attachable,
            ..Default::default()
        }),
        allocated: Some(IpamConfig { subnet: subnet.into(), gateway, ip_range: String::new() }),
        ..Default::default()
    }
}

fn service(id: &str, replicas: u64, networks: &[&str], dnsrr: bool) -> Service {
    let mut labels = std::collections::HashMap::new();
    labels.insert(STACK_NAMESPACE_LABEL.to_string(), "st".to_string());
    Service {
        id: id.into(),
        spec: Some(ServiceSpec {
            annotations: Some(Annotations { name: format!("st_{id}"), labels }),
            task: Some(TaskSpec {
                container: Some(ContainerSpec { image: "demo:1".into(), ..Default::default() }),
                networks: networks
                    .iter()
                    .map(|n| NetworkAttachmentConfig { target: n.to_string(), aliases: vec![format!("{id}-on-{n}")] })
                    .collect(),
                ..Default::default()
            }),
            mode: Some(ServiceMode { mode: Some(service_mode::Mode::Replicated(ReplicatedService { replicas })) }),
            endpoint: dnsrr.then(|| EndpointSpec { mode: EndpointMode::Dnsrr as i32, ports: vec![] }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(id: &str) -> Node {
    Node {
        id: id.into(),
        status: Some(NodeStatus {
            state: NodeState::Ready as i32,
            addr: format!("192.168.9.{}", id.len()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn attachment(id: &str, node: &str, network: &str) -> Task {
    let mut t = Task {
        id: id.into(),
        node_id: node.into(),
        annotations: Some(Annotations { name: format!("c-{id}"), ..Default::default() }),
        spec: Some(TaskSpec {
            networks: vec![NetworkAttachmentConfig { target: network.into(), aliases: vec![] }],
            ..Default::default()
        }),
        attachment: Some(NetworkAttachmentSpec { container_id: id.into(), container_name: format!("c-{id}") }),
        ..Default::default()
    };
    t.set_desired_state(TaskState::Running);
    t
}

/// A store the loops' passes are applied to, as the loops would.
struct World {
    store: Store,
    now: i64,
}

impl World {
    fn new(actions: Vec<StoreAction>) -> World {
        let world = World { store: Store::new(), now: 1 };
        world.apply(actions).expect("the first objects");
        world
    }

    fn apply(&self, actions: Vec<StoreAction>) -> Result<(), StoreError> {
        if actions.is_empty() {
            return Ok(());
        }
        let index = self.store.applied_index() + 1;
        self.store.apply(index, &StoreBatch { actions, timestamp: self.now })
    }

    /// Orchestrator, allocator, scheduler and reaper passes until none has
    /// anything left to do. The allocator's writes must always apply.
    fn converge(&mut self) {
        for _ in 0..20 {
            self.now += 1;
            let mut writes = 0;
            for step in 0..4 {
                let actions = {
                    let state = self.store.read();
                    match step {
                        0 => crate::orchestrator::replicated::reconcile(&state, self.now).0,
                        1 => allocate(&state, self.now),
                        2 => crate::scheduler::schedule(&state, self.now),
                        _ => crate::orchestrator::taskreaper::reap(&state),
                    }
                };
                writes += actions.len();
                if let Err(e) = self.apply(actions) {
                    assert!(step != 1, "the store refused the allocator's pass: {e}");
                }
            }
            if writes == 0 {
                return;
            }
        }
        panic!("the loops did not settle");
    }

    fn task_update(&self, id: &str, edit: impl FnOnce(&mut Task)) {
        let mut t = self.store.read().tasks[id].clone();
        edit(&mut t);
        self.apply(vec![update(t)]).expect("a task update");
    }

    fn service_update(&self, id: &str, edit: impl FnOnce(&mut Service)) {
        let mut s = self.store.read().services[id].clone();
        edit(&mut s);
        self.apply(vec![update(s)]).expect("a service update");
    }
}

/// Every address a live holder has, read from the objects themselves (not
/// from the store's index): (network, address) → holders.
fn holders(state: &State) -> BTreeMap<(String, u32), Vec<String>> {
    let mut out: BTreeMap<(String, u32), Vec<String>> = BTreeMap::new();
    for t in state.tasks.values().filter(|t| holds_addresses(t)) {
        for n in &t.networks {
            for a in &n.addresses {
                let (ip, _) = parse_cidr(a).expect("a stored address reads");
                out.entry((n.network_id.clone(), ip)).or_default().push(format!("task {}", t.id));
            }
        }
    }
    for s in state.services.values() {
        for v in s.endpoint.iter().flat_map(|e| &e.virtual_ips) {
            let (ip, _) = parse_cidr(&v.addr).expect("a stored VIP reads");
            out.entry((v.network_id.clone(), ip)).or_default().push(format!("service {}", s.id));
        }
    }
    out
}

/// The invariants of any store the loops leave behind.
fn check_invariants(state: &State) -> Result<(), TestCaseError> {
    let held = holders(state);
    for ((network_id, ip), who) in &held {
        prop_assert_eq!(who.len(), 1, "{} on {} is held by {:?}", Ipv4Addr::from(*ip), network_id, who);
        let network = &state.networks[network_id];
        let space = AddressSpace::of(network).expect("an address space");
        prop_assert!(
            space.assignable(*ip),
            "{} on {} is its own, its gateway's or its broadcast address",
            Ipv4Addr::from(*ip),
            network_id
        );
    }
    // The store's index says the same as the objects.
    for network_id in state.networks.keys() {
        let indexed: BTreeSet<u32> = state.held_addresses(network_id).map(|(ip, _)| ip).collect();
        let read: BTreeSet<u32> = held.keys().filter(|(n, _)| n == network_id).map(|(_, ip)| *ip).collect();
        prop_assert_eq!(indexed, read, "the index of network {} differs from the objects", network_id);
    }
    let vnis: Vec<u32> = state.networks.values().map(|n| n.vni).collect();
    let distinct: BTreeSet<u32> = vnis.iter().copied().collect();
    prop_assert_eq!(distinct.len(), vnis.len(), "VNIs {:?}", vnis);
    prop_assert!(vnis.iter().all(|v| VNI_RANGE.contains(v)), "VNIs {:?}", vnis);
    for t in state.tasks.values().filter(|t| holds_addresses(t) && t.state() >= TaskState::Pending) {
        let wanted: Vec<&str> = t.spec.iter().flat_map(|s| &s.networks).map(|n| n.target.as_str()).collect();
        let got: Vec<&str> = t.networks.iter().map(|n| n.network_id.as_str()).collect();
        prop_assert_eq!(wanted, got, "task {} left new without all its addresses", &t.id);
        prop_assert!(t.networks.iter().all(|n| n.addresses.len() == 1));
    }
    for s in state.services.values() {
        let vips: Vec<&str> = s.endpoint.iter().flat_map(|e| &e.virtual_ips).map(|v| v.network_id.as_str()).collect();
        if !vip_mode(s) {
            prop_assert!(vips.is_empty(), "dnsrr service {} has virtual IPs", &s.id);
        }
        let attached = attached_networks(s);
        prop_assert!(vips.iter().all(|v| attached.contains(v)), "service {} keeps a VIP off its networks", &s.id);
        let distinct: BTreeSet<&&str> = vips.iter().collect();
        prop_assert_eq!(distinct.len(), vips.len());
    }
    Ok(())
}

fn ips(state: &State, service: &str) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = state
        .service_tasks(service)
        .map(|t| t.networks.iter().map(|n| format!("{}={}", n.network_id, n.addresses.join(","))).collect())
        .collect();
    out.sort();
    out
}

#[test]
fn services_get_a_vip_per_network_and_tasks_an_address_on_each_in_order() {
    let mut w = World::new(vec![
        create(network("front", "10.0.1.0/24", false)),
        create(network("back", "10.0.2.0/24", false)),
        create(node("n1")),
        create(service("web", 2, &["front", "back"], false)),
        create(service("db", 1, &["back"], true)),
    ]);
    w.converge();
    let state = w.store.read();
    // Created together: in ID order.
    assert_eq!((state.networks["back"].vni, state.networks["front"].vni), (4096, 4097));
    let vips: Vec<(String, String)> = state.services["web"]
        .endpoint
        .iter()
        .flat_map(|e| &e.virtual_ips)
        .map(|v| (v.network_id.clone(), v.addr.clone()))
        .collect();
    assert_eq!(vips, [("front".into(), "10.0.1.2/24".into()), ("back".into(), "10.0.2.2/24".into())]);
    assert!(state.services["db"].endpoint.iter().all(|e| e.virtual_ips.is_empty()), "dnsrr has no VIP");
    // Tasks made in one pass get addresses in the order of their IDs, which are random.
    let on = |network: &str| -> Vec<String> {
        let mut v: Vec<String> = state
            .tasks
            .values()
            .flat_map(|t| &t.networks)
            .filter(|n| n.network_id == network)
            .flat_map(|n| n.addresses.clone())
            .collect();
        v.sort();
        v
    };
    assert_eq!(on("front"), ["10.0.1.3/24", "10.0.1.4/24"]);
    assert_eq!(on("back"), ["10.0.2.3/24", "10.0.2.4/24", "10.0.2.5/24"]);
    for shape in ips(&state, "web") {
        assert!(shape[0].starts_with("front=") && shape[1].starts_with("back="), "{shape:?}");
    }
    let web = state.service_tasks("web").next().expect("a web task");
    assert_eq!(web.networks[0].aliases, ["web-on-front", "web"], "the spec's aliases, then the compose name");
    assert!(state.tasks.values().all(|t| t.state() == TaskState::Assigned), "allocated, then scheduled");
    drop(state);
    check_invariants(&w.store.read()).expect("invariants");
}

#[test]
fn changing_a_services_networks_changes_its_vips_and_removing_it_frees_them() {
    let mut w = World::new(vec![
        create(network("a", "10.0.1.0/24", false)),
        create(network("b", "10.0.2.0/24", false)),
        create(node("n1")),
        create(service("web", 1, &["a"], false)),
    ]);
    w.converge();
    w.service_update("web", |s| *s = Service { spec: service("web", 1, &["b"], false).spec, ..s.clone() });
    w.converge();
    let state = w.store.read();
    let vips: Vec<&str> =
        state.services["web"].endpoint.iter().flat_map(|e| &e.virtual_ips).map(|v| v.network_id.as_str()).collect();
    assert_eq!(vips, ["b"]);
    assert_eq!(state.held_addresses("a").count(), 1, "only the old task, still running, holds an address on a");
    let live: Vec<&Task> = state.service_tasks("web").filter(|t| t.desired_state() == TaskState::Running).collect();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].networks[0].network_id, "b");
    drop(state);
    let s = w.store.read().services["web"].clone();
    w.apply(vec![delete(s)]).expect("removing the service");
    w.converge();
    // The service's VIP is free at once; its tasks' addresses once they stop.
    assert_eq!(w.store.read().held_addresses("b").filter(|(_, h)| matches!(h, Holder::Service(_))).count(), 0);
    check_invariants(&w.store.read()).expect("invariants");
}

fn publishing(mut s: Service, ports: &[(u32, u32)]) -> Service {
    let spec = s.spec.as_mut().expect("a spec");
    spec.endpoint.get_or_insert_default().ports = ports
        .iter()
        .map(|(published, target)| shoal_proto::PortConfig {
            published_port: *published,
            target_port: *target,
            ..Default::default()
        })
        .collect();
    s
}

#[test]
fn a_published_port_puts_the_service_and_every_node_on_the_ingress_network() {
    let mut w = World::new(vec![
        create(network("front", "10.0.1.0/24", false)),
        create(node("n1")),
        create(node("n22")),
        create(publishing(service("web", 2, &["front"], false), &[(0, 80), (8080, 81), (0, 82)])),
        create(publishing(service("api", 1, &[], false), &[(0, 90)])),
    ]);
    w.converge();
    let state = w.store.read();
    let ingress: Vec<&Network> =
        state.networks.values().filter(|n| n.spec.as_ref().is_some_and(|s| s.ingress)).collect();
    assert_eq!(ingress.len(), 1, "one ingress network");
    let ingress = ingress[0].clone();
    assert_eq!(ingress.name(), "ingress");
    assert_eq!(ingress.allocated.as_ref().map(|a| a.subnet.as_str()), Some("10.0.0.0/24"));
    assert!(ingress.vni >= 4096);
    // Each node an endpoint on it, running, with an address.
    let endpoints: Vec<&Task> = state.tasks.values().filter(|t| ingress::is_node_endpoint(t)).collect();
    let nodes: BTreeSet<&str> = endpoints.iter().map(|t| t.node_id.as_str()).collect();
    assert_eq!(nodes, BTreeSet::from(["n1", "n22"]));
    for t in &endpoints {
        assert_eq!(t.state(), TaskState::Running);
        assert_eq!(t.networks.len(), 1);
        assert_eq!(t.networks[0].network_id, ingress.id);
    }
    // The tasks: their own networks first, then ingress, with no names there.
    for t in state.tasks.values().filter(|t| t.service_id == "web") {
        let on: Vec<&str> = t.networks.iter().map(|n| n.network_id.as_str()).collect();
        assert_eq!(on, ["front", ingress.id.as_str()]);
        assert!(t.networks[1].aliases.is_empty());
    }
    // Ports published as 0 get the lowest free ones of 30000-32767, each its own.
    let given = |w: &World, id: &str| -> Vec<u32> {
        w.store.read().services[id].endpoint.iter().flat_map(|e| &e.ports).map(|p| p.published_port).collect()
    };
    let (web, api) = (given(&w, "web"), given(&w, "api"));
    assert_eq!(web[1], 8080);
    let dynamic: BTreeSet<u32> = [web[0], web[2], api[0]].into();
    assert_eq!(dynamic, BTreeSet::from([30000, 30001, 30002]));
    drop(state);
    // They are kept across another change of the service.
    w.service_update("web", |s| {
        s.spec.as_mut().expect("spec").annotations.get_or_insert_default().labels.insert("x".into(), "1".into());
    });
    w.converge();
    assert_eq!(given(&w, "web"), web);
    // No port published any more: the nodes' endpoints go; the network stays.
    for id in ["web", "api"] {
        w.service_update(id, |s| s.spec.as_mut().expect("spec").endpoint = None);
    }
    w.converge();
    let state = w.store.read();
    assert!(!state.tasks.values().any(|t| ingress::is_node_endpoint(t) && holds_addresses(t)));
    assert!(state.networks.contains_key(&ingress.id));
}

#[test]
fn a_full_network_keeps_tasks_in_new_saying_why_until_an_address_frees() {
    // A /29: .1 the gateway, .2 to .6 for VIPs and tasks.
    let mut w = World::new(vec![
        create(network("small", "10.0.9.0/29", false)),
        create(node("n1")),
        create(service("web", 5, &["small"], false)),
    ]);
    w.converge();
    let waiting: Vec<Task> = w.store.read().tasks.values().filter(|t| t.state() == TaskState::New).cloned().collect();
    assert_eq!(waiting.len(), 1, "a VIP and 4 tasks fit");
    let err = waiting[0].status.as_ref().map(|s| s.err.clone()).unwrap_or_default();
    assert!(
        err.starts_with("no address left on network st_small (10.0.9.0/29): its 5 addresses are all in use"),
        "{err}"
    );
    assert!(waiting[0].networks.is_empty() && waiting[0].node_id.is_empty());
    // Another pass writes nothing: the error is already said.
    assert!(allocate(&w.store.read(), w.now + 1).is_empty());
    // One task stops for good: its address goes to the waiting one.
    let failed = w.store.read().tasks.values().find(|t| t.state() == TaskState::Assigned).expect("a task").id.clone();
    w.task_update(&failed, |t| {
        t.status.get_or_insert_default().set_state(TaskState::Failed);
        t.set_desired_state(TaskState::Shutdown);
    });
    w.converge();
    let t = w.store.read().tasks[&waiting[0].id].clone();
    assert_eq!(t.state(), TaskState::Assigned);
    assert!(t.status.as_ref().is_some_and(|s| s.err.is_empty()));
    check_invariants(&w.store.read()).expect("invariants");
}

#[test]
fn attachments_get_their_address_and_run() {
    let mut w = World::new(vec![
        create(network("net", "10.0.3.0/24", true)),
        create(node("n1")),
        create(attachment("c1", "n1", "net")),
    ]);
    w.converge();
    let t = w.store.read().tasks["c1"].clone();
    assert_eq!(t.state(), TaskState::Running);
    assert_eq!(t.networks[0].addresses, ["10.0.3.2/24"]);
    assert_eq!(t.desired_state(), TaskState::Running, "the orchestrator leaves attachments alone");
    // Deleting it (a detach) frees the address.
    w.apply(vec![delete(t)]).expect("a detach");
    assert_eq!(w.store.read().held_addresses("net").count(), 0);
}

#[test]
fn the_store_refuses_an_address_in_use_or_one_the_network_may_not_give() {
    let w = World::new(vec![create(network("net", "10.0.3.0/24", true)), create(attachment("a", "n1", "net"))]);
    let give = |id: &str, addr: &str| {
        let mut t = w.store.read().tasks.get(id).cloned().unwrap_or_else(|| attachment(id, "n1", "net"));
        t.networks = vec![shoal_proto::NetworkAttachment {
            network_id: "net".into(),
            addresses: vec![addr.into()],
            aliases: vec![],
        }];
        t
    };
    w.apply(vec![update(give("a", "10.0.3.7/24"))]).expect("a free address");
    let err = w.apply(vec![create(give("b", "10.0.3.7/24"))]).expect_err("an address in use");
    assert!(err.to_string().contains("10.0.3.7/24 on network st_net (held by task a)"), "{err}");
    for bad in ["10.0.3.1/24", "10.0.3.0/24", "10.0.3.255/24", "10.0.4.7/24", "10.0.3.7/16", "x"] {
        assert!(w.apply(vec![create(give("b", bad))]).is_err(), "{bad} was accepted");
    }
    // A batch that fails leaves the index as it was: .8 is still free.
    let err = w.apply(vec![create(give("b", "10.0.3.8/24")), create(give("c", "10.0.3.7/24"))]);
    assert!(err.is_err());
    w.apply(vec![create(give("d", "10.0.3.8/24"))]).expect(".8 is free again");
    // Once a's task has stopped, its address is free for another.
    let mut a = w.store.read().tasks["a"].clone();
    a.status.get_or_insert_default().set_state(TaskState::Complete);
    w.apply(vec![update(a)]).expect("a stops");
    w.apply(vec![create(give("b", "10.0.3.7/24"))]).expect("a's address, released");
}

#[test]
fn vnis_are_unique_from_4096_and_kept() {
    let mut chosen = network("c", "10.0.5.0/24", false);
    chosen.vni = 4097;
    let mut w = World::new(vec![
        create(network("a", "10.0.3.0/24", false)),
        create(chosen),
        create(network("b", "10.0.4.0/24", false)),
    ]);
    w.converge();
    let vni = |id: &str| w.store.read().networks[id].vni;
    assert_eq!((vni("a"), vni("b"), vni("c")), (4096, 4098, 4097));
    let mut dup = w.store.read().networks["b"].clone();
    dup.vni = 4096;
    assert!(w.apply(vec![update(dup)]).is_err(), "a VNI in use was accepted");
}

/// One step of a random history.
#[derive(Debug, Clone)]
enum Op {
    Create {
        networks: u8,
        replicas: u64,
        dnsrr: bool,
    },
    Scale {
        service: usize,
        replicas: u64,
    },
    Move {
        service: usize,
        networks: u8,
    },
    Remove {
        service: usize,
    },
    Fail {
        task: usize,
    },
    Run {
        task: usize,
    },
    Attach {
        node: usize,
    },
    Detach {
        task: usize,
    },
    /// A pass computed on the store as it was before the last step, applied
    /// late (as after a change of leader): the store must refuse whatever
    /// it would hand out twice.
    Stale,
    /// A writer that does not ask the allocator (a bug, or a hostile peer):
    /// it writes address `offset` of network `network` onto holder `holder`.
    /// The store must refuse it whenever it would be held twice.
    Rogue {
        holder: usize,
        network: usize,
        offset: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1u8..8, 0u64..5, any::<bool>()).prop_map(|(networks, replicas, dnsrr)| Op::Create {
            networks,
            replicas,
            dnsrr
        }),
        (0usize..8, 0u64..7).prop_map(|(service, replicas)| Op::Scale { service, replicas }),
        (0usize..8, 0u8..8).prop_map(|(service, networks)| Op::Move { service, networks }),
        (0usize..8).prop_map(|service| Op::Remove { service }),
        (0usize..64).prop_map(|task| Op::Fail { task }),
        (0usize..64).prop_map(|task| Op::Run { task }),
        (0usize..2).prop_map(|node| Op::Attach { node }),
        (0usize..64).prop_map(|task| Op::Detach { task }),
        Just(Op::Stale),
        (0usize..64, 0usize..3, 0u32..16).prop_map(|(holder, network, offset)| Op::Rogue { holder, network, offset }),
    ]
}

/// The test's networks: small, so that they fill up.
const NETWORKS: [(&str, &str); 3] = [("a", "10.0.9.0/29"), ("b", "10.0.10.0/28"), ("c", "10.0.11.0/30")];

fn chosen(mask: u8) -> Vec<&'static str> {
    NETWORKS.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, (id, _))| *id).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn no_address_is_ever_held_twice(ops in proptest::collection::vec(op(), 1..30)) {
        let mut first: Vec<StoreAction> =
            NETWORKS.iter().map(|(id, subnet)| create(network(id, subnet, *id == "b"))).collect();
        first.push(create(node("n1")));
        first.push(create(node("n22")));
        let mut w = World::new(first);
        let mut made = 0;
        let mut before = w.store.read().clone();
        let mut older = before.clone();
        for op in ops {
            let now = w.store.read().clone();
            let services: Vec<String> = now.services.keys().cloned().collect();
            let tasks: Vec<String> = now.tasks.keys().cloned().collect();
            let pick = |list: &[String], i: usize| (!list.is_empty()).then(|| list[i % list.len()].clone());
            match op {
                Op::Create { networks, replicas, dnsrr } => {
                    made += 1;
                    w.apply(vec![create(service(&format!("s{made}"), replicas, &chosen(networks), dnsrr))])
                        .expect("a new service");
                }
                Op::Scale { service: i, replicas } => {
                    if let Some(id) = pick(&services, i) {
                        w.service_update(&id, |s| {
                            let spec = s.spec.as_mut().expect("a spec");
                            spec.mode = Some(ServiceMode {
                                mode: Some(service_mode::Mode::Replicated(ReplicatedService { replicas })),
                            });
                        });
                    }
                }
                Op::Move { service: i, networks } => {
                    if let Some(id) = pick(&services, i) {
                        w.service_update(&id, |s| {
                            let fresh = service(&id, s.replicas().unwrap_or(1), &chosen(networks), !vip_mode(s));
                            s.spec.as_mut().expect("a spec").task = fresh.spec.and_then(|f| f.task);
                        });
                    }
                }
                Op::Remove { service: i } => {
                    if let Some(id) = pick(&services, i) {
                        let s = now.services[&id].clone();
                        let mut actions = vec![delete(s)];
                        for t in now.service_tasks(&id).filter(|t| t.desired_state() < TaskState::Remove) {
                            let mut t = t.clone();
                            t.set_desired_state(TaskState::Remove);
                            actions.push(update(t));
                        }
                        w.apply(actions).expect("removing a service");
                    }
                }
                Op::Fail { task: i } | Op::Run { task: i } => {
                    let assigned: Vec<String> = tasks
                        .iter()
                        .filter(|id| now.tasks[*id].state() >= TaskState::Assigned && !now.tasks[*id].state().is_terminal())
                        .filter(|id| now.tasks[*id].attachment.is_none())
                        .cloned()
                        .collect();
                    if let Some(id) = pick(&assigned, i) {
                        let to = if matches!(op, Op::Fail { .. }) { TaskState::Failed } else { TaskState::Running };
                        w.task_update(&id, |t| t.status.get_or_insert_default().set_state(to));
                    }
                }
                Op::Attach { node } => {
                    made += 1;
                    let node = ["n1", "n22"][node];
                    w.apply(vec![create(attachment(&format!("c{made}"), node, "b"))]).expect("an attachment");
                }
                Op::Detach { task: i } => {
                    let attached: Vec<String> =
                        tasks.iter().filter(|id| now.tasks[*id].attachment.is_some()).cloned().collect();
                    if let Some(id) = pick(&attached, i) {
                        w.apply(vec![delete(now.tasks[&id].clone())]).expect("a detach");
                    }
                }
                Op::Stale => {
                    // Each write on its own, so that the ones whose objects did
                    // not change since get as far as the address check.
                    // Refused or not, none may leave an address held twice.
                    for action in allocate(&before, w.now) {
                        let _ = w.apply(vec![action]);
                    }
                }
                Op::Rogue { holder, network, offset } => {
                    let (id, subnet) = NETWORKS[network];
                    let base = crate::ipam::Subnet::parse(subnet).expect("a subnet");
                    let addr = cidr(base.addr + offset % base.size() as u32, &base);
                    let live: Vec<String> = tasks.iter().filter(|t| holds_addresses(&now.tasks[*t])).cloned().collect();
                    let write = if holder % 2 == 0 {
                        pick(&live, holder / 2).and_then(|t| {
                            let mut t = now.tasks[&t].clone();
                            let on = t.networks.iter_mut().find(|n| n.network_id == id)?;
                            on.addresses = vec![addr.clone()];
                            Some(update(t))
                        })
                    } else {
                        pick(&services, holder / 2).map(|s| {
                            let mut s = now.services[&s].clone();
                            let vips = &mut s.endpoint.get_or_insert_default().virtual_ips;
                            vips.retain(|v| v.network_id != id);
                            vips.push(shoal_proto::EndpointVirtualIp { network_id: id.into(), addr: addr.clone() });
                            update(s)
                        })
                    };
                    if let Some(write) = write {
                        let _ = w.apply(vec![write]);
                    }
                }
            }
            // The store as a pass of another leader may have seen it: after
            // this step's change, before the loops' passes.
            let unsettled = w.store.read().clone();
            w.converge();
            check_invariants(&w.store.read())?;
            before = std::mem::replace(&mut older, unsettled);
        }
    }
}
