//! Session tickets whose keys live in the pool's Redis, so a client that
//! got a ticket from one gateway resumes at any other.
//!
//! Keys are named by epoch (unix time / `tls.ticket_key_rotation`): the
//! first gateway to need the key of an epoch makes it (one atomic script:
//! read, or write a random one if there is none), the others read that
//! one. A ticket is sealed with the current epoch's key and opened with it
//! or the previous one, as with one node's keys. No coordination beyond
//! the clocks: gateways a few seconds apart still share both keys.
//!
//! When Redis cannot be reached at start, this node seals with a key of
//! its own (resumption then works only here) until Redis answers.

use super::TlsError;
use super::tickets::{Key, now};
use crate::store::Redis;
use ring::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// Read the key of an epoch, or make it: KEYS[1] the key's name, ARGV[1]
/// 32 random octets, ARGV[2] its lifetime in seconds.
const GET_OR_MAKE: &str = r"
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return ARGV[1]
";

/// Ids of node-local keys have the top bit set; epochs never do.
const LOCAL_ID: u32 = 0x8000_0000;

struct Keys {
    current: Key,
    previous: Option<Key>,
}

struct Inner {
    redis: Arc<Redis>,
    script: redis::Script,
    keys: RwLock<Keys>,
    lifetime: u32,
    rotation: u64,
    rng: SystemRandom,
    refreshing: AtomicBool,
}

/// Ticket encryption with keys shared through Redis.
pub struct SharedTicketer(Arc<Inner>);

impl fmt::Debug for SharedTicketer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedTicketer")
            .field("lifetime", &self.0.lifetime)
            .finish()
    }
}

fn epoch(rotation: u64) -> u32 {
    ((now() / rotation) as u32) & !LOCAL_ID
}

impl SharedTicketer {
    /// Load the current and previous epochs' keys from Redis (making the
    /// current one if no gateway has yet).
    pub async fn load(redis: Arc<Redis>, lifetime: u32, rotation: u64) -> Result<Self, TlsError> {
        let rng = SystemRandom::new();
        let mut own = [0u8; 32];
        rng.fill(&mut own)
            .map_err(|_| TlsError::Cache("no randomness".into()))?;
        let mut idb = [0u8; 4];
        rng.fill(&mut idb)
            .map_err(|_| TlsError::Cache("no randomness".into()))?;
        let local = Key::new(u32::from_le_bytes(idb) | LOCAL_ID, now(), &own)
            .ok_or_else(|| TlsError::Cache("bad key".into()))?;
        let inner = Arc::new(Inner {
            redis,
            script: redis::Script::new(GET_OR_MAKE),
            keys: RwLock::new(Keys {
                current: local,
                previous: None,
            }),
            lifetime,
            rotation,
            rng,
            refreshing: AtomicBool::new(false),
        });
        if let Err(e) = inner.refresh().await {
            tracing::warn!(error = %e, "TLS ticket keys: using this node's own until redis answers");
        }
        Ok(SharedTicketer(inner))
    }
}

impl Inner {
    fn name(&self, epoch: u32) -> String {
        self.redis.key(&format!("tls:ticket-key:{epoch}"))
    }

    /// The key of `epoch`, made if `make` and absent.
    async fn fetch(&self, epoch: u32, make: bool) -> Result<Option<Key>, String> {
        let bytes: Option<Vec<u8>> = if make {
            let mut fresh = [0u8; 32];
            self.rng
                .fill(&mut fresh)
                .map_err(|_| "no randomness".to_string())?;
            let ttl = 2 * self.rotation + u64::from(self.lifetime) + 60;
            self.redis
                .eval(
                    &self.script,
                    &[self.name(epoch)],
                    &[
                        String::from_utf8_lossy(&hex(&fresh)).into_owned(),
                        ttl.to_string(),
                    ],
                )
                .await
                .map_err(|e| e.to_string())?
        } else {
            self.redis
                .query(redis::cmd("GET").arg(self.name(epoch)))
                .await
                .map_err(|e| e.to_string())?
        };
        let Some(b) = bytes else { return Ok(None) };
        let raw = unhex(&b).ok_or("a ticket key in redis is not 64 hex digits")?;
        let created = u64::from(epoch) * self.rotation;
        Ok(Key::new(epoch, created, &raw))
    }

    /// Bring the keys to the current epoch.
    async fn refresh(&self) -> Result<(), String> {
        let e = epoch(self.rotation);
        let held = {
            let k = self.keys.read().unwrap();
            (k.current.id, k.previous.as_ref().map(|p| p.id))
        };
        if held.0 == e {
            return Ok(());
        }
        let current = self.fetch(e, true).await?.ok_or("no key made")?;
        let previous = match held.0 == e.wrapping_sub(1) {
            true => None,
            false => self.fetch(e.wrapping_sub(1), false).await?,
        };
        let mut k = self.keys.write().unwrap();
        let old = std::mem::replace(&mut k.current, current);
        k.previous = match previous {
            Some(p) => Some(p),
            None if old.id == e.wrapping_sub(1) => Some(old),
            // This node's own key keeps opening its tickets for a while.
            None if old.id & LOCAL_ID != 0 => Some(old),
            None => None,
        };
        Ok(())
    }
}

fn hex(b: &[u8]) -> Vec<u8> {
    b.iter()
        .flat_map(|x| format!("{x:02x}").into_bytes())
        .collect()
}

fn unhex(b: &[u8]) -> Option<Vec<u8>> {
    if b.len() != 64 {
        return None;
    }
    b.chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok())
        .collect()
}

impl ProducesTickets for SharedTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.0.lifetime
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let stale = self.0.keys.read().unwrap().current.id != epoch(self.0.rotation);
        if stale
            && !self.0.refreshing.swap(true, Ordering::AcqRel)
            && let Ok(h) = tokio::runtime::Handle::try_current()
        {
            let inner = Arc::clone(&self.0);
            h.spawn(async move {
                if let Err(e) = inner.refresh().await {
                    tracing::debug!(error = %e, "TLS ticket keys not refreshed; keeping the old ones");
                }
                inner.refreshing.store(false, Ordering::Release);
            });
        }
        let keys = self.0.keys.read().unwrap();
        keys.current.seal(&self.0.rng, plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let id = u32::from_be_bytes(cipher.get(..4)?.try_into().ok()?);
        let keys = self.0.keys.read().unwrap();
        let key = if keys.current.id == id {
            &keys.current
        } else {
            keys.previous.as_ref().filter(|k| k.id == id)?
        };
        key.open(cipher, self.0.rotation + u64::from(self.0.lifetime))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let k: Vec<u8> = (0..32).collect();
        assert_eq!(unhex(&hex(&k)).unwrap(), k);
        assert!(unhex(b"zz").is_none());
    }
}
