//! End-to-end tests of the runtime with real containers (needs root, overlayfs and a static
//! busybox, e.g. Debian's `busybox-static`). `harness = false`: this binary is also the shim
//! the runtime re-executes (`containers internal-shim <dir>`), and a helper that starts a
//! container from another process and exits (`containers start-detached <root> <name>`), like a
//! daemon that is restarted while its containers run on.

use std::{
    collections::BTreeMap,
    env, fs,
    io::Write,
    os::unix::fs::{symlink, PermissionsExt},
    panic::{self, AssertUnwindSafe},
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::Duration,
};

use nix::{
    mount::{umount2, MntFlags},
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use shoal_runtime::{ContainerInfo, ContainerSpec, ContainerState, Error, LogStream, Runtime};

type Result<T = ()> = std::result::Result<T, String>;
type Case = fn(&Env) -> Result;

const SHIM_ARG: &str = "internal-shim";
const IMAGE: &str = "busybox:dir";

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!("{}:{}: {}", file!(), line!(), format!($($msg)+)));
        }
    };
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().collect();
    match args.get(1).map(String::as_str) {
        Some(SHIM_ARG) => match args.get(2) {
            Some(dir) => shoal_runtime::shim::main(Path::new(dir)),
            None => {
                eprintln!("usage: {} {SHIM_ARG} <container dir>", args[0]);
                return ExitCode::FAILURE;
            }
        },
        Some("start-detached") => return start_detached(&args[2..]),
        _ => {}
    }
    // Ignore libtest's own flags (`--nocapture`, filters…): this binary runs everything.
    run_all()
}

/// The "previous daemon": starts a long-running container, then exits without stopping it.
fn start_detached(args: &[String]) -> ExitCode {
    let (Some(root), Some(name)) = (args.first(), args.get(1)) else {
        eprintln!("usage: start-detached <root> <name>");
        return ExitCode::FAILURE;
    };
    let result = open_runtime(Path::new(root)).and_then(|rt| {
        let info = rt.create_container(&spec(name, &["sleep", "1000"])).map_err(|e| e.to_string())?;
        rt.start_container(&info.id).map_err(|e| e.to_string())
    });
    match result {
        Ok(info) => {
            println!("{}", info.pid.unwrap_or(0));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("start-detached: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Env {
    /// Holds the temp dir; removed on drop.
    _dir: tempfile::TempDir,
    root: PathBuf,
    rootfs: PathBuf,
    rt: Runtime,
    tokio: tokio::runtime::Runtime,
}

fn run_all() -> ExitCode {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("the container tests need root (namespaces, mounts); run them as root");
        return ExitCode::FAILURE;
    }
    let env = match setup() {
        Ok(env) => env,
        Err(e) => {
            eprintln!("setup failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cases: [(&str, Case); 9] = [
        ("import_directory_and_tar", import_directory_and_tar),
        ("exit_code_and_logs", exit_code_and_logs),
        ("process_config_inside", process_config_inside),
        ("namespaces_and_kill_9", namespaces_and_kill_9),
        ("missing_command", missing_command),
        ("stop_sends_the_signal_first", stop_sends_the_signal_first),
        ("remove_running_needs_force", remove_running_needs_force),
        ("errors_name_the_object", errors_name_the_object),
        ("readopt_after_daemon_restart", readopt_after_daemon_restart),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, case) in cases {
        print!("test {name} ... ");
        let _ = std::io::stdout().flush();
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| case(&env)));
        match outcome {
            Ok(Ok(())) => {
                println!("ok");
                passed += 1;
            }
            Ok(Err(e)) => {
                println!("FAILED\n    {e}");
                failed += 1;
            }
            Err(_) => {
                println!("FAILED (panicked)");
                failed += 1;
            }
        }
    }
    if let Err(e) = cleanup(&env) {
        println!("cleanup FAILED: {e}");
        failed += 1;
    }
    println!("\n{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn setup() -> Result<Env> {
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let rootfs = dir.path().join("busybox-rootfs");
    build_busybox_rootfs(&rootfs)?;
    let root = dir.path().join("data/runtime");
    let rt = open_runtime(&root)?;
    rt.import_image(&rootfs, IMAGE).map_err(|e| e.to_string())?;
    let tokio =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("tokio: {e}"))?;
    Ok(Env { root: rt.root().to_path_buf(), _dir: dir, rootfs, rt, tokio })
}

fn open_runtime(root: &Path) -> Result<Runtime> {
    let exe = env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    Runtime::open(root, exe, vec![SHIM_ARG.to_string()]).map_err(|e| e.to_string())
}

/// Removes every container (even after failures) and any mount left under the root.
fn cleanup(env: &Env) -> Result {
    let mut problems = Vec::new();
    if let Ok(containers) = env.rt.list_containers() {
        for c in containers {
            if let Err(e) = env.rt.remove_container(&c.id, true) {
                problems.push(format!("removing {}: {e}", c.name));
            }
        }
    }
    for mount in mounts_under(&env.root) {
        let _ = umount2(&mount, MntFlags::MNT_DETACH);
        problems.push(format!("{} was still mounted", mount.display()));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn build_busybox_rootfs(rootfs: &Path) -> Result {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .ok_or("no static busybox found: install it (apt-get install busybox-static)")?;
    let io = |e: std::io::Error| format!("building the rootfs: {e}");
    for d in ["bin", "etc", "root", "tmp"] {
        fs::create_dir_all(rootfs.join(d)).map_err(io)?;
    }
    fs::set_permissions(rootfs, fs::Permissions::from_mode(0o755)).map_err(io)?;
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).map_err(io)?;
    fs::copy(busybox, rootfs.join("bin/busybox")).map_err(io)?;
    let list = Command::new(busybox).arg("--list").output().map_err(io)?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if !applet.is_empty() && applet != "busybox" {
            symlink("busybox", rootfs.join("bin").join(applet)).map_err(io)?;
        }
    }
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").map_err(io)?;
    fs::write(rootfs.join("etc/group"), "root:x:0:\n").map_err(io)?;
    Ok(())
}

fn spec(name: &str, cmd: &[&str]) -> ContainerSpec {
    ContainerSpec {
        name: name.to_string(),
        image: IMAGE.to_string(),
        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
        labels: BTreeMap::from([("test".to_string(), name.to_string())]),
        ..Default::default()
    }
}

fn wait(env: &Env, id: &str) -> Result<ContainerInfo> {
    env.tokio
        .block_on(async { tokio::time::timeout(Duration::from_secs(60), env.rt.wait_container(id)).await })
        .map_err(|_| format!("container {id} did not exit within 60s"))?
        .map_err(|e| format!("wait_container({id}): {e}"))
}

fn run_to_exit(env: &Env, spec: &ContainerSpec) -> Result<ContainerInfo> {
    let info = env.rt.create_container(spec).map_err(|e| e.to_string())?;
    env.rt.start_container(&info.id).map_err(|e| e.to_string())?;
    wait(env, &info.id)
}

fn mounts_under(root: &Path) -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(root))
        .collect()
}

