//! The resolver on real sockets: listeners on loopback addresses (all of 127.0.0.0/8 is on
//! `lo`), queries sent from source addresses bound as the map's endpoints, a fake upstream
//! resolver in the test for the forwarded names. Each test has its own 127.x block, so they run
//! side by side.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use hickory_server::proto::{
    op::{Edns, Message, Query, ResponseCode},
    rr::{rdata, Name, RData, Record, RecordType},
    serialize::binary::{BinDecodable, BinEncodable},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, UdpSocket},
};
use tokio_util::sync::CancellationToken;

use super::{Resolver, ResolverConfig};
use crate::map::{Cidr, MapEndpoint, MapNetwork, MapService, NetworkMap};

/// How long a test waits for any answer: far past the resolver's own deadline, so that "no
/// answer" means the resolver hung.
const PATIENCE: Duration = Duration::from_secs(10);

fn ip(block: u8, net: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, block, net, host)
}

fn cidr(addr: Ipv4Addr) -> Cidr {
    Cidr { addr, prefix: 24 }
}

/// A map under construction, in one test's 127.`block` block: network `net` is 127.block.net.0/24
/// with its gateway at .1.
struct MapBuilder {
    block: u8,
    map: NetworkMap,
}

impl MapBuilder {
    fn new(block: u8) -> MapBuilder {
        MapBuilder { block, map: NetworkMap::default() }
    }

    fn network(mut self, net: u8, name: &str, internal: bool) -> MapBuilder {
        let id = format!("net{net}");
        self.map.networks.insert(
            id.clone(),
            MapNetwork {
                id,
                name: name.into(),
                vni: 4096 + u32::from(net),
                subnet: cidr(ip(self.block, net, 0)),
                gateway: ip(self.block, net, 1),
                internal,
                attachable: true,
                options: BTreeMap::new(),
                ingress: false,
            },
        );
        self
    }

    fn service(mut self, net: u8, id: &str, name: &str, aliases: &[&str], vip: Option<u8>) -> MapBuilder {
        let s = MapService {
            network_id: format!("net{net}"),
            service_id: id.into(),
            name: name.into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            vip: vip.map(|h| cidr(ip(self.block, net, h))),
            ports: Vec::new(),
        };
        self.map.services.insert(format!("{}/{}", s.network_id, s.service_id), s);
        self
    }

    fn task(self, net: u8, task: &str, service: &str, name: &str, host: u8, ready: bool) -> MapBuilder {
        self.endpoint(net, task, service, name, &[], host, ready)
    }

    #[allow(clippy::too_many_arguments)]
    fn endpoint(
        mut self,
        net: u8,
        task: &str,
        service: &str,
        name: &str,
        aliases: &[&str],
        host: u8,
        ready: bool,
    ) -> MapBuilder {
        let e = MapEndpoint {
            network_id: format!("net{net}"),
            task_id: task.into(),
            addr: cidr(ip(self.block, net, host)),
            node_id: "node1".into(),
            service_id: service.into(),
            name: name.into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            ready,
            node: false,
        };
        self.map.endpoints.insert(format!("{}/{}", e.network_id, e.task_id), e);
        self
    }

    fn build(self) -> NetworkMap {
        self.map
    }
}

/// A fake upstream resolver: `example.org` is 192.0.2.1, everything else NXDOMAIN; it counts
/// what it is asked. A mute one never answers.
struct Upstream {
    addr: SocketAddr,
    asked: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl Upstream {
    async fn start(addr: Ipv4Addr, mute: bool) -> Upstream {
        let socket = UdpSocket::bind((addr, 53)).await.expect("bind the fake upstream");
        let addr = socket.local_addr().expect("its address");
        let asked = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let (count, token) = (asked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            loop {
                let (len, from) = tokio::select! {
                    r = socket.recv_from(&mut buf) => match r { Ok(r) => r, Err(_) => return },
                    _ = token.cancelled() => return,
                };
                count.fetch_add(1, Ordering::SeqCst);
                if mute {
                    continue;
                }
                let Ok(query) = Message::from_bytes(&buf[..len]) else { continue };
                let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
                answer.metadata.recursion_available = true;
                answer.queries = query.queries.clone();
                let q = &query.queries[0];
                if q.name.to_ascii().eq_ignore_ascii_case("example.org.") && q.query_type == RecordType::A {
                    answer.answers.push(Record::from_rdata(
                        q.name.clone(),
                        60,
                        RData::A(rdata::A(Ipv4Addr::new(192, 0, 2, 1))),
                    ));
                } else {
                    answer.metadata.response_code = ResponseCode::NXDomain;
                }
                let bytes = answer.to_bytes().expect("encode");
                let _ = socket.send_to(&bytes, from).await;
            }
        });
        Upstream { addr, asked, stop }
    }

