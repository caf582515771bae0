//! `image import`: a root filesystem (a directory, or a tar optionally gzipped) becomes a
//! one-layer image. A directory is archived into an uncompressed, deterministic (sorted) tar; a
//! tar is stored as-is and a gzipped one decompressed, so the layer digest is also its diff id.
//! The layer is unpacked right away, so a broken archive fails the import, not a later start.

use std::{
    collections::HashMap,
    fs,
    io::{self, BufRead, BufReader, Read, Write},
    os::unix::fs::{FileTypeExt, MetadataExt},
    path::{Path, PathBuf},
};

use oci_spec::image::{
    Config, HistoryBuilder, ImageConfigurationBuilder, ImageManifestBuilder, MediaType, Os, RootFsBuilder,
};

use super::{
    changes::CommitChanges,
    reference::Reference,
    space,
    store::{Image, ImageStore},
};
use crate::{
    clock,
    error::{Error, IoContext},
    snapshot::Snapshotter,
};

/// Imports `src` (called `shown` in errors: its path, or "the upload") as a one-layer image
/// named `reference`, its config set by `changes`.
pub(crate) fn import(
    store: &ImageStore,
    snapshots: &Snapshotter,
    src: &Path,
    shown: &str,
    reference: &Reference,
    changes: &CommitChanges,
) -> Result<Image, Error> {
    let meta = fs::metadata(src).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            Error::invalid(format!("cannot import {shown}: no such file or directory"))
        } else {
            Error::io(format!("reading {shown}"), e)
        }
    })?;
    let lease = store.lease()?;
    let layer = if meta.is_dir() {
        let writer = archive_directory(src, store.blob_writer(&lease)?)?;
        writer.commit(MediaType::ImageLayer)?
    } else {
        let mut writer = store.blob_writer(&lease)?;
        copy_tar(src, shown, &mut writer)?;
        writer.commit(MediaType::ImageLayer)?
    };
    let diff_id = layer.digest().to_string();
    snapshots.ensure_layer(&diff_id, &store.blob_path(&layer)?, layer.media_type()).map_err(|e| match e {
        Error::InvalidArgument { message } => Error::invalid(format!("cannot import {shown}: {message}")),
        other => other,
    })?;

    let created = clock::format_rfc3339(clock::now_ns());
    let mut process = Config::default();
    changes.apply(&mut process);
    let config = ImageConfigurationBuilder::default()
        .created(created.clone())
        .os(Os::Linux)
        .config(process)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![diff_id])
                .build()
                .expect("a rootfs with type and diff ids is complete"),
        )
        .history(vec![HistoryBuilder::default()
            .created(created)
            .created_by("shoal image import")
            .build()
            .expect("history entries have no required fields")])
        .build()
        .expect("image configs have no required fields");
    let config = store.write_blob(
        &lease,
        MediaType::ImageConfig,
        &serde_json::to_vec(&config).expect("image configs always serialize"),
    )?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(vec![layer])
        .build()
        .expect("a manifest with schema version, config and layers is complete");
    let manifest = store.write_blob(
        &lease,
        MediaType::ImageManifest,
        &serde_json::to_vec(&manifest).expect("manifests always serialize"),
    )?;
    store.tag(reference, &manifest)?;
    store.resolve(&reference.to_string())?.ok_or_else(|| Error::ImageNotFound { reference: reference.to_string() })
}

