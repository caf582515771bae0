//! Reading Docker's multiplexed log streams (`stdcopy` frames) as they
//! arrive, for `service logs` and `container logs`.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::client::Client;

/// Reassembles Docker's multiplexed log stream (`stdcopy` frames) from
/// chunks that may split frames anywhere.
#[derive(Default)]
struct Demux {
    buf: Vec<u8>,
}

impl Demux {
    /// Adds a chunk; returns the complete (stream, text) frames so far.
    fn push(&mut self, chunk: &[u8]) -> Vec<(u8, String)> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut at = 0;
        while self.buf.len() - at >= 8 {
            let h = &self.buf[at..at + 8];
            let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
            if self.buf.len() - at - 8 < len {
                break;
            }
            out.push((h[0], String::from_utf8_lossy(&self.buf[at + 8..at + 8 + len]).into_owned()));
            at += 8 + len;
        }
        self.buf.drain(..at);
        out
    }
}

/// Streams `path` and yields its (stream, line) frames as they arrive; the
/// handle gives the request's outcome once the stream ends.
pub fn stream(
    client: &Client,
    path: String,
) -> (mpsc::UnboundedReceiver<(u8, String)>, JoinHandle<anyhow::Result<()>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = client.clone();
    let handle = tokio::spawn(async move {
        let mut demux = Demux::default();
        client
            .get_stream(&path, |chunk| {
                for frame in demux.push(chunk) {
                    let _ = tx.send(frame);
                }
            })
            .await
    });
    (rx, handle)
}

/// Prints a frame: stdout frames to stdout, the rest to stderr.
pub fn print_frame(stream: u8, text: &str) {
    use std::io::Write;
    if stream == 1 {
        print!("{text}");
        let _ = std::io::stdout().flush();
    } else {
        eprint!("{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::Demux;

    #[test]
    fn demux_reassembles_split_frames() {
        let mut wire = Vec::new();
        for (stream, text) in [(1u8, "hello\n"), (2u8, "oops\n")] {
            wire.push(stream);
            wire.extend_from_slice(&[0, 0, 0]);
            wire.extend_from_slice(&(text.len() as u32).to_be_bytes());
            wire.extend_from_slice(text.as_bytes());
        }
        let mut d = Demux::default();
        let mut got = d.push(&wire[..5]);
        got.extend(d.push(&wire[5..17]));
        got.extend(d.push(&wire[17..]));
        assert_eq!(got, vec![(1, "hello\n".to_string()), (2, "oops\n".to_string())]);
    }
}