    fn asked(&self) -> usize {
        self.asked.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn resolver(upstream: &[SocketAddr], timeout: Duration) -> (Resolver, CancellationToken) {
    let shutdown = CancellationToken::new();
    let config = ResolverConfig { upstream: upstream.to_vec(), timeout, port: 53 };
    (Resolver::start(config, shutdown.clone()), shutdown)
}

fn query(name: &str, qtype: RecordType, edns: bool) -> Message {
    let mut m = Message::query();
    m.metadata.id = rand_id();
    m.metadata.recursion_desired = true;
    m.queries.push(Query::query(Name::from_ascii(name).expect("name"), qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.edns = Some(e);
    }
    m
}

fn rand_id() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    NEXT.fetch_add(7919, Ordering::Relaxed) as u16
}

/// Asks `server`:53 over UDP from `from`.
async fn ask_udp(from: Ipv4Addr, server: Ipv4Addr, q: &Message) -> Message {
    let socket = UdpSocket::bind((from, 0)).await.expect("bind the client");
    socket.send_to(&q.to_bytes().expect("encode"), (server, 53)).await.expect("send");
    let mut buf = vec![0u8; 65535];
    let (len, _) =
        tokio::time::timeout(PATIENCE, socket.recv_from(&mut buf)).await.expect("an answer in time").expect("recv");
    let answer = Message::from_bytes(&buf[..len]).expect("decode");
    assert_eq!(answer.metadata.id, q.metadata.id);
    answer
}

/// Asks `server`:53 over TCP from `from`.
async fn ask_tcp(from: Ipv4Addr, server: Ipv4Addr, q: &Message) -> Message {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind((from, 0).into()).expect("bind the client");
    let mut stream = socket.connect((server, 53).into()).await.expect("connect");
    let bytes = q.to_bytes().expect("encode");
    stream.write_all(&(bytes.len() as u16).to_be_bytes()).await.expect("send");
    stream.write_all(&bytes).await.expect("send");
    let read = async {
        let len = stream.read_u16().await.expect("length") as usize;
        let mut buf = vec![0u8; len];
        stream.read_exact(&mut buf).await.expect("answer");
        buf
    };
    let buf = tokio::time::timeout(PATIENCE, read).await.expect("an answer in time");
    Message::from_bytes(&buf).expect("decode")
}

/// The A records of an answer, sorted.
fn addrs(m: &Message) -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

async fn a(from: Ipv4Addr, server: Ipv4Addr, name: &str) -> (ResponseCode, Vec<Ipv4Addr>) {
    let m = ask_udp(from, server, &query(name, RecordType::A, false)).await;
    (m.metadata.response_code, addrs(&m))
}

fn web_map(block: u8) -> NetworkMap {
    MapBuilder::new(block)
        .network(1, "front", false)
        .service(1, "s-web", "app_web", &["web"], Some(100))
        .task(1, "tw1", "s-web", "app_web.1", 5, true)
        .task(1, "tw2", "s-web", "app_web.2", 6, true)
        .task(1, "tw3", "s-web", "app_web.3", 7, false)
        .service(1, "s-db", "app_db", &["db"], None)
        .task(1, "td1", "s-db", "app_db.1", 8, true)
        .task(1, "td2", "s-db", "app_db.2", 9, false)
        .task(1, "tc1", "s-client", "app_client.1", 20, true)
        .endpoint(1, "tx", "", "standalone", &["box"], 30, true)
        .build()
}

#[tokio::test]
async fn services_answer_by_their_endpoint_mode_and_tasks_by_their_names() {
    let b = 11;
    let up = Upstream::start(ip(b, 9, 53), false).await;
    let (r, _stop) = resolver(&[up.addr], Duration::from_secs(2));
    r.set_map(&web_map(b));
    r.listen("net1", ip(b, 1, 1)).await.expect("listen");
    let (me, gw) = (ip(b, 1, 20), ip(b, 1, 1));
    let ok = ResponseCode::NoError;

    // vip: the virtual IP, by its full name, its alias, any case, with or without the dot.
    for name in ["app_web", "web", "WEB.", "App_Web.front", "web.front."] {
        assert_eq!(a(me, gw, name).await, (ok, vec![ip(b, 1, 100)]), "{name}");
    }
    // tasks.<name>: the ready tasks only.
    for name in ["tasks.web", "tasks.app_web", "TASKS.web"] {
        assert_eq!(a(me, gw, name).await, (ok, vec![ip(b, 1, 5), ip(b, 1, 6)]), "{name}");
    }
    // dnsrr: the ready tasks' addresses.
    assert_eq!(a(me, gw, "db").await, (ok, vec![ip(b, 1, 8)]));
    assert_eq!(a(me, gw, "tasks.app_db").await, (ok, vec![ip(b, 1, 8)]));
    // Task names, short and full; attached containers by name and alias.
    assert_eq!(a(me, gw, "app_web.1").await, (ok, vec![ip(b, 1, 5)]));
    assert_eq!(a(me, gw, "app_web.2.tw2").await, (ok, vec![ip(b, 1, 6)]));
    assert_eq!(a(me, gw, "standalone").await, (ok, vec![ip(b, 1, 30)]));
    assert_eq!(a(me, gw, "box").await, (ok, vec![ip(b, 1, 30)]));
    // A task that is not ready is in no answer: its name goes upstream like any unknown one.
    assert_eq!(a(me, gw, "app_web.3").await, (ResponseCode::NXDomain, vec![]));

    // Another type for a known name: NOERROR, no answer (not NXDOMAIN), over UDP and TCP.
    for qtype in [RecordType::AAAA, RecordType::MX, RecordType::TXT] {
        let m = ask_udp(me, gw, &query("web", qtype, true)).await;
        assert_eq!((m.metadata.response_code, m.answers.len()), (ok, 0), "{qtype}");
    }
    let m = ask_tcp(me, gw, &query("web", RecordType::AAAA, false)).await;
    assert_eq!((m.metadata.response_code, m.answers.len()), (ok, 0));
    let m = ask_tcp(me, gw, &query("tasks.web", RecordType::A, false)).await;
    assert_eq!(addrs(&m), [ip(b, 1, 5), ip(b, 1, 6)]);

    // PTR: an endpoint's address names it; another address of the network is unknown here.
    let m = ask_udp(me, gw, &query(&format!("5.1.{b}.127.in-addr.arpa."), RecordType::PTR, false)).await;
    let targets: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::PTR(p) => Some(p.0.to_ascii()),
            _ => None,
        })
        .collect();
    assert_eq!(targets, ["app_web.1.tw1.front."]);
    let m = ask_udp(me, gw, &query(&format!("77.1.{b}.127.in-addr.arpa."), RecordType::PTR, false)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[tokio::test]
async fn a_map_change_is_in_the_next_answer() {
    let b = 12;
    let up = Upstream::start(ip(b, 9, 53), false).await;
    let (r, _stop) = resolver(&[up.addr], Duration::from_secs(2));
    let (me, gw) = (ip(b, 1, 20), ip(b, 1, 1));
    r.set_map(&web_map(b));
    r.listen("net1", gw).await.expect("listen");
    assert_eq!(a(me, gw, "tasks.web").await.1, [ip(b, 1, 5), ip(b, 1, 6)]);

    // Task 3 becomes ready, task 1 starts to stop, a fourth is added.
    let map = MapBuilder { block: b, map: web_map(b) }
        .task(1, "tw3", "s-web", "app_web.3", 7, true)
        .task(1, "tw1", "s-web", "app_web.1", 5, false)
        .task(1, "tw4", "s-web", "app_web.4", 10, true)
        .build();
    r.set_map(&map);
    assert_eq!(a(me, gw, "tasks.web").await.1, [ip(b, 1, 6), ip(b, 1, 7), ip(b, 1, 10)]);
    assert_eq!(a(me, gw, "app_web.4").await.1, [ip(b, 1, 10)]);
    assert_eq!(a(me, gw, "app_web.1").await.0, ResponseCode::NXDomain);

    // The service goes: its names go upstream (which does not know them).
    let mut map = map;
    map.services.remove("net1/s-web");
    map.endpoints.retain(|_, e| e.service_id != "s-web");
    r.set_map(&map);
    assert_eq!(a(me, gw, "web").await.0, ResponseCode::NXDomain);
    assert_eq!(a(me, gw, "tasks.web").await.0, ResponseCode::NXDomain);
}

#[tokio::test]
async fn only_endpoints_of_the_asked_network_are_answered_and_only_with_their_networks_names() {
    let b = 13;
    let up = Upstream::start(ip(b, 9, 53), false).await;
    let (r, _stop) = resolver(&[up.addr], Duration::from_secs(2));
    let map = MapBuilder::new(b)
        .network(1, "front", false)
        .network(2, "back", false)
        .service(1, "s-web", "web", &[], Some(100))
        .task(1, "tw1", "s-web", "web.1", 5, true)
        .service(2, "s-db", "db", &[], Some(100))
        .task(2, "td1", "s-db", "db.1", 5, true)
        // The client is on front only; the api on both.
        .task(1, "tc1", "s-client", "client.1", 20, true)
        .task(1, "ta1", "s-api", "api.1", 21, true)
        .task(2, "ta1", "s-api", "api.1", 21, true)
        // A standalone container on both (an attachment each, `network connect`).
        .endpoint(1, "tx1", "", "box", &[], 30, true)
        .endpoint(2, "tx2", "", "box", &[], 30, true)
        .build();
    r.set_map(&map);
    r.listen("net1", ip(b, 1, 1)).await.expect("listen 1");
    r.listen("net2", ip(b, 2, 1)).await.expect("listen 2");

    // Not an endpoint: refused, over UDP and TCP, and nothing is forwarded for it.
    let stranger = ip(b, 1, 250);
    assert_eq!(a(stranger, ip(b, 1, 1), "web").await.0, ResponseCode::Refused);
    assert_eq!(a(stranger, ip(b, 1, 1), "example.org").await.0, ResponseCode::Refused);
    let m = ask_tcp(stranger, ip(b, 1, 1), &query("web", RecordType::A, false)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    // An endpoint of the other network asking this network's gateway: refused too.
    assert_eq!(a(ip(b, 2, 5), ip(b, 1, 1), "web").await.0, ResponseCode::Refused);
    assert_eq!(up.asked(), 0);

    // The client sees front's names, not back's (those go upstream, which does not know them).
    assert_eq!(a(ip(b, 1, 20), ip(b, 1, 1), "web").await.1, [ip(b, 1, 100)]);
    assert_eq!(a(ip(b, 1, 20), ip(b, 1, 1), "db").await.0, ResponseCode::NXDomain);
    assert_eq!(a(ip(b, 1, 20), ip(b, 1, 1), "db.back").await.0, ResponseCode::NXDomain);
    // The api sees both, from either gateway; the asked network's answer comes first.
    for gw in [ip(b, 1, 1), ip(b, 2, 1)] {
        let from = if gw == ip(b, 1, 1) { ip(b, 1, 21) } else { ip(b, 2, 21) };
        assert_eq!(a(from, gw, "web").await.1, [ip(b, 1, 100)]);
        assert_eq!(a(from, gw, "db").await.1, [ip(b, 2, 100)]);
    }
    // So does the standalone container, through either of its attachments.
    assert_eq!(a(ip(b, 1, 30), ip(b, 1, 1), "db").await.1, [ip(b, 2, 100)]);
    assert_eq!(a(ip(b, 2, 30), ip(b, 2, 1), "web").await.1, [ip(b, 1, 100)]);
}

#[tokio::test]
async fn unknown_names_are_forwarded_and_a_dead_upstream_is_servfail() {
    let b = 14;
    let up = Upstream::start(ip(b, 9, 53), false).await;
    let own = Upstream::start(ip(b, 9, 54), false).await;
    let mute = Upstream::start(ip(b, 9, 55), true).await;
    let (r, _stop) = resolver(&[up.addr], Duration::from_millis(500));
    let map = MapBuilder::new(b)
        .network(1, "front", false)
        .network(2, "secret", true)
        .task(1, "t1", "s1", "a.1", 5, true)
        .task(1, "t2", "s1", "a.2", 6, true)
        .task(1, "t3", "s1", "a.3", 7, true)
        .task(2, "t4", "s2", "b.1", 5, true)
        .build();
    r.set_map(&map);
    r.listen("net1", ip(b, 1, 1)).await.expect("listen");
    r.listen("net2", ip(b, 2, 1)).await.expect("listen");
    let gw = ip(b, 1, 1);

    // The node's upstream answers what the mesh does not know, as it answered.
    assert_eq!(a(ip(b, 1, 5), gw, "example.org").await, (ResponseCode::NoError, vec![Ipv4Addr::new(192, 0, 2, 1)]));
    assert_eq!(a(ip(b, 1, 5), gw, "nowhere.example").await.0, ResponseCode::NXDomain);
    assert_eq!(up.asked(), 2);

    // A container with its own servers is forwarded there; the others are not.
    r.set_forwarders(ip(b, 1, 6), vec![own.addr]).expect("forwarders");
    assert_eq!(a(ip(b, 1, 6), gw, "example.org").await.1, [Ipv4Addr::new(192, 0, 2, 1)]);
    assert_eq!((up.asked(), own.asked()), (2, 1));
    assert!(r.set_forwarders(ip(b, 1, 6), vec!["0.0.0.0:53".parse().expect("addr")]).is_err());

    // A dead upstream: SERVFAIL, not silence.
    r.set_forwarders(ip(b, 1, 7), vec![mute.addr]).expect("forwarders");
    assert_eq!(a(ip(b, 1, 7), gw, "example.org").await.0, ResponseCode::ServFail);
    assert!(mute.asked() >= 1);
    let m = ask_tcp(ip(b, 1, 7), gw, &query("example.org", RecordType::A, false)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);

    // Back to the node's resolvers.
    r.set_forwarders(ip(b, 1, 7), vec![]).expect("forwarders");
    assert_eq!(a(ip(b, 1, 7), gw, "example.org").await.1, [Ipv4Addr::new(192, 0, 2, 1)]);

    // A task only on an internal network gets no name from outside: SERVFAIL, nothing sent.
    let before = up.asked();
    assert_eq!(a(ip(b, 2, 5), ip(b, 2, 1), "example.org").await.0, ResponseCode::ServFail);
    assert_eq!(up.asked(), before);
}

#[tokio::test]
async fn large_answers_are_truncated_over_udp_and_whole_over_tcp() {
    let b = 15;
    let (r, _stop) = resolver(&[], Duration::from_secs(1));
    let mut m = MapBuilder::new(b).network(1, "front", false).service(1, "s", "many", &[], None);
    for host in 10..70 {
        m = m.task(1, &format!("t{host}"), "s", &format!("many.{host}"), host, true);
    }
    r.set_map(&m.build());
    let (me, gw) = (ip(b, 1, 10), ip(b, 1, 1));
    r.listen("net1", gw).await.expect("listen");

    let udp = ask_udp(me, gw, &query("many", RecordType::A, false)).await;
    assert!(udp.metadata.truncation, "60 addresses do not fit 512 bytes");
    let tcp = ask_tcp(me, gw, &query("many", RecordType::A, false)).await;
    assert!(!tcp.metadata.truncation);
    assert_eq!(addrs(&tcp), (10..70).map(|h| ip(b, 1, h)).collect::<Vec<_>>());
    let edns = ask_udp(me, gw, &query("tasks.many", RecordType::A, true)).await;
    assert_eq!(addrs(&edns).len(), 60, "EDNS lets them fit");
}

#[tokio::test]
async fn search_domains_are_stripped_and_listeners_come_and_go() {
    let b = 16;
    let up = Upstream::start(ip(b, 9, 53), false).await;
    let (r, stop) = resolver(&[up.addr], Duration::from_secs(1));
    r.set_map(&web_map(b));
    let (me, gw) = (ip(b, 1, 20), ip(b, 1, 1));
    r.listen("net1", gw).await.expect("listen");

    assert_eq!(a(me, gw, "web.corp.example").await.0, ResponseCode::NXDomain);
    r.set_search(me, &["corp.example".into()]).expect("search");
    assert_eq!(a(me, gw, "web.corp.example").await.1, [ip(b, 1, 100)]);
    assert_eq!(a(me, gw, "tasks.web.Corp.Example.").await.1, [ip(b, 1, 5), ip(b, 1, 6)]);
    assert!(r.set_search(me, &["bad domain".into()]).is_err());

    // Listening twice is once; unlisten frees the port at once; listen again serves.
    r.listen("net1", gw).await.expect("listen again");
    r.unlisten("net1").await;
    let freed = UdpSocket::bind((gw, 53)).await.expect("the port is free after unlisten");
    drop(freed);
    r.listen("net1", gw).await.expect("listen after unlisten");
    assert_eq!(a(me, gw, "web").await.1, [ip(b, 1, 100)]);

    // Shutdown closes every listener.
    stop.cancel();
    r.unlisten("net1").await;
    UdpSocket::bind((gw, 53)).await.expect("the port is free after shutdown");
}
