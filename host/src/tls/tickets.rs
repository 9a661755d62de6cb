//! Session tickets whose keys are rotated and kept in the cache database,
//! so that resumption (TLS 1.2 tickets and TLS 1.3 PSK) survives a restart.

use super::TlsError;
use crate::cache::{Cache, TICKET_KEYS};
use redb::ReadableTable;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;
use std::fmt;
use std::sync::{Arc, RwLock};

pub(super) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One ticket key: its id (the first four octets of every ticket it
/// seals), when it was made and the ChaCha20-Poly1305 key.
pub(super) struct Key {
    pub(super) id: u32,
    pub(super) created: u64,
    key: LessSafeKey,
}

impl Key {
    /// A key from 32 octets.
    pub(super) fn new(id: u32, created: u64, bytes: &[u8]) -> Option<Key> {
        make_key(id, created, bytes)
    }

    /// Seal `plain`: id ‖ nonce ‖ ciphertext ‖ tag, the id authenticated.
    pub(super) fn seal(&self, rng: &SystemRandom, plain: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; 12];
        rng.fill(&mut nonce).ok()?;
        let idb = self.id.to_be_bytes();
        let mut out = Vec::with_capacity(4 + 12 + plain.len() + 16);
        out.extend_from_slice(&idb);
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(idb),
                &mut body,
            )
            .ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }

    /// Open a ticket this key sealed, unless the key is older than
    /// `max_age` seconds (its last ticket has expired).
    pub(super) fn open(&self, cipher: &[u8], max_age: u64) -> Option<Vec<u8>> {
        if cipher.len() < 4 + 12 + 16 || now().saturating_sub(self.created) > max_age {
            return None;
        }
        let nonce = Nonce::try_assume_unique_for_key(&cipher[4..16]).ok()?;
        let mut body = cipher[16..].to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(&cipher[..4]), &mut body)
            .ok()?;
        Some(plain.to_vec())
    }
}

struct Keys {
    current: Key,
    previous: Option<Key>,
}

/// Session ticket encryption with keys persisted in redb. A stale key is
/// replaced on the blocking pool (the new key's commit fsyncs) while
/// tickets go on being sealed with the current one.
pub struct PersistentTicketer(Arc<TicketKeys>);

/// The keys and what rotating them needs.
pub struct TicketKeys {
    keys: RwLock<Keys>,
    cache: Cache,
    lifetime: u32,
    rotation: u64,
    rng: SystemRandom,
    rotating: std::sync::atomic::AtomicBool,
}

impl std::ops::Deref for PersistentTicketer {
    type Target = TicketKeys;
    fn deref(&self) -> &TicketKeys {
        &self.0
    }
}

impl fmt::Debug for PersistentTicketer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersistentTicketer")
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

fn make_key(id: u32, created: u64, bytes: &[u8]) -> Option<Key> {
    let k = UnboundKey::new(&aead::CHACHA20_POLY1305, bytes).ok()?;
    Some(Key {
        id,
        created,
        key: LessSafeKey::new(k),
    })
}

impl PersistentTicketer {
    /// Load the newest two keys, or make a first one.
    pub fn new(cache: Cache, lifetime: u32, rotation: u64) -> Result<Self, TlsError> {
        let cerr = |e: &dyn fmt::Display| TlsError::Cache(e.to_string());
        let mut stored: Vec<(u32, u64, Vec<u8>)> = Vec::new();
        {
            let tx = cache.db().begin_write().map_err(|e| cerr(&e))?;
            {
                let table = tx.open_table(TICKET_KEYS).map_err(|e| cerr(&e))?;
                for item in table.iter().map_err(|e| cerr(&e))? {
                    let (k, v) = item.map_err(|e| cerr(&e))?;
                    let v = v.value();
                    if v.len() == 40 {
                        let created = u64::from_le_bytes(v[..8].try_into().unwrap());
                        stored.push((k.value(), created, v[8..].to_vec()));
                    }
                }
            }
            tx.commit().map_err(|e| cerr(&e))?;
        }
        stored.sort_by_key(|s| s.1);
        let rng = SystemRandom::new();
        let t = PersistentTicketer(Arc::new(TicketKeys {
            keys: RwLock::new(Keys {
                current: Key {
                    id: 0,
                    created: 0,
                    key: LessSafeKey::new(
                        UnboundKey::new(&aead::CHACHA20_POLY1305, &[0; 32]).unwrap(),
                    ),
                },
                previous: None,
            }),
            cache,
            lifetime,
            rotation,
            rng,
            rotating: std::sync::atomic::AtomicBool::new(false),
        }));
        let mut it = stored.into_iter().rev();
        match it.next() {
            Some((id, created, bytes)) => {
                let mut keys = t.keys.write().unwrap();
                keys.current = make_key(id, created, &bytes).expect("32-byte key");
                keys.previous = it.next().and_then(|(i, c, b)| make_key(i, c, &b));
            }
            None => t.rotate()?,
        }
        Ok(t)
    }
}

