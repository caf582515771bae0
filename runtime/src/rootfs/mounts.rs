//! The container's own mounts, made under its root before `pivot_root`: binds (host paths,
//! named volumes, and the `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf` kept in the
//! container's directory) and tmpfs. Targets are resolved inside the root as the container
//! would see them, so a symlink in the image cannot aim a mount at the host.

use std::{
    collections::VecDeque,
    fs, io,
    path::{Path, PathBuf},
};

use nix::mount::{mount as mount2, MsFlags};

use crate::{
    container::spec::{tmpfs_options, MountConfig},
    error::{Error, IoContext},
};

const NONE: Option<&str> = None;
/// As the kernel's own limit on symlinks followed in one lookup.
const MAX_LINKS: usize = 40;

/// Makes one mount under `rootfs`.
pub(crate) fn mount(rootfs: &Path, m: &MountConfig) -> Result<(), Error> {
    match m {
        MountConfig::Tmpfs { target, options } => {
            let (flags, data) =
                tmpfs_options(options).map_err(|why| Error::invalid(format!("tmpfs options for {target}: {why}")))?;
            let path = resolve_in_root(rootfs, target)?;
            create_mount_point(&path, true)?;
            mount2(Some("tmpfs"), &path, Some("tmpfs"), flags, Some(data.as_str()))
                .context(|| format!("mounting a tmpfs on {target}"))
        }
        MountConfig::Bind { source, target, read_only, propagation, non_recursive, .. } => {
            let is_dir = match fs::metadata(source) {
                Ok(meta) => meta.is_dir(),
                // As `docker run -v` does, a missing host directory is created.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir_all(source).context(|| format!("creating {}", source.display()))?;
                    true
                }
                Err(e) => return Err(Error::io(format!("inspecting bind source {}", source.display()), e)),
            };
            let path = resolve_in_root(rootfs, target)?;
            create_mount_point(&path, is_dir)?;
            let recursive = if *non_recursive { MsFlags::empty() } else { MsFlags::MS_REC };
            mount2(Some(source.as_path()), &path, NONE, MsFlags::MS_BIND | recursive, NONE)
                .context(|| format!("bind-mounting {} on {target}", source.display()))?;
            if *read_only {
                let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | recursive;
                mount2(NONE, &path, NONE, flags, NONE).context(|| format!("making {target} read-only"))?;
            }
            // Unless asked, the mount keeps the rslave propagation of the container's root.
            match propagation {
                Some(propagation) => mount2(NONE, &path, NONE, propagation.flags(), NONE)
                    .context(|| format!("setting the propagation of {target} to {propagation:?}")),
                None => Ok(()),
            }
        }
    }
}

/// `target` (absolute, as seen in the container) as a host path under `root`, following
/// symlinks as if `root` were `/`.
pub(crate) fn resolve_in_root(root: &Path, target: &str) -> Result<PathBuf, Error> {
    let mut resolved = PathBuf::new();
    let mut pending: VecDeque<String> = target.split('/').map(str::to_string).collect();
    let mut links = 0;
    while let Some(component) = pending.pop_front() {
        match component.as_str() {
            "" | "." => continue,
            ".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let candidate = root.join(&resolved).join(&component);
        match fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(Error::invalid(format!("too many symlinks resolving {target} in the container")));
                }
                let link = fs::read_link(&candidate).context(|| format!("reading {}", candidate.display()))?;
                let link = link.to_string_lossy();
                if link.starts_with('/') {
                    resolved = PathBuf::new();
                }
                for part in link.split('/').rev() {
                    pending.push_front(part.to_string());
                }
            }
            _ => resolved.push(&component),
        }
    }
    Ok(root.join(resolved))
}

/// Creates a missing mount point: a directory, or an empty file for a file bind.
fn create_mount_point(path: &Path, dir: bool) -> Result<(), Error> {
    let context = || format!("creating mount point {}", path.display());
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() != dir => Err(Error::invalid(format!(
            "cannot mount a {} on {}, which is a {} in the image",
            if dir { "directory" } else { "file" },
            path.display(),
            if meta.is_dir() { "directory" } else { "file" }
        ))),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if dir {
                fs::create_dir_all(path).context(context)
            } else {
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent).context(context)?;
                }
                fs::File::create(path).map(drop).context(context)
            }
        }
        Err(e) => Err(Error::io(context(), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_stay_inside_the_root() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        fs::create_dir_all(root.join("usr/lib")).expect("mkdir");
        symlink("/usr/lib", root.join("lib")).expect("symlink");
        symlink("../../../../etc", root.join("usr/escape")).expect("symlink");
        symlink("loop", root.join("loop")).expect("symlink");
        assert_eq!(resolve_in_root(root, "/lib/x").expect("ok"), root.join("usr/lib/x"));
        assert_eq!(resolve_in_root(root, "/usr/escape/passwd").expect("ok"), root.join("etc/passwd"));
        assert_eq!(resolve_in_root(root, "/../../data").expect("ok"), root.join("data"));
        assert!(resolve_in_root(root, "/loop/x").is_err());
    }
}