fn remove_and_check_gone(env: &Env, info: &ContainerInfo) -> Result {
    env.rt.remove_container(&info.id, false).map_err(|e| e.to_string())?;
    let dir = env.root.join("containers").join(&info.id);
    ensure!(!dir.exists(), "{} still exists after remove", dir.display());
    let left = mounts_under(&dir);
    ensure!(left.is_empty(), "mounts left after remove: {left:?}");
    ensure!(matches!(env.rt.container(&info.id), Err(Error::NotFound { .. })), "a removed container is still found");
    Ok(())
}

// ---- cases ----

fn import_directory_and_tar(env: &Env) -> Result {
    let dir_image = env.rt.image(IMAGE).map_err(|e| e.to_string())?.ok_or("the directory import is not found")?;
    ensure!(dir_image.id.starts_with("sha256:"), "id {}", dir_image.id);
    ensure!(dir_image.references == [IMAGE], "refs {:?}", dir_image.references);
    ensure!(dir_image.size > 1_000_000, "size {} is not busybox-sized", dir_image.size);

    // The same tree as a gzipped tar.
    let tgz = env.rootfs.with_extension("tar.gz");
    {
        let file = fs::File::create(&tgz).map_err(|e| e.to_string())?;
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        tar.follow_symlinks(false);
        tar.append_dir_all(".", &env.rootfs).map_err(|e| e.to_string())?;
        tar.into_inner().and_then(|gz| gz.finish()).map_err(|e| e.to_string())?;
    }
    let tar_image = env.rt.import_image(&tgz, "busybox:tar").map_err(|e| e.to_string())?;
    ensure!(tar_image.references == ["busybox:tar"], "refs {:?}", tar_image.references);
    ensure!(tar_image.id != dir_image.id, "two imports share an id");
    let by_prefix = env.rt.image(&tar_image.id["sha256:".len()..][..12]).map_err(|e| e.to_string())?;
    ensure!(by_prefix.as_ref().map(|i| &i.id) == Some(&tar_image.id), "id prefix lookup");
    let all = env.rt.list_images().map_err(|e| e.to_string())?;
    ensure!(all.len() == 2, "list_images: {all:?}");

    // The OCI layout on disk names both references.
    let index = fs::read_to_string(env.root.join("images/index.json")).map_err(|e| e.to_string())?;
    ensure!(
        index.contains("org.opencontainers.image.ref.name") && index.contains("busybox:tar"),
        "index.json: {index}"
    );

    let spec = ContainerSpec { image: "busybox:tar".to_string(), ..spec("from-tar", &["cat", "/etc/passwd"]) };
    let info = run_to_exit(env, &spec)?;
    ensure!(info.exit_code == Some(0), "exit {:?} ({:?})", info.exit_code, info.error);
    let logs = env.rt.read_logs(&info.id, None).map_err(|e| e.to_string())?;
    ensure!(logs.iter().any(|l| l.line.starts_with("root:x:0:0")), "logs: {logs:?}");
    remove_and_check_gone(env, &info)
}

