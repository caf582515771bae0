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
    // A named volume keeps its content across containers.
    assert_eq!(run(&["-v", "data:/data", "bb:1", "sh", "-c", "echo kept > /data/f"]).status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&run(&["-v", "data:/data:ro", "bb:1", "cat", "/data/f"]).stdout), "kept\n");
    // A pids limit: forks beyond it fail.
    let out = run(&["--pids-limit", "5", "bb:1", "sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; wait"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("can't fork") || out.status.code() != Some(0));

    // exec joins a running container; pause freezes it.
    node.ok(&["run", "-d", "--name", "box", "bb:1", "sleep", "600"]);
    assert_eq!(node.ok(&["exec", "box", "hostname"]).trim().len(), 12);
    assert_ne!(node.ok(&["exec", "box", "sh", "-c", "echo $$"]).trim(), "1", "exec must not be the container's pid 1");
    node.ok(&["container", "pause", "box"]);
    let state = node.json_plain(&["container", "inspect", "box"]);
    assert_eq!(state[0]["State"]["Paused"], true);
    node.ok(&["container", "unpause", "box"]);
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
