//! shoal's compose loader: reads compose files and turns them into a [`Stack`] of service
//! specs for `shoal stack deploy`, the way `docker stack deploy` does, or back into one
//! resolved compose file for `shoal stack config`.
//!
//! The path of a load (`load`): `yaml` parses each file into a tree that knows the file, line
//! and column of every value; `interpolate` replaces `${VAR}`s; `extends` are resolved and
//! the files merged in order (`merge`); `schema` says which keys Compose defines and which
//! swarm honours; `de` reads the tree into the typed compose `model`; `convert` maps the
//! model to `shoal_proto` specs and `render` writes it back as YAML. Errors and warnings point
//! at `file:line:column`.
//!
//! Architecture invariant: no I/O beyond reading the compose files, the `.env` file and the
//! files they name, each with a bound (`read`); the environment is a parameter; no other
//! shoal crate but `proto`.

mod convert;
mod de;
mod error;
mod interpolate;
mod load;
mod merge;
pub mod model;
mod read;
mod render;
mod schema;
mod shell;
pub mod units;
mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use error::{Error, Warning};
pub use model::Compose;
pub use read::{read_bounded, read_text_bounded, MAX_TEXT_FILE};

/// The objects of one stack, ready to send to a manager.
#[derive(Clone, Debug, PartialEq)]
pub struct Stack {
    pub name: String,
    /// Sorted by service name.
    pub services: Vec<shoal_proto::ServiceSpec>,
    /// The networks the stack creates, sorted by name.
    pub networks: Vec<shoal_proto::NetworkSpec>,
    /// The secrets the stack creates (data included), sorted by name.
    pub secrets: Vec<shoal_proto::SecretSpec>,
    /// The configs the stack creates, sorted by name.
    pub configs: Vec<shoal_proto::ConfigSpec>,
    /// What the stack uses but does not create (`external: true`): it must already exist.
    pub external: External,
}

/// The names of the objects a stack uses but does not own, sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct External {
    pub networks: Vec<String>,
    pub secrets: Vec<String>,
    pub configs: Vec<String>,
}

/// A stack and the warnings its compose files raised, in file order.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    pub stack: Stack,
    pub warnings: Vec<Warning>,
}

/// What to load: the compose files (merged in order), the environment for `${VAR}`, the
/// `.env` file, and the active profiles.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// At least one; later files override earlier ones.
    pub files: Vec<PathBuf>,
    /// Variables for interpolation and for `environment` names without a value (usually the
    /// deploying user's environment). They win over the `.env` file.
    pub env: BTreeMap<String, String>,
    /// The `.env` file (`--env-file`); `None` reads `.env` beside the first file, if any.
    pub env_file: Option<PathBuf>,
    /// Services whose `profiles` name none of these are skipped; `*` enables all.
    pub profiles: Vec<String>,
}

/// A loaded compose project: the resolved model and the warnings the files raised.
#[derive(Clone, Debug)]
pub struct Project {
    pub compose: Compose,
    pub warnings: Vec<Warning>,
    /// The merged tree and the files its marks index, to place conversion errors.
    tree: yaml::Node,
    files: Vec<PathBuf>,
    /// The variables of the load, for secrets and configs read from `environment:`.
    vars: BTreeMap<String, String>,
}

/// Keys the model reads but the stack's specs cannot carry yet (`shoal_proto` lacks the
/// fields), or carry without any node acting on them yet: deploying warns about each one a
/// service uses, with the reason.
const NOT_CARRIED: &[(&[&str], &str)] = &[
    (&["logging"], "not supported by shoal yet, ignored"),
    (&["network_mode"], "not supported by shoal yet, ignored"),
    (&["sysctls"], "kept in the service spec, but containers do not get it yet"),
    (&["ulimits"], "kept in the service spec, but containers do not get it yet"),
    (&["tty"], "kept in the service spec, but containers do not get a terminal yet"),
    (&["stdin_open"], "kept in the service spec, but containers do not get a terminal yet"),
    (&["deploy", "placement", "preferences"], "kept in the service spec, but the scheduler ignores it for now"),
];

