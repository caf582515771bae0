//! The secrets and configs of a task, as files a container can mount.
//!
//! Each task that uses any gets its own tmpfs at
//! `<data-root>/task-files/<task id>` (so a secret never touches the disk),
//! with one file per reference, owned and moded as the reference says. The
//! tmpfs is then made read-only, and each file is bind-mounted read-only at
//! its target in the container: `/run/secrets/<name>` for a secret with a
//! relative target, `/<name>` for a config. The tmpfs goes when the task's
//! container is removed.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use shoal_proto::{Config, ContainerSpec, FileTarget, Secret, SECRETS_DIR};
use shoal_runtime::{Mount, MountKind};

/// The secrets and configs the managers sent this node, by ID. Held in
/// memory only; the session replaces them with each assignment.
#[derive(Clone, Default)]
pub struct FileStore {
    inner: Arc<RwLock<Objects>>,
}

#[derive(Default)]
struct Objects {
    secrets: HashMap<String, Secret>,
    configs: HashMap<String, Config>,
}

impl FileStore {
    /// Replaces what the node holds with the latest assignment's objects.
    pub fn replace(&self, secrets: Vec<Secret>, configs: Vec<Config>) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.secrets = secrets.into_iter().map(|s| (s.id.clone(), s)).collect();
        inner.configs = configs.into_iter().map(|c| (c.id.clone(), c)).collect();
    }

    fn secret_data(&self, id: &str) -> Option<Vec<u8>> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner.secrets.get(id).and_then(|s| s.spec.as_ref()).map(|s| s.data.clone())
    }

    fn config_data(&self, id: &str) -> Option<Vec<u8>> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner.configs.get(id).and_then(|c| c.spec.as_ref()).map(|c| c.data.clone())
    }
}

/// Where the task files of this node live: `<data-root>/task-files`.
pub fn root(runtime_root: &Path) -> PathBuf {
    runtime_root.parent().unwrap_or(runtime_root).join("task-files")
}

/// Where a reference's file appears in the container.
fn container_path(target: &str, relative_to: &str) -> String {
    if target.starts_with('/') {
        target.to_string()
    } else {
        format!("{}/{target}", relative_to.trim_end_matches('/'))
    }
}

fn owner(file: &FileTarget, what: &str) -> Result<(u32, u32), String> {
    let parse = |v: &str, field: &str| -> Result<u32, String> {
        if v.is_empty() {
            return Ok(0);
        }
        v.parse().map_err(|_| format!("{what}: {field} \"{v}\" is not a numeric ID: give a number such as 1000"))
    };
    Ok((parse(&file.uid, "uid")?, parse(&file.gid, "gid")?))
}

/// Writes the task's secrets and configs to a new tmpfs under `root` and
/// returns the read-only bind mounts that put them in the container. No
/// files (and no tmpfs) when the task uses none.
pub fn prepare(root: &Path, task_id: &str, spec: &ContainerSpec, store: &FileStore) -> Result<Vec<Mount>, String> {
    if spec.secrets.is_empty() && spec.configs.is_empty() {
        return Ok(Vec::new());
    }
    // The task id comes from a manager: it names a directory only as one plain component.
    let dir = shoal_runtime::confine::child(root, task_id, "task id").map_err(|e| e.report())?;
    remove(root, task_id);
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("tmpfs"), &dir, Some("tmpfs"), flags, Some("mode=0755,size=16m"))
        .map_err(|e| format!("mounting a tmpfs for the task's secrets on {}: {e}", dir.display()))?;
    let result = write_all(&dir, spec, store);
    if result.is_err() {
        remove(root, task_id);
        return result;
    }
    // Nothing changes the files after this.
    if let Err(e) =
        mount(None::<&str>, &dir, None::<&str>, flags | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY, None::<&str>)
    {
        tracing::warn!(dir = %dir.display(), error = %e, "making the task files read-only failed");
    }
    result
}

fn write_all(dir: &Path, spec: &ContainerSpec, store: &FileStore) -> Result<Vec<Mount>, String> {
    let mut mounts = Vec::new();
    let secrets = spec.secrets.iter().map(|r| {
        let what = format!("secret {}", r.secret_name);
        ("secret", what, r.file.clone().unwrap_or_default(), store.secret_data(&r.secret_id), SECRETS_DIR)
    });
    let configs = spec.configs.iter().map(|r| {
        let what = format!("config {}", r.config_name);
        ("config", what, r.file.clone().unwrap_or_default(), store.config_data(&r.config_id), "/")
    });
    for (i, (kind, what, file, data, relative_to)) in secrets.chain(configs).enumerate() {
        let data = data.ok_or_else(|| {
            format!("{what} was not sent to this node (it may have been removed): the task cannot start without it")
        })?;
        let (uid, gid) = owner(&file, &what)?;
        let host = dir.join(format!("{kind}-{i}"));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&host)
            .map_err(|e| format!("writing {what} to {}: {e}", host.display()))?;
        f.write_all(&data).map_err(|e| format!("writing {what} to {}: {e}", host.display()))?;
        drop(f);
        std::os::unix::fs::chown(&host, Some(uid), Some(gid))
            .map_err(|e| format!("giving {what} to {uid}:{gid}: {e}"))?;
        fs::set_permissions(&host, fs::Permissions::from_mode(file.mode & 0o7777))
            .map_err(|e| format!("setting the mode of {what}: {e}"))?;
        mounts.push(Mount {
            kind: MountKind::Bind,
            source: host.to_string_lossy().into_owned(),
            target: container_path(&file.name, relative_to),
            read_only: true,
            ..Mount::default()
        });
    }
    Ok(mounts)
}

/// Unmounts and removes the task's files, if it has any.
pub fn remove(root: &Path, task_id: &str) {
    let Ok(dir) = shoal_runtime::confine::child(root, task_id, "task id") else { return };
    if !dir.exists() {
        return;
    }
    // Not mounted (or already gone) is fine: the directory is removed either way.
    let _ = umount2(&dir, MntFlags::MNT_DETACH);
    if let Err(e) = fs::remove_dir_all(&dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "removing the task's files failed");
    }
}

/// The task IDs that have files on this node.
pub fn tasks_with_files(root: &Path) -> Vec<String> {
    fs::read_dir(root)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_owners() {
        assert_eq!(container_path("db_password", SECRETS_DIR), "/run/secrets/db_password");
        assert_eq!(container_path("/etc/app.toml", SECRETS_DIR), "/etc/app.toml");
        assert_eq!(container_path("app.toml", "/"), "/app.toml");
        let file = FileTarget { uid: "1000".into(), gid: String::new(), ..Default::default() };
        assert_eq!(owner(&file, "secret x"), Ok((1000, 0)));
        let named = FileTarget { uid: "www".into(), ..Default::default() };
        assert!(owner(&named, "secret x").unwrap_err().contains("uid \"www\""));
    }

    #[test]
    fn a_task_id_names_one_directory_under_the_root() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("task-files");
        fs::create_dir(&root).expect("mkdir");
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).expect("mkdir");
        fs::write(outside.join("marker"), "x").expect("write");
        let spec = ContainerSpec {
            secrets: vec![shoal_proto::SecretReference { secret_id: "s".into(), ..Default::default() }],
            ..Default::default()
        };
        for bad in ["../outside", "..", "", "a/b", "/tmp"] {
            let err = prepare(&root, bad, &spec, &FileStore::default()).expect_err(bad);
            assert!(err.contains("task id"), "{bad}: {err}");
            remove(&root, bad);
        }
        assert!(outside.join("marker").exists(), "a task id reached outside the root");
    }
}
