//! Volumes: named ones (`-v name:/path`, kept until `volume rm`) and anonymous ones, made for
//! each `VOLUME` of the image that no mount covers (named by a random id, as Docker names
//! them; a disposable container's go with it). Both live in `<volumes>/<name>/_data`.
//!
//! As Docker does, a volume that is empty when its container starts is first filled with what
//! the image has at its path (files, directories and symlinks, with their owners and modes;
//! the volume's own directory takes the owner and mode of the image's), so that
//! `-v conf:/etc/nginx` starts from the image's configuration and a database's data directory
//! keeps the owner its image gave it. Nothing in the image's path is followed out of the
//! container's root: a path through a symlink is not copied.

use std::{
    fs, io,
    os::unix::fs::{lchown, symlink, MetadataExt, PermissionsExt},
    path::{Component, Path, PathBuf},
};

use crate::error::{Error, IoContext};

/// A volume, as `volume ls` and `volume inspect` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub name: String,
    /// Where its data is on the host.
    pub mountpoint: PathBuf,
    /// Unix seconds.
    pub created_at: i64,
}

/// The volume `name` under `dir`, if it exists.
pub(crate) fn info(dir: &Path, name: &str) -> Option<VolumeInfo> {
    let meta = fs::metadata(dir.join(name)).ok().filter(fs::Metadata::is_dir)?;
    Some(VolumeInfo { name: name.to_string(), mountpoint: dir.join(name).join("_data"), created_at: meta.ctime() })
}

/// Every volume under `dir`, by name.
pub(crate) fn list(dir: &Path) -> Result<Vec<VolumeInfo>, Error> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("listing volumes in {}", dir.display()), e)),
    };
    let mut volumes: Vec<VolumeInfo> =
        entries.flatten().filter_map(|e| info(dir, &e.file_name().to_string_lossy())).collect();
    volumes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(volumes)
}

/// Paths the same once trailing slashes are dropped (`/data/` is `/data`).
pub(crate) fn same_path(a: &str, b: &str) -> bool {
    let trim = |p: &str| p.trim_end_matches('/').to_string();
    trim(a) == trim(b)
}

/// Fills the empty volume directory `data`, mounted at `target` in a container whose root
/// filesystem is mounted at `rootfs`, from the image's content there (see the module docs).
pub(crate) fn fill_if_empty(data: &Path, rootfs: &Path, target: &str) -> Result<(), Error> {
    let empty = fs::read_dir(data).context(|| format!("reading volume {}", data.display()))?.next().is_none();
    if !empty {
        return Ok(());
    }
    let Some(source) = inside(rootfs, target) else { return Ok(()) };
    let Ok(meta) = fs::symlink_metadata(&source) else { return Ok(()) };
    if !meta.is_dir() {
        return Ok(());
    }
    let failed = |e: io::Error| Error::io(format!("copying {target} from the image into volume {}", data.display()), e);
    copy_tree(&source, data).map_err(failed)?;
    set_owner_and_mode(data, &meta).map_err(failed)
}

/// `target` under `rootfs`, if no component of it is a symlink (which could lead out).
fn inside(rootfs: &Path, target: &str) -> Option<PathBuf> {
    let mut path = rootfs.to_path_buf();
    for component in Path::new(target).components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => {
                path.push(name);
                if fs::symlink_metadata(&path).ok()?.file_type().is_symlink() {
                    return None;
                }
            }
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(path)
}

/// Copies the content of directory `from` into directory `to`: directories, regular files
/// and symlinks, with owners and modes; other kinds (devices, sockets, fifos) are skipped.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let (source, dest) = (entry.path(), to.join(entry.file_name()));
        let meta = fs::symlink_metadata(&source)?;
        let kind = meta.file_type();
        if kind.is_dir() {
            fs::create_dir(&dest)?;
            copy_tree(&source, &dest)?;
            set_owner_and_mode(&dest, &meta)?;
        } else if kind.is_file() {
            fs::copy(&source, &dest)?;
            set_owner_and_mode(&dest, &meta)?;
        } else if kind.is_symlink() {
            symlink(fs::read_link(&source)?, &dest)?;
            lchown(&dest, Some(meta.uid()), Some(meta.gid()))?;
        }
    }
    Ok(())
}

fn set_owner_and_mode(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    lchown(path, Some(meta.uid()), Some(meta.gid()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(meta.mode() & 0o7777))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_compare_without_trailing_slashes() {
        assert!(same_path("/data/", "/data"));
        assert!(!same_path("/data", "/data2"));
    }

    #[test]
    fn fills_an_empty_volume_and_stays_inside_the_root() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let rootfs = tmp.path().join("rootfs");
        fs::create_dir_all(rootfs.join("srv/conf/sub")).expect("mkdir");
        fs::write(rootfs.join("srv/conf/a.conf"), "a").expect("write");
        fs::write(rootfs.join("srv/conf/sub/b"), "b").expect("write");
        symlink("a.conf", rootfs.join("srv/conf/link")).expect("symlink");
        fs::set_permissions(rootfs.join("srv/conf"), fs::Permissions::from_mode(0o750)).expect("chmod");
        // A path through a symlink to the host's /etc.
        symlink("/etc", rootfs.join("escape")).expect("symlink");

        let data = tmp.path().join("vol");
        fs::create_dir(&data).expect("mkdir");
        fill_if_empty(&data, &rootfs, "/srv/conf/").expect("fill");
        assert_eq!(fs::read_to_string(data.join("a.conf")).ok().as_deref(), Some("a"));
        assert_eq!(fs::read_to_string(data.join("sub/b")).ok().as_deref(), Some("b"));
        assert_eq!(fs::read_link(data.join("link")).ok(), Some(PathBuf::from("a.conf")));
        assert_eq!(fs::metadata(&data).map(|m| m.mode() & 0o7777).ok(), Some(0o750));

        // Not empty any more: left as it is.
        fs::remove_file(data.join("a.conf")).expect("rm");
        fill_if_empty(&data, &rootfs, "/srv/conf").expect("fill");
        assert!(!data.join("a.conf").exists());

        let other = tmp.path().join("vol2");
        fs::create_dir(&other).expect("mkdir");
        fill_if_empty(&other, &rootfs, "/escape").expect("fill");
        fill_if_empty(&other, &rootfs, "/nosuch").expect("fill");
        assert_eq!(fs::read_dir(&other).map(|d| d.count()).ok(), Some(0), "copied through a symlink or from nothing");
    }
}
