//! The routing mesh on a swarm of simulated hosts: a published port answers on every node's
//! address, whichever node runs the task (TCP and UDP); a port published as 0 gets one from 30000-32767; a
//! port another service holds is refused naming both. Real devices, real traffic from the
//! test's own host.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use shoal_tests::{busybox_rootfs, eventually_ok, Lab};

const STACK: &str = r#"
services:
  web:
    image: demo:1
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    stop_grace_period: 1s
    ports: ["8080:8080"]
  auto:
    image: demo:1
    command: ["httpd", "-f", "-p", "80", "-h", "/www"]
    stop_grace_period: 1s
    ports: ["80"]
  echo:
    image: demo:1
    # The test serves UDP echo in this task's network namespace (busybox has no UDP server).
    command: ["sleep", "100000"]
    stop_grace_period: 1s
    ports: ["9999:9999/udp"]
  proxied:
    image: demo:1
    # Sends back, in hex, the first 28 bytes it reads: a PROXY v2 header for IPv4.
    command: ["nc", "-ll", "-p", "9000", "-e", "od", "-An", "-tx1", "-N28"]
    stop_grace_period: 1s
    ports: ["9001:9000"]
    deploy:
      labels: { com.shoal.proxy-protocol: "9001" }
"#;

const TAKEN: &str = r#"
services:
  again:
    image: demo:1
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    ports: ["8080:8080"]
"#;

/// An HTTP GET of `/` at `addr` from this host: the body, or why not.
fn get(addr: SocketAddr) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| format!("{addr}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(|e| format!("{addr}: {e}"))?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(|e| format!("{addr}: {e}"))?;
    if !answer.starts_with("HTTP/1.") || !answer.contains(" 200 ") {
        return Err(format!("{addr}: {answer}"));
    }
    Ok(answer)
}

/// The running task of `service`: (its node's name, its id).
fn one_task(lab: &Lab, service: &str) -> (String, String) {
    let nodes = lab.json_on("n1", &["node", "ls"]);
    let tasks = lab.json_on("n1", &["service", "ps", service]);
    let task = tasks
        .as_array()
        .and_then(|t| t.iter().find(|t| t["DesiredState"] == "running" && t["Status"]["State"] == "running"))
        .unwrap_or_else(|| panic!("{service} has no running task: {tasks}"));
    let node = nodes
        .as_array()
        .and_then(|n| n.iter().find(|n| n["ID"] == task["NodeID"]))
        .and_then(|n| n["Description"]["Hostname"].as_str())
        .unwrap_or_default()
        .to_string();
    (node, task["ID"].as_str().unwrap_or_default().to_string())
}

/// A UDP echo server on `port` in the network namespace at `netns`, on a thread of this test
/// that entered it; it ends with the test.
fn udp_echo_in(netns: &std::path::Path, port: u16) -> std::thread::JoinHandle<()> {
    use std::os::fd::AsRawFd;
    let ns = std::fs::File::open(netns).unwrap_or_else(|e| panic!("{}: {e}", netns.display()));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        // SAFETY: setns(2) on this thread only, with a namespace descriptor just opened.
        let entered = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } == 0;
        let socket = entered.then(|| std::net::UdpSocket::bind(("0.0.0.0", port)).ok()).flatten();
        let _ = ready_tx.send(socket.is_some());
        let Some(socket) = socket else { return };
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], from);
        }
    });
    assert_eq!(ready_rx.recv(), Ok(true), "the UDP echo server could not start in {}", netns.display());
    server
}

