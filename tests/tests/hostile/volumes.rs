//! Hostile volume names, mounts and files against one real daemon: names that are paths, sent
//! through the raw API, the CLI and a compose file, must be refused without touching anything
//! inside the data root or beside it; `docker run --mount` binds what it asks for; a secret
//! file that never ends is refused at its limit.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use shoal_tests::Node;

/// A raw API request with curl, as an attacker would send it (`--path-as-is`: the encoded
/// dots reach the daemon as they are): (status, body).
fn curl(node: &Node, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let socket = node.socket();
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--path-as-is", "-w", "\n%{http_code}", "-X", method, "--unix-socket"])
        .arg(&socket)
        .arg(format!("http://localhost{path}"));
    if let Some(body) = body {
        cmd.args(["-H", "Content-Type: application/json", "-d", body]);
    }
    let out = cmd.output().expect("curl is on this machine");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn docker(node: &Node, args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", node.host())
        .output()
        .expect("the docker CLI is on this machine (it is a documented part of the dev and CI machines)")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `/` and `.` of `path` percent-encoded, so that it reaches a route as one segment.
fn encoded(path: &str) -> String {
    path.replace('/', "%2F").replace('.', "%2E")
}

/// Places a marker file in `dir` (made if missing); returns its path.
fn marker(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("making a marker's directory");
    let file = dir.join("hostile-volumes-marker");
    std::fs::write(&file, "still here").expect("writing a marker");
    file
}

#[test]
fn hostile_volume_names_mounts_and_files_are_refused_and_touch_nothing() {
    let node = Node::start().expect("starting the daemon");
    node.swarm_init();
    node.import_busybox("bb:1");
    let tmp = node.dir.path().to_path_buf();
    let data = node.data_root();

    // What an escape would destroy: the daemon's state in the data root, and directories
    // beside it (`volumes/../../x` is `<tmp>/x`).
    let outside = tmp.join("outside");
    let markers = [
        marker(&data.join("raft")),
        marker(&data.join("certificates")),
        marker(&data.join("runtime")),
        marker(&tmp.join("x")),
        marker(&outside),
    ];
    node.ok(&["volume", "create", "keep"]);
    let kept = data.join("volumes/keep/_data/file");
    std::fs::write(&kept, "kept").expect("writing into a volume");

    // Reproduction: the raw API with names that are paths.
    let absolute = encoded(outside.to_str().expect("UTF-8 temp path"));
    for (method, path) in [
        ("DELETE", "/volumes/%2E%2E".to_string()),
        ("DELETE", "/volumes/%2E%2E?force=1".to_string()),
        ("DELETE", format!("/volumes/{absolute}")),
        ("DELETE", "/v1.45/volumes/%2E%2E%2F%2E%2E%2Fx".to_string()),
        ("GET", "/volumes/%2Fetc".to_string()),
        ("GET", "/volumes/%2E%2E".to_string()),
    ] {
        let (status, body) = curl(&node, method, &path, None);
        assert_eq!(status, 400, "{method} {path} answered {status}: {body}");
        assert!(body.contains("invalid volume name"), "{method} {path}: {body}");
    }
    for name in ["..", "../x", "/etc", "a/b"] {
        let (status, body) = curl(&node, "POST", "/volumes/create", Some(&format!(r#"{{"Name":"{name}"}}"#)));
        assert_eq!(status, 400, "create {name}: {body}");
    }
    // A bind whose "volume" is a path: refused the same way.
    let (status, body) = curl(
        &node,
        "POST",
        "/containers/create",
        Some(r#"{"Image":"bb:1","HostConfig":{"Mounts":[{"Type":"volume","Source":"..","Target":"/d"}]}}"#),
    );
    assert_eq!(status, 400, "a volume mount named ..: {body}");

    // Through the CLI.
    let err = node.fails(&["volume", "rm", "../../x"]);
    assert!(err.contains("invalid volume name"), "{err}");
    let err = node.fails(&["volume", "inspect", "/etc"]);
    assert!(err.contains("invalid volume name"), "{err}");

    // Through compose, on the one-node swarm: refused where the file says it.
    let compose = node.write(
        "bad-volume.yml",
        "services:\n  web:\n    image: bb:1\n    volumes:\n      - data:/data\nvolumes:\n  data:\n    name: ../../x\n",
    );
    let err = node.fails(&["stack", "deploy", "-c", compose.to_str().expect("UTF-8 temp path"), "app"]);
    assert!(err.contains("bad-volume.yml:8:11") && err.contains("not a valid volume name"), "{err}");
    let compose = node.write(
        "bad-source.yml",
        "services:\n  web:\n    image: bb:1\n    volumes:\n      - {type: volume, source: /etc, target: /data}\n",
    );
    let err = node.fails(&["stack", "deploy", "-c", compose.to_str().expect("UTF-8 temp path"), "app"]);
    assert!(err.contains("bad-source.yml:5:9") && err.contains("not a valid volume name"), "{err}");
    assert!(node.json(&["service", "ls"]).as_array().is_some_and(Vec::is_empty), "a service was deployed");

    for m in &markers {
        assert_eq!(std::fs::read_to_string(m).ok().as_deref(), Some("still here"), "{} is gone", m.display());
    }
    assert_eq!(std::fs::read_to_string(&kept).ok().as_deref(), Some("kept"));
    assert!(data.join("raft/raft.redb").exists(), "the raft store is gone");
    assert!(data.join("certificates/node.crt").exists(), "the node's certificate is gone");

    // Reproduction 7: the stock docker CLI's --mount, which used to be ignored.
    let src = tmp.join("bind-src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("hello"), "from the host\n").expect("write");
    let bind = format!("type=bind,src={},dst=/in", src.display());
    let out = docker(&node, &["run", "--rm", "--mount", &bind, "bb:1", "cat", "/in/hello"]);
    assert!(out.status.success(), "docker run --mount {bind}: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "from the host\n");
    let out =
        docker(&node, &["run", "--rm", "--mount", &format!("{bind},readonly"), "bb:1", "sh", "-c", "touch /in/new"]);
    assert!(!out.status.success(), "a read-only bind was writable");
    assert!(!src.join("new").exists());
    // shoal's own run --mount, in the same syntax.
    assert_eq!(
        node.ok(&["run", "--rm", "--mount", &format!("{bind},ro"), "bb:1", "cat", "/in/hello"]),
        "from the host\n"
    );
    let out = docker(
        &node,
        &["run", "--rm", "--mount", "type=tmpfs,dst=/t,tmpfs-mode=1770", "bb:1", "stat", "-c", "%a", "/t"],
    );
    assert!(out.status.success(), "docker run --mount type=tmpfs: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "1770\n");
    let out = docker(
        &node,
        &["run", "--rm", "--mount", "type=volume,src=labelled,dst=/v,volume-label=owner=test", "bb:1", "true"],
    );
    assert!(out.status.success(), "docker run --mount type=volume: {}", text(&out.stderr));
    let out = docker(&node, &["volume", "ls", "-q", "--filter", "label=owner=test", "--filter", "dangling=true"]);
    assert_eq!(text(&out.stdout), "labelled\n", "{}", text(&out.stderr));
    let missing = format!("type=bind,src={},dst=/in", tmp.join("no-such-dir").display());
    let out = docker(&node, &["run", "--rm", "--mount", &missing, "bb:1", "true"]);
    assert!(!out.status.success() && text(&out.stderr).contains("does not exist"), "{}", text(&out.stderr));
    let out = docker(&node, &["run", "--rm", "--mount", &format!("{bind},bind-propagation=rshared"), "bb:1", "true"]);
    assert!(!out.status.success() && text(&out.stderr).contains("rshared"), "{}", text(&out.stderr));
    let out = docker(&node, &["volume", "ls", "--filter", "colour=blue"]);
    assert!(!out.status.success() && text(&out.stderr).contains("colour"), "{}", text(&out.stderr));

    // Filters narrow what is listed and pruned; a bad value is refused, not ignored.
    node.ok(&["volume", "create", "--label", "tier=cache", "cache1"]);
    node.ok(&["volume", "create", "--label", "tier=db", "db1"]);
    assert_eq!(node.ok(&["volume", "ls", "-q", "--filter", "name=^cache"]), "cache1\n");
    assert_eq!(node.ok(&["volume", "ls", "-q", "--filter", "label=tier"]), "cache1\ndb1\n");
    let (status, body) = curl(&node, "GET", "/volumes?filters=%7B%22dangling%22%3A%5B%22maybe%22%5D%7D", None);
    assert_eq!(status, 400, "dangling=maybe: {body}");
    node.ok(&["volume", "prune", "--all", "--filter", "label=tier=cache"]);
    assert_eq!(node.ok(&["volume", "ls", "-q"]), "db1\nkeep\nlabelled\n");

    // A secret file that never ends: refused at the limit, named in the message.
    let compose = node.write(
        "endless.yml",
        "services:\n  web:\n    image: bb:1\n    secrets: [z]\nsecrets:\n  z:\n    file: /dev/zero\n",
    );
    let err = node.fails(&["stack", "deploy", "-c", compose.to_str().expect("UTF-8 temp path"), "app"]);
    assert!(err.contains("secrets.z.file") && err.contains("500 KiB"), "{err}");
    let err = node.fails(&["secret", "create", "z", "/dev/zero"]);
    assert!(err.contains("500 KiB"), "{err}");
}
