//! MTA-STS (RFC 8461) as a sending MTA: the `_mta-sts` TXT record through
//! the gateway's resolver, the policy fetched over HTTPS ([`fetch`]) and
//! parsed strictly ([`policy`]), cached in the cache database with its id
//! and max_age so it survives restarts. A changed id fetches again; a
//! policy past half its max_age is refreshed in the background; a failed
//! fetch or lookup keeps the cached policy until it expires (§5.1), so an
//! attacker who blocks DNS or HTTPS cannot switch a known policy off.

pub mod fetch;
pub mod policy;

pub use policy::{Mode, Policy};

use crate::cache::Cache;
use crate::dns::Dns;
use crate::outbound::tlsrpt::result::ResultType;
use redb::{ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("mta_sts");

/// A cached policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cached {
    /// The TXT record's id it was fetched under.
    pub id: String,
    /// The policy.
    pub policy: Policy,
    /// Unix time fetched.
    pub fetched: i64,
}

impl Cached {
    fn expired(&self, now: i64) -> bool {
        now >= self.fetched + self.policy.max_age as i64
    }
    fn stale(&self, now: i64) -> bool {
        now >= self.fetched + (self.policy.max_age / 2) as i64
    }
}

/// What applies to a domain's deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// No policy (none published, mode none, or none obtainable and none
    /// cached).
    NoPolicy,
    /// A policy in force.
    Policy(Policy),
    /// No policy could be obtained, and none was cached: the failure, for
    /// reports (delivery goes on as without a policy, §5).
    Failed(StsFailure),
}

/// Why no policy could be obtained, in TLS reports' terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text}")]
pub struct StsFailure {
    /// `sts-policy-fetch-error`, `sts-policy-invalid` or `sts-webpki-invalid`.
    pub kind: ResultType,
    /// What happened.
    pub text: String,
}

impl StsFailure {
    fn new(kind: ResultType, text: String) -> StsFailure {
        StsFailure { kind, text }
    }
}

/// The MTA-STS state shared by deliveries.
pub struct MtaSts {
    cache: Cache,
    fetcher: fetch::Fetcher,
    refreshing: Mutex<HashSet<String>>,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl MtaSts {
    /// Over the cache database, fetching with `fetcher`.
    pub fn new(cache: Cache, fetcher: fetch::Fetcher) -> MtaSts {
        MtaSts {
            cache,
            fetcher,
            refreshing: Mutex::new(HashSet::new()),
        }
    }

    /// The cached entry for `domain`.
    pub fn cached(&self, domain: &str) -> Option<Cached> {
        let tx = self.cache.db().begin_read().ok()?;
        let t = tx.open_table(TABLE).ok()?;
        let v = t.get(domain).ok()??;
        serde_json::from_slice(v.value()).ok()
    }

    async fn store(&self, domain: &str, c: &Cached) {
        let v = serde_json::to_vec(c).expect("policy serialises");
        if let Err(e) = self.cache.put(TABLE, domain.to_string(), Some(v)).await {
            tracing::warn!(error = %e, "cannot write the MTA-STS cache");
        }
    }

    /// Fetch, parse and cache `domain`'s policy published under `id`.
    async fn fetch(&self, dns: &Dns, domain: &str, id: &str) -> Result<Cached, StsFailure> {
        let text = self.fetcher.fetch(dns, domain).await.map_err(|e| {
            let kind = match e {
                fetch::FetchError::Fetch(_) => ResultType::StsPolicyFetchError,
                fetch::FetchError::Certificate(_) => ResultType::StsWebpkiInvalid,
            };
            StsFailure::new(kind, e.to_string())
        })?;
        let policy = policy::parse(&text).map_err(|e| {
            StsFailure::new(
                ResultType::StsPolicyInvalid,
                format!("MTA-STS policy invalid: {e}"),
            )
        })?;
        let c = Cached {
            id: id.to_string(),
            policy,
            fetched: now(),
        };
        self.store(domain, &c).await;
        Ok(c)
    }

    /// The policy for deliveries to `domain`.
    pub async fn lookup(self: &Arc<Self>, dns: &Arc<Dns>, domain: &str) -> Lookup {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let t = now();
        let cached = self.cached(&domain).filter(|c| !c.expired(t));
        let txt = dns
            .records(
                &format!("_mta-sts.{domain}"),
                hickory_resolver::proto::rr::RecordType::TXT,
            )
            .await;
        let id = match txt.map(|v| {
            let v: Vec<String> = v.iter().map(|s| s.trim_matches('"').to_string()).collect();
            policy::record_id(&v)
        }) {
            Ok(Ok(Some(id))) => id,
            // No record, or a DNS failure, or a bad record: the cached
            // policy goes on applying until it expires.
            Ok(Ok(None)) => return from_cached(cached, Lookup::NoPolicy),
            Ok(Err(e)) => {
                return from_cached(
                    cached,
                    Lookup::Failed(StsFailure::new(
                        ResultType::StsPolicyInvalid,
                        format!("MTA-STS record invalid: {e}"),
                    )),
                );
            }
            Err(e) => {
                return from_cached(
                    cached,
                    Lookup::Failed(StsFailure::new(
                        ResultType::StsPolicyFetchError,
                        format!("MTA-STS record lookup failed: {e}"),
                    )),
                );
            }
        };
        match cached {
            Some(c) if c.id == id => {
                if c.stale(t) {
                    self.refresh_later(dns, &domain, id);
                }
                applies(c.policy)
            }
            old => match self.fetch(dns, &domain, &id).await {
                Ok(c) => applies(c.policy),
                Err(e) => {
                    tracing::info!(%domain, error = %e, "MTA-STS policy not refreshed");
                    from_cached(old, Lookup::Failed(e))
                }
            },
        }
    }

    fn refresh_later(self: &Arc<Self>, dns: &Arc<Dns>, domain: &str, id: String) {
        if !self.refreshing.lock().unwrap().insert(domain.to_string()) {
            return;
        }
        let (me, dns, domain) = (Arc::clone(self), Arc::clone(dns), domain.to_string());
        tokio::spawn(async move {
            if let Err(e) = me.fetch(&dns, &domain, &id).await {
                tracing::info!(%domain, error = %e, "MTA-STS background refresh failed; the cached policy stays");
            }
            me.refreshing.lock().unwrap().remove(&domain);
        });
    }
}

fn applies(p: Policy) -> Lookup {
    if p.mode == Mode::None {
        Lookup::NoPolicy
    } else {
        Lookup::Policy(p)
    }
}

fn from_cached(c: Option<Cached>, otherwise: Lookup) -> Lookup {
    match c {
        Some(c) => applies(c.policy),
        None => otherwise,
    }
}
