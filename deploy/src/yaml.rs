//! YAML text to a located tree: every node and every mapping key knows its line and column.
//!
//! serde-saphyr does the parsing (anchors, aliases, `<<` merge keys, duplicate-key errors,
//! resource budgets); this module only keeps what the compose loader needs: the value, where
//! it is, and for plain scalars the text as written, so `1.10` stays `1.10` and not `1.1`.
//! Architecture invariant: knows nothing about compose.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, MessageFormatter, Spanned, UserMessageFormatter};
use std::fmt;

/// A 1-based line and column (in characters) in one of the loaded files, named by its index
/// in the loader's list of files: merged trees mix nodes from several files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Mark {
    pub file: usize,
    pub line: usize,
    pub column: usize,
}

impl Mark {
    /// The start of file `file`: where errors about the whole document point.
    pub const fn start(file: usize) -> Mark {
        Mark { file, line: 1, column: 1 }
    }

    fn from_location(file: usize, location: Location) -> Mark {
        if location == Location::UNKNOWN {
            return Mark::start(file);
        }
        Mark {
            file,
            line: usize::try_from(location.line()).unwrap_or(usize::MAX),
            column: usize::try_from(location.column()).unwrap_or(usize::MAX),
        }
    }
}

/// A YAML value and where it appears (for an alias: where the alias is used).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub mark: Mark,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Null,
    /// A plain scalar YAML reads as a boolean (`true`, `yes`, …); `text` is as written.
    Bool {
        value: bool,
        text: String,
    },
    /// A plain scalar YAML reads as an integer (`3`, `0x10`, …); `text` is as written.
    Int {
        value: i128,
        text: String,
    },
    /// A plain scalar YAML reads as a float (`1.5`, `1e3`, …); `text` is as written.
    Float {
        text: String,
    },
    Str(String),
    Seq(Vec<Node>),
    /// Entries in document order; keys are unique (the parser rejects duplicates).
    Map(Vec<Entry>),
}

/// One `key: value` of a mapping.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    pub key: String,
    pub key_mark: Mark,
    pub value: Node,
}

impl Node {
    /// The text of a scalar that is not null, as a string value would hold it.
    pub fn scalar_text(&self) -> Option<&str> {
        match &self.value {
            Value::Str(text) | Value::Bool { text, .. } | Value::Int { text, .. } | Value::Float { text } => Some(text),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }
}

impl Node {
    pub fn new(mark: Mark, value: Value) -> Node {
        Node { mark, value }
    }

    /// Whether two trees hold the same values, wherever they are written.
    pub fn same_as(&self, other: &Node) -> bool {
        match (&self.value, &other.value) {
            (Value::Seq(a), Value::Seq(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_as(y)),
            (Value::Map(a), Value::Map(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.key == y.key && x.value.same_as(&y.value))
            }
            (Value::Null, Value::Null) => true,
            (Value::Seq(_) | Value::Map(_) | Value::Null, _) | (_, Value::Seq(_) | Value::Map(_) | Value::Null) => {
                false
            }
            _ => self.scalar_text() == other.scalar_text(),
        }
    }

    /// The entries of a mapping; `None` for anything else.
    pub fn entries(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The value of `key` in a mapping, unless it is missing or null.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries()?.iter().find(|e| e.key == key).map(|e| &e.value).filter(|n| n.value != Value::Null)
    }
}

/// Says what a node is, for "expected X, found Y" messages: `"three"`, `3`, `a list`, …
impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Value::Null => f.write_str("null"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Bool { text, .. } | Value::Int { text, .. } | Value::Float { text } => f.write_str(text),
            Value::Seq(_) => f.write_str("a list"),
            Value::Map(_) => f.write_str("a mapping"),
        }
    }
}

/// Malformed YAML: what and where.
#[derive(Debug)]
pub(crate) struct SyntaxError {
    pub mark: Mark,
    pub message: String,
}

/// Parses one YAML document of the file numbered `file`. An empty document is `Null`.
pub(crate) fn parse(source: &str, file: usize) -> Result<Node, SyntaxError> {
    let options = serde_saphyr::options! {
        // YAML 1.2 booleans only, as Compose reads them: `image: y` names the image "y", and
        // `FOO: on` sets FOO to "on", not "true".
        strict_booleans: true,
        // `.inf` and `.nan` are floats like any other; their text is kept as written.
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::PassThrough,
        // Errors are rendered here, as one line.
        with_snippet: false,
        // One `x-common: &common` merged into hundreds of services is how
        // compose files are written; the alias/anchor ratio heuristic would
        // refuse that. Expansion stays bounded by the other budgets (events,
        // recorded anchor events and bytes).
        budget: serde_saphyr::budget! {
            enforce_alias_anchor_ratio: false,
        },
    };
    let raw: Spanned<Raw> = serde_saphyr::from_str_with_options(source, options).map_err(|err| {
        let mark = err.location().map_or(Mark::start(file), |l| Mark::from_location(file, l));
        // The formatter wants the innermost error; the location comes from `location()`.
        let message = UserMessageFormatter.format_message(innermost(&err)).into_owned();
        SyntaxError { mark, message }
    })?;
    Ok(build(raw, source, file))
}

