//! The on-disk record format of spool segments (see `docs/spool.md`).

use super::envelope::Envelope;

/// Every segment file starts with these 8 octets.
pub const SEGMENT_MAGIC: &[u8; 8] = b"MGSPOOL1";
/// Size of a record header.
pub const HEADER_LEN: usize = 12;
const RECORD_MAGIC: &[u8; 2] = b"MR";

/// Record kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A message: envelope and content.
    Message = 1,
    /// A new version of an envelope (recipient states).
    Update = 2,
    /// The message is finished and may be forgotten.
    Done = 3,
}

/// A decoded record borrowing from the segment bytes.
#[derive(Debug)]
pub enum Record<'a> {
    /// Envelope, content offset within the segment, content.
    Message(Envelope, u64, &'a [u8]),
    /// A newer envelope.
    Update(Envelope),
    /// The id of a finished message.
    Done(String),
}

/// Encode a record; `Message` records return the offset of the content
/// relative to the start of the record.
pub fn encode(kind: Kind, env: Option<&Envelope>, id: &str, data: &[u8]) -> (Vec<u8>, u64) {
    let mut payload = Vec::with_capacity(data.len() + 512);
    let mut data_off = 0;
    match kind {
        Kind::Message => {
            let json = serde_json::to_vec(env.expect("envelope")).expect("envelope serialises");
            payload.extend_from_slice(&(json.len() as u32).to_le_bytes());
            payload.extend_from_slice(&json);
            data_off = (HEADER_LEN + payload.len()) as u64;
            payload.extend_from_slice(data);
        }
        Kind::Update => {
            payload = serde_json::to_vec(env.expect("envelope")).expect("envelope serialises");
        }
        Kind::Done => payload.extend_from_slice(id.as_bytes()),
    }
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(RECORD_MAGIC);
    out.push(kind as u8);
    out.push(0);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind as u8]);
    h.update(&payload);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(&payload);
    (out, data_off)
}

/// Decode the record at `pos`: `Ok(Some((record, next_pos)))`, `Ok(None)` at
/// a clean end, `Err(())` for a damaged or torn record.
#[allow(clippy::result_unit_err)]
pub fn decode(buf: &[u8], pos: usize) -> Result<Option<(Record<'_>, usize)>, ()> {
    if pos == buf.len() {
        return Ok(None);
    }
    if buf.len() - pos < HEADER_LEN || &buf[pos..pos + 2] != RECORD_MAGIC {
        return Err(());
    }
    let kind = buf[pos + 2];
    let len = u32::from_le_bytes(buf[pos + 4..pos + 8].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(buf[pos + 8..pos + 12].try_into().unwrap());
    let start = pos + HEADER_LEN;
    let end = start.checked_add(len).ok_or(())?;
    if end > buf.len() {
        return Err(());
    }
    let payload = &buf[start..end];
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    h.update(payload);
    if h.finalize() != crc {
        return Err(());
    }
    let rec = match kind {
        1 => {
            if payload.len() < 4 {
                return Err(());
            }
            let jl = u32::from_le_bytes(payload[..4].try_into().unwrap()) as usize;
            if 4 + jl > payload.len() {
                return Err(());
            }
            let env: Envelope = serde_json::from_slice(&payload[4..4 + jl]).map_err(|_| ())?;
            Record::Message(env, (start + 4 + jl) as u64, &payload[4 + jl..])
        }
        2 => Record::Update(serde_json::from_slice(payload).map_err(|_| ())?),
        3 => Record::Done(String::from_utf8(payload.to_vec()).map_err(|_| ())?),
        _ => return Err(()),
    };
    Ok(Some((rec, end)))
}

/// Find the next position after `pos` where a valid record starts.
pub fn resync(buf: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        pos += 1;
        let off = memchr::memmem::find(&buf[pos.min(buf.len())..], RECORD_MAGIC)?;
        pos += off;
        if decode(buf, pos).is_ok() {
            return Some(pos);
        }
    }
}
