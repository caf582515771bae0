//! shoal's compose loader: reads a compose file and turns it into a [`Stack`] of service
//! specs for `shoal stack deploy`, the way `docker stack deploy` does.
//!
//! The path of a file: `yaml` parses it into a tree that knows the line and column of every
//! value; `load` checks the tree against what Compose defines (`schema`) and reads it into
//! the compose model (`model`), warning about keys shoal ignores; `convert` maps the model
//! to `shoal_proto` specs. Errors and warnings point at `file:line:column`.
//!
//! Architecture invariant: no I/O beyond reading the compose files (and, for variables the
//! file names without a value, the process environment); no other shoal crate but `proto`.

mod convert;
mod error;
mod load;
mod model;
mod schema;
mod shell;
mod yaml;

use std::path::{Path, PathBuf};

pub use error::{Error, Warning};

/// The objects of one stack, ready to send to a manager.
#[derive(Clone, Debug, PartialEq)]
pub struct Stack {
    pub name: String,
    /// Sorted by service name.
    pub services: Vec<shoal_proto::ServiceSpec>,
}

/// A stack and the warnings its compose file raised, in the order they appear in the file.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    pub stack: Stack,
    pub warnings: Vec<Warning>,
}

/// Loads the stack `stack_name` from the compose files `files` (one, for now).
pub fn load_stack(files: &[PathBuf], stack_name: &str) -> Result<Loaded, Error> {
    let file = match files {
        [] => return Err(Error::NoFile),
        [file] => file,
        _ => return Err(Error::SeveralFiles),
    };
    check_stack_name(stack_name)?;
    let yaml = std::fs::read_to_string(file).map_err(|source| Error::Io { file: file.clone(), source })?;
    load_stack_from_str(file, &yaml, stack_name)
}

/// Loads the stack `stack_name` from compose text; `file_label` names it in errors and warnings.
pub fn load_stack_from_str(file_label: &Path, yaml: &str, stack_name: &str) -> Result<Loaded, Error> {
    load_with_env(file_label, yaml, stack_name, &|name| std::env::var(name).ok())
}

fn load_with_env(
    file: &Path,
    yaml: &str,
    stack_name: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, Error> {
    check_stack_name(stack_name)?;
    let root = yaml::parse(yaml).map_err(|err| Error::Yaml {
        file: file.to_owned(),
        line: err.mark.line,
        column: err.mark.column,
        message: err.message,
    })?;
    let (project, warnings) = load::project(file, &root)?;
    Ok(Loaded { stack: convert::stack(&project, stack_name, lookup), warnings })
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
        let lookup = |name: &str| (name == "FROM_SHELL").then(|| "shell value".to_owned());
        load_with_env(Path::new(FILE), yaml, stack, &lookup)
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
    fn several_files_are_refused() {
        let files = [PathBuf::from("a.yml"), PathBuf::from("b.yml")];
        assert!(matches!(load_stack(&files, "app"), Err(Error::SeveralFiles)));
        assert!(matches!(load_stack(&[], "app"), Err(Error::NoFile)));
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
