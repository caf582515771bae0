//! The bytes of a proxied TCP connection, copied both ways.
//!
//! An idle connection holds no buffer: each direction waits for its source to be readable,
//! then reads up to 64 KiB at a time into its worker thread's scratch buffer and writes it on
//! at once; only bytes the destination has no room for yet are copied out, and held until it
//! takes them. Memory thus follows the traffic, not the number of connections, and a request
//! or an answer costs no allocation. A direction that reads the
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

thread_local! {
    /// Each worker thread's read buffer: bytes are read into it and written on at once,
    /// without an allocation (the common case of a request or an answer).
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; CHUNK]);
}

/// What one read-and-write step did.
enum Step {
    /// `n` bytes read and written.
    Sent(usize),
    /// `n` bytes read, of which `rest` the destination had no room for yet.
    Pending(usize, Vec<u8>),
    /// Nothing to read until the source is readable again.
    Idle,
    /// The source ended.
    End,
}

/// Reads what `from` has and writes it to `to`, without waiting for either.
fn step(from: &TcpStream, to: &TcpStream) -> io::Result<Step> {
    SCRATCH.with_borrow_mut(|buf| {
        let n = match from.try_read(buf) {
            Ok(0) => return Ok(Step::End),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Step::Idle),
            Err(e) => return Err(e),
        };
        let mut written = 0;
        while written < n {
            match to.try_write(&buf[written..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(w) => written += w,
                // Only what waits for room is copied out, to be written once there is some.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Step::Pending(n, buf[written..n].to_vec()))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Step::Sent(n))
    })
}

/// Copies `from` to `to` until `from` ends, then shuts down `to`'s writing side.
async fn one_way(from: &TcpStream, to: &TcpStream) -> io::Result<u64> {
    let mut sent = 0u64;
    loop {
        from.readable().await?;
        loop {
            match step(from, to)? {
                Step::Sent(n) => sent += n as u64,
                Step::Pending(n, rest) => {
                    // Held only until the destination takes it.
                    write_all(to, &rest).await?;
                    sent += n as u64;
                }
                Step::Idle => break,
                Step::End => {
                    // The other direction may still carry the answer. A destination that is
                    // already closed has nothing to be told.
                    let _ = shutdown(to.as_raw_fd(), Shutdown::Write);
                    return Ok(sent);
                }
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
