//! Several managers on simulated hosts: they agree, survive the loss of a
//! minority (a killed leader, a cut link, a frozen worker), refuse writes
//! without quorum, lose no acknowledged write, and bring a new manager up
//! to date with a snapshot.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_tests::{busybox_rootfs, eventually, Lab};

/// `service ls` names on machine `m`, sorted.
fn services_on(lab: &Lab, m: &str) -> Vec<String> {
    let mut names: Vec<String> = lab
        .json_on(m, &["service", "ls"])
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["Spec"]["Name"].as_str().map(String::from)).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Service names and replica counts on machine `m`, through its API.
fn services_api(lab: &Lab, m: &str) -> Option<Vec<(String, u64)>> {
    let (status, body) = lab.http(m, "GET", "/services", "").ok()?;
    if status != 200 {
        return None;
    }
    let list: serde_json::Value = serde_json::from_str(&body).ok()?;
    let mut out: Vec<(String, u64)> = list
        .as_array()?
        .iter()
        .map(|s| {
            let name = s["Spec"]["Name"].as_str().unwrap_or_default().to_string();
            (name, s["Spec"]["Mode"]["Replicated"]["Replicas"].as_u64().unwrap_or(0))
        })
        .collect();
    out.sort();
    Some(out)
}

fn info(lab: &Lab, m: &str) -> serde_json::Value {
    let (_, body) = lab.http(m, "GET", "/info", "").expect("GET /info");
    serde_json::from_str(&body).expect("/info is JSON")
}

fn node<'a>(nodes: &'a serde_json::Value, host: &str) -> Option<&'a serde_json::Value> {
    nodes.as_array()?.iter().find(|n| n["Description"]["Hostname"] == host)
}

fn import_everywhere(lab: &Lab, machines: &[&str]) {
    let rootfs = lab.root.path().join("rootfs");
    busybox_rootfs(&rootfs).expect("building the rootfs");
    for m in machines {
        lab.on(m, &["image", "import", rootfs.to_str().expect("UTF-8"), "demo:1"]);
    }
}

fn service_body(name: &str) -> String {
    serde_json::json!({
        "Name": name,
        "TaskTemplate": { "ContainerSpec": { "Image": "demo:1", "Args": ["sleep", "3600"] } },
        "Mode": { "Replicated": { "Replicas": 0 } },
    })
    .to_string()
}

