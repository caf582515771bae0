//! A located YAML tree to the compose model: checks every type, reports each problem at its
//! `file:line:column` with the key path, and warns about keys shoal ignores.
//!
//! A `null` value (`key:` with nothing after it) counts as absent, as in Compose.
//! Architecture invariant: no I/O and no process environment; `convert` resolves that.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Warning};
use crate::model::{self, Mode, Project, Service};
use crate::schema::{self, Keys, Support};
use crate::shell;
use crate::yaml::{Entry, Mark, Node, Value};

/// Reads the compose model out of the document `root` of `file`.
pub(crate) fn project(file: &Path, root: &Node) -> Result<(Project, Vec<Warning>), Error> {
    let mut loader = Loader { file, warnings: Vec::new() };
    let project = loader.top_level(root)?;
    let mut warnings = loader.warnings;
    // Levels are checked before their children: put the warnings back in reading order.
    warnings.sort_by_key(|w| (w.line, w.column));
    Ok((project, warnings))
}

struct Loader<'a> {
    file: &'a Path,
    warnings: Vec<Warning>,
}

impl Loader<'_> {
    fn top_level(&mut self, root: &Node) -> Result<Project, Error> {
        let entries = match &root.value {
            Value::Map(entries) => entries,
            Value::Null => {
                return Err(self.invalid(
                    root.mark,
                    "",
                    "the file is empty: a compose file needs a \"services\" mapping",
                ))
            }
            _ => return Err(self.expected(root, "", "a mapping with a \"services\" key")),
        };
        self.check_keys(entries, "", &schema::TOP_LEVEL);

        let mut services = Vec::new();
        let mut services_mark = root.mark;
        if let Some(entry) = entries.iter().find(|e| e.key == "services") {
            services_mark = entry.key_mark;
            match &entry.value.value {
                Value::Map(entries) => {
                    for entry in entries {
                        services.push(self.service(entry)?);
                    }
                }
                Value::Null => {}
                _ => return Err(self.expected(&entry.value, "services", "a mapping of service names to services")),
            }
        }
        if services.is_empty() {
            return Err(self.invalid(
                services_mark,
                "services",
                "no services defined: a stack needs at least one service",
            ));
        }
        Ok(Project { services })
    }

    fn service(&mut self, entry: &Entry) -> Result<Service, Error> {
        if !model::is_valid_name(&entry.key) {
            return Err(self.invalid(
                entry.key_mark,
                "services",
                format!(
                    "invalid service name {:?}: use letters, digits, '_', '.' and '-', \
                     starting with a letter or a digit",
                    entry.key
                ),
            ));
        }
        let path = join("services", &entry.key);
        let entries: &[Entry] = match &entry.value.value {
            Value::Map(entries) => entries,
            Value::Null => &[],
            _ => return Err(self.expected(&entry.value, &path, "a mapping")),
        };
        self.check_keys(entries, &path, &schema::SERVICE);

        let image = match field(entries, "image") {
            Some(node) => {
                let image_path = join(&path, "image");
                let image = self.string(node, &image_path)?;
                if image.trim().is_empty() {
                    return Err(self.invalid(node.mark, &image_path, "the image name is empty"));
                }
                image
            }
            None => {
                return Err(self.invalid(
                    entry.key_mark,
                    &path,
                    "\"image\" is required: name the image to run, e.g. `image: nginx:1.27`",
                ))
            }
        };
        Ok(Service {
            name: entry.key.clone(),
            image,
            entrypoint: self.command(entries, &path, "entrypoint")?,
            command: self.command(entries, &path, "command")?,
            environment: self.environment(entries, &path)?,
            mode: self.deploy(entries, &path)?,
        })
    }

    /// `command` or `entrypoint`: a string split like a shell would, or a list of words.
    fn command(&self, entries: &[Entry], parent: &str, key: &str) -> Result<Option<Vec<String>>, Error> {
        let Some(node) = field(entries, key) else {
            return Ok(None);
        };
        let path = join(parent, key);
        match &node.value {
            Value::Str(line) => {
                shell::split(line).map(Some).map_err(|err| self.invalid(node.mark, &path, err.to_string()))
            }
            Value::Seq(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| self.string(item, &index(&path, i)))
                .collect::<Result<_, _>>()
                .map(Some),
            _ => Err(self.expected(node, &path, "a string or a list of strings")),
        }
    }

    /// `environment`: a mapping of names to scalars, or a list of `NAME=VALUE` / `NAME`.
    fn environment(&self, entries: &[Entry], parent: &str) -> Result<BTreeMap<String, Option<String>>, Error> {
        let mut environment = BTreeMap::new();
        let Some(node) = field(entries, "environment") else {
            return Ok(environment);
        };
        let path = join(parent, "environment");
        match &node.value {
            Value::Map(entries) => {
                for entry in entries {
                    let var_path = join(&path, &entry.key);
                    self.check_variable_name(&entry.key, entry.key_mark, &var_path)?;
                    let value = match &entry.value.value {
                        Value::Null => None,
                        Value::Seq(_) | Value::Map(_) => {
                            return Err(self.expected(&entry.value, &var_path, "a string, a number, a boolean or null"))
                        }
                        _ => entry.value.scalar_text().map(str::to_owned),
                    };
                    environment.insert(entry.key.clone(), value);
                }
            }
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let item_path = index(&path, i);
                    let text = self.string(item, &item_path)?;
                    let (name, value) = match text.split_once('=') {
                        Some((name, value)) => (name, Some(value.to_owned())),
                        None => (text.as_str(), None),
                    };
                    self.check_variable_name(name, item.mark, &item_path)?;
                    // As in Compose, a later entry for the same name wins.
                    environment.insert(name.to_owned(), value);
                }
            }
            _ => return Err(self.expected(node, &path, "a mapping or a list of NAME=VALUE strings")),
        }
        Ok(environment)
    }

    fn check_variable_name(&self, name: &str, mark: Mark, path: &str) -> Result<(), Error> {
        if name.is_empty() {
            return Err(self.invalid(mark, path, "empty variable name"));
        }
        if name.contains('=') {
            return Err(self.invalid(mark, path, format!("variable name {name:?} contains '='")));
        }
        Ok(())
    }

    /// `deploy`: the mode and the number of replicas.
    fn deploy(&mut self, entries: &[Entry], parent: &str) -> Result<Mode, Error> {
        let Some(node) = field(entries, "deploy") else {
            return Ok(Mode::default());
        };
        let path = join(parent, "deploy");
        let Value::Map(entries) = &node.value else {
            return Err(self.expected(node, &path, "a mapping"));
        };
        self.check_keys(entries, &path, &schema::DEPLOY);

        if let Some(node) = field(entries, "mode") {
            let mode_path = join(&path, "mode");
            match self.string(node, &mode_path)?.as_str() {
                "replicated" => {}
                mode @ ("global" | "replicated-job" | "global-job") => {
                    return Err(self.invalid(
                        node.mark,
                        &mode_path,
                        format!("{mode:?} mode is not supported yet: use \"replicated\""),
                    ))
                }
                _ => return Err(self.expected(node, &mode_path, "\"replicated\" or \"global\"")),
            }
        }
        let replicas = match field(entries, "replicas") {
            Some(node) => self.replicas(node, &join(&path, "replicas"))?,
            None => 1,
        };
        Ok(Mode::Replicated { replicas })
    }

    /// A count of replicas: an integer, or (as the Compose spec allows) a string holding one.
    fn replicas(&self, node: &Node, path: &str) -> Result<u64, Error> {
        let value = match &node.value {
            Value::Int { value, .. } => *value,
            Value::Str(text) => match text.trim().parse::<i128>() {
                Ok(value) => value,
                Err(_) => return Err(self.expected(node, path, "an integer")),
            },
            _ => return Err(self.expected(node, path, "an integer")),
        };
        u64::try_from(value).map_err(|_| self.expected(node, path, "a non-negative integer"))
    }

    /// A string value. A number or boolean is refused: Compose would refuse it too, and
    /// YAML would have changed `1.10` to `1.1` or `no` to `false` for anyone else.
    fn string(&self, node: &Node, path: &str) -> Result<String, Error> {
        match &node.value {
            Value::Str(text) => Ok(text.clone()),
            _ => {
                let hint = node.scalar_text().map(|text| format!(" (quote it: \"{text}\")")).unwrap_or_default();
                Err(self.invalid(node.mark, path, format!("expected a string, found {node}{hint}")))
            }
        }
    }

    /// Warns about every key of `entries` that shoal ignores or that Compose does not define.
    fn check_keys(&mut self, entries: &[Entry], path: &str, keys: &Keys) {
        for entry in entries {
            if schema::is_extension(&entry.key) {
                continue;
            }
            let message = match keys.support(&entry.key) {
                Some(Support::Read | Support::Quiet) => continue,
                Some(Support::Ignored) => "not supported yet, ignored".to_owned(),
                None => match keys.suggest(&entry.key) {
                    Some(near) => format!("unknown key, ignored (did you mean {near:?}?)"),
                    None => "unknown key, ignored".to_owned(),
                },
            };
            self.warnings.push(Warning {
                file: self.file.to_owned(),
                line: entry.key_mark.line,
                column: entry.key_mark.column,
                message: format!("{}: {message}", join(path, &entry.key)),
            });
        }
    }

    fn invalid(&self, mark: Mark, path: &str, message: impl Into<String>) -> Error {
        Error::Invalid {
            file: self.file.to_owned(),
            line: mark.line,
            column: mark.column,
            path: path.to_owned(),
            message: message.into(),
        }
    }

    /// "expected X, found Y", pointing at the value.
    fn expected(&self, node: &Node, path: &str, what: &str) -> Error {
        self.invalid(node.mark, path, format!("expected {what}, found {node}"))
    }
}

