//! The compose corpus: every directory under `tests/corpus/` is one case, loaded through the
//! public API and compared with its golden file.
//!
//! A case holds `compose.yml` (and whatever files it names) and, optionally, `args` with one
//! setting a line: `file: NAME` (the files to load, in order; default `compose.yml`),
//! `env: KEY=VALUE`, `env_file: NAME`, `profile: NAME`. A case that loads is compared with
//! `expected.yml`: its warnings as `# warning:` lines, what converting it to stack `app` adds
//! (`# stack warning:`, or `# stack error:`), then the `stack config` rendering. A
//! case that fails is compared with `expected.err`. Paths in messages are relative to the
//! case; in the rendering (where bind sources and secret files are absolute) the case's
//! directory is `<case>`. `UPDATE_GOLDEN=1 cargo test -p shoal-deploy --test corpus` rewrites the goldens.
//!
//! Every valid case must also render the same text twice, load back from its own rendering
//! to the same text, and convert to a stack.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use shoal_deploy::{load_project, LoadOptions};

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn options(case: &Path) -> LoadOptions {
    let mut options = LoadOptions::default();
    let args = fs::read_to_string(case.join("args")).unwrap_or_default();
    for line in args.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (key, value) =
            line.split_once(": ").unwrap_or_else(|| panic!("{}: bad args line {line:?}", case.display()));
        match key {
            "file" => options.files.push(case.join(value)),
            "env" => {
                let (k, v) = value.split_once('=').unwrap_or((value, ""));
                options.env.insert(k.to_owned(), v.to_owned());
            }
            "env_file" => options.env_file = Some(case.join(value)),
            "profile" => options.profiles.push(value.to_owned()),
            other => panic!("{}: unknown args key {other:?}", case.display()),
        }
    }
    if options.files.is_empty() {
        options.files.push(case.join("compose.yml"));
    }
    options
}

/// What the case gives: `Ok(golden text)` or `Err(error text)`, with the case's directory
/// taken out of paths.
fn run(case: &Path) -> Result<String, String> {
    let options = options(case);
    let prefix = format!("{}/", case.display());
    let relative = |text: String| text.replace(&prefix, "");
    let project = load_project(&options).map_err(|e| relative(e.to_string()))?;
    let mut out = String::new();
    for warning in &project.warnings {
        out.push_str(&relative(format!("# warning: {warning}\n")));
    }
    // Converting never panics and keeps the load's warnings; what it adds (keys the
    // stack keeps but nodes do not act on yet) or refuses is part of the golden.
    match project.to_stack("app") {
        Ok(loaded) => {
            assert!(project.warnings.iter().all(|w| loaded.warnings.contains(w)), "{}", case.display());
            for warning in loaded.warnings.iter().filter(|w| !project.warnings.contains(w)) {
                out.push_str(&relative(format!("# stack warning: {warning}\n")));
            }
        }
        Err(e) => out.push_str(&relative(format!("# stack error: {e}\n"))),
    }
    let rendered = project.render();
    out.push_str(&rendered.replace(&case.display().to_string(), "<case>"));

    // Determinism: the same files give the same bytes.
    let again = load_project(&options).map_err(|e| relative(e.to_string()))?;
    assert_eq!(again.render(), rendered, "{}: a second load renders differently", case.display());
    // The rendering is a compose file that loads back to itself.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("compose.yml");
    fs::write(&file, &rendered).expect("write the rendering");
    let reload =
        LoadOptions { files: vec![file], env: BTreeMap::new(), env_file: None, profiles: options.profiles.clone() };
    let reloaded = load_project(&reload)
        .unwrap_or_else(|e| panic!("{}: the rendering does not load: {e}\n{rendered}", case.display()));
    assert_eq!(reloaded.render(), rendered, "{}: the rendering does not load back to itself", case.display());
    assert_eq!(reloaded.compose, project.compose, "{}: the rendering loads to another model", case.display());
    Ok(out)
}

#[test]
fn corpus_matches_the_goldens() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut cases: Vec<PathBuf> = fs::read_dir(corpus())
        .expect("tests/corpus exists")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 40, "the corpus has {} cases; keep at least 40", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let (golden, other, got) = match run(case) {
            Ok(text) => ("expected.yml", "expected.err", text),
            Err(text) => ("expected.err", "expected.yml", format!("{text}\n")),
        };
        let golden_path = case.join(golden);
        if update {
            fs::write(&golden_path, &got).expect("write the golden file");
            let _ = fs::remove_file(case.join(other));
            continue;
        }
        match fs::read_to_string(&golden_path) {
            Ok(want) if want == got => {}
            Ok(want) => failures.push(format!("{}:\n--- want\n{want}--- got\n{got}", golden_path.display())),
            Err(_) => failures.push(format!("{} is missing; got:\n{got}", golden_path.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) differ (UPDATE_GOLDEN=1 rewrites them):\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}
