//! The daemon's side of `exec` ([`super::exec`] is the helper's): what a caller asks for
//! ([`ExecSpec`]), resolving it against the container's config, running the helper and
//! collecting the command's output.

use std::{
    fs,
    process::{Command, Stdio},
};

use serde::{Deserialize, Serialize};

use super::{
    exec::{result_name, ExecRequest, ExecResult, EXEC_ENV},
    launch::ShimCommand,
    procfs::ProcessIdentity,
};
use crate::{
    container::{spec::ContainerConfig, ContainerPaths},
    error::{Error, IoContext},
    jsonfile,
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
    /// A pseudo-terminal: not supported yet (refused).
    pub tty: bool,
}

/// What an exec'd command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Its exit status, or 128 + the signal that killed it.
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Resolves `spec` against the container.
pub(crate) fn request(config: &ContainerConfig, init: ProcessIdentity, spec: &ExecSpec) -> Result<ExecRequest, Error> {
    let name = &config.name;
    if spec.tty {
        return Err(Error::invalid(format!("exec with a tty is not supported yet (container {name}): run without -t")));
    }
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
    })
}

/// Runs the helper for `request` in the container at `paths` and collects the result.
pub(crate) fn run(
    shim: &ShimCommand,
    paths: &ContainerPaths,
    request: &ExecRequest,
    name: &str,
) -> Result<ExecOutput, Error> {
    let file = format!("exec-{:016x}.json", rand::random::<u64>());
    let request_path = paths.dir().join(&file);
    let result_path = paths.dir().join(result_name(&file));
    jsonfile::write_volatile(&request_path, request)?;
    let output = Command::new(&shim.exe)
        .args(&shim.args)
        .arg(paths.dir())
        .env(EXEC_ENV, &file)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .context(|| format!("starting the exec helper {}", shim.exe.display()));
    // The helper leaves the result file empty when the command ran (it cannot delete it from
    // inside the container's mount namespace).
    let result: Result<Option<ExecResult>, Error> = match fs::read(&result_path) {
        Ok(data) if data.is_empty() => Ok(None),
        _ => jsonfile::read(&result_path),
    };
    let _ = fs::remove_file(&request_path);
    let _ = fs::remove_file(&result_path);
    let output = output?;
    if let Some(failed) = result? {
        return Err(Error::Exec { container: name.to_string(), message: failed.error, exit_code: failed.exit_code });
    }
    let exit_code = match (output.status.code(), std::os::unix::process::ExitStatusExt::signal(&output.status)) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 255,
    };
    Ok(ExecOutput { exit_code, stdout: output.stdout, stderr: output.stderr })
}
