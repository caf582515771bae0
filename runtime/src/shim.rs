//! The shim: one small process per container, the calling binary re-executed as
//! `<exe> <shim args…> <container dir>`. It owns the container's stdio and exit status, so the
//! container outlives the daemon that started it.
//!
//! It reads `config.json`, forks the container's init into a new pid namespace (see
//! `process::init`), learns through a close-on-exec pipe whether the command was
//! executed, records `state.json`, reports one JSON line on its stdout (`{"pid":N}` or
//! `{"error":"…","exit_code":N}`), then copies the container's output into `container.log`,
//! waits for it, writes `exit.json` atomically and exits.
//!
//! Architecture invariant: the shim is single-threaded and runs no async runtime (it forks).
//! It writes `state.json` once (the start record) and `exit.json` once; the daemon writes
//! neither while a shim lives. The shim's own errors go to its stderr, which is `shim.log`.

use std::{
    fs,
    io::{self, Read, Write},
    os::fd::{AsFd, AsRawFd, OwnedFd},
    path::Path,
};

use nix::{
    errno::Errno,
    fcntl::OFlag,
    sys::{
        signal::{signal, SigHandler, Signal},
        wait::{waitpid, WaitStatus},
    },
    unistd::{dup2_stdout, fork, getpid, pipe2, ForkResult, Pid},
};

use crate::{
    cgroups::CgroupPaths,
    clock,
    container::{
        spec::ContainerConfig,
        state::{ExitFile, Started, StateFile},
        ContainerPaths,
    },
    error::{Error, IoContext},
    jsonfile,
    logs::{LogStream, LogWriter},
    process::{
        exec,
        init::{self, InitFailure},
        launch::Handshake,
        namespaces,
        procfs::ProcessIdentity,
    },
    snapshot::Snapshotter,
};

/// Runs the shim for the container in `container_dir` and exits. Call it first thing in
/// `main` of the binary, before any thread (or tokio runtime) is started.
///
/// With `SHOAL_SHIM_EXEC` set in its environment (by [`crate::Runtime::exec`]), it is instead
/// the helper that runs one process inside the running container.
pub fn main(container_dir: &Path) -> ! {
    if let Some(request) = std::env::var_os(exec::EXEC_ENV) {
        std::process::exit(exec::run(container_dir, &request.to_string_lossy()));
    }
    let code = match run(container_dir) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!(
                "{} shim for {}: {}",
                clock::format_rfc3339(clock::now_ns()),
                container_dir.display(),
                e.report()
            );
            1
        }
    };
    std::process::exit(code)
}

