//! Standalone containers through the daemon (`shoal run`, `container …`),
//! without a swarm.

use std::time::Duration;

use shoal_tests::{eventually, Node};

#[test]
fn run_prints_output_and_exits_with_the_containers_code() {
    let node = Node::start().expect("starting the daemon");
    node.import_busybox("bb:1");

    let out = node
        .shoal(&["run", "--rm", "-e", "WHO=shoal", "bb:1", "sh", "-c", "echo hi $WHO; echo err >&2; exit 3"])
        .expect("running shoal run");
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi shoal\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert!(node.json(&["ps", "--all"]).as_array().is_some_and(|a| a.is_empty()), "--rm left the container");

    // A missing command: Docker's 127, with the reason.
    let out = node.shoal(&["run", "--rm", "bb:1", "nosuch"]).expect("running shoal run");
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("executable file not found"));
    // A missing image: a clear error naming it.
    let err = node.fails(&["run", "--rm", "nope:1", "true"]);
    assert!(err.contains("nope:1"), "{err}");
}

#[test]
fn detached_containers_stop_log_and_go() {
    let node = Node::start().expect("starting the daemon");
    node.import_busybox("bb:1");
    let id = node.ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "bb:1",
        "sh",
        "-c",
        "trap 'echo bye; exit 0' TERM; echo up; while true; do sleep 0.1; done",
    ]);
    assert_eq!(id.trim().len(), 64, "{id}");
    let logs = eventually(Duration::from_secs(10), "the container's first line", || {
        let l = node.ok(&["logs", "ticker"]);
        l.contains("up").then_some(l)
    });
    assert_eq!(logs, "up\n");
    let listed = node.json(&["ps"]);
    assert_eq!(listed[0]["Names"][0], "/ticker");
    let pid = listed[0]["Pid"].as_i64().expect("a running container has a pid");
    assert_ne!(
        std::fs::read_link(format!("/proc/{pid}/ns/pid")).expect("reading its pid namespace"),
        std::fs::read_link("/proc/self/ns/pid").expect("reading ours")
    );

    // stop sends SIGTERM first: the trap runs and the exit code is 0.
    node.ok(&["container", "stop", "ticker"]);
    let inspect = node.json_plain(&["container", "inspect", "ticker"]);
    assert_eq!(inspect[0]["State"]["Status"], "exited");
    assert_eq!(inspect[0]["State"]["ExitCode"], 0);
    assert_eq!(node.ok(&["logs", "ticker"]), "up\nbye\n");

    // Removing a running container needs --force.
    node.ok(&["container", "start", "ticker"]);
    let err = node.fails(&["container", "rm", "ticker"]);
    assert!(err.contains("ticker"), "{err}");
    node.ok(&["container", "rm", "--force", "ticker"]);
    assert!(node.json(&["ps", "--all"]).as_array().is_some_and(|a| a.is_empty()));
    assert_eq!(node.mounts(), Vec::<String>::new());
    let err = node.fails(&["container", "inspect", "ticker"]);
    assert!(err.contains("ticker"), "{err}");
}