fn exit_code_and_logs(env: &Env) -> Result {
    let info = run_to_exit(env, &spec("exit3", &["sh", "-c", "echo hi; echo err >&2; exit 3"]))?;
    ensure!(info.state == ContainerState::Exited, "state {:?}", info.state);
    ensure!(info.exit_code == Some(3), "exit code {:?} ({:?})", info.exit_code, info.error);
    ensure!(info.error.is_none(), "error {:?}", info.error);
    ensure!(info.started_at.is_some() && info.finished_at.is_some(), "times {info:?}");
    ensure!(info.command == ["sh", "-c", "echo hi; echo err >&2; exit 3"], "command {:?}", info.command);
    let logs = env.rt.read_logs("exit3", None).map_err(|e| e.to_string())?;
    let lines: Vec<_> = logs.iter().map(|l| (l.stream, l.line.as_str())).collect();
    ensure!(lines.len() == 2, "logs {lines:?}");
    ensure!(lines.contains(&(LogStream::Stdout, "hi")), "logs {lines:?}");
    ensure!(lines.contains(&(LogStream::Stderr, "err")), "logs {lines:?}");
    ensure!(logs.iter().all(|l| l.time >= info.created_at), "log times {logs:?}");
    let tail = env.rt.read_logs("exit3", Some(1)).map_err(|e| e.to_string())?;
    ensure!(tail.len() == 1 && tail[0] == logs[1], "tail {tail:?}");
    // The raw file is Docker's json-file format.
    let raw = fs::read_to_string(env.root.join("containers").join(&info.id).join("container.log"))
        .map_err(|e| e.to_string())?;
    ensure!(raw.contains(r#"{"log":"hi\n","stream":"stdout","time":""#), "raw log {raw}");
    remove_and_check_gone(env, &info)
}

fn process_config_inside(env: &Env) -> Result {
    let spec = ContainerSpec {
        env: vec!["FOO=bar".to_string()],
        workdir: Some("/work/dir".to_string()),
        hostname: Some("box".to_string()),
        ..spec(
            "inside",
            &[
                "sh",
                "-c",
                "echo \"$HOSTNAME $FOO $PATH\"; hostname; pwd; echo $$; ls /dev; ip -o link show lo; ls /proc/1/root >/dev/null && echo procok",
            ],
        )
    };
    let info = run_to_exit(env, &spec)?;
    ensure!(info.exit_code == Some(0), "exit {:?}: {:?}", info.exit_code, env.rt.read_logs(&info.id, None));
    let logs = env.rt.read_logs(&info.id, None).map_err(|e| e.to_string())?;
    let out: Vec<&str> = logs.iter().filter(|l| l.stream == LogStream::Stdout).map(|l| l.line.as_str()).collect();
    let text = out.join("\n");
    ensure!(
        out.first() == Some(&"box bar /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "env: {text}"
    );
    ensure!(out.get(1) == Some(&"box"), "hostname: {text}");
    ensure!(out.get(2) == Some(&"/work/dir"), "workdir: {text}");
    ensure!(out.get(3) == Some(&"1"), "the command is not pid 1: {text}");
    for dev in ["null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx"] {
        ensure!(out.contains(&dev), "/dev/{dev} missing: {text}");
    }
    ensure!(out.iter().any(|l| l.contains(": lo:") && l.contains("UP")), "lo is not up: {text}");
    ensure!(out.contains(&"procok"), "/proc: {text}");
    remove_and_check_gone(env, &info)
}

fn namespaces_and_kill_9(env: &Env) -> Result {
    let created = env.rt.create_container(&spec("sleeper", &["sleep", "1000"])).map_err(|e| e.to_string())?;
    ensure!(created.state == ContainerState::Created, "state {:?}", created.state);
    let info = env.rt.start_container("sleeper").map_err(|e| e.to_string())?;
    ensure!(info.state == ContainerState::Running, "state {:?}", info.state);
    let pid = info.pid.ok_or("a running container has no pid")?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).map_err(|e| e.to_string())?;
    ensure!(cmdline == b"sleep\x001000\x00", "pid {pid} runs {cmdline:?}, not the command");
    for ns in ["pid", "mnt", "net", "uts", "ipc"] {
        let theirs = fs::read_link(format!("/proc/{pid}/ns/{ns}")).map_err(|e| e.to_string())?;
        let ours = fs::read_link(format!("/proc/self/ns/{ns}")).map_err(|e| e.to_string())?;
        ensure!(theirs != ours, "the container shares our {ns} namespace ({ours:?})");
    }
    let listed = env.rt.list_containers().map_err(|e| e.to_string())?;
    ensure!(listed.iter().any(|c| c.id == info.id && c.state == ContainerState::Running), "list: {listed:?}");
    kill(Pid::from_raw(pid), Signal::SIGKILL).map_err(|e| e.to_string())?;
    let exited = wait(env, "sleeper")?;
    ensure!(exited.exit_code == Some(137), "exit code {:?}", exited.exit_code);
    ensure!(exited.pid.is_none(), "an exited container has pid {:?}", exited.pid);
    remove_and_check_gone(env, &exited)
}

fn missing_command(env: &Env) -> Result {
    let created = env.rt.create_container(&spec("web.1", &["no-such-cmd", "arg"])).map_err(|e| e.to_string())?;
    let err = match env.rt.start_container("web.1") {
        Ok(info) => return Err(format!("start succeeded: {info:?}")),
        Err(e) => e,
    };
    let message = err.to_string();
    ensure!(matches!(err, Error::Exec { exit_code: 127, .. }), "error kind: {err:?}");
    ensure!(message.contains("\"no-such-cmd\"") && message.contains("in container web.1"), "message: {message}");
    let info = env.rt.container("web.1").map_err(|e| e.to_string())?;
    ensure!(info.state == ContainerState::Exited, "state {:?}", info.state);
    ensure!(info.exit_code == Some(127), "exit {:?}", info.exit_code);
    ensure!(info.error.as_deref().is_some_and(|e| e.contains("no-such-cmd")), "error {:?}", info.error);
    remove_and_check_gone(env, &created)?;

    let created = env.rt.create_container(&spec("abs", &["/nope/cmd"])).map_err(|e| e.to_string())?;
    let message = env.rt.start_container("abs").err().ok_or("start of /nope/cmd succeeded")?.to_string();
    ensure!(message == "exec \"/nope/cmd\": no such file or directory in container abs", "message: {message}");
    remove_and_check_gone(env, &created)
}

fn stop_sends_the_signal_first(env: &Env) -> Result {
    let script = "trap 'echo bye; exit 0' TERM; echo ready; while true; do sleep 0.1; done";
    let info = env.rt.create_container(&spec("graceful", &["sh", "-c", script])).map_err(|e| e.to_string())?;
    env.rt.start_container(&info.id).map_err(|e| e.to_string())?;
    // Wait for the trap to be installed before signalling.
    let mut ready = false;
    for _ in 0..200 {
        let logs = env.rt.read_logs(&info.id, None).map_err(|e| e.to_string())?;
        if logs.iter().any(|l| l.line == "ready") {
            ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    ensure!(ready, "the container never printed ready");
    env.rt.stop_container("graceful", None, Duration::from_secs(30)).map_err(|e| e.to_string())?;
    let stopped = env.rt.container(&info.id).map_err(|e| e.to_string())?;
    ensure!(stopped.state == ContainerState::Exited, "state {:?}", stopped.state);
    ensure!(stopped.exit_code == Some(0), "SIGTERM was not delivered first: exit {:?}", stopped.exit_code);
    let logs = env.rt.read_logs(&info.id, None).map_err(|e| e.to_string())?;
    ensure!(logs.iter().any(|l| l.line == "bye"), "logs {logs:?}");
    // Stopping again is a no-op; killing a stopped container is a conflict.
    env.rt.stop_container("graceful", None, Duration::from_secs(1)).map_err(|e| e.to_string())?;
    ensure!(
        matches!(env.rt.kill_container("graceful", "KILL"), Err(Error::Conflict { .. })),
        "kill of an exited container"
    );
    remove_and_check_gone(env, &stopped)
}

fn remove_running_needs_force(env: &Env) -> Result {
    let info = env.rt.create_container(&spec("forced", &["sleep", "1000"])).map_err(|e| e.to_string())?;
    let running = env.rt.start_container(&info.id).map_err(|e| e.to_string())?;
    let pid = running.pid.ok_or("no pid")?;
    let dir = env.root.join("containers").join(&info.id);
    ensure!(!mounts_under(&dir).is_empty(), "no overlay mounted for a running container");
    let err = env.rt.remove_container("forced", false);
    ensure!(matches!(err, Err(Error::Conflict { .. })), "remove without force: {err:?}");
    env.rt.remove_container("forced", true).map_err(|e| e.to_string())?;
    ensure!(!dir.exists(), "dir left after forced remove");
    ensure!(mounts_under(&dir).is_empty(), "mounts left after forced remove");
    let alive = fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| !s.contains(") Z ")).unwrap_or(false);
    ensure!(!alive, "the container's process {pid} survived its forced removal");
    Ok(())
}

fn errors_name_the_object(env: &Env) -> Result {
    let first = env.rt.create_container(&spec("dup", &["true"])).map_err(|e| e.to_string())?;
    let err = env.rt.create_container(&spec("dup", &["true"]));
    ensure!(matches!(&err, Err(Error::Conflict { message }) if message.contains("\"dup\"")), "duplicate name: {err:?}");
    let err = env.rt.container("no-such-container");
    ensure!(
        matches!(&err, Err(e @ Error::NotFound { .. }) if e.to_string().contains("no-such-container")),
        "not found: {err:?}"
    );
    let err = env.rt.create_container(&ContainerSpec { image: "nothere:1".to_string(), ..spec("x", &["true"]) });
    ensure!(
        matches!(&err, Err(Error::ImageNotFound { reference }) if reference == "nothere:1"),
        "missing image: {err:?}"
    );
    // An imported rootfs has no Cmd: a container needs one.
    let err = env.rt.create_container(&ContainerSpec { cmd: None, ..spec("nocmd", &[]) });
    ensure!(
        matches!(&err, Err(Error::InvalidArgument { message }) if message.contains("nocmd")),
        "empty command: {err:?}"
    );
    let err = env.rt.import_image(&env.rootfs, "Bad Name");
    ensure!(matches!(err, Err(Error::InvalidArgument { .. })), "bad reference: {err:?}");
    remove_and_check_gone(env, &first)
}

fn readopt_after_daemon_restart(env: &Env) -> Result {
    // Another process (the "old daemon") starts the container and exits.
    let exe = env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .args(["start-detached", &env.root.display().to_string(), "survivor"])
        .output()
        .map_err(|e| e.to_string())?;
    ensure!(out.status.success(), "start-detached failed: {}", String::from_utf8_lossy(&out.stderr));
    let pid: i32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("start-detached printed no pid: {e}"))?;

    // A new runtime on the same root (the "new daemon") finds it running.
    let rt = open_runtime(&env.root)?;
    let info = rt.container("survivor").map_err(|e| e.to_string())?;
    ensure!(info.state == ContainerState::Running, "state {:?}", info.state);
    ensure!(info.pid == Some(pid), "pid {:?}, expected {pid}", info.pid);
    ensure!(
        rt.list_containers()
            .map_err(|e| e.to_string())?
            .iter()
            .any(|c| c.name == "survivor" && c.state == ContainerState::Running),
        "not listed as running"
    );

    // It can wait for it and stop it. `sleep` as pid 1 ignores SIGTERM, so stop escalates.
    let outcome = env.tokio.block_on(async {
        let waiter = tokio::spawn({
            let rt = rt.clone();
            async move { rt.wait_container("survivor").await }
        });
        let stopper = rt.clone();
        let stopped = tokio::task::spawn_blocking(move || {
            stopper.stop_container("survivor", Some("SIGTERM"), Duration::from_millis(500))
        })
        .await;
        let waited = tokio::time::timeout(Duration::from_secs(60), waiter).await;
        (stopped, waited)
    });
    match outcome {
        (Ok(Ok(())), Ok(Ok(Ok(info)))) => {
            ensure!(info.state == ContainerState::Exited, "state {:?}", info.state);
            ensure!(info.exit_code == Some(137), "exit code {:?}", info.exit_code);
        }
        other => return Err(format!("stop/wait failed: {other:?}")),
    }
    let info = rt.container("survivor").map_err(|e| e.to_string())?;
    remove_and_check_gone(env, &info)
}
