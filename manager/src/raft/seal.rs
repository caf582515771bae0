//! Raft's state encrypted at rest, as Swarm keeps its raft log: every log
//! entry and the latest snapshot are sealed with AES-256-GCM under a key of
//! this manager's own (`<state>/raft.key`, 32 random bytes, mode 0600, made
//! when the state is first opened). So the secrets and configs in the store
//! are never in plain text on disk; between managers they travel under
//! mutual TLS.
//!
//! A sealed record is [`SEALED`] · a 12-byte nonce · the ciphertext and its
//! tag. A log entry's nonce is its index and 4 random bytes, and the index is
//! also authenticated, so that an entry cannot be moved to another place in
//! the log; a snapshot's nonce is random. Records written before sealing (a
//! format byte of their own) still read.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// The format byte of a sealed record.
pub const SEALED: u8 = 0xB2;

/// What sealing or opening a record ran into.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "the raft key {path} is damaged ({len} bytes, expected 32): restore it from a backup of this manager, or \
         remove this manager's state and join it again"
    )]
    BadKey { path: PathBuf, len: usize },
    #[error(
        "the raft key {path} is missing, but raft state sealed with it is there: restore the key from a backup of \
         this manager, or remove this manager's state and join it again"
    )]
    MissingKey { path: PathBuf },
    #[error("{what} does not open with this manager's raft key (damaged, or sealed with another key)")]
    Open { what: String },
    #[error("sealing {what} failed")]
    Seal { what: String },
}

/// The key that seals this manager's raft state.
pub struct Sealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

impl Sealer {
    /// Reads the key at `path`, or makes one if there is none and nothing
    /// sealed exists yet (`sealed_data`: whether the state holds sealed records).
    pub fn open(path: &Path, sealed_data: bool) -> Result<Sealer, SealError> {
        let io = |source| SealError::Io { path: path.to_path_buf(), source };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if sealed_data {
                    return Err(SealError::MissingKey { path: path.to_path_buf() });
                }
                let rng = SystemRandom::new();
                let mut key = [0u8; 32];
                rng.fill(&mut key).map_err(|_| io(std::io::Error::other("no random bytes for a key")))?;
                // Written whole under another name, then renamed: a crash leaves no half key.
                let partial = path.with_extension("key.partial");
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&partial)
                    .map_err(io)?;
                file.write_all(&key).and_then(|()| file.sync_all()).map_err(io)?;
                std::fs::rename(&partial, path).map_err(io)?;
                if let Some(dir) = path.parent() {
                    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
                }
                key.to_vec()
            }
            Err(e) => return Err(io(e)),
        };
        let unbound = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| SealError::BadKey { path: path.to_path_buf(), len: bytes.len() })?;
        Ok(Sealer { key: LessSafeKey::new(unbound), rng: SystemRandom::new() })
    }

    fn seal(&self, nonce: [u8; NONCE_LEN], aad: &[u8], plain: &[u8], what: &str) -> Result<Vec<u8>, SealError> {
        let mut out = Vec::with_capacity(1 + NONCE_LEN + plain.len() + AES_256_GCM.tag_len());
        out.push(SEALED);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut out[1 + NONCE_LEN..])
            .map_err(|_| SealError::Seal { what: what.to_string() })?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    fn open_sealed(&self, sealed: &[u8], aad: &[u8], what: &str) -> Result<Vec<u8>, SealError> {
        let failed = || SealError::Open { what: what.to_string() };
        let rest = sealed.strip_prefix(&[SEALED]).ok_or_else(failed)?;
        let (nonce, ciphertext) = rest.split_at_checked(NONCE_LEN).ok_or_else(failed)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| failed())?;
        let mut buf = ciphertext.to_vec();
        let plain_len = self.key.open_in_place(nonce, Aad::from(aad), &mut buf).map_err(|_| failed())?.len();
        buf.truncate(plain_len);
        Ok(buf)
    }

    /// Seals log entry `index`'s bytes.
    pub fn seal_entry(&self, index: u64, plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..8].copy_from_slice(&index.to_le_bytes());
        self.rng.fill(&mut nonce[8..]).map_err(|_| SealError::Seal { what: format!("raft log entry {index}") })?;
        self.seal(nonce, &index.to_le_bytes(), plain, &format!("raft log entry {index}"))
    }

    /// Opens log entry `index`'s sealed bytes.
    pub fn open_entry(&self, index: u64, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        self.open_sealed(sealed, &index.to_le_bytes(), &format!("raft log entry {index}"))
    }

    /// Seals a snapshot.
    pub fn seal_snapshot(&self, plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SealError::Seal { what: "the raft snapshot".into() })?;
        self.seal(nonce, b"snapshot", plain, "the raft snapshot")
    }

    /// Opens a sealed snapshot.
    pub fn open_snapshot(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        self.open_sealed(sealed, b"snapshot", "the raft snapshot")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_open_only_with_their_key_and_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.key");
        let sealer = Sealer::open(&path, false).expect("new key");
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).expect("key").permissions());
        assert_eq!(mode & 0o777, 0o600);

        let sealed = sealer.seal_entry(7, b"the secret").expect("seal");
        assert_eq!(sealed[0], SEALED);
        assert!(!sealed.windows(10).any(|w| w == b"the secret"), "plain text in the sealed record");
        assert_eq!(sealer.open_entry(7, &sealed).expect("open"), b"the secret");
        // Bound to its place in the log, and to its bytes.
        assert!(matches!(sealer.open_entry(8, &sealed), Err(SealError::Open { .. })));
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(sealer.open_entry(7, &flipped).is_err());
        assert!(sealer.open_entry(7, &sealed[..5]).is_err());

        // The same key after a reopen; another key opens nothing.
        let again = Sealer::open(&path, true).expect("existing key");
        assert_eq!(again.open_snapshot(&sealer.seal_snapshot(b"store").expect("seal")).expect("open"), b"store");
        let other = Sealer::open(&dir.path().join("other.key"), false).expect("other key");
        assert!(other.open_entry(7, &sealed).is_err());

        // A missing key where sealed state exists, and a damaged one, are named.
        let err = Sealer::open(&dir.path().join("gone.key"), true).expect_err("missing");
        assert!(err.to_string().contains("is missing"), "{err}");
        std::fs::write(&path, b"short").expect("damage");
        let err = Sealer::open(&path, true).expect_err("damaged");
        assert!(err.to_string().contains("damaged (5 bytes"), "{err}");
    }
}
