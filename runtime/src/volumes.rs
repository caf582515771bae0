//! Volumes: named ones (`-v name:/path`, kept until `volume rm`) and anonymous ones, made for
//! each `VOLUME` of the image that no mount covers (named by a random id, as Docker names
//! them; a disposable container's go with it). Both live in `<volumes>/<name>/_data`, with the
//! labels given at creation in `<volumes>/<name>/volume.json`.
//!
//! A volume name comes from a user (the API, a compose file, a task another node sent, a
//! container's own config on disk): every path made from one is made here, by [`dir`], which
//! holds the name to Docker's rule (`shoal_proto::names`) and then to `confine::child`, so no
//! name reaches the filesystem outside the volumes directory. A volume is created whole or not
//! at all: it is put together under a staging name (which no volume name can take) and renamed
//! into place.
//!
//! As Docker does, a volume that is empty when its container starts is first filled with what
//! the image has at its path (files, directories and symlinks, with their owners and modes;
//! the volume's own directory takes the owner and mode of the image's), so that
//! `-v conf:/etc/nginx` starts from the image's configuration and a database's data directory
//! keeps the owner its image gave it. Nothing in the image's path is followed out of the
//! container's root: a path through a symlink is not copied.

use std::{
    collections::BTreeMap,
    fs, io,
    os::unix::fs::{lchown, symlink, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    confine,
    error::{Error, IoContext},
    jsonfile,
};

/// Where a volume's content is, under its directory.
const DATA: &str = "_data";
/// A volume's metadata (its labels), under its directory.
const META: &str = "volume.json";
/// The prefix of a volume being created; a leading '.' is no valid volume name, so these are
/// never listed or found as volumes.
const STAGING_PREFIX: &str = ".creating-";

/// A volume, as `volume ls` and `volume inspect` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub name: String,
    /// Where its data is on the host.
    pub mountpoint: PathBuf,
    /// Unix seconds.
    pub created_at: i64,
    /// The labels it was created with.
    pub labels: BTreeMap<String, String>,
}

/// What `volume.json` holds.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Meta {
    labels: BTreeMap<String, String>,
}

/// Refuses a name that breaks Docker's rule for volume names, with what to use instead.
pub(crate) fn check_name(name: &str) -> Result<(), Error> {
    shoal_proto::names::check_volume_name(name).map_err(|why| Error::invalid(format!("invalid volume name: {why}")))
}

/// `<volumes>/<name>`: the only way a volume's path is made from its name.
pub(crate) fn dir(volumes: &Path, name: &str) -> Result<PathBuf, Error> {
    check_name(name)?;
    confine::child(volumes, name, "volume name")
}

/// `<volumes>/<name>/_data`, where the volume's content lives (and what a container mounts).
pub(crate) fn data_dir(volumes: &Path, name: &str) -> Result<PathBuf, Error> {
    confine::child(&dir(volumes, name)?, DATA, "volume data directory")
}

/// The volume `name` under `volumes`, if it exists; an invalid name is an error, not "none".
pub(crate) fn info(volumes: &Path, name: &str) -> Result<Option<VolumeInfo>, Error> {
    let dir = dir(volumes, name)?;
    let meta = match fs::metadata(&dir) {
        Ok(meta) if meta.is_dir() => meta,
        Ok(_) => return Ok(None),
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading volume {name} at {}", dir.display()), e)),
    };
    let labels = match jsonfile::read::<Meta>(&dir.join(META)) {
        Ok(found) => found.unwrap_or_default().labels,
        Err(e) => {
            // Its content matters more than its labels: the volume stays usable.
            tracing::warn!(volume = name, "reading the volume's labels: {}", e.report());
            BTreeMap::new()
        }
    };
    Ok(Some(VolumeInfo { name: name.to_string(), mountpoint: dir.join(DATA), created_at: meta.ctime(), labels }))
}

