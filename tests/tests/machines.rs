//! Simulated hosts: machines are network + UTS namespaces with their own
//! daemon, address and hostname, and `lab down` removes everything.

use shoal_tests::Lab;

fn netns_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

#[test]
fn machines_have_their_own_network_hostname_and_daemon() {
    let lab = Lab::new();
    lab.ok(&["machine", "create", "-d", "netns", "m1"]);
    lab.ok(&["machine", "create", "m2"]);
    let ms = lab.machines();
    assert_eq!(ms.as_array().map(|a| a.len()), Some(2), "{ms}");
    let m2_addr = ms[1]["Address"].as_str().expect("an address").to_string();
    assert_eq!(ms[0]["Daemon"], "running");
    assert_eq!(ms[0]["Swarm"], "inactive");

    // Its own hostname, its own network: m1 reaches m2 over the lab bridge.
    assert_eq!(lab.ok(&["machine", "ssh", "m1", "--", "hostname"]).trim(), "m1");
    let bb = shoal_tests::busybox();
    let bb = bb.to_str().expect("UTF-8 path");
    lab.ok(&["machine", "ssh", "m1", "--", bb, "ping", "-c1", "-W2", &m2_addr]);
    let links = lab.ok(&["machine", "ssh", "m1", "--", "ip", "-o", "link"]);
    assert!(links.contains("eth0") && !links.contains("shl"), "m1 sees the host's links: {links}");

    // Its own daemon, found through SHOAL_HOST inside the machine.
    lab.ok(&["machine", "ssh", "m1", "--", "shoal", "swarm", "init"]);
    let nodes = lab.ok(&["machine", "ssh", "m1", "--", "shoal", "node", "ls"]);
    assert!(nodes.lines().any(|l| l.contains(" m1 ") && l.contains("Leader")), "{nodes}");
    assert_eq!(lab.machines()[0]["Swarm"], "manager");
    assert_eq!(lab.machines()[1]["Swarm"], "inactive");

    // Stop and start the daemon; the swarm state is kept.
    lab.ok(&["machine", "stop", "m1"]);
    assert_eq!(lab.machines()[0]["Daemon"], "stopped");
    lab.ok(&["machine", "start", "m1"]);
    assert_eq!(lab.machines()[0]["Swarm"], "manager");

    // rm and lab down leave nothing; lab down twice is fine.
    let ns2 = format!("shl{}-m2", lab_tag(&lab));
    assert!(netns_exists(&ns2), "no netns {ns2}");
    lab.ok(&["machine", "rm", "m2"]);
    assert!(!netns_exists(&ns2));
    lab.ok(&["lab", "down"]);
    lab.ok(&["lab", "down"]);
    assert!(!lab.root.path().exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("reading mountinfo");
    assert!(!mounts.contains(&lab.root.path().display().to_string()), "mounts left behind");
}

fn lab_tag(lab: &Lab) -> String {
    let desc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lab.root.path().join("lab.json")).expect("lab.json")).expect("lab JSON");
    desc["tag"].as_str().expect("a tag").to_string()
}
