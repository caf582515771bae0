//! Attaching to a container's stdio: the wire format between a container's shim and whoever
//! attaches to it (the daemon, on behalf of `attach` and `run -i`/`-t` clients).
//!
//! The shim serves `attach.sock` in the container's directory while the container runs, and a
//! client handed over at start ([`crate::Runtime::start_container_attached`]) is attached
//! before the command runs, so it misses nothing. Both directions carry frames with the 8-byte
//! header of Docker's multiplexed stream, `[kind, 0, 0, 0, length: u32 big-endian]`, then the
//! payload:
//!
//! - shim → client: [`STDOUT`] and [`STDERR`] output (with a tty, all output is [`STDOUT`]);
//!   the stream ends when the container's output does;
//! - client → shim: [`STDIN`] data, [`CLOSE_STDIN`] (the container's stdin gets EOF if it was
//!   created with `stdin_once`), [`RESIZE`] (rows then columns, each a big-endian u16).
//!
//! Every attached client gets every output frame; any client may write stdin.

use std::os::fd::AsRawFd;

/// The attach socket of the container whose directory is open as `dir`, as a path short
/// enough for a socket address whatever the directory's own path.
pub(crate) fn socket_path(dir: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}/{}", dir.as_raw_fd(), crate::container::ContainerPaths::ATTACH_SOCKET)
}

/// Input for the container's stdin (client → shim).
pub const STDIN: u8 = 0;
/// The container's stdout (shim → client).
pub const STDOUT: u8 = 1;
/// The container's stderr (shim → client).
pub const STDERR: u8 = 2;
/// The client's input ended (client → shim).
pub const CLOSE_STDIN: u8 = 3;
/// The client's terminal changed size (client → shim).
pub const RESIZE: u8 = 4;

/// Length of a frame header.
pub const HEADER_LEN: usize = 8;
/// The largest payload a reader accepts; bigger frames mean the peer speaks something else.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// The header of a frame of `kind` carrying `len` bytes.
pub fn header(kind: u8, len: usize) -> [u8; HEADER_LEN] {
    let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    [kind, 0, 0, 0, len[0], len[1], len[2], len[3]]
}

/// A whole frame.
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&header(kind, payload.len()));
    out.extend_from_slice(payload);
    out
}

/// A [`RESIZE`] frame.
pub fn resize_frame(rows: u16, cols: u16) -> Vec<u8> {
    let [r0, r1] = rows.to_be_bytes();
    let [c0, c1] = cols.to_be_bytes();
    frame(RESIZE, &[r0, r1, c0, c1])
}

/// Rows and columns from a [`RESIZE`] payload.
pub fn parse_resize(payload: &[u8]) -> Option<(u16, u16)> {
    match payload {
        [r0, r1, c0, c1] => Some((u16::from_be_bytes([*r0, *r1]), u16::from_be_bytes([*c0, *c1]))),
        _ => None,
    }
}

/// Cuts a byte stream into frames.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

/// The peer sent something that is not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the attach stream is damaged: a frame of {0} bytes is over the limit of {MAX_PAYLOAD}")]
pub struct BadFrame(pub usize);

impl FrameReader {
    /// Adds bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<(u8, Vec<u8>)>, BadFrame> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(BadFrame(len));
        }
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let kind = self.buf[0];
        let payload = self.buf[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.buf.drain(..HEADER_LEN + len);
        Ok(Some((kind, payload)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_across_reads() {
        let mut stream = frame(STDOUT, b"hello");
        stream.extend(resize_frame(24, 80));
        stream.extend(frame(CLOSE_STDIN, b""));
        let mut reader = FrameReader::default();
        let mut got = Vec::new();
        for byte in stream {
            reader.push(&[byte]);
            while let Some(f) = reader.next_frame().expect("valid frames") {
                got.push(f);
            }
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (STDOUT, b"hello".to_vec()));
        assert_eq!(got[1].0, RESIZE);
        assert_eq!(parse_resize(&got[1].1), Some((24, 80)));
        assert_eq!(got[2], (CLOSE_STDIN, Vec::new()));
        assert_eq!(parse_resize(b"abc"), None);

        let mut bad = FrameReader::default();
        bad.push(&header(STDIN, MAX_PAYLOAD + 1));
        assert_eq!(bad.next_frame(), Err(BadFrame(MAX_PAYLOAD + 1)));
    }
}
