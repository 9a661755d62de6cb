//! Message authentication in the host, where the protocol state is: iprev
//! (RFC 8601 §3) for the client, SPF (RFC 7208) for HELO and MAIL FROM,
//! DKIM verification (RFC 6376, RFC 8463) of every signature at end of
//! data, through the gateway's own resolver (mail-auth 0.13.3 on ring,
//! the provider rustls uses), and our Authentication-Results header
//! (RFC 8601) after removing any that claim our authserv-id
//! ([`results`]).
//!
//! The session calls [`Checks::at_mail`] (iprev once per connection, SPF
//! per transaction, with `[auth]`'s actions) and [`Checks::at_data`]
//! (forged headers out, DKIM). The results ([`Entry`]) go to the plugins
//! as `checks`; plugins add theirs (ARC, DMARC), and the session writes
//! one header with all of them ([`entry::header`]). Mail from relay
//! clients is signed by [`sign`].

pub mod check;
pub mod entry;
pub mod keygen;
pub mod results;
pub mod sign;
pub mod spf;

pub use entry::Entry;

use mail_auth::{
    AuthenticatedMessage, DkimOutput, IprevOutput, IprevResult, MessageAuthenticator, SpfOutput,
    spf::verify::SpfParameters,
};
use std::net::IpAddr;
use std::time::Duration;

/// What a session has checked so far: iprev once per connection, SPF per
/// transaction, DKIM per message, in header order.
#[derive(Debug, Default)]
pub struct Checks {
    iprev: Option<Entry>,
    spf: Vec<Entry>,
    dkim: Vec<Entry>,
    received_spf: Option<String>,
}

/// The message after [`Checks::at_data`].
pub struct Verified {
    /// The message without Authentication-Results headers that claimed
    /// our authserv-id.
    pub data: Vec<u8>,
    /// How many such headers went.
    pub removed: usize,
}

