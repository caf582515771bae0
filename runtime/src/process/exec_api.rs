//! The daemon's side of `exec` ([`super::exec`] is the helper's): what a caller asks for
//! ([`ExecSpec`]), resolving it against the container's config, running the helper and
//! collecting the command's output.

use std::{
    fs,
    os::fd::OwnedFd,
    process::{Command, Stdio},
};

use serde::{Deserialize, Serialize};

use super::{
    exec::{result_name, ExecRequest, ExecResult, EXEC_ENV},
    launch::ShimCommand,
};
use crate::{
    container::{spec::ContainerConfig, ContainerPaths},
    error::{Error, IoContext},
    jsonfile,
    procfs::ProcessIdentity,
};

/// A process to run in a running container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSpec {
    /// The command and its arguments, looked up in the container's `PATH`.
    pub cmd: Vec<String>,
    /// `KEY=VALUE` pairs added to the container's environment.
    pub env: Vec<String>,
    /// `uid[:gid]` or `name[:group]`; defaults to the container's user.
    pub user: Option<String>,
    /// Absolute working directory; defaults to the container's.
    pub workdir: Option<String>,
    /// A pseudo-terminal (in the container's `/dev/pts`) as its stdio: only
    /// with [`crate::Runtime::exec_spawn`], which hands back its master.
    pub tty: bool,
    /// The terminal's first size, rows and columns.
    #[serde(default)]
    pub tty_size: Option<(u16, u16)>,
    /// Its stdin a pipe to write to (without a terminal; with
    /// [`crate::Runtime::exec_spawn`]).
    #[serde(default)]
    pub stdin: bool,
}

/// What an exec'd command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Its exit status, or 128 + the signal that killed it.
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// A command exec'd in a container, running, with its stdio: a terminal's
/// master with a tty, else pipes (stdin only if asked for).
pub struct ExecProcess {
    child: std::process::Child,
    pub terminal: Option<OwnedFd>,
    pub stdin: Option<std::process::ChildStdin>,
    pub stdout: Option<std::process::ChildStdout>,
    pub stderr: Option<std::process::ChildStderr>,
    files: ExecFiles,
}

/// Sets the window size of an exec's terminal (its master, [`ExecProcess::terminal`]).
pub fn resize_terminal(master: std::os::fd::BorrowedFd<'_>, rows: u16, cols: u16) -> Result<(), Error> {
    super::terminal::set_size(master, rows, cols).context(|| "resizing the exec's terminal".to_string())
}

impl ExecProcess {
    /// Waits for the command to end: its exit code, or why it could not run.
    pub fn wait(mut self) -> Result<i32, Error> {
        drop(self.stdin.take());
        let status = self.child.wait().context(|| "waiting for the exec helper".to_string());
        self.files.finish(status)
    }
}

/// The request and result files of one exec.
struct ExecFiles {
    file: String,
    request: std::path::PathBuf,
    result: std::path::PathBuf,
    name: String,
}

impl ExecFiles {
    fn write(paths: &ContainerPaths, request: &ExecRequest, name: &str) -> Result<ExecFiles, Error> {
        let file = format!("exec-{:016x}.json", rand::random::<u64>());
        let files = ExecFiles {
            request: paths.dir().join(&file),
            result: paths.dir().join(result_name(&file)),
            file,
            name: name.to_string(),
        };
        jsonfile::write_volatile(&files.request, request)?;
        Ok(files)
    }

    fn command(&self, shim: &ShimCommand, paths: &ContainerPaths) -> Command {
        let mut command = Command::new(&shim.exe);
        command.args(&shim.args).arg(paths.dir()).env(EXEC_ENV, &self.file).current_dir("/");
        command
    }

    /// Reads the result once the helper has exited, and removes the files.
    fn finish(&self, status: Result<std::process::ExitStatus, Error>) -> Result<i32, Error> {
        // The helper leaves the result file empty when the command ran (it cannot delete it
        // from inside the container's mount namespace).
        let result: Result<Option<ExecResult>, Error> = match fs::read(&self.result) {
            Ok(data) if data.is_empty() => Ok(None),
            _ => jsonfile::read(&self.result),
        };
        let _ = fs::remove_file(&self.request);
        let _ = fs::remove_file(&self.result);
        let status = status?;
        if let Some(failed) = result? {
            return Err(Error::Exec {
                container: self.name.clone(),
                message: failed.error,
                exit_code: failed.exit_code,
            });
        }
        Ok(match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            (None, None) => 255,
        })
    }
}

