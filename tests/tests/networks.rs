//! Overlay networks on a swarm of simulated hosts: services reach each other by name and
//! virtual IP across nodes, DNS follows scaling and health, networks are isolated, internal
//! ones have no way out, the data plane survives a killed daemon and goes with the stack.
//! Real devices (bridges, VXLAN, veths, nftables), real traffic, busybox's own clients.

use std::collections::BTreeSet;
use std::process::{Child, Output};
use std::time::Duration;

use shoal_tests::{busybox_rootfs, eventually, eventually_ok, Lab};

const STACK: &str = r#"
services:
  web:
    image: demo:1
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    stop_grace_period: 1s
    deploy: { replicas: 3 }
    networks: [front]
  rr:
    image: demo:1
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    stop_grace_period: 1s
    deploy: { replicas: 2, endpoint_mode: dnsrr }
    networks: [front]
  checked:
    image: demo:1
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD", "test", "!", "-f", "/sick"]
      interval: 1s
      retries: 1
    deploy: { replicas: 2 }
    networks: [front]
  client:
    image: demo:1
    command: ["sleep", "100000"]
    stop_grace_period: 1s
    networks: [front]
  other:
    image: demo:1
    command: ["sleep", "100000"]
    stop_grace_period: 1s
    networks: [back]
  inside:
    image: demo:1
    command: ["sleep", "100000"]
    stop_grace_period: 1s
    networks: [secret]
networks:
  front: { attachable: true }
  back: {}
  secret: { internal: true }
"#;

/// A running task of a service: where it runs and its address on its first network.
#[derive(Debug, Clone)]
struct Task {
    node: String,
    container: String,
    addr: String,
}

fn running_tasks(lab: &Lab, service: &str) -> Vec<Task> {
    let nodes = lab.json_on("n1", &["node", "ls"]);
    let hostname = |id: &str| {
        nodes
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["ID"] == id)
            .map(|n| n["Description"]["Hostname"].as_str().unwrap_or_default().to_string())
    };
    let tasks = lab.json_on("n1", &["service", "ps", service]);
    tasks
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["DesiredState"] == "running" && t["Status"]["State"] == "running")
        .filter_map(|t| {
            Some(Task {
                node: hostname(t["NodeID"].as_str()?)?,
                container: t["Status"]["ContainerStatus"]["ContainerID"].as_str()?.to_string(),
                addr: t["NetworksAttachments"][0]["Addresses"][0].as_str()?.split('/').next()?.to_string(),
            })
        })
        .collect()
}

/// A server the test runs, killed when it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running task of `service`, waiting for one (a task may be being replaced).
fn one_running(lab: &Lab, service: &str) -> Task {
    let found = eventually_opt(Duration::from_secs(20), || running_tasks(lab, service).pop());
    found.unwrap_or_else(|| panic!("no running task of {service}:\n{}", lab.on("n1", &["service", "ps", service])))
}

fn eventually_opt<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs `sh -c SCRIPT` in `task`'s container.
fn sh(lab: &Lab, task: &Task, script: &str) -> Output {
    lab.shoal(&["machine", "ssh", &task.node, "--", "shoal", "exec", &task.container, "sh", "-c", script])
}