/// Each machine's address on the lab's bridge.
fn addresses(lab: &Lab) -> Vec<(String, String)> {
    let machines = lab.machines();
    machines
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    (
                        m["Name"].as_str().unwrap_or_default().to_string(),
                        m["Address"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_published_port_answers_on_every_node() {
    let lab = Lab::up(3);
    let rootfs = lab.root.path().join("rootfs");
    busybox_rootfs(&rootfs).expect("building the rootfs");
    for m in ["n1", "n2", "n3"] {
        lab.on(m, &["image", "import", rootfs.to_str().expect("UTF-8"), "demo:1"]);
    }
    let compose = lab.root.path().join("stack.yml");
    std::fs::write(&compose, STACK).expect("writing the compose file");
    lab.on("n1", &["stack", "deploy", "-c", compose.to_str().expect("UTF-8"), "app"]);

    // The port published as 0 got one from Docker's range; `service ls` shows both.
    let inspected: serde_json::Value =
        serde_json::from_str(&lab.on("n1", &["service", "inspect", "app_auto"])).expect("service inspect's JSON");
    let auto = inspected[0]["Endpoint"]["Ports"][0]["PublishedPort"].as_u64().unwrap_or(0);
    assert!((30000..=32767).contains(&auto), "{}", inspected[0]["Endpoint"]);
    let listed = lab.on("n1", &["service", "ls"]);
    assert!(listed.contains("*:8080->8080/tcp") && listed.contains(&format!("*:{auto}->80/tcp")), "{listed}");

    // Every node answers on both ports, whichever node runs the task.
    for (name, addr) in addresses(&lab) {
        for port in [8080, auto as u16] {
            let at: SocketAddr = format!("{addr}:{port}").parse().expect("an address");
            let page = eventually_ok(Duration::from_secs(30), &format!("{name} to answer on {port}"), || get(at));
            assert!(page.contains("hello"), "{page}");
        }
    }

    // UDP: an echo server in the echo task's network namespace answers through every node.
    let echo_task = one_task(&lab, "app_echo");
    let netns = lab.root.path().join("machines").join(&echo_task.0).join("data/mesh/netns").join(&echo_task.1);
    let _echo = udp_echo_in(&netns, 9999);
    for (name, addr) in addresses(&lab) {
        let at: SocketAddr = format!("{addr}:9999").parse().expect("an address");
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("a UDP socket");
        socket.set_read_timeout(Some(Duration::from_millis(500))).expect("a timeout");
        eventually_ok(Duration::from_secs(30), &format!("{name} to echo UDP"), || {
            let message = format!("ping {name}");
            socket.send_to(message.as_bytes(), at).map_err(|e| e.to_string())?;
            let mut buf = [0u8; 64];
            let (n, from) = socket.recv_from(&mut buf).map_err(|e| e.to_string())?;
            if &buf[..n] == message.as_bytes() && from == at {
                Ok(())
            } else {
                Err(format!("{from} answered {:?}", String::from_utf8_lossy(&buf[..n])))
            }
        });
    }

    // PROXY protocol v2, asked for by a label: the backend reads the client's own address
    // and the one it connected to before anything else.
    for (name, addr) in addresses(&lab) {
        let at: SocketAddr = format!("{addr}:9001").parse().expect("an address");
        let (header, client) = eventually_ok(Duration::from_secs(30), &format!("{name}'s PROXY header"), || {
            let mut stream = TcpStream::connect_timeout(&at, Duration::from_secs(2)).map_err(|e| e.to_string())?;
            stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
            let client = stream.local_addr().map_err(|e| e.to_string())?;
            let mut hex = String::new();
            let _ = stream.read_to_string(&mut hex);
            let bytes: Vec<u8> = hex.split_whitespace().filter_map(|b| u8::from_str_radix(b, 16).ok()).collect();
            if bytes.len() == 28 {
                Ok((bytes, client))
            } else {
                Err(format!("{} bytes: {hex:?}", bytes.len()))
            }
        });
        assert_eq!(&header[..12], b"\r\n\r\n\0\r\nQUIT\n", "the v2 signature");
        assert_eq!((header[12], header[13]), (0x21, 0x11), "PROXY over TCP/IPv4");
        let src = SocketAddr::from((
            <[u8; 4]>::try_from(&header[16..20]).expect("4 bytes"),
            u16::from_be_bytes([header[24], header[25]]),
        ));
        let dst = SocketAddr::from((
            <[u8; 4]>::try_from(&header[20..24]).expect("4 bytes"),
            u16::from_be_bytes([header[26], header[27]]),
        ));
        assert_eq!(src, client, "the client's own address");
        assert_eq!(dst, at, "the address the client connected to");
    }

    // The stock docker CLI publishes through the same mesh, and sees the ports.
    lab.docker(
        "n1",
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "viadocker",
            "-p",
            "8081:8080",
            "demo:1",
            "httpd",
            "-f",
            "-p",
            "8080",
            "-h",
            "/www",
        ],
    );
    let listed = lab.docker("n1", &["service", "ls"]);
    assert!(listed.contains("*:8081->8080/tcp"), "{listed}");
    for (name, addr) in addresses(&lab) {
        let at: SocketAddr = format!("{addr}:8081").parse().expect("an address");
        eventually_ok(Duration::from_secs(30), &format!("{name} to answer on 8081"), || get(at));
    }

    // A port another service holds is refused, naming both; nothing is created.
    let taken = lab.root.path().join("taken.yml");
    std::fs::write(&taken, TAKEN).expect("writing the compose file");
    let err = lab.on_fails("n1", &["stack", "deploy", "-c", taken.to_str().expect("UTF-8"), "other"]);
    assert!(err.contains("port 8080/tcp is already in use by service app_web"), "{err}");
    let services = lab.on("n1", &["service", "ls"]);
    assert!(!services.contains("other_again"), "{services}");
}