impl TicketKeys {
    /// Make a new current key and persist it; drop keys older than the
    /// previous one.
    fn rotate(&self) -> Result<(), TlsError> {
        let cerr = |e: &dyn fmt::Display| TlsError::Cache(e.to_string());
        let mut bytes = [0u8; 32];
        self.rng
            .fill(&mut bytes)
            .map_err(|_| TlsError::Cache("no randomness".into()))?;
        let mut idb = [0u8; 4];
        self.rng
            .fill(&mut idb)
            .map_err(|_| TlsError::Cache("no randomness".into()))?;
        let id = u32::from_le_bytes(idb);
        let created = now();
        let mut keys = self.keys.write().unwrap();
        let keep_prev = keys.current.id;
        let tx = self.cache.db().begin_write().map_err(|e| cerr(&e))?;
        {
            let mut table = tx.open_table(TICKET_KEYS).map_err(|e| cerr(&e))?;
            let mut v = created.to_le_bytes().to_vec();
            v.extend_from_slice(&bytes);
            table.insert(id, v.as_slice()).map_err(|e| cerr(&e))?;
            let old: Vec<u32> = table
                .iter()
                .map_err(|e| cerr(&e))?
                .filter_map(|r| r.ok().map(|(k, _)| k.value()))
                .filter(|&k| k != id && k != keep_prev)
                .collect();
            for k in old {
                table.remove(k).map_err(|e| cerr(&e))?;
            }
        }
        tx.commit().map_err(|e| cerr(&e))?;
        let new = make_key(id, created, &bytes).expect("32-byte key");
        let old = std::mem::replace(&mut keys.current, new);
        keys.previous = (old.created != 0).then_some(old);
        Ok(())
    }
}

impl ProducesTickets for PersistentTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.lifetime
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let stale =
            now().saturating_sub(self.keys.read().unwrap().current.created) >= self.rotation;
        if stale
            && !self
                .rotating
                .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            let keys = Arc::clone(&self.0);
            let rotate = move || {
                if let Err(e) = keys.rotate() {
                    tracing::warn!(error = %e, "ticket key rotation failed; keeping the old key");
                }
                keys.rotating
                    .store(false, std::sync::atomic::Ordering::Release);
            };
            match tokio::runtime::Handle::try_current() {
                Ok(h) => drop(h.spawn_blocking(rotate)),
                Err(_) => rotate(),
            }
        }
        self.keys.read().unwrap().current.seal(&self.rng, plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        if cipher.len() < 4 + 12 + 16 {
            return None;
        }
        let id = u32::from_be_bytes(cipher[..4].try_into().ok()?);
        let keys = self.keys.read().unwrap();
        let key = if keys.current.id == id {
            &keys.current
        } else {
            keys.previous.as_ref().filter(|k| k.id == id)?
        };
        key.open(cipher, self.rotation + u64::from(self.lifetime))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_survive_a_restart_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("c.redb")).unwrap();
        let t1 = PersistentTicketer::new(cache.clone(), 7200, 3600).unwrap();
        let ticket = t1.encrypt(b"session state").unwrap();
        assert_eq!(t1.decrypt(&ticket).unwrap(), b"session state");
        drop(t1);
        let t2 = PersistentTicketer::new(cache.clone(), 7200, 3600).unwrap();
        assert_eq!(t2.decrypt(&ticket).unwrap(), b"session state");
        // After one rotation the old key still decrypts; after two it does not.
        t2.rotate().unwrap();
        assert_eq!(t2.decrypt(&ticket).unwrap(), b"session state");
        t2.rotate().unwrap();
        assert!(t2.decrypt(&ticket).is_none());
        let mut bad = t2.encrypt(b"x").unwrap();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(t2.decrypt(&bad).is_none());
    }
}
