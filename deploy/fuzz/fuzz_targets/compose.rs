//! Fuzz target `compose`: bytes as a compose file, loaded and converted as `stack config`
//! and `stack deploy` do, with a temporary directory as the project directory.
//!
//! Invariants: nothing panics; an error points at `file:line:column` of a file of the project
//! (or, for a file that cannot be read, names it and why); a file that loads converts or fails
//! the same way, and what it renders loads again, renders the same text and converts to the
//! same stack.
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use shoal_deploy::{load_project, Error, LoadOptions, Project};

/// Files the compose file may name, relative to the project directory.
const FILES: [(&str, &str); 3] =
    [("secret.txt", "s3cret"), ("app.env", "A=1\nB=two\n"), ("base.yml", "services:\n  base: {image: b}\n")];

fn check_error(err: &Error, dir: &Path) {
    let text = err.to_string();
    assert!(!text.is_empty());
    match err {
        Error::Yaml { file, line, column, message }
        | Error::Invalid { file, line, column, message, .. }
        | Error::Unsupported { file, line, column, message, .. } => {
            assert!(*line >= 1 && *column >= 1, "no position: {text}");
            assert!(file.starts_with(dir), "not a file of the project: {text}");
            assert!(!message.is_empty(), "no message: {text}");
        }
        Error::Io { file, source } => {
            assert!(file.starts_with(dir) && !source.to_string().is_empty(), "unclear: {text}");
        }
        other => panic!("an error this load cannot raise: {other}"),
    }
}

fn load(file: &Path, dir: &Path) -> Result<Project, Error> {
    let env = BTreeMap::from([
        ("HOME".to_owned(), dir.display().to_string()),
        ("A".to_owned(), "1".to_owned()),
        ("IMAGE".to_owned(), "nginx:1".to_owned()),
    ]);
    let options =
        LoadOptions { files: vec![file.to_owned()], env, profiles: vec!["p".to_owned()], ..LoadOptions::default() };
    load_project(&options)
}

fuzz_target!(|data: &[u8]| {
    // Files the loader reads must be the project's: a name that could lead elsewhere (an
    // absolute or parent path, a home path, one made by interpolation or a YAML escape) might
    // be a device or a pipe that blocks, which would stall the fuzzer, not find a bug.
    let names_files = data.windows(4).any(|w| w == b"file");
    let could_leave =
        data.iter().any(|b| matches!(b, b'/' | b'$' | b'~' | b'\\')) || data.windows(2).any(|w| w == b"..");
    if names_files && could_leave {
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let dir_path = dir.path().canonicalize().expect("the temporary directory resolves");
    for (name, content) in FILES {
        std::fs::write(dir_path.join(name), content).expect("writing a project file");
    }
    let file = dir_path.join("compose.yml");
    std::fs::write(&file, data).expect("writing the compose file");
    let project = match load(&file, &dir_path) {
        Ok(project) => project,
        Err(err) => return check_error(&err, &dir_path),
    };
    let stack = project.to_stack("fuzz");
    let rendered = project.render();
    let again = dir_path.join("rendered.yml");
    std::fs::write(&again, &rendered).expect("writing the rendering");
    let reloaded = load(&again, &dir_path).unwrap_or_else(|e| panic!("the rendering does not load: {e}\n{rendered}"));
    assert_eq!(reloaded.render(), rendered, "the rendering renders differently");
    match (stack, reloaded.to_stack("fuzz")) {
        (Ok(first), Ok(second)) => {
            assert_eq!(first.stack, second.stack, "the rendering converts differently\n{rendered}")
        }
        (Err(err), Err(_)) => check_error(&err, &dir_path),
        (first, second) => panic!(
            "the file and its rendering convert differently: {:?} / {:?}\n{rendered}",
            first.map(|_| ()),
            second.map(|_| ())
        ),
    }
});