impl Checks {
    /// Every result so far, in the order of our header.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.iprev.iter().chain(&self.spf).chain(&self.dkim)
    }

    /// The SPF and DKIM results as a DMARC aggregate report lists them
    /// (`auth_results`).
    pub fn report_results(&self) -> crate::dmarcrpt::AuthResults {
        use crate::dmarcrpt::{AuthResults, DkimResult, SpfResult};
        let prop = |e: &Entry, name: &str| {
            e.props
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let mut r = AuthResults::default();
        for e in &self.spf {
            let (scope, domain) = match (prop(e, "smtp.mailfrom"), prop(e, "smtp.helo")) {
                (Some(m), _) => (
                    "mfrom",
                    m.rsplit_once('@').map_or(m.clone(), |(_, d)| d.into()),
                ),
                (None, Some(h)) => ("helo", h),
                (None, None) => continue,
            };
            r.spf.push(SpfResult {
                domain: domain.to_ascii_lowercase(),
                scope: scope.into(),
                result: e.result.clone(),
            });
        }
        for e in &self.dkim {
            let Some(d) = prop(e, "header.d") else {
                continue;
            };
            r.dkim.push(DkimResult {
                domain: d.to_ascii_lowercase(),
                selector: prop(e, "header.s").unwrap_or_default(),
                result: e.result.clone(),
            });
        }
        r
    }

    /// The client's host name as iprev verified it (the name its address
    /// points to and that points back), once iprev passed.
    pub fn client_name(&self) -> Option<&str> {
        self.iprev
            .as_ref()
            .filter(|e| e.result == "pass")
            .and_then(|e| e.comment.as_deref())
    }

    /// The results as plugins get them (`checks` in the hook context).
    pub fn for_plugins(
        &self,
    ) -> Vec<crate::plugin::bindings::mailgate::plugin::types::CheckResult> {
        self.entries()
            .map(
                |e| crate::plugin::bindings::mailgate::plugin::types::CheckResult {
                    method: e.method.clone(),
                    outcome: e.result.clone(),
                    detail: e.detail(),
                },
            )
            .collect()
    }

    /// Prepend our Authentication-Results header to `data`: the host's
    /// results, then the plugins' (ARC, DMARC, ...), one header in all
    /// (RFC 8601 §5), and the optional Received-SPF. `authserv_id` is
    /// none when the checks are off: then the header is written (with
    /// `hostname`) only when a plugin said something.
    pub fn prepend_header(
        &self,
        authserv_id: Option<&str>,
        hostname: &str,
        plugin: Vec<String>,
        data: &mut Vec<u8>,
    ) {
        let mut entries: Vec<String> = self.entries().map(Entry::resinfo).collect();
        // A plugin's words go into a header: no line breaks of its own.
        entries.extend(
            plugin
                .into_iter()
                .map(|e| e.replace(['\r', '\n'], " ").trim().to_string())
                .filter(|e| !e.is_empty()),
        );
        let id = match authserv_id {
            Some(id) => id,
            None if entries.is_empty() => return,
            None => hostname,
        };
        let mut top = entry::header(id, &entries);
        if let Some(r) = self.received_spf() {
            top.push_str(r);
        }
        let mut d = top.into_bytes();
        d.extend_from_slice(data);
        *data = d;
    }

    /// The optional `Received-SPF:` header (with CRLF) for this
    /// transaction.
    pub fn received_spf(&self) -> Option<&str> {
        self.received_spf.as_deref()
    }

    /// At MAIL FROM: iprev (first time), SPF for HELO and MAIL FROM, and
    /// the configured action on `fail` or `temperror`. Each check has
    /// `[auth] timeout`; one that runs out is a `temperror`.
    pub async fn at_mail(
        &mut self,
        a: &Authenticator,
        cfg: &crate::config::auth::Auth,
        ip: IpAddr,
        helo: &str,
        sender: &str,
    ) -> crate::smtp::server::Verdict {
        use crate::config::auth::{SpfFail, SpfTempError};
        use crate::smtp::reply::Reply;
        use mail_auth::SpfResult;
        let limit = Duration::from_secs(cfg.timeout.0.max(1));
        self.dkim.clear();
        if self.iprev.is_none() {
            let o = tokio::time::timeout(limit, a.iprev(ip))
                .await
                .unwrap_or_else(|_| IprevOutput {
                    result: IprevResult::TempError(mail_auth::Error::Io(
                        "reverse lookups took too long".into(),
                    )),
                    ptr: None,
                });
            self.iprev = Some(Entry::iprev(&o, ip));
        }
        let h = tokio::time::timeout(limit, a.spf_helo(ip, helo)).await.ok();
        let m = if sender.is_empty() {
            h.clone()
        } else {
            tokio::time::timeout(limit, a.spf_mail(ip, helo, sender))
                .await
                .ok()
        };
        self.spf = vec![
            h.as_ref().map_or_else(
                || Entry::spf_timeout("smtp.helo", helo),
                |h| Entry::spf_helo(h, helo),
            ),
            m.as_ref().map_or_else(
                || Entry::spf_timeout("smtp.mailfrom", sender),
                |m| Entry::spf_mail(m, sender, helo),
            ),
        ];
        self.received_spf = match (&m, cfg.received_spf) {
            (Some(m), true) => {
                use mail_auth::common::headers::HeaderWriter;
                Some(mail_auth::ReceivedSpf::new(m, ip, helo, sender, &a.authserv_id).to_header())
            }
            _ => None,
        };
        let (result, domain) = match &m {
            Some(m) => (m.result(), m.domain().to_string()),
            None => (
                SpfResult::TempError,
                sender.rsplit_once('@').map_or(helo, |(_, d)| d).to_string(),
            ),
        };
        match result {
            SpfResult::Fail if cfg.spf_fail == SpfFail::Reject => {
                crate::smtp::server::Verdict::Reject(Reply::new(
                    550,
                    "5.7.23",
                    format!("SPF: {domain} does not designate {ip} as a permitted sender"),
                ))
            }
            SpfResult::TempError if cfg.spf_temperror == SpfTempError::Defer => {
                crate::smtp::server::Verdict::Reject(Reply::new(
                    451,
                    "4.7.24",
                    format!("SPF: temporary DNS error for {domain}; try again later"),
                ))
            }
            _ => crate::smtp::server::Verdict::Accept,
        }
    }

    /// At end of data: Authentication-Results headers that claim our
    /// authserv-id removed, then every DKIM signature verified (at most
    /// `[auth] dkim_max_signatures`, within `[auth] timeout`).
    pub async fn at_data(
        &mut self,
        a: &Authenticator,
        cfg: &crate::config::auth::Auth,
        data: &[u8],
    ) -> Verified {
        let (clean, removed) = results::strip_own(data, &a.authserv_id);
        let limit = Duration::from_secs(cfg.timeout.0.max(1));
        self.dkim = match a.parse(&clean) {
            Some(m) if m.dkim_headers.is_empty() && !m.has_dkim_errors => {
                vec![Entry::dkim_none()]
            }
            Some(m) => {
                let mut e: Vec<Entry> = match tokio::time::timeout(limit, a.dkim(&m)).await {
                    Ok(out) => out.iter().map(Entry::dkim).collect(),
                    Err(_) => m
                        .dkim_headers
                        .iter()
                        .map(|h| Entry::dkim_timeout(&h.header))
                        .collect(),
                };
                // Signatures mail-auth could not parse at all (it reports
                // only those with a DKIM-specific error).
                e.extend(
                    m.errors
                        .iter()
                        .filter(|h| {
                            h.name.eq_ignore_ascii_case(b"DKIM-Signature")
                                && !matches!(h.header, mail_auth::Error::Dkim(_))
                        })
                        .map(|h| Entry::dkim_malformed(&h.header)),
                );
                e
            }
            None => vec![Entry::dkim_none()],
        };
        Verified {
            data: clean,
            removed,
        }
    }
}

