//! Reading the files a deploy names (compose files, `.env` and `env_file` files, the files of
//! secrets and configs), each with a bound: the bound is checked as the file is read, never
//! after, so a file such as `/dev/zero` or a huge log named by mistake costs at most the bound
//! in memory and ends in an error that says the limit.

use std::io::{self, Read};
use std::path::Path;

/// The most a compose or environment file may hold (16 MiB: far beyond any real one).
pub const MAX_TEXT_FILE: u64 = 16 << 20;

/// Reads at most `limit` bytes of the file at `path`; a longer file is an error (of kind
/// `FileTooLarge`) that names the limit and `what` the file is for.
pub fn read_bounded(path: &Path, limit: u64, what: &str) -> io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut data = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut data)?;
    if data.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("it is larger than {} ({limit} bytes), the most {what} may hold", human(limit)),
        ));
    }
    Ok(data)
}

/// [`read_bounded`] for a text file: its content must be UTF-8.
pub fn read_text_bounded(path: &Path, limit: u64, what: &str) -> io::Result<String> {
    String::from_utf8(read_bounded(path, limit, what)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "it is not UTF-8 text"))
}

/// `500 KiB`, `16 MiB`: the limit as people read it.
fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b.is_multiple_of(1 << 20) => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b.is_multiple_of(1 << 10) => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endless_files_end_at_the_bound() {
        let err = read_bounded(Path::new("/dev/zero"), 500 * 1024, "a secret").expect_err("endless");
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert!(err.to_string().contains("500 KiB (512000 bytes), the most a secret may hold"), "{err}");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f");
        std::fs::write(&file, "1234").expect("write");
        assert_eq!(read_bounded(&file, 4, "x").ok(), Some(b"1234".to_vec()));
        assert!(read_bounded(&file, 3, "x").is_err());
        std::fs::write(&file, [0xff, 0xfe]).expect("write");
        assert_eq!(read_text_bounded(&file, 4, "x").map_err(|e| e.kind()), Err(io::ErrorKind::InvalidData));
        assert_eq!(human(MAX_TEXT_FILE), "16 MiB");
    }
}
