//! What a caller asks for ([`ContainerSpec`]) and what the runtime resolves it into against the
//! image, once, at create time ([`ContainerConfig`], saved as `config.json`): the exact command,
//! environment, working directory and hostname, following Docker's rules.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// `PATH` for images that set none (Docker's default).
pub(crate) const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to run: the caller's request for a new container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Unique name; empty means "use the first 12 characters of the id".
    pub name: String,
    /// Image reference (`name[:tag]`) or id.
    pub image: String,
    /// Replaces the image's Entrypoint (and drops its Cmd unless `cmd` is given too).
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's Cmd.
    pub cmd: Option<Vec<String>>,
    /// `KEY=VALUE` pairs added to the image's environment, overriding it by key.
    pub env: Vec<String>,
    /// Working directory (absolute); defaults to the image's, else `/`.
    pub workdir: Option<String>,
    /// Hostname; defaults to the first 12 characters of the id.
    pub hostname: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// The process a container runs, fully resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProcessConfig {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub hostname: String,
}

/// A container's immutable configuration (`config.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ContainerConfig {
    pub id: String,
    pub name: String,
    /// The image as the caller named it.
    pub image: String,
    pub image_id: String,
    pub labels: BTreeMap<String, String>,
    pub created_at: i64,
    pub process: ProcessConfig,
    /// Diff ids of the image's layers, bottom first.
    pub layers: Vec<String>,
}

/// Resolves the process of container `name` (id `id`) from `spec` and the image's `config`.
pub(crate) fn resolve_process(
    spec: &ContainerSpec,
    image: Option<&oci_spec::image::Config>,
    name: &str,
    id: &str,
) -> Result<ProcessConfig, Error> {
    let entrypoint = match &spec.entrypoint {
        Some(entrypoint) => entrypoint.clone(),
        None => image.and_then(|c| c.entrypoint().clone()).unwrap_or_default(),
    };
    let cmd = match (&spec.cmd, &spec.entrypoint) {
        (Some(cmd), _) => cmd.clone(),
        // A new entrypoint does not inherit the image's arguments.
        (None, Some(_)) => Vec::new(),
        (None, None) => image.and_then(|c| c.cmd().clone()).unwrap_or_default(),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() || args[0].is_empty() {
        return Err(Error::invalid(format!(
            "no command for container {name}: image \"{}\" has no Entrypoint or Cmd, so give a command",
            spec.image
        )));
    }

    let hostname = spec.hostname.clone().unwrap_or_else(|| id[..12].to_string());
    if hostname.is_empty()
        || hostname.len() > 64
        || !hostname.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(Error::invalid(format!(
            "invalid hostname \"{hostname}\" for container {name}: use 1 to 64 letters, digits, '-' and '.'"
        )));
    }

    let mut env: Vec<String> = Vec::new();
    let image_env = image.and_then(|c| c.env().clone()).unwrap_or_default();
    for var in image_env.iter().chain(&spec.env) {
        let Some((key, _)) = var.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(Error::invalid(format!(
                "invalid environment variable \"{var}\" for container {name}: expected KEY=VALUE"
            )));
        };
        env.retain(|v| v.split_once('=').map(|(k, _)| k) != Some(key));
        env.push(var.clone());
    }
    let has = |env: &[String], key: &str| env.iter().any(|v| v.starts_with(&format!("{key}=")));
    if !has(&env, "PATH") {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    if !has(&env, "HOSTNAME") {
        env.push(format!("HOSTNAME={hostname}"));
    }
    if !has(&env, "HOME") {
        env.push("HOME=/root".to_string());
    }

    let cwd = spec
        .workdir
        .clone()
        .or_else(|| image.and_then(|c| c.working_dir().clone()))
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".to_string());
    if !cwd.starts_with('/') {
        return Err(Error::invalid(format!(
            "working directory \"{cwd}\" of container {name} must be an absolute path"
        )));
    }

    let process = ProcessConfig { args, env, cwd, hostname };
    let has_nul = process.args.iter().chain(&process.env).chain([&process.cwd]).any(|s| s.contains('\0'));
    if has_nul {
        return Err(Error::invalid(format!(
            "the command, environment or working directory of container {name} contains a NUL byte"
        )));
    }
    Ok(process)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::ConfigBuilder;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    fn image(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> oci_spec::image::Config {
        let mut b = ConfigBuilder::default();
        if let Some(e) = entrypoint {
            b = b.entrypoint(strings(e));
        }
        if let Some(c) = cmd {
            b = b.cmd(strings(c));
        }
        b.env(strings(&["PATH=/bin", "A=image"])).build().expect("config")
    }

    fn args(spec: &ContainerSpec, image: Option<&oci_spec::image::Config>) -> Result<Vec<String>, Error> {
        resolve_process(spec, image, "web.1", ID).map(|p| p.args)
    }

    #[test]
    fn entrypoint_and_cmd_follow_docker() {
        let img = image(Some(&["/entry"]), Some(&["default"]));
        let mut spec = ContainerSpec::default();
        assert_eq!(args(&spec, Some(&img)).expect("ok"), ["/entry", "default"]);

        spec.cmd = Some(strings(&["x"]));
        assert_eq!(args(&spec, Some(&img)).expect("ok"), ["/entry", "x"]);

        spec.cmd = None;
        spec.entrypoint = Some(strings(&["/other"]));
        assert_eq!(args(&spec, Some(&img)).expect("ok"), ["/other"]);

        spec.cmd = Some(strings(&["y"]));
        assert_eq!(args(&spec, Some(&img)).expect("ok"), ["/other", "y"]);

        // An empty entrypoint override clears the image's and runs cmd alone.
        spec.entrypoint = Some(vec![]);
        assert_eq!(args(&spec, Some(&img)).expect("ok"), ["y"]);

        let cmd_only = image(None, Some(&["sh"]));
        assert_eq!(args(&ContainerSpec::default(), Some(&cmd_only)).expect("ok"), ["sh"]);
    }

    #[test]
    fn empty_command_is_an_error() {
        let err = args(&ContainerSpec::default(), None).expect_err("no command");
        assert!(matches!(err, Error::InvalidArgument { .. }));
        assert!(err.to_string().contains("web.1"), "{err}");
        let spec = ContainerSpec { entrypoint: Some(vec![]), ..Default::default() };
        assert!(args(&spec, Some(&image(None, Some(&["sh"])))).is_err());
    }

    #[test]
    fn env_merges_by_key_with_defaults() {
        let spec =
            ContainerSpec { cmd: Some(strings(&["sh"])), env: strings(&["A=spec", "B=1"]), ..Default::default() };
        let p = resolve_process(&spec, Some(&image(None, None)), "c", ID).expect("ok");
        assert_eq!(p.env, ["PATH=/bin", "A=spec", "B=1", "HOSTNAME=0123456789ab", "HOME=/root"]);
        assert_eq!(p.cwd, "/");
        assert_eq!(p.hostname, "0123456789ab");

        let p = resolve_process(&spec, None, "c", ID).expect("ok");
        assert_eq!(p.env[0], format!("PATH={DEFAULT_PATH}"));

        let bad = ContainerSpec { env: strings(&["NOVALUE"]), ..spec.clone() };
        assert!(resolve_process(&bad, None, "c", ID).is_err());
        let relative = ContainerSpec { workdir: Some("app".into()), ..spec };
        assert!(resolve_process(&relative, None, "c", ID).is_err());
    }
}
