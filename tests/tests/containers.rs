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

    // The docker CLI's `run --rm` (AutoRemove: the daemon removes the container, and the CLI,
    // waiting for that removal, still gets the exit code), repeatedly, as the removal races
    // the CLI's wait.
    for _ in 0..5 {
        let out = std::process::Command::new("docker")
            .args(["run", "--rm", "bb:1", "sh", "-c", "echo hi; exit 3"])
            .env("DOCKER_HOST", node.host())
            .output()
            .expect("the docker CLI is on this machine (it is a documented part of the dev and CI machines)");
        assert_eq!(out.status.code(), Some(3), "docker run --rm: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    }
    eventually(Duration::from_secs(10), "docker run --rm's containers removed", || {
        node.json(&["ps", "--all"]).as_array().is_some_and(|a| a.is_empty()).then_some(())
    });
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
    // --since and --until, from the lines' own timestamps (RFC 3339, as `logs -t` prints them).
    let stamped = node.ok(&["logs", "-t", "ticker"]);
    let stamps: Vec<&str> = stamped.lines().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(stamps.len(), 2, "{stamped}");
    assert_eq!(node.ok(&["logs", "--since", stamps[1], "ticker"]), "bye\n");
    assert_eq!(node.ok(&["logs", "--until", stamps[0], "ticker"]), "up\n");
    assert_eq!(node.ok(&["logs", "--since", "1h", "ticker"]), "up\nbye\n");
    let err = node.fails(&["logs", "--since", "yesterday", "ticker"]);
    assert!(err.contains("invalid time \"yesterday\""), "{err}");

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

#[test]
fn container_options_take_effect_inside() {
    let node = Node::start().expect("starting the daemon");
    node.import_busybox("bb:1");
    let run = |args: &[&str]| node.shoal(&[&["run", "--rm"], args].concat()).expect("running shoal run");

    // A memory limit: going over it is an OOM kill, exit 137.
    let out = run(&["-m", "32m", "bb:1", "sh", "-c", "tail /dev/zero"]);
    assert_eq!(out.status.code(), Some(137), "{}", String::from_utf8_lossy(&out.stderr));
    // A read-only root: writes fail.
    let out = run(&["--read-only", "bb:1", "touch", "/x"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"));
    // Capabilities: ping needs NET_RAW.
    assert_eq!(run(&["bb:1", "ping", "-c1", "-W1", "127.0.0.1"]).status.code(), Some(0));
    let out = run(&["--cap-drop", "NET_RAW", "bb:1", "ping", "-c1", "-W1", "127.0.0.1"]);
    assert_ne!(out.status.code(), Some(0));
    // The user.
    assert_eq!(String::from_utf8_lossy(&run(&["-u", "1000", "bb:1", "id", "-u"]).stdout), "1000\n");
    // Its network: its own namespace (loopback only) by default outside a swarm on a daemon
    // run with `--bridge none` (as the tests' daemons are) and with none; the host's
    // with host. Added hosts and name servers reach its files.
    let links = |args: &[&str]| {
        String::from_utf8_lossy(&run(&[args, &["bb:1", "ls", "/sys/class/net"]].concat()).stdout).into_owned()
    };
    assert_eq!(links(&[]), "lo\n");
    assert_eq!(links(&["--network", "none"]), "lo\n");
    let host: Vec<String> = std::fs::read_dir("/sys/class/net")
        .expect("the host's interfaces")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    let inside = links(&["--network", "host"]);
    assert!(host.iter().all(|l| inside.lines().any(|i| i == l)), "host interfaces {host:?}, inside {inside}");
    let files = run(&[
        "--add-host",
        "db:10.1.2.3",
        "--dns",
        "10.9.9.9",
        "--dns-search",
        "example.test",
        "bb:1",
        "cat",
        "/etc/hosts",
        "/etc/resolv.conf",
    ]);
    let files = String::from_utf8_lossy(&files.stdout);
    for line in ["10.1.2.3 db", "nameserver 10.9.9.9", "search example.test"] {
        assert!(files.contains(line), "{line} missing from\n{files}");
    }
    let err = node.fails(&["run", "--rm", "--add-host", "db:nowhere", "bb:1", "true"]);
    assert!(err.contains("is not an IP address"), "{err}");
    // A named volume keeps its content across containers.
    assert_eq!(run(&["-v", "data:/data", "bb:1", "sh", "-c", "echo kept > /data/f"]).status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&run(&["-v", "data:/data:ro", "bb:1", "cat", "/data/f"]).stdout), "kept\n");
    // ... until `volume rm`, refused while a container uses it.
    assert_eq!(node.ok(&["volume", "ls", "-q"]), "data\n");
    node.ok(&["container", "create", "--name", "holder", "-v", "data:/data", "bb:1", "true"]);
    let err = node.fails(&["volume", "rm", "data"]);
    assert!(err.contains("in use by container holder"), "{err}");
    node.ok(&["container", "rm", "holder"]);
    node.ok(&["volume", "rm", "data"]);
    assert_eq!(node.ok(&["volume", "ls", "-q"]), "");
    let err = node.fails(&["volume", "rm", "data"]);
    assert!(err.contains("no such volume"), "{err}");
    // `-v /path` alone: an anonymous volume, gone with a --rm container; docker's CLI alike.
    assert_eq!(
        String::from_utf8_lossy(&run(&["-v", "/anon", "bb:1", "sh", "-c", "grep -c ' /anon ' /proc/mounts"]).stdout),
        "1\n"
    );
    let docker = |args: &[&str]| {
        std::process::Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", node.host())
            .output()
            .expect("the docker CLI is on this machine (it is a documented part of the dev and CI machines)")
    };
    let out = docker(&["volume", "create", "dv"]);
    assert!(out.status.success(), "docker volume create: {}", String::from_utf8_lossy(&out.stderr));
    let out = docker(&["run", "--rm", "-v", "dv:/d", "-v", "/anon2", "bb:1", "sh", "-c", "echo x > /d/x"]);
    assert!(out.status.success(), "docker run -v: {}", String::from_utf8_lossy(&out.stderr));
    let out = docker(&["volume", "ls", "--format", "{{.Name}}"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "dv\n",
        "anonymous volumes left: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(docker(&["volume", "rm", "dv"]).status.success());
    // A pids limit: forks beyond it fail.
    let out = run(&["--pids-limit", "5", "bb:1", "sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; wait"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("can't fork") || out.status.code() != Some(0));

    // exec joins a running container; pause freezes it.
    node.ok(&["run", "-d", "--name", "box", "bb:1", "sleep", "600"]);
    assert_eq!(node.ok(&["exec", "box", "hostname"]).trim().len(), 12);
    assert_ne!(node.ok(&["exec", "box", "sh", "-c", "echo $$"]).trim(), "1", "exec must not be the container's pid 1");
    // The docker CLI's `docker exec`: output on both streams, the exit code, env, user and
    // workdir; -d runs it in the background; -it is refused with what to do instead.
    let out = docker(&[
        "exec",
        "-e",
        "X=1",
        "-u",
        "1000",
        "-w",
        "/bin",
        "box",
        "sh",
        "-c",
        "echo $X $(id -u) $PWD; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "docker exec: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1 1000 /bin\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert!(docker(&["exec", "-d", "box", "touch", "/detached"]).status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !docker(&["exec", "box", "test", "-e", "/detached"]).status.success() {
        assert!(std::time::Instant::now() < deadline, "docker exec -d did not run its command");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // -i: the client's input is the command's stdin, to its end.
    let mut cat = std::process::Command::new("docker")
        .args(["exec", "-i", "box", "sh", "-c", "cat; echo done"])
        .env("DOCKER_HOST", node.host())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("docker exec -i");
    std::io::Write::write_all(&mut cat.stdin.take().expect("stdin"), b"typed\n").expect("writing to docker exec -i");
    let out = cat.wait_with_output().expect("docker exec -i");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "typed\ndone\n");
    // -it: a terminal of the container's own, its size from the client, the exit code.
    let out = std::process::Command::new("script")
        .args(["-qec", "stty cols 91 rows 23; docker exec -it box sh -c 'tty; stty size; exit 5'", "/dev/null"])
        .env("DOCKER_HOST", node.host())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script (util-linux) runs docker exec -it in a terminal");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/") && text.contains("23 91"), "docker exec -it printed: {text}");
    assert_eq!(out.status.code(), Some(5), "docker exec -it printed: {text}");
    // shoal's own exec speaks the same API: -i, -t (from a terminal only), -d, the exit code.
    let out = shoal_with_stdin(&node, &["exec", "-i", "box", "sh", "-c", "cat; exit 6"], "from shoal\n");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from shoal\n");
    assert_eq!(out.status.code(), Some(6), "{}", String::from_utf8_lossy(&out.stderr));
    let out = shoal_with_stdin(&node, &["exec", "-t", "box", "true"], "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a TTY"), "{}", String::from_utf8_lossy(&out.stderr));
    node.ok(&["exec", "-d", "box", "touch", "/detached2"]);
    let out = std::process::Command::new("script")
        .args([
            "-qec",
            &format!("{} exec -it box sh -c 'tty; exit 2'", shoal_tests::shoal_bin().display()),
            "/dev/null",
        ])
        .env("SHOAL_HOST", node.host())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script (util-linux) runs shoal exec -it in a terminal");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/") && out.status.code() == Some(2), "shoal exec -it: {text} {:?}", out.status);
    let out = docker(&["exec", "box", "no-such-program"]);
    assert_eq!(out.status.code(), Some(127), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-such-program"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = docker(&["exec", "nonexistent", "true"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("nonexistent"), "{}", String::from_utf8_lossy(&out.stderr));
    node.ok(&["container", "pause", "box"]);
    let state = node.json_plain(&["container", "inspect", "box"]);
    assert_eq!(state[0]["State"]["Paused"], true);
    // The docker CLI sees a paused container as Docker shows one, and /info counts it (and
    // the images) as Docker does.
    let text = |out: std::process::Output| {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let listed = text(docker(&["ps", "--filter", "name=box", "--format", "{{.State}}|{{.Status}}"]));
    assert!(listed.starts_with("paused|Up ") && listed.ends_with(" (Paused)"), "docker ps: {listed}");
    assert_eq!(text(docker(&["inspect", "-f", "{{.State.Status}} {{.State.Running}}", "box"])), "paused true");
    let counts = "{{.Containers}} {{.ContainersRunning}} {{.ContainersPaused}} {{.ContainersStopped}} {{.Images}}";
    assert_eq!(text(docker(&["info", "--format", counts])), "1 0 1 0 1");
    node.ok(&["container", "unpause", "box"]);
    assert_eq!(text(docker(&["inspect", "-f", "{{.State.Status}}", "box"])), "running");
    node.ok(&["container", "rm", "-f", "box"]);
}

#[test]
fn images_tag_save_load_commit_and_remove() {
    let node = Node::start().expect("starting the daemon");
    node.import_busybox("bb:1");
    node.ok(&["image", "tag", "bb:1", "bb:2"]);
    let inspect = node.json_plain(&["image", "inspect", "bb:2"]);
    assert_eq!(inspect[0]["RepoTags"], serde_json::json!(["bb:1", "bb:2"]));

    // A container's changes become an image.
    node.ok(&["run", "--name", "maker", "bb:1", "sh", "-c", "echo made > /made; rm /bin/vi"]);
    node.ok(&["container", "commit", "maker", "made:1"]);
    let out = node.ok(&["run", "--rm", "made:1", "sh", "-c", "cat /made; ls /bin/vi 2>&1 || true"]);
    assert!(out.starts_with("made\n") && out.contains("No such file"), "{out}");

    // One of two names: only untagged. The last name of an image a
    // container uses: refused, naming the container.
    assert_eq!(node.ok(&["image", "rm", "bb:2"]), "Untagged: bb:2\n");
    let err = node.fails(&["image", "rm", "bb:1"]);
    assert!(err.contains("maker"), "{err}");
    node.ok(&["container", "rm", "maker"]);

    // Save, remove, load back: the same image id.
    let archive = node.dir.path().join("made.tar");
    node.ok(&["image", "save", "-o", archive.to_str().expect("UTF-8"), "made:1"]);
    let id = node.json_plain(&["image", "inspect", "made:1"])[0]["Id"].clone();
    node.ok(&["image", "rm", "made:1"]);
    assert!(node.fails(&["image", "inspect", "made:1"]).contains("made:1"));
    let loaded = node.ok(&["image", "load", "-i", archive.to_str().expect("UTF-8")]);
    assert!(loaded.contains("Loaded image: made:1"), "{loaded}");
    assert_eq!(node.json_plain(&["image", "inspect", "made:1"])[0]["Id"], id);

    // A truncated archive is refused and changes nothing.
    let bytes = std::fs::read(&archive).expect("reading the archive");
    let cut = node.dir.path().join("cut.tar");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("writing the cut archive");
    let before = node.json(&["image", "ls"]);
    node.fails(&["image", "load", "-i", cut.to_str().expect("UTF-8")]);
    assert_eq!(node.json(&["image", "ls"]), before);
}

/// `container inspect` of one container.
fn inspect(node: &Node, name: &str) -> serde_json::Value {
    node.json_plain(&["container", "inspect", name])[0].clone()
}

/// The container's state as (status, restart count, pid).
fn restart_state(node: &Node, name: &str) -> (String, i64, i64) {
    let c = inspect(node, name);
    (
        c["State"]["Status"].as_str().unwrap_or_default().to_string(),
        c["RestartCount"].as_i64().unwrap_or(-1),
        c["State"]["Pid"].as_i64().unwrap_or(0),
    )
}

#[test]
fn restart_policies_restart_count_and_respect_the_user() {
    let node = Node::start().expect("starting the daemon");
    node.import_busybox("bb:1");

    // on-failure:2 restarts a failing container twice, then leaves it exited.
    node.ok(&["run", "-d", "--name", "flaky", "--restart", "on-failure:2", "bb:1", "sh", "-c", "echo run; exit 3"]);
    eventually(Duration::from_secs(20), "flaky to be restarted twice and stay exited", || {
        let c = inspect(&node, "flaky");
        (c["RestartCount"] == 2 && c["State"]["Status"] == "exited" && c["State"]["Restarting"] == false).then_some(())
    });
    // Longer than the next back-off (400 ms): no third restart comes.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(restart_state(&node, "flaky").1, 2);
    assert_eq!(node.ok(&["logs", "flaky"]), "run\nrun\nrun\n");
    let c = inspect(&node, "flaky");
    assert_eq!(c["State"]["ExitCode"], 3);
    assert_eq!(c["HostConfig"]["RestartPolicy"], serde_json::json!({ "Name": "on-failure", "MaximumRetryCount": 2 }));

    // on-failure leaves a successful exit alone.
    node.ok(&["run", "-d", "--name", "fine", "--restart", "on-failure", "bb:1", "true"]);
    node.ok(&["container", "wait", "fine"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(restart_state(&node, "fine"), ("exited".to_string(), 0, 0));

    // always restarts even a clean exit, again and again.
    node.ok(&["run", "-d", "--name", "again", "--restart", "always", "bb:1", "sh", "-c", "echo up; sleep 0.2"]);
    eventually(Duration::from_secs(20), "again to be restarted", || {
        (restart_state(&node, "again").1 >= 2).then_some(())
    });
    // A stop by the user holds: no restart after it.
    node.ok(&["container", "stop", "again"]);
    let (status, count, _) = restart_state(&node, "again");
    assert_eq!(status, "exited");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(restart_state(&node, "again"), ("exited".to_string(), count, 0));
    // A start by the user re-arms the policy and starts the count over.
    node.ok(&["container", "start", "again"]);
    eventually(Duration::from_secs(20), "again to be restarted after the user's start", || {
        let (_, count, _) = restart_state(&node, "again");
        (count >= 1).then_some(())
    });
    node.ok(&["container", "stop", "again"]);
    // kill (SIGKILL) counts as a stop by the user too.
    node.ok(&["run", "-d", "--name", "killed", "--restart", "always", "bb:1", "sleep", "600"]);
    node.ok(&["container", "kill", "killed"]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(restart_state(&node, "killed"), ("exited".to_string(), 0, 0), "a killed container stays down");

    // container restart: a new process, the count starts over.
    node.ok(&["run", "-d", "--name", "svc", "--restart", "unless-stopped", "bb:1", "sleep", "600"]);
    let (_, _, pid) = restart_state(&node, "svc");
    assert_ne!(pid, 0);
    node.ok(&["container", "restart", "-t", "1", "svc"]);
    let (status, count, new_pid) = restart_state(&node, "svc");
    assert_eq!((status.as_str(), count), ("running", 0));
    assert_ne!(new_pid, pid, "restart must run a new process");
    node.ok(&["container", "stop", "-t", "1", "svc"]);
    // restart also starts a container that is not running; through the API as docker does.
    let (status, _) = node.http("POST", "/v1.51/containers/svc/restart?t=1", "");
    assert_eq!(status, 204);
    assert_eq!(restart_state(&node, "svc").0, "running");
    node.ok(&["container", "rm", "-f", "svc"]);

    // Bad values are refused, naming them.
    let err = node.fails(&["run", "-d", "--restart", "sometimes", "bb:1", "true"]);
    assert!(err.contains("\"sometimes\"") && err.contains("unless-stopped"), "{err}");
    let err = node.fails(&["run", "-d", "--restart", "always:3", "bb:1", "true"]);
    assert!(err.contains("on-failure"), "{err}");
    let err = node.fails(&["run", "--rm", "--restart", "always", "bb:1", "true"]);
    assert!(err.contains("--rm"), "{err}");
    let body = r#"{"Image":"bb:1","Cmd":["true"],"HostConfig":{"RestartPolicy":{"Name":"sometimes"}}}"#;
    let (status, body) = node.http("POST", "/v1.51/containers/create", body);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("sometimes"), "{body}");
}

#[test]
fn restart_policies_survive_a_killed_daemon() {
    let mut node = Node::start().expect("starting the daemon");
    node.import_busybox("bb:1");
    // Stopped by the user before the daemon goes: always comes back, unless-stopped does not.
    node.ok(&["run", "-d", "--name", "always-stopped", "--restart", "always", "bb:1", "sleep", "600"]);
    node.ok(&["run", "-d", "--name", "unless-stopped", "--restart", "unless-stopped", "bb:1", "sleep", "600"]);
    node.ok(&["container", "stop", "-t", "1", "always-stopped", "unless-stopped"]);
    // Running through the daemon's death: re-adopted, then restarted when it crashes.
    node.ok(&["run", "-d", "--name", "adopted", "--restart", "always", "bb:1", "sleep", "600"]);
    // Crashing while no daemon watches: restarted when the daemon is back.
    node.ok(&["run", "-d", "--name", "orphan", "--restart", "on-failure", "bb:1", "sleep", "600"]);
    let (_, _, adopted_pid) = restart_state(&node, "adopted");
    let (_, _, orphan_pid) = restart_state(&node, "orphan");

    node.kill_daemon();
    // SAFETY: kill(2) on the container's init, which this test started.
    unsafe { libc::kill(orphan_pid as i32, libc::SIGKILL) };
    node.start_daemon().expect("restarting the daemon");

    eventually(Duration::from_secs(20), "always-stopped to come back", || {
        (restart_state(&node, "always-stopped").0 == "running").then_some(())
    });
    eventually(Duration::from_secs(20), "orphan to be restarted", || {
        let (status, _, pid) = restart_state(&node, "orphan");
        (status == "running" && pid != orphan_pid).then_some(())
    });
    assert_eq!(restart_state(&node, "unless-stopped").0, "exited");
    assert_eq!(restart_state(&node, "adopted"), ("running".to_string(), 0, adopted_pid), "re-adopted as it was");

    // The re-adopted container crashes: the new daemon restarts it.
    // SAFETY: as above.
    unsafe { libc::kill(adopted_pid as i32, libc::SIGKILL) };
    eventually(Duration::from_secs(20), "adopted to be restarted by the new daemon", || {
        let (status, count, pid) = restart_state(&node, "adopted");
        (status == "running" && count == 1 && pid != adopted_pid).then_some(())
    });
    node.ok(&["container", "rm", "-f", "always-stopped", "unless-stopped", "adopted", "orphan"]);
    assert_eq!(node.container_processes(), Vec::<i32>::new());
}

#[test]
fn live_restore_of_a_standalone_container() {
    let mut node = Node::start().expect("starting the daemon");
    node.import_busybox("bb:1");
    let script = "trap 'echo bye; exit 7' TERM; i=0; while true; do echo line $i; i=$((i+1)); sleep 0.1; done";
    node.ok(&["run", "-d", "--name", "ticker", "bb:1", "sh", "-c", script]);
    // `--rm` containers: one that exits while no daemon runs, one after the restart.
    node.ok(&["run", "-d", "--rm", "--name", "brief", "bb:1", "sleep", "1"]);
    node.ok(&["run", "-d", "--rm", "--name", "later", "bb:1", "sleep", "4"]);
    let lines = |node: &Node| node.ok(&["logs", "ticker"]).lines().count();
    eventually(Duration::from_secs(10), "the first lines", || (lines(&node) >= 3).then_some(()));
    let pid = restart_state(&node, "ticker").2;

    let before = lines(&node);
    node.kill_daemon();
    std::thread::sleep(Duration::from_millis(1500));
    node.start_daemon().expect("restarting the daemon on the same data root");

    let gone = |name: &str| {
        let all = node.json(&["ps", "--all"]);
        !all.as_array()
            .is_some_and(|a| a.iter().any(|c| c["Names"][0].as_str().map(|n| n.trim_start_matches('/')) == Some(name)))
    };
    eventually(Duration::from_secs(10), "the --rm container that exited meanwhile removed", || {
        gone("brief").then_some(())
    });
    eventually(Duration::from_secs(15), "the --rm container that exited after the restart removed", || {
        gone("later").then_some(())
    });
    let listed = node.running_containers();
    assert_eq!(listed, vec![("ticker".to_string(), pid as i32)], "the same process keeps running");
    let after = lines(&node);
    assert!(after > before + 3, "lines written while the daemon was down are in the log: {before} then {after}");
    let log = node.ok(&["logs", "ticker"]);
    for (i, line) in log.lines().enumerate() {
        assert_eq!(line, format!("line {i}"), "the log has every line, in order");
    }

    node.ok(&["container", "stop", "ticker"]);
    assert_eq!(node.ok(&["container", "wait", "ticker"]).trim(), "7");
    assert!(node.ok(&["logs", "ticker"]).ends_with("bye\n"));
    node.ok(&["container", "rm", "ticker"]);
    assert_eq!(node.mounts(), Vec::<String>::new());
    assert_eq!(node.container_processes(), Vec::<i32>::new());
    assert!(node.json(&["ps", "--all"]).as_array().is_some_and(|a| a.is_empty()));
}

#[test]
fn the_daemon_stops_while_a_client_waits_for_a_container() {
    use std::io::{Read, Write};

    let mut node = Node::start().expect("starting the daemon");
    node.import_busybox("bb:1");
    node.ok(&["run", "-d", "--name", "sleeper", "bb:1", "sleep", "1000"]);
    let pid = restart_state(&node, "sleeper").2;
    // A client waiting for the exit (`docker wait`, `docker run`): the answer's headers come at
    // once, its body only when the container exits.
    let mut client = std::os::unix::net::UnixStream::connect(node.socket()).expect("connecting to the API");
    client
        .write_all(b"POST /containers/sleeper/wait HTTP/1.1\r\nHost: shoal\r\nContent-Length: 0\r\n\r\n")
        .expect("sending the wait request");
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = client.read(&mut buf).expect("reading the wait answer's headers");
        assert!(n > 0, "the daemon closed the wait request: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(seen.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&seen));

    // The pending answer does not keep the daemon from stopping, nor does the stop end the
    // container.
    assert!(node.stop_daemon(), "the daemon failed to stop; its log:\n{}", node.daemon_log());
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "the container died with the daemon");
    node.start_daemon().expect("restarting the daemon");
    assert_eq!(restart_state(&node, "sleeper"), ("running".to_string(), 0, pid));
    node.ok(&["container", "rm", "-f", "sleeper"]);
}

#[test]
fn devices_are_given_only_when_asked() {
    let node = Node::start().expect("starting the daemon");
    node.import_busybox("bb:1");
    let run = |args: &[&str]| node.ok(&[&["run", "--rm"], args].concat());

    // A host device under another name: a character device 1:3, usable.
    let out = run(&[
        "--device",
        "/dev/null:/dev/mynull",
        "bb:1",
        "sh",
        "-c",
        "ls -l /dev/mynull; echo x > /dev/mynull && echo wrote",
    ]);
    assert!(out.starts_with("c") && out.contains("1,   3") && out.ends_with("wrote\n"), "{out}");
    let out = run(&["--device", "/dev/loop-control", "bb:1", "sh", "-c", "test -c /dev/loop-control && echo present"]);
    assert_eq!(out, "present\n");
    assert_eq!(run(&["bb:1", "sh", "-c", "test -e /dev/loop-control || echo absent"]), "absent\n");
    assert_eq!(run(&["--privileged", "bb:1", "sh", "-c", "test -c /dev/loop-control && echo present"]), "present\n");

    // The devices cgroup (v1): a node made by hand opens only when the device was given.
    if std::path::Path::new("/sys/fs/cgroup/devices/devices.allow").exists() {
        let script = "mknod /dev/lc c 10 237 && { (: < /dev/lc) 2>/dev/null && echo opened || echo refused; }";
        assert_eq!(run(&["bb:1", "sh", "-c", script]), "refused\n");
        assert_eq!(run(&["--device", "/dev/loop-control", "bb:1", "sh", "-c", script]), "opened\n");
    }

    node.ok(&["container", "create", "--name", "withdev", "--device", "/dev/null:/dev/mynull:r", "bb:1", "true"]);
    let devices = &inspect(&node, "withdev")["HostConfig"]["Devices"];
    assert_eq!(
        devices,
        &serde_json::json!([{ "PathOnHost": "/dev/null", "PathInContainer": "/dev/mynull", "CgroupPermissions": "r" }])
    );
    let err = node.fails(&["run", "--rm", "--device", "/dev/nosuch", "bb:1", "true"]);
    assert!(err.contains("/dev/nosuch"), "{err}");
    let err = node.fails(&["run", "--rm", "--device", "/dev/null:/dev/x:rwx", "bb:1", "true"]);
    assert!(err.contains("rwx"), "{err}");
}

#[test]
fn image_changes_on_import_and_commit() {
    let node = Node::start().expect("starting the daemon");
    let rootfs = node.dir.path().join("rootfs");
    shoal_tests::busybox_rootfs(&rootfs).expect("building the busybox rootfs");
    let rootfs = rootfs.to_str().expect("UTF-8");
    node.ok(&[
        "image",
        "import",
        "--change",
        r#"CMD ["echo","hi"]"#,
        "--change",
        "ENV A=1",
        "--change",
        "EXPOSE 8080",
        "--change",
        "LABEL tier=web",
        "--change",
        "STOPSIGNAL SIGQUIT",
        rootfs,
        "ch:1",
    ]);
    assert_eq!(node.ok(&["run", "--rm", "ch:1"]), "hi\n");
    assert_eq!(node.ok(&["run", "--rm", "ch:1", "sh", "-c", "echo $A"]), "1\n");
    let config = &node.json_plain(&["image", "inspect", "ch:1"])[0]["Config"];
    assert_eq!(config["Cmd"], serde_json::json!(["echo", "hi"]));
    assert_eq!(config["ExposedPorts"], serde_json::json!({ "8080/tcp": {} }));
    assert_eq!(config["Labels"]["tier"], "web");
    // The image's stop signal is its containers' default.
    node.ok(&["container", "create", "--name", "quitter", "ch:1"]);
    assert_eq!(inspect(&node, "quitter")["Config"]["StopSignal"], "SIGQUIT");

    // commit --change: the new image starts in /tmp, the shell form runs under sh -c.
    node.ok(&["run", "--name", "maker", "ch:1", "sh", "-c", "echo made > /made"]);
    node.ok(&[
        "container",
        "commit",
        "--change",
        "WORKDIR /tmp",
        "--change",
        "CMD pwd && cat /made",
        "maker",
        "made:1",
    ]);
    assert_eq!(node.ok(&["run", "--rm", "made:1"]), "/tmp\nmade\n");
    assert_eq!(node.ok(&["run", "--rm", "made:1", "sh", "-c", "echo $A"]), "1\n", "the parent's config stays");

    // An unknown instruction is an error naming it, from the CLI and from the API.
    let err = node.fails(&["image", "import", "--change", "FROM scratch", rootfs, "bad:1"]);
    assert!(err.contains("FROM"), "{err}");
    let err = node.fails(&["container", "commit", "--change", "RUN true", "maker", "bad:1"]);
    assert!(err.contains("RUN"), "{err}");
    let (status, body) = node.http("POST", "/v1.51/commit?container=maker&repo=bad&changes=BOGUS%20x", "");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("BOGUS"), "{body}");
    assert!(node.fails(&["image", "inspect", "bad:1"]).contains("bad:1"));
}

#[test]
fn labels_are_shown_and_filtered() {
    let node = Node::start().expect("starting the daemon");
    node.import_busybox("bb:1");
    node.ok(&["run", "-d", "--name", "web", "--label", "app=web", "--label", "tier", "bb:1", "sleep", "600"]);
    node.ok(&["run", "-d", "--name", "db", "-l", "app=db", "bb:1", "sleep", "600"]);
    node.ok(&["container", "create", "--name", "idle", "-l", "app=web", "bb:1", "true"]);
    assert_eq!(inspect(&node, "web")["Config"]["Labels"], serde_json::json!({ "app": "web", "tier": "" }));

    let names = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = node
            .json(args)
            .as_array()
            .map(|a| {
                a.iter().map(|c| c["Names"][0].as_str().unwrap_or("").trim_start_matches('/').to_string()).collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    assert_eq!(names(&["ps", "--filter", "label=app=web"]), ["web"]);
    assert_eq!(names(&["ps", "-a", "--filter", "label=app=web"]), ["idle", "web"]);
    assert_eq!(names(&["ps", "--filter", "label=tier"]), ["web"]);
    assert_eq!(names(&["ps", "--filter", "label=app"]), ["db", "web"]);
    assert_eq!(names(&["ps", "--filter", "label=app=web", "--filter", "label=tier"]), ["web"]);
    assert!(names(&["ps", "--filter", "label=app=nope"]).is_empty());
    assert_eq!(names(&["ps", "--filter", "status=created"]), ["idle"]);
    assert_eq!(names(&["ps", "--filter", "name=db"]), ["db"]);
    let err = node.fails(&["ps", "--filter", "colour=red"]);
    assert!(err.contains("colour"), "{err}");
    let err = node.fails(&["ps", "--filter", "label"]);
    assert!(err.contains("KEY=VALUE"), "{err}");
    node.ok(&["container", "rm", "-f", "web", "db", "idle"]);
}

/// Runs the CLI against `node` with `input` on its stdin; returns its output.
fn shoal_with_stdin(node: &Node, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(shoal_tests::shoal_bin())
        .args(args)
        .env("SHOAL_HOST", node.host())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running shoal");
    child.stdin.take().expect("piped stdin").write_all(input.as_bytes()).expect("writing stdin");
    child.wait_with_output().expect("waiting for shoal")
}

#[test]
fn tty_and_stdin_attach_to_the_container() {
    let node = Node::start().expect("starting the daemon");
    node.import_busybox("bb:1");

    // -t: the container's stdio is a terminal in its own /dev/pts, its exit
    // code is run's, and its output is still logged.
    let out = node
        .shoal(&[
            "run",
            "-t",
            "--name",
            "term",
            "bb:1",
            "sh",
            "-c",
            "tty; test -t 0 && test -t 1 && echo is-a-tty; exit 7",
        ])
        .expect("running shoal run -t");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let first = stdout.lines().next().unwrap_or_default().trim_end();
    let n = first.strip_prefix("/dev/pts/").unwrap_or_else(|| panic!("tty printed {first:?}"));
    assert!(n.parse::<u32>().is_ok(), "{first}");
    assert!(stdout.contains("is-a-tty"), "{stdout}");
    // A terminal turns \n into \r\n, as Docker's logs show too.
    assert!(node.ok(&["logs", "term"]).contains("is-a-tty"));
    node.ok(&["container", "rm", "term"]);

    // Without -t, stdin is not a terminal.
    let out = node.shoal(&["run", "--rm", "bb:1", "sh", "-c", "test -t 0 || echo no-tty"]).expect("running shoal run");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "no-tty\n");

    // -i: stdin is piped through and closed at its end; output and exit code
    // come back.
    let out = shoal_with_stdin(
        &node,
        &["run", "--rm", "-i", "bb:1", "sh", "-c", "cat; echo done >&2; exit 3"],
        "hi\nthere\n",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\nthere\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "done\n");
    assert_eq!(out.status.code(), Some(3));
    assert!(node.json(&["ps", "--all"]).as_array().is_some_and(|a| a.is_empty()), "--rm left the container");

    // create -i, then start --attach --interactive.
    node.ok(&["container", "create", "-i", "--name", "later", "bb:1", "sh", "-c", "read x; echo got $x"]);
    let out = shoal_with_stdin(&node, &["container", "start", "-a", "-i", "later"], "late\n");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got late\n", "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0));

    // attach to a running container through its shim's socket.
    node.ok(&["run", "-d", "-i", "--name", "waiting", "bb:1", "sh", "-c", "read x; echo got $x; exit 5"]);
    let out = shoal_with_stdin(&node, &["container", "attach", "waiting"], "now\n");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got now\n", "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(node.ok(&["logs", "waiting"]), "got now\n");
    let err = node.fails(&["container", "attach", "waiting"]);
    assert!(err.contains("not running"), "{err}");
}
