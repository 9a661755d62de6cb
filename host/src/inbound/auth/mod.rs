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
//! (forged headers out, DKIM, our header in). Work in progress (issue 11):
//! plugins do not see the results yet.

pub mod results;

use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimOutput, IprevOutput, MessageAuthenticator,
    SpfOutput, spf::verify::SpfParameters,
};
use std::net::IpAddr;

/// What a session has checked so far.
#[derive(Debug, Default)]
pub struct Checks {
    iprev: Option<IprevOutput>,
    spf: Option<(SpfOutput, SpfOutput)>,
}

impl Checks {
    /// At MAIL FROM: iprev (first time), SPF for HELO and MAIL FROM, and
    /// the configured action on `fail` or `temperror`.
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
        if self.iprev.is_none() {
            self.iprev = Some(a.iprev(ip).await);
        }
        let (h, m) = a.spf(ip, helo, sender).await;
        let verdict = match m.result() {
            SpfResult::Fail if cfg.spf_fail == SpfFail::Reject => {
                crate::smtp::server::Verdict::Reject(Reply::new(
                    550,
                    "5.7.23",
                    format!(
                        "SPF: {} does not designate {ip} as a permitted sender",
                        m.domain()
                    ),
                ))
            }
            SpfResult::TempError if cfg.spf_temperror == SpfTempError::Defer => {
                crate::smtp::server::Verdict::Reject(Reply::new(
                    451,
                    "4.7.24",
                    format!(
                        "SPF: temporary DNS error for {}; try again later",
                        m.domain()
                    ),
                ))
            }
            _ => crate::smtp::server::Verdict::Accept,
        };
        self.spf = Some((h, m));
        verdict
    }

    /// At end of data: `data` without Authentication-Results headers that
    /// claim our authserv-id, DKIM verified, our header prepended; and
    /// how many headers were removed.
    pub async fn at_data(
        &self,
        a: &Authenticator,
        cfg: &crate::config::auth::Auth,
        ip: IpAddr,
        helo: &str,
        sender: &str,
        data: &[u8],
    ) -> (Vec<u8>, usize) {
        let (clean, removed) = results::strip_own(data, &a.authserv_id);
        let parsed = a.parse(&clean);
        let dkim = match &parsed {
            Some(m) => a.dkim(m).await,
            None => vec![],
        };
        let from_domain = crate::smtp::header::header_value(&clean, "From")
            .and_then(|f| {
                f.rsplit_once('@')
                    .map(|(_, d)| d.trim_end_matches(['>', ' ', '"']).to_ascii_lowercase())
            })
            .unwrap_or_default();
        let o = Outcome {
            iprev: self.iprev.clone(),
            spf_helo: self.spf.as_ref().map(|s| s.0.clone()),
            spf_mail: self.spf.as_ref().map(|s| s.1.clone()),
            dkim,
        };
        let mut head = a.header(&o, ip, helo, sender, &from_domain);
        if cfg.received_spf
            && let Some((_, m)) = &self.spf
        {
            use mail_auth::common::headers::HeaderWriter;
            head.push_str(
                &mail_auth::ReceivedSpf::new(m, ip, helo, sender, &a.authserv_id).to_header(),
            );
        }
        drop(parsed);
        let mut out = head.into_bytes();
        out.extend_from_slice(&clean);
        (out, removed)
    }
}

/// The checks of one message.
#[derive(Debug, Clone, Default)]
pub struct Outcome<'a> {
    /// The client's reverse DNS.
    pub iprev: Option<IprevOutput>,
    /// SPF for the HELO name.
    pub spf_helo: Option<SpfOutput>,
    /// SPF for the MAIL FROM domain (or the HELO name for `<>`).
    pub spf_mail: Option<SpfOutput>,
    /// One result per DKIM signature (at most the configured number).
    pub dkim: Vec<DkimOutput<'a>>,
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

    /// SPF for `helo`, then for `sender` (`""`: the null sender, checked
    /// as `postmaster@helo`).
    pub async fn spf(&self, ip: IpAddr, helo: &str, sender: &str) -> (SpfOutput, SpfOutput) {
        let host = self.authserv_id.as_str();
        let h = self
            .ma
            .verify_spf(SpfParameters::verify_ehlo(ip, helo, host))
            .await;
        let m = if sender.is_empty() {
            h.clone()
        } else {
            self.ma
                .verify_spf(SpfParameters::verify_mail_from(ip, helo, host, sender))
                .await
        };
        (h, m)
    }

    /// The message as DKIM sees it, with at most the configured number of
    /// signatures kept (the first ones; a message with hundreds of
    /// signatures must not cost hundreds of key lookups and RSA
    /// verifications); `None` when it cannot be parsed.
    pub fn parse<'a>(&self, message: &'a [u8]) -> Option<AuthenticatedMessage<'a>> {
        let mut m = AuthenticatedMessage::parse(message)?;
        m.dkim_headers.truncate(self.max_signatures);
        Some(m)
    }

    /// Every DKIM signature `msg` kept.
    pub async fn dkim<'a>(&self, msg: &'a AuthenticatedMessage<'a>) -> Vec<DkimOutput<'a>> {
        self.ma.verify_dkim(msg).await
    }

    /// Our Authentication-Results header (with its name and CRLF) for
    /// `o`, the client `ip`, `helo`, `sender` and the From domain.
    pub fn header(
        &self,
        o: &Outcome<'_>,
        ip: IpAddr,
        helo: &str,
        sender: &str,
        from_domain: &str,
    ) -> String {
        use mail_auth::common::headers::HeaderWriter;
        let mut ar = AuthenticationResults::new(&self.authserv_id);
        if let Some(i) = &o.iprev {
            ar = ar.with_iprev_result(i, ip);
        }
        if let Some(s) = &o.spf_helo {
            ar = ar.with_spf_ehlo_result(s, ip, helo);
        }
        if let Some(s) = &o.spf_mail {
            ar = ar.with_spf_mailfrom_result(s, ip, sender, helo);
        }
        if !o.dkim.is_empty() {
            ar = ar.with_dkim_results(&o.dkim, from_domain);
        }
        ar.to_header()
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn empty_outcome_says_none() {
        let r = mail_auth::hickory_resolver::TokioResolver::builder_with_config(
            mail_auth::hickory_resolver::config::ResolverConfig::default(),
            mail_auth::hickory_resolver::net::runtime::TokioRuntimeProvider::default(),
        )
        .build()
        .unwrap();
        let a = super::Authenticator::new(r, "mx.example.net".into(), 10);
        let h = a.header(
            &super::Outcome::default(),
            "192.0.2.1".parse().unwrap(),
            "client.example",
            "a@b.example",
            "b.example",
        );
        assert_eq!(h, "Authentication-Results: mx.example.net; none\r\n");
    }
}
