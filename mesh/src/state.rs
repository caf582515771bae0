//! The mesh's state directory (`<data-root>/mesh`): what a restarted daemon needs to re-adopt
//! what it made, and nothing the map already says.
//!
//! - `lock`: held (`flock`) by the one process that runs the data plane;
//! - `node.json`: the local bridges' subnets, chosen once;
//! - `netns/<sandbox id>`: each sandbox's network namespace, bind-mounted;
//! - `sandboxes/<sandbox id>.json`: each sandbox's ports (network, interface, address).
//!
//! Files are replaced by rename and not synced: sandboxes, their namespaces and devices do
//! not survive a reboot, and what a crash left half-written is found and cleaned at open.

use std::{
    fs,
    io::ErrorKind,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{IoContext, MeshError};

/// The paths of the state directory.
#[derive(Debug, Clone)]
pub(crate) struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Makes the directory and its subdirectories.
    pub(crate) fn create(root: &Path) -> Result<StateDir, MeshError> {
        if !root.is_absolute() {
            return Err(MeshError::Invalid(format!(
                "the mesh's state directory {} must be an absolute path",
                root.display()
            )));
        }
        let state = StateDir { root: root.to_path_buf() };
        for dir in [state.root.clone(), state.netns_dir(), state.sandboxes_dir()] {
            fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        }
        Ok(state)
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn netns_dir(&self) -> PathBuf {
        self.root.join("netns")
    }

    pub(crate) fn sandboxes_dir(&self) -> PathBuf {
        self.root.join("sandboxes")
    }

    pub(crate) fn node_file(&self) -> PathBuf {
        self.root.join("node.json")
    }

    /// Where sandbox `id`'s namespace is bound. The id comes from the caller (a task or
    /// container id): it is one path component or refused.
    pub(crate) fn netns(&self, id: &str) -> Result<PathBuf, MeshError> {
        check_id(id)?;
        shoal_runtime::confine::child(&self.netns_dir(), id, "sandbox id")
            .map_err(|e| MeshError::Invalid(format!("sandbox id \"{}\": {e}", id.escape_debug())))
    }

    /// Where sandbox `id`'s record is kept.
    pub(crate) fn record(&self, id: &str) -> Result<PathBuf, MeshError> {
        check_id(id)?;
        shoal_runtime::confine::child(&self.sandboxes_dir(), format!("{id}.json"), "sandbox id")
            .map_err(|e| MeshError::Invalid(format!("sandbox id \"{}\": {e}", id.escape_debug())))
    }

    /// Takes the state directory's lock for this process, or says who has it.
    pub(crate) fn lock(&self) -> Result<fs::File, MeshError> {
        let path = self.root.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock(2) on an fd `file` owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(MeshError::Invalid(format!(
                "another process runs the data plane on {}: stop it first (one daemon per data root)",
                self.root.display()
            )));
        }
        Ok(file)
    }
}

/// Sandbox ids are the callers' task and container ids: short, and of characters that need no
/// quoting anywhere.
fn check_id(id: &str) -> Result<(), MeshError> {
    let fine = !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !id.starts_with('.');
    if fine {
        Ok(())
    } else {
        Err(MeshError::Invalid(format!(
            "sandbox id \"{}\" is not an id: use 1 to 128 letters, digits, '-', '_' and '.', not starting with '.'",
            id.escape_debug()
        )))
    }
}

/// Reads the JSON file at `path`; `None` if there is none.
pub(crate) fn read<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, MeshError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| MeshError::State { path: path.to_path_buf(), why: e.to_string() }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(MeshError::io(format!("reading {}", path.display()), e)),
    }
}

/// Replaces the file at `path` with `value` as JSON, whole.
pub(crate) fn write<T: Serialize>(path: &Path, value: &T) -> Result<(), MeshError> {
    let bytes = serde_json::to_vec_pretty(value).expect("the mesh's records always serialize");
    let tmp = path.with_extension("json.tmp");
    fs::write(&tmp, bytes).context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).context(|| format!("replacing {}", path.display()))
}

/// Removes the file at `path`; none there is no error.
pub(crate) fn remove(path: &Path) -> Result<(), MeshError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(MeshError::io(format!("removing {}", path.display()), e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_ids_stay_one_component() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::create(dir.path()).expect("state");
        assert_eq!(state.netns("t1.abc").expect("ok"), dir.path().join("netns/t1.abc"));
        for bad in ["", ".", "..", "../x", "a/b", "/abs", ".hidden", "a\0b", "a b", &"x".repeat(129)] {
            assert!(state.netns(bad).is_err(), "{bad:?}");
            assert!(state.record(bad).is_err(), "{bad:?}");
        }
        assert!(StateDir::create(Path::new("relative/mesh")).is_err());
    }
}
