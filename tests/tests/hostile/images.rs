//! Hostile image archives, uploads and queries against one real daemon, through its HTTP API:
//! an archive naming host files, a layer whiting out its own directory, uploads cut short by a
//! killed daemon, failed imports, non-tar uploads, image filters and undecodable query values.
//! Afterwards the host files next to the data root and the data root itself must be as they
//! were: the layers in place, nothing left in the store's `ingest/` or under `tmp/`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use shoal_tests::{eventually, Node};

/// One HTTP/1.0 request with a raw target and a binary body: (status, body). Status 0 means
/// the daemon closed the connection without an answer.
fn request(socket: &Path, method: &str, target: &[u8], body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = UnixStream::connect(socket).expect("connecting to the API socket");
    let mut head = Vec::new();
    head.extend_from_slice(method.as_bytes());
    head.push(b' ');
    head.extend_from_slice(target);
    head.extend_from_slice(
        format!(
            " HTTP/1.0\r\nHost: shoal\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    s.write_all(&head).expect("sending the request head");
    // The daemon may answer (and close) before it has read a refused body.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let Some(split) = out.windows(4).position(|w| w == b"\r\n\r\n") else { return (0, out) };
    let status = String::from_utf8_lossy(&out[..split]).split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out[split + 4..].to_vec())
}

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

/// Percent-encodes a query value (a filters JSON).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn sha256(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum (coreutils) is on this machine");
    child.stdin.take().expect("piped").write_all(data).expect("writing to sha256sum");
    let out = child.wait_with_output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().expect("a digest").to_string()
}

/// A ustar archive of regular files (and directories, for names ending in '/'), written by
/// hand so that it can hold names tar libraries refuse to write.
fn tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in entries {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let dir = name.ends_with('/');
        h[100..108].copy_from_slice(if dir { b"0000755\0" } else { b"0000644\0" });
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[148..156].copy_from_slice(b"        ");
        h[156] = if dir { b'5' } else { b'0' };
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// An image config with these layer diff ids (and labels).
fn config(diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": diff_ids.iter().map(|d| format!("sha256:{d}")).collect::<Vec<_>>() },
    }))
    .expect("json")
}

/// A classic `docker save` archive: `manifest.json` as given, plus `files`.
fn docker_archive(manifest: Value, files: &[(&str, &[u8])]) -> Vec<u8> {
    let manifest = serde_json::to_vec(&manifest).expect("json");
    let mut entries: Vec<(&str, &[u8])> = vec![("manifest.json", &manifest)];
    entries.extend_from_slice(files);
    tar(&entries)
}

/// Every file under `dir` (relative paths), sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path.clone());
            }
            out.push(path.strip_prefix(dir).expect("below dir").display().to_string());
        }
    }
    out.sort();
    out
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

struct Host {
    node: Node,
    /// Files next to the data root that no request may touch.
    markers: Vec<(PathBuf, Vec<u8>)>,
}

impl Host {
    fn api(&self, method: &str, target: &str, body: &[u8]) -> (u16, Vec<u8>) {
        request(&self.node.socket(), method, target.as_bytes(), body)
    }

    fn runtime(&self) -> PathBuf {
        self.node.data_root().join("runtime")
    }

    fn image_names(&self) -> Vec<String> {
        let (status, body) = self.api("GET", "/images/json", b"");
        assert_eq!(status, 200, "{}", text(&body));
        let list: Value = serde_json::from_slice(&body).expect("JSON");
        let mut names: Vec<String> = list
            .as_array()
            .expect("a list")
            .iter()
            .flat_map(|i| i["RepoTags"].as_array().cloned().unwrap_or_default())
            .filter_map(|t| t.as_str().map(String::from))
            .collect();
        names.sort();
        names
    }

