//! The spool record decoder on damaged segments: raw bytes, and payloads
//! framed with a valid header and CRC (so the fuzzer reaches the envelope
//! decoding behind the checksum). Never a panic; resync always moves on.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailgate::spool::format::{decode, resync};

fuzz_target!(|input: (u8, Vec<u8>, Vec<u8>)| {
    let (kind, payload, raw) = input;
    let mut pos = 0;
    while let Ok(Some((_, next))) = decode(&raw, pos) {
        assert!(next > pos);
        pos = next;
    }
    if pos < raw.len() {
        if let Some(p) = resync(&raw, pos) {
            assert!(p > pos);
        }
    }
    let mut framed = b"MR".to_vec();
    framed.push(kind % 4);
    framed.push(0);
    framed.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind % 4]);
    h.update(&payload);
    framed.extend_from_slice(&h.finalize().to_le_bytes());
    framed.extend_from_slice(&payload);
    let _ = decode(&framed, 0);
});