/// What the shim knows of a started container: its own identity, the init's, and the read
/// ends of the output pipes.
struct Container {
    cgroup: Option<CgroupPaths>,
    shim: ProcessIdentity,
    init: ProcessIdentity,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

fn run(dir: &Path) -> Result<(), Error> {
    let paths = ContainerPaths::new(dir);
    // A daemon that died before reading our report must not kill us with SIGPIPE, and the
    // session's hangup must not either.
    // SAFETY: SIG_IGN runs no code; we are single-threaded.
    unsafe {
        signal(Signal::SIGPIPE, SigHandler::SigIgn).context(|| "ignoring SIGPIPE".to_string())?;
        signal(Signal::SIGHUP, SigHandler::SigIgn).context(|| "ignoring SIGHUP".to_string())?;
    }
    let (container, mut log) = match start(&paths) {
        Ok(started) => started,
        Err(failure) => {
            record_exit(&paths, failure.exit_code, Some(failure.message.clone()))?;
            report(&Handshake::Failed { error: failure.message, exit_code: failure.exit_code });
            return Ok(());
        }
    };
    let started = Started { shim: container.shim, init: container.init, started_at: clock::now_ns() };
    if let Err(e) = jsonfile::write(&paths.state(), &StateFile { started: Some(started) }) {
        let _ = nix::sys::signal::kill(Pid::from_raw(container.init.pid), Signal::SIGKILL);
        let exit_code = wait_exit_code(container.init.pid);
        record_exit(&paths, exit_code, Some(e.report()))?;
        report(&Handshake::Failed { error: e.report(), exit_code });
        return Err(e);
    }
    report(&Handshake::Started { pid: container.init.pid });

    copy_output(&container, &mut log);
    let exit_code = wait_exit_code(container.init.pid);
    // The OOM killer's SIGKILL looks like any other: only the cgroup's count tells.
    let oom_killed = container.cgroup.as_ref().is_some_and(|c| c.oom_killed());
    jsonfile::write(&paths.exit(), &ExitFile { exit_code, finished_at: clock::now_ns(), error: None, oom_killed })
}

/// Forks the container's init and waits until it has executed the command (or failed to).
fn start(paths: &ContainerPaths) -> Result<(Container, LogWriter), InitFailure> {
    let setup = |e: Error| InitFailure { exit_code: 128, message: format!("preparing the container: {}", e.report()) };
    let config: ContainerConfig = jsonfile::read(&paths.config())
        .and_then(|c| c.ok_or_else(|| Error::corrupt(paths.config(), "the file is missing")))
        .map_err(setup)?;
    let shim = ProcessIdentity::of(getpid().as_raw())
        .ok_or_else(|| Error::io("reading the shim's own /proc entry", io::Error::from(io::ErrorKind::NotFound)))
        .map_err(setup)?;
    let log = LogWriter::open(&paths.log()).context(|| format!("opening {}", paths.log().display())).map_err(setup)?;
    let pipe = || pipe2(OFlag::O_CLOEXEC).context(|| "creating a pipe".to_string()).map_err(setup);
    let (stdout_r, stdout_w) = pipe()?;
    let (stderr_r, stderr_w) = pipe()?;
    let (exec_r, exec_w) = pipe()?;
    namespaces::unshare_pid().context(|| "creating the pid namespace".to_string()).map_err(setup)?;
    let rootfs = Snapshotter::rootfs(paths.dir());

    // SAFETY: the shim is single-threaded, so the child may do anything before exec.
    match unsafe { fork() }.context(|| "forking the container's init".to_string()).map_err(setup)? {
        ForkResult::Child => {
            drop((stdout_r, stderr_r, exec_r));
            let code = init::run(&config, &rootfs, init::Pipes { stdout: stdout_w, stderr: stderr_w, report: exec_w });
            // SAFETY: _exit skips the parent's atexit handlers and buffered stdio, which
            // belong to the shim, not to this child.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop((stdout_w, stderr_w, exec_w));
            let pid = child.as_raw();
            // Unreaped, our child cannot lose its pid: its identity is safe to read now.
            let init = ProcessIdentity::of_child(pid).unwrap_or(ProcessIdentity { pid, start_time: 0 });
            // EOF with nothing written: the pipe closed on exec, the command runs.
            let mut message = Vec::new();
            let _ = fs::File::from(exec_r).read_to_end(&mut message);
            if !message.is_empty() {
                let exit_code = wait_exit_code(pid);
                return Err(InitFailure { exit_code, message: String::from_utf8_lossy(&message).into_owned() });
            }
            Ok((Container { cgroup: config.host.cgroup, shim, init, stdout: stdout_r, stderr: stderr_r }, log))
        }
    }
}

/// Writes the report line to stdout (the daemon's pipe), then points stdout at /dev/null so
/// nothing else ever lands in that pipe.
fn report(handshake: &Handshake) {
    let mut line = serde_json::to_vec(handshake).expect("a handshake always serializes");
    line.push(b'\n');
    let mut stdout = io::stdout().lock();
    // The daemon may be gone; the container runs on regardless.
    let _ = stdout.write_all(&line).and_then(|()| stdout.flush());
    if let Ok(null) = fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = dup2_stdout(null.as_fd());
    }
}

/// Copies the container's stdout and stderr into the log until both are closed.
fn copy_output(container: &Container, log: &mut LogWriter) {
    let streams =
        [(LogStream::Stdout, container.stdout.as_raw_fd()), (LogStream::Stderr, container.stderr.as_raw_fd())];
    let mut open = [true, true];
    let mut buf = vec![0u8; 64 * 1024];
    let mut log_failed = false;
    while open.iter().any(|&o| o) {
        let mut pfds = streams.map(|(_, fd)| libc::pollfd { fd, events: libc::POLLIN, revents: 0 });
        for (pfd, is_open) in pfds.iter_mut().zip(open) {
            if !is_open {
                pfd.fd = -1; // poll ignores negative fds
            }
        }
        // SAFETY: two valid pollfds for the duration of the call.
        if unsafe { libc::poll(pfds.as_mut_ptr(), 2, -1) } < 0 {
            if Errno::last() == Errno::EINTR {
                continue;
            }
            eprintln!("shim: polling the container's output: {}", Errno::last());
            return;
        }
        for (i, pfd) in pfds.iter().enumerate() {
            if !open[i] || pfd.revents == 0 {
                continue;
            }
            let (stream, fd) = streams[i];
            // SAFETY: `buf` is valid for its length; `fd` is open (owned by `container`).
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            let result = match n {
                n if n > 0 => log.write(stream, &buf[..n as usize]),
                0 => {
                    open[i] = false;
                    log.finish(stream)
                }
                _ if Errno::last() == Errno::EINTR || Errno::last() == Errno::EAGAIN => Ok(()),
                _ => {
                    open[i] = false;
                    log.finish(stream)
                }
            };
            // Keep draining even when the log cannot be written: a full pipe would block the
            // container.
            if let Err(e) = result {
                if !log_failed {
                    eprintln!("shim: writing the container log: {e}");
                    log_failed = true;
                }
            }
        }
    }
}

/// Waits for `pid` and returns its exit status, or 128 + the signal that killed it.
fn wait_exit_code(pid: i32) -> i32 {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, signal, _)) => return 128 + signal as i32,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("shim: waiting for the container's init (pid {pid}): {e}");
                return 255;
            }
        }
    }
}

fn record_exit(paths: &ContainerPaths, exit_code: i32, error: Option<String>) -> Result<(), Error> {
    jsonfile::write(&paths.exit(), &ExitFile { exit_code, finished_at: clock::now_ns(), error, oom_killed: false })
}
