//! `--change` for `image import` and `container commit`: Dockerfile instructions that set an
//! image's config (`CMD`, `ENTRYPOINT`, `ENV`, `WORKDIR`, `USER`, `EXPOSE`, `LABEL`,
//! `STOPSIGNAL`, `VOLUME`), parsed into [`CommitChanges`] and applied to a config.

use std::collections::BTreeMap;

use oci_spec::image::Config;

use crate::error::Error;

/// What to change in an image's config (Docker's `--change`, as fields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitChanges {
    /// Replaces the image's command.
    pub cmd: Option<Vec<String>>,
    /// Replaces the image's entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=value` entries, replacing those with the same key.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// Added to (or replacing) the image's labels.
    pub labels: BTreeMap<String, String>,
    /// `port/proto` entries (`80/tcp`) added to the image's exposed ports.
    pub exposed_ports: Vec<String>,
    /// Paths added to the image's volumes.
    pub volumes: Vec<String>,
    /// The signal `stop` sends first to containers of the image.
    pub stop_signal: Option<String>,
    /// Recorded in the image history.
    pub comment: Option<String>,
}

/// The instructions `--change` takes.
const INSTRUCTIONS: &str = "CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME or WORKDIR";

impl CommitChanges {
    /// Parses `--change` values in order (a later one wins for single-valued settings).
    pub fn parse(instructions: &[String]) -> Result<CommitChanges, Error> {
        let mut changes = CommitChanges::default();
        for text in instructions {
            changes.add(text)?;
        }
        Ok(changes)
    }

    fn add(&mut self, text: &str) -> Result<(), Error> {
        let trimmed = text.trim();
        let (keyword, rest) = trimmed.split_once(char::is_whitespace).unwrap_or((trimmed, ""));
        let rest = rest.trim();
        let bad = |why: String| Error::invalid(format!("invalid --change \"{text}\": {why}"));
        if keyword.is_empty() {
            return Err(bad(format!("it is empty: give an instruction ({INSTRUCTIONS}) and its arguments")));
        }
        let keyword = keyword.to_ascii_uppercase();
        let needs_value = |what: &str| {
            if rest.is_empty() {
                Err(bad(format!("{keyword} needs {what}")))
            } else {
                Ok(())
            }
        };
        match keyword.as_str() {
            "CMD" => {
                needs_value("a command")?;
                self.cmd = Some(command(rest).map_err(bad)?);
            }
            "ENTRYPOINT" => {
                needs_value("a command")?;
                self.entrypoint = Some(command(rest).map_err(bad)?);
            }
            "ENV" => {
                needs_value("KEY=value")?;
                for (key, value) in key_values(rest, "ENV").map_err(bad)? {
                    self.env.retain(|e| e.split('=').next() != Some(key.as_str()));
                    self.env.push(format!("{key}={value}"));
                }
            }
            "LABEL" => {
                needs_value("KEY=value")?;
                for (key, value) in key_values(rest, "LABEL").map_err(bad)? {
                    self.labels.insert(key, value);
                }
            }
            "WORKDIR" => {
                needs_value("a directory")?;
                let dir = words(rest).map_err(bad)?.join(" ");
                // As in a Dockerfile, a relative WORKDIR continues the previous one.
                let dir = match (&self.working_dir, dir.starts_with('/')) {
                    (_, true) => dir,
                    (Some(previous), false) => format!("{}/{dir}", previous.trim_end_matches('/')),
                    (None, false) => format!("/{dir}"),
                };
                self.working_dir = Some(dir);
            }
            "USER" => {
                needs_value("a user (name or uid, optionally :group)")?;
                let user = words(rest).map_err(bad)?;
                if user.len() != 1 {
                    return Err(bad("USER takes one user[:group]".into()));
                }
                self.user = user.into_iter().next();
            }
            "EXPOSE" => {
                needs_value("a port")?;
                for port in words(rest).map_err(bad)? {
                    self.exposed_ports.push(exposed_port(&port).map_err(bad)?);
                }
            }
            "VOLUME" => {
                needs_value("a path")?;
                let paths =
                    if rest.starts_with('[') { json_array(rest).map_err(bad)? } else { words(rest).map_err(bad)? };
                for path in paths {
                    if !path.starts_with('/') {
                        return Err(bad(format!("the volume \"{path}\" must be an absolute path")));
                    }
                    self.volumes.push(path);
                }
            }
            "STOPSIGNAL" => {
                needs_value("a signal")?;
                crate::signal::parse(rest).map_err(|e| bad(e.to_string()))?;
                self.stop_signal = Some(rest.to_string());
            }
            "ONBUILD" | "HEALTHCHECK" | "SHELL" => {
                return Err(bad(format!("{keyword} is not supported: use {INSTRUCTIONS}")));
            }
            _ => return Err(bad(format!("unknown instruction \"{keyword}\": use {INSTRUCTIONS}"))),
        }
        Ok(())
    }

