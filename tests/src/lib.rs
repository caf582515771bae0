//! End-to-end harness: runs the real `shoal` binary as a daemon on a
//! temporary data root and socket, drives it with the CLI, and cleans up
//! everything it made (processes, mounts, files) even when a test fails.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The `shoal` binary under test: `$SHOAL_BIN`, or the one cargo built next
/// to this test (with the runtime's `shoal-shim`, which the daemon runs
/// from the same directory).
pub fn shoal_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SHOAL_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test binary has a path");
    // target/<profile>/deps/<test> → target/<profile>/shoal
    let dir = exe.parent().and_then(|d| d.parent()).expect("the test binary lives in target/<profile>/deps");
    for bin in ["shoal", "shoal-shim"] {
        let path = dir.join(bin);
        assert!(
            path.exists(),
            "{} is missing: build the binaries first with `cargo build -p shoal -p shoal-runtime`",
            path.display()
        );
    }
    dir.join("shoal")
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding an ephemeral port on loopback");
    l.local_addr().expect("a bound socket has an address").port()
}

/// A static busybox: Debian's `busybox-static` package.
pub fn busybox() -> PathBuf {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("busybox is missing: install Debian's busybox-static (apt-get install busybox-static)");
}

/// Builds a busybox root filesystem (every applet linked into /bin, a web
/// root with an index page) in `dir`.
pub fn busybox_rootfs(dir: &Path) -> anyhow::Result<()> {
    let bb = busybox();
    std::fs::create_dir_all(dir.join("bin"))?;
    std::fs::create_dir_all(dir.join("www"))?;
    std::fs::create_dir_all(dir.join("etc"))?;
    std::fs::copy(&bb, dir.join("bin/busybox")).context("copying busybox")?;
    let list = Command::new(&bb).arg("--list").output().context("busybox --list")?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            let link = dir.join("bin").join(applet);
            if !link.exists() {
                std::os::unix::fs::symlink("busybox", link)?;
            }
        }
    }
    std::fs::write(dir.join("www/index.html"), "hello from shoal\n")?;
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    std::fs::write(dir.join("etc/group"), "root:x:0:\n")?;
    Ok(())
}

/// A daemon on its own data root, socket and manager port.
pub struct Node {
    pub dir: tempfile::TempDir,
    pub port: u16,
    daemon: Option<Child>,
}

impl Node {
    /// Starts a daemon on a fresh temporary data root.
    pub fn start() -> anyhow::Result<Node> {
        assert!(
            nix_is_root(),
            "the end-to-end tests run containers and must run as root (CI does); run them with sudo"
        );
        let dir = tempfile::Builder::new().prefix("shoal-e2e-").tempdir()?;
        let mut node = Node { dir, port: free_port(), daemon: None };
        node.start_daemon()?;
        Ok(node)
    }

