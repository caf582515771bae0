//! The container's init, between the shim's fork and the user's command: it resets what it
//! inherited from the shim (signal dispositions and mask), ties its life to the shim's, enters
//! its namespaces and root filesystem, sets up stdio, and executes the command, looked up in the
//! container's own `PATH`. Every failure is reported as text with a Docker-like exit code
//! (127: command not found, 126: not executable, 128: the container could not be set up).

use std::{
    convert::Infallible,
    ffi::CString,
    fs,
    os::{fd::OwnedFd, unix::fs::PermissionsExt},
    path::{Path, PathBuf},
};

use nix::{
    errno::Errno,
    fcntl::{open, OFlag},
    sys::{
        prctl,
        signal::{signal, sigprocmask, SigHandler, SigSet, SigmaskHow, Signal},
        stat::{umask, Mode},
    },
    unistd::{chdir, dup2_stderr, dup2_stdin, dup2_stdout, execve, sethostname, setsid},
};

use super::namespaces;
use crate::{
    container::spec::{ContainerConfig, DEFAULT_PATH},
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
    fn setup(error: Error) -> InitFailure {
        InitFailure { exit_code: 128, message: format!("setting up the container: {}", error.report()) }
    }
}

/// The write ends of the pipes the shim reads the container's output from.
pub(crate) struct Stdio {
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Sets up the container around the current process and executes its command; returns only
/// if that fails. Runs in the freshly forked child of the single-threaded shim.
pub(crate) fn exec(config: &ContainerConfig, rootfs: &Path, stdio: Stdio) -> InitFailure {
    match setup_and_exec(config, rootfs, stdio) {
        Ok(never) => match never {},
        Err(failure) => failure,
    }
}

fn setup_and_exec(config: &ContainerConfig, rootfs: &Path, stdio: Stdio) -> Result<Infallible, InitFailure> {
    let process = &config.process;
    reset_signals().map_err(InitFailure::setup)?;
    // If the shim dies, so does the container: nobody else would record its exit.
    prctl::set_pdeathsig(Signal::SIGKILL)
        .context(|| "setting the parent-death signal".to_string())
        .map_err(InitFailure::setup)?;
    setsid().context(|| "starting a new session".to_string()).map_err(InitFailure::setup)?;
    namespaces::unshare_init()
        .context(|| "creating the mount, uts, ipc and network namespaces".to_string())
        .map_err(InitFailure::setup)?;
    namespaces::loopback_up().context(|| "bringing up the loopback device".to_string()).map_err(InitFailure::setup)?;
    sethostname(&process.hostname)
        .context(|| format!("setting the hostname to {}", process.hostname))
        .map_err(InitFailure::setup)?;
    rootfs::enter(rootfs).map_err(InitFailure::setup)?;
    umask(Mode::from_bits_truncate(0o022));

    fs::create_dir_all(&process.cwd)
        .context(|| format!("creating the working directory {}", process.cwd))
        .map_err(InitFailure::setup)?;
    chdir(process.cwd.as_str())
        .context(|| format!("entering the working directory {}", process.cwd))
        .map_err(InitFailure::setup)?;

    let arg0 = &process.args[0];
    let program = find_program(arg0, &process.env)?;
    let program = c_string(program.as_os_str().as_encoded_bytes())?;
    let argv = process.args.iter().map(|a| c_string(a.as_bytes())).collect::<Result<Vec<_>, _>>()?;
    let envp = process.env.iter().map(|e| c_string(e.as_bytes())).collect::<Result<Vec<_>, _>>()?;

    let null = open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
        .context(|| "opening /dev/null in the container".to_string())
        .map_err(InitFailure::setup)?;
    dup2_stdin(&null)
        .and_then(|()| dup2_stdout(&stdio.stdout))
        .and_then(|()| dup2_stderr(&stdio.stderr))
        .context(|| "connecting the container's stdio".to_string())
        .map_err(InitFailure::setup)?;
    close_inherited_fds();

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
fn close_inherited_fds() {
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
