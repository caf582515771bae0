//! A one-node swarm running a real stack, end to end: deploy, namespaces,
//! scale, crash and replacement, daemon restarts (killed and stopped),
//! removal without leftovers.

use std::time::Duration;

use shoal_tests::{eventually, Node};

const COMPOSE: &str = r#"
services:
  web:
    image: demo:1
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    environment: { GREETING: hello }
    stop_grace_period: 1s
    deploy: { replicas: 3 }
"#;

fn ns(pid: i32, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/ns/{kind}: {e}"))
}

fn web_containers(node: &Node) -> Vec<(String, i32)> {
    node.running_containers().into_iter().filter(|(n, _)| n.starts_with("app_web.")).collect()
}

fn replicas(node: &Node, service: &str) -> (i64, i64) {
    let services = node.json(&["service", "ls"]);
    let s = services
        .as_array()
        .and_then(|a| a.iter().find(|s| s["Spec"]["Name"] == service))
        .unwrap_or_else(|| panic!("service {service} is not listed"))
        .clone();
    (
        s["ServiceStatus"]["RunningTasks"].as_i64().unwrap_or(-1),
        s["ServiceStatus"]["DesiredTasks"].as_i64().unwrap_or(-1),
    )
}

#[test]
fn a_stack_runs_scales_heals_survives_a_restart_and_goes_away_cleanly() {
    let mut node = Node::start().expect("starting the daemon");
    node.swarm_init();
    node.import_busybox("demo:1");
    let compose = node.write("docker-compose.yml", COMPOSE);
    let compose = compose.to_str().expect("temp paths are UTF-8");

    // Deploy waits for convergence: when it returns, 3 containers run.
    node.ok(&["stack", "deploy", "-c", compose, "app"]);
    assert_eq!(replicas(&node, "app_web"), (3, 3));
    let containers = web_containers(&node);
    assert_eq!(containers.len(), 3, "{containers:?}");
    let me = std::process::id() as i32;
    for (name, pid) in &containers {
        for kind in ["pid", "mnt", "net", "uts", "ipc"] {
            assert_ne!(ns(*pid, kind), ns(me, kind), "{name} shares the host's {kind} namespace");
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("reading the container's environment");
        assert!(
            String::from_utf8_lossy(&environ).split('\0').any(|v| v == "GREETING=hello"),
            "{name} lacks GREETING=hello"
        );
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("reading the container's command");
        assert!(String::from_utf8_lossy(&cmdline).starts_with("httpd\0-f\0-p\08080"), "{name} runs the wrong command");
    }
    let stacks = node.json(&["stack", "ls"]);
    assert_eq!(stacks[0]["Name"], "app");
    let ps = node.ok(&["stack", "ps", "app"]);
    assert_eq!(ps.lines().filter(|l| l.contains("Running")).count(), 3, "{ps}");
    let shutdown = node.ok(&["stack", "ps", "--filter", "desired-state=shutdown", "app"]);
    assert!(!shutdown.contains("Running"), "{shutdown}");
    let err = node.fails(&["stack", "ps", "--filter", "nonsense", "app"]);
    assert!(err.contains("KEY=VALUE"), "{err}");

    // Scale up and down; the command waits for convergence.
    node.ok(&["service", "scale", "app_web=5"]);
    assert_eq!(web_containers(&node).len(), 5);
    node.ok(&["service", "scale", "app_web=1"]);
    let survivor = eventually(Duration::from_secs(30), "scale down to 1 container", || {
        let c = web_containers(&node);
        (c.len() == 1).then(|| c[0].clone())
    });

    // Kill the container's process: the task fails and, after the restart
    // delay, a new task takes its slot.
    // SAFETY: kill(2) on the container's pid, which the test just read.
    unsafe { libc::kill(survivor.1, libc::SIGKILL) };
    let replacement = eventually(Duration::from_secs(30), "a replacement container", || {
        let c = web_containers(&node);
        (c.len() == 1 && c[0].0 != survivor.0).then(|| c[0].clone())
    });
    let tasks = node.json(&["service", "ps", "app_web"]);
    let failed = tasks
        .as_array()
        .expect("tasks are a list")
        .iter()
        .find(|t| t["Status"]["State"] == "failed")
        .expect("the killed task is kept as failed");
    assert_eq!(failed["Status"]["ContainerStatus"]["ExitCode"], 137);
    assert_eq!(failed["DesiredState"], "shutdown");

    // kill -9 the daemon: the container keeps running, and the restarted
    // daemon finds the stack and re-adopts the container (same pid).
    node.kill_daemon();
    assert!(std::path::Path::new(&format!("/proc/{}", replacement.1)).exists(), "the container died with the daemon");
    node.start_daemon().expect("restarting the daemon");
    eventually(Duration::from_secs(30), "the service to report 1/1 after the restart", || {
        (replicas(&node, "app_web") == (1, 1)).then_some(())
    });
    assert_eq!(web_containers(&node), vec![replacement.clone()], "the container was not re-adopted as it was");

    // A graceful stop (SIGTERM) leaves it running too: an agent that stops is no task
    // unassigned, and the next daemon re-adopts the container as it was.
    assert!(node.stop_daemon(), "the daemon failed to stop; its log:\n{}", node.daemon_log());
    assert!(
        std::path::Path::new(&format!("/proc/{}", replacement.1)).exists(),
        "the container died with the daemon's graceful stop"
    );
    node.start_daemon().expect("restarting the daemon");
    eventually(Duration::from_secs(30), "the service to report 1/1 after the graceful restart", || {
        (replicas(&node, "app_web") == (1, 1)).then_some(())
    });
    assert_eq!(web_containers(&node), vec![replacement.clone()], "the container was not re-adopted as it was");

    // Remove the stack: it waits until the containers are gone.
    node.ok(&["stack", "rm", "app"]);
    assert!(node.json(&["container", "ls", "--all"]).as_array().is_some_and(|a| a.is_empty()));
    assert_eq!(node.mounts(), Vec::<String>::new(), "mounts left behind");
    assert_eq!(node.container_processes(), Vec::<i32>::new(), "container processes left behind");
    assert!(node.json(&["service", "ls"]).as_array().is_some_and(|a| a.is_empty()));
}

#[test]
fn bad_input_gets_clear_errors_and_changes_nothing() {
    let node = Node::start().expect("starting the daemon");

    // Swarm operations on a node that is not a manager.
    let err = node.fails(&["service", "ls"]);
    assert!(err.contains("not a swarm manager"), "{err}");
    node.swarm_init();
    let err = node.fails(&["swarm", "init"]);
    assert!(err.contains("already part of a swarm"), "{err}");

    // A malformed compose file: file:line:column, and nothing deployed.
    let bad = node.write("bad.yml", "services:\n  web:\n    image: demo:1\n    deploy: { replicas: three }\n");
    let err = node.fails(&["stack", "deploy", "-c", bad.to_str().expect("UTF-8"), "app"]);
    assert!(err.contains("bad.yml:4:"), "{err}");
    assert!(err.contains("services.web.deploy.replicas"), "{err}");
    let broken = node.write("broken.yml", "services:\n  web: [\n");
    let err = node.fails(&["stack", "deploy", "-c", broken.to_str().expect("UTF-8"), "app"]);
    assert!(err.contains("broken.yml:"), "{err}");
    assert!(node.json(&["service", "ls"]).as_array().is_some_and(|a| a.is_empty()));

    // An image that is not on the node: the deploy fails fast, naming the
    // image, the node and how to import it.
    let missing = node.write("missing.yml", "services:\n  web:\n    image: nope:1\n    command: [\"true\"]\n");
    let err = node.fails(&["stack", "deploy", "-c", missing.to_str().expect("UTF-8"), "app"]);
    assert!(err.contains("image \"nope:1\" is not on node"), "{err}");
    assert!(err.contains("shoal image import"), "{err}");
    let tasks = node.json(&["stack", "ps", "app"]);
    assert!(tasks.as_array().is_some_and(|a| a.iter().all(|t| t["Status"]["State"] != "running")));
    node.ok(&["stack", "rm", "app"]);

    // An update computed from a stale version is refused with 409, and a
    // spec with the wrong types with 400 naming the field.
    node.import_busybox("demo:1");
    let spec = r#"{"Name":"v","TaskTemplate":{"ContainerSpec":{"Image":"demo:1","Args":["sleep","3600"]}}}"#;
    let (code, body) = node.http("POST", "/services/create", spec);
    assert_eq!(code, 201, "{body}");
    let svc: serde_json::Value = serde_json::from_str(&node.http("GET", "/services/v", "").1).expect("service JSON");
    let version = svc["Version"]["Index"].as_u64().expect("a version");
    let (code, body) = node.http("POST", &format!("/services/v/update?version={}", version - 1), spec);
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("out of sequence"), "{body}");
    let (code, body) = node.http("POST", &format!("/v1.51/services/v/update?version={version}"), spec);
    assert_eq!(code, 200, "{body}");
    let (code, body) = node.http("POST", "/services/create", r#"{"Name":"w","Mode":{"Replicated":{"Replicas":"3"}}}"#);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("Mode.Replicated.Replicas"), "{body}");
    node.ok(&["service", "rm", "v"]);

    // Rotating a join token replaces its secret and keeps the CA digest;
    // swarm update changes the cluster's settings.
    let old = node.ok(&["swarm", "join-token", "-q", "worker"]);
    node.ok(&["swarm", "join-token", "--rotate", "worker"]);
    let new = node.ok(&["swarm", "join-token", "-q", "worker"]);
    assert_ne!(old, new);
    assert_eq!(old.rsplit_once('-').map(|p| p.0), new.rsplit_once('-').map(|p| p.0));
    node.ok(&["swarm", "update", "--task-history-limit", "2"]);
    let swarm: serde_json::Value = serde_json::from_str(&node.http("GET", "/swarm", "").1).expect("swarm JSON");
    assert_eq!(swarm["Spec"]["Orchestration"]["TaskHistoryRetentionLimit"], 2);
    let err = node.fails(&["swarm", "update", "--dispatcher-heartbeat", "1ms"]);
    assert!(err.contains("HeartbeatPeriod"), "{err}");

    // Scaling garbage and unknown services.
    let err = node.fails(&["service", "scale", "app_web=lots"]);
    assert!(err.contains("app_web"), "{err}");
    let err = node.fails(&["service", "ps", "nosuch"]);
    assert!(err.contains("not found"), "{err}");

    // The daemon is still fine.
    node.ok(&["info"]);
}

#[test]
fn the_stock_docker_client_lists_nodes_and_services() {
    let node = Node::start().expect("starting the daemon");
    node.swarm_init();
    node.import_busybox("demo:1");
    let compose = node.write(
        "docker-compose.yml",
        "services:\n  sleeper:\n    image: demo:1\n    command: [\"sh\", \"-c\", \"env | grep GREETING; echo oops >&2; exec sleep 3600\"]\n    environment: [GREETING=hello]\n    deploy: { replicas: 2 }\n",
    );
    node.ok(&["stack", "deploy", "-c", compose.to_str().expect("UTF-8"), "app"]);
    let docker = |args: &[&str]| {
        let out = std::process::Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", node.host())
            .output()
            .expect("the docker CLI is on this machine (it is a documented part of the dev and CI machines)");
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let services = docker(&["service", "ls"]);
    let line = services.lines().find(|l| l.contains("app_sleeper")).unwrap_or_else(|| panic!("{services}"));
    assert!(line.contains("2/2"), "{line}");
    let nodes = docker(&["node", "ls"]);
    assert!(nodes.contains("Leader") && nodes.contains('*'), "{nodes}");
    let stacks = docker(&["stack", "ls"]);
    assert!(stacks.lines().any(|l| l.starts_with("app ")), "{stacks}");
    // `docker info` shows the swarm; /info's cluster, as Docker's, has no join tokens (only
    // GET /swarm gives them).
    let info = docker(&["info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.Nodes}}"]);
    assert_eq!(info.trim(), "active true 1");
    let (code, raw) = node.http("GET", "/info", "");
    let info: serde_json::Value = serde_json::from_str(&raw).expect("info JSON");
    assert_eq!(code, 200, "{raw}");
    assert!(info["Swarm"]["Cluster"]["ID"].as_str().is_some_and(|id| !id.is_empty()), "{raw}");
    assert!(info["Swarm"]["Cluster"].get("JoinTokens").is_none() && !raw.contains("SWMTKN"), "{raw}");
    assert_eq!(info["Swarm"]["Raft"]["Voters"], 1, "{raw}");

    // Logs of every task, prefixed with the task, on the right stream.
    let logs = eventually(Duration::from_secs(10), "both tasks' logs", || {
        let out = node.shoal(&["service", "logs", "app_sleeper"]).expect("running shoal service logs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (stdout.matches("GREETING=hello").count() == 2 && stderr.matches("oops").count() == 2).then_some(stdout)
    });
    assert!(logs.lines().all(|l| l.starts_with("app_sleeper.") && l.contains("    | GREETING=hello")), "{logs}");
    // `--follow` prints what is there, then keeps streaming until stopped.
    let mut follow = std::process::Command::new(shoal_tests::shoal_bin())
        .args(["service", "logs", "--follow", "app_sleeper"])
        .env("SHOAL_HOST", node.host())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting shoal service logs --follow");
    std::thread::sleep(Duration::from_secs(1));
    assert!(follow.try_wait().expect("polling the follower").is_none(), "logs --follow returned at once");
    let _ = follow.kill();
    let followed = follow.wait_with_output().expect("collecting the follower's output");
    assert_eq!(String::from_utf8_lossy(&followed.stdout).matches("GREETING=hello").count(), 2);
    let out = std::process::Command::new("docker")
        .args(["service", "logs", "app_sleeper"])
        .env("DOCKER_HOST", node.host())
        .output()
        .expect("running docker service logs");
    let docker_logs = String::from_utf8_lossy(&out.stdout);
    assert_eq!(docker_logs.matches("GREETING=hello").count(), 2, "{docker_logs}");
    node.ok(&["stack", "rm", "app"]);
}

/// `docker` (the stock client) against `node`; its standard output.
fn docker(node: &Node, args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", node.host())
        .output()
        .expect("the docker CLI is on this machine (it is a documented part of the dev and CI machines)");
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn inspected(node: &Node, args: &[&str]) -> serde_json::Value {
    let out = docker(node, args);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("docker {args:?} ({e}): {out}"));
    list[0].clone()
}

#[test]
fn the_stock_docker_client_creates_and_changes_services_nodes_networks_secrets_and_configs() {
    let node = Node::start().expect("starting the daemon");
    node.swarm_init();
    node.import_busybox("demo:1");
    docker(&node, &["network", "create", "--driver", "overlay", "--attachable", "--label", "tier=front", "front"]);
    let data = node.write("secret.txt", "s3cret");
    let data = data.to_str().expect("UTF-8");
    docker(&node, &["secret", "create", "pw", data]);
    docker(&node, &["config", "create", "--label", "kind=conf", "conf", data]);
    docker(
        &node,
        &[
            "service",
            "create",
            "--detach",
            "--no-resolve-image",
            "--name",
            "web",
            "--replicas",
            "2",
            "--network",
            "front",
            "--secret",
            "source=pw,target=pw,mode=0400",
            "--config",
            "source=conf,target=/etc/conf",
            "--health-cmd",
            "true",
            "--health-interval",
            "1s",
            "--update-max-failure-ratio",
            "0.1",
            "--rollback-failure-action",
            "rollback",
            "--mount",
            "type=tmpfs,target=/scratch,tmpfs-size=1048576",
            "--limit-pids",
            "100",
            "--env",
            "A=1",
            "--stop-grace-period",
            "1s",
            "demo:1",
            "sleep",
            "3600",
        ],
    );
    let running = |n: &str| {
        eventually(Duration::from_secs(60), &format!("web to run {n} healthy tasks"), || {
            let out = docker(&node, &["service", "ls", "--filter", "name=web"]);
            out.lines().any(|l| l.contains(" web ") && l.contains(n)).then_some(())
        })
    };
    running("2/2");

    // What the client sent reads back as it sent it.
    let spec = inspected(&node, &["service", "inspect", "web"])["Spec"].clone();
    let container = &spec["TaskTemplate"]["ContainerSpec"];
    assert_eq!(container["Healthcheck"]["Test"], serde_json::json!(["CMD-SHELL", "true"]), "{spec}");
    assert_eq!(container["Secrets"][0]["File"]["Mode"], 0o400, "{spec}");
    assert_eq!(container["Mounts"][0]["TmpfsOptions"]["SizeBytes"], 1_048_576, "{spec}");
    assert_eq!(spec["TaskTemplate"]["Resources"]["Limits"]["Pids"], 100, "{spec}");
    assert_eq!(spec["RollbackConfig"]["FailureAction"], "rollback", "{spec}");
    // The API renders the ratio as Docker does, not as the float32's exact value.
    let (code, raw) = node.http("GET", "/services/web", "");
    assert_eq!(code, 200, "{raw}");
    let raw: serde_json::Value = serde_json::from_str(&raw).expect("service JSON");
    assert_eq!(raw["Spec"]["UpdateConfig"]["MaxFailureRatio"].as_f64(), Some(0.1), "{raw}");

    // Updates post the whole spec back, changed.
    docker(&node, &["service", "update", "--detach", "--env-add", "B=2", "web"]);
    let spec = inspected(&node, &["service", "inspect", "web"])["Spec"].clone();
    let mut env: Vec<_> = spec["TaskTemplate"]["ContainerSpec"]["Env"].as_array().cloned().unwrap_or_default();
    env.sort_by_key(|e| e.to_string());
    assert_eq!(env, ["A=1", "B=2"], "{spec}");
    docker(&node, &["service", "scale", "--detach", "web=1"]);
    running("1/1");

    let id = docker(&node, &["node", "ls", "-q"]);
    docker(&node, &["node", "update", "--label-add", "zone=a", id.trim()]);
    let n = inspected(&node, &["node", "inspect", "self"]);
    assert_eq!((n["Spec"]["Labels"]["zone"].clone(), n["Spec"]["Role"].clone()), ("a".into(), "manager".into()));
    docker(&node, &["swarm", "update", "--task-history-limit", "3"]);
    let swarm: serde_json::Value = serde_json::from_str(&node.http("GET", "/swarm", "").1).expect("swarm JSON");
    assert_eq!(swarm["Spec"]["Orchestration"]["TaskHistoryRetentionLimit"], 3, "{swarm}");

    let net = inspected(&node, &["network", "inspect", "front"]);
    assert_eq!((net["Driver"].clone(), net["Scope"].clone()), ("overlay".into(), "swarm".into()), "{net}");
    assert_eq!((net["Labels"]["tier"].clone(), net["Attachable"].clone()), ("front".into(), true.into()), "{net}");
    let conf = inspected(&node, &["config", "inspect", "conf"]);
    assert_eq!(
        (conf["Spec"]["Labels"]["kind"].clone(), conf["Spec"]["Data"].clone()),
        ("conf".into(), "czNjcmV0".into())
    );
    let secret = inspected(&node, &["secret", "inspect", "pw"]);
    assert_eq!((secret["Spec"]["Name"].clone(), secret["Spec"].get("Data")), ("pw".into(), None), "{secret}");

    docker(&node, &["service", "rm", "web"]);
    docker(&node, &["secret", "rm", "pw"]);
    docker(&node, &["config", "rm", "conf"]);
    docker(&node, &["network", "rm", "front"]);
    assert_eq!(docker(&node, &["service", "ls", "-q"]).trim(), "");
}

#[test]
fn redeploys_change_only_what_changed() {
    let node = Node::start().expect("starting the daemon");
    node.swarm_init();
    node.import_busybox("demo:1");
    let write = |web_env: &str| {
        node.write(
            "stack.yml",
            &format!(
                "services:\n  web:\n    image: demo:1\n    command: [\"sleep\", \"3600\"]\n    environment: [MODE={web_env}]\n    stop_grace_period: 1s\n    deploy: {{ replicas: 2 }}\n  db:\n    image: demo:1\n    command: [\"sleep\", \"3600\"]\n    stop_grace_period: 1s\n"
            ),
        )
    };
    let file = write("a");
    let file = file.to_str().expect("UTF-8").to_string();
    node.ok(&["stack", "deploy", "-c", &file, "app"]);
    let before = node.running_containers();
    assert_eq!(before.len(), 3, "{before:?}");

    // The same file again: nothing is updated, nothing restarts.
    let out = node.ok(&["stack", "deploy", "-c", &file, "app"]);
    assert!(out.contains("Service app_web is unchanged") && out.contains("Service app_db is unchanged"), "{out}");
    let mut again = node.running_containers();
    again.sort();
    let mut sorted = before.clone();
    sorted.sort();
    assert_eq!(again, sorted, "an unchanged redeploy restarted containers");

    // One service changed: only its tasks are replaced.
    write("b");
    let out = node.ok(&["stack", "deploy", "-c", &file, "app"]);
    assert!(out.contains("Updating service app_web") && out.contains("Service app_db is unchanged"), "{out}");
    let after = eventually(Duration::from_secs(30), "web's tasks to be replaced", || {
        let c = node.running_containers();
        let webs = c.iter().filter(|(n, _)| n.starts_with("app_web.")).count();
        (c.len() == 3 && webs == 2 && !c.iter().any(|x| before.iter().any(|b| b == x && b.0.starts_with("app_web."))))
            .then_some(c)
    });
    let db_before: Vec<_> = before.iter().filter(|(n, _)| n.starts_with("app_db.")).collect();
    let db_after: Vec<_> = after.iter().filter(|(n, _)| n.starts_with("app_db.")).collect();
    assert_eq!(db_before, db_after, "the unchanged service was restarted");

    // --prune removes the services the file no longer has.
    node.write(
        "stack.yml",
        "services:\n  db:\n    image: demo:1\n    command: [\"sleep\", \"3600\"]\n    stop_grace_period: 1s\n",
    );
    let out = node.ok(&["stack", "deploy", "--prune", "-c", &file, "app"]);
    assert!(out.contains("Removing service app_web"), "{out}");
    eventually(Duration::from_secs(30), "web's containers to go", || {
        node.running_containers().iter().all(|(n, _)| !n.starts_with("app_web.")).then_some(())
    });
    node.ok(&["stack", "rm", "app"]);
}
