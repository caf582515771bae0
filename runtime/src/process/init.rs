//! The container's init, between the shim's fork and the user's command: it resets what it
//! inherited from the shim (signal dispositions and mask), ties its life to the shim's, joins
//! its cgroup, enters its namespaces and root filesystem, sets up stdio, and executes the
//! command as the container's user with the container's capabilities ([`exec_as`]), looked up
//! in the container's own `PATH`. With `init`, it forks first and stays as pid 1: a reaper
//! that forwards signals to the command ([`reap`]). Every failure is reported as text with a
//! Docker-like exit code (127: command not found, 126: not executable, 128: the container
//! could not be set up).

use std::{
    convert::Infallible,
    ffi::CString,
    fs,
    io::Write,
    os::{
        fd::{AsFd, OwnedFd},
        unix::fs::PermissionsExt,
    },
    path::{Path, PathBuf},
};

use nix::{
    errno::Errno,
    fcntl::{open, OFlag},
    sys::{
        prctl,
        signal::{kill, signal, sigprocmask, SigHandler, SigSet, SigmaskHow, Signal},
        stat::{umask, Mode},
        wait::{waitpid, WaitPidFlag, WaitStatus},
    },
    unistd::{
        chdir, dup2_stderr, dup2_stdin, dup2_stdout, execve, fork, setgroups, sethostname, setresgid, setresuid,
        setsid, ForkResult, Gid, Pid, Uid,
    },
};

use super::{namespaces, seccomp, terminal, user};
use crate::{
    capabilities,
    container::spec::{ContainerConfig, HostConfig, DEFAULT_PATH},
    error::{Error, IoContext},
    rootfs,
};

/// Why the container's command did not start.
#[derive(Debug)]
pub(crate) struct InitFailure {
    pub exit_code: i32,
    pub message: String,
}

impl InitFailure {
    pub(crate) fn setup(error: Error) -> InitFailure {
        InitFailure { exit_code: 128, message: format!("setting up the container: {}", error.report()) }
    }
}

/// What the init holds of the shim's: the container's stdio, and the report pipe
/// (close-on-exec) that carries a failure message, or closes empty once the command runs.
pub(crate) struct Pipes {
    pub stdio: InitStdio,
    pub report: OwnedFd,
}

/// The container's stdio, as the init receives it from the shim.
pub(crate) enum InitStdio {
    /// The write ends of the output pipes, and the read end of the stdin pipe (`/dev/null` if
    /// none).
    Pipes { stdin: Option<OwnedFd>, stdout: OwnedFd, stderr: OwnedFd },
    /// A terminal: the init opens a pseudo-terminal in the container's own `/dev/pts`, makes
    /// the slave its stdio and controlling terminal, and sends the master to the shim over
    /// `console` (a Unix socket).
    Tty { console: OwnedFd, size: Option<(u16, u16)> },
}

impl Pipes {
    fn fds(&self) -> Vec<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        let mut fds = vec![self.report.as_raw_fd()];
        match &self.stdio {
            InitStdio::Pipes { stdin, stdout, stderr } => {
                fds.extend(stdin.iter().map(AsRawFd::as_raw_fd));
                fds.extend([stdout.as_raw_fd(), stderr.as_raw_fd()]);
            }
            InitStdio::Tty { console, .. } => fds.push(console.as_raw_fd()),
        }
        fds
    }
}

/// Sets up the container around the current process and executes its command; returns only
/// if that fails, with the exit code to exit with (the message is in the report pipe). Runs in
/// the freshly forked child of the single-threaded shim.
pub(crate) fn run(config: &ContainerConfig, rootfs: &Path, pipes: Pipes) -> i32 {
    match setup_and_exec(config, rootfs, &pipes) {
        Ok(never) => match never {},
        Err(failure) => {
            let _ = fs::File::from(pipes.report).write_all(failure.message.as_bytes());
            failure.exit_code
        }
    }
}

