//! Docker's exec API bodies: `POST /containers/{id}/exec` read into the
//! runtime's exec spec (and rendered, as `shoal exec` sends it), the body of
//! `POST /exec/{id}/start` read, and an instance rendered as
//! `GET /exec/{id}/json` shows it.

use bollard_stubs::models as bollard;
use serde_json::Value;
use shoal_runtime::ExecSpec;

use super::{read, SpecError};

type Result<T> = std::result::Result<T, SpecError>;

/// What `POST /containers/{id}/exec` asks for: the process, and which of its
/// output streams the client wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecCreate {
    pub spec: ExecSpec,
    pub stdout: bool,
    pub stderr: bool,
}

/// What `POST /exec/{id}/start` asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecStart {
    /// Run it in the background, no one attached.
    pub detach: bool,
    /// The terminal's size, rows and columns, if the client knows it.
    pub console_size: Option<(u16, u16)>,
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// Docker's `ConsoleSize`: `[rows, columns]`; `[0, 0]` or absent: unknown.
fn console_size(size: Option<Vec<usize>>) -> Result<Option<(u16, u16)>> {
    let Some(size) = size else { return Ok(None) };
    let dim = |d: &usize| u16::try_from(*d).ok();
    match size.as_slice() {
        [rows, cols] => match (dim(rows), dim(cols)) {
            (Some(0), Some(0)) => Ok(None),
            (Some(rows), Some(cols)) => Ok(Some((rows, cols))),
            _ => Err(bad_size(&size)),
        },
        _ => Err(bad_size(&size)),
    }
}

fn bad_size(size: &[usize]) -> SpecError {
    let shown = serde_json::to_string(size).expect("a list of numbers renders");
    SpecError::sentence("ConsoleSize", format!("ConsoleSize must be [rows, columns], not {shown}"))
}

/// Reads Docker's `ExecConfig`, the body of `POST /containers/{id}/exec`.
pub fn parse_exec_create(v: &Value) -> Result<ExecCreate> {
    let c: bollard::ExecConfig = read(v, "ExecConfig")?;
    let cmd = c
        .cmd
        .filter(|c| !c.is_empty())
        .ok_or_else(|| SpecError::sentence("Cmd", "No exec command specified: give the command to run"))?;
    Ok(ExecCreate {
        spec: ExecSpec {
            cmd,
            env: c.env.unwrap_or_default(),
            user: nonempty(c.user),
            workdir: nonempty(c.working_dir),
            tty: c.tty.unwrap_or(false),
            tty_size: console_size(c.console_size)?,
            stdin: c.attach_stdin.unwrap_or(false),
        },
        stdout: c.attach_stdout.unwrap_or(false),
        stderr: c.attach_stderr.unwrap_or(false),
    })
}

/// An exec request as Docker's `ExecConfig` (what `shoal exec` sends).
pub fn exec_config(e: &ExecCreate) -> bollard::ExecConfig {
    let s = &e.spec;
    bollard::ExecConfig {
        attach_stdin: Some(s.stdin),
        attach_stdout: Some(e.stdout),
        attach_stderr: Some(e.stderr),
        console_size: s.tty_size.map(|(rows, cols)| vec![usize::from(rows), usize::from(cols)]),
        tty: Some(s.tty),
        env: Some(s.env.clone()),
        cmd: Some(s.cmd.clone()),
        user: s.user.clone(),
        working_dir: s.workdir.clone(),
        ..Default::default()
    }
}

/// Reads Docker's `ExecStartConfig`, the body of `POST /exec/{id}/start`; an
/// empty body asks for the defaults.
pub fn parse_exec_start(v: &Value) -> Result<ExecStart> {
    if v.is_null() {
        return Ok(ExecStart::default());
    }
    let s: bollard::ExecStartConfig = read(v, "ExecStartConfig")?;
    Ok(ExecStart { detach: s.detach.unwrap_or(false), console_size: console_size(s.console_size)? })
}