/// The checker: mail-auth over the gateway's resolver.
pub struct Authenticator {
    ma: MessageAuthenticator,
    /// Our authserv-id (the host name by default).
    pub authserv_id: String,
    max_signatures: usize,
}

impl Authenticator {
    /// Over `resolver` (the gateway's, so its cache is shared).
    pub fn new(
        resolver: mail_auth::hickory_resolver::TokioResolver,
        authserv_id: String,
        max_signatures: usize,
    ) -> Authenticator {
        Authenticator {
            ma: MessageAuthenticator(resolver),
            authserv_id,
            max_signatures,
        }
    }

    /// iprev for the client at `ip`.
    pub async fn iprev(&self, ip: IpAddr) -> IprevOutput {
        self.ma.verify_iprev(ip).await
    }

    /// SPF for the HELO name.
    pub async fn spf_helo(&self, ip: IpAddr, helo: &str) -> SpfOutput {
        let p = SpfParameters::verify_ehlo(ip, helo, &self.authserv_id);
        spf::check(&self.ma, p, helo).await
    }

    /// SPF for the MAIL FROM address.
    pub async fn spf_mail(&self, ip: IpAddr, helo: &str, sender: &str) -> SpfOutput {
        let p = SpfParameters::verify_mail_from(ip, helo, &self.authserv_id, sender);
        let domain = sender.rsplit_once('@').map_or(sender, |(_, d)| d);
        spf::check(&self.ma, p, domain).await
    }

    /// The message as DKIM sees it, with at most the configured number of
    /// signatures kept (the first ones; a message with hundreds of
    /// signatures must not cost hundreds of key lookups and RSA
    /// verifications); `None` when it cannot be parsed.
    pub fn parse<'a>(&self, message: &'a [u8]) -> Option<AuthenticatedMessage<'a>> {
        // Not strict: signatures with l= are verified (and noted), not
        // refused outright.
        let mut m = AuthenticatedMessage::parse_with_opts(message, None, false)?;
        m.dkim_headers.truncate(self.max_signatures);
        Some(m)
    }

    /// Every DKIM signature `msg` kept.
    pub async fn dkim<'a>(&self, msg: &'a AuthenticatedMessage<'a>) -> Vec<DkimOutput<'a>> {
        self.ma.verify_dkim(msg).await
    }
}
