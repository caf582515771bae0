//! Small JSON state files (config, state, exit status, the image index): read whole, and replaced
//! atomically (temp file, fsync, rename) so a reader or a restarted daemon sees the old content
//! or the new one, never a torn file; and the sweeping of temp files such writes leave behind.

use std::{
    fs,
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::Path,
    time::{Duration, SystemTime},
};

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, IoContext};

/// Reads and parses `path`; `Ok(None)` when the file does not exist.
pub(crate) fn read<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, Error> {
    let data = match fs::read(path) {
        Ok(data) => data,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    serde_json::from_slice(&data).map(Some).map_err(|e| Error::corrupt(path, e.to_string()))
}

/// Reads a file written by [`write_volatile`]: an empty file (its data lost to a power cut
/// before the kernel wrote it out) is as good as none.
pub(crate) fn read_volatile<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, Error> {
    let data = match fs::read(path) {
        Ok(data) if data.is_empty() => return Ok(None),
        Ok(data) => data,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    serde_json::from_slice(&data).map(Some).map_err(|e| Error::corrupt(path, e.to_string()))
}

/// Serializes `value` and atomically replaces `path` with it, durably (fsync before the
/// rename): for what must survive a power cut.
pub(crate) fn write<T: Serialize>(path: &Path, value: &T) -> Result<(), Error> {
    write_bytes(path, &encode(path, value)?)
}

/// Serializes `value` and atomically replaces `path` with it, without waiting for the disk:
/// for the record of processes (a container's start and exit), which a power cut makes moot
/// anyway, and which is on every container's start path. Readers see the old content or the
/// new, never a torn file; after a power cut, possibly an empty one ([`read_volatile`]).
pub(crate) fn write_volatile<T: Serialize>(path: &Path, value: &T) -> Result<(), Error> {
    replace(path, &encode(path, value)?, false)
}

fn encode<T: Serialize>(path: &Path, value: &T) -> Result<Vec<u8>, Error> {
    let mut data = serde_json::to_vec(value)
        .map_err(|e| Error::io(format!("encoding {}", path.display()), io::Error::other(e)))?;
    data.push(b'\n');
    Ok(data)
}

/// Atomically and durably replaces `path` with `data`.
pub(crate) fn write_bytes(path: &Path, data: &[u8]) -> Result<(), Error> {
    replace(path, data, true)
}

/// Atomically replaces `path` with `data`, without waiting for the disk (see
/// [`write_volatile`]).
pub(crate) fn write_bytes_volatile(path: &Path, data: &[u8]) -> Result<(), Error> {
    replace(path, data, false)
}

fn replace(path: &Path, data: &[u8], durable: bool) -> Result<(), Error> {
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}-{:08x}", std::process::id(), rand::random::<u32>()));
    let result = (|| {
        let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&tmp)?;
        file.write_all(data)?;
        if durable {
            file.sync_all()?;
        }
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.context(|| format!("writing {}", path.display()))
}

/// Leftovers older than this are from an interrupted write, not one in progress (another
/// `Runtime` on the same root may be writing right now).
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// Removes entries of `dir` whose name passes `matches` and that were last modified more than
/// an hour ago: temp files and directories of writes a crash interrupted.
pub(crate) fn remove_stale(dir: &Path, matches: impl Fn(&str) -> bool) -> Result<(), Error> {
    let context = || format!("cleaning up {}", dir.display());
    for entry in fs::read_dir(dir).context(context)? {
        let entry = entry.context(context)?;
        if !matches(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let meta = entry.metadata().context(context)?;
        let age = meta.modified().ok().and_then(|m| SystemTime::now().duration_since(m).ok());
        if age.is_some_and(|age| age > STALE_AFTER) {
            let path = entry.path();
            if meta.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) }
                .context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}