/// An exec instance as `GET /exec/{id}/json` shows it: `exit_code` once it
/// has ended.
pub fn exec_inspect(
    id: &str,
    container: &str,
    exec: &ExecCreate,
    running: bool,
    exit_code: Option<i32>,
) -> bollard::ExecInspectResponse {
    let (entrypoint, arguments) = exec.spec.cmd.split_first().map(|(e, a)| (e.clone(), a.to_vec())).unwrap_or_default();
    bollard::ExecInspectResponse {
        can_remove: Some(false),
        detach_keys: Some(String::new()),
        id: Some(id.to_string()),
        running: Some(running),
        exit_code: exit_code.map(i64::from),
        process_config: Some(bollard::ProcessConfig {
            privileged: Some(false),
            user: Some(exec.spec.user.clone().unwrap_or_default()),
            tty: Some(exec.spec.tty),
            entrypoint: Some(entrypoint),
            arguments: Some(arguments),
        }),
        open_stdin: Some(exec.spec.stdin),
        open_stderr: Some(exec.stderr),
        open_stdout: Some(exec.stdout),
        container_id: Some(container.to_string()),
        pid: Some(0),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(text: &str) -> Value {
        serde_json::from_str(text).expect("a captured body is JSON")
    }

    /// What the docker CLI 28.2 sends, as captured on its socket (the fuzz target's seeds).
    const CLI_EXEC: &str = include_str!("../../../fuzz/corpus/api_bodies/exec-create-cli-env-workdir.json");
    const CLI_EXEC_TTY: &str = include_str!("../../../fuzz/corpus/api_bodies/exec-create-cli-tty.json");
    const CLI_START_TTY: &str = include_str!("../../../fuzz/corpus/api_bodies/exec-start-cli-tty.json");

    #[test]
    fn exec_bodies_of_the_docker_cli_read() {
        // docker exec -e B=2 -w /tmp c2 sh -c 'pwd; echo $B'
        let e = parse_exec_create(&body(CLI_EXEC)).expect("reads");
        assert_eq!(e.spec.cmd, ["sh", "-c", "pwd; echo $B"]);
        assert_eq!(
            (e.spec.env.as_slice(), e.spec.workdir.as_deref(), e.spec.user.as_deref()),
            (["B=2".to_string()].as_slice(), Some("/tmp"), None)
        );
        assert_eq!((e.stdout, e.stderr, e.spec.stdin, e.spec.tty), (true, true, false, false));
        // docker exec -it c2 sh -c 'echo tty', in a terminal the CLI did not size
        let t = parse_exec_create(&body(CLI_EXEC_TTY)).expect("reads");
        assert_eq!((t.spec.tty, t.spec.stdin, t.spec.tty_size), (true, true, None));
        assert_eq!(parse_exec_start(&body(CLI_START_TTY)), Ok(ExecStart { detach: false, console_size: None }));
        assert_eq!(parse_exec_start(&Value::Null), Ok(ExecStart::default()));
        // What shoal exec sends reads back as what it asked for.
        let asked = ExecCreate { spec: ExecSpec { tty_size: Some((24, 80)), ..t.spec }, ..t };
        assert_eq!(parse_exec_create(&super::super::json(&exec_config(&asked))), Ok(asked));
    }

    /// Docker's `ExecConfig.Cmd` is a list of strings, not a `StrSlice`: one string is a 400
    /// there, which shoal took as a command of one word.
    #[test]
    fn exec_refuses_what_docker_refuses() {
        let cases = [
            (json!({"Cmd": "true"}), "invalid Cmd: "),
            (json!({"Cmd": ["true"], "Tty": "yes"}), "invalid Tty: "),
            (json!({"Cmd": ["true"], "Env": "A=1"}), "invalid Env: "),
            (json!({"Cmd": []}), "No exec command specified"),
            (json!({}), "No exec command specified"),
            (json!({"Cmd": ["true"], "ConsoleSize": [1, 2, 3]}), "ConsoleSize must be [rows, columns], not [1,2,3]"),
            (json!({"Cmd": ["true"], "ConsoleSize": [70000, 2]}), "ConsoleSize must be [rows, columns]"),
        ];
        for (v, expected) in cases {
            let err = parse_exec_create(&v).expect_err(&v.to_string()).to_string();
            assert!(err.starts_with(expected), "{v}: {err}");
        }
        let err = parse_exec_start(&json!({"Detach": "yes"})).expect_err("not a boolean").to_string();
        assert!(err.starts_with("invalid Detach: "), "{err}");
    }

    #[test]
    fn inspect_shows_how_it_ended() {
        let asked = ExecCreate {
            spec: ExecSpec { cmd: vec!["ls".into(), "-l".into()], ..Default::default() },
            stdout: true,
            stderr: false,
        };
        let v = super::super::json(&exec_inspect("e1", "c1", &asked, false, Some(2)));
        assert_eq!(
            (&v["ID"], &v["ContainerID"], &v["ExitCode"], &v["Running"]),
            (&json!("e1"), &json!("c1"), &json!(2), &json!(false))
        );
        assert_eq!(v["ProcessConfig"]["entrypoint"], "ls");
        assert_eq!(v["ProcessConfig"]["arguments"], json!(["-l"]));
        assert_eq!((&v["OpenStdout"], &v["OpenStderr"]), (&json!(true), &json!(false)));
    }
}