/// The value of `key`, unless it is missing or null.
fn field<'n>(entries: &'n [Entry], key: &str) -> Option<&'n Node> {
    entries.iter().find(|e| e.key == key).map(|e| &e.value).filter(|node| node.value != Value::Null)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;

    const FILE: &str = "docker-compose.yml";

    fn load(text: &str) -> Result<(Project, Vec<Warning>), Error> {
        let root = yaml::parse(text).expect("test YAML is well-formed");
        project(Path::new(FILE), &root)
    }

    fn only_service(text: &str) -> Service {
        let (mut project, _) = load(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(project.services.len(), 1);
        project.services.remove(0)
    }

    fn warnings(text: &str) -> Vec<String> {
        let (_, warnings) = load(text).unwrap_or_else(|e| panic!("{e}"));
        warnings.iter().map(ToString::to_string).collect()
    }

    /// The error's `Display`, which carries file, line, column, path and message.
    fn error(text: &str) -> String {
        match load(text) {
            Ok(_) => panic!("loaded without error:\n{text}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn defaults() {
        let service = only_service("services:\n  web:\n    image: nginx\n");
        assert_eq!(
            service,
            Service {
                name: "web".into(),
                image: "nginx".into(),
                entrypoint: None,
                command: None,
                environment: BTreeMap::new(),
                mode: Mode::Replicated { replicas: 1 },
            }
        );
    }

    #[test]
    fn commands_as_strings_and_lists() {
        let service = only_service(
            "services:\n  web:\n    image: busybox\n    entrypoint: [\"/bin/sh\", \"-c\"]\n    \
             command: echo 'hello  world' \"$HOME\"\n",
        );
        assert_eq!(service.entrypoint, Some(vec!["/bin/sh".into(), "-c".into()]));
        assert_eq!(service.command, Some(vec!["echo".into(), "hello  world".into(), "$HOME".into()]));
        let service = only_service("services:\n  web:\n    image: busybox\n    command: []\n");
        assert_eq!(service.command, Some(vec![]));
        let service = only_service("services:\n  web:\n    image: busybox\n    command:\n");
        assert_eq!(service.command, None);
    }

    #[test]
    fn environment_as_map() {
        let service = only_service(
            "services:\n  web:\n    image: x\n    environment:\n      A: text\n      B: 1.10\n      \
             C: yes\n      D: 0x10\n      E:\n      F: ''\n      G: TRUE\n",
        );
        assert_eq!(
            service.environment,
            BTreeMap::from([
                ("A".into(), Some("text".into())),
                ("B".into(), Some("1.10".into())),
                ("C".into(), Some("yes".into())),
                ("D".into(), Some("0x10".into())),
                ("E".into(), None),
                ("F".into(), Some(String::new())),
                ("G".into(), Some("TRUE".into())),
            ])
        );
    }

    #[test]
    fn environment_as_list() {
        let service = only_service(
            "services:\n  web:\n    image: x\n    environment:\n      - A=1\n      - B=x=y\n      \
             - C\n      - D=\n      - A=2\n",
        );
        assert_eq!(
            service.environment,
            BTreeMap::from([
                ("A".into(), Some("2".into())),
                ("B".into(), Some("x=y".into())),
                ("C".into(), None),
                ("D".into(), Some(String::new())),
            ])
        );
    }

    #[test]
    fn replicas_and_mode() {
        let service =
            only_service("services:\n  web:\n    image: x\n    deploy:\n      mode: replicated\n      replicas: 0\n");
        assert_eq!(service.mode, Mode::Replicated { replicas: 0 });
        let service = only_service("services:\n  web:\n    image: x\n    deploy:\n      replicas: \"4\"\n");
        assert_eq!(service.mode, Mode::Replicated { replicas: 4 });
        let service = only_service("services:\n  web:\n    image: x\n    deploy:\n");
        assert_eq!(service.mode, Mode::Replicated { replicas: 1 });
    }

    #[test]
    fn services_keep_document_order() {
        let (project, _) = load("services:\n  web: {image: a}\n  db: {image: b}\n").expect("valid");
        let names: Vec<&str> = project.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["web", "db"]);
    }

    #[test]
    fn anchors_and_merge_keys() {
        let (project, _) = load(
            "x-base: &base\n  image: app:1\n  environment: {A: '1'}\nservices:\n  \
             web:\n    <<: *base\n    command: serve\n  worker: *base\n",
        )
        .expect("valid");
        assert_eq!(project.services.len(), 2);
        assert!(project.services.iter().all(|s| s.image == "app:1"));
        assert_eq!(project.services[0].command, Some(vec!["serve".into()]));
    }

    #[test]
    fn wrong_types_point_at_the_value() {
        assert_eq!(
            error("services:\n  web:\n    image: x\n    deploy:\n      replicas: three\n"),
            "docker-compose.yml:5:17: services.web.deploy.replicas: expected an integer, found \"three\""
        );
        assert_eq!(
            error("services:\n  web:\n    image: x\n    deploy:\n      replicas: -1\n"),
            "docker-compose.yml:5:17: services.web.deploy.replicas: \
             expected a non-negative integer, found -1"
        );
        assert_eq!(
            error("services:\n  web:\n    image: x\n    deploy:\n      replicas: 1.5\n"),
            "docker-compose.yml:5:17: services.web.deploy.replicas: expected an integer, found 1.5"
        );
        assert_eq!(
            error("services:\n  web:\n    image: [a, b]\n"),
            "docker-compose.yml:3:12: services.web.image: expected a string, found a list"
        );
        assert_eq!(
            error("services:\n  web:\n    image: x\n    command: [sleep, 10]\n"),
            "docker-compose.yml:4:22: services.web.command[1]: \
             expected a string, found 10 (quote it: \"10\")"
        );
        assert_eq!(
            error("services:\n  web:\n    image: x\n    entrypoint: {a: b}\n"),
            "docker-compose.yml:4:17: services.web.entrypoint: \
             expected a string or a list of strings, found a mapping"
        );
        assert_eq!(
            error("services:\n  web:\n    image: x\n    environment: FOO=1\n"),
            "docker-compose.yml:4:18: services.web.environment: \
             expected a mapping or a list of NAME=VALUE strings, found \"FOO=1\""
        );
        assert_eq!(
            error("services:\n  web:\n    image: x\n    environment:\n      A: [1]\n"),
            "docker-compose.yml:5:10: services.web.environment.A: \
             expected a string, a number, a boolean or null, found a list"
        );
        assert_eq!(
            error("services:\n  web:\n    image: x\n    environment:\n      - =1\n"),
            "docker-compose.yml:5:9: services.web.environment[0]: empty variable name"
        );
        assert_eq!(
            error("services:\n  web: nginx\n"),
            "docker-compose.yml:2:8: services.web: expected a mapping, found \"nginx\""
        );
        assert_eq!(
            error("services:\n  web:\n    image: x\n    deploy: 3\n"),
            "docker-compose.yml:4:13: services.web.deploy: expected a mapping, found 3"
        );
        assert_eq!(
            error("services: [web]\n"),
            "docker-compose.yml:1:11: services: \
             expected a mapping of service names to services, found a list"
        );
        assert_eq!(
            error("- services\n"),
            "docker-compose.yml:1:1: expected a mapping with a \"services\" key, found a list"
        );
    }

    #[test]
    fn bad_values() {
        assert_eq!(
            error("services:\n  web:\n    command: ls\n"),
            "docker-compose.yml:2:3: services.web: \
             \"image\" is required: name the image to run, e.g. `image: nginx:1.27`"
        );
        assert_eq!(
            error("services:\n  web:\n    image: ''\n"),
            "docker-compose.yml:3:12: services.web.image: the image name is empty"
        );
        assert_eq!(
            error("services:\n  web:\n    image: x\n    command: echo \"hi\n"),
            "docker-compose.yml:4:14: services.web.command: \
             unterminated double quote: a \" opens a string that never closes"
        );
        assert_eq!(
            error("services:\n  web:\n    image: x\n    deploy:\n      mode: global\n"),
            "docker-compose.yml:5:13: services.web.deploy.mode: \
             \"global\" mode is not supported yet: use \"replicated\""
        );
        assert_eq!(
            error("services:\n  web:\n    image: x\n    deploy:\n      mode: everywhere\n"),
            "docker-compose.yml:5:13: services.web.deploy.mode: \
             expected \"replicated\" or \"global\", found \"everywhere\""
        );
        assert_eq!(
            error("services:\n  _web:\n    image: x\n"),
            "docker-compose.yml:2:3: services: invalid service name \"_web\": \
             use letters, digits, '_', '.' and '-', starting with a letter or a digit"
        );
        assert_eq!(
            error("version: '3.8'\nservices:\n"),
            "docker-compose.yml:2:1: services: no services defined: a stack needs at least one service"
        );
        assert_eq!(
            error("version: '3.8'\n"),
            "docker-compose.yml:1:1: services: no services defined: a stack needs at least one service"
        );
        assert_eq!(
            error("# nothing here\n"),
            "docker-compose.yml:2:1: the file is empty: a compose file needs a \"services\" mapping"
        );
    }

    #[test]
    fn warns_about_ignored_compose_keys() {
        assert_eq!(
            warnings(
                "version: '3.8'\nname: demo\nservices:\n  web:\n    image: x\n    ports: ['80:80']\n    \
                 build: .\n    x-note: hi\n    deploy:\n      resources: {}\n      x-more: 1\n\
                 networks: {}\nvolumes: {}\nsecrets: {}\nconfigs: {}\nx-anything: 1\ninclude: [a.yml]\n"
            ),
            [
                "docker-compose.yml:6:5: services.web.ports: not supported yet, ignored",
                "docker-compose.yml:7:5: services.web.build: not supported yet, ignored",
                "docker-compose.yml:10:7: services.web.deploy.resources: not supported yet, ignored",
                "docker-compose.yml:17:1: include: not supported yet, ignored",
            ]
        );
    }

    #[test]
    fn warns_about_unknown_keys_with_suggestions() {
        let (_, found) = load(
            "servics: {}\nservices:\n  web:\n    image: x\n    imgae: y\n    flavour: z\n    \
             deploy:\n      replica: 2\n",
        )
        .expect("unknown keys are warnings");
        let found: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(
            found,
            [
                "docker-compose.yml:1:1: servics: unknown key, ignored (did you mean \"services\"?)",
                "docker-compose.yml:5:5: services.web.imgae: unknown key, ignored (did you mean \"image\"?)",
                "docker-compose.yml:6:5: services.web.flavour: unknown key, ignored",
                "docker-compose.yml:8:7: services.web.deploy.replica: unknown key, ignored \
                 (did you mean \"replicas\"?)",
            ]
        );
    }

    #[test]
    fn a_clean_file_warns_about_nothing() {
        assert!(warnings(
            "version: '3'\nservices:\n  web:\n    image: x\n    command: [a]\n    entrypoint: b\n    \
             environment: [A=1]\n    deploy: {mode: replicated, replicas: 2}\n"
        )
        .is_empty());
    }
}