/// Starts the helper for `request` in the container at `paths` and hands back the running
/// command's stdio (see [`ExecProcess`]).
pub(crate) fn spawn(
    shim: &ShimCommand,
    paths: &ContainerPaths,
    request: &ExecRequest,
    spec: &ExecSpec,
    name: &str,
) -> Result<ExecProcess, Error> {
    let files = ExecFiles::write(paths, request, name)?;
    let mut command = files.command(shim, paths);
    // With a terminal the helper's stdin is a socket over which its child, once in the
    // container, sends the terminal's master (as a container's init does to its shim).
    let console = if spec.tty {
        let (ours, theirs) =
            std::os::unix::net::UnixStream::pair().context(|| "creating the exec's console socket".to_string())?;
        command.stdin(Stdio::from(OwnedFd::from(theirs))).stdout(Stdio::null()).stderr(Stdio::null());
        Some(OwnedFd::from(ours))
    } else {
        command
            .stdin(if spec.stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        None
    };
    let spawned = command.spawn().context(|| format!("starting the exec helper {}", shim.exe.display()));
    drop(command);
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let _ = fs::remove_file(&files.request);
            return Err(e);
        }
    };
    let terminal = match console {
        None => None,
        Some(console) => match super::terminal::receive_master(&console) {
            Ok(Some(master)) => Some(master),
            // The helper closed the socket without a terminal: it failed, and says why.
            Ok(None) | Err(_) => {
                let status = child.wait().context(|| "waiting for the exec helper".to_string());
                files.finish(status)?;
                return Err(Error::Exec {
                    container: name.to_string(),
                    message: "the exec'd command got no terminal".to_string(),
                    exit_code: 126,
                });
            }
        },
    };
    Ok(ExecProcess {
        stdin: child.stdin.take(),
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
        child,
        terminal,
        files,
    })
}

/// Resolves `spec` against the container.
pub(crate) fn request(config: &ContainerConfig, init: ProcessIdentity, spec: &ExecSpec) -> Result<ExecRequest, Error> {
    let name = &config.name;
    if spec.cmd.first().is_none_or(String::is_empty) {
        return Err(Error::invalid(format!("exec in container {name} needs a command")));
    }
    let mut env = config.process.env.clone();
    for var in &spec.env {
        let Some((key, _)) = var.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(Error::invalid(format!("invalid environment variable \"{var}\" for exec: expected KEY=VALUE")));
        };
        env.retain(|v| v.split_once('=').map(|(k, _)| k) != Some(key));
        env.push(var.clone());
    }
    let cwd = spec.workdir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| config.process.cwd.clone());
    if !cwd.starts_with('/') {
        return Err(Error::invalid(format!("exec working directory \"{cwd}\" must be an absolute path")));
    }
    let has_nul = spec.cmd.iter().chain(&env).chain([&cwd]).any(|s| s.contains('\0'));
    if has_nul {
        return Err(Error::invalid("the exec command, environment or working directory contains a NUL byte"));
    }
    Ok(ExecRequest {
        init,
        args: spec.cmd.clone(),
        env,
        user: spec.user.clone().filter(|u| !u.is_empty()).or_else(|| config.host.user.clone()),
        cwd,
        tty: spec.tty,
        tty_size: spec.tty_size,
    })
}

/// Runs the helper for `request` in the container at `paths` and collects the result.
pub(crate) fn run(
    shim: &ShimCommand,
    paths: &ContainerPaths,
    request: &ExecRequest,
    name: &str,
) -> Result<ExecOutput, Error> {
    if request.tty {
        return Err(Error::invalid(format!(
            "exec with a tty needs a client to talk to it (container {name}): run without -t"
        )));
    }
    let files = ExecFiles::write(paths, request, name)?;
    let output = files
        .command(shim, paths)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .context(|| format!("starting the exec helper {}", shim.exe.display()));
    let (status, stdout, stderr) = match output {
        Ok(o) => (Ok(o.status), o.stdout, o.stderr),
        Err(e) => (Err(e), Vec::new(), Vec::new()),
    };
    let exit_code = files.finish(status)?;
    Ok(ExecOutput { exit_code, stdout, stderr })
}
