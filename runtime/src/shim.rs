//! The shim: one small process per container, run as `<exe> <shim args…> <container dir>` by
//! whoever starts the container; `<exe>` is a binary whose `main` calls [`main`] (shoal's is
//! `shoal-shim`, a binary of its own so that a start execs no more code than the shim needs).
//! It owns the container's stdio and exit status, so the container outlives the daemon that
//! started it.
//!
//! It reads `config.json`, binds the attach socket (see [`crate::attach`]), forks the
//! container's init into a new pid namespace (see `process::init`), receives the terminal's
//! master from it when the container has a tty, learns through a close-on-exec pipe whether
//! the command was executed, records `state.json`, reports one JSON line on its stdout
//! (`{"pid":N}` or `{"error":"…","exit_code":N}`), then copies the container's output into
//! `container.log` and to attached clients, and their input into the container's stdin (a pipe,
//! or the terminal), until the output ends; then waits for the init, writes `exit.json`
//! atomically and exits. A second into the copying, it unmaps the pages of the binary it
//! needed only to start the container (`process::memory`).
//!
//! Architecture invariant: the shim is single-threaded and runs no async runtime (it forks).
//! It writes `state.json` once (the start record) and `exit.json` once; the daemon writes
//! neither while a shim lives. The shim's own errors go to its stderr, which is `shim.log`.

use std::{
    fs,
    io::{self, Read, Write},
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
        unix::net::{UnixListener, UnixStream},
    },
    path::Path,
    time::{Duration, Instant},
};

use nix::{
    errno::Errno,
    fcntl::{fcntl, FcntlArg, OFlag},
    sys::{
        signal::{signal, SigHandler, Signal},
        socket::{socketpair, AddressFamily, SockFlag, SockType},
        wait::{waitpid, WaitStatus},
    },
    unistd::{dup2_stdout, fork, getpid, pipe2, read, setsid, write, ForkResult, Pid},
};