/// Copies a tar (decompressing gzip, detected by its magic bytes) into `out`. What is not a
/// tar at all is refused at its first block, before it is copied; a stream that breaks off
/// later is refused when the layer is unpacked.
fn copy_tar(src: &Path, shown: &str, out: &mut impl Write) -> Result<(), Error> {
    let file = fs::File::open(src).context(|| format!("opening {shown}"))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let head = reader.fill_buf().context(|| format!("reading {shown}"))?;
    if head.is_empty() {
        return Err(Error::invalid(format!("cannot import {shown}: it is empty, not a tar archive")));
    }
    let gzipped = head.starts_with(&[0x1f, 0x8b]);
    let mut reader: Box<dyn Read> =
        if gzipped { Box::new(flate2::bufread::MultiGzDecoder::new(reader)) } else { Box::new(reader) };
    let not_tar = |why: String| {
        Error::invalid(format!(
            "cannot import {shown}: {why}; give a root filesystem as a directory or a tar archive (optionally gzipped)"
        ))
    };
    let mut first = [0u8; 512];
    let mut filled = 0;
    while filled < first.len() {
        match reader.read(&mut first[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(not_tar(format!("its gzip stream is damaged ({e})"))),
        }
    }
    if filled < first.len() || !is_tar_header(&first) {
        return Err(not_tar("it is not a tar archive (its first block is no tar header)".to_string()));
    }
    let write_err = |e: io::Error| space::io_error(e, || format!("storing {shown} in the image store"));
    out.write_all(&first).map_err(write_err)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if gzipped => return Err(not_tar(format!("its gzip stream is damaged ({e})"))),
            Err(e) => return Err(Error::io(format!("reading {shown}"), e)),
        };
        out.write_all(&buf[..n]).map_err(write_err)?;
    }
}

/// Whether `block` is a tar header (its checksum holds, as tar readers check it) or the zero
/// block that ends an archive (an empty one).
fn is_tar_header(block: &[u8; 512]) -> bool {
    if block.iter().all(|&b| b == 0) {
        return true;
    }
    let field = &block[148..156];
    let digits: Vec<u8> =
        field.iter().copied().skip_while(|&b| b == b' ').take_while(|b| (b'0'..=b'7').contains(b)).collect();
    let Some(stored) =
        std::str::from_utf8(&digits).ok().filter(|d| !d.is_empty()).and_then(|d| u32::from_str_radix(d, 8).ok())
    else {
        return false;
    };
    // The checksum is computed with its own field taken as spaces; some old writers summed
    // signed bytes.
    let unsigned: u32 =
        block.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u32::from(b) }).sum();
    let signed: i64 =
        block.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { i64::from(b as i8) }).sum();
    stored == unsigned || i64::from(stored) == signed
}

/// Archives the contents of `root` (not `root` itself) as a tar with entries sorted by path,
/// keeping modes, ownership, mtimes, symlinks, hard links and device nodes. Sockets are skipped.
pub(crate) fn archive_directory<W: Write>(root: &Path, out: W) -> Result<W, Error> {
    archive(root, out, None)
}

/// Archives an overlayfs upper directory as a layer: its whiteouts (0/0 character devices)
/// become `.wh.<name>` entries and its opaque directories (`trusted.overlay.opaque=y`) get a
/// `.wh..wh..opq` entry. Empty files and directories at `mount_points` (paths relative to
/// `root`, which the runtime created only to mount over) are left out.
pub(crate) fn archive_overlay_upper<W: Write>(root: &Path, out: W, mount_points: &[PathBuf]) -> Result<W, Error> {
    archive(root, out, Some(mount_points))
}

fn archive<W: Write>(root: &Path, out: W, overlay: Option<&[PathBuf]>) -> Result<W, Error> {
    let mut builder = tar::Builder::new(out);
    let mut hard_links = HashMap::new();
    append_children(&mut builder, root, Path::new(""), &mut hard_links, overlay)?;
    builder.into_inner().context(|| format!("archiving {}", root.display()))
}

/// Appends an empty regular file entry (a whiteout marker).
fn append_marker<W: Write>(builder: &mut tar::Builder<W>, rel: &Path) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o600);
    header.set_size(0);
    builder.append_data(&mut header, rel, io::empty())
}

fn is_opaque(path: &Path) -> bool {
    let Ok(p) = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str())) else {
        return false;
    };
    let mut value = [0u8; 4];
    // SAFETY: `p` is NUL-terminated and `value` is writable for its length during the call.
    let n = unsafe {
        libc::lgetxattr(p.as_ptr(), c"trusted.overlay.opaque".as_ptr(), value.as_mut_ptr().cast(), value.len())
    };
    n == 1 && value[0] == b'y'
}