    pub fn data_root(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("shoal.sock")
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// Starts (or restarts) the daemon and waits until its API answers.
    pub fn start_daemon(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("daemon.log"))?;
        let child = Command::new(shoal_bin())
            .arg("daemon")
            .arg("--data-root")
            .arg(self.data_root())
            .arg("--socket")
            .arg(self.socket())
            // These daemons share the host's network namespace (and run side by side): their
            // containers get loopback only, not a default bridge each would claim for itself.
            .args(["--bridge", "none"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting shoal daemon")?;
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.shoal(&["info"]).map(|o| o.status.success()).unwrap_or(false) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("the daemon did not answer within 20s; its log:\n{}", self.daemon_log())
    }

    /// Stops the daemon as a service manager does, with SIGTERM, and waits for it to exit
    /// (at most 30 s, then it is killed and the test fails); returns whether it exited 0.
    pub fn stop_daemon(&mut self) -> bool {
        let Some(mut child) = self.daemon.take() else { return true };
        let pid = i32::try_from(child.id()).expect("pids fit in i32");
        // SAFETY: kill(2) on our own child, which has not been waited for yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the daemon did not stop within 30s of SIGTERM; its log:\n{}", tail(&self.daemon_log(), 40));
    }

    /// Kills the daemon with SIGKILL (containers keep running).
    pub fn kill_daemon(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// Runs the CLI against this daemon.
    pub fn shoal(&self, args: &[&str]) -> anyhow::Result<Output> {
        Command::new(shoal_bin())
            .args(args)
            .env("SHOAL_HOST", self.host())
            .current_dir(self.dir.path())
            .output()
            .context("running shoal")
    }

    /// Runs the CLI and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.shoal(args).expect("running the shoal CLI");
        assert!(
            out.status.success(),
            "shoal {} failed:\nstdout: {}\nstderr: {}\ndaemon log (tail):\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.daemon_log(), 40)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the CLI and requires failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.shoal(args).expect("running the shoal CLI");
        assert!(
            !out.status.success(),
            "shoal {} should have failed:\nstdout: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Runs a list command with `--format json` and parses it.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["--format", "json"]);
        let out = self.ok(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("shoal {} printed no JSON ({e}): {out}", args.join(" ")))
    }

    /// A raw HTTP/1.0 request to the daemon's API: (status, body).
    pub fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        http(&self.socket(), method, path, body).expect("talking to the daemon's API socket")
    }

    /// `swarm init` on loopback, on this node's port.
    pub fn swarm_init(&self) {
        let listen = format!("127.0.0.1:{}", self.port);
        self.ok(&["swarm", "init", "--listen-addr", &listen]);
    }

    /// Builds the busybox rootfs and imports it as `reference`.
    pub fn import_busybox(&self, reference: &str) {
        let rootfs = self.dir.path().join("rootfs");
        if !rootfs.exists() {
            busybox_rootfs(&rootfs).expect("building the busybox rootfs");
        }
        self.ok(&["image", "import", rootfs.to_str().expect("temp paths are UTF-8"), reference]);
    }

    /// Writes a file under the node's temp dir; returns its path.
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).expect("writing a test file");
        p
    }

    /// Runs a command that prints JSON without `--format` (e.g. inspect).
    pub fn json_plain(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("shoal {} printed no JSON ({e}): {out}", args.join(" ")))
    }

    /// Running containers: (name, pid).
    pub fn running_containers(&self) -> Vec<(String, i32)> {
        let v = self.json(&["container", "ls"]);
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|c| {
                        (
                            c["Names"][0].as_str().unwrap_or("").trim_start_matches('/').to_string(),
                            c["Pid"].as_i64().unwrap_or(0) as i32,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Mount points under this node's data root.
    pub fn mounts(&self) -> Vec<String> {
        let root = self.data_root().display().to_string();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(String::from))
            .filter(|m| m.starts_with(&root))
            .collect()
    }

    /// Processes started for this node's containers (shims and their children).
    pub fn container_processes(&self) -> Vec<i32> {
        let root = self.data_root().display().to_string();
        let mut shims = Vec::new();
        let mut parent = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains("shoal-shim") && cmdline.contains(&root) {
                shims.push(pid);
            }
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if let Some(ppid) = stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)) {
                if let Ok(ppid) = ppid.parse::<i32>() {
                    parent.push((pid, ppid));
                }
            }
        }
        let mut all = shims.clone();
        let mut i = 0;
        while i < all.len() {
            let p = all[i];
            all.extend(parent.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
            i += 1;
        }
        all
    }
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_daemon();
        for pid in self.container_processes().into_iter().rev() {
            // SAFETY: kill(2) on a pid we found; a stale pid just fails.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(100));
        let mut mounts = self.mounts();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
        // Cgroups of containers the test left behind.
        let _ = Command::new(shoal_bin()).arg("internal-cleanup").arg(self.data_root()).status();
    }
}

/// Polls `f` until it returns `Some`, up to `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Like [`eventually`], but `f` says what it saw when not yet done; a timeout reports the
/// last of it.
pub fn eventually_ok<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(seen) => {
                assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}; last seen: {seen}")
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One HTTP/1.0 request to the API socket at `socket`: (status, body).
pub fn http(socket: &Path, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket)?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: shoal\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// A lab of simulated hosts on a temporary root, removed with `lab down`
/// even when the test fails.
pub struct Lab {
    pub root: tempfile::TempDir,
}