#[test]
fn three_managers_survive_a_leader_kill_a_cut_link_and_a_frozen_worker() {
    let lab = Lab::up_with_managers(5, 3);
    let all = ["n1", "n2", "n3", "n4", "n5"];
    let nodes = lab.json_on("n2", &["node", "ls"]);
    let managers: Vec<_> =
        all.iter().filter(|m| node(&nodes, m).is_some_and(|n| n["ManagerStatus"].is_object())).collect();
    assert_eq!(managers, [&"n1", &"n2", &"n3"], "{nodes}");
    assert_eq!(lab.leader("n3").as_deref(), Some("n1"));
    assert_eq!(info(&lab, "n3")["Swarm"]["Raft"]["Voters"], 3);
    assert_eq!(info(&lab, "n4")["Swarm"]["ControlAvailable"], false);
    let pretty = lab.on("n2", &["node", "inspect", "--pretty", "n1"]);
    assert!(pretty.contains("Hostname:\t\tn1") && pretty.contains(" Leader:\t\tYes"), "{pretty}");

    // A worker frozen (SIGSTOP) goes down; its task runs elsewhere; thawed, it
    // stops its stale container and is ready again.
    import_everywhere(&lab, &all);
    lab.on("n2", &["service", "create", "--name", "web", "--replicas", "5", "demo:1", "sleep", "3600"]);
    assert_eq!(lab.running_on("n5", "web."), 1);
    lab.signal_daemon("n5", "STOP");
    eventually(Duration::from_secs(60), "n5 down and its task elsewhere", || {
        let nodes = lab.json_on("n1", &["node", "ls"]);
        let down = node(&nodes, "n5")?["Status"]["State"] == "down";
        let elsewhere: usize = all[..4].iter().map(|m| lab.running_on(m, "web.")).sum();
        (down && elsewhere == 5).then_some(())
    });
    lab.signal_daemon("n5", "CONT");
    eventually(Duration::from_secs(60), "n5 ready again without its stale container", || {
        let nodes = lab.json_on("n1", &["node", "ls"]);
        (node(&nodes, "n5")?["Status"]["State"] == "ready" && lab.running_on("n5", "web.") == 0).then_some(())
    });

    // kill -9 of the leader: another manager leads, and both survivors take writes.
    lab.signal_daemon("n1", "KILL");
    let leader = eventually(Duration::from_secs(30), "a new leader", || lab.leader("n2").filter(|l| l != "n1"));
    assert!(["n2", "n3"].contains(&leader.as_str()), "{leader}");
    lab.on("n2", &["service", "create", "-d", "--name", "after-kill", "--replicas", "0", "demo:1", "sleep", "1"]);
    lab.on("n3", &["service", "scale", "-d", "after-kill=2"]);
    // The old leader comes back as a follower and catches up.
    lab.ok(&["machine", "start", "n1"]);
    eventually(Duration::from_secs(30), "n1 to catch up", || {
        let n1 = services_api(&lab, "n1")?;
        (n1 == services_api(&lab, "n2")? && n1.iter().any(|s| s == &("after-kill".to_string(), 2))).then_some(())
    });
    assert_eq!(lab.leader("n1"), lab.leader("n2"));

    // Cut one follower's link: it refuses writes for want of quorum, the
    // majority goes on; healed, all three agree.
    let leader = lab.leader("n1").expect("a leader");
    let cut = ["n1", "n2", "n3"].into_iter().find(|m| *m != leader).expect("a follower");
    let other = ["n1", "n2", "n3"].into_iter().find(|m| *m != leader && *m != cut).expect("another manager");
    lab.ok(&["machine", "ssh", cut, "--", "ip", "link", "set", "eth0", "down"]);
    let err = lab.on_fails(cut, &["service", "create", "-d", "--name", "minority", "demo:1", "sleep", "1"]);
    assert!(err.contains("no quorum: 1 of 3 managers reachable"), "{err}");
    lab.on(other, &["service", "create", "-d", "--name", "majority", "--replicas", "0", "demo:1", "sleep", "1"]);
    lab.ok(&["machine", "ssh", cut, "--", "ip", "link", "set", "eth0", "up"]);
    eventually(Duration::from_secs(30), "the three managers to agree after healing", || {
        let a = services_api(&lab, "n1")?;
        (a == services_api(&lab, "n2")? && a == services_api(&lab, "n3")? && a.iter().any(|s| s.0 == "majority"))
            .then_some(())
    });
    assert!(!services_on(&lab, cut).contains(&"minority".to_string()));

    // Promote a worker: it joins the raft membership; demote it again.
    lab.on("n2", &["node", "promote", "n4"]);
    eventually(Duration::from_secs(60), "n4 to be a voting manager", || {
        let i = info(&lab, "n4");
        (i["Swarm"]["ControlAvailable"] == true && i["Swarm"]["Raft"]["Voters"] == 4).then_some(())
    });
    lab.on("n4", &["service", "create", "-d", "--name", "from-n4", "--replicas", "0", "demo:1", "sleep", "1"]);
    lab.on("n1", &["node", "demote", "n4"]);
    eventually(Duration::from_secs(60), "n4 to be a worker again", || {
        let nodes = lab.json_on("n1", &["node", "ls"]);
        let worker = !node(&nodes, "n4")?["ManagerStatus"].is_object();
        (worker
            && info(&lab, "n4")["Swarm"]["ControlAvailable"] == false
            && info(&lab, "n1")["Swarm"]["Raft"]["Voters"] == 3)
            .then_some(())
    });

    // A removed node's certificate is refused: it does not come back.
    lab.on("n1", &["node", "rm", "--force", "n5"]);
    std::thread::sleep(Duration::from_secs(4));
    let nodes = lab.json_on("n1", &["node", "ls"]);
    assert!(node(&nodes, "n5").is_none(), "{nodes}");
    lab.on("n1", &["service", "rm", "web", "after-kill", "majority", "from-n4"]);
}