fn sh_ok(lab: &Lab, task: &Task, script: &str) -> String {
    let out = sh(lab, task, script);
    assert!(out.status.success(), "{script} in {task:?}: {}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The addresses `nslookup NAME` answers in `task`'s container (none when it fails).
fn lookup(lab: &Lab, task: &Task, name: &str) -> BTreeSet<String> {
    let out = sh(lab, task, &format!("nslookup {name}"));
    // busybox prints the server first ("Address: 10.0.1.1:53"), then the answers.
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("Address:"))
        .map(str::trim)
        .filter(|a| !a.contains(':'))
        .map(str::to_string)
        .collect()
}

/// `wget` from `task`'s container: whether `url` answered with the stack's page. (Debian's
/// static busybox `wget` crashes with `-q` or `-T`: `timeout` bounds it instead.)
fn fetches(lab: &Lab, task: &Task, url: &str) -> bool {
    fetch(lab, task, url).is_ok()
}

fn fetch(lab: &Lab, task: &Task, url: &str) -> Result<(), String> {
    let out = sh(lab, task, &format!("timeout 3 wget -O- {url} 2>&1"));
    if out.status.success() && text(&out.stdout).contains("hello from shoal") {
        return Ok(());
    }
    Err(format!("{url} from {task:?}: {}{}", text(&out.stdout), text(&out.stderr)))
}

/// Requires `url` to answer in `task`'s container.
#[track_caller]
fn must_fetch(lab: &Lab, task: &Task, url: &str) {
    if let Err(e) = fetch(lab, task, url) {
        let dir = lab.root.path().join("machines").join(&task.node).join("data/mesh/netns");
        let script = format!("for f in {}/*; do echo $f; nsenter --net=$f nft list ruleset; done", dir.display());
        let rules = lab.shoal(&["machine", "ssh", &task.node, "--", "sh", "-c", &script]);
        panic!(
            "{e}\nthe sandboxes' rules on {}:\n{}\ntasks:\n{}",
            task.node,
            text(&rules.stdout),
            lab.on("n1", &["stack", "ps", "app"])
        );
    }
}

/// Waits for `name`, looked up from `from`, to answer exactly the addresses of `service`'s
/// running tasks (`count` of them, when given); returns those tasks.
#[track_caller]
fn dns_lists(lab: &Lab, from: &Task, name: &str, service: &str, count: Option<usize>, timeout: Duration) -> Vec<Task> {
    let what = format!("{name} to list {service}'s {count:?} running tasks");
    eventually_ok(timeout, &what, || {
        let tasks = running_tasks(lab, service);
        let listed = lookup(lab, from, name);
        if count.is_none_or(|n| n == tasks.len()) && listed == addrs(&tasks) {
            return Ok(tasks);
        }
        let out = sh(lab, from, &format!("nslookup {name}"));
        Err(format!(
            "running {:?}, {name} answers {listed:?}; nslookup: {}{}",
            addrs(&tasks),
            text(&out.stdout),
            text(&out.stderr)
        ))
    })
}

fn addrs(tasks: &[Task]) -> BTreeSet<String> {
    tasks.iter().map(|t| t.addr.clone()).collect()
}

/// The mesh's devices in machine `m`: (overlay bridges, VXLAN devices, task veths).
fn mesh_devices(lab: &Lab, m: &str) -> (usize, usize, usize) {
    let out = lab.ok(&["machine", "ssh", m, "--", "ip", "-o", "link"]);
    let names: Vec<&str> =
        out.lines().filter_map(|l| l.split(": ").nth(1)).map(|n| n.split('@').next().unwrap_or(n)).collect();
    let count = |prefix: &str| names.iter().filter(|n| n.starts_with(prefix)).count();
    (count("sb-"), count("sv-"), count("shv"))
}

#[test]
fn services_find_and_reach_each_other_on_any_node_and_nothing_else() {
    let lab = Lab::up(3);
    let rootfs = lab.root.path().join("rootfs");
    busybox_rootfs(&rootfs).expect("building the rootfs");
    for m in ["n1", "n2", "n3"] {
        lab.on(m, &["image", "import", rootfs.to_str().expect("UTF-8"), "demo:1"]);
    }
    let compose = lab.root.path().join("stack.yml");
    std::fs::write(&compose, STACK).expect("writing the compose file");
    lab.on("n1", &["stack", "deploy", "-c", compose.to_str().expect("UTF-8"), "app"]);

    let client = one_running(&lab, "app_client");
    let web = running_tasks(&lab, "app_web");
    assert_eq!(web.len(), 3);
    assert!(web.iter().any(|t| t.node != client.node), "the scheduler spreads web over the nodes: {web:?}");

    // By name, through the virtual IP, many times (the rotation spreads them); each task by
    // its own address, on whichever node it runs.
    let vip = lookup(&lab, &client, "web");
    assert_eq!(vip.len(), 1, "one virtual IP: {vip:?}");
    assert!(vip.is_disjoint(&addrs(&web)), "the VIP is no task's address");
    for _ in 0..6 {
        must_fetch(&lab, &client, "http://web:8080/");
    }
    must_fetch(&lab, &client, "http://app_web:8080/");
    for t in &web {
        must_fetch(&lab, &client, &format!("http://{}:8080/", t.addr));
    }
    assert_eq!(lookup(&lab, &client, "tasks.web"), addrs(&web));

    // The stock docker CLI: a task's container shows its address on its network; the
    // network shows the containers attached on the node asked and the nodes it spans.
    let docker = |m: &str, args: &[&str]| -> serde_json::Value {
        serde_json::from_str(&lab.docker(m, args)).expect("docker's JSON")
    };
    let inspected = docker(&client.node, &["inspect", &client.container]);
    let front = &inspected[0]["NetworkSettings"]["Networks"]["app_front"];
    assert_eq!(front["IPAddress"], client.addr.as_str(), "{inspected}");
    let network = docker("n1", &["network", "inspect", "app_front"]);
    let peers = network[0]["Peers"].as_array().map(Vec::len).unwrap_or(0);
    let nodes: BTreeSet<&String> = web.iter().map(|t| &t.node).chain([&client.node]).collect();
    assert!(peers >= nodes.len(), "{} peers for tasks on {nodes:?}: {network}", peers);
    let here: BTreeSet<String> =
        web.iter().chain([&client]).filter(|t| t.node == "n1").map(|t| t.container.clone()).collect();
    let shown: BTreeSet<String> =
        network[0]["Containers"].as_object().map(|c| c.keys().cloned().collect()).unwrap_or_default();
    assert!(here.is_subset(&shown), "n1's containers {here:?}, shown {shown:?}");

    // A standalone container on the attachable network, on a worker: it reaches the service
    // by name and is found by its own; a network that is not attachable is refused; removed,
    // it leaves no sandbox and no name.
    let probe_node = "n2";
    let id =
        lab.on(probe_node, &["run", "-d", "--name", "probe", "--network", "app_front", "demo:1", "sleep", "100000"]);
    let probe = Task { node: probe_node.into(), container: id.trim().to_string(), addr: String::new() };
    must_fetch(&lab, &probe, "http://web:8080/");
    let own = sh_ok(&lab, &probe, "ip -4 -o addr show eth0");
    let own = own.split_whitespace().nth(3).and_then(|a| a.split('/').next()).unwrap_or_default().to_string();
    assert!(own.starts_with("10."), "the probe's address: {own}");
    eventually_ok(Duration::from_secs(10), "the probe's name to resolve", || {
        let listed = lookup(&lab, &client, "probe");
        if listed == BTreeSet::from([own.clone()]) {
            return Ok(());
        }
        let out = sh(&lab, &client, "nslookup probe");
        Err(format!("probe at {own}, answered {listed:?}: {}{}", text(&out.stdout), text(&out.stderr)))
    });
    let err = lab.on_fails(probe_node, &["run", "--rm", "--network", "app_back", "demo:1", "true"]);
    assert!(err.contains("attachable"), "{err}");
    let err = lab.on_fails(probe_node, &["run", "--rm", "--network", "nowhere", "demo:1", "true"]);
    assert!(err.contains("network nowhere not found"), "{err}");
    lab.on(probe_node, &["container", "rm", "-f", "probe"]);
    let standalone = || {
        let dir = lab.root.path().join("machines").join(probe_node).join("data/mesh/netns");
        std::fs::read_dir(dir)
            .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("c-")).count())
            .unwrap_or(0)
    };
    assert_eq!(standalone(), 0, "a standalone sandbox left on {probe_node}");
    eventually(Duration::from_secs(10), "the probe's name to go", || {
        lookup(&lab, &client, "probe").is_empty().then_some(())
    });

    // DNS follows scaling.
    for n in [5, 1] {
        lab.on("n1", &["service", "scale", &format!("app_web={n}")]);
        dns_lists(&lab, &client, "tasks.web", "app_web", Some(n), Duration::from_secs(10));
    }
    must_fetch(&lab, &client, "http://web:8080/");

    // dnsrr: the name answers the tasks' own addresses, no VIP.
    let rr = running_tasks(&lab, "app_rr");
    assert_eq!(lookup(&lab, &client, "rr"), addrs(&rr));
    must_fetch(&lab, &client, "http://rr:8080/");

    // Another network: no name, no route to front's tasks.
    let other = one_running(&lab, "app_other");
    assert!(lookup(&lab, &other, "web").is_empty(), "web resolves from another network");
    let web_now = running_tasks(&lab, "app_web");
    for t in web_now.iter().chain(&rr) {
        assert!(!fetches(&lab, &other, &format!("http://{}:8080/", t.addr)), "{t:?} reached from back");
    }

    // The way out: a normal network goes through its node's gateway, an internal one has
    // none. The test serves on the lab's bridge, outside every container network.
    let gateway = {
        let machines = lab.machines();
        let addr = machines[0]["Address"].as_str().unwrap_or_default().to_string();
        let (net, _) = addr.rsplit_once('.').expect("an IPv4 address");
        format!("{net}.1")
    };
    let port = shoal_tests::free_port();
    let _outside = Server(
        std::process::Command::new(shoal_tests::busybox())
            .args(["httpd", "-f", "-p", &format!("{gateway}:{port}"), "-h"])
            .arg(rootfs.join("www"))
            .spawn()
            .expect("busybox httpd on the lab's gateway"),
    );
    let out_url = format!("http://{gateway}:{port}/");
    must_fetch(&lab, &client, &out_url);
    let inside = one_running(&lab, "app_inside");
    assert!(!fetches(&lab, &inside, &out_url), "an internal network reached out");
    assert!(!sh_ok(&lab, &inside, "ip route").contains("default"), "an internal network has a default route");

    // Without --network, a standalone container is on its node's default bridge: an address
    // of its own, the way out through its node, no overlay. The stock CLI's `network connect`
    // puts it on an attachable overlay as well (a second interface: the service answers);
    // `network disconnect` takes it off again.
    let plain = lab.on(probe_node, &["run", "-d", "--name", "plain", "demo:1", "sleep", "100000"]);
    let plain = Task { node: probe_node.into(), container: plain.trim().to_string(), addr: String::new() };
    must_fetch(&lab, &plain, &out_url);
    let web_vip = vip.iter().next().cloned().unwrap_or_default();
    let vip_url = format!("http://{web_vip}:8080/");
    assert!(!fetches(&lab, &plain, &vip_url), "the default bridge reached an overlay");
    let networks_of = |c: &Task| -> BTreeSet<String> {
        let inspected = docker(&c.node, &["inspect", &c.container]);
        inspected[0]["NetworkSettings"]["Networks"].as_object().map(|n| n.keys().cloned().collect()).unwrap_or_default()
    };
    assert_eq!(networks_of(&plain), BTreeSet::from(["bridge".to_string()]));
    lab.docker(probe_node, &["network", "connect", "app_front", "plain"]);
    assert_eq!(networks_of(&plain), BTreeSet::from(["bridge".to_string(), "app_front".to_string()]));
    assert!(sh_ok(&lab, &plain, "ip -o link").contains("eth1"), "no second interface");
    must_fetch(&lab, &plain, &vip_url);
    must_fetch(&lab, &plain, &out_url);
    // Its names too: its resolv.conf now names the network's resolver, as Docker's embedded
    // one is started on connect.
    assert_eq!(lookup(&lab, &plain, "web"), vip, "web from a container connected to front");
    must_fetch(&lab, &plain, "http://web:8080/");
    let overlay_resolv = sh_ok(&lab, &plain, "cat /etc/resolv.conf");
    let err = lab.on_fails(probe_node, &["network", "connect", "app_back", "plain"]);
    assert!(err.contains("attachable"), "{err}");
    lab.docker(probe_node, &["network", "disconnect", "app_front", "plain"]);
    assert!(!fetches(&lab, &plain, &vip_url), "still on the overlay after disconnect");
    assert!(!sh_ok(&lab, &plain, "ip -o link").contains("eth1"), "the interface stayed");
    must_fetch(&lab, &plain, &out_url);
    let resolv = sh_ok(&lab, &plain, "cat /etc/resolv.conf");
    assert!(!resolv.contains("ndots:0") && resolv != overlay_resolv, "off the network, still its resolver: {resolv}");
    let err = lab.on_fails(probe_node, &["network", "disconnect", "app_front", "plain"]);
    assert!(err.contains("not connected"), "{err}");
    lab.on(probe_node, &["container", "rm", "-f", "plain"]);
    assert_eq!(standalone(), 0, "a standalone sandbox left on {probe_node}");

    // Health: a task whose check fails leaves DNS (and the rotation) and is replaced.
    let checked = dns_lists(&lab, &client, "tasks.checked", "app_checked", Some(2), Duration::from_secs(30));
    let sick = checked[0].clone();
    sh_ok(&lab, &sick, "touch /sick");
    eventually(Duration::from_secs(20), "the unhealthy task to leave tasks.checked", || {
        let listed = lookup(&lab, &client, "tasks.checked");
        (!listed.contains(&sick.addr) && !listed.is_empty()).then_some(())
    });
    must_fetch(&lab, &client, "http://checked:8080/");

    // kill -9 a daemon whose node runs a web task: its traffic keeps flowing, and the
    // restarted daemon re-adopts its devices (no duplicates).
    lab.on("n1", &["service", "scale", "app_web=3"]);
    dns_lists(&lab, &client, "tasks.web", "app_web", Some(3), Duration::from_secs(10));
    let target = eventually(Duration::from_secs(20), "a web task away from the client", || {
        let mut away: Vec<Task> =
            running_tasks(&lab, "app_web").into_iter().filter(|t| t.node != client.node).collect();
        // A worker, if one has it: the manager's daemon answers the test's queries.
        away.sort_by_key(|t| t.node == "n1");
        away.into_iter().next()
    });
    let before = mesh_devices(&lab, &target.node);
    lab.signal_daemon(&target.node, "KILL");
    must_fetch(&lab, &client, &format!("http://{}:8080/", target.addr));
    lab.ok(&["machine", "start", &target.node]);
    eventually(Duration::from_secs(20), "the node to be ready again", || {
        let nodes = lab.json_on("n1", &["node", "ls"]);
        nodes.as_array().is_some_and(|a| a.iter().all(|n| n["Status"]["State"] == "ready")).then_some(())
    });
    must_fetch(&lab, &client, &format!("http://{}:8080/", target.addr));
    // The VIP spreads over every task, two of them only seconds old: once all answer, it does.
    eventually(Duration::from_secs(15), "web's VIP to answer after the restart", || {
        fetches(&lab, &client, "http://web:8080/").then_some(())
    });
    for _ in 0..6 {
        must_fetch(&lab, &client, "http://web:8080/");
    }
    assert_eq!(mesh_devices(&lab, &target.node), before, "devices on {} after the restart", target.node);

    // The stack goes: no network device or rule of it is left on any node.
    lab.on("n1", &["stack", "rm", "app"]);
    for m in ["n1", "n2", "n3"] {
        eventually(Duration::from_secs(20), &format!("{m}'s network devices to go"), || {
            (mesh_devices(&lab, m) == (0, 0, 0)).then_some(())
        });
        let rules = lab.ok(&["machine", "ssh", m, "--", "nft", "list", "ruleset"]);
        assert!(!rules.contains("sb-"), "a rule for a removed network on {m}:\n{rules}");
    }

    // Outside a swarm a standalone container is on its node's default bridge too, as with
    // Docker; when the node joins a swarm it keeps its place there and its way out.
    lab.ok(&["machine", "create", "solo"]);
    lab.on("solo", &["image", "import", rootfs.to_str().expect("UTF-8"), "demo:1"]);
    let alone = lab.on("solo", &["run", "-d", "--name", "alone", "demo:1", "sleep", "100000"]);
    let alone = Task { node: "solo".into(), container: alone.trim().to_string(), addr: String::new() };
    assert!(sh_ok(&lab, &alone, "ip -4 -o addr show eth0").contains("inet "), "no address on the bridge");
    must_fetch(&lab, &alone, &out_url);
    assert_eq!(networks_of(&alone), BTreeSet::from(["bridge".to_string()]));
    let token = lab.on("n1", &["swarm", "join-token", "-q", "worker"]).trim().to_string();
    let machines = lab.machines();
    let n1 = machines.as_array().and_then(|m| m.iter().find(|m| m["Name"] == "n1")).expect("n1 in the lab");
    let n1_addr = format!("{}:2377", n1["Address"].as_str().unwrap_or_default());
    lab.on("solo", &["swarm", "join", "--token", &token, &n1_addr]);
    must_fetch(&lab, &alone, &out_url);
    // Now a swarm node, the same container joins an overlay as well.
    lab.on("n1", &["network", "create", "-d", "overlay", "--attachable", "late"]);
    lab.on("solo", &["network", "connect", "late", "alone"]);
    assert!(sh_ok(&lab, &alone, "ip -o link").contains("eth1"), "no interface on the overlay");
    must_fetch(&lab, &alone, &out_url);
}