fn setup_and_exec(config: &ContainerConfig, rootfs: &Path, pipes: &Pipes) -> Result<Infallible, InitFailure> {
    let process = &config.process;
    let host = &config.host;
    reset_signals().map_err(InitFailure::setup)?;
    // If the shim dies, so does the container: nobody else would record its exit.
    prctl::set_pdeathsig(Signal::SIGKILL)
        .context(|| "setting the parent-death signal".to_string())
        .map_err(InitFailure::setup)?;
    setsid().context(|| "starting a new session".to_string()).map_err(InitFailure::setup)?;
    let network = namespaces::Network::open(&host.network).map_err(InitFailure::setup)?;
    if let Some(cgroup) = &host.cgroup {
        cgroup.join_self().map_err(InitFailure::setup)?;
    }
    namespaces::unshare_init(network).map_err(InitFailure::setup)?;
    sethostname(&process.hostname)
        .context(|| format!("setting the hostname to {}", process.hostname))
        .map_err(InitFailure::setup)?;
    rootfs::enter(rootfs, host).map_err(InitFailure::setup)?;
    umask(Mode::from_bits_truncate(0o022));

    fs::create_dir_all(&process.cwd)
        .context(|| format!("creating the working directory {}", process.cwd))
        .map_err(InitFailure::setup)?;

    if host.init {
        become_reaper(pipes)?;
    }
    match &pipes.stdio {
        InitStdio::Pipes { stdin, stdout, stderr } => {
            let null = open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
                .context(|| "opening /dev/null in the container".to_string())
                .map_err(InitFailure::setup)?;
            dup2_stdin(stdin.as_ref().unwrap_or(&null))
                .and_then(|()| dup2_stdout(stdout))
                .and_then(|()| dup2_stderr(stderr))
                .context(|| "connecting the container's stdio".to_string())
                .map_err(InitFailure::setup)?;
        }
        InitStdio::Tty { console, size } => {
            terminal::open_in_container(console, *size).map_err(InitFailure::setup)?;
        }
    }
    close_inherited_fds();
    exec_as(host, &process.args, &process.env, &process.cwd)
}

/// Executes `args` in the current (the container's) root as the container's user, with its
/// capabilities and `no_new_privs`. Shared by the init and `exec`.
pub(crate) fn exec_as(
    host: &HostConfig,
    args: &[String],
    env: &[String],
    cwd: &str,
) -> Result<Infallible, InitFailure> {
    let user = user::lookup(host.user.as_deref().unwrap_or("0")).map_err(|e| InitFailure {
        exit_code: 128,
        message: format!("setting up the container's user: {}", e.report()),
    })?;
    let mut env = env.to_vec();
    if !env.iter().any(|v| v.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    chdir(cwd).context(|| format!("entering the working directory {cwd}")).map_err(InitFailure::setup)?;
    let arg0 = args.first().map(String::as_str).unwrap_or_default();
    let program = find_program(arg0, &env)?;
    let program = c_string(program.as_os_str().as_encoded_bytes())?;
    let argv = args.iter().map(|a| c_string(a.as_bytes())).collect::<Result<Vec<_>, _>>()?;
    let envp = env.iter().map(|e| c_string(e.as_bytes())).collect::<Result<Vec<_>, _>>()?;

    drop_privileges(host, &user).map_err(InitFailure::setup)?;

    let errno = match execve(&program, &argv, &envp) {
        Ok(never) => match never {},
        Err(errno) => errno,
    };
    Err(InitFailure {
        exit_code: match errno {
            Errno::ENOENT => 127,
            _ => 126,
        },
        message: format!("exec \"{arg0}\": {}", describe(errno)),
    })
}

/// Bounding set first (it needs CAP_SETPCAP), then the seccomp filter, then the user (keeping capabilities across the
/// change), then the final capability sets and `no_new_privs`.
fn drop_privileges(host: &HostConfig, user: &user::User) -> Result<(), Error> {
    if let Some(caps) = &host.capabilities {
        capabilities::limit_bounding_set(caps).context(|| "limiting the capability bounding set".to_string())?;
        // Installed while still root with CAP_SYS_ADMIN (no no_new_privs needed); every call
        // from here to execve is on the allow-list.
        if !host.privileged {
            seccomp::install(caps).context(|| "installing the seccomp filter".to_string())?;
        }
    }
    prctl::set_keepcaps(true).context(|| "keeping capabilities across the user change".to_string())?;
    let groups: Vec<Gid> = user.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    setgroups(&groups).context(|| format!("setting the supplementary groups {:?}", user.groups))?;
    let gid = Gid::from_raw(user.gid);
    setresgid(gid, gid, gid).context(|| format!("setting the group id {}", user.gid))?;
    let uid = Uid::from_raw(user.uid);
    setresuid(uid, uid, uid).context(|| format!("setting the user id {}", user.uid))?;
    prctl::set_keepcaps(false).context(|| "resetting keepcaps".to_string())?;
    if let Some(caps) = &host.capabilities {
        capabilities::set(caps).context(|| "setting the capabilities".to_string())?;
    }
    if host.no_new_privileges {
        prctl::set_no_new_privs().context(|| "setting no_new_privs".to_string())?;
    }
    Ok(())
}

/// Forks: the child returns and goes on to execute the command; this process stays as the
/// container's pid 1 and never returns ([`reap`]).
fn become_reaper(pipes: &Pipes) -> Result<(), InitFailure> {
    // Blocked before the fork, so no signal meant for the command is lost in between.
    let all = SigSet::all();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), None)
        .context(|| "blocking signals".to_string())
        .map_err(InitFailure::setup)?;
    // SAFETY: the init is single-threaded (a fork of the single-threaded shim).
    match unsafe { fork() }.context(|| "forking the command under --init".to_string()).map_err(InitFailure::setup)? {
        ForkResult::Child => {
            sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
                .context(|| "unblocking signals".to_string())
                .map_err(InitFailure::setup)?;
            prctl::set_pdeathsig(Signal::SIGKILL)
                .context(|| "setting the parent-death signal".to_string())
                .map_err(InitFailure::setup)?;
            // A terminal can only become the controlling terminal of a session leader.
            if matches!(pipes.stdio, InitStdio::Tty { .. }) {
                setsid().context(|| "starting a new session".to_string()).map_err(InitFailure::setup)?;
            }
            Ok(())
        }
        ForkResult::Parent { child } => {
            // Only the command may hold the pipes: the shim's end-of-output and exec report
            // must not wait for the reaper.
            let null = open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty());
            if let Ok(null) = &null {
                let _ = dup2_stdin(null.as_fd()).and_then(|()| dup2_stdout(null.as_fd()));
            }
            for fd in pipes.fds() {
                // SAFETY: the reaper never returns, so these fds are never used or closed again.
                unsafe { libc::close(fd) };
            }
            let code = reap(child);
            // SAFETY: exiting the reaper without running the shim's destructors or atexit.
            unsafe { libc::_exit(code) }
        }
    }
}