#[test]
fn five_managers_lose_no_acknowledged_write_and_refuse_writes_without_quorum() {
    let lab = Lab::up_with_managers(5, 5);
    let managers = ["n1", "n2", "n3", "n4", "n5"];
    let alive: Arc<Mutex<Vec<&str>>> = Arc::new(Mutex::new(managers.to_vec()));
    let done = Arc::new(AtomicUsize::new(0));

    // A client writes 500 services, each through some live manager, retrying
    // an unacknowledged one until it is (409 means an earlier try committed).
    let writer = {
        let (alive, done, socket_root) = (alive.clone(), done.clone(), lab.root.path().join("machines"));
        std::thread::spawn(move || {
            for i in 0..500 {
                let name = format!("w{i}");
                let mut attempt = 0usize;
                loop {
                    let m = {
                        let alive = alive.lock().unwrap_or_else(|p| p.into_inner());
                        alive[(i + attempt) % alive.len()]
                    };
                    attempt += 1;
                    let socket = socket_root.join(m).join("shoal.sock");
                    match shoal_tests::http(&socket, "POST", "/services/create", &service_body(&name)) {
                        Ok((201, _)) | Ok((409, _)) => break,
                        _ => std::thread::sleep(Duration::from_millis(50)),
                    }
                    assert!(attempt < 2000, "write {name} never acknowledged");
                }
                done.store(i + 1, Ordering::SeqCst);
            }
        })
    };
    // The leader is killed twice while the writes go on, and comes back.
    for at in [100, 300] {
        eventually(Duration::from_secs(120), "writes to progress", || {
            (done.load(Ordering::SeqCst) >= at).then_some(())
        });
        let leader = lab.leader("n1").or_else(|| lab.leader("n2")).expect("a leader");
        alive.lock().unwrap_or_else(|p| p.into_inner()).retain(|m| *m != leader);
        lab.signal_daemon(&leader, "KILL");
        std::thread::sleep(Duration::from_secs(3));
        lab.ok(&["machine", "start", &leader]);
        *alive.lock().unwrap_or_else(|p| p.into_inner()) = managers.to_vec();
    }
    writer.join().expect("the writer finished");
    let expected: Vec<String> = {
        let mut v: Vec<String> = (0..500).map(|i| format!("w{i}")).collect();
        v.sort();
        v
    };
    for m in managers {
        eventually(Duration::from_secs(30), "every acknowledged write on every manager", || {
            let names: Vec<String> = services_api(&lab, m)?.into_iter().map(|(n, _)| n).collect();
            (names == expected).then_some(())
        });
    }

    // Two managers down: the other three still write.
    let leader = lab.leader("n1").expect("a leader");
    let mut down: Vec<&str> = managers.iter().copied().filter(|m| *m != leader).take(2).collect();
    for m in &down {
        lab.signal_daemon(m, "KILL");
    }
    let up: Vec<&str> = managers.iter().copied().filter(|m| !down.contains(m)).collect();
    lab.on(up[0], &["service", "create", "-d", "--name", "two-down", "--replicas", "0", "demo:1", "sleep", "1"]);
    // A manager leaving now would break quorum: refused with the arithmetic.
    let err = lab.on_fails(up[1], &["swarm", "leave"]);
    assert!(err.contains("2 reachable of 4 managers, below the quorum of 3"), "{err}");
    // Three down: writes are refused with the reason; reads still answer.
    lab.signal_daemon(up[2], "KILL");
    down.push(up[2]);
    let err = lab.on_fails(up[0], &["service", "create", "-d", "--name", "three-down", "demo:1", "sleep", "1"]);
    assert!(err.contains("no quorum: 2 of 5 managers reachable"), "{err}");
    assert!(services_on(&lab, up[1]).contains(&"two-down".to_string()));
}

