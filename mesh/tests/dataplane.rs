//! The data plane on real devices with real traffic (as root): each test makes network
//! namespaces as simulated nodes, joined by a veth pair as their underlay, opens a `Mesh` in
//! each, applies hand-made maps and sends traffic between sandboxes. Everything is removed
//! when a test ends, even when it fails.

use std::{
    collections::BTreeMap,
    fs,
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsFd,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

use nix::sched::{setns, CloneFlags};
use shoal_mesh::{Attachment, Cidr, MapEndpoint, MapNetwork, MapService, Mesh, MeshConfig, NetworkMap};

// ---- the simulated nodes ----

/// Namespaces and state of one test; removed on drop.
struct Lab {
    prefix: String,
    nodes: Vec<String>,
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Sandboxes' namespaces left bound under the state directories.
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for mount in mounts.lines().filter_map(|l| l.split(' ').nth(4)) {
            if Path::new(mount).starts_with(self.dir.path()) {
                let _ = nix::mount::umount2(mount, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        for node in &self.nodes {
            let _ = Command::new("ip").args(["netns", "del", node]).status();
        }
    }
}

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn must(program: &str, args: &[&str]) -> String {
    run(program, args).unwrap_or_else(|e| panic!("{e}"))
}

impl Lab {
    /// `n` nodes on one underlay: node i has `10.199.0.<i+1>/24` on `eth0`, and iptables'
    /// FORWARD policy DROP, as Docker leaves it.
    fn new(test: &str, n: usize) -> Lab {
        assert!(nix::unistd::geteuid().is_root(), "the data plane tests need root");
        let prefix = format!("mt{}{test}", std::process::id() % 100_000);
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio");
        let mut lab = Lab { prefix, nodes: Vec::new(), dir: tempfile::tempdir().expect("tempdir"), rt };
        let underlay = format!("{}-u", lab.prefix);
        must("ip", &["netns", "add", &underlay]);
        lab.nodes.push(underlay.clone());
        must("ip", &["-n", &underlay, "link", "add", "br0", "type", "bridge"]);
        must("ip", &["-n", &underlay, "link", "set", "br0", "up"]);
        for i in 0..n {
            let node = lab.node(i);
            must("ip", &["netns", "add", &node]);
            lab.nodes.push(node.clone());
            let port = format!("p{i}");
            must(
                "ip",
                &["-n", &underlay, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &node],
            );
            must("ip", &["-n", &underlay, "link", "set", &port, "master", "br0", "up"]);
            must("ip", &["-n", &node, "addr", "add", &format!("{}/24", lab.underlay(i)), "dev", "eth0"]);
            must("ip", &["-n", &node, "link", "set", "eth0", "up"]);
            must("ip", &["-n", &node, "link", "set", "lo", "up"]);
            must("ip", &["netns", "exec", &node, "iptables", "-P", "FORWARD", "DROP"]);
        }
        lab
    }

    fn node(&self, i: usize) -> String {
        format!("{}-{i}", self.prefix)
    }

    fn underlay(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 199, 0, i as u8 + 1)
    }

    fn node_id(i: usize) -> String {
        format!("node{i}")
    }

    fn state_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node{i}/mesh"))
    }

    /// Opens node `i`'s mesh from a thread inside its namespace.
    fn open(&self, i: usize) -> Mesh {
        let config = MeshConfig {
            state_dir: self.state_dir(i),
            node_id: Lab::node_id(i),
            underlay: self.underlay(i),
            gateway_subnet: None,
            default_subnet: None,
        };
        let ns = Path::new("/run/netns").join(self.node(i));
        let handle = self.rt.handle().clone();
        std::thread::scope(|s| {
            s.spawn(|| {
                enter(&ns);
                handle.block_on(Mesh::open(config))
            })
            .join()
            .expect("the opening thread")
        })
        .unwrap_or_else(|e| panic!("opening node {i}'s mesh: {e}"))
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    fn apply(&self, mesh: &Mesh, map: &NetworkMap) {
        self.block_on(mesh.apply(map)).unwrap_or_else(|e| panic!("apply: {e}"));
    }

    /// Makes sandbox `id` on `mesh` connected to `attachments`; returns its namespace's path.
    fn sandbox(&self, mesh: &Mesh, id: &str, attachments: &[(&str, &str)]) -> PathBuf {
        let path = self.block_on(mesh.create_sandbox(id)).unwrap_or_else(|e| panic!("sandbox {id}: {e}"));
        let attachments: Vec<Attachment> = attachments
            .iter()
            .map(|(network, addr)| Attachment { network_id: network.to_string(), addr: cidr(addr) })
            .collect();
        self.block_on(mesh.connect(id, &attachments)).unwrap_or_else(|e| panic!("connecting {id}: {e}"));
        path
    }

    /// Runs `cmd` in node `i`'s namespace.
    fn on_node(&self, i: usize, cmd: &[&str]) -> Result<String, String> {
        let node = self.node(i);
        let mut args = vec!["netns", "exec", node.as_str()];
        args.extend(cmd);
        run("ip", &args)
    }
}

/// Enters the network namespace at `path` (this thread only).
fn enter(path: &Path) {
    let ns = fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("entering {}: {e}", path.display()));
}

/// Runs `work` on a thread inside the namespace at `path`.
fn inside<T: Send>(path: &Path, work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(path);
            work()
        })
        .join()
        .expect("a thread in a sandbox")
    })
}