impl Lab {
    /// An empty lab.
    pub fn new() -> Lab {
        Lab { root: tempfile::Builder::new().prefix("shoal-lab-").tempdir().expect("a temp dir") }
    }

    /// A lab with a swarm of `nodes` machines (`lab up`).
    pub fn up(nodes: u32) -> Lab {
        Lab::up_with_managers(nodes, 1)
    }

    /// A lab with a swarm of `nodes` machines, `managers` of them managers.
    pub fn up_with_managers(nodes: u32, managers: u32) -> Lab {
        let lab = Lab::new();
        lab.ok(&["lab", "up", "--nodes", &nodes.to_string(), "--managers", &managers.to_string()]);
        lab
    }

    /// Machine `m`'s API socket.
    pub fn socket(&self, m: &str) -> PathBuf {
        self.root.path().join("machines").join(m).join("shoal.sock")
    }

    /// One API request to machine `m`'s daemon.
    pub fn http(&self, m: &str, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
        http(&self.socket(m), method, path, body)
    }

    /// Sends `signal` (e.g. "KILL", "STOP", "CONT") to machine `m`'s daemon.
    pub fn signal_daemon(&self, m: &str, signal: &str) {
        let pid_file = self.root.path().join("machines").join(m).join("daemon.pid");
        let pid = std::fs::read_to_string(&pid_file).expect("the machine's daemon.pid");
        let ok = Command::new("kill").args([&format!("-{signal}"), pid.trim()]).status().is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} of {m}'s daemon failed");
    }

    /// The hostname of the manager that leads, as machine `m` sees it.
    pub fn leader(&self, m: &str) -> Option<String> {
        let out = self.shoal(&["machine", "ssh", m, "--", "shoal", "node", "ls", "--format", "json"]);
        let nodes: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        nodes
            .as_array()?
            .iter()
            .find(|n| n["ManagerStatus"]["Leader"] == true)
            .and_then(|n| n["Description"]["Hostname"].as_str())
            .map(String::from)
    }

    /// Runs the CLI with this lab's root.
    pub fn shoal(&self, args: &[&str]) -> Output {
        Command::new(shoal_bin()).args(args).env("SHOAL_LAB_ROOT", self.root.path()).output().expect("running shoal")
    }

    /// Runs the CLI and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.shoal(args);
        assert!(
            out.status.success(),
            "shoal {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `shoal ARGS` inside machine `m`; requires success.
    pub fn on(&self, m: &str, args: &[&str]) -> String {
        let mut a = vec!["machine", "ssh", m, "--", "shoal"];
        a.extend_from_slice(args);
        self.ok(&a)
    }

    /// Runs `shoal ARGS` inside machine `m`; requires failure, returns stderr.
    pub fn on_fails(&self, m: &str, args: &[&str]) -> String {
        let mut a = vec!["machine", "ssh", m, "--", "shoal"];
        a.extend_from_slice(args);
        let out = self.shoal(&a);
        assert!(!out.status.success(), "shoal {} on {m} should have failed", args.join(" "));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Runs the stock docker CLI against machine `m`'s daemon; requires success, returns stdout.
    #[track_caller]
    pub fn docker(&self, m: &str, args: &[&str]) -> String {
        let out = Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket(m).display()))
            .output()
            .expect("the docker CLI");
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A list command inside machine `m`, as JSON.
    pub fn json_on(&self, m: &str, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["--format", "json"]);
        serde_json::from_str(&self.on(m, &a)).expect("JSON output")
    }

    /// Running containers on machine `m` whose name starts with `prefix`.
    pub fn running_on(&self, m: &str, prefix: &str) -> usize {
        self.json_on(m, &["ps"])
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|c| c["Names"][0].as_str().unwrap_or("").trim_start_matches('/').starts_with(prefix))
                    .count()
            })
            .unwrap_or(0)
    }

    /// `machine ls` as JSON.
    pub fn machines(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["machine", "ls", "--format", "json"])).expect("machine ls prints JSON")
    }
}

impl Default for Lab {
    fn default() -> Self {
        Lab::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.shoal(&["lab", "down"]);
    }
}
