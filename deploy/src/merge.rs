//! Merging compose trees: a later `-c` file over an earlier one, and a service over the one
//! it `extends`, with the Compose spec's rules:
//!
//! - mappings merge key by key; scalars (and a value of another kind) replace;
//! - `environment`, `labels`, `sysctls`, `extra_hosts`, `networks`, `depends_on`, … merge as
//!   mappings whether written as lists or mappings (lists are turned into mappings first);
//! - `ports`, `volumes`, `secrets` and `configs` merge item by item, keyed by what they bind
//!   (published port, container path, target file): a later item replaces an earlier one
//!   with the same key, in its place;
//! - `command`, `entrypoint` and `healthcheck.test` replace;
//! - other lists (`cap_add`, `dns`, `profiles`, constraints, …) append the items not
//!   already there.
//!
//! Keys of a merged mapping keep the position and mark of their first appearance, so the
//! merge is associative: `(a + b) + c` equals `a + (b + c)`.
//! Architecture invariant: works on trees; knows compose paths but reads no files.

use crate::yaml::{Entry, Node, Value};

/// `over` merged onto `base`; `path` names where they are (`["services", "web"]`, or
/// empty for whole files).
pub(crate) fn merge(base: Node, over: Node, path: &[&str]) -> Node {
    let base = normalize(base, path);
    let over = normalize(over, path);
    match (base.value, over.value) {
        (base_value, Value::Null) => Node { mark: base.mark, value: base_value },
        (Value::Map(mut entries), Value::Map(over_entries)) => {
            for over_entry in over_entries {
                match entries.iter_mut().find(|e| e.key == over_entry.key) {
                    Some(entry) => {
                        let mut child: Vec<&str> = path.to_vec();
                        child.push(&over_entry.key);
                        let old = std::mem::replace(&mut entry.value, Node::new(over.mark, Value::Null));
                        entry.value = merge(old, over_entry.value, &child);
                    }
                    None => entries.push(over_entry),
                }
            }
            Node { mark: base.mark, value: Value::Map(entries) }
        }
        (Value::Seq(mut items), Value::Seq(over_items)) => {
            match sequence_rule(path) {
                Rule::Replace => return Node { mark: over.mark, value: Value::Seq(over_items) },
                Rule::ByKey(key) => {
                    for item in over_items {
                        let k = key(&item);
                        match k.as_ref().and_then(|k| items.iter().position(|i| key(i).as_ref() == Some(k))) {
                            Some(at) => items[at] = item,
                            None => items.push(item),
                        }
                    }
                }
                Rule::AppendUnique => {
                    for item in over_items {
                        if !items.iter().any(|i| i.same_as(&item)) {
                            items.push(item);
                        }
                    }
                }
            }
            Node { mark: base.mark, value: Value::Seq(items) }
        }
        (_, over_value) => Node { mark: over.mark, value: over_value },
    }
}

enum Rule {
    Replace,
    ByKey(fn(&Node) -> Option<String>),
    AppendUnique,
}

/// How lists at `path` merge.
fn sequence_rule(path: &[&str]) -> Rule {
    match path {
        ["services", _, "command" | "entrypoint"] | ["services", _, "healthcheck", "test"] => Rule::Replace,
        ["services", _, "ports"] => Rule::ByKey(port_key),
        ["services", _, "volumes"] => Rule::ByKey(volume_key),
        ["services", _, "secrets" | "configs"] => Rule::ByKey(file_key),
        _ => Rule::AppendUnique,
    }
}

/// Whether the value at `path` is a list-or-mapping that merges as a mapping, and how a
/// list item becomes an entry: `Some('=')` splits `KEY=VALUE`; `None` takes names.
fn mapping_rule(path: &[&str]) -> Option<Option<char>> {
    match path {
        ["services", _, "environment" | "labels" | "sysctls" | "annotations"]
        | ["services", _, "deploy", "labels"]
        | ["services", _, "logging", "options"]
        | ["networks" | "volumes" | "secrets" | "configs", _, "labels"] => Some(Some('=')),
        ["services", _, "networks" | "depends_on"] => Some(None),
        _ => None,
    }
}

/// Turns a list at a list-or-mapping `path` into the mapping it means.
fn normalize(node: Node, path: &[&str]) -> Node {
    let Some(split) = mapping_rule(path) else {
        return node;
    };
    let Value::Seq(items) = &node.value else {
        return node;
    };
    // Not a list of strings: leave it for the loader to report.
    if items.iter().any(|item| item.scalar_text().is_none()) {
        return node;
    }
    let mut entries: Vec<Entry> = Vec::new();
    for item in items {
        let text = item.scalar_text().unwrap_or_default().to_owned();
        let (key, value) = match split.and_then(|c| text.split_once(c)) {
            Some((k, v)) => (k.to_owned(), Value::Str(v.to_owned())),
            None => (text, Value::Null),
        };
        let value = Node::new(item.mark, value);
        let item_mark = item.mark;
        match entries.iter_mut().find(|e| e.key == key) {
            Some(entry) => entry.value = value,
            None => entries.push(Entry { key, key_mark: item_mark, value }),
        }
    }
    Node { mark: node.mark, value: Value::Map(entries) }
}

/// `[ip:]published:target/protocol` for a port in either syntax.
fn port_key(node: &Node) -> Option<String> {
    if let Some(text) = node.scalar_text() {
        let (spec, protocol) = text.rsplit_once('/').unwrap_or((text, "tcp"));
        return Some(format!("{spec}/{protocol}"));
    }
    let field = |k: &str| node.get(k).and_then(Node::scalar_text).unwrap_or_default().to_owned();
    let host_ip = field("host_ip");
    let prefix = if host_ip.is_empty() { String::new() } else { format!("{host_ip}:") };
    let published = field("published");
    let published = if published.is_empty() { String::new() } else { format!("{published}:") };
    let protocol = Some(field("protocol")).filter(|p| !p.is_empty()).unwrap_or_else(|| "tcp".to_owned());
    Some(format!("{prefix}{published}{}/{protocol}", field("target")))
}