    fn listed(&self, filters: &str) -> (u16, Vec<String>, String) {
        let (status, body) = self.api("GET", &format!("/images/json?filters={}", encode(filters)), b"");
        let ids = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.as_array().map(|a| a.iter().filter_map(|i| i["Id"].as_str().map(String::from)).collect()))
            .unwrap_or_default();
        (status, ids, text(&body))
    }

    fn image_id(&self, name: &str) -> String {
        let (status, body) = self.api("GET", &format!("/images/{name}/json"), b"");
        assert_eq!(status, 200, "{}", text(&body));
        serde_json::from_slice::<Value>(&body).expect("JSON")["Id"].as_str().expect("an id").to_string()
    }

    /// The host is as it was: markers intact, the image store without leftovers, the layers
    /// in place, the container still running from them.
    fn intact(&self, layers: &[String]) {
        for (path, content) in &self.markers {
            assert_eq!(std::fs::read(path).ok().as_ref(), Some(content), "{} changed", path.display());
        }
        let ingest = self.runtime().join("images/ingest");
        assert!(entries(&ingest).is_empty(), "left in ingest/: {:?}", files_under(&ingest));
        let tmp = self.node.data_root().join("tmp");
        assert!(entries(&tmp).is_empty(), "left in tmp/: {:?}", entries(&tmp));
        let now = entries(&self.runtime().join("layers"));
        for layer in layers {
            assert!(now.contains(layer), "layer {layer} is gone: {now:?}");
        }
        assert_eq!(self.node.ok(&["exec", "keeper", "cat", "/www/index.html"]), "hello from shoal\n");
    }
}

#[test]
fn hostile_images_leave_the_host_and_the_data_root_intact() {
    let node = Node::start().expect("starting the daemon");
    node.import_busybox("bb:1");
    node.ok(&["run", "-d", "--name", "keeper", "bb:1", "sleep", "1000"]);
    let config_marker = node.dir.path().join("important.json");
    let layer_marker = node.dir.path().join("important.tar");
    let empty_layer = tar(&[]);
    std::fs::write(&config_marker, config(&[])).expect("marker");
    std::fs::write(&layer_marker, &empty_layer).expect("marker");
    let mut host =
        Host { markers: vec![(config_marker.clone(), config(&[])), (layer_marker.clone(), empty_layer.clone())], node };
    let layers = entries(&host.runtime().join("layers"));
    assert!(layers.iter().any(|l| l.len() == 64) && layers.contains(&"init".to_string()), "{layers:?}");

    manifest_paths_naming_host_files(&host);
    host.intact(&layers);
    whiteouts_of_the_layer_directory(&host);
    host.intact(&layers);
    leftovers_of_killed_loads_and_failed_imports(&mut host);
    host.intact(&layers);
    image_filters(&host);
    host.intact(&layers);
    undecodable_query_values(&host);
    host.intact(&layers);
}

/// Defect: `manifest.json` naming a host file (absolute or `../`) as a config or a layer made
/// the daemon move that file into its blob store.
fn manifest_paths_naming_host_files(host: &Host) {
    let up = "../".repeat(12);
    let beside = |path: &Path| format!("{up}{}", path.display().to_string().trim_start_matches('/'));
    let layer_digest = sha256(&tar(&[]));
    let layer_config = config(std::slice::from_ref(&layer_digest));
    let cases = [
        json!([{ "Config": host.markers[0].0.display().to_string(), "RepoTags": ["evil:1"], "Layers": [] }]),
        json!([{ "Config": beside(&host.markers[0].0), "RepoTags": ["evil:2"], "Layers": [] }]),
        json!([{ "Config": "c.json", "RepoTags": ["evil:3"], "Layers": [host.markers[1].0.display().to_string()] }]),
        json!([{ "Config": "c.json", "RepoTags": ["evil:4"], "Layers": [beside(&host.markers[1].0)] }]),
    ];
    for manifest in cases {
        let archive = docker_archive(manifest.clone(), &[("c.json", &layer_config)]);
        let (status, body) = host.api("POST", "/images/load", &archive);
        assert_eq!(status, 400, "{manifest}: {}", text(&body));
        assert!(text(&body).contains("refused"), "{}", text(&body));
    }
    assert_eq!(host.image_names(), ["bb:1"]);
}

/// Defect: a layer entry `.wh...` (a whiteout of `..`) removed the layers directory.
fn whiteouts_of_the_layer_directory(host: &Host) {
    for name in [".wh...", "etc/.wh...", ".wh..", ".wh."] {
        let layer = tar(&[("etc/", b""), ("etc/motd", b"hi\n"), (name, b"")]);
        let digest = sha256(&layer);
        let archive = docker_archive(
            json!([{ "Config": "c.json", "RepoTags": ["wh:1"], "Layers": ["l.tar"] }]),
            &[("c.json", &config(std::slice::from_ref(&digest))), ("l.tar", &layer)],
        );
        let (status, body) = host.api("POST", "/images/load", &archive);
        assert_eq!(status, 400, "{name}: {}", text(&body));
        assert!(text(&body).contains(name), "{name}: {}", text(&body));
        // The same layer as an import.
        let (status, body) = host.api("POST", "/images/create?fromSrc=-&repo=wh&tag=2", &layer);
        assert_eq!(status, 400, "{name}: {}", text(&body));
        assert!(text(&body).contains(name), "{name}: {}", text(&body));
    }
    assert_eq!(host.image_names(), ["bb:1"]);
}