impl Project {
    /// The specs of stack `name` (what `stack deploy` sends) and the warnings: the load's,
    /// and one for each key a service uses that the specs cannot carry yet.
    pub fn to_stack(&self, name: &str) -> Result<Loaded, Error> {
        check_stack_name(name)?;
        let stack = self.convert(name)?;
        let mut warnings = self.warnings.clone();
        for service in self.compose.services.keys() {
            let Some(node) = self.tree.get("services").and_then(|s| s.get(service)) else {
                continue;
            };
            for (keys, why) in NOT_CARRIED {
                let mut found = Some(node);
                let mut mark = node.mark;
                for key in *keys {
                    let entry = found.and_then(yaml::Node::entries).and_then(|e| e.iter().find(|e| e.key == *key));
                    mark = entry.map_or(mark, |e| e.key_mark);
                    found = entry.map(|e| &e.value).filter(|v| v.value != yaml::Value::Null);
                }
                if found.is_some() {
                    warnings.push(Warning {
                        file: self.files.get(mark.file).cloned().unwrap_or_default(),
                        line: mark.line,
                        column: mark.column,
                        message: format!("services.{service}.{}: {why}", keys.join(".")),
                    });
                }
            }
            // Ports published in host mode are carried, but no node binds them yet.
            let full = format!("{name}_{service}");
            let spec = stack.services.iter().find(|s| s.annotations.as_ref().is_some_and(|a| a.name == full));
            let host_mode = spec
                .and_then(|s| s.endpoint.as_ref())
                .is_some_and(|e| e.ports.iter().any(|p| p.publish_mode() == shoal_proto::PublishMode::Host));
            if host_mode {
                let entry = node.entries().and_then(|e| e.iter().find(|e| e.key == "ports"));
                let mark = entry.map_or(node.mark, |e| e.key_mark);
                warnings.push(Warning {
                    file: self.files.get(mark.file).cloned().unwrap_or_default(),
                    line: mark.line,
                    column: mark.column,
                    message: format!(
                        "services.{service}.ports: ports published in host mode are kept in the service spec, but \
                         no node binds them yet; publish them in ingress mode (the default) to reach them"
                    ),
                });
            }
        }
        warnings.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        warnings.dedup();
        Ok(Loaded { stack, warnings })
    }

    fn convert(&self, name: &str) -> Result<Stack, Error> {
        convert::stack(&self.compose, name, &self.vars).map_err(|unsupported| {
            let mut node = Some(&self.tree);
            let mut path = String::new();
            for key in &unsupported.keys {
                match node.and_then(|n| n.get(key)) {
                    Some(child) => {
                        node = Some(child);
                        path = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                    }
                    None => break,
                }
            }
            let mark = node.map_or(yaml::Mark::start(0), |n| n.mark);
            Error::Unsupported {
                file: self.files.get(mark.file).cloned().unwrap_or_default(),
                line: mark.line,
                column: mark.column,
                path,
                message: unsupported.message,
            }
        })
    }

    /// The resolved compose file as YAML: what `stack config` prints. Keys are in a fixed
    /// order, so the same files always give the same text.
    pub fn render(&self) -> String {
        render(&self.compose)
    }
}

/// `compose` as YAML text that loads back to the same model.
pub fn render(compose: &Compose) -> String {
    render::render(compose)
}

/// Loads, merges and resolves the compose files of `options`.
pub fn load_project(options: &LoadOptions) -> Result<Project, Error> {
    let sources = options.files.iter().map(|path| load::Source { path: path.clone(), text: None }).collect();
    load_sources(sources, options, true)
}

fn load_sources(sources: Vec<load::Source>, options: &LoadOptions, read_dotenv: bool) -> Result<Project, Error> {
    let settings = load::Settings {
        env: &options.env,
        env_file: options.env_file.as_deref(),
        read_dotenv,
        profiles: &options.profiles,
    };
    let loaded = load::load(sources, &settings)?;
    Ok(Project {
        compose: loaded.compose,
        warnings: loaded.warnings,
        tree: loaded.tree,
        files: loaded.files,
        vars: loaded.vars,
    })
}

/// Loads the stack `stack_name` from the compose files `files`, with the process
/// environment and the `.env` file beside the first file.
pub fn load_stack(files: &[PathBuf], stack_name: &str) -> Result<Loaded, Error> {
    check_stack_name(stack_name)?;
    let options = LoadOptions { files: files.to_vec(), env: std::env::vars().collect(), ..LoadOptions::default() };
    load_project(&options)?.to_stack(stack_name)
}

/// Loads the stack `stack_name` from compose text, with the process environment (no `.env`
/// file); `file_label` names it in errors and warnings.
pub fn load_stack_from_str(file_label: &Path, yaml: &str, stack_name: &str) -> Result<Loaded, Error> {
    let options = LoadOptions { env: std::env::vars().collect(), ..LoadOptions::default() };
    load_str_with(file_label, yaml, stack_name, &options)
}