#[test]
fn a_new_manager_gets_a_thousand_services_by_snapshot() {
    let lab = Lab::new();
    lab.ok(&["machine", "create", "n1"]);
    lab.ok(&["machine", "create", "n2"]);
    lab.ok(&["machine", "create", "n3"]);
    lab.on("n1", &["swarm", "init", "--snapshot-interval", "200"]);
    // A worker that joins while n1 is the only manager.
    let worker_token = lab.on("n1", &["swarm", "join-token", "-q", "worker"]).trim().to_string();
    let n1_addr = format!("{}:2377", info(&lab, "n1")["Swarm"]["NodeAddr"].as_str().expect("n1's address"));
    lab.on("n3", &["swarm", "join", "--token", &worker_token, &n1_addr]);
    for i in 0..1000 {
        let (status, body) = lab.http("n1", "POST", "/services/create", &service_body(&format!("s{i}"))).expect("POST");
        assert_eq!(status, 201, "{body}");
    }
    let snapshot = eventually(Duration::from_secs(30), "a snapshot on n1", || {
        info(&lab, "n1")["Swarm"]["Raft"]["Snapshot"].as_u64().filter(|s| *s >= 800)
    });
    let token = lab.on("n1", &["swarm", "join-token", "-q", "manager"]).trim().to_string();
    let n1 = info(&lab, "n1")["Swarm"]["NodeAddr"].as_str().expect("n1's address").to_string();
    lab.on("n2", &["swarm", "join", "--token", &token, &format!("{n1}:2377")]);
    let i = info(&lab, "n2");
    assert_eq!(i["Swarm"]["ControlAvailable"], true, "{i}");
    assert!(i["Swarm"]["Raft"]["Snapshot"].as_u64().is_some_and(|s| s >= snapshot), "no snapshot installed: {i}");
    assert_eq!(services_api(&lab, "n2").map(|s| s.len()), Some(1000));
    // The worker learns of the new manager and keeps it for its next start.
    let n2_addr = format!("{}:2377", i["Swarm"]["NodeAddr"].as_str().expect("n2's address"));
    let node_json = lab.root.path().join("machines/n3/data/swarm/node.json");
    eventually(Duration::from_secs(30), "n3 to record n2 as a manager", || {
        let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&node_json).ok()?).ok()?;
        saved["managers"].as_array()?.iter().any(|m| m == n2_addr.as_str()).then_some(())
    });
    // The new manager takes writes too.
    lab.on("n2", &["service", "create", "-d", "--name", "after", "--replicas", "0", "demo:1", "sleep", "1"]);
    eventually(Duration::from_secs(10), "n1 to see n2's write", || {
        (services_api(&lab, "n1")?.len() == 1001).then_some(())
    });
}

#[test]
fn node_certificates_renew_themselves_before_they_expire() {
    let lab = Lab::up(1);
    lab.on("n1", &["swarm", "update", "--cert-expiry", "1m"]);
    lab.ok(&["machine", "create", "n2"]);
    let token = lab.on("n1", &["swarm", "join-token", "-q", "worker"]).trim().to_string();
    let n1 = info(&lab, "n1")["Swarm"]["NodeAddr"].as_str().expect("n1's address").to_string();
    lab.on("n2", &["swarm", "join", "--token", &token, &format!("{n1}:2377")]);
    let joined = std::time::Instant::now();
    let cert = lab.root.path().join("machines/n2/data/certificates/node.crt");
    let first = std::fs::read_to_string(&cert).expect("n2's certificate");
    // Renewed between 50% and 80% of its 1 minute (plus 6 s of backdating).
    eventually(Duration::from_secs(60), "n2's certificate to be renewed", || {
        std::fs::read_to_string(&cert).ok().filter(|c| *c != first).map(|_| ())
    });
    // Once the first certificate has expired, n2 still talks to the manager.
    if let Some(left) = Duration::from_secs(65).checked_sub(joined.elapsed()) {
        std::thread::sleep(left);
    }
    eventually(Duration::from_secs(20), "n2 ready with its renewed certificate", || {
        let nodes = lab.json_on("n1", &["node", "ls"]);
        (node(&nodes, "n2")?["Status"]["State"] == "ready").then_some(())
    });
}