use crate::{
    attach::{self, FrameReader},
    clock,
    container::{
        spec::{CgroupPaths, ContainerConfig},
        state::{ExitFile, Started, StateFile},
        ContainerPaths,
    },
    error::{Error, IoContext},
    jsonfile,
    logs::{LogStream, LogWriter},
    process::{
        exec,
        handshake::{self, Handshake},
        init::{self, InitFailure, InitStdio},
        memory, namespaces, terminal,
    },
    procfs::ProcessIdentity,
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

/// How long after the container's start the shim gives back the memory it needed only to
/// start it ([`memory::release_startup_pages`]): a container that ends sooner never pays for it.
const RELEASE_STARTUP_PAGES_AFTER: Duration = Duration::from_secs(1);

/// What the shim knows of a started container: its own identity, the init's, and its ends of
/// the container's stdio.
struct Container {
    cgroup: Option<CgroupPaths>,
    shim: ProcessIdentity,
    init: ProcessIdentity,
    io: Stdio,
}

/// The shim's ends of the container's stdio.
struct Stdio {
    /// The container's output: the terminal's master, or the stdout and stderr pipes.
    outputs: Vec<(LogStream, OwnedFd)>,
    /// Where attached input goes (non-blocking): the terminal's master, or the stdin pipe.
    stdin: Option<OwnedFd>,
    /// The terminal's master, for window sizes.
    tty: Option<OwnedFd>,
    stdin_once: bool,
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
    // Out of the starter's session and process group, so its job-control signals (a ^C in
    // its terminal) never reach us. Fails only if we lead a process group already: then we
    // were started apart anyway.
    let _ = setsid();
    let mut clients = Vec::new();
    if let Some(stream) = handshake::attached_client()? {
        clients.push(Client { stream, frames: FrameReader::default() });
    }
    let (container, mut log, listener) = match start(&paths) {
        Ok(started) => started,
        Err(failure) => {
            record_exit(&paths, failure.exit_code, Some(failure.message.clone()))?;
            report(&Handshake::Failed { error: failure.message, exit_code: failure.exit_code });
            return Ok(());
        }
    };
    let started = Started { shim: container.shim, init: container.init, started_at: clock::now_ns() };
    if let Err(e) = jsonfile::write_volatile(&paths.state(), &StateFile { started: Some(started) }) {
        let _ = nix::sys::signal::kill(Pid::from_raw(container.init.pid), Signal::SIGKILL);
        let exit_code = wait_exit_code(container.init.pid);
        record_exit(&paths, exit_code, Some(e.report()))?;
        report(&Handshake::Failed { error: e.report(), exit_code });
        return Err(e);
    }
    report(&Handshake::Started { pid: container.init.pid });

    let Container { cgroup, init, io, .. } = container;
    serve(io, &mut log, listener.as_ref().map(|l| &l.socket), clients);
    if let Some(listener) = listener {
        listener.remove();
    }
    let exit_code = wait_exit_code(init.pid);
    // The OOM killer's SIGKILL looks like any other: only the cgroup's count tells.
    let oom_killed = cgroup.as_ref().is_some_and(|c| c.oom_killed());
    jsonfile::write_volatile(
        &paths.exit(),
        &ExitFile { exit_code, finished_at: clock::now_ns(), error: None, oom_killed },
    )
}

/// The attach socket, bound through the container directory's fd: the directory's full path
/// may be longer than a socket address can hold.
struct Listener {
    socket: UnixListener,
    dir: fs::File,
}

impl Listener {
    fn bind(dir: &Path) -> io::Result<Listener> {
        let dir = fs::File::open(dir)?;
        let path = attach::socket_path(&dir);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let socket = UnixListener::bind(&path)?;
        socket.set_nonblocking(true)?;
        Ok(Listener { socket, dir })
    }

    fn remove(self) {
        let _ = fs::remove_file(attach::socket_path(&self.dir));
    }
}

/// Forks the container's init and waits until it has executed the command (or failed to).
fn start(paths: &ContainerPaths) -> Result<(Container, LogWriter, Option<Listener>), InitFailure> {
    let setup = |e: Error| InitFailure { exit_code: 128, message: format!("preparing the container: {}", e.report()) };
    let config: ContainerConfig = jsonfile::read(&paths.config())
        .and_then(|c| c.ok_or_else(|| Error::corrupt(paths.config(), "the file is missing")))
        .map_err(setup)?;
    let shim = ProcessIdentity::of(getpid().as_raw())
        .ok_or_else(|| Error::io("reading the shim's own /proc entry", io::Error::from(io::ErrorKind::NotFound)))
        .map_err(setup)?;
    let log = LogWriter::open(&paths.log()).context(|| format!("opening {}", paths.log().display())).map_err(setup)?;
    let listener = Listener::bind(paths.dir())
        .context(|| format!("listening on {}", paths.dir().join(ContainerPaths::ATTACH_SOCKET).display()))
        .map_err(setup)?;
    let pipe = || pipe2(OFlag::O_CLOEXEC).context(|| "creating a pipe".to_string()).map_err(setup);
    let stdio = config.process.stdio;
    // (the init's end, the shim's end) of each part of the container's stdio
    let (init_stdio, shim_stdio) = if stdio.tty {
        let (init_end, shim_end) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)
            .context(|| "creating the terminal's socket".to_string())
            .map_err(setup)?;
        (InitStdio::Tty { console: init_end, size: stdio.console_size }, ShimStdio::Tty { console: shim_end })
    } else {
        let (stdout_r, stdout_w) = pipe()?;
        let (stderr_r, stderr_w) = pipe()?;
        let (stdin_r, stdin_w) = if stdio.open_stdin {
            let (r, w) = pipe()?;
            (Some(r), Some(w))
        } else {
            (None, None)
        };
        (
            InitStdio::Pipes { stdin: stdin_r, stdout: stdout_w, stderr: stderr_w },
            ShimStdio::Pipes { stdin: stdin_w, stdout: stdout_r, stderr: stderr_r },
        )
    };
    let (exec_r, exec_w) = pipe()?;
    namespaces::unshare_pid().context(|| "creating the pid namespace".to_string()).map_err(setup)?;
    let rootfs = Snapshotter::rootfs(paths.dir());

    // SAFETY: the shim is single-threaded, so the child may do anything before exec.
    match unsafe { fork() }.context(|| "forking the container's init".to_string()).map_err(setup)? {
        ForkResult::Child => {
            drop((shim_stdio, exec_r, listener));
            let code = init::run(&config, &rootfs, init::Pipes { stdio: init_stdio, report: exec_w });
            // SAFETY: _exit skips the parent's atexit handlers and buffered stdio, which
            // belong to the shim, not to this child.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop((init_stdio, exec_w));
            let pid = child.as_raw();
            // Unreaped, our child cannot lose its pid: its identity is safe to read now.
            let init = ProcessIdentity::of_child(pid).unwrap_or(ProcessIdentity { pid, start_time: 0 });
            let io = match shim_stdio {
                ShimStdio::Tty { console } => {
                    // None: the init failed before sending it, and its report says why.
                    let master = terminal::receive_master(&console).unwrap_or_else(|e| {
                        eprintln!("shim: {}", e.report());
                        None
                    });
                    master.map(|master| {
                        let stdin = master.try_clone().ok();
                        Stdio {
                            outputs: master.try_clone().ok().map(|m| (LogStream::Stdout, m)).into_iter().collect(),
                            stdin,
                            tty: Some(master),
                            stdin_once: false,
                        }
                    })
                }
                ShimStdio::Pipes { stdin, stdout, stderr } => Some(Stdio {
                    outputs: vec![(LogStream::Stdout, stdout), (LogStream::Stderr, stderr)],
                    stdin,
                    tty: None,
                    stdin_once: stdio.stdin_once,
                }),
            };
            // EOF with nothing written: the pipe closed on exec, the command runs.
            let mut message = Vec::new();
            let _ = fs::File::from(exec_r).read_to_end(&mut message);
            if !message.is_empty() {
                let exit_code = wait_exit_code(pid);
                return Err(InitFailure { exit_code, message: String::from_utf8_lossy(&message).into_owned() });
            }
            let Some(io) = io else {
                let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                let exit_code = wait_exit_code(pid);
                return Err(InitFailure { exit_code, message: "the container's terminal never arrived".to_string() });
            };
            if let Some(stdin) = &io.stdin {
                set_nonblocking(stdin.as_fd()).map_err(setup)?;
            }
            Ok((Container { cgroup: config.host.cgroup, shim, init, io }, log, Some(listener)))
        }
    }
}

