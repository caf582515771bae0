//! Properties of the loader as a whole: it never panics, whatever it is given, and what it
//! accepts it renders deterministically to a compose file that loads back to itself.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use shoal_deploy::{load_project, load_stack_from_str, LoadOptions};

/// Pieces of compose files, so random text reaches past the YAML parser.
fn yamlish() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "services:",
        "web:",
        "image: x",
        "deploy:",
        "replicas: ",
        "mode: global",
        "ports:",
        "- ",
        "\"80:80\"",
        "8000-8001:80-81/udp",
        "volumes:",
        "data:/data:ro",
        "environment:",
        "A=${B:-c}",
        "${X:?",
        "$$",
        "$",
        "extends: web",
        "depends_on: [web]",
        "profiles: [p]",
        "healthcheck:",
        "test: [\"NONE\"]",
        "&a ",
        "*a",
        "<<: *a",
        "{",
        "}",
        "[",
        "]",
        ": ",
        ",",
        "'",
        "\"",
        "#",
        "x-a:",
        "networks:",
        "secrets:",
        "cpus: 0.5",
        "memory: 1g",
        "stop_grace_period: 1m",
        "env_file: .env",
        "labels: [a=b]",
        "null",
        "~",
        "0o17",
        "1e3",
    ]);
    let line = (0usize..6, prop::collection::vec(token, 1..5))
        .prop_map(|(indent, tokens)| format!("{}{}", "  ".repeat(indent), tokens.concat()));
    prop::collection::vec(line, 0..16).prop_map(|lines| lines.join("\n"))
}

/// Compose files that are mostly valid, with random values in many places.
fn composeish() -> impl Strategy<Value = String> {
    let names = || prop::sample::select(vec!["web", "db", "api", "cache"]);
    let service = (
        prop::option::of(0u8..5),
        prop::option::of(prop::sample::select(vec!["replicated", "global", "replicated-job"])),
        prop::collection::btree_map("[A-Z]{1,3}", "[a-z0-9 $.]{0,6}", 0..3),
        prop::collection::vec((1u16..4, prop::sample::select(vec!["", "/udp"])), 0..3),
        prop::option::of(prop::sample::select(vec!["1m30s", "500ms", "0", "1h", "10"])),
        prop::option::of(prop::sample::select(vec!["512m", "1g", "100", "1.5k", "lots"])),
        prop::option::weighted(0.2, names()),
    );
    prop::collection::btree_map(names(), service, 1..4).prop_map(|services| {
        let mut out = String::from("services:\n");
        for (name, (replicas, mode, env, ports, grace, memory, depends)) in services {
            out.push_str(&format!("  {name}:\n    image: img\n"));
            if !env.is_empty() {
                out.push_str("    environment:\n");
                for (k, v) in env {
                    out.push_str(&format!("      {k}: \"{v}\"\n"));
                }
            }
            if !ports.is_empty() {
                let list: Vec<String> = ports.iter().map(|(p, proto)| format!("\"{p}00:{p}0{proto}\"")).collect();
                out.push_str(&format!("    ports: [{}]\n", list.join(", ")));
            }
            if let Some(grace) = grace {
                out.push_str(&format!("    stop_grace_period: {grace}\n"));
            }
            if let Some(depends) = depends {
                out.push_str(&format!("    depends_on: [{depends}]\n"));
            }
            out.push_str("    deploy:\n");
            if let Some(replicas) = replicas {
                out.push_str(&format!("      replicas: {replicas}\n"));
            }
            if let Some(mode) = mode {
                out.push_str(&format!("      mode: {mode}\n"));
            }
            if let Some(memory) = memory {
                out.push_str(&format!("      resources: {{limits: {{memory: {memory}}}}}\n"));
            }
        }
        out
    })
}

/// A top-level volume and a service mounting it, with hostile names among the plain ones.
fn volume_case() -> impl Strategy<Value = (String, Option<String>, bool, String)> {
    let name = || {
        prop_oneof![
            "[a-zA-Z0-9_./-]{1,12}",
            prop::sample::select(vec!["..", ".", "/etc", "../../x", "a/../../b", "ok", "x", "-x", "_x", ".x", "a b"])
                .prop_map(str::to_owned),
            "[a-z]{250,256}",
        ]
    };
    let stack = prop::sample::select(vec!["app", "a", "my-stack.2"]).prop_map(str::to_owned);
    (name(), prop::option::of(name()), any::<bool>(), stack)
}

fn load_text(text: &str) -> Option<String> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("compose.yml");
    std::fs::write(&file, text).expect("write the compose file");
    let options = LoadOptions { files: vec![file], env: BTreeMap::new(), ..LoadOptions::default() };
    let project = load_project(&options).ok()?;
    let _ = project.to_stack("app");
    Some(project.render())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = load_stack_from_str(Path::new("fuzz.yml"), &text, "app");
    }

    #[test]
    fn never_panics_on_yamlish_text(text in yamlish()) {
        let _ = load_stack_from_str(Path::new("fuzz.yml"), &text, "app");
    }

    #[test]
    fn accepted_files_render_deterministically_and_reload(text in composeish()) {
        if let Some(rendered) = load_text(&text) {
            let again = load_text(&text);
            prop_assert_eq!(again.as_deref(), Some(rendered.as_str()));
            let reloaded = load_text(&rendered);
            prop_assert_eq!(reloaded.as_deref(), Some(rendered.as_str()), "from:\n{}", text);
        }
    }

    #[test]
    fn volume_names_are_valid_or_refused_where_they_are_written((key, name, external, stack) in volume_case()) {
        let mut yaml = format!(
            "services:\n  web:\n    image: x\n    volumes:\n      - type: volume\n        source: \"{key}\"\n        target: /data\nvolumes:\n  \"{key}\":\n"
        );
        if let Some(name) = &name {
            yaml.push_str(&format!("    name: \"{name}\"\n"));
        }
        if external {
            yaml.push_str("    external: true\n");
        }
        let whole = match (&name, external) {
            (Some(name), _) => name.clone(),
            (None, true) => key.clone(),
            (None, false) => format!("{stack}_{key}"),
        };
        let key_chars = key.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        let valid = key_chars && shoal_proto::names::check_volume_name(&whole).is_ok();
        match load_stack_from_str(Path::new("compose.yml"), &yaml, &stack) {
            Ok(loaded) => {
                prop_assert!(valid, "accepted the volume name {whole:?}:\n{yaml}");
                for service in &loaded.stack.services {
                    let container = service.task.as_ref().and_then(|t| t.container.as_ref()).expect("a container");
                    for mount in &container.mounts {
                        prop_assert_eq!(&mount.source, &whole);
                        prop_assert!(shoal_proto::names::check_volume_name(&mount.source).is_ok());
                    }
                }
            }
            Err(err) => {
                prop_assert!(!valid, "refused the valid volume name {whole:?}: {err}\n{yaml}");
                // Where: compose.yml:LINE:COLUMN: …
                let text = err.to_string();
                let mut parts = text.splitn(4, ':');
                prop_assert_eq!(parts.next(), Some("compose.yml"), "{}", text);
                prop_assert!(parts.next().is_some_and(|l| l.parse::<u32>().is_ok()), "{}", text);
                prop_assert!(parts.next().is_some_and(|c| c.parse::<u32>().is_ok()), "{}", text);
                prop_assert!(text.contains("volume"), "{}", text);
            }
        }
    }
}
