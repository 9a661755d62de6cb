//! SPF evaluation (RFC 7208) through mail-auth, with the void lookup limit
//! it lacks: more than two DNS-querying terms whose lookup finds nothing
//! (NXDOMAIN or no records) make the result `permerror` (§4.6.4).
//!
//! mail-auth consults a per-evaluation cache before each lookup and fills
//! it after each lookup that found records; [`VoidCount`] is such a cache
//! that never answers and only keeps score: a name asked for and never
//! answered is a void lookup. The resolver's own cache still serves.

use mail_auth::{MessageAuthenticator, Parameters, ResolverCache, SpfOutput, SpfResult};
use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;

/// The void lookup limit of RFC 7208 §4.6.4.
pub const MAX_VOID_LOOKUPS: usize = 2;

/// Names asked for and names answered, by hash, in one evaluation.
#[derive(Default)]
pub struct VoidCount {
    state: Mutex<(HashSet<u64>, HashSet<u64>)>,
    hasher: std::hash::RandomState,
}

impl VoidCount {
    /// Lookups that found nothing so far.
    pub fn voids(&self) -> usize {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0.difference(&s.1).count()
    }

    fn key<Q: Hash + ?Sized>(&self, q: &Q) -> u64 {
        self.hasher.hash_one(q)
    }
}

impl<K: Hash, V> ResolverCache<K, V> for VoidCount {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let k = self.key(name);
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .insert(k);
        None
    }

    fn remove<Q>(&self, _: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }

    fn insert(&self, key: K, _: V, _: std::time::Instant) {
        let k = self.key(key.borrow());
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .insert(k);
    }
}

/// Evaluate `params` with the void lookup limit.
pub async fn check(
    ma: &MessageAuthenticator,
    params: mail_auth::spf::verify::SpfParameters<'_>,
    domain: &str,
) -> SpfOutput {
    let c = VoidCount::default();
    let p = Parameters::new(params)
        .with_txt_cache(&c)
        .with_mx_cache(&c)
        .with_ipv4_cache(&c)
        .with_ipv6_cache(&c)
        .with_ptr_cache(&c);
    let out = ma.verify_spf(p).await;
    if c.voids() > MAX_VOID_LOOKUPS && out.result() != SpfResult::TempError {
        return SpfOutput::new(domain.to_string()).with_result(SpfResult::PermError);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asked_and_never_answered_is_void() {
        let c = VoidCount::default();
        let k: Box<str> = "a.test".into();
        let _: Option<u8> = ResolverCache::<Box<str>, u8>::get(&c, "a.test");
        let _: Option<u8> = ResolverCache::<Box<str>, u8>::get(&c, "b.test");
        let _: Option<u8> = ResolverCache::<Box<str>, u8>::get(&c, "b.test");
        assert_eq!(c.voids(), 2);
        ResolverCache::<Box<str>, u8>::insert(&c, k, 1, std::time::Instant::now());
        assert_eq!(c.voids(), 1);
    }
}
