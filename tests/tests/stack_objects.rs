//! Stacks with more than services: secrets and configs as files in the
//! container, networks with subnets, named volumes that outlive a task,
//! health checks and depends_on ordering, and the errors bad stacks get.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use shoal_tests::{eventually, Node};

fn names(list: &serde_json::Value, key: &str) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .map(|a| a.iter().map(|o| o[key].as_str().unwrap_or("").to_string()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn spec_names(list: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .map(|a| a.iter().map(|o| o["Spec"]["Name"].as_str().unwrap_or("").to_string()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The only running container whose name starts with `prefix`.
fn container(node: &Node, prefix: &str) -> (String, i32) {
    eventually(Duration::from_secs(30), &format!("one running {prefix} container"), || {
        let c: Vec<_> = node.running_containers().into_iter().filter(|(n, _)| n.starts_with(prefix)).collect();
        (c.len() == 1).then(|| c[0].clone())
    })
}

/// An RFC 3339 UTC time (`…T12:00:01.5Z`) as text that sorts as the time
/// does: the fraction padded to nanoseconds.
fn sortable_time(s: &str) -> String {
    let s = s.trim_end_matches('Z');
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    format!("{whole}.{fraction:0<9}")
}

fn in_container(pid: i32, path: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/root{path}"))
}

fn docker(node: &Node, args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", node.host())
        .output()
        .expect("the docker CLI is on this machine (it is a documented part of the dev and CI machines)");
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const FILES_STACK: &str = r#"
services:
  app:
    image: demo:1
    command: ["sh", "-c", "echo started >> /data/starts; exec sleep 3600"]
    stop_grace_period: 1s
    deploy:
      restart_policy: { condition: any, delay: 1s }
    secrets:
      - db_password
      - source: api_key
        target: api
        uid: "1000"
        gid: "1001"
        mode: 0400
    configs:
      - source: app_conf
        target: /etc/app.conf
        mode: 0644
    networks: [back]
    volumes:
      - data:/data
      - /cache
      - type: tmpfs
        target: /scratch
    ports:
      - "8080:80"
secrets:
  db_password:
    file: ./db_password.txt
  api_key:
    file: ./api_key.txt
configs:
  app_conf:
    file: ./app.conf
networks:
  back:
    ipam:
      config: [{ subnet: 10.77.0.0/24 }]
volumes:
  data: {}
"#;

#[test]
fn secrets_configs_networks_and_volumes_reach_the_container_and_go_with_the_stack() {
    let node = Node::start().expect("starting the daemon");
    node.swarm_init();
    node.import_busybox("demo:1");
    node.write("db_password.txt", "s3cret\n");
    node.write("api_key.txt", "key-123");
    node.write("app.conf", "level = debug\n");
    let file = node.write("stack.yml", FILES_STACK);
    let file = file.to_str().expect("UTF-8").to_string();

    let out = node.ok(&["stack", "deploy", "-c", &file, "app"]);
    assert!(out.contains("Creating secret app_db_password") && out.contains("Creating network app_back"), "{out}");
    let (_, pid) = container(&node, "app_app.1.");

    // Secrets under /run/secrets, a config at its target, with owners and modes.
    let password = in_container(pid, "/run/secrets/db_password");
    assert_eq!(std::fs::read_to_string(&password).expect("the secret is in the container"), "s3cret\n");
    let meta = std::fs::metadata(&password).expect("stat the secret");
    assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o444, 0, 0));
    let api = std::fs::metadata(in_container(pid, "/run/secrets/api")).expect("stat the api key");
    assert_eq!((api.mode() & 0o7777, api.uid(), api.gid()), (0o400, 1000, 1001));
    let conf = in_container(pid, "/etc/app.conf");
    assert_eq!(std::fs::read_to_string(&conf).expect("the config is in the container"), "level = debug\n");
    assert_eq!(std::fs::metadata(&conf).expect("stat the config").mode() & 0o7777, 0o644);
    // The secret's host side is a tmpfs, not the disk.
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("the container's mounts");
    let secret_mount = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/run/secrets/db_password"))
        .unwrap_or_else(|| panic!("no mount at /run/secrets/db_password:\n{mountinfo}"));
    assert!(secret_mount.contains(" - tmpfs "), "{secret_mount}");
    assert!(secret_mount.split(' ').nth(5).is_some_and(|o| o.starts_with("ro")), "{secret_mount}");
    let scratch = mountinfo.lines().find(|l| l.split(' ').nth(4) == Some("/scratch")).expect("the tmpfs mount");
    assert!(scratch.contains(" - tmpfs "), "{scratch}");
    // An anonymous volume: a volume of its own, named by the runtime.
    assert!(mountinfo.lines().any(|l| l.split(' ').nth(4) == Some("/cache")), "no mount at /cache:\n{mountinfo}");
    let anonymous = || -> Vec<String> {
        std::fs::read_dir(node.data_root().join("volumes"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 64)
            .collect()
    };
    assert_eq!(anonymous().len(), 1, "{:?}", anonymous());

    // What the API and the docker CLI show: names, never a secret's data.
    let secrets = node.json(&["secret", "ls"]);
    assert_eq!(spec_names(&secrets), ["app_api_key", "app_db_password"]);
    let inspected = node.json_plain(&["secret", "inspect", "app_db_password"]);
    assert!(inspected[0]["Spec"].get("Data").is_none(), "{inspected}");
    let listed = docker(&node, &["secret", "ls"]);
    assert!(listed.contains("app_db_password") && listed.contains("app_api_key"), "{listed}");
    let listed = docker(&node, &["config", "ls"]);
    assert!(listed.contains("app_app_conf"), "{listed}");
    // The published port made the routing mesh's `ingress` network, as in Docker.
    let networks = node.json(&["network", "ls"]);
    assert_eq!(names(&networks, "Name"), ["app_back", "ingress"]);
    let back = networks.as_array().and_then(|a| a.iter().find(|n| n["Name"] == "app_back")).expect("app_back");
    assert_eq!(back["IPAM"]["Config"][0]["Subnet"], "10.77.0.0/24");
    let services = node.ok(&["service", "ls"]);
    assert!(services.contains("*:8080->80/tcp"), "{services}");

    // A secret in use cannot go.
    let err = node.fails(&["secret", "rm", "app_db_password"]);
    assert!(err.contains("in use by the following service: app_app"), "{err}");

    // The same files again change nothing.
    let out = node.ok(&["stack", "deploy", "-c", &file, "app"]);
    assert!(out.contains("Service app_app is unchanged") && !out.contains("Creating"), "{out}");
    assert_eq!(container(&node, "app_app.1.").1, pid, "an unchanged redeploy restarted the task");

    // A changed secret is refused, naming it and the way out; nothing changes.
    let version = node.json_plain(&["service", "inspect", "app_app"])[0]["Version"]["Index"].clone();
    node.write("db_password.txt", "other\n");
    let err = node.fails(&["stack", "deploy", "-c", &file, "app"]);
    assert!(err.contains("app_db_password") && err.contains("new name"), "{err}");
    assert_eq!(node.json_plain(&["service", "inspect", "app_app"])[0]["Version"]["Index"], version);
    node.write("db_password.txt", "s3cret\n");

    // A named volume outlives the task: the replacement sees the first one's file.
    // SAFETY: kill(2) on the container's pid, which the test just read.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let (_, new_pid) = eventually(Duration::from_secs(30), "a replacement container", || {
        let c = container(&node, "app_app.1.");
        (c.1 != pid).then_some(c)
    });
    let starts = eventually(Duration::from_secs(10), "the second start in the volume", || {
        let text = std::fs::read_to_string(in_container(new_pid, "/data/starts")).unwrap_or_default();
        (text.lines().count() == 2).then_some(text)
    });
    assert_eq!(starts, "started\nstarted\n");
    assert!(node.data_root().join("volumes/app_data/_data/starts").exists());

    // stack rm takes the services, secrets, configs and networks (not the volume).
    let out = node.ok(&["stack", "rm", "app"]);
    assert!(out.contains("Removing secret app_db_password") && out.contains("Removing network app_back"), "{out}");
    assert!(node.json(&["secret", "ls"]).as_array().is_some_and(|a| a.is_empty()));
    assert!(node.json(&["config", "ls"]).as_array().is_some_and(|a| a.is_empty()));
    assert_eq!(names(&node.json(&["network", "ls"]), "Name"), ["ingress"], "the stack's networks stayed");
    assert_eq!(node.mounts(), Vec::<String>::new(), "mounts left behind (the secrets' tmpfs?)");
    assert!(node.data_root().join("volumes/app_data/_data/starts").exists(), "stack rm removed the volume");
    // The tasks' anonymous volumes went with their containers.
    eventually(Duration::from_secs(30), "the tasks' anonymous volumes removed", || {
        anonymous().is_empty().then_some(())
    });
}

#[test]
fn health_checks_gate_running_and_depends_on_orders_first_deploys() {
    let node = Node::start().expect("starting the daemon");
    node.swarm_init();
    node.import_busybox("demo:1");
    let file = node.write(
        "stack.yml",
        r#"
services:
  db:
    image: demo:1
    command: ["sh", "-c", "sleep 3; touch /ready; exec sleep 3600"]
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD", "test", "-f", "/ready"]
      interval: 500ms
      retries: 3
      start_period: 30s
  web:
    image: demo:1
    command: ["sleep", "3600"]
    stop_grace_period: 1s
    depends_on:
      db: { condition: service_healthy }
"#,
    );
    node.ok(&["stack", "deploy", "-c", file.to_str().expect("UTF-8"), "app"]);
    let db = node.json(&["service", "ps", "app_db"]);
    let db_task = &db[0];
    assert_eq!(db_task["Status"]["State"], "running");
    assert!(db_task["Status"]["Message"].as_str().is_some_and(|m| m.contains("healthy")), "{db_task}");
    let (_, db_pid) = container(&node, "app_db.1.");
    assert!(in_container(db_pid, "/ready").exists(), "db is running but its check cannot have passed");
    let web = node.json(&["service", "ps", "app_web"]);
    let web_created = web[0]["CreatedAt"].as_str().expect("a creation time").to_string();
    let db_running = db_task["Status"]["Timestamp"].as_str().expect("a status time").to_string();
    let t = |s: &str| sortable_time(s);
    assert!(
        t(&web_created) >= t(&db_running),
        "web's first task ({web_created}) was created before db was healthy ({db_running})"
    );
    node.ok(&["stack", "rm", "app"]);

    // A check that never passes: the task fails as unhealthy and is restarted.
    let sick = node.write(
        "sick.yml",
        r#"
services:
  sick:
    image: demo:1
    command: ["sleep", "3600"]
    stop_grace_period: 1s
    healthcheck: { test: ["CMD", "false"], interval: 300ms, retries: 2 }
"#,
    );
    node.ok(&["stack", "deploy", "--detach", "-c", sick.to_str().expect("UTF-8"), "ill"]);
    let failed = eventually(Duration::from_secs(30), "an unhealthy task", || {
        let tasks = node.json(&["service", "ps", "ill_sick"]);
        tasks.as_array()?.iter().find(|t| t["Status"]["State"] == "failed").cloned()
    });
    let err = failed["Status"]["Err"].as_str().unwrap_or("");
    assert!(err.contains("unhealthy"), "{failed}");
    eventually(Duration::from_secs(30), "a replacement task", || {
        (node.json(&["service", "ps", "ill_sick"]).as_array()?.len() > 1).then_some(())
    });
    node.ok(&["stack", "rm", "ill"]);
}

#[test]
fn bad_stacks_get_clear_errors_and_change_nothing() {
    let node = Node::start().expect("starting the daemon");
    node.swarm_init();
    node.import_busybox("demo:1");
    let nothing_deployed = |node: &Node| {
        assert!(node.json(&["service", "ls"]).as_array().is_some_and(|a| a.is_empty()));
        assert!(node.json(&["secret", "ls"]).as_array().is_some_and(|a| a.is_empty()));
        assert!(node.json(&["network", "ls"]).as_array().is_some_and(|a| a.is_empty()));
    };

    // An external secret that does not exist.
    node.write("pw.txt", "x");
    let external = node.write(
        "external.yml",
        "services:\n  app:\n    image: demo:1\n    command: [sleep, '60']\n    secrets: [pw, shared]\nsecrets:\n  pw:\n    file: ./pw.txt\n  shared:\n    external: true\n",
    );
    let err = node.fails(&["stack", "deploy", "-c", external.to_str().expect("UTF-8"), "app"]);
    assert!(
        err.contains("secret shared is declared as external") && err.contains("shoal secret create shared"),
        "{err}"
    );
    nothing_deployed(&node);
    // Created, the same file deploys.
    let shared = node.write("shared.txt", "y");
    node.ok(&["secret", "create", "shared", shared.to_str().expect("UTF-8")]);
    node.ok(&["stack", "deploy", "--detach", "-c", external.to_str().expect("UTF-8"), "app"]);
    let err = node.fails(&["secret", "rm", "shared"]);
    assert!(err.contains("in use"), "{err}");
    node.ok(&["stack", "rm", "app"]);
    // The external secret is not the stack's: it stays.
    assert_eq!(spec_names(&node.json(&["secret", "ls"])), ["shared"]);
    node.ok(&["secret", "rm", "shared"]);

    // A secret file that is not there: where, and what.
    let missing = node.write(
        "missing.yml",
        "services:\n  app:\n    image: demo:1\n    secrets: [pw]\nsecrets:\n  pw:\n    file: ./nope.txt\n",
    );
    let err = node.fails(&["stack", "deploy", "-c", missing.to_str().expect("UTF-8"), "app"]);
    assert!(err.contains("missing.yml:7:") && err.contains("secrets.pw.file") && err.contains("nope.txt"), "{err}");
    nothing_deployed(&node);

    // A bind source missing on the node: the task is rejected, saying so.
    let bind = node.write(
        "bind.yml",
        "services:\n  app:\n    image: demo:1\n    command: [sleep, '60']\n    volumes: ['/nonexistent/shoal-test:/x']\n",
    );
    let err = node.fails(&["stack", "deploy", "-c", bind.to_str().expect("UTF-8"), "app"]);
    assert!(err.contains("bind source path /nonexistent/shoal-test does not exist"), "{err}");
    node.ok(&["stack", "rm", "app"]);
    assert!(!std::path::Path::new("/nonexistent/shoal-test").exists(), "the bind source was created");

    // The API refuses oversized and malformed secrets, naming the problem.
    let big = format!(r#"{{"Name":"big","Data":"{}"}}"#, "A".repeat(700 * 1024));
    let (code, body) = node.http("POST", "/secrets/create", &big);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("500 KiB"), "{body}");
    let (code, body) = node.http("POST", "/secrets/create", r#"{"Name":"x","Data":"%%%"}"#);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("base64"), "{body}");
    let (code, body) = node.http("POST", "/networks/create", r#"{"Name":"n","Driver":"bridge"}"#);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("overlay"), "{body}");
    node.ok(&["info"]);
}

const TWO_NETWORKS: &str = r#"
services:
  web:
    image: demo:1
    command: ["sleep", "3600"]
    stop_grace_period: 1s
    deploy: { replicas: 2 }
    networks:
      front: {}
      back: { aliases: [www] }
  db:
    image: demo:1
    command: ["sleep", "3600"]
    stop_grace_period: 1s
    deploy: { endpoint_mode: dnsrr }
    networks: [back]
networks:
  front:
    ipam: { config: [{ subnet: 10.78.1.0/24 }] }
  back:
    ipam: { config: [{ subnet: 10.78.2.0/24 }] }
"#;

/// The address part of `10.78.1.5/24` if it lies in the /24 `prefix` (`10.78.1`).
fn in_subnet<'a>(cidr: &'a str, prefix: &str) -> Option<&'a str> {
    let (ip, len) = cidr.split_once('/')?;
    (len == "24" && ip.rsplit_once('.')?.0 == prefix).then_some(ip)
}

#[test]
fn networks_give_services_virtual_ips_and_tasks_addresses_that_docker_shows() {
    let node = Node::start().expect("starting the daemon");
    node.swarm_init();
    node.import_busybox("demo:1");
    let file = node.write("stack.yml", TWO_NETWORKS);
    node.ok(&["stack", "deploy", "-c", file.to_str().expect("UTF-8"), "app"]);

    let network = |name: &str| -> serde_json::Value {
        serde_json::from_str(&docker(&node, &["network", "inspect", name])).expect("docker network inspect's JSON")
    };
    let (front, back) = (network("app_front"), network("app_back"));
    let vni = |n: &serde_json::Value| {
        let v = n[0]["Options"]["com.docker.network.driver.overlay.vxlanid_list"].as_str().unwrap_or("").to_string();
        v.parse::<u32>().unwrap_or_else(|_| panic!("no VNI in {n}"))
    };
    assert!(vni(&front) >= 4096 && vni(&back) >= 4096 && vni(&front) != vni(&back));
    assert_eq!(back[0]["IPAM"]["Config"][0]["Gateway"], "10.78.2.1");
    let id = |n: &serde_json::Value| n[0]["Id"].as_str().unwrap_or("").to_string();
    let subnet_of = |network_id: &str| {
        if network_id == id(&front) {
            "10.78.1"
        } else if network_id == id(&back) {
            "10.78.2"
        } else {
            panic!("an address on network {network_id}, neither of the stack's")
        }
    };

    // web has a virtual IP on each of its networks, in its subnet; db (dnsrr) none.
    let web: serde_json::Value =
        serde_json::from_str(&docker(&node, &["service", "inspect", "app_web"])).expect("docker's JSON");
    let vips = web[0]["Endpoint"]["VirtualIPs"].as_array().cloned().unwrap_or_default();
    let mut seen: Vec<String> = Vec::new();
    let mut vip_networks: Vec<String> = Vec::new();
    for v in &vips {
        let network_id = v["NetworkID"].as_str().unwrap_or("");
        let addr = v["Addr"].as_str().unwrap_or("");
        let ip = in_subnet(addr, subnet_of(network_id)).unwrap_or_else(|| panic!("VIP {addr} outside its network"));
        seen.push(ip.to_string());
        vip_networks.push(network_id.to_string());
    }
    vip_networks.sort();
    let mut both = vec![id(&front), id(&back)];
    both.sort();
    assert_eq!(vip_networks, both, "{web}");
    assert_eq!(web[0]["Endpoint"]["Spec"]["Mode"], "vip");
    let db: serde_json::Value =
        serde_json::from_str(&docker(&node, &["service", "inspect", "app_db"])).expect("docker's JSON");
    assert!(db[0]["Endpoint"].get("VirtualIPs").is_none(), "dnsrr has no virtual IP: {db}");

    // Every running task has an address on each of its networks, in the
    // service's order, and no two addresses (tasks or VIPs) are the same.
    for (service, networks) in [("app_web", 2), ("app_db", 1)] {
        let tasks = node.json(&["service", "ps", service]);
        let tasks = tasks.as_array().cloned().unwrap_or_default();
        assert!(!tasks.is_empty());
        for t in tasks.iter().filter(|t| t["DesiredState"] == "running") {
            let attachments = t["NetworksAttachments"].as_array().cloned().unwrap_or_default();
            assert_eq!(attachments.len(), networks, "{t}");
            for a in &attachments {
                let network_id = a["Network"]["ID"].as_str().unwrap_or("");
                let addr = a["Addresses"][0].as_str().unwrap_or("");
                let ip = in_subnet(addr, subnet_of(network_id)).unwrap_or_else(|| panic!("{addr} outside its network"));
                assert!(!ip.ends_with(".1"), "{addr} is the gateway");
                seen.push(ip.to_string());
            }
        }
    }
    assert_eq!(seen.len(), 2 + 2 * 2 + 1);
    let distinct: std::collections::BTreeSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), seen.len(), "an address given twice: {seen:?}");

    // A network in use stays; an encrypted one is refused, never made plain.
    let err = node.fails(&["network", "rm", "app_back"]);
    assert!(err.contains("in use by service app_db, app_web"), "{err}");
    let out = std::process::Command::new("docker")
        .args(["network", "create", "-d", "overlay", "--opt", "encrypted", "secure"])
        .env("DOCKER_HOST", node.host())
        .output()
        .expect("the docker CLI");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("encrypted overlay networks are not available yet"));
    assert!(node.json(&["network", "ls"]).as_array().is_some_and(|a| a.len() == 2), "secure was created");
    node.ok(&["stack", "rm", "app"]);

    // A network too small for the tasks: the deploy says which and why.
    let full = node.write(
        "full.yml",
        "services:\n  web:\n    image: demo:1\n    command: [sleep, '3600']\n    stop_grace_period: 1s\n    \
         deploy: { replicas: 6 }\n    networks: [small]\nnetworks:\n  small:\n    \
         ipam: { config: [{ subnet: 10.78.3.0/29 }] }\n",
    );
    let err = node.fails(&["stack", "deploy", "-c", full.to_str().expect("UTF-8"), "full"]);
    assert!(
        err.contains("no address left on network full_small (10.78.3.0/29): its 5 addresses are all in use"),
        "{err}"
    );
    let tasks = node.json(&["service", "ps", "full_web"]);
    let waiting: Vec<&serde_json::Value> =
        tasks.as_array().map(|a| a.iter().filter(|t| t["Status"]["State"] == "new").collect()).unwrap_or_default();
    assert_eq!(waiting.len(), 2, "a VIP and 4 tasks fit in a /29: {tasks}");
    node.ok(&["stack", "rm", "full"]);
}