/// The container path of a mount in either syntax.
fn volume_key(node: &Node) -> Option<String> {
    if let Some(text) = node.scalar_text() {
        let parts: Vec<&str> = text.split(':').collect();
        return match parts.as_slice() {
            [target] => Some((*target).to_owned()),
            [source, target] if target.starts_with('/') || !source.starts_with('/') => Some((*target).to_owned()),
            [target, _] => Some((*target).to_owned()),
            [_, target, ..] => Some((*target).to_owned()),
            [] => None,
        };
    }
    node.get("target").and_then(Node::scalar_text).map(str::to_owned)
}

/// The file a secret or config lands in: its target, or its source name.
fn file_key(node: &Node) -> Option<String> {
    if let Some(text) = node.scalar_text() {
        return Some(text.to_owned());
    }
    node.get("target").or_else(|| node.get("source")).and_then(Node::scalar_text).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;
    use proptest::prelude::*;

    fn parse(text: &str) -> Node {
        yaml::parse(text, 0).unwrap_or_else(|e| panic!("{}: {text}", e.message))
    }

    fn merged(a: &str, b: &str) -> Node {
        merge(parse(a), parse(b), &[])
    }

    fn assert_same(got: &Node, want: &str) {
        assert!(got.same_as(&parse(want)), "got {got:#?}\nwant {want}");
    }

    #[test]
    fn mappings_merge_and_scalars_replace() {
        let got = merged(
            "services: {web: {image: a, deploy: {replicas: 1, mode: replicated}}}",
            "services: {web: {image: b, deploy: {replicas: 3}}, db: {image: c}}",
        );
        assert_same(&got, "services: {web: {image: b, deploy: {replicas: 3, mode: replicated}}, db: {image: c}}");
    }

    #[test]
    fn environment_lists_merge_as_mappings() {
        let got =
            merged("services: {web: {environment: [A=1, B=2, C]}}", "services: {web: {environment: {B: 3, D: 4}}}");
        assert_same(&got, "services: {web: {environment: {A: '1', B: 3, C: null, D: 4}}}");
    }

    #[test]
    fn ports_volumes_secrets_merge_by_key() {
        let got = merged(
            "services: {web: {ports: ['80:80', '443:443'], volumes: ['a:/data', '/cache'], secrets: [s1]}}",
            "services: {web: {ports: [{target: 80, published: 80, mode: host}, '8080:8080'], \
             volumes: ['b:/data'], secrets: [s1, s2]}}",
        );
        assert_same(
            &got,
            "services: {web: {ports: [{target: 80, published: 80, mode: host}, '443:443', '8080:8080'], \
             volumes: ['b:/data', '/cache'], secrets: [s1, s2]}}",
        );
    }

    #[test]
    fn commands_replace_and_other_lists_append() {
        let got = merged(
            "services: {web: {command: [a, b], cap_add: [X, Y], healthcheck: {test: [CMD, a]}}}",
            "services: {web: {command: [c], cap_add: [Y, Z], healthcheck: {test: [CMD, b]}}}",
        );
        assert_same(&got, "services: {web: {command: [c], cap_add: [X, Y, Z], healthcheck: {test: [CMD, b]}}}");
    }

    /// Small service trees with the keys whose merge rules differ.
    fn service_yaml() -> impl Strategy<Value = String> {
        let env = prop::collection::btree_map("[A-C]", "[0-2]", 0..3)
            .prop_map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>());
        let ports = prop::collection::btree_set(80u16..83, 0..3)
            .prop_map(|s| s.iter().map(|p| format!("'{p}:{p}'")).collect::<Vec<_>>());
        let caps = prop::collection::btree_set("[A-C]", 0..3).prop_map(|s| s.into_iter().collect::<Vec<_>>());
        let image = prop::option::of("[a-c]");
        let replicas = prop::option::of(0u8..3);
        (env, ports, caps, image, replicas, prop::option::of("[a-c]")).prop_map(
            |(env, ports, caps, image, replicas, cmd)| {
                let mut fields = vec![
                    format!("environment: [{}]", env.join(", ")),
                    format!("ports: [{}]", ports.join(", ")),
                    format!("cap_add: [{}]", caps.join(", ")),
                ];
                if let Some(image) = image {
                    fields.push(format!("image: {image}"));
                }
                if let Some(replicas) = replicas {
                    fields.push(format!("deploy: {{replicas: {replicas}}}"));
                }
                if let Some(cmd) = cmd {
                    fields.push(format!("command: [{cmd}]"));
                }
                format!("services: {{web: {{{}}}}}", fields.join(", "))
            },
        )
    }

    proptest! {
        #[test]
        fn merge_is_associative(a in service_yaml(), b in service_yaml(), c in service_yaml()) {
            let (a, b, c) = (parse(&a), parse(&b), parse(&c));
            let left = merge(merge(a.clone(), b.clone(), &[]), c.clone(), &[]);
            let right = merge(a, merge(b, c, &[]), &[]);
            prop_assert!(left.same_as(&right), "{left:#?}\n{right:#?}");
        }

        #[test]
        fn merging_is_idempotent(a in service_yaml()) {
            let a = parse(&a);
            let twice = merge(a.clone(), a.clone(), &[]);
            prop_assert!(twice.same_as(&merge(twice.clone(), a, &[])));
        }
    }
}
