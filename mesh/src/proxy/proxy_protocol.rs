//! The PROXY protocol, version 2 (HAProxy's binary header,
//! <https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt>): what a backend reads before
//! the client's first byte so that it knows who connected, and to which address.
//!
//! Only what the routing mesh sends is written: command PROXY, IPv4 over TCP, no TLVs.

use std::net::SocketAddrV4;

/// The 12 bytes every version 2 header starts with.
pub(super) const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Bytes in the header of an IPv4 TCP connection: signature, version and command, family,
/// length, then the two addresses and ports.
pub(super) const HEADER_LEN: usize = 16 + 12;

/// The header telling a backend that `client` connected to `destination` (the address it
/// connected to on this node).
pub(super) fn header(client: SocketAddrV4, destination: SocketAddrV4) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..12].copy_from_slice(&SIGNATURE);
    // Version 2 (high nibble), command PROXY (low nibble).
    h[12] = 0x21;
    // AF_INET (high nibble), STREAM (low nibble).
    h[13] = 0x11;
    // What follows: two IPv4 addresses and two ports.
    h[14..16].copy_from_slice(&12u16.to_be_bytes());
    h[16..20].copy_from_slice(&client.ip().octets());
    h[20..24].copy_from_slice(&destination.ip().octets());
    h[24..26].copy_from_slice(&client.port().to_be_bytes());
    h[26..28].copy_from_slice(&destination.port().to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    /// A decoder written from the specification, independent of the encoder: the source and
    /// destination of an IPv4 TCP PROXY header, and the bytes it takes.
    fn decode(b: &[u8]) -> Option<(SocketAddrV4, SocketAddrV4, usize)> {
        if b.len() < 16 || b[..12] != SIGNATURE || b[12] >> 4 != 2 || b[12] & 0xf != 1 {
            return None;
        }
        let (family, transport) = (b[13] >> 4, b[13] & 0xf);
        let len = usize::from(u16::from_be_bytes([b[14], b[15]]));
        if family != 1 || transport != 1 || len < 12 || b.len() < 16 + len {
            return None;
        }
        let ip = |at: usize| Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]);
        let port = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
        Some((SocketAddrV4::new(ip(16), port(24)), SocketAddrV4::new(ip(20), port(26)), 16 + len))
    }

    #[test]
    fn header_decodes_to_the_addresses_given() {
        let client = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 7), 50123);
        let destination = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 8080);
        let h = header(client, destination);
        assert_eq!(decode(&h), Some((client, destination, HEADER_LEN)));
    }

    #[test]
    fn header_bytes_are_the_specifications() {
        let h = header(
            SocketAddrV4::new(Ipv4Addr::new(1, 2, 3, 4), 0x1234),
            SocketAddrV4::new(Ipv4Addr::new(5, 6, 7, 8), 0x5678),
        );
        let expected: [u8; HEADER_LEN] = [
            0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, // signature
            0x21, 0x11, 0x00, 0x0c, // v2 PROXY, TCP over IPv4, 12 bytes
            1, 2, 3, 4, 5, 6, 7, 8, // source, destination address
            0x12, 0x34, 0x56, 0x78, // source, destination port
        ];
        assert_eq!(h, expected);
    }
}