/// The shim's ends of the container's stdio before the fork.
enum ShimStdio {
    Pipes { stdin: Option<OwnedFd>, stdout: OwnedFd, stderr: OwnedFd },
    Tty { console: OwnedFd },
}

fn set_nonblocking(fd: BorrowedFd<'_>) -> Result<(), Error> {
    let flags = fcntl(fd, FcntlArg::F_GETFL).context(|| "reading fd flags".to_string())?;
    fcntl(fd, FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK))
        .context(|| "making an fd non-blocking".to_string())?;
    Ok(())
}

/// Writes the report line to stdout (the daemon's pipe), then points stdout at /dev/null so
/// nothing else ever lands in that pipe.
fn report(handshake: &Handshake) {
    let line = handshake.line();
    let mut stdout = io::stdout().lock();
    // The daemon may be gone; the container runs on regardless.
    let _ = stdout.write_all(&line).and_then(|()| stdout.flush());
    if let Ok(null) = fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = dup2_stdout(null.as_fd());
    }
}

/// An attached client.
struct Client {
    stream: UnixStream,
    frames: FrameReader,
}

/// What one entry of the poll set is.
#[derive(Clone, Copy)]
enum Polled {
    Output(usize),
    Listener,
    Stdin,
    Client(usize),
}

/// Copies the container's output into the log and to attached clients, and their input to the
/// container, until the container's output has ended.
fn serve(mut io: Stdio, log: &mut LogWriter, listener: Option<&UnixListener>, mut clients: Vec<Client>) {
    let mut release_at = Some(Instant::now() + RELEASE_STARTUP_PAGES_AFTER);
    let mut open: Vec<bool> = io.outputs.iter().map(|_| true).collect();
    let mut pending: Vec<u8> = Vec::new();
    let mut close_stdin = false;
    let mut buf = vec![0u8; 16 * 1024];
    let mut log_failed = false;
    while open.iter().any(|&o| o) {
        let mut pfds = Vec::with_capacity(4 + clients.len());
        let mut what = Vec::with_capacity(pfds.capacity());
        for (i, (_, fd)) in io.outputs.iter().enumerate() {
            // poll ignores negative fds
            let fd = if open[i] { fd.as_raw_fd() } else { -1 };
            pfds.push(libc::pollfd { fd, events: libc::POLLIN, revents: 0 });
            what.push(Polled::Output(i));
        }
        if let Some(listener) = listener {
            pfds.push(libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 });
            what.push(Polled::Listener);
        }
        if let (Some(stdin), false) = (&io.stdin, pending.is_empty()) {
            pfds.push(libc::pollfd { fd: stdin.as_raw_fd(), events: libc::POLLOUT, revents: 0 });
            what.push(Polled::Stdin);
        }
        for (i, client) in clients.iter().enumerate() {
            // Input waits while the container has not taken the last of it.
            let events = if pending.is_empty() { libc::POLLIN } else { 0 };
            pfds.push(libc::pollfd { fd: client.stream.as_raw_fd(), events, revents: 0 });
            what.push(Polled::Client(i));
        }
        let timeout = match release_at {
            Some(at) if at <= Instant::now() => {
                memory::release_startup_pages();
                release_at = None;
                -1
            }
            // Rounded up, so the poll does not return just before the time.
            Some(at) => {
                libc::c_int::try_from(at.duration_since(Instant::now()).as_millis() + 1).unwrap_or(libc::c_int::MAX)
            }
            None => -1,
        };
        // SAFETY: `pfds` is valid for its length for the duration of the call.
        if unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout) } < 0 {
            if Errno::last() == Errno::EINTR {
                continue;
            }
            eprintln!("shim: polling the container's stdio: {}", Errno::last());
            return;
        }
        let mut gone = Vec::new();
        for (pfd, polled) in pfds.iter().zip(what) {
            if pfd.revents == 0 {
                continue;
            }
            match polled {
                Polled::Output(i) => {
                    let (stream, fd) = &io.outputs[i];
                    let result = match read(fd.as_fd(), &mut buf) {
                        Ok(0) => {
                            open[i] = false;
                            log.finish(*stream)
                        }
                        Ok(n) => {
                            let kind = if *stream == LogStream::Stdout { attach::STDOUT } else { attach::STDERR };
                            let frame = attach::frame(kind, &buf[..n]);
                            for (c, client) in clients.iter_mut().enumerate() {
                                // A client that cannot take output is gone.
                                if client.stream.write_all(&frame).is_err() {
                                    gone.push(c);
                                }
                            }
                            log.write(*stream, &buf[..n])
                        }
                        Err(Errno::EINTR | Errno::EAGAIN) => Ok(()),
                        // EIO: the terminal's last slave was closed, the output is over.
                        Err(_) => {
                            open[i] = false;
                            log.finish(*stream)
                        }
                    };
                    // Keep draining even when the log cannot be written: a full pipe would
                    // block the container.
                    if let Err(e) = result {
                        if !log_failed {
                            eprintln!("shim: writing the container log: {e}");
                            log_failed = true;
                        }
                    }
                }
                Polled::Listener => {
                    if let Some(Ok((stream, _))) = listener.map(UnixListener::accept) {
                        if stream.set_nonblocking(false).is_ok() {
                            clients.push(Client { stream, frames: FrameReader::default() });
                        }
                    }
                }
                Polled::Stdin => {
                    if let Some(stdin) = &io.stdin {
                        match write(stdin, &pending) {
                            Ok(n) => {
                                pending.drain(..n);
                            }
                            Err(Errno::EINTR | Errno::EAGAIN) => {}
                            // The container closed its stdin: input has nowhere to go.
                            Err(_) => {
                                pending.clear();
                                io.stdin = None;
                            }
                        }
                    }
                }
                Polled::Client(c) => {
                    let client = &mut clients[c];
                    let n = match (&client.stream).read(&mut buf) {
                        Ok(0) | Err(_) => {
                            gone.push(c);
                            continue;
                        }
                        Ok(n) => n,
                    };
                    client.frames.push(&buf[..n]);
                    loop {
                        match client.frames.next_frame() {
                            Ok(Some((attach::STDIN, data))) if io.stdin.is_some() => pending.extend(data),
                            Ok(Some((attach::CLOSE_STDIN, _))) => close_stdin |= io.stdin_once,
                            Ok(Some((attach::RESIZE, size))) => {
                                if let (Some(tty), Some((rows, cols))) = (&io.tty, attach::parse_resize(&size)) {
                                    let _ = terminal::set_size(tty.as_fd(), rows, cols);
                                }
                            }
                            Ok(Some(_)) => {}
                            Ok(None) => break,
                            Err(e) => {
                                eprintln!("shim: dropping an attached client: {e}");
                                gone.push(c);
                                break;
                            }
                        }
                    }
                }
            }
        }
        if close_stdin && pending.is_empty() {
            io.stdin = None;
        }
        gone.sort_unstable();
        gone.dedup();
        for c in gone.into_iter().rev() {
            clients.remove(c);
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
    jsonfile::write_volatile(
        &paths.exit(),
        &ExitFile { exit_code, finished_at: clock::now_ns(), error, oom_killed: false },
    )
}