/// Defects: a killed load left its spool for good; a failed import left its blob, which no
/// prune reclaimed; a large non-tar upload was a 500.
fn leftovers_of_killed_loads_and_failed_imports(host: &mut Host) {
    let blobs_dir = host.runtime().join("images/blobs/sha256");
    let blobs_before = entries(&blobs_dir);

    // A load cut short by kill -9: whatever holds the upload is gone after the restart, and so
    // is an upload an older daemon spooled to tmp/.
    let socket = host.node.socket();
    let mut s = UnixStream::connect(&socket).expect("connecting");
    write!(s, "POST /images/load HTTP/1.0\r\nHost: shoal\r\nContent-Type: application/x-tar\r\nContent-Length: 50000000\r\n\r\n")
        .expect("head");
    s.write_all(&vec![0u8; 4 << 20]).expect("part of the body");
    let data_root = host.node.data_root();
    // Where this daemon (or an older one) spools uploads.
    let spools = [host.runtime().join("images/ingest"), data_root.join("tmp")];
    let spooled = || spools.iter().flat_map(|d| entries(d)).collect::<Vec<_>>();
    eventually(Duration::from_secs(20), "the upload being spooled", || (!spooled().is_empty()).then_some(()));
    host.node.kill_daemon();
    drop(s);
    std::fs::create_dir_all(data_root.join("tmp")).expect("mkdir");
    std::fs::write(data_root.join("tmp/load-0123.tar"), b"an old spool").expect("write");
    host.node.start_daemon().expect("restarting the daemon");
    assert!(spooled().is_empty(), "left after the restart: {:?}", spooled());

    // A failed import (a tar that breaks off) is a 400 and leaves no blob.
    let mut truncated = tar(&[("big", &[7u8; 10_000])]);
    truncated.truncate(512 + 3000);
    let (status, body) = host.api("POST", "/images/create?fromSrc=-&repo=cut&tag=1", &truncated);
    assert_eq!(status, 400, "{}", text(&body));
    assert_eq!(entries(&blobs_dir), blobs_before, "a failed import left a blob");

    // A blob no image names (what an older daemon's failed import left) goes with a prune.
    let orphan = b"the blob of a failed import";
    std::fs::write(blobs_dir.join(sha256(orphan)), orphan).expect("write");
    let (status, body) = host.api("POST", "/images/prune", b"");
    assert_eq!(status, 200, "{}", text(&body));
    assert_eq!(entries(&blobs_dir), blobs_before, "prune left a blob no image names");

    // 100 MB that are no tar: a 400 saying so, for import and load alike.
    let junk = vec![b'x'; 100 << 20];
    let (status, body) = host.api("POST", "/images/create?fromSrc=-&repo=junk&tag=1", &junk);
    assert_eq!(status, 400, "{}", text(&body));
    assert!(text(&body).contains("not a tar archive"), "{}", text(&body));
    let (status, body) = host.api("POST", "/images/load", &junk);
    assert_eq!(status, 400, "{}", text(&body));
    assert_eq!(host.image_names(), ["bb:1"]);
}

