//! A manager under requests and peers that would take it down: counts that
//! would fill its memory, a disk that fills up under raft, connections that
//! never speak, and a raft log damaged on disk.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use shoal_tests::{eventually, free_port, Node};

fn service_body(replicas: u64) -> String {
    serde_json::json!({
        "Name": "big",
        "TaskTemplate": { "ContainerSpec": { "Image": "demo:1", "Args": ["sleep", "3600"] } },
        "Mode": { "Replicated": { "Replicas": replicas } },
    })
    .to_string()
}

/// A POST whose body the daemon may refuse before reading it all: the
/// answer is read even when sending the rest of the body fails.
fn post_unread(socket: &Path, path: &str, body: &str) -> (u16, String) {
    use std::io::Write;
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("the API socket");
    let head = format!(
        "POST {path} HTTP/1.0\r\nHost: shoal\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("the request head");
    let _ = s.write_all(body.as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

fn docker(node: &Node, args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", node.host())
        .output()
        .expect("the docker CLI is on this machine (it is a documented part of the dev and CI machines)")
}

/// `GET path` on the node's API, as JSON.
fn get(node: &Node, path: &str) -> serde_json::Value {
    let (status, body) = node.http("GET", path, "");
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path} is not JSON ({e}): {body}"))
}

fn tasks(node: &Node) -> usize {
    let (status, body) = node.http("GET", "/tasks", "");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).expect("JSON").as_array().map_or(0, |a| a.len())
}

/// 2^32 replicas, through every path a service is made or changed by, get a
/// 400 that says the limit and how to raise it; raised, a service larger
/// than the nodes can take costs one batch of tasks, also after a restart.
/// Negative resources and oversized bodies are refused too.
#[test]
fn replicas_and_other_counts_are_bounded_on_every_path() {
    let mut node = Node::start().expect("a daemon");
    node.swarm_init();
    node.import_busybox("demo:1");

    let (status, body) = node.http("POST", "/services/create", &service_body(4_294_967_296));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("4294967296") && body.contains("limit of 10000"), "{body}");
    assert!(body.contains("shoal swarm update --max-replicas"), "{body}");

    let err = node.fails(&["service", "create", "-d", "--name", "cli", "--replicas", "20000", "demo:1", "sleep", "1"]);
    assert!(err.contains("limit of 10000"), "{err}");
    let out = docker(&node, &["service", "create", "-d", "--name", "dk", "--replicas", "20000", "demo:1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("limit of 10000"), "{out:?}");
    node.ok(&["service", "create", "-d", "--name", "small", "--replicas", "0", "demo:1", "sleep", "3600"]);
    let err = node.fails(&["service", "scale", "-d", "small=20000"]);
    assert!(err.contains("limit of 10000"), "{err}");
    let compose = node.write("big.yml", "services:\n  web:\n    image: demo:1\n    deploy:\n      replicas: 20000\n");
    let err = node.fails(&["stack", "deploy", "-d", "-c", compose.to_str().expect("UTF-8"), "app"]);
    assert!(err.contains("limit of 10000"), "{err}");
    assert_eq!(tasks(&node), 0, "a refused request left tasks behind");

    // Numbers that make no sense are refused, naming the field.
    let negative = serde_json::json!({
        "Name": "neg",
        "TaskTemplate": {
            "ContainerSpec": { "Image": "demo:1" },
            "Resources": { "Limits": { "MemoryBytes": -1 } },
        },
    });
    let (status, body) = node.http("POST", "/services/create", &negative.to_string());
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("TaskTemplate.Resources.Limits.MemoryBytes is -1"), "{body}");
    // A body over the API's limit says so.
    let huge = serde_json::json!({ "Name": "huge", "Labels": { "x": "y".repeat(3 << 20) } });
    let (status, body) = post_unread(&node.socket(), "/services/create", &huge.to_string());
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("over the limit of 2 MiB"), "{body}");

    // Raised, a service of 100000 replicas on a node that takes no tasks
    // holds one batch of tasks, however long it waits.
    node.ok(&["swarm", "update", "--max-replicas", "100000"]);
    let swarm = get(&node, "/swarm");
    assert_eq!(swarm["Spec"]["Limits"]["MaxReplicas"], 100000, "{swarm}");
    let me = get(&node, "/info")["Swarm"]["NodeID"].as_str().unwrap_or_default().to_string();
    node.ok(&["node", "update", "--availability", "drain", &me]);
    let (status, body) = node.http("POST", "/services/create", &service_body(100_000));
    assert_eq!(status, 201, "{body}");
    let held = eventually(Duration::from_secs(30), "the first batch of tasks", || {
        let n = tasks(&node);
        (n >= 100).then_some(n)
    });
    assert_eq!(held, 100, "more than one batch of tasks waits for a node");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(tasks(&node), 100, "the batch grew while no node could take it");
    node.kill_daemon();
    node.start_daemon().expect("the daemon restarts");
    eventually(Duration::from_secs(30), "the manager back", || (tasks(&node) >= 100).then_some(()));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(tasks(&node), 100, "a restart made more tasks than one batch");
}