fn load_str_with(file_label: &Path, yaml: &str, stack_name: &str, options: &LoadOptions) -> Result<Loaded, Error> {
    check_stack_name(stack_name)?;
    let source = load::Source { path: file_label.to_owned(), text: Some(yaml.to_owned()) };
    load_sources(vec![source], options, false)?.to_stack(stack_name)
}

fn check_stack_name(name: &str) -> Result<(), Error> {
    if model::is_valid_name(name) {
        Ok(())
    } else {
        Err(Error::InvalidStackName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "stack.yml";

    fn load(yaml: &str, stack: &str) -> Result<Loaded, Error> {
        let options = LoadOptions {
            env: BTreeMap::from([("FROM_SHELL".to_owned(), "shell value".to_owned())]),
            ..LoadOptions::default()
        };
        load_str_with(Path::new(FILE), yaml, stack, &options)
    }

    fn env(loaded: &Loaded) -> &[String] {
        &loaded.stack.services[0].task.as_ref().and_then(|t| t.container.as_ref()).expect("a container spec").env
    }

    #[test]
    fn variables_without_value_come_from_the_environment() {
        let map = load(
            "services:\n  web:\n    image: x\n    environment:\n      FROM_SHELL:\n      \
             NOT_SET:\n      SET: 'v'\n",
            "app",
        )
        .expect("valid");
        assert_eq!(env(&map), ["FROM_SHELL=shell value", "SET=v"]);
        let list = load("services:\n  web:\n    image: x\n    environment: [FROM_SHELL, NOT_SET, SET=v]\n", "app")
            .expect("valid");
        assert_eq!(env(&list), env(&map));
    }

    #[test]
    fn stack_names() {
        let yaml = "services:\n  web:\n    image: x\n";
        assert!(load(yaml, "my-app_2.0").is_ok());
        for bad in ["", "-app", "my app", "app/x"] {
            let err = load(yaml, bad).expect_err(bad);
            assert!(matches!(err, Error::InvalidStackName(ref name) if name == bad), "{err}");
        }
        assert_eq!(
            load(yaml, "my app").expect_err("invalid").to_string(),
            "invalid stack name \"my app\": use letters, digits, '_', '.' and '-', \
             starting with a letter or a digit"
        );
    }

    #[test]
    fn malformed_yaml() {
        let err = load("services:\n  web:\n    image: x\n   command: y\n", "app").expect_err("bad indentation");
        let Error::Yaml { line, column, .. } = err else {
            panic!("not a YAML error: {err}");
        };
        assert_eq!((line, column), (4, 4));

        let err = load("services:\n  web:\n    image: x\n  web:\n    image: y\n", "app").expect_err("duplicate key");
        assert_eq!(err.to_string(), "stack.yml:4:3: duplicate mapping key `web` is not allowed here");
    }

    #[test]
    fn no_file_is_refused() {
        assert!(matches!(load_stack(&[], "app"), Err(Error::NoFile)));
    }

    #[test]
    fn jobs_are_refused_where_they_are_written() {
        let err = load("services:\n  once:\n    image: x\n    deploy:\n      mode: global-job\n", "app")
            .expect_err("unsupported");
        assert_eq!(
            err.to_string(),
            "stack.yml:5:13: services.once.deploy.mode: \"global-job\" mode is not supported yet: \
             use \"replicated\" or \"global\""
        );
    }

    #[test]
    fn keys_the_specs_cannot_carry_are_warned_about() {
        let loaded = load(
            "services:\n  web:\n    image: x\n    ports: [{target: 80, published: 80, mode: host}]\n    deploy:\n      \
             update_config:\n        parallelism: 2\n      placement: {constraints: [node.role==worker]}\n  api:\n    \
             image: x\n    ports: ['81:80']\n",
            "app",
        )
        .expect("valid");
        let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            warnings,
            ["stack.yml:4:5: services.web.ports: ports published in host mode are kept in the service spec, \
                 but no node binds them yet; publish them in ingress mode (the default) to reach them",]
        );
    }

    #[test]
    fn same_input_same_specs() {
        let yaml = "services:\n  b: {image: x, environment: {Z: 1, A: 2}}\n  a: {image: y}\n";
        let first = load(yaml, "app").expect("valid");
        for _ in 0..5 {
            assert_eq!(load(yaml, "app").expect("valid"), first);
        }
    }
}
