//! Message ids in Exim's 16-character form `TTTTTT-SSSSSS-SS` (base 62):
//! six characters of the time in seconds, then eight characters of a
//! per-process sequence that starts at a random value, so ids are unique
//! across restarts within the same second. `eximstats` relies on the length.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn base62(mut n: u64, width: usize, out: &mut String) {
    let mut buf = vec![b'0'; width];
    for slot in buf.iter_mut().rev() {
        *slot = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    out.push_str(std::str::from_utf8(&buf).unwrap());
}

fn counter() -> &'static AtomicU64 {
    static C: OnceLock<AtomicU64> = OnceLock::new();
    C.get_or_init(|| {
        let mut b = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
            .expect("system random");
        AtomicU64::new(u64::from_le_bytes(b))
    })
}

/// A new unique message id.
pub fn new_message_id() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let seq = counter().fetch_add(1, Ordering::Relaxed) % 62u64.pow(8);
    let mut s = String::with_capacity(16);
    base62(secs, 6, &mut s);
    s.push('-');
    base62(seq / 3844, 6, &mut s);
    s.push('-');
    base62(seq % 3844, 2, &mut s);
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn shape_and_uniqueness() {
        let a = super::new_message_id();
        let b = super::new_message_id();
        assert_eq!(a.len(), 16);
        assert_eq!(&a[6..7], "-");
        assert_eq!(&a[13..14], "-");
        assert_ne!(a, b);
    }
}
