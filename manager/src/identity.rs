//! Object identities: 25-character lowercase base36 IDs, as swarmkit makes
//! them (a random 128-bit number).

use rand::Rng;

const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A new random object ID: 25 characters of lowercase base36.
pub fn new_id() -> String {
    let mut n: u128 = rand::rng().random();
    let mut out = [b'0'; 25];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n % 36) as usize];
        n /= 36;
    }
    // 36^25 > 2^128, so every 128-bit value fits; the string is ASCII.
    String::from_utf8(out.to_vec()).expect("base36 digits are ASCII")
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_25_base36_chars_and_differ() {
        let a = super::new_id();
        let b = super::new_id();
        assert_eq!(a.len(), 25);
        assert!(a.bytes().all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()));
        assert_ne!(a, b);
    }
}
