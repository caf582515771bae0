//! A swarm of simulated hosts: workers join with the token over TLS that
//! pins the CA, tasks spread over the nodes, bad joins are refused, and a
//! node that goes away has its tasks rescheduled.

use std::time::Duration;

use shoal_tests::{busybox_rootfs, eventually, Lab};

#[test]
fn workers_join_run_tasks_and_take_over_from_a_lost_node() {
    let lab = Lab::up(3);
    let nodes = lab.json_on("n1", &["node", "ls"]);
    assert_eq!(nodes.as_array().map(|a| a.len()), Some(3), "{nodes}");
    assert!(nodes.as_array().is_some_and(|a| a.iter().all(|n| n["Status"]["State"] == "ready")), "{nodes}");
    assert!(lab.on("n2", &["info"]).contains("Is Manager: false"));

    // The same image on every node, then a stack spread over them.
    let rootfs = lab.root.path().join("rootfs");
    busybox_rootfs(&rootfs).expect("building the rootfs");
    for m in ["n1", "n2", "n3"] {
        lab.on(m, &["image", "import", rootfs.to_str().expect("UTF-8"), "demo:1"]);
    }
    let compose = lab.root.path().join("compose.yml");
    std::fs::write(
        &compose,
        "services:\n  web:\n    image: demo:1\n    command: [\"sleep\", \"3600\"]\n    stop_grace_period: 1s\n    deploy: { replicas: 6 }\n",
    )
    .expect("writing the compose file");
    lab.on("n1", &["stack", "deploy", "-c", compose.to_str().expect("UTF-8"), "app"]);
    for m in ["n1", "n2", "n3"] {
        assert_eq!(lab.running_on(m, "app_web."), 2, "{m} should run 2 of the 6 tasks");
    }

    // Drain n2: its tasks move to the other nodes at once; labels stick.
    lab.on("n1", &["node", "update", "--availability", "drain", "--label-add", "zone=b", "n2"]);
    eventually(Duration::from_secs(30), "n2's tasks to move away", || {
        (lab.running_on("n2", "app_web.") == 0
            && lab.running_on("n1", "app_web.") + lab.running_on("n3", "app_web.") == 6)
            .then_some(())
    });
    let n2: serde_json::Value = serde_json::from_str(&lab.on("n1", &["node", "inspect", "n2"])).expect("JSON");
    assert_eq!(n2[0]["Spec"]["Availability"], "drain");
    assert_eq!(n2[0]["Spec"]["Labels"]["zone"], "b");
    lab.on("n1", &["node", "update", "--availability", "active", "n2"]);
    let err = lab.on_fails("n1", &["node", "rm", "n2"]);
    assert!(err.contains("not down"), "{err}");

    // Joins that must be refused, leaving the swarm as it was.
    lab.ok(&["machine", "create", "x1"]);
    let token = lab.on("n1", &["swarm", "join-token", "-q", "worker"]).trim().to_string();
    let n1 = machine_addr(&lab, "n1");
    let bad_secret =
        format!("{}-{}", &token[..token.rfind('-').expect("a token has dashes")], "0000000000000000000000000");
    let err = lab.on_fails("x1", &["swarm", "join", "--token", &bad_secret, &n1]);
    assert!(err.contains("invalid join token"), "{err}");
    let other_ca = format!("SWMTKN-1-{}-{}", "1".repeat(50), "abc");
    let err = lab.on_fails("x1", &["swarm", "join", "--token", &other_ca, &n1]);
    assert!(err.contains("does not match"), "{err}");
    let err = lab.on_fails("x1", &["swarm", "join", "--token", "garbage", &n1]);
    assert!(err.contains("SWMTKN-1"), "{err}");
    assert_eq!(lab.json_on("n1", &["node", "ls"]).as_array().map(|a| a.len()), Some(3));

    // n3's daemon goes away: n3 is marked down and its 2 tasks run elsewhere.
    lab.ok(&["machine", "stop", "n3"]);
    eventually(Duration::from_secs(60), "n3 to be down and its tasks rescheduled", || {
        let nodes = lab.json_on("n1", &["node", "ls"]);
        let down =
            nodes.as_array()?.iter().any(|n| n["Description"]["Hostname"] == "n3" && n["Status"]["State"] == "down");
        let elsewhere = lab.running_on("n1", "app_web.") + lab.running_on("n2", "app_web.");
        (down && elsewhere == 6).then_some(())
    });
    // Back again, it stops its stale containers: their tasks run elsewhere.
    lab.ok(&["machine", "start", "n3"]);
    eventually(Duration::from_secs(60), "n3 to be ready and clean", || {
        let nodes = lab.json_on("n1", &["node", "ls"]);
        let ready =
            nodes.as_array()?.iter().any(|n| n["Description"]["Hostname"] == "n3" && n["Status"]["State"] == "ready");
        (ready && lab.running_on("n3", "app_web.") == 0).then_some(())
    });
    // n3 leaves: its containers go; once it is down, the manager removes it,
    // and a manager cannot leave without --force.
    lab.on("n3", &["swarm", "leave"]);
    assert_eq!(lab.running_on("n3", "app_web."), 0);
    eventually(Duration::from_secs(30), "n3 to be down after leaving", || {
        let nodes = lab.json_on("n1", &["node", "ls"]);
        nodes
            .as_array()?
            .iter()
            .any(|n| n["Description"]["Hostname"] == "n3" && n["Status"]["State"] == "down")
            .then_some(())
    });
    lab.on("n1", &["node", "rm", "n3"]);
    assert_eq!(lab.json_on("n1", &["node", "ls"]).as_array().map(|a| a.len()), Some(2));
    let err = lab.on_fails("n1", &["swarm", "leave"]);
    assert!(err.contains("--force"), "{err}");
    lab.on("n1", &["stack", "rm", "app"]);
}

fn machine_addr(lab: &Lab, name: &str) -> String {
    let ms: serde_json::Value = serde_json::from_str(&lab.ok(&["machine", "ls", "--format", "json"])).expect("JSON");
    ms.as_array()
        .and_then(|a| a.iter().find(|m| m["Name"] == name))
        .and_then(|m| m["Address"].as_str())
        .map(|a| format!("{a}:2377"))
        .expect("the machine is listed")
}