/// Runs a command in the sandbox at `path`.
fn in_sandbox(path: &Path, cmd: &[&str]) -> Result<String, String> {
    let net = format!("--net={}", path.display());
    let mut args = vec![net.as_str()];
    args.extend(cmd);
    run("nsenter", &args)
}

fn ping(path: &Path, addr: &str) -> bool {
    in_sandbox(path, &["busybox", "ping", "-c", "1", "-W", "2", addr]).is_ok()
}

/// A TCP and UDP server on port 8080 in a sandbox that answers every connection or datagram
/// with its name and counts them.
struct Server {
    served: Arc<Mutex<u32>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    fn start(path: &Path, name: &str) -> Server {
        let (tcp, udp) = inside(path, || {
            let tcp = TcpListener::bind("0.0.0.0:8080").expect("bind tcp");
            let udp = UdpSocket::bind("0.0.0.0:8080").expect("bind udp");
            (tcp, udp)
        });
        tcp.set_nonblocking(true).expect("nonblocking");
        udp.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
        let served = Arc::new(Mutex::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let (s, n, st) = (served.clone(), name.to_string(), stop.clone());
        threads.push(std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match tcp.accept() {
                    Ok((mut conn, _)) => {
                        *s.lock().expect("count") += 1;
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.write_all(n.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }));
        let (s, n, st) = (served.clone(), name.to_string(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !st.load(Ordering::Relaxed) {
                if let Ok((_, from)) = udp.recv_from(&mut buf) {
                    *s.lock().expect("count") += 1;
                    let _ = udp.send_to(n.as_bytes(), from);
                }
            }
        }));
        Server { served, stop, threads }
    }

    fn served(&self) -> u32 {
        *self.served.lock().expect("count")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Connects from the sandbox at `path` to `addr` and reads the answer.
fn tcp(path: &Path, addr: &str) -> Result<String, String> {
    let target: SocketAddr = addr.parse().expect("socket address");
    inside(path, || {
        let mut conn =
            TcpStream::connect_timeout(&target, Duration::from_secs(2)).map_err(|e| format!("{addr}: {e}"))?;
        conn.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
        let mut answer = String::new();
        conn.read_to_string(&mut answer).map_err(|e| format!("{addr}: {e}"))?;
        Ok(answer)
    })
}

/// Sends a datagram from the sandbox at `path` to `addr` and reads the answer.
fn udp(path: &Path, addr: &str) -> Result<String, String> {
    inside(path, || {
        let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
        socket.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
        socket.send_to(b"hi", addr).map_err(|e| format!("{addr}: {e}"))?;
        let mut buf = [0u8; 64];
        let (n, _) = socket.recv_from(&mut buf).map_err(|e| format!("{addr}: {e}"))?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    })
}

// ---- maps ----

fn cidr(s: &str) -> Cidr {
    s.parse().expect("cidr")
}

struct MapBuilder {
    map: NetworkMap,
}

impl MapBuilder {
    fn new(lab: &Lab, nodes: usize) -> MapBuilder {
        let mut map = NetworkMap::default();
        for i in 0..nodes {
            map.peers.insert(Lab::node_id(i), lab.underlay(i));
        }
        MapBuilder { map }
    }

    fn network(mut self, id: &str, vni: u32, subnet: &str, internal: bool) -> MapBuilder {
        let subnet = cidr(subnet);
        let gateway = Ipv4Addr::from(u32::from(subnet.addr) + 1);
        self.map.networks.insert(
            id.to_string(),
            MapNetwork {
                id: id.to_string(),
                name: format!("name-{id}"),
                vni,
                subnet,
                gateway,
                internal,
                attachable: false,
                options: BTreeMap::new(),
                ingress: false,
            },
        );
        self
    }

    fn endpoint(mut self, network: &str, task: &str, addr: &str, node: usize, service: &str) -> MapBuilder {
        self.map.endpoints.insert(
            format!("{network}/{task}"),
            MapEndpoint {
                network_id: network.to_string(),
                task_id: task.to_string(),
                addr: cidr(addr),
                node_id: Lab::node_id(node),
                service_id: service.to_string(),
                name: task.to_string(),
                aliases: Vec::new(),
                ready: true,
                node: false,
            },
        );
        self
    }

    fn service(mut self, network: &str, service: &str, vip: &str) -> MapBuilder {
        self.map.services.insert(
            format!("{network}/{service}"),
            MapService {
                network_id: network.to_string(),
                service_id: service.to_string(),
                name: service.to_string(),
                aliases: Vec::new(),
                vip: Some(cidr(vip)),
                ports: Vec::new(),
            },
        );
        self
    }

    fn build(self) -> NetworkMap {
        self.map
    }
}

fn set_ready(map: &mut NetworkMap, key: &str, ready: bool) {
    map.endpoints.get_mut(key).unwrap_or_else(|| panic!("no endpoint {key}")).ready = ready;
}

/// What the kernel has of the mesh's in node `i` and its sandboxes: links (with their
/// settings and MACs), addresses, forwarding and neighbour entries, routes, rules; without
/// what changes by itself (timers, counters, entries the bridges learn).
fn snapshot(lab: &Lab, i: usize, sandboxes: &[&Path]) -> String {
    let stable = |text: String| -> String {
        let mut out = String::new();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let mut kept = Vec::new();
            while let Some(word) = words.next() {
                // Timers and operational states move by themselves.
                if word.ends_with("_timer") || word == "state" {
                    words.next();
                } else {
                    kept.push(word);
                }
            }
            out.push_str(&kept.join(" "));
            out.push('\n');
        }
        out
    };
    let mut out = String::new();
    for cmd in [
        &["ip", "-d", "link", "show"][..],
        &["ip", "-4", "addr", "show"],
        &["ip", "neigh", "show", "nud", "permanent"],
        &["ip", "route", "show"],
        &["nft", "-s", "list", "ruleset"],
    ] {
        out.push_str(&stable(lab.on_node(i, cmd).unwrap_or_else(|e| panic!("{e}"))));
    }
    let fdb = lab.on_node(i, &["bridge", "fdb", "show"]).unwrap_or_else(|e| panic!("{e}"));
    out.extend(fdb.lines().filter(|l| l.contains("permanent")).map(|l| format!("{l}\n")));
    for path in sandboxes {
        for cmd in [
            &["ip", "-d", "link", "show"][..],
            &["ip", "-4", "addr", "show"],
            &["ip", "route"],
            &["nft", "-s", "list", "ruleset"],
        ] {
            out.push_str(&stable(in_sandbox(path, cmd).unwrap_or_else(|e| panic!("{e}"))));
        }
    }
    out
}

/// The lines of `after` that differ from `before`'s, for a readable failure.
fn diff(before: &str, after: &str) -> String {
    let (b, a): (Vec<&str>, Vec<&str>) = (before.lines().collect(), after.lines().collect());
    let gone: Vec<&&str> = b.iter().filter(|l| !a.contains(l)).collect();
    let new: Vec<&&str> = a.iter().filter(|l| !b.contains(l)).collect();
    format!("gone: {gone:#?}\nnew: {new:#?}")
}

// ---- tests ----

const NET: &str = "n1";
const WEB_VIP: &str = "10.30.1.2";

/// Node 0 runs a client, node 1 two tasks of `web` behind a virtual IP.
fn web_map(lab: &Lab) -> NetworkMap {
    MapBuilder::new(lab, 2)
        .network(NET, 4096, "10.30.1.0/24", false)
        .endpoint(NET, "client1", "10.30.1.10/24", 0, "client")
        .endpoint(NET, "web1", "10.30.1.20/24", 1, "web")
        .endpoint(NET, "web2", "10.30.1.21/24", 1, "web")
        .service(NET, "web", &format!("{WEB_VIP}/24"))
        .build()
}

#[test]
fn sandboxes_on_two_nodes_reach_each_other_by_address_and_virtual_ip() {
    let lab = Lab::new("vip", 2);
    let (a, b) = (lab.open(0), lab.open(1));
    let mut map = web_map(&lab);
    lab.apply(&a, &map);
    lab.apply(&b, &map);
    let client = lab.sandbox(&a, "client1", &[(NET, "10.30.1.10/24")]);
    let web1 = lab.sandbox(&b, "web1", &[(NET, "10.30.1.20/24")]);
    let web2 = lab.sandbox(&b, "web2", &[(NET, "10.30.1.21/24")]);
    let (s1, s2) = (Server::start(&web1, "web1"), Server::start(&web2, "web2"));

    // The overlay's MTU leaves room for VXLAN; eth0 is the network, eth1 the way out.
    let links = in_sandbox(&client, &["ip", "-o", "link"]).expect("links");
    assert!(links.contains("eth0@") && links.contains("mtu 1450"), "{links}");
    let routes = in_sandbox(&client, &["ip", "route"]).expect("routes");
    assert!(routes.contains("default via 172.18.0.1 dev eth1"), "{routes}");
    assert!(routes.contains("10.30.1.0/24 dev eth0"), "{routes}");

    assert!(ping(&client, "10.30.1.20"), "ping across nodes");
    assert_eq!(tcp(&client, "10.30.1.20:8080").as_deref(), Ok("web1"));
    assert_eq!(tcp(&client, "10.30.1.21:8080").as_deref(), Ok("web2"));
    // Back from node 1 to node 0 as well.
    let client_server = Server::start(&client, "client1");
    assert_eq!(tcp(&web2, "10.30.1.10:8080").as_deref(), Ok("client1"));
    drop(client_server);

    // The virtual IP spreads connections over both tasks.
    let (before1, before2) = (s1.served(), s2.served());
    for _ in 0..24 {
        let answer = tcp(&client, &format!("{WEB_VIP}:8080")).expect("virtual IP");
        assert!(answer == "web1" || answer == "web2", "{answer}");
    }
    assert!(s1.served() > before1 && s2.served() > before2, "one backend got nothing: {} {}", s1.served(), s2.served());
    let answer = udp(&client, &format!("{WEB_VIP}:8080")).expect("UDP to the virtual IP");
    assert!(answer == "web1" || answer == "web2", "{answer}");

    // A task that is not ready leaves the rotation.
    set_ready(&mut map, &format!("{NET}/web2"), false);
    lab.apply(&a, &map);
    lab.apply(&b, &map);
    let before2 = s2.served();
    for _ in 0..12 {
        assert_eq!(tcp(&client, &format!("{WEB_VIP}:8080")).as_deref(), Ok("web1"));
    }
    assert_eq!(s2.served(), before2, "a task that is not ready got connections");

    // None ready: refused at once, not left to time out.
    set_ready(&mut map, &format!("{NET}/web1"), false);
    lab.apply(&a, &map);
    let err = tcp(&client, &format!("{WEB_VIP}:8080")).expect_err("no backend");
    assert!(err.contains("refused") || err.contains("reset"), "{err}");
    drop((s1, s2));
}

#[test]
fn an_address_that_moves_to_another_node_is_reached_there() {
    let lab = Lab::new("move", 2);
    let (a, b) = (lab.open(0), lab.open(1));
    let before = MapBuilder::new(&lab, 2)
        .network(NET, 4096, "10.30.1.0/24", false)
        .endpoint(NET, "client1", "10.30.1.10/24", 0, "client")
        .endpoint(NET, "web1", "10.30.1.20/24", 1, "web")
        .build();
    lab.apply(&a, &before);
    lab.apply(&b, &before);
    let client = lab.sandbox(&a, "client1", &[(NET, "10.30.1.10/24")]);
    let web1 = lab.sandbox(&b, "web1", &[(NET, "10.30.1.20/24")]);
    let server = Server::start(&web1, "web1");
    assert_eq!(tcp(&client, "10.30.1.20:8080").as_deref(), Ok("web1"));
    let vxlan = lab.on_node(0, &["ip", "-d", "link", "show", "sv-4096"]).expect("the VXLAN device");
    assert!(vxlan.contains("learning off"), "the bridge learns on its VXLAN port: {vxlan}");
    let fdb = lab.on_node(0, &["bridge", "fdb", "show", "dev", "sv-4096"]).expect("fdb");
    assert!(fdb.contains("02:42:0a:1e:01:14 master sb-4096 static"), "no bridge entry for the remote task: {fdb}");
    drop(server);

    // The task goes from node 1 and its address is given to a new one on node 0, the
    // client's: the client reaches the new task, which has sent nothing yet.
    lab.block_on(b.remove_sandbox("web1")).expect("removing web1");
    let after = MapBuilder::new(&lab, 2)
        .network(NET, 4096, "10.30.1.0/24", false)
        .endpoint(NET, "client1", "10.30.1.10/24", 0, "client")
        .endpoint(NET, "web2", "10.30.1.20/24", 0, "web")
        .endpoint(NET, "other", "10.30.1.30/24", 1, "other")
        .build();
    lab.apply(&a, &after);
    lab.apply(&b, &after);
    let web2 = lab.sandbox(&a, "web2", &[(NET, "10.30.1.20/24")]);
    let other = lab.sandbox(&b, "other", &[(NET, "10.30.1.30/24")]);
    let _server = Server::start(&web2, "web2");
    assert_eq!(tcp(&client, "10.30.1.20:8080").as_deref(), Ok("web2"));
    assert_eq!(tcp(&other, "10.30.1.20:8080").as_deref(), Ok("web2"));
    let fdb = lab.on_node(0, &["bridge", "fdb", "show", "dev", "sv-4096"]).expect("fdb");
    assert!(!fdb.contains("02:42:0a:1e:01:14"), "an entry for a task now local: {fdb}");
}

#[test]
fn networks_are_isolated_and_only_non_internal_ones_lead_out() {
    let lab = Lab::new("iso", 2);
    let a = lab.open(0);
    let map = MapBuilder::new(&lab, 2)
        .network("n1", 4096, "10.30.1.0/24", false)
        .network("n2", 4097, "10.30.2.0/24", false)
        .network("n3", 4098, "10.30.3.0/24", true)
        .endpoint("n1", "t1", "10.30.1.10/24", 0, "s1")
        .endpoint("n2", "t2", "10.30.2.10/24", 0, "s2")
        .endpoint("n3", "t3", "10.30.3.10/24", 0, "s3")
        .endpoint("n1", "t4", "10.30.1.11/24", 0, "s4")
        .build();
    lab.apply(&a, &map);
    let t1 = lab.sandbox(&a, "t1", &[("n1", "10.30.1.10/24")]);
    let t2 = lab.sandbox(&a, "t2", &[("n2", "10.30.2.10/24")]);
    let t3 = lab.sandbox(&a, "t3", &[("n3", "10.30.3.10/24")]);
    let t4 = lab.sandbox(&a, "t4", &[("n1", "10.30.1.11/24")]);
    let server = Server::start(&t1, "t1");

    // Same network: reachable. Another network: not, by address nor through the way out.
    assert_eq!(tcp(&t4, "10.30.1.10:8080").as_deref(), Ok("t1"));
    assert!(tcp(&t2, "10.30.1.10:8080").is_err(), "another network reached t1");
    assert!(!ping(&t2, "10.30.1.10"), "another network pinged t1");
    assert!(tcp(&t3, "10.30.1.10:8080").is_err(), "an internal network reached t1");
    // Another network's gateway (where its resolver listens) is not reachable either.
    assert!(!ping(&t2, "10.30.1.1") && ping(&t1, "10.30.1.1"), "gateways");

    // Outside: a server on node 1's own address, beyond node 0.
    let outside = Path::new("/run/netns").join(lab.node(1));
    let far = Server::start(&outside, "outside");
    assert_eq!(tcp(&t1, "10.199.0.2:8080").as_deref(), Ok("outside"), "a normal network leads out");
    let routes = in_sandbox(&t3, &["ip", "route"]).expect("routes");
    assert!(!routes.contains("default"), "an internal network has a default route: {routes}");
    let err = tcp(&t3, "10.199.0.2:8080").expect_err("an internal network led out");
    assert!(err.contains("unreachable"), "{err}");
    assert!(far.served() == 1, "outside served {}", far.served());

    // Sandboxes do not reach each other through the gateway bridge.
    let gw = |path: &Path| {
        let out = in_sandbox(path, &["ip", "-o", "-4", "addr", "show", "dev", "eth1"]).expect("eth1");
        out.split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .expect("an address")
            .split('/')
            .next()
            .expect("addr")
            .to_string()
    };
    let t4_gw = gw(&t4);
    assert!(t4_gw.starts_with("172.18."), "{t4_gw}");
    assert!(!ping(&t1, &t4_gw), "sandboxes reach each other through the gateway bridge");
    drop((server, far));
}

#[test]
fn apply_converges_readopts_after_a_restart_and_remove_all_leaves_nothing() {
    let lab = Lab::new("conv", 2);
    let (a, b) = (lab.open(0), lab.open(1));
    let full = MapBuilder::new(&lab, 2)
        .network("n1", 4096, "10.30.1.0/24", false)
        .network("n2", 4097, "10.30.2.0/24", false)
        .endpoint("n1", "c", "10.30.1.10/24", 0, "client")
        .endpoint("n2", "c", "10.30.2.10/24", 0, "client")
        .endpoint("n1", "w", "10.30.1.20/24", 1, "web")
        .endpoint("n2", "w", "10.30.2.20/24", 1, "web")
        .service("n1", "web", "10.30.1.2/24")
        .build();
    lab.apply(&a, &full);
    lab.apply(&b, &full);
    let c = lab.sandbox(&a, "c", &[("n1", "10.30.1.10/24"), ("n2", "10.30.2.10/24")]);
    let w = lab.sandbox(&b, "w", &[("n1", "10.30.1.20/24"), ("n2", "10.30.2.20/24")]);
    let server = Server::start(&w, "w");
    assert_eq!(tcp(&c, "10.30.2.20:8080").as_deref(), Ok("w"));
    let links = in_sandbox(&c, &["ip", "-o", "link"]).expect("links");
    for (n, name) in ["eth0@", "eth1@", "eth2@"].iter().enumerate() {
        assert!(links.contains(name), "interface {n}: {links}");
    }

    // Applying the same map again changes nothing: no device made again, no rule doubled.
    let before = snapshot(&lab, 0, &[&c]);
    lab.apply(&a, &full);
    let after = snapshot(&lab, 0, &[&c]);
    assert!(after == before, "a second apply changed something: {}", diff(&before, &after));
    let forward = lab.on_node(0, &["iptables", "-S", "FORWARD"]).expect("iptables");
    assert_eq!(forward.matches("SHOAL-FORWARD").count(), 1, "{forward}");
    // iptables (Docker's tool) still reads the table the mesh added to.
    let all = lab.on_node(0, &["iptables-save", "-t", "filter"]).expect("iptables-save");
    assert!(!all.contains("incompatible") && all.contains("-A SHOAL-FORWARD -i shoal_gwbridge"), "{all}");
    lab.on_node(0, &["iptables", "-S"]).expect("iptables -S reads the filter table");

    // A restart (a new Mesh on the same state, as after kill -9) re-adopts, and traffic flows
    // throughout.
    drop(a);
    assert_eq!(tcp(&c, "10.30.1.20:8080").as_deref(), Ok("w"), "traffic stopped with the mesh");
    let a = lab.open(0);
    assert_eq!(lab.block_on(a.sandboxes()), ["c"]);
    lab.apply(&a, &full);
    let after = snapshot(&lab, 0, &[&c]);
    assert!(after == before, "the restarted mesh changed something: {}", diff(&before, &after));
    assert_eq!(tcp(&c, "10.30.1.20:8080").as_deref(), Ok("w"));

    // What was broken behind its back is repaired: a port's veth, an FDB entry, a rule.
    let host_veth = lab.on_node(0, &["ip", "-o", "link", "show", "master", "sb-4096"]).expect("ports");
    let veth = host_veth
        .lines()
        .find_map(|l| l.split(": ").nth(1))
        .expect("a port")
        .split('@')
        .next()
        .expect("name")
        .to_string();
    lab.on_node(0, &["ip", "link", "del", &veth]).expect("deleting a veth");
    lab.on_node(0, &["bridge", "fdb", "del", "02:42:0a:1e:02:14", "dev", "sv-4097", "dst", "10.199.0.2"]).expect("fdb");
    lab.on_node(0, &["nft", "delete", "table", "inet", "shoal"]).expect("nft");
    assert!(tcp(&c, "10.30.1.20:8080").is_err(), "the veth was not the way");
    lab.apply(&a, &full);
    assert_eq!(tcp(&c, "10.30.1.20:8080").as_deref(), Ok("w"));
    assert_eq!(tcp(&c, "10.30.2.20:8080").as_deref(), Ok("w"));
    let nft = lab.on_node(0, &["nft", "list", "table", "inet", "shoal"]).expect("the table is back");
    assert!(nft.contains("sb-4097"), "{nft}");

    // A network that leaves the map leaves no device, port or rule.
    let mut smaller = full.clone();
    smaller.networks.remove("n2");
    smaller.endpoints.retain(|k, _| !k.starts_with("n2/"));
    lab.apply(&a, &smaller);
    let links = lab.on_node(0, &["ip", "-o", "link"]).expect("links");
    assert!(!links.contains("sb-4097") && !links.contains("sv-4097"), "{links}");
    assert!(links.contains("sb-4096"), "{links}");
    let inside = in_sandbox(&c, &["ip", "-o", "link"]).expect("links");
    assert!(!inside.contains("eth1@"), "the port on n2 is still there: {inside}");
    assert!(!lab.on_node(0, &["nft", "list", "ruleset"]).expect("nft").contains("4097"), "a rule of n2 is left");
    assert_eq!(tcp(&c, "10.30.1.20:8080").as_deref(), Ok("w"));

    // A map that does not fit is refused whole.
    let mut bad = smaller.clone();
    bad.networks.get_mut("n1").expect("n1").vni = 4097;
    bad.networks.insert("n9".into(), MapNetwork { id: "n9".into(), vni: 4097, ..full.networks["n2"].clone() });
    let before = snapshot(&lab, 0, &[&c]);
    let err = lab.block_on(a.apply(&bad)).expect_err("two networks with one VNI");
    assert!(err.to_string().contains("VNI 4097"), "{err}");
    let after = snapshot(&lab, 0, &[&c]);
    assert!(after == before, "a refused map changed something: {}", diff(&before, &after));

    // Removing a sandbox removes its ports; remove_all leaves nothing of the mesh's.
    lab.block_on(a.remove_sandbox("c")).expect("remove");
    assert!(!c.exists(), "the sandbox's namespace file is left");
    drop(server);
    for (i, mesh) in [(0, &a), (1, &b)] {
        lab.block_on(mesh.remove_all()).expect("remove_all");
        let links = lab.on_node(i, &["ip", "-o", "link"]).expect("links");
        for ours in ["sb-", "sv-", "shv", "shoal_gwbridge", "shoal0"] {
            assert!(!links.contains(ours), "node {i} keeps {ours}: {links}");
        }
        let rules = lab.on_node(i, &["nft", "list", "ruleset"]).expect("nft");
        assert!(!rules.contains("shoal") && !rules.contains("SHOAL"), "node {i} keeps rules: {rules}");
        let left: Vec<_> = fs::read_dir(lab.state_dir(i)).expect("state").flatten().map(|e| e.file_name()).collect();
        assert_eq!(left, ["lock"], "node {i}'s state directory keeps files");
        let mounts = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        assert!(!mounts.contains(&*lab.state_dir(i).to_string_lossy()), "node {i} keeps a sandbox mounted");
    }
}

#[test]
fn sandbox_ids_and_addresses_are_checked() {
    let lab = Lab::new("bad", 1);
    let a = lab.open(0);
    let map = MapBuilder::new(&lab, 1).network("n1", 4096, "10.30.1.0/24", false).build();
    lab.apply(&a, &map);
    for id in ["../x", "", "a/b", ".."] {
        let err = lab.block_on(a.create_sandbox(id)).expect_err(id);
        assert!(err.to_string().contains("sandbox id"), "{id}: {err}");
    }
    let outside = fs::read_dir(lab.state_dir(0).join("netns")).expect("netns").count();
    assert_eq!(outside, 0, "a refused id made a namespace");
    lab.block_on(a.create_sandbox("t1")).expect("sandbox");
    for (network, addr) in [
        ("n1", "10.30.2.5/24"),
        ("n1", "10.30.1.1/24"),
        ("n1", "10.30.1.255/24"),
        ("n1", "10.30.1.5/16"),
        ("nope", "10.30.1.5/24"),
    ] {
        let err = lab
            .block_on(a.connect("t1", &[Attachment { network_id: network.into(), addr: cidr(addr) }]))
            .expect_err(addr);
        assert!(
            err.to_string().contains(addr.split('/').next().expect("addr")) || err.to_string().contains(network),
            "{addr}: {err}"
        );
    }
    assert!(lab.block_on(a.interfaces("t1")).expect("interfaces").is_empty(), "a refused connect left a port");
    let err = lab.block_on(a.connect("nosuch", &[])).expect_err("no sandbox");
    assert!(err.to_string().contains("nosuch"), "{err}");
}

#[test]
fn the_default_bridge_and_disconnects_move_the_way_out() {
    let lab = Lab::new("def", 2);
    let a = lab.open(0);
    let map = MapBuilder::new(&lab, 2)
        .network("n1", 4096, "10.30.1.0/24", false)
        .network("n3", 4098, "10.30.3.0/24", true)
        .build();
    lab.apply(&a, &map);
    let outside = Path::new("/run/netns").join(lab.node(1));
    let far = Server::start(&outside, "outside");

    // Standalone containers on the default bridge: NAT out, and each other reachable.
    let s1 = lab.block_on(a.create_sandbox("s1")).expect("s1");
    let s2 = lab.block_on(a.create_sandbox("s2")).expect("s2");
    let i1 = lab.block_on(a.connect_default_bridge("s1")).expect("s1 on shoal0");
    let i2 = lab.block_on(a.connect_default_bridge("s2")).expect("s2 on shoal0");
    assert_eq!((i1.name.as_str(), i1.addr.to_string().as_str()), ("eth0", "172.17.0.2/16"));
    assert_eq!(i2.addr.to_string(), "172.17.0.3/16");
    assert_eq!(lab.block_on(a.connect_default_bridge("s1")).expect("again"), i1, "a second connect moved s1");
    assert_eq!(tcp(&s1, "10.199.0.2:8080").as_deref(), Ok("outside"));
    let server = Server::start(&s2, "s2");
    assert_eq!(tcp(&s1, "172.17.0.3:8080").as_deref(), Ok("s2"));
    drop(server);
    let routes = in_sandbox(&s1, &["ip", "route"]).expect("routes");
    assert!(routes.contains("default via 172.17.0.1 dev eth0"), "{routes}");

    // On an overlay too: still out through the default bridge, no gateway port.
    lab.block_on(a.connect("s1", &[Attachment { network_id: "n1".into(), addr: cidr("10.30.1.10/24") }]))
        .expect("s1 on n1");
    let names: Vec<String> =
        lab.block_on(a.interfaces("s1")).expect("interfaces").into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["eth0", "eth1"]);
    // Off the default bridge: out through the gateway bridge instead.
    lab.block_on(a.disconnect_default_bridge("s1")).expect("off shoal0");
    let routes = in_sandbox(&s1, &["ip", "route"]).expect("routes");
    assert!(routes.contains("default via 172.18.0.1 dev eth0"), "{routes}");
    assert_eq!(tcp(&s1, "10.199.0.2:8080").as_deref(), Ok("outside"));

    // An internal network added and the normal one removed: no way out at all.
    lab.block_on(a.connect("s1", &[Attachment { network_id: "n3".into(), addr: cidr("10.30.3.10/24") }]))
        .expect("s1 on n3");
    lab.block_on(a.disconnect("s1", "n1")).expect("off n1");
    let interfaces = lab.block_on(a.interfaces("s1")).expect("interfaces");
    assert_eq!(interfaces.len(), 1, "{interfaces:?}");
    let routes = in_sandbox(&s1, &["ip", "route"]).expect("routes");
    assert!(!routes.contains("default"), "{routes}");
    assert!(tcp(&s1, "10.199.0.2:8080").is_err(), "an internal-only sandbox led out");
    let links = lab.on_node(0, &["ip", "-o", "link", "show", "master", "shoal_gwbridge"]).expect("ports");
    assert!(links.trim().is_empty(), "the gateway port is left: {links}");
    drop(far);
}

/// Not a test: overlay throughput and latency against the underlay's, printed (run with
/// `cargo test -p shoal-mesh --test dataplane -- --ignored --nocapture`; needs iperf3).
#[test]
#[ignore]
fn measure_overlay_against_underlay() {
    let lab = Lab::new("perf", 2);
    let (a, b) = (lab.open(0), lab.open(1));
    let map = web_map(&lab);
    lab.apply(&a, &map);
    lab.apply(&b, &map);
    let client = lab.sandbox(&a, "client1", &[(NET, "10.30.1.10/24")]);
    let web1 = lab.sandbox(&b, "web1", &[(NET, "10.30.1.20/24")]);
    let node1 = Path::new("/run/netns").join(lab.node(1));
    let node0 = Path::new("/run/netns").join(lab.node(0));
    let iperf = |server: &Path, client: &Path, addr: &str| -> f64 {
        let mut daemon = Command::new("nsenter")
            .args([&format!("--net={}", server.display()), "iperf3", "-s"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("iperf3 -s");
        // The server is ready when a client gets through.
        let mut out = Err(String::new());
        for _ in 0..50 {
            // iperf3 -J reports a refused connection in its JSON, exiting 0.
            out = in_sandbox(client, &["iperf3", "-c", addr, "-t", "5", "-J"]).and_then(|o| {
                if o.contains("\"error\"") {
                    Err(o)
                } else {
                    Ok(o)
                }
            });
            if out.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = daemon.kill();
        let _ = daemon.wait();
        let out = out.expect("iperf3 -c");
        let json: serde_json::Value = serde_json::from_str(&out).expect("iperf3 json");
        json["end"]["sum_received"]["bits_per_second"].as_f64().unwrap_or_else(|| panic!("iperf3: {out}")) / 1e9
    };
    // Interleaved, the median of three each.
    let (mut overlay, mut underlay) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        underlay.push(iperf(&node1, &node0, "10.199.0.2"));
        overlay.push(iperf(&web1, &client, "10.30.1.20"));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (overlay, underlay) = (median(&mut overlay), median(&mut underlay));
    println!(
        "iperf3 TCP 5 s, median of 3: overlay {overlay:.2} Gbit/s, underlay {underlay:.2} Gbit/s, ratio {:.2}",
        overlay / underlay
    );
    let rtt =
        |path: &Path, addr: &str| in_sandbox(path, &["busybox", "ping", "-c", "50", "-i", "0.02", addr]).expect("ping");
    println!("overlay ping: {}", rtt(&client, "10.30.1.20").lines().last().unwrap_or_default());
    println!("underlay ping: {}", rtt(&node0, "10.199.0.2").lines().last().unwrap_or_default());
}
