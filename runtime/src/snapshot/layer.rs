//! Applying one layer tar to an empty directory, safely: no entry may land outside the
//! directory (`..` components are refused, absolute paths are taken as relative to it, and no
//! entry is written through a symlink that an earlier entry created). Modes, ownership, mtimes,
//! symlinks, hard links and device nodes are kept, and OCI whiteouts become overlayfs whiteouts
//! (`.wh.NAME` → a 0/0 character device, `.wh..wh..opq` → the `trusted.overlay.opaque` xattr).

use std::{
    ffi::{CString, OsStr},
    fs,
    io::{self, Read},
    os::unix::{
        ffi::OsStrExt,
        fs::{symlink, OpenOptionsExt, PermissionsExt},
    },
    path::{Component, Path, PathBuf},
};

use tar::EntryType;

/// Unpacks the tar stream `reader` into `root`, which should be empty.
pub(crate) fn unpack<R: Read>(reader: R, root: &Path) -> io::Result<()> {
    let mut archive = tar::Archive::new(reader);
    let mut dir_mtimes = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.into_owned();
        let Some(rel) = sanitize(&raw)? else {
            continue; // the layer root itself
        };
        let name = rel.file_name().expect("a sanitized path ends in a normal component").to_owned();
        let parent = make_parent(root, &rel)?;
        let dest = parent.join(&name);

        if name.as_bytes() == b".wh..wh..opq" {
            set_xattr(&parent, "trusted.overlay.opaque", b"y")?;
            continue;
        }
        if let Some(hidden) = name.as_bytes().strip_prefix(b".wh.") {
            let target = parent.join(OsStr::from_bytes(hidden));
            remove_any(&target)?;
            mknod(&target, libc::S_IFCHR, 0)?;
            continue;
        }

        let header = entry.header().clone();
        let kind = header.entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName | EntryType::GNULongLink
        ) {
            continue;
        }
        // Replace whatever an earlier entry put here, except a directory by a directory.
        if let Ok(existing) = fs::symlink_metadata(&dest) {
            if !(existing.is_dir() && kind == EntryType::Directory) {
                remove_any(&dest)?;
            }
        }
        match kind {
            EntryType::Directory => match fs::create_dir(&dest) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            },
            EntryType::Regular | EntryType::Continuous => {
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&dest)?;
                io::copy(&mut entry, &mut file)?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()?
                    .ok_or_else(|| invalid(format!("{}: symlink without a target", raw.display())))?;
                symlink(target, &dest)?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name()?
                    .ok_or_else(|| invalid(format!("{}: hard link without a target", raw.display())))?;
                let target_rel = sanitize(&target)?
                    .ok_or_else(|| invalid(format!("{}: hard link to the layer root", raw.display())))?;
                fs::hard_link(existing_path(root, &target_rel)?, &dest)?;
                continue; // a hard link shares its target's metadata
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let file_type = match kind {
                    EntryType::Char => libc::S_IFCHR,
                    EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let major = header.device_major()?.unwrap_or(0);
                let minor = header.device_minor()?.unwrap_or(0);
                mknod(&dest, file_type | 0o600, libc::makedev(major, minor))?;
            }
            other => return Err(invalid(format!("{}: unsupported tar entry type {other:?}", raw.display()))),
        }
        // Empty numeric fields mean 0, as Go's archive/tar (and so Docker) reads them.
        let id = |v: io::Result<u64>| {
            let v = v.unwrap_or(0);
            u32::try_from(v).map_err(|_| invalid(format!("{}: uid/gid {v} out of range", raw.display())))
        };
        lchown(&dest, id(header.uid())?, id(header.gid())?)?;
        if kind != EntryType::Symlink {
            // After chown, which clears set-id bits.
            fs::set_permissions(&dest, fs::Permissions::from_mode(header.mode()? & 0o7777))?;
        }
        let mtime = header.mtime().ok().and_then(|t| i64::try_from(t).ok()).unwrap_or(0);
        if kind == EntryType::Directory {
            dir_mtimes.push((dest, mtime));
        } else {
            set_mtime(&dest, mtime)?;
        }
    }
    // Last, and deepest first: creating entries inside a directory changes its mtime.
    for (dir, mtime) in dir_mtimes.into_iter().rev() {
        set_mtime(&dir, mtime)?;
    }
    Ok(())
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The entry's path relative to the layer root; `None` for the root itself.
fn sanitize(path: &Path) -> io::Result<Option<PathBuf>> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(invalid(format!("{}: entry refers outside the layer", path.display())))
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Creates the missing parent directories of `rel` under `root`, refusing to pass a symlink.
fn make_parent(root: &Path, rel: &Path) -> io::Result<PathBuf> {
    let mut dir = root.to_path_buf();
    for part in rel.parent().into_iter().flat_map(Path::components) {
        dir.push(part);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(invalid(format!(
                    "{}: a parent directory is a symlink; refusing to write through it",
                    rel.display()
                )))
            }
            Ok(_) => return Err(invalid(format!("{}: a parent is not a directory", rel.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&dir)?;
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(dir)
}

/// `root/rel`, which must exist and be reached without passing a symlink.
fn existing_path(root: &Path, rel: &Path) -> io::Result<PathBuf> {
    let mut path = root.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for (i, part) in parts.iter().enumerate() {
        path.push(part);
        let meta =
            fs::symlink_metadata(&path).map_err(|e| invalid(format!("hard link target {}: {e}", rel.display())))?;
        if i + 1 < parts.len() && !meta.is_dir() {
            return Err(invalid(format!("hard link target {}: a parent is not a plain directory", rel.display())));
        }
    }
    Ok(path)
}

fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| invalid(format!("{}: path contains a NUL byte", path.display())))
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn mknod(path: &Path, mode: libc::mode_t, dev: libc::dev_t) -> io::Result<()> {
    let p = c_path(path)?;
    // SAFETY: `p` is a valid NUL-terminated path for the duration of the call.
    check(unsafe { libc::mknod(p.as_ptr(), mode, dev) })
}

fn lchown(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let p = c_path(path)?;
    // SAFETY: as above; lchown does not follow a final symlink.
    check(unsafe { libc::lchown(p.as_ptr(), uid, gid) })
}

fn set_mtime(path: &Path, mtime: i64) -> io::Result<()> {
    let p = c_path(path)?;
    let times = [libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT }, libc::timespec { tv_sec: mtime, tv_nsec: 0 }];
    // SAFETY: `p` and `times` outlive the call; AT_SYMLINK_NOFOLLOW sets a symlink's own time.
    check(unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let p = c_path(path)?;
    let n = CString::new(name).expect("xattr names are constants without NUL");
    // SAFETY: all pointers are valid for the given lengths during the call.
    check(unsafe { libc::lsetxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    /// A tar entry whose name is written raw, so it can hold what `tar::Builder` refuses.
    fn raw_entry(tar: &mut tar::Builder<Vec<u8>>, name: &str, kind: EntryType, link: &str, data: &[u8]) {
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        header.set_cksum();
        tar.append(&header, data).expect("append");
    }

    fn unpack_entries(entries: &[(&str, EntryType, &str, &[u8])]) -> (tempfile::TempDir, io::Result<()>) {
        let mut tar = tar::Builder::new(Vec::new());
        for (name, kind, link, data) in entries {
            raw_entry(&mut tar, name, *kind, link, data);
        }
        let bytes = tar.into_inner().expect("tar");
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("root")).expect("mkdir");
        let result = unpack(&bytes[..], &dir.path().join("root"));
        (dir, result)
    }

    #[test]
    fn refuses_parent_components() {
        let (dir, result) = unpack_entries(&[("../evil", EntryType::Regular, "", b"x")]);
        assert_eq!(result.expect_err("must refuse").kind(), io::ErrorKind::InvalidData);
        assert!(!dir.path().join("evil").exists());
        let (_dir, result) = unpack_entries(&[("a/../../evil", EntryType::Regular, "", b"x")]);
        assert!(result.is_err());
    }

    #[test]
    fn refuses_writing_through_a_symlink() {
        let outside = tempfile::tempdir().expect("tempdir");
        let target = outside.path().display().to_string();
        let (_dir, result) = unpack_entries(&[
            ("escape", EntryType::Symlink, &target, b""),
            ("escape/pwned", EntryType::Regular, "", b"x"),
        ]);
        assert!(result.is_err());
        assert!(!outside.path().join("pwned").exists());
    }

    #[test]
    fn refuses_hard_links_outside() {
        let (_dir, result) = unpack_entries(&[("passwd", EntryType::Link, "../../../../etc/passwd", b"")]);
        assert!(result.is_err());
    }

    #[test]
    fn absolute_paths_stay_inside() {
        let (dir, result) = unpack_entries(&[("/etc/hostname", EntryType::Regular, "", b"box\n")]);
        result.expect("unpack");
        assert_eq!(fs::read(dir.path().join("root/etc/hostname")).expect("read"), b"box\n");
    }

    #[test]
    fn keeps_modes_ownership_links_and_whiteouts() {
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(EntryType::Directory);
        h.set_mode(0o750);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000);
        h.set_size(0);
        tar.append_data(&mut h, "bin", io::empty()).expect("dir");
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o4755);
        h.set_uid(1234);
        h.set_gid(5678);
        h.set_mtime(2_000_000);
        h.set_size(3);
        tar.append_data(&mut h, "bin/tool", &b"abc"[..]).expect("file");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(EntryType::Symlink);
        h.set_size(0);
        tar.append_link(&mut h, "bin/sh", "tool").expect("symlink");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(EntryType::Link);
        h.set_size(0);
        tar.append_link(&mut h, "bin/tool2", "bin/tool").expect("hardlink");
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(0);
        tar.append_data(&mut h, "etc/.wh.motd", io::empty()).expect("whiteout");
        let bytes = tar.into_inner().expect("tar");

        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        unpack(&bytes[..], root).expect("unpack");

        let tool = fs::symlink_metadata(root.join("bin/tool")).expect("tool");
        assert_eq!(tool.mode() & 0o7777, 0o4755);
        assert_eq!((tool.uid(), tool.gid()), (1234, 5678));
        assert_eq!(tool.mtime(), 2_000_000);
        assert_eq!(tool.nlink(), 2);
        let bin = fs::metadata(root.join("bin")).expect("bin");
        assert_eq!(bin.mode() & 0o7777, 0o750);
        assert_eq!(bin.mtime(), 1_000_000);
        assert_eq!(fs::read_link(root.join("bin/sh")).expect("link"), Path::new("tool"));
        let whiteout = fs::symlink_metadata(root.join("etc/motd")).expect("whiteout");
        assert!(whiteout.file_type().is_char_device());
        assert_eq!(whiteout.rdev(), 0);
    }
}