/// A tmpfs mounted over a directory for the length of a test, unmounted
/// even when the test fails.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("the mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mounting a tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem of `dir` with `dir/filler` until it has no room left.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("the filler");
    let chunk = vec![0x5au8; 1 << 20];
    for size in [1 << 20, 4096, 1] {
        while f.write_all(&chunk[..size]).and_then(|()| f.flush()).is_ok() {}
    }
    path
}

/// The manager's raft state on a small disk that fills up: writes fail at
/// once with an error that says what to free, `info` and `node ls` say so
/// meanwhile, and once space is freed writes work again without a restart.
#[test]
fn a_full_raft_disk_fails_writes_clearly_and_they_work_again_once_freed() {
    let node = Node::start().expect("a daemon");
    let raft = node.data_root().join("raft");
    let _tmpfs = Tmpfs::mount(&raft, "96m");
    node.swarm_init();
    node.ok(&["secret", "create", "before", node.write("s0", "a secret").to_str().expect("UTF-8")]);
    let filler = fill(&raft);

    // Write until a write fails (the log's segment has room allocated
    // ahead: the first writes may still fit); a few hundred KiB each.
    let data = node.write("big", &"x".repeat(400 << 10));
    let mut failed = None;
    for i in 0..60 {
        let out = node.shoal(&["secret", "create", &format!("s{i}"), data.to_str().expect("UTF-8")]).expect("shoal");
        if !out.status.success() {
            failed = Some(String::from_utf8_lossy(&out.stderr).into_owned());
            break;
        }
    }
    let err = failed.expect("a write failed on a full disk");
    assert!(err.contains("out of space") && err.contains(&raft.display().to_string()), "{err}");
    assert!(err.contains("free space"), "{err}");
    let info = node.ok(&["info"]);
    assert!(info.contains("Error:") && info.contains("out of space"), "{info}");
    let nodes = node.ok(&["node", "ls"]);
    assert!(nodes.contains("Unreachable (see below)") && nodes.contains("out of space"), "{nodes}");

    std::fs::remove_file(&filler).expect("freeing the space");
    let out = node.ok(&["secret", "create", "after", data.to_str().expect("UTF-8")]);
    assert!(!out.trim().is_empty());
    node.ok(&["service", "create", "-d", "--name", "after", "--replicas", "0", "busybox", "true"]);
    let info = node.ok(&["info"]);
    assert!(!info.contains("Error:"), "{info}");
    let nodes = node.ok(&["node", "ls"]);
    assert!(nodes.contains("Leader"), "{nodes}");
    let secrets = node.ok(&["secret", "ls", "-q"]);
    assert!(secrets.lines().count() >= 2, "{secrets}");
}

