//! Paths made from untrusted parts, kept beneath the directory they belong in.
//!
//! A name a user gave (a volume, a container), an entry an archive lists, a whiteout in a
//! layer, a path another node sent: every path the runtime and the daemon make from such a part
//! is made here, by one rule. The untrusted part must be relative and made only of normal
//! components: no leading `/`, no `..`, nothing empty, and for a single name no `/` and not
//! `.`. Once joined to its parent, no component below the parent may be a symlink, so that
//! resolving the result follows nothing out of the parent. A part that breaks the rule is
//! refused with an error naming it and what it was; nothing is made of it.

use std::{
    ffi::OsStr,
    fmt, fs, io,
    os::unix::ffi::OsStrExt,
    path::{Component, Path, PathBuf},
};

use crate::error::Error;

/// Why an untrusted part was refused: it would leave the directory it belongs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escape {
    /// What the part is, for the message: "volume name", "archive entry", ….
    pub what: String,
    /// The part as it was given (lossily, for the message).
    pub given: String,
    /// Why it was refused.
    pub why: &'static str,
}

impl fmt::Display for Escape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} \"{}\" is refused: {}", self.what, self.given.escape_debug(), self.why)
    }
}

impl std::error::Error for Escape {}

impl From<Escape> for Error {
    fn from(e: Escape) -> Error {
        Error::invalid(e.to_string())
    }
}

impl From<Escape> for io::Error {
    fn from(e: Escape) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e.to_string())
    }
}

fn escape(what: &str, given: &OsStr, why: &'static str) -> Escape {
    Escape { what: what.to_string(), given: given.to_string_lossy().into_owned(), why }
}

/// `raw` as a relative path of normal components only (`.` components are dropped).
/// Refused: an absolute path, a `..` component, a NUL byte, and a path that names nothing.
pub fn relative(raw: &Path, what: &str) -> Result<PathBuf, Escape> {
    if raw.as_os_str().as_bytes().contains(&0) {
        return Err(escape(what, raw.as_os_str(), "it contains a NUL byte"));
    }
    let mut out = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(escape(
                    what,
                    raw.as_os_str(),
                    "it is an absolute path, and only a relative one stays inside",
                ))
            }
            Component::ParentDir => {
                return Err(escape(what, raw.as_os_str(), "it contains \"..\", which leads outside"))
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(escape(what, raw.as_os_str(), "it names nothing"));
    }
    Ok(out)
}

/// `name` as exactly one path component: not empty, not `.` or `..`, without `/` or NUL.
pub fn component<'a>(name: &'a OsStr, what: &str) -> Result<&'a OsStr, Escape> {
    let bytes = name.as_bytes();
    let why = if bytes.is_empty() {
        "it is empty"
    } else if bytes == b"." || bytes == b".." {
        "it names a directory itself rather than an entry in it"
    } else if bytes.contains(&b'/') {
        "it contains '/'"
    } else if bytes.contains(&0) {
        "it contains a NUL byte"
    } else {
        return Ok(name);
    };
    Err(escape(what, name, why))
}

/// `parent/name` for the single component `name` (see [`component`]); if it exists, it must
/// not be a symlink.
pub fn child(parent: &Path, name: impl AsRef<OsStr>, what: &str) -> Result<PathBuf, Error> {
    let name = component(name.as_ref(), what)?;
    let path = parent.join(name);
    refuse_symlink(&path, name, what)?;
    Ok(path)
}

/// `parent/raw` for the relative path `raw` (see [`relative`]); every component of it that
/// exists must be reached without passing a symlink (the last one may not be one either).
pub fn beneath(parent: &Path, raw: impl AsRef<Path>, what: &str) -> Result<PathBuf, Error> {
    let raw = raw.as_ref();
    let rel = relative(raw, what)?;
    let mut path = parent.to_path_buf();
    for part in rel.components() {
        path.push(part);
        if !refuse_symlink(&path, raw.as_os_str(), what)? {
            break; // what is below a missing component is missing too
        }
    }
    Ok(parent.join(rel))
}

/// Ok(true) if `path` exists (and is no symlink), Ok(false) if it does not exist.
fn refuse_symlink(path: &Path, given: &OsStr, what: &str) -> Result<bool, Error> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            Err(escape(what, given, "it passes through a symbolic link, which could lead outside").into())
        }
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::NotADirectory => Ok(false),
        Err(e) => Err(Error::io(format!("checking {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn relative_paths_keep_only_normal_components() {
        assert_eq!(relative(Path::new("a/./b"), "entry"), Ok(PathBuf::from("a/b")));
        for bad in ["/etc/passwd", "../x", "a/../../x", "", ".", "./"] {
            let err = relative(Path::new(bad), "archive entry").expect_err(bad);
            assert!(err.to_string().starts_with("archive entry"), "{err}");
        }
        assert!(relative(Path::new(OsStr::from_bytes(b"a\0b")), "entry").is_err());
    }

    #[test]
    fn a_component_is_one_plain_name() {
        assert!(component(OsStr::new("data.1"), "volume name").is_ok());
        assert!(component(OsStr::new("..."), "volume name").is_ok());
        for bad in ["", ".", "..", "a/b", "/x"] {
            assert!(component(OsStr::new(bad), "volume name").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn nothing_is_reached_through_a_symlink() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("root");
        fs::create_dir_all(root.join("dir")).expect("mkdir");
        symlink("/etc", root.join("link")).expect("symlink");
        assert_eq!(beneath(&root, "dir/new/file", "entry").ok(), Some(root.join("dir/new/file")));
        assert!(beneath(&root, "link/passwd", "entry").is_err());
        assert!(beneath(&root, "link", "entry").is_err());
        assert!(child(&root, "link", "name").is_err());
        assert_eq!(child(&root, "dir", "name").ok(), Some(root.join("dir")));
        assert!(child(&root, "..", "name").is_err());
    }
}
