//! Splits a command string into words with POSIX shell quoting, as Compose does for
//! `command: echo "hello world"`.
//!
//! Only quoting and escaping are interpreted: no variables, globs, comments or operators, so
//! `$HOME`, `*` and `#` reach the program as written (the shell inside the container, if
//! any, expands them).

/// Why a command string cannot be split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SplitError {
    #[error("unterminated single quote: a ' opens a string that never closes")]
    UnterminatedSingleQuote,
    #[error("unterminated double quote: a \" opens a string that never closes")]
    UnterminatedDoubleQuote,
    #[error("the last character is a backslash that escapes nothing")]
    TrailingBackslash,
}

/// The words of `line`: blanks separate words; `'…'` keeps everything literally; `"…"` keeps
/// everything but a backslash before `$`, `` ` ``, `"`, `\` or a newline; a backslash outside
/// quotes keeps the next character literally; backslash-newline joins lines.
pub(crate) fn split(line: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    let mut word = String::new();
    // A word exists once any part of it was seen, so `''` is one empty word.
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(SplitError::UnterminatedSingleQuote),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('$' | '`' | '"' | '\\')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(SplitError::UnterminatedDoubleQuote),
                        },
                        Some(c) => word.push(c),
                        None => return Err(SplitError::UnterminatedDoubleQuote),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    word.push(c);
                }
                None => return Err(SplitError::TrailingBackslash),
            },
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn words(line: &str) -> Vec<String> {
        split(line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    #[test]
    fn blanks_separate_words() {
        assert_eq!(words("echo hello  world"), ["echo", "hello", "world"]);
        assert_eq!(words("  a\tb\nc  "), ["a", "b", "c"]);
        assert!(words("").is_empty());
        assert!(words("   ").is_empty());
    }

    #[test]
    fn single_quotes_are_literal() {
        assert_eq!(words(r"echo 'a  b' 'c\d' '$HOME'"), ["echo", "a  b", r"c\d", "$HOME"]);
        assert_eq!(words("''"), [""]);
        assert_eq!(words("a'b'c"), ["abc"]);
    }

    #[test]
    fn double_quotes_escape_only_special_characters() {
        assert_eq!(words(r#"sh -c "echo \"hi\" \$X \\ \n""#), ["sh", "-c", r#"echo "hi" $X \ \n"#]);
        assert_eq!(words(r#""""#), [""]);
        assert_eq!(words("\"a\\\nb\""), ["ab"]);
        assert_eq!(words(r#""it's""#), ["it's"]);
    }

    #[test]
    fn backslash_outside_quotes() {
        assert_eq!(words(r"a\ b c"), ["a b", "c"]);
        assert_eq!(words(r"\'x"), ["'x"]);
        assert_eq!(words("a\\\nb"), ["ab"]);
        assert_eq!(words("a \\\n b"), ["a", "b"]);
    }

    #[test]
    fn no_expansion_of_anything_else() {
        assert_eq!(
            words("echo $HOME * # not a comment; ls"),
            ["echo", "$HOME", "*", "#", "not", "a", "comment;", "ls"]
        );
    }

    #[test]
    fn errors() {
        assert_eq!(split("echo 'oops"), Err(SplitError::UnterminatedSingleQuote));
        assert_eq!(split("echo \"oops"), Err(SplitError::UnterminatedDoubleQuote));
        assert_eq!(split("echo \"oops\\"), Err(SplitError::UnterminatedDoubleQuote));
        assert_eq!(split("echo \\"), Err(SplitError::TrailingBackslash));
    }

    /// Quotes a word the way a careful script would: single quotes, with `'` as `'\''`.
    fn quote(word: &str) -> String {
        format!("'{}'", word.replace('\'', r"'\''"))
    }

    proptest! {
        #[test]
        fn quoted_words_come_back_unchanged(original in prop::collection::vec(".*", 0..6)) {
            let line = original.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ");
            prop_assert_eq!(split(&line), Ok(original));
        }

        #[test]
        fn plain_words_split_on_any_blank_run(
            original in prop::collection::vec("[a-zA-Z0-9_./=:-]{1,8}", 0..6),
            blanks in "[ \t\n]{1,3}",
        ) {
            prop_assert_eq!(split(&original.join(&blanks)), Ok(original));
        }

        #[test]
        fn never_panics(line in "\\PC*") {
            let _ = split(&line);
        }
    }
}
