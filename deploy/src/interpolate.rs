//! Variable interpolation in compose values, as the Compose spec defines it: `$VAR`,
//! `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`,
//! `${VAR:+replacement}`, `${VAR+replacement}`, with `$$` for a literal `$`. Defaults and
//! messages may themselves hold variables.
//!
//! Also reads `.env` files (`KEY=VALUE` lines), for the project and for `env_file:`.
//! Architecture invariant: no I/O; callers pass the text and a variable lookup.

use std::collections::BTreeMap;

/// Why a value cannot be interpolated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InterpolationError {
    /// `${VAR:?message}` or `${VAR?message}` with the variable unset (or empty, for `:?`).
    #[error("required variable {name} is missing a value: {message}")]
    Required { name: String, message: String },
    /// Malformed syntax: `${`, `${}`, `$-`…
    #[error("invalid interpolation in {text:?}: {reason} (write $$ for a literal $)")]
    Syntax { text: String, reason: &'static str },
}

/// The value of `text` with every variable replaced, `lookup` giving each variable's value.
pub(crate) fn interpolate(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, InterpolationError> {
    let syntax = |reason| InterpolationError::Syntax { text: text.to_owned(), reason };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(after) = after.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(inner_start) = after.strip_prefix('{') {
            let end = matching_brace(inner_start).ok_or_else(|| syntax("a \"${\" is never closed"))?;
            out.push_str(&braced(&inner_start[..end], lookup, text)?);
            rest = &inner_start[end + 1..];
        } else {
            let len = name_len(after);
            if len == 0 {
                return Err(syntax("a '$' is not followed by a variable name"));
            }
            out.push_str(&lookup(&after[..len]).unwrap_or_default());
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// `text` with every `$` doubled, so that interpolation gives `text` back.
pub(crate) fn escape(text: &str) -> String {
    text.replace('$', "$$")
}

/// The length of the variable name at the start of `text`: `[A-Za-z_][A-Za-z0-9_]*`.
fn name_len(text: &str) -> usize {
    let mut chars = text.char_indices();
    match chars.next() {
        Some((_, c)) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return 0,
    }
    chars.find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_')).map_or(text.len(), |(i, _)| i)
}

/// The index of the `}` closing a `${`, counting nested `${…}`; `$$` is skipped.
fn matching_brace(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'$') => i += 1,
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The value of `${inner}`.
fn braced(inner: &str, lookup: &dyn Fn(&str) -> Option<String>, whole: &str) -> Result<String, InterpolationError> {
    let syntax = |reason| InterpolationError::Syntax { text: whole.to_owned(), reason };
    let len = name_len(inner);
    if len == 0 {
        return Err(syntax("\"${\" is not followed by a variable name"));
    }
    let (name, operator) = inner.split_at(len);
    let value = lookup(name);
    let (op, argument) = match operator {
        "" => return Ok(value.unwrap_or_default()),
        _ if operator.starts_with(":-") || operator.starts_with(":?") || operator.starts_with(":+") => {
            operator.split_at(2)
        }
        _ if operator.starts_with(['-', '?', '+']) => operator.split_at(1),
        _ => return Err(syntax("expected '}', ':-', '-', ':?', '?', ':+' or '+' after the variable name")),
    };
    let set = value.is_some();
    let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
    match op {
        ":-" if non_empty => Ok(value.unwrap_or_default()),
        "-" if set => Ok(value.unwrap_or_default()),
        ":-" | "-" => interpolate(argument, lookup),
        ":?" if non_empty => Ok(value.unwrap_or_default()),
        "?" if set => Ok(value.unwrap_or_default()),
        ":?" | "?" => {
            Err(InterpolationError::Required { name: name.to_owned(), message: interpolate(argument, lookup)? })
        }
        ":+" if non_empty => interpolate(argument, lookup),
        "+" if set => interpolate(argument, lookup),
        _ => Ok(String::new()),
    }
}

/// A malformed line of a `.env` file (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub(crate) struct DotenvError {
    pub line: usize,
    pub message: String,
}

/// Reads a `.env` file: `KEY=VALUE` lines, `#` comments, an optional `export `, values in
/// single quotes (literal), double quotes (`\n`, `\"`, `\\` escapes, variables) or bare
/// (trimmed, ` #` starts a comment, variables). Variables come from earlier lines, then
/// `lookup`.
pub(crate) fn dotenv(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, DotenvError> {
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let err = |message: String| DotenvError { line: line_no, message };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let Some((key, value)) = line.split_once('=') else {
            return Err(err(format!("expected KEY=VALUE, found {line:?}")));
        };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(err(format!("invalid variable name {key:?}")));
        }
        let value = value.trim();
        let known = |name: &str| values.get(name).cloned().or_else(|| lookup(name));
        let value = if let Some(quoted) = value.strip_prefix('\'') {
            let end = quoted.find('\'').ok_or_else(|| err("unclosed single quote".to_owned()))?;
            quoted[..end].to_owned()
        } else if let Some(quoted) = value.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.chars();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some('n') => out.push('\n'),
                        Some('t') => out.push('\t'),
                        Some(c @ ('"' | '\\')) => out.push(c),
                        Some('$') => out.push_str("$$"),
                        Some(c) => {
                            out.push('\\');
                            out.push(c);
                        }
                        None => {}
                    },
                    c => out.push(c),
                }
            }
            if !closed {
                return Err(err("unclosed double quote".to_owned()));
            }
            interpolate(&out, &known).map_err(|e| err(e.to_string()))?
        } else {
            let bare = value.split_once(" #").map_or(value, |(v, _)| v).trim_end();
            interpolate(bare, &known).map_err(|e| err(e.to_string()))?
        };
        values.insert(key.to_owned(), value);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("value".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn run(text: &str) -> Result<String, InterpolationError> {
        interpolate(text, &env)
    }

    #[test]
    fn forms() {
        let cases = [
            ("plain", "plain"),
            ("$SET", "value"),
            ("${SET}", "value"),
            ("a-${SET}-b", "a-value-b"),
            ("$SET.x", "value.x"),
            ("$UNSET", ""),
            ("${UNSET:-dflt}", "dflt"),
            ("${EMPTY:-dflt}", "dflt"),
            ("${EMPTY-dflt}", ""),
            ("${UNSET-dflt}", "dflt"),
            ("${SET:-dflt}", "value"),
            ("${SET:+alt}", "alt"),
            ("${EMPTY:+alt}", ""),
            ("${EMPTY+alt}", "alt"),
            ("${UNSET:-${SET}}", "value"),
            ("${UNSET:-a $$ b}", "a $ b"),
            ("$$SET", "$SET"),
            ("$${SET}", "${SET}"),
            ("${EMPTY?oops}", ""),
        ];
        for (text, want) in cases {
            assert_eq!(run(text).as_deref(), Ok(want), "{text}");
        }
    }

    #[test]
    fn errors() {
        assert_eq!(
            run("${UNSET:?set it}"),
            Err(InterpolationError::Required { name: "UNSET".into(), message: "set it".into() })
        );
        assert!(matches!(run("${EMPTY:?x}"), Err(InterpolationError::Required { .. })));
        assert!(matches!(run("${UNSET?x}"), Err(InterpolationError::Required { .. })));
        for bad in ["${", "${SET", "${}", "$", "a $ b", "${SET!x}", "${1A}"] {
            assert!(matches!(run(bad), Err(InterpolationError::Syntax { .. })), "{bad}");
        }
    }

    #[test]
    fn dotenv_files() {
        let text = "# comment\nA=1\nexport B = two words \nC='lit $A'\nD=\"q\\n$A\"\nE=${A}x # trailing\n\nF=\n";
        let values = dotenv(text, &env).expect("valid");
        let want: BTreeMap<String, String> =
            [("A", "1"), ("B", "two words"), ("C", "lit $A"), ("D", "q\n1"), ("E", "1x"), ("F", "")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        assert_eq!(values, want);
        assert_eq!(dotenv("A=1\nnot a line\n", &env).expect_err("bad").line, 2);
        assert_eq!(dotenv("A='open\n", &env).expect_err("bad").line, 1);
    }

    proptest! {
        #[test]
        fn escaping_round_trips(text in "\\PC*") {
            prop_assert_eq!(interpolate(&escape(&text), &env), Ok(text));
        }

        #[test]
        fn text_without_dollar_is_unchanged(text in "[^$]*") {
            prop_assert_eq!(interpolate(&text, &env), Ok(text.clone()));
        }

        #[test]
        fn defaults_apply_to_unset_variables(name in "[A-Z][A-Z0-9_]{0,6}", default in "[a-z0-9 ./:-]*") {
            prop_assume!(name != "SET" && name != "EMPTY");
            prop_assert_eq!(interpolate(&format!("${{{name}:-{default}}}"), &env), Ok(default.clone()));
            prop_assert_eq!(interpolate(&format!("${{{name}-{default}}}"), &env), Ok(default));
        }

        #[test]
        fn never_panics(text in "[${}:?+a-zA-Z_ -]*") {
            let _ = interpolate(&text, &env);
        }
    }
}
