//! Image references as users type them: `name[:tag]`, `:latest` implied. The stored form is
//! always `name:tag`, Docker Hub names in their short form. Digest references (`name@sha256:…`) are not supported yet.

use std::fmt;

use crate::error::Error;

/// A parsed, normalized `name:tag` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference {
    name: String,
    tag: String,
}

impl Reference {
    /// Parses `s`, adding `:latest` when no tag is given.
    pub(crate) fn parse(s: &str) -> Result<Reference, Error> {
        let bad = |why: &str| {
            Error::invalid(format!("invalid image reference \"{s}\": {why} (expected NAME[:TAG], e.g. web:1)"))
        };
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        if s.contains('@') {
            return Err(bad("digest references are not supported yet"));
        }
        // The tag follows the last ':' that comes after the last '/', so "host:5000/web" has none.
        let last_slash = s.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match s[last_slash..].rfind(':') {
            Some(i) => (&s[..last_slash + i], &s[last_slash + i + 1..]),
            None => (s, "latest"),
        };
        if tag.is_empty() || tag.len() > 128 {
            return Err(bad("the tag must be 1 to 128 characters"));
        }
        if !tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) || tag.starts_with(['.', '-']) {
            return Err(bad("the tag may hold letters, digits, '_', '.' and '-', and must not start with '.' or '-'"));
        }
        let components: Vec<&str> = name.split('/').collect();
        for (i, component) in components.iter().enumerate() {
            // Only the first of several components may be a registry host, with a ':port'.
            let is_host = i == 0 && components.len() > 1;
            let valid = !component.is_empty()
                && component.bytes().all(|b| {
                    b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b"._-".contains(&b)
                        || (is_host && (b == b':' || b.is_ascii_uppercase()))
                })
                && component.as_bytes()[0].is_ascii_alphanumeric();
            if !valid {
                return Err(bad("name components must be lowercase letters, digits and '.', '_' or '-', starting with a letter or digit"));
            }
        }
        Ok(Reference { name: familiar(name).to_string(), tag: tag.to_string() })
    }
}

/// Docker Hub names in the short form users type (and Docker stores): `docker.io/library/web`
/// is `web`, `docker.io/me/web` is `me/web`. The docker CLI sends the long form.
///
/// A name whose short form would begin with what reads as a registry host
/// (`docker.io/docker.io/x`) stays long: shortened, it would name another image when parsed
/// again.
fn familiar(name: &str) -> &str {
    let Some(short) = ["docker.io/", "index.docker.io/"].iter().find_map(|hub| name.strip_prefix(hub)) else {
        return name;
    };
    let first = short.split('/').next().unwrap_or_default();
    if short.contains('/') && (first.contains(['.', ':']) || first == "localhost") {
        return name;
    }
    match short.strip_prefix("library/") {
        Some(rest) if !rest.contains('/') => rest,
        _ => short,
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).expect("valid reference").to_string()
    }

    #[test]
    fn adds_latest_and_keeps_tags() {
        assert_eq!(norm("busybox"), "busybox:latest");
        assert_eq!(norm("web:1"), "web:1");
        assert_eq!(norm("library/web:1.2-rc"), "library/web:1.2-rc");
        assert_eq!(norm("localhost:5000/web"), "localhost:5000/web:latest");
        assert_eq!(norm("localhost:5000/web:2"), "localhost:5000/web:2");
        // Docker Hub's long forms, as the docker CLI sends them, are stored short.
        assert_eq!(norm("docker.io/library/web:1"), "web:1");
        assert_eq!(norm("docker.io/me/web"), "me/web:latest");
        assert_eq!(norm("index.docker.io/library/web:1"), "web:1");
    }

    #[test]
    fn the_stored_form_parses_to_itself() {
        for text in
            ["docker.io/docker.io/library/4-", "docker.io/localhost/web", "docker.io/a.b/c", "docker.io/web", "web"]
        {
            let stored = norm(text);
            assert_eq!(norm(&stored), stored, "{text}");
        }
        assert_eq!(norm("docker.io/docker.io/library/web"), "docker.io/docker.io/library/web:latest");
    }

    #[test]
    fn rejects_bad_references() {
        for bad in ["", "Web", "web:", "web@sha256:abc", "-web", "a//b", "web:-x", "host:1/"] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
