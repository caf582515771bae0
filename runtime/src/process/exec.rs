//! `exec`: running another process in a running container. The daemon writes the request into
//! the container's directory and re-executes the shim binary with [`EXEC_ENV`] naming it (the
//! daemon is multi-threaded and must not fork without exec). That helper, single-threaded,
//! joins the container's cgroup and namespaces (`setns` on `/proc/<init>/ns/*`, the mount
//! namespace last), then forks (a pid namespace only applies to children); the child becomes
//! the container's user with its capabilities and executes the command, its stdout and stderr
//! the helper's own (pipes to the daemon). The helper exits with the command's exit status and
//! writes into the result file (created empty) only if the command could not be executed.

use std::{
    fs,
    io::{Read, Write},
    os::fd::{AsFd, OwnedFd},
    path::Path,
};

use nix::{
    errno::Errno,
    fcntl::{open, OFlag},
    sched::setns,
    sys::{
        prctl,
        signal::Signal,
        stat::Mode,
        wait::{waitpid, WaitStatus},
    },
    unistd::{fork, pipe2, ForkResult},
};
use serde::{Deserialize, Serialize};

use super::{
    init::{self, InitFailure},
    namespaces,
};
use crate::{
    container::{spec::ContainerConfig, ContainerPaths},
    error::{Error, IoContext},
    jsonfile,
    procfs::ProcessIdentity,
};

/// The environment variable that turns the shim into the exec helper; its value is the
/// request's file name in the container directory.
pub(crate) const EXEC_ENV: &str = "SHOAL_SHIM_EXEC";

/// What to run, fully resolved by the daemon (`exec-<n>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ExecRequest {
    /// The container's init, whose namespaces to join.
    pub init: ProcessIdentity,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub cwd: String,
    /// A terminal: the helper's stdin is the socket to send its master over.
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub tty_size: Option<(u16, u16)>,
}

/// Written by the helper when the command could not be executed (`exec-<n>.result.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ExecResult {
    pub error: String,
    pub exit_code: i32,
}

/// The result file's name for request file `request`.
pub(crate) fn result_name(request: &str) -> String {
    format!("{}.result.json", request.trim_end_matches(".json"))
}

/// The helper: returns the exit code to exit with.
pub(crate) fn run(dir: &Path, request: &str) -> i32 {
    let result_path = dir.join(result_name(request));
    // Opened now: once in the container's mount namespace, the directory is out of sight.
    let result_file = match fs::File::create(&result_path) {
        Ok(file) => file,
        Err(e) => {
            eprintln!("exec: creating {}: {e}", result_path.display());
            return 128;
        }
    };
    match enter_and_run(dir, request) {
        // Left empty: the daemon removes it.
        Ok(code) => code,
        Err(failure) => {
            let result = ExecResult { error: failure.message, exit_code: failure.exit_code };
            let mut file = result_file;
            // The daemon reads the file only after we exit: a plain write is enough.
            if let Ok(json) = serde_json::to_vec(&result) {
                let _ = file.write_all(&json);
            }
            failure.exit_code
        }
    }
}

fn enter_and_run(dir: &Path, request: &str) -> Result<i32, InitFailure> {
    let setup = InitFailure::setup;
    let paths = ContainerPaths::new(dir);
    let config: ContainerConfig = jsonfile::read(&paths.config())
        .and_then(|c| c.ok_or_else(|| Error::corrupt(paths.config(), "the file is missing")))
        .map_err(setup)?;
    let request: ExecRequest = jsonfile::read(&dir.join(request))
        .and_then(|r| r.ok_or_else(|| Error::corrupt(dir.join(request), "the exec request is missing")))
        .map_err(setup)?;
    let mut namespaces = Vec::new();
    for (name, flag) in namespaces::JOIN_ORDER {
        let path = format!("/proc/{}/ns/{name}", request.init.pid);
        let fd = open(path.as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .context(|| format!("opening {path}"))
            .map_err(setup)?;
        namespaces.push((name, flag, fd));
    }
    // Opened before the pid could be reused: the fds now hold the right namespaces.
    if !request.init.is_running() {
        return Err(InitFailure { exit_code: 128, message: "the container is not running".to_string() });
    }
    if let Some(cgroup) = &config.host.cgroup {
        cgroup.join_self().map_err(setup)?;
    }
    for (name, flag, fd) in &namespaces {
        setns(fd.as_fd(), *flag).context(|| format!("joining the container's {name} namespace")).map_err(setup)?;
    }
    drop(namespaces);

    let (report_r, report_w) = pipe2(OFlag::O_CLOEXEC).context(|| "creating a pipe".to_string()).map_err(setup)?;
    // SAFETY: the helper is single-threaded.
    match unsafe { fork() }.context(|| "forking the exec'd process".to_string()).map_err(setup)? {
        ForkResult::Child => {
            drop(report_r);
            let code = child(&config, &request, report_w);
            // SAFETY: leaves without running the helper's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(report_w);
            let mut message = Vec::new();
            let _ = fs::File::from(report_r).read_to_end(&mut message);
            let code = loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) => break code,
                    Ok(WaitStatus::Signaled(_, signal, _)) => break 128 + signal as i32,
                    Ok(_) | Err(Errno::EINTR) => continue,
                    Err(e) => return Err(setup(Error::io("waiting for the exec'd process", e.into()))),
                }
            };
            if message.is_empty() {
                Ok(code)
            } else {
                Err(InitFailure { exit_code: code, message: String::from_utf8_lossy(&message).into_owned() })
            }
        }
    }
}

/// Makes a terminal of the container's `/dev/pts` this process's stdio and controlling
/// terminal (a new session), and sends its master over the socket that is stdin now.
fn open_terminal(size: Option<(u16, u16)>) -> Result<(), Error> {
    nix::unistd::setsid().context(|| "starting a session for the exec's terminal".to_string())?;
    let console = nix::unistd::dup(std::io::stdin().as_fd()).context(|| "keeping the console socket".to_string())?;
    super::terminal::open_in_container(&console, size)
}

fn child(config: &ContainerConfig, request: &ExecRequest, report: OwnedFd) -> i32 {
    let _ = prctl::set_pdeathsig(Signal::SIGKILL);
    if request.tty {
        if let Err(e) = open_terminal(request.tty_size) {
            let _ = fs::File::from(report).write_all(format!("{e}").as_bytes());
            return 126;
        }
    }
    init::close_inherited_fds();
    let mut host = config.host.clone();
    if request.user.is_some() {
        host.user = request.user.clone();
    }
    let failure = match init::exec_as(&host, &request.args, &request.env, &request.cwd) {
        Ok(never) => match never {},
        Err(failure) => failure,
    };
    let _ = fs::File::from(report).write_all(failure.message.as_bytes());
    failure.exit_code
}