/// pid 1 under `--init`: forwards every signal it receives to `child`, reaps every process
/// that ends, and returns the exit code of `child` once it ends (128 + signal if killed).
fn reap(child: Pid) -> i32 {
    let all = SigSet::all();
    loop {
        let signal = match all.wait() {
            Ok(signal) => signal,
            Err(_) => continue,
        };
        if signal != Signal::SIGCHLD {
            let _ = kill(child, signal);
            continue;
        }
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => return code,
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => return 128 + sig as i32,
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
    }
}

/// Default dispositions and an empty mask: ignored signals (the shim ignores SIGPIPE) would
/// otherwise stay ignored in the user's command.
fn reset_signals() -> Result<(), Error> {
    for sig in Signal::iterator() {
        if sig == Signal::SIGKILL || sig == Signal::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL never runs Rust code in a signal handler.
        unsafe { signal(sig, SigHandler::SigDfl) }.context(|| format!("resetting the handler of {sig}"))?;
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .context(|| "clearing the signal mask".to_string())
}

/// Marks every fd above stderr close-on-exec, so nothing of the shim leaks into the container.
pub(crate) fn close_inherited_fds() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes fd flags. Failure (an old
    // kernel) is harmless: the runtime opens all its own fds with O_CLOEXEC.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
    }
}

/// Looks `arg0` up in the container's `PATH` unless it names a path itself.
fn find_program(arg0: &str, env: &[String]) -> Result<PathBuf, InitFailure> {
    if arg0.contains('/') {
        return Ok(PathBuf::from(arg0));
    }
    let path = env.iter().find_map(|v| v.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH);
    for dir in path.split(':') {
        let candidate = Path::new(if dir.is_empty() { "." } else { dir }).join(arg0);
        if fs::metadata(&candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0) {
            return Ok(candidate);
        }
    }
    Err(InitFailure { exit_code: 127, message: format!("exec \"{arg0}\": executable file not found in $PATH") })
}

fn c_string(bytes: &[u8]) -> Result<CString, InitFailure> {
    CString::new(bytes).map_err(|_| InitFailure {
        exit_code: 128,
        message: "an argument or environment variable contains a NUL byte".to_string(),
    })
}

/// "no such file or directory", as Go (and so Docker) spells errors.
fn describe(errno: Errno) -> String {
    let desc = errno.desc();
    let mut chars = desc.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => format!("{errno:?}"),
    }
}