/// Every volume under `volumes`, by name. Entries whose names no volume can have (a volume
/// being created, anything else put there) are not volumes and are left out.
pub(crate) fn list(volumes: &Path) -> Result<Vec<VolumeInfo>, Error> {
    let entries = match fs::read_dir(volumes) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("listing volumes in {}", volumes.display()), e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.context(|| format!("listing volumes in {}", volumes.display()))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
        if check_name(&name).is_err() {
            continue;
        }
        match info(volumes, &name) {
            Ok(Some(volume)) => found.push(volume),
            Ok(None) => {}
            // A symlink someone put in the volumes directory: not a volume, and not followed.
            Err(e) => tracing::warn!(entry = name, "skipping an entry of the volumes directory: {}", e.report()),
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// Creates volume `name` with `labels`, or returns it as it is if it exists (as Docker does,
/// an existing volume keeps its labels).
pub(crate) fn create(volumes: &Path, name: &str, labels: &BTreeMap<String, String>) -> Result<VolumeInfo, Error> {
    let target = dir(volumes, name)?;
    if let Some(existing) = info(volumes, name)? {
        return Ok(existing);
    }
    fs::create_dir_all(volumes).context(|| format!("creating {}", volumes.display()))?;
    let staging = volumes.join(format!("{STAGING_PREFIX}{}", crate::container::new_id()));
    let made = (|| {
        fs::create_dir(&staging).context(|| format!("creating {}", staging.display()))?;
        fs::create_dir(staging.join(DATA)).context(|| format!("creating {}", staging.join(DATA).display()))?;
        if !labels.is_empty() {
            jsonfile::write(&staging.join(META), &Meta { labels: labels.clone() })?;
        }
        match fs::rename(&staging, &target) {
            Ok(()) => Ok(true),
            // Made meanwhile by someone else: theirs stands.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST | libc::ENOTEMPTY)) => Ok(false),
            Err(e) => Err(Error::io(format!("creating volume {name} at {}", target.display()), e)),
        }
    })();
    if !matches!(made, Ok(true)) {
        if let Err(e) = fs::remove_dir_all(&staging) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(staging = %staging.display(), "removing a volume that was not created: {e}");
            }
        }
    }
    made?;
    info(volumes, name)?.ok_or_else(|| Error::volume_not_found(name))
}

/// Removes volume `name` and its content; `Ok(false)` if there is no such volume.
pub(crate) fn remove(volumes: &Path, name: &str) -> Result<bool, Error> {
    let dir = dir(volumes, name)?;
    match fs::symlink_metadata(&dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(format!("reading volume {name} at {}", dir.display()), e)),
    }
    fs::remove_dir_all(&dir).context(|| format!("removing volume {name} at {}", dir.display()))?;
    Ok(true)
}

/// Removes what creations a crash interrupted left in `volumes` (older than an hour, so that
/// a creation in progress in another process is left alone).
pub(crate) fn remove_stale_staging(volumes: &Path) -> Result<(), Error> {
    if !volumes.exists() {
        return Ok(());
    }
    jsonfile::remove_stale(volumes, |name| name.starts_with(STAGING_PREFIX))
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
    // A target through a symlink (which could lead out of the root) is not copied from.
    let Ok(source) = confine::beneath(rootfs, target.trim_start_matches('/'), "volume target") else {
        return Ok(());
    };
    let Ok(meta) = fs::symlink_metadata(&source) else { return Ok(()) };
    if !meta.is_dir() {
        return Ok(());
    }
    let failed = |e: io::Error| Error::io(format!("copying {target} from the image into volume {}", data.display()), e);
    copy_tree(&source, data).map_err(failed)?;
    set_owner_and_mode(data, &meta).map_err(failed)
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
    fn volumes_are_made_whole_and_keep_their_first_labels() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let volumes = tmp.path().join("volumes");
        let labels = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let made = create(&volumes, "db", &labels).expect("create");
        assert_eq!((made.mountpoint.clone(), made.labels.clone()), (volumes.join("db/_data"), labels.clone()));
        assert!(made.mountpoint.is_dir());
        // Created again: as it is, labels and content kept.
        fs::write(made.mountpoint.join("f"), "x").expect("write");
        let again = create(&volumes, "db", &BTreeMap::new()).expect("create again");
        assert_eq!(again.labels, labels);
        assert!(again.mountpoint.join("f").exists());
        // A creation in progress (or one a crash cut short) is not a volume.
        fs::create_dir_all(volumes.join(format!("{STAGING_PREFIX}x/_data"))).expect("mkdir");
        fs::create_dir_all(volumes.join("-not-a-name")).expect("mkdir");
        assert_eq!(list(&volumes).expect("list").iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["db"]);
        assert_eq!(data_dir(&volumes, "db").ok(), Some(volumes.join("db/_data")));
        for bad in ["..", "/etc", "a/b", ".x", "db/../.."] {
            assert!(data_dir(&volumes, bad).is_err(), "{bad}");
            assert!(remove(&volumes, bad).is_err(), "{bad}");
        }
        assert_eq!(remove(&volumes, "db").ok(), Some(true));
        assert_eq!(remove(&volumes, "db").ok(), Some(false));
        assert!(info(&volumes, "db").expect("a valid name").is_none());
    }

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
