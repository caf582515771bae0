//! The bytes of a proxied TCP connection, copied both ways.
//!
//! An idle connection holds no buffer: each direction waits for its source to be readable,
//! then reads 64 KiB at a time into a buffer that lives only until the source would block.
//! Memory thus follows the traffic, not the number of connections. A direction that reads the
//! end of its source shuts down the writing side of its destination (half-close passes
//! through) and the connection ends when both directions have; an error on either side resets
//! the other, so that a peer never takes a cut connection for a complete one. Nothing times an
//! idle connection out: that is for the client and the backend to decide.

use std::{io, os::fd::AsRawFd};

use nix::sys::socket::{shutdown, Shutdown};
use tokio::net::TcpStream;

/// Bytes read at once while data flows: small reads would cost a system call per packet.
const CHUNK: usize = 64 * 1024;

/// Copies `client`'s bytes to `backend` and back until both directions end; returns the bytes
/// sent each way (to the backend, to the client).
pub(super) async fn relay(client: TcpStream, backend: TcpStream) -> io::Result<(u64, u64)> {
    let result = tokio::try_join!(one_way(&client, &backend), one_way(&backend, &client));
    if result.is_err() {
        // Closing with a reset tells the peer its data was cut, not complete. A socket that
        // is already gone refuses the option, which changes nothing.
        let _ = client.set_zero_linger();
        let _ = backend.set_zero_linger();
    }
    result
}

/// Copies `from` to `to` until `from` ends, then shuts down `to`'s writing side.
async fn one_way(from: &TcpStream, to: &TcpStream) -> io::Result<u64> {
    let mut sent = 0u64;
    loop {
        from.readable().await?;
        // Held only while data flows: dropped as soon as the source would block.
        let mut buf = Vec::with_capacity(CHUNK);
        loop {
            buf.clear();
            match from.try_read_buf(&mut buf) {
                Ok(0) => {
                    // The other direction may still carry the answer. A destination that is
                    // already closed has nothing to be told.
                    let _ = shutdown(to.as_raw_fd(), Shutdown::Write);
                    return Ok(sent);
                }
                Ok(n) => {
                    write_all(to, &buf).await?;
                    sent += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Writes all of `data`, waiting for room as often as needed.
pub(super) async fn write_all(to: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match to.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => to.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