/// Defect: `GET /images/json` ignored its filters; a wrong-typed filter meant no filter.
fn image_filters(host: &Host) {
    // A dangling image: `dang:1` moved to a new image leaves the old one nameless.
    let rootfs = |content: &str| tar(&[("etc/", b""), ("etc/content", content.as_bytes())]);
    for (repo, content, label) in [("dang", "old", "tier=db"), ("dang", "new", "tier=db"), ("web", "web", "tier=web")] {
        let target =
            format!("/images/create?fromSrc=-&repo={repo}&tag=1&changes={}", encode(&format!("LABEL {label}")));
        let (status, body) = host.api("POST", &target, &rootfs(content));
        assert_eq!(status, 200, "{}", text(&body));
    }
    let (status, all, body) = host.listed("{}");
    assert_eq!(status, 200, "{body}");
    assert_eq!(all.len(), 4, "{body}");
    let (bb, dang, web) = (host.image_id("bb:1"), host.image_id("dang:1"), host.image_id("web:1"));
    let dangling: Vec<String> = all.iter().filter(|i| ![&bb, &dang, &web].contains(i)).cloned().collect();
    assert_eq!(dangling.len(), 1);

    let (status, ids, body) = host.listed(r#"{"dangling":{"true":true}}"#);
    assert_eq!((status, &ids), (200, &dangling), "{body}");
    let (status, ids, body) = host.listed(r#"{"dangling":["0"]}"#);
    assert_eq!((status, ids.len()), (200, 3), "{body}");
    let (status, ids, body) = host.listed(r#"{"reference":{"d*":true}}"#);
    assert_eq!((status, ids), (200, vec![dang.clone()]), "{body}");
    let (status, mut ids, body) = host.listed(r#"{"label":{"tier=db":true}}"#);
    ids.sort();
    let mut expected = vec![dang.clone(), dangling[0].clone()];
    expected.sort();
    assert_eq!((status, ids), (200, expected), "{body}");
    let (status, ids, body) = host.listed(r#"{"since":["dang:1"]}"#);
    assert_eq!((status, ids), (200, vec![web.clone()]), "{body}");
    let (status, ids, body) = host.listed(r#"{"before":["bb:1"]}"#);
    assert_eq!((status, ids.len()), (200, 0), "{body}");
    for bad in [
        r#"{"dangling":"true"}"#,
        r#"{"dangling":{"true":"yes"}}"#,
        r#"{"dangling":["maybe"]}"#,
        r#"{"dangling":["true","false"]}"#,
        r#"{"nope":{"x":true}}"#,
        r#"{"until":["soon"]}"#,
        r#"{"reference":["web["]}"#,
    ] {
        let (status, _, body) = host.listed(bad);
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, _, body) = host.listed(r#"{"since":["nosuch:1"]}"#);
    assert_eq!(status, 404, "{body}");

    // Prune: dangling only by default; with dangling=false, every unused image the label picks.
    let prune = |filters: &str| {
        let (status, body) = host.api("POST", &format!("/images/prune?filters={}", encode(filters)), b"");
        assert_eq!(status, 200, "{filters}: {}", text(&body));
        serde_json::from_slice::<Value>(&body).expect("JSON")
    };
    assert_eq!(host.api("POST", &format!("/images/prune?filters={}", encode(r#"{"dangling":["x"]}"#)), b"").0, 400);
    assert_eq!(prune("{}")["ImagesDeleted"], json!([{ "Deleted": dangling[0] }]));
    assert_eq!(
        prune(r#"{"dangling":{"false":true},"label!":{"tier=db":true}}"#)["ImagesDeleted"],
        json!([{ "Untagged": "web:1" }, { "Deleted": web }]),
        "bb:1 is used by a container, dang:1 is excluded by its label"
    );
    assert_eq!(
        prune(r#"{"dangling":{"false":true},"label":{"tier=db":true}}"#)["ImagesDeleted"],
        json!([{ "Untagged": "dang:1" }, { "Deleted": dang }])
    );
    assert_eq!(host.image_names(), ["bb:1"]);
}

/// Defect: a '%' before a multi-byte character made the handler slice inside the character
/// and panic (the connection dropped without an answer).
fn undecodable_query_values(host: &Host) {
    let socket = host.node.socket();
    for target in [
        b"/images/get?names=%a\xc3\xa9".to_vec(),
        b"/images/get?names=%\xc3\xa9".to_vec(),
        b"/images/get?names=%a%C3%A9".to_vec(),
        b"/images/get?names=%ff%fe".to_vec(),
    ] {
        let (status, body) = request(&socket, "GET", &target, b"");
        assert!(matches!(status, 400 | 404), "{}: {status} {}", text(&target), text(&body));
    }
    let tarball = tar(&[("etc/", b"")]);
    let target = b"/images/create?fromSrc=-&repo=q&tag=1&changes=%a\xc3\xa9";
    let (status, body) = request(&socket, "POST", target, &tarball);
    assert_eq!(status, 400, "{}: {}", text(target), text(&body));
    // Saving still streams whole archives.
    let (status, archive) = request(&socket, "GET", b"/images/get?names=bb%3A1", b"");
    assert_eq!(status, 200);
    assert!(archive.len() > 1 << 20, "an archive of busybox is more than 1 MiB: {}", archive.len());
    assert_eq!(request(&socket, "GET", b"/_ping", b"").0, 200);
}