fn innermost(mut err: &serde_saphyr::Error) -> &serde_saphyr::Error {
    loop {
        match err {
            serde_saphyr::Error::WithSnippet { error, .. } | serde_saphyr::Error::AliasError { error, .. } => {
                err = error
            }
            other => return other,
        }
    }
}

/// Turns the span-carrying parse result into a `Node`, reading the text of plain scalars back
/// from the source at the place they are defined (for an alias, the anchor).
fn build(raw: Spanned<Raw>, source: &str, file: usize) -> Node {
    let mark = Mark::from_location(file, raw.referenced);
    let written = |fallback: String| -> String {
        let span = raw.defined.span();
        let text = span.byte_offset().zip(span.byte_len()).and_then(|(at, len)| {
            let at = usize::try_from(at).ok()?;
            let end = at.checked_add(usize::try_from(len).ok()?)?;
            source.get(at..end)
        });
        match text.map(str::trim) {
            Some(text) if !text.is_empty() => text.to_owned(),
            _ => fallback,
        }
    };
    let value = match raw.value {
        Raw::Null => Value::Null,
        Raw::Bool(value) => Value::Bool { value, text: written(value.to_string()) },
        Raw::Int(value) => Value::Int { value, text: written(value.to_string()) },
        Raw::Float(value) => Value::Float { text: written(value.to_string()) },
        Raw::Str(s) => Value::Str(s),
        Raw::Seq(items) => Value::Seq(items.into_iter().map(|n| build(n, source, file)).collect()),
        Raw::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(key, value)| Entry {
                    key_mark: Mark::from_location(file, key.referenced),
                    key: key.value,
                    value: build(value, source, file),
                })
                .collect(),
        ),
    };
    Node { mark, value }
}

/// What serde-saphyr hands us: any YAML value, with spans on every child.
enum Raw {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<String>, Spanned<Raw>)>),
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Raw, D::Error> {
        Raw::deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Int(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw::Int(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Raw, E> {
        Ok(Raw::Int(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Raw, E> {
        i128::try_from(v).map(Raw::Int).map_err(|_| E::custom("integer too large"))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Raw::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key()? {
            entries.push((key, map.next_value()?));
        }
        Ok(Raw::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse0(source: &str) -> Result<Node, SyntaxError> {
        parse(source, 0)
    }

    fn entries(node: &Node) -> &[Entry] {
        match &node.value {
            Value::Map(entries) => entries,
            other => panic!("not a mapping: {other:?}"),
        }
    }

    #[test]
    fn keeps_marks_and_written_text() {
        let root = parse0("a: 1.10\nb:\n  - True\n  - 'q'\nc: 0x10\nd: [yes, on, n]\ne: .Inf\n").expect("valid YAML");
        let e = entries(&root);
        assert_eq!(e[0].key, "a");
        assert_eq!(e[0].key_mark, Mark { file: 0, line: 1, column: 1 });
        assert_eq!(e[0].value.mark, Mark { file: 0, line: 1, column: 4 });
        assert_eq!(e[0].value.scalar_text(), Some("1.10"));
        let Value::Seq(items) = &e[1].value.value else {
            panic!("b is not a list");
        };
        assert_eq!(items[0].mark, Mark { file: 0, line: 3, column: 5 });
        assert!(matches!(items[0].value, Value::Bool { value: true, .. }));
        assert_eq!(items[0].scalar_text(), Some("True"));
        assert_eq!(items[1].value, Value::Str("q".into()));
        assert!(matches!(e[2].value.value, Value::Int { value: 16, .. }));
        assert_eq!(e[2].value.scalar_text(), Some("0x10"));
        // YAML 1.1 booleans are strings, as in Compose.
        let Value::Seq(items) = &e[3].value.value else {
            panic!("d is not a list");
        };
        let values: Vec<&Value> = items.iter().map(|n| &n.value).collect();
        let strings = ["yes", "on", "n"].map(|s| Value::Str(s.into()));
        assert_eq!(values, strings.iter().collect::<Vec<_>>());
        assert_eq!(e[4].value.scalar_text(), Some(".Inf"));
    }

    #[test]
    fn merge_keys_and_aliases_resolve() {
        let root = parse0("x: &base {a: 1, b: 2}\ny:\n  <<: *base\n  b: 3\n").expect("valid YAML");
        let y = &entries(&root)[1].value;
        let mut got: Vec<(String, Option<String>)> =
            entries(y).iter().map(|e| (e.key.clone(), e.value.scalar_text().map(str::to_owned))).collect();
        got.sort();
        assert_eq!(got, [("a".into(), Some("1".into())), ("b".into(), Some("3".into()))]);
    }

    #[test]
    fn empty_document_is_null() {
        assert_eq!(parse0("").expect("valid").value, Value::Null);
        assert_eq!(parse0("# nothing\n").expect("valid").value, Value::Null);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse0("a: 1\na: 2\n").expect_err("duplicate key");
        assert_eq!(err.mark, Mark { file: 0, line: 2, column: 1 });
        assert!(err.message.contains("duplicate"), "{}", err.message);

        let err = parse0("a:\n  b: 1\n c: 2\n").expect_err("bad indentation");
        assert_eq!(err.mark, Mark { file: 0, line: 3, column: 2 });

        let err = parse0("a: \"open\n").expect_err("unclosed quote");
        assert_eq!(err.mark, Mark { file: 0, line: 1, column: 4 });
        assert_eq!(err.message, "unclosed quote");
    }
}
