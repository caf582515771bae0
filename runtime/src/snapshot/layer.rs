//! Applying one layer tar to an empty directory, safely: no entry may land outside the
//! directory. Every path an entry names (its own, a hard link's target, a whiteout's) is made
//! by [`crate::confine`]: `..` components are refused, absolute paths are taken as relative to
//! the layer root, and nothing is written through a symlink that an earlier entry created.
//! Modes, ownership, mtimes, symlinks, hard links and device nodes are kept, and OCI whiteouts
//! become overlayfs whiteouts (`.wh.NAME` → a 0/0 character device, `.wh..wh..opq` → the
//! `trusted.overlay.opaque` xattr). A layer whose content cannot be what it claims (a
//! whiteout of `.` or `..`, a hard link to a directory, a damaged tar stream) is refused with
//! an `InvalidData` error naming the entry.

use std::{
    ffi::{CString, OsStr},
    fs,
    io::{self, Read, Write},
    os::unix::{
        ffi::OsStrExt,
        fs::{symlink, OpenOptionsExt, PermissionsExt},
    },
    path::{Component, Path, PathBuf},
};

use tar::EntryType;

use crate::confine;

/// What an entry is called in refusals.
const ENTRY: &str = "layer entry";
/// The whiteout prefix, and aufs's metadata prefix (`.wh..wh.`), of which only the opaque
/// marker means anything to overlayfs.
const WHITEOUT: &[u8] = b".wh.";
const WHITEOUT_META: &[u8] = b".wh..wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

/// Unpacks the tar stream `reader` into `root`, which should be empty.
pub(crate) fn unpack<R: Read>(reader: R, root: &Path) -> io::Result<()> {
    let mut archive = tar::Archive::new(reader);
    let mut dir_mtimes = Vec::new();
    for entry in archive.entries().map_err(damaged)? {
        let mut entry = entry.map_err(damaged)?;
        let raw = entry.path().map_err(damaged)?.into_owned();
        let Some(rel) = entry_path(&raw)? else {
            continue; // the layer root itself
        };
        let name = rel.file_name().expect("a confined relative path ends in a normal component").to_owned();
        let parent = make_parent(root, &rel)?;
        let dest = parent.join(&name);

        let bytes = name.as_bytes();
        if bytes == OPAQUE {
            set_xattr(&parent, "trusted.overlay.opaque", b"y")?;
            continue;
        }
        if bytes.starts_with(WHITEOUT_META) {
            continue; // aufs's own bookkeeping (`.wh..wh.plnk`, …), as Docker skips it
        }
        if let Some(hidden) = bytes.strip_prefix(WHITEOUT) {
            // `.wh..` or `.wh...` would "delete" the directory itself or its parent.
            let hidden = confine::component(OsStr::from_bytes(hidden), "whiteout")
                .map_err(|e| invalid(format!("{}: {e}", raw.display())))?;
            let target = parent.join(hidden);
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
                copy_content(&mut entry, &mut file, &raw)?;
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
                let target_rel = entry_path(&target)?
                    .ok_or_else(|| invalid(format!("{}: hard link to the layer root", raw.display())))?;
                fs::hard_link(link_target(root, &target_rel, &raw)?, &dest)?;
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

/// An error reading the tar stream: the layer's content is at fault, not the host.
fn damaged(e: io::Error) -> io::Error {
    invalid(format!("the layer is not a valid tar stream: {e}"))
}

/// Copies an entry's content, telling a damaged stream (invalid data) from a failed write.
fn copy_content(entry: &mut impl Read, file: &mut fs::File, raw: &Path) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(invalid(format!("{}: the layer ends inside this entry or is damaged: {e}", raw.display())))
            }
        };
        file.write_all(&buf[..n])?;
    }
}

/// The entry's path relative to the layer root (by [`confine::relative`], a leading `/`
/// taken as the layer root, as tar tools do); `None` for the root itself.
fn entry_path(path: &Path) -> io::Result<Option<PathBuf>> {
    let below_root: PathBuf =
        path.components().skip_while(|c| matches!(c, Component::RootDir | Component::CurDir)).collect();
    if below_root.components().all(|c| c == Component::CurDir) {
        return Ok(None);
    }
    Ok(Some(confine::relative(&below_root, ENTRY)?))
}