fn append_children<W: Write>(
    builder: &mut tar::Builder<W>,
    dir: &Path,
    rel_dir: &Path,
    hard_links: &mut HashMap<(u64, u64), PathBuf>,
    overlay: Option<&[PathBuf]>,
) -> Result<(), Error> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).context(|| format!("listing {}", dir.display()))? {
        names.push(entry.context(|| format!("listing {}", dir.display()))?.file_name());
    }
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let rel = rel_dir.join(&name);
        let context = || format!("archiving {}", path.display());
        let meta = fs::symlink_metadata(&path).context(context)?;
        let file_type = meta.file_type();
        if let Some(mount_points) = overlay {
            if file_type.is_char_device() && meta.rdev() == 0 {
                let mut marker = name.clone();
                marker.clear();
                marker.push(".wh.");
                marker.push(&name);
                append_marker(builder, &rel_dir.join(marker)).context(context)?;
                continue;
            }
            let empty = if file_type.is_dir() {
                fs::read_dir(&path).map(|mut d| d.next().is_none()).unwrap_or(false)
            } else {
                file_type.is_file() && meta.len() == 0
            };
            if empty && mount_points.contains(&rel) && !is_opaque(&path) {
                continue;
            }
        }
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        header.set_size(0);
        if file_type.is_dir() {
            builder.append_data(&mut header, &rel, io::empty()).context(context)?;
            if overlay.is_some() && is_opaque(&path) {
                append_marker(builder, &rel.join(".wh..wh..opq")).context(context)?;
            }
            append_children(builder, &path, &rel, hard_links, overlay)?;
        } else if file_type.is_symlink() {
            let target = fs::read_link(&path).context(context)?;
            builder.append_link(&mut header, &rel, &target).context(context)?;
        } else if file_type.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = hard_links.get(&key) {
                    header.set_entry_type(tar::EntryType::Link);
                    builder.append_link(&mut header, &rel, first).context(context)?;
                    continue;
                }
                hard_links.insert(key, rel.clone());
            }
            let file = fs::File::open(&path).context(context)?;
            header.set_size(meta.len());
            builder.append_data(&mut header, &rel, file.take(meta.len())).context(context)?;
        } else if file_type.is_char_device() || file_type.is_block_device() || file_type.is_fifo() {
            let rdev = meta.rdev();
            header
                .set_device_major(libc::major(rdev))
                .and_then(|()| header.set_device_minor(libc::minor(rdev)))
                .context(context)?;
            builder.append_data(&mut header, &rel, io::empty()).context(context)?;
        }
        // Sockets cannot be archived and mean nothing in an image: skipped.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn archives_sorted_with_links_and_modes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::create_dir(root.join("bin")).expect("mkdir");
        fs::write(root.join("bin/tool"), b"#!/bin/sh\n").expect("write");
        fs::set_permissions(root.join("bin/tool"), fs::Permissions::from_mode(0o4755)).expect("chmod");
        fs::hard_link(root.join("bin/tool"), root.join("bin/tool2")).expect("link");
        symlink("tool", root.join("bin/alias")).expect("symlink");
        fs::write(root.join("a"), b"x").expect("write");

        let tar = archive_directory(root, Vec::new()).expect("archive");
        let mut archive = tar::Archive::new(&tar[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().expect("entries") {
            let entry = entry.expect("entry");
            let h = entry.header();
            seen.push((
                entry.path().expect("path").display().to_string(),
                h.entry_type(),
                h.mode().expect("mode") & 0o7777,
                entry.link_name().expect("link").map(|l| l.display().to_string()),
            ));
        }
        let names: Vec<_> = seen.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(names, ["a", "bin", "bin/alias", "bin/tool", "bin/tool2"]);
        assert_eq!(seen[2].1, tar::EntryType::Symlink);
        assert_eq!(seen[2].3.as_deref(), Some("tool"));
        assert_eq!(seen[3].2, 0o4755);
        assert_eq!(seen[4].1, tar::EntryType::Link);
        assert_eq!(seen[4].3.as_deref(), Some("bin/tool"));

        // Deterministic: archiving again gives the same bytes, hence the same digest.
        assert_eq!(tar, archive_directory(root, Vec::new()).expect("archive"));
    }
}