    /// Applies the changes to an image's config.
    pub(crate) fn apply(&self, process: &mut Config) {
        if let Some(cmd) = &self.cmd {
            process.set_cmd(Some(cmd.clone()));
        }
        if let Some(entrypoint) = &self.entrypoint {
            process.set_entrypoint(Some(entrypoint.clone()));
        }
        if let Some(dir) = &self.working_dir {
            process.set_working_dir(Some(dir.clone()));
        }
        if let Some(user) = &self.user {
            process.set_user(Some(user.clone()));
        }
        if let Some(signal) = &self.stop_signal {
            process.set_stop_signal(Some(signal.clone()));
        }
        if !self.env.is_empty() {
            let mut env = process.env().clone().unwrap_or_default();
            for entry in &self.env {
                let key = entry.split('=').next().unwrap_or(entry);
                env.retain(|e| e.split('=').next() != Some(key));
                env.push(entry.clone());
            }
            process.set_env(Some(env));
        }
        if !self.labels.is_empty() {
            let mut labels = process.labels().clone().unwrap_or_default();
            labels.extend(self.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            process.set_labels(Some(labels));
        }
        let merge = |current: &Option<Vec<String>>, added: &[String]| {
            let mut all = current.clone().unwrap_or_default();
            for a in added {
                if !all.contains(a) {
                    all.push(a.clone());
                }
            }
            all
        };
        if !self.exposed_ports.is_empty() {
            process.set_exposed_ports(Some(merge(process.exposed_ports(), &self.exposed_ports)));
        }
        if !self.volumes.is_empty() {
            process.set_volumes(Some(merge(process.volumes(), &self.volumes)));
        }
    }
}

/// `CMD`/`ENTRYPOINT` arguments: the JSON form (`["echo","hi"]`) as it is, the shell form run
/// by `/bin/sh -c`.
fn command(rest: &str) -> Result<Vec<String>, String> {
    if rest.starts_with('[') {
        if let Ok(args) = json_array(rest) {
            return Ok(args);
        }
    }
    Ok(vec!["/bin/sh".into(), "-c".into(), rest.to_string()])
}

fn json_array(text: &str) -> Result<Vec<String>, String> {
    serde_json::from_str::<Vec<String>>(text)
        .map_err(|e| format!("{text} is not a JSON array of strings ({e}), e.g. [\"echo\",\"hi\"]"))
}

/// `KEY=value KEY2="two words"`, or the old one-pair form `KEY value with spaces`.
fn key_values(rest: &str, keyword: &str) -> Result<Vec<(String, String)>, String> {
    let list = words(rest)?;
    let first_has_equals = list.first().is_some_and(|w| w.contains('='));
    if !first_has_equals {
        let (key, value) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("{keyword} needs KEY=value (or KEY value), but \"{rest}\" has no value"))?;
        return Ok(vec![(key.to_string(), words(value.trim())?.join(" "))]);
    }
    list.into_iter()
        .map(|word| match word.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
            _ => Err(format!("{keyword} expects KEY=value pairs, but \"{word}\" is not one")),
        })
        .collect()
}

/// Splits on unquoted whitespace; `"…"` and `'…'` group (and are removed), `\` escapes.
fn words(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
                in_word = true;
            }
            (Some(_), c) => current.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            (None, c) => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!("a {q} quote is not closed"));
    }
    if in_word {
        out.push(current);
    }
    Ok(out)
}

/// `80`, `80/tcp`, `53/udp` → `port/proto`.
fn exposed_port(text: &str) -> Result<String, String> {
    let (port, proto) = text.split_once('/').unwrap_or((text, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("EXPOSE {text}: the protocol must be tcp, udp or sctp"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(format!("{p}/{proto}")),
        _ => Err(format!("EXPOSE {text}: \"{port}\" is not a port number (1-65535)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[&str]) -> Result<CommitChanges, Error> {
        CommitChanges::parse(&lines.iter().map(|l| l.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_every_instruction() {
        let c = parse(&[
            r#"CMD ["echo","hi"]"#,
            "entrypoint /bin/app --flag",
            "ENV A=1 B=\"two words\"",
            "ENV LEGACY some value",
            "WORKDIR /srv",
            "WORKDIR app",
            "USER web:staff",
            "EXPOSE 80 53/udp",
            "LABEL version=1 \"com.example.name\"='x y'",
            "STOPSIGNAL SIGQUIT",
            r#"VOLUME ["/data"]"#,
            "VOLUME /cache /logs",
        ])
        .expect("valid");
        assert_eq!(c.cmd, Some(vec!["echo".to_string(), "hi".to_string()]));
        assert_eq!(c.entrypoint, Some(vec!["/bin/sh".into(), "-c".into(), "/bin/app --flag".into()]));
        assert_eq!(c.env, ["A=1", "B=two words", "LEGACY=some value"]);
        assert_eq!(c.working_dir.as_deref(), Some("/srv/app"));
        assert_eq!(c.user.as_deref(), Some("web:staff"));
        assert_eq!(c.exposed_ports, ["80/tcp", "53/udp"]);
        assert_eq!(c.labels.get("com.example.name").map(String::as_str), Some("x y"));
        assert_eq!(c.labels.get("version").map(String::as_str), Some("1"));
        assert_eq!(c.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(c.volumes, ["/data", "/cache", "/logs"]);

        let mut config = Config::default();
        c.apply(&mut config);
        assert_eq!(config.exposed_ports().as_deref(), Some(&["80/tcp".to_string(), "53/udp".to_string()][..]));
        assert_eq!(config.stop_signal().as_deref(), Some("SIGQUIT"));
        assert_eq!(config.env().as_ref().map(Vec::len), Some(3));
    }

    #[test]
    fn bad_changes_name_the_problem() {
        let err = parse(&["FROM busybox"]).expect_err("unknown").to_string();
        assert!(err.contains("unknown instruction \"FROM\"") && err.contains("CMD"), "{err}");
        for (bad, says) in [
            ("CMD", "needs a command"),
            ("ENV =x", "not one"),
            ("ENV A", "no value"),
            ("EXPOSE 99999", "port number"),
            ("EXPOSE 80/icmp", "protocol"),
            ("STOPSIGNAL SIGNOPE", "SIGNOPE"),
            ("VOLUME data", "absolute"),
            ("LABEL a=\"open", "not closed"),
            ("ONBUILD RUN x", "not supported"),
            ("  ", "empty"),
        ] {
            let err = parse(&[bad]).expect_err(bad).to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