/// Creates the missing parent directories of `rel` under `root`, each made by
/// [`confine::child`] (so never a symlink); an existing non-directory parent is refused.
fn make_parent(root: &Path, rel: &Path) -> io::Result<PathBuf> {
    let mut dir = root.to_path_buf();
    for part in rel.parent().into_iter().flat_map(Path::components) {
        dir = confine::child(&dir, part.as_os_str(), ENTRY).map_err(|e| invalid(format!("{}: {e}", rel.display())))?;
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
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

/// `root/rel` for a hard link's target: its directory reached without a symlink
/// ([`confine::beneath`]), the target itself existing and not a directory (which no hard link
/// may name). It may be a symlink: `link` does not follow it, the link is to the symlink.
fn link_target(root: &Path, rel: &Path, raw: &Path) -> io::Result<PathBuf> {
    let refused = |e: &dyn std::fmt::Display| invalid(format!("{}: {e}", raw.display()));
    let name = rel.file_name().ok_or_else(|| refused(&"a hard link must name a file"))?;
    let dir = match rel.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => confine::beneath(root, parent, "hard link target").map_err(|e| refused(&e))?,
        None => root.to_path_buf(),
    };
    let path = dir.join(confine::component(name, "hard link target").map_err(|e| refused(&e))?);
    match fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_dir() => {
            Err(invalid(format!("{}: hard link to the directory {}", raw.display(), rel.display())))
        }
        Ok(_) => Ok(path),
        Err(e) => Err(invalid(format!("{}: hard link target {}: {e}", raw.display(), rel.display()))),
    }
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

    /// Unpacks into `<tmp>/layers/new` next to an unpacked layer `<tmp>/layers/other` and a
    /// marker `<tmp>/marker`; returns the temp dir and the result.
    fn unpack_beside_others(entries: &[(&str, EntryType, &str, &[u8])]) -> (tempfile::TempDir, io::Result<()>) {
        let mut tar = tar::Builder::new(Vec::new());
        for (name, kind, link, data) in entries {
            raw_entry(&mut tar, name, *kind, link, data);
        }
        let bytes = tar.into_inner().expect("tar");
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("layers/other/etc")).expect("mkdir");
        fs::write(dir.path().join("layers/other/etc/passwd"), b"root").expect("write");
        fs::write(dir.path().join("marker"), b"keep").expect("write");
        fs::create_dir(dir.path().join("layers/new")).expect("mkdir");
        let result = unpack(&bytes[..], &dir.path().join("layers/new"));
        (dir, result)
    }

    fn others_intact(dir: &Path) {
        assert_eq!(fs::read(dir.join("layers/other/etc/passwd")).expect("the other layer stays"), b"root");
        assert_eq!(fs::read(dir.join("marker")).expect("the marker stays"), b"keep");
    }

    #[test]
    fn whiteouts_of_the_directory_itself_are_refused() {
        for name in [".wh...", "sub/.wh...", ".wh..", "sub/.wh..", ".wh.", "sub/.wh."] {
            let (dir, result) = unpack_beside_others(&[
                ("sub/", EntryType::Directory, "", b""),
                ("sub/file", EntryType::Regular, "", b"x"),
                (name, EntryType::Regular, "", b""),
            ]);
            let err = result.expect_err(name);
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{name}: {err}");
            assert!(err.to_string().contains(name), "{name}: {err}");
            others_intact(dir.path());
            assert!(dir.path().join("layers/new").is_dir(), "{name}");
        }
    }

    #[test]
    fn hard_links_stay_inside_and_to_files() {
        for (target, why) in [("../other/etc/passwd", "outside"), ("/../../marker", "outside"), ("sub", "directory")] {
            let (dir, result) = unpack_beside_others(&[
                ("sub/", EntryType::Directory, "", b""),
                ("link", EntryType::Link, target, b""),
            ]);
            let err = result.expect_err(target);
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{target} ({why}): {err}");
            others_intact(dir.path());
        }
    }

    #[test]
    fn hard_links_may_name_a_symlink_but_not_pass_one() {
        let (dir, result) = unpack_beside_others(&[
            ("target", EntryType::Symlink, "/etc/passwd", b""),
            ("link", EntryType::Link, "target", b""),
        ]);
        result.expect("a hard link to a symlink is the symlink again");
        let link = fs::symlink_metadata(dir.path().join("layers/new/link")).expect("the link");
        assert!(link.file_type().is_symlink());
        let (dir, result) = unpack_beside_others(&[
            ("up", EntryType::Symlink, "..", b""),
            ("link", EntryType::Link, "up/other/etc/passwd", b""),
        ]);
        assert_eq!(result.expect_err("through a symlink").kind(), io::ErrorKind::InvalidData);
        others_intact(dir.path());
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