/// A raw TCP connection from `from` (a loopback address) to `to` that sends
/// nothing.
fn connect_from(from: Ipv4Addr, to: SocketAddrV4) -> TcpStream {
    let sockaddr = |a: SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*a.ip()).to_be() },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a new socket; the addresses are valid sockaddr_in for their
    // length; the descriptor is owned by the TcpStream made from it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let local = sockaddr(SocketAddrV4::new(from, 0));
        let bound = libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len);
        assert_eq!(bound, 0, "bind {from}: {}", std::io::Error::last_os_error());
        let remote = sockaddr(to);
        let connected = libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len);
        assert_eq!(connected, 0, "connect {to}: {}", std::io::Error::last_os_error());
        stream
    }
}

/// Whether `s` was closed by the server: its read ends within `wait`.
fn closed_within(mut s: &TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).expect("a read timeout");
    let mut byte = [0u8; 1];
    match s.read(&mut byte) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

/// Whether `s` is open: nothing to read yet, and no end.
fn still_open(s: &TcpStream) -> bool {
    s.set_nonblocking(true).expect("nonblocking");
    let mut byte = [0u8; 1];
    let open = matches!((&*s).read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    s.set_nonblocking(false).expect("blocking");
    open
}

/// Connections that never start TLS are closed after the handshake timeout;
/// a flood from one address beyond the per-address limit is refused at once
/// (and logged once) while a node from another address joins and works.
#[test]
fn the_manager_port_sheds_silent_and_flooding_connections() {
    let manager = Node::start().expect("a daemon");
    manager.swarm_init();
    let port = SocketAddrV4::new(Ipv4Addr::LOCALHOST, manager.port);

    let silent: Vec<TcpStream> = (0..20).map(|_| connect_from(Ipv4Addr::new(127, 0, 0, 3), port)).collect();
    let started = Instant::now();
    let flood: Vec<TcpStream> = (0..300).map(|_| connect_from(Ipv4Addr::new(127, 0, 0, 2), port)).collect();
    // Beyond the first 128 from that address: closed at once, while the
    // first ones are still waiting for their handshake.
    std::thread::sleep(Duration::from_millis(500));
    let open = flood[..128].iter().filter(|s| still_open(s)).count();
    assert_eq!(open, 128, "connections within the limit were closed before their handshake timeout");
    let refused = flood[128..].iter().filter(|s| closed_within(s, Duration::from_secs(2))).count();
    assert_eq!(refused, 172, "connections beyond the per-address limit stayed open");
    assert!(started.elapsed() < Duration::from_secs(9), "the check ran into the handshake timeout");

    // A node from another address joins and runs meanwhile.
    let token = manager.ok(&["swarm", "join-token", "-q", "worker"]).trim().to_string();
    let worker = Node::start().expect("a second daemon");
    worker.ok(&["swarm", "join", "--token", &token, &format!("127.0.0.1:{}", manager.port)]);
    eventually(Duration::from_secs(30), "the worker ready", || {
        let nodes = manager.json(&["node", "ls"]);
        let ready = nodes.as_array()?.iter().filter(|n| n["Status"]["State"] == "ready").count();
        (ready == 2).then_some(())
    });

    // The silent ones are closed by the handshake timeout.
    let closed = silent.iter().filter(|s| closed_within(s, Duration::from_secs(30))).count();
    assert_eq!(closed, 20, "connections that never handshook stayed open");
    let log = manager.daemon_log();
    assert_eq!(log.matches("refusing connections to the manager port from 127.0.0.2").count(), 1, "{log}");
    drop(flood);
}

/// The first segment file of a manager's raft log.
fn segment(data_root: &Path) -> PathBuf {
    let dir = data_root.join("raft/raft.wal");
    let mut segments: Vec<PathBuf> =
        std::fs::read_dir(&dir).expect("the raft log").map(|e| e.expect("an entry").path()).collect();
    segments.sort();
    segments.into_iter().next().expect("a segment")
}

fn node_id(node: &Node) -> String {
    get(node, "/info")["Swarm"]["NodeID"].as_str().expect("a node ID").to_string()
}

/// A byte damaged in the middle of a manager's raft log: the manager does
/// not start, says where and what to do, and deletes nothing; the recovery
/// the README gives (demote and remove it from a healthy manager, move its
/// state aside, join again) brings it back as a manager with every write.
#[test]
fn a_damaged_raft_log_stops_the_manager_and_the_documented_recovery_works() {
    let first = Node::start().expect("a daemon");
    first.swarm_init();
    let remote = format!("127.0.0.1:{}", first.port);
    let token = first.ok(&["swarm", "join-token", "-q", "manager"]).trim().to_string();
    let mut others = Vec::new();
    for _ in 0..2 {
        let node = Node::start().expect("a daemon");
        let listen = format!("127.0.0.1:{}", node.port);
        node.ok(&[
            "swarm",
            "join",
            "--token",
            &token,
            "--listen-addr",
            &listen,
            "--advertise-addr",
            "127.0.0.1",
            &remote,
        ]);
        others.push(node);
    }
    for i in 0..20 {
        first.ok(&["service", "create", "-d", "--name", &format!("s{i}"), "--replicas", "0", "busybox", "true"]);
    }
    let mut damaged = others.pop().expect("the third manager");
    let old_id = node_id(&damaged);
    eventually(Duration::from_secs(30), "the third manager caught up", || {
        (damaged.ok(&["service", "ls", "-q"]).lines().count() == 20).then_some(())
    });
    damaged.kill_daemon();

    // A flipped byte in the middle of the log, with intact records after it.
    let seg = segment(&damaged.data_root());
    let mut bytes = std::fs::read(&seg).expect("the segment");
    let used = bytes.iter().rposition(|b| *b != 0).expect("records");
    bytes[used / 2] ^= 0x10;
    std::fs::write(&seg, &bytes).expect("damaging the segment");
    let files_before = std::fs::read_dir(seg.parent().expect("the log dir")).expect("ls").count();
    assert!(damaged.start_daemon().is_err(), "a manager with a damaged log started");
    let log = damaged.daemon_log();
    assert!(log.contains("the raft log is damaged") && log.contains(&seg.display().to_string()), "{log}");
    assert!(log.contains("Nothing was deleted") && log.contains("shoal node demote"), "{log}");
    assert_eq!(std::fs::read(&seg).expect("the segment"), bytes, "the damaged segment changed");
    assert_eq!(std::fs::read_dir(seg.parent().expect("the log dir")).expect("ls").count(), files_before);

    // The recovery the README gives.
    first.ok(&["node", "demote", &old_id]);
    first.ok(&["node", "rm", "--force", &old_id]);
    let root = damaged.data_root();
    let aside = damaged.dir.path().join("aside");
    std::fs::create_dir_all(&aside).expect("a place aside");
    for d in ["raft", "swarm", "certificates"] {
        std::fs::rename(root.join(d), aside.join(d)).expect("moving the state aside");
    }
    damaged.start_daemon().expect("the daemon starts without its swarm state");
    let listen = format!("127.0.0.1:{}", free_port());
    damaged.ok(&[
        "swarm",
        "join",
        "--token",
        &token,
        "--listen-addr",
        &listen,
        "--advertise-addr",
        "127.0.0.1",
        &remote,
    ]);
    let info = get(&damaged, "/info");
    assert_eq!(info["Swarm"]["ControlAvailable"], true, "{info}");
    eventually(Duration::from_secs(30), "the rejoined manager has every write", || {
        (damaged.ok(&["service", "ls", "-q"]).lines().count() == 20).then_some(())
    });
    let info = get(&first, "/info");
    assert_eq!(info["Swarm"]["Raft"]["Voters"], 3, "{info}");
}
