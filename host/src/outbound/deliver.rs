//! Remote delivery of queued recipients: per destination domain, find the
//! hosts, reuse or open a connection, send, and record each recipient's
//! outcome: delivered, deferred (retry with backoff until `max_age`) or
//! failed (a DSN to the sender).

use crate::config::Config;
use crate::dns::Dns;
use crate::log::exim::host_field;
use crate::log::{MainLog, Peer};
use crate::outbound::client::{ClientSettings, Connection};
use crate::outbound::hop::RouteError;
use crate::outbound::policy::Plan;
use crate::outbound::tlsrpt::result::{Outcome, PolicyId, ResultType};
use crate::outbound::tlsrpt::session::{self, Sts};
use crate::smtp::client::{Failure, Job, JobRcpt, RcptOutcome, Stage};
use crate::spool::Envelope;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Idle connections are kept by address and tag (host name, TLS mode and
/// certificate check).
type PoolKey = (SocketAddr, String);

/// Shared outbound state.
pub struct Outbound {
    cfg: Arc<Config>,
    hints: crate::outbound::retry::RetryHints,
    settings: ClientSettings,
    dns: Arc<Dns>,
    /// The lookup tables (routes and TLS policy tables).
    tables: Arc<crate::table::Tables>,
    /// Credentials for smarthosts.
    logins: super::login::Logins,
    sts: Arc<super::mta_sts::MtaSts>,
    https: Arc<super::https::Https>,
    tlsrpt: Option<Arc<super::tlsrpt::Tlsrpt>>,
    pool: Mutex<HashMap<PoolKey, Vec<(Connection, Instant)>>>,
    total: Arc<Semaphore>,
    per_host: Mutex<HashMap<SocketAddr, Arc<Semaphore>>>,
}

/// What happened to one recipient in one attempt.
#[derive(Debug, Clone)]
pub enum Result1 {
    /// Delivered; the log line tail (`H=... C="..."`).
    Delivered(String),
    /// Try again later.
    Deferred(Report),
    /// Never.
    Failed(Report),
}

/// Details for logs and DSNs.
#[derive(Debug, Clone)]
pub struct Report {
    /// `H=name [ip]:port` or empty.
    pub host_field: String,
    /// The text.
    pub text: String,
    /// Server reply (one line), if any.
    pub reply: Option<String>,
    /// Enhanced status for the DSN.
    pub status: String,
    /// Remote host, address, greeting, EHLO reply.
    pub remote: Option<(String, String, String, String)>,
}

fn report(f: &Failure, conn: Option<&Connection>, host: Option<(&str, SocketAddr)>) -> Report {
    let (host_field, remote) = match (conn, host) {
        (Some(c), _) => (
            host_field(&Peer::server(&c.host, c.addr)),
            Some((
                c.host.clone(),
                format!("[{}]:{}", c.addr.ip(), c.addr.port()),
                c.conv.greeting.clone(),
                c.conv.ehlo_response.clone(),
            )),
        ),
        (None, Some((h, a))) => (host_field(&Peer::server(h, a)), None),
        _ => (String::new(), None),
    };
    let status = f
        .reply
        .as_ref()
        .and_then(|r| r.enhanced().map(str::to_string))
        .unwrap_or_else(|| {
            if f.permanent {
                "5.0.0".into()
            } else {
                "4.0.0".into()
            }
        });
    Report {
        host_field,
        text: f.text.clone(),
        reply: f.reply.as_ref().map(|r| r.one_line()),
        status,
        remote,
    }
}

impl Outbound {
    /// Set up from the configuration.
    pub fn new(
        cfg: Arc<Config>,
        settings: ClientSettings,
        cache: crate::cache::Cache,
        tables: Arc<crate::table::Tables>,
        logins: super::login::Logins,
    ) -> Result<Outbound, super::OutboundError> {
        let dns = Arc::new(Dns::new(
            &cfg.outbound.nameservers,
            cfg.outbound.dnssec_trust_anchors.as_deref(),
        )?);
        let roots = super::verify::load_roots(
            &std::iter::once(std::path::PathBuf::from(super::tls::SYSTEM_ROOTS))
                .chain(cfg.outbound.tls_ca_file.clone())
                .collect::<Vec<_>>(),
        );
        let https = Arc::new(super::https::Https::new(roots));
        let sts = Arc::new(super::mta_sts::MtaSts::new(
            cache.clone(),
            super::mta_sts::fetch::Fetcher::new(
                Arc::clone(&https),
                cfg.outbound.mta_sts_port,
                cfg.outbound
                    .connect_timeout
                    .duration()
                    .min(std::time::Duration::from_secs(60)),
            ),
        ));
        let tlsrpt = cfg
            .outbound
            .tlsrpt
            .then(|| super::tlsrpt::Tlsrpt::new(cache.clone()));
        Ok(Outbound {
            sts,
            https,
            tlsrpt,
            hints: crate::outbound::retry::RetryHints::new(
                cache,
                cfg.outbound.retry_min.0,
                cfg.outbound.retry_max.0,
            ),
            total: Arc::new(Semaphore::new(cfg.outbound.max_connections.max(1))),
            cfg,
            settings,
            dns,
            tables,
            logins,
            pool: Mutex::new(HashMap::new()),
            per_host: Mutex::new(HashMap::new()),
        })
    }

    fn host_sem(&self, addr: SocketAddr) -> Arc<Semaphore> {
        let mut m = self.per_host.lock().unwrap();
        Arc::clone(m.entry(addr).or_insert_with(|| {
            Arc::new(Semaphore::new(
                self.cfg.outbound.max_connections_per_host.max(1),
            ))
        }))
    }

    fn take_idle(&self, addr: SocketAddr, tag: &str) -> Option<Connection> {
        let idle = self.cfg.outbound.connection_idle.duration();
        let mut pool = self.pool.lock().unwrap();
        let v = pool.get_mut(&(addr, tag.to_string()))?;
        while let Some((c, t)) = v.pop() {
            if t.elapsed() < idle {
                return Some(c);
            }
            tokio::spawn(c.quit());
        }
        None
    }

    fn put_idle(&self, c: Connection) {
        if c.conv.sent >= self.cfg.outbound.max_messages_per_connection || !c.reusable() {
            tokio::spawn(c.quit());
            return;
        }
        self.pool
            .lock()
            .unwrap()
            .entry((c.addr, c.policy_tag.clone()))
            .or_default()
            .push((c, Instant::now()));
    }

    /// Close idle connections that waited too long (called periodically).
    pub fn reap(&self) {
        let idle = self.cfg.outbound.connection_idle.duration();
        let mut pool = self.pool.lock().unwrap();
        for v in pool.values_mut() {
            let (keep, old): (Vec<_>, Vec<_>) = std::mem::take(v)
                .into_iter()
                .partition(|(_, t)| t.elapsed() < idle);
            *v = keep;
            for (c, _) in old {
                tokio::spawn(c.quit());
            }
        }
        pool.retain(|_, v| !v.is_empty());
    }

    /// The TLS report counts (`None`: `outbound.tlsrpt` is off).
    pub fn tlsrpt(&self) -> Option<&Arc<super::tlsrpt::Tlsrpt>> {
        self.tlsrpt.as_ref()
    }

    /// The resolver deliveries use.
    pub fn dns(&self) -> &Arc<Dns> {
        &self.dns
    }

    /// The HTTPS client (system roots plus `outbound.tls_ca_file`).
    pub fn https(&self) -> &super::https::Https {
        &self.https
    }

    /// Count a TLS report session for `domain`.
    fn count(&self, domain: &str, policy: &PolicyId, outcome: Option<Outcome>) {
        if let (Some(t), Some(o)) = (&self.tlsrpt, outcome) {
            t.record(domain, policy, &o);
        }
    }

    /// Forget host retry hints (a forced retry).
    pub async fn clear_hints(&self) {
        self.hints.clear().await;
    }

    /// Close every pooled connection.
    pub fn close_all(&self) {
        let mut pool = self.pool.lock().unwrap();
        for (_, v) in pool.drain() {
            for (c, _) in v {
                tokio::spawn(c.quit());
            }
        }
    }

    /// Deliver `rcpts` (indexes into `env.recipients`, all at `domain`)
    /// with envelope sender `sender`.
    pub async fn deliver_domain(
        &self,
        env: &Envelope,
        sender: &str,
        data: Arc<Vec<u8>>,
        domain: &str,
        rcpts: &[usize],
        log: &MainLog,
    ) -> Vec<(usize, Result1)> {
        let all = |r: Result1| rcpts.iter().map(|&i| (i, r.clone())).collect::<Vec<_>>();
        let route = match super::hop::route(&self.dns, &self.cfg, &self.tables, domain).await {
            Ok(r) => r,
            Err(RouteError::Temporary(t)) => {
                return all(Result1::Deferred(Report {
                    host_field: String::new(),
                    text: t,
                    reply: None,
                    status: "4.4.3".into(),
                    remote: None,
                }));
            }
            Err(RouteError::Permanent(t)) => {
                return all(Result1::Failed(Report {
                    host_field: String::new(),
                    text: t,
                    reply: None,
                    status: "5.1.2".into(),
                    remote: None,
                }));
            }
        };
        let (sts, sts_failed) = self.sts_policy(&route, domain).await;
        let sts_state = match (&sts, &sts_failed) {
            (Some(p), _) => Sts::Policy(p),
            (None, Some(f)) => Sts::Failed(f),
            _ => Sts::None,
        };
        // TLS reports are about the MX hosts of the recipient domain.
        let reporting = route.router == "dnslookup" && self.tlsrpt.is_some();
        let job = Job {
            sender: sender.to_string(),
            rcpts: rcpts
                .iter()
                .map(|&i| {
                    let r = &env.recipients[i];
                    JobRcpt {
                        address: r.address.clone(),
                        notify: r.notify,
                        orcpt: r.orcpt.clone(),
                    }
                })
                .collect(),
            data,
            eightbit: env.body_8bitmime,
            smtputf8: env.smtputf8,
            ret: env.ret,
            envid: env.envid.clone(),
            requiretls: env.requiretls,
        };
        let mut last: Option<Result1> = None;
        // Whether every host tried so far refused only for REQUIRETLS (then
        // the recipients fail with 5.7.10 rather than wait).
        let mut only_requiretls = true;
        let started = Instant::now();
        for host in &route.hosts {
            let rpt = if reporting {
                session::policy_of(host, sts_state)
            } else {
                PolicyId::none()
            };
            let HostTls {
                mode,
                verification,
                cv,
                why,
            } = match self.host_tls(env, &route, host, sts.as_ref()) {
                Ok(h) => h,
                Err((reason, requiretls, kind)) => {
                    let addr = host.addrs[0];
                    if reporting && let Some(k) = kind {
                        self.count(
                            domain,
                            &rpt,
                            Some(session::failure(k, &host.name, None, None, &reason)),
                        );
                    }
                    only_requiretls &= requiretls;
                    let status = if requiretls { "4.7.10" } else { "4.7.5" };
                    last = Some(skipped(log, &env.id, &host.name, addr, reason, status));
                    continue;
                }
            };
            let login = match self.login(host, mode, cv) {
                Ok(l) => l,
                Err((reason, status)) => {
                    only_requiretls = false;
                    last = Some(skipped(
                        log,
                        &env.id,
                        &host.name,
                        host.addrs[0],
                        reason,
                        status,
                    ));
                    continue;
                }
            };
            // A pooled connection serves the same host name only (as
            // Exim's continued connections): the log's H= and the SNI it
            // was opened with stay true, whatever else shares the address.
            let tag = format!(
                "{mode:?}|{}|{}|{}",
                host.name.to_ascii_lowercase(),
                verification.tag,
                login.as_ref().map_or("", |l| l.user.as_str())
            );
            for &addr in &host.addrs {
                let _total: OwnedSemaphorePermit = Arc::clone(&self.total)
                    .acquire_owned()
                    .await
                    .expect("semaphore");
                let _one = self
                    .host_sem(addr)
                    .acquire_owned()
                    .await
                    .expect("semaphore");
                let now = chrono::Utc::now().timestamp();
                let mut conn = match self.take_idle(addr, &tag) {
                    Some(mut c) => {
                        if reporting && c.reported_for != domain {
                            c.reported_for = domain.to_string();
                            self.count(
                                domain,
                                &rpt,
                                session::opened(&c, mode, &rpt, sts_state, &self.settings.tls),
                            );
                        }
                        c
                    }
                    None if self.hints.blocked_until(addr, now).is_some() => {
                        only_requiretls = false;
                        if last.is_none() {
                            last = Some(Result1::Deferred(Report {
                                host_field: format!(
                                    "H={} [{}]:{}",
                                    host.name,
                                    addr.ip(),
                                    addr.port()
                                ),
                                text: "retry time not reached for any host".into(),
                                reply: None,
                                status: "4.4.1".into(),
                                remote: None,
                            }));
                        }
                        continue;
                    }
                    None => {
                        match Connection::open(
                            &host.name,
                            addr,
                            mode,
                            verification.clone(),
                            login.clone(),
                            &self.settings,
                        )
                        .await
                        {
                            Ok(mut c) => {
                                self.hints.succeeded(addr).await;
                                c.cv = if c.tls.is_some() { cv } else { "no" };
                                c.count_open();
                                c.policy_tag = tag.clone();
                                if reporting {
                                    c.reported_for = domain.to_string();
                                    self.count(
                                        domain,
                                        &rpt,
                                        session::opened(
                                            &c,
                                            mode,
                                            &rpt,
                                            sts_state,
                                            &self.settings.tls,
                                        ),
                                    );
                                }
                                c
                            }
                            Err(open) => {
                                if reporting {
                                    self.count(
                                        domain,
                                        &rpt,
                                        session::open_failed(
                                            &open, &host.name, addr, &rpt, sts_state,
                                        ),
                                    );
                                }
                                let mut f = open.failure;
                                if !why.is_empty()
                                    && (matches!(f.stage, Stage::StartTls | Stage::Local)
                                        || f.text.contains("TLS"))
                                {
                                    f.text = format!("{} ({why})", f.text);
                                }
                                self.hints.failed(addr, now).await;
                                only_requiretls = false;
                                log_host_failure(log, &env.id, &host.name, addr, &f);
                                let rep = report(&f, None, Some((&host.name, addr)));
                                // A 5xx greeting or EHLO is about this host; try the next.
                                last = Some(Result1::Deferred(rep));
                                continue;
                            }
                        }
                    }
                };
                match conn.send(&job).await {
                    Ok(outcomes) => {
                        let tail = |c: &Connection, reply: &str| {
                            let mut s = format!(
                                "R={} T=remote_smtp {}",
                                route.router,
                                host_field(&Peer::server(&c.host, c.addr))
                            );
                            if let Some(t) = &c.tls {
                                s.push_str(&format!(" X={} CV={}", t.log_field(), c.cv));
                            }
                            if c.conv.caps.pipelining {
                                s.push_str(if c.conv.early_pipe { " L*" } else { " L" });
                            }
                            if c.conv.caps.chunking {
                                s.push_str(" K");
                            }
                            if let (Some(m), Some(l)) = (c.conv.authenticated, &login) {
                                s.push_str(&format!(" A={}:{}", m.to_ascii_lowercase(), l.user));
                            }
                            s.push_str(&format!(
                                " C=\"{}\" DT={}s",
                                reply.replace('"', "\\\""),
                                started.elapsed().as_secs()
                            ));
                            s
                        };
                        let res = rcpts
                            .iter()
                            .zip(outcomes)
                            .map(|(&i, o)| {
                                let r = match o {
                                    RcptOutcome::Delivered(reply) => {
                                        Result1::Delivered(tail(&conn, &reply.one_line()))
                                    }
                                    RcptOutcome::Refused(f) if f.permanent => {
                                        Result1::Failed(report(&f, Some(&conn), None))
                                    }
                                    RcptOutcome::Refused(f) => {
                                        Result1::Deferred(report(&f, Some(&conn), None))
                                    }
                                };
                                (i, r)
                            })
                            .collect();
                        self.put_idle(conn);
                        return res;
                    }
                    Err(f) if f.stage == Stage::RequireTls => {
                        // RFC 8689 §4.2: not this server; try the next.
                        log_host_failure(log, &env.id, &host.name, addr, &f);
                        last = Some(Result1::Deferred(Report {
                            status: "4.7.10".into(),
                            ..report(&f, Some(&conn), None)
                        }));
                        self.put_idle(conn);
                        continue;
                    }
                    Err(f) if matches!(f.stage, Stage::Connect | Stage::Greeting | Stage::Ehlo) => {
                        // Early pipelining read the banner and EHLO only
                        // now: a failure there is about this host, as in
                        // `open`; try the next. (A cache found stale is
                        // not the host's fault.)
                        if f.stage != Stage::Ehlo || f.reply.is_some() {
                            self.hints.failed(addr, now).await;
                        }
                        only_requiretls = false;
                        log_host_failure(log, &env.id, &host.name, addr, &f);
                        last = Some(Result1::Deferred(report(&f, Some(&conn), None)));
                        continue;
                    }
                    Err(f) => {
                        let rep = report(&f, Some(&conn), None);
                        let permanent = f.permanent;
                        if f.reply.is_some() || matches!(f.stage, Stage::Local) {
                            self.put_idle(conn);
                        } else {
                            tokio::spawn(conn.quit());
                        }
                        // A reply to MAIL (or our own policy) is about the
                        // message, not the host: do not try other hosts.
                        return all(if permanent {
                            Result1::Failed(rep)
                        } else {
                            Result1::Deferred(rep)
                        });
                    }
                }
            }
        }
        if env.requiretls
            && only_requiretls
            && let Some(Result1::Deferred(r)) = &last
        {
            // Every server was tried and none qualifies: 5.7.10.
            return all(Result1::Failed(Report {
                status: "5.7.10".into(),
                text: format!("REQUIRETLS: no server qualified; last: {}", r.text),
                ..r.clone()
            }));
        }
        all(last.unwrap_or_else(|| {
            Result1::Deferred(Report {
                host_field: String::new(),
                text: "no host could be reached".into(),
                reply: None,
                status: "4.4.1".into(),
                remote: None,
            })
        }))
    }
}

impl Outbound {
    /// The login for `host` (its first address's port) under TLS `mode`
    /// and certificate check `cv`: none when no credentials are
    /// configured for it; `Err` (reason, status) when they are but may
    /// not be sent, or cannot be looked up.
    fn login(
        &self,
        host: &super::hop::Host,
        mode: crate::smtp::client::conversation::TlsMode,
        cv: &str,
    ) -> Result<Option<crate::smtp::client::conversation::Login>, (String, &'static str)> {
        if !self.logins.configured() {
            return Ok(None);
        }
        let port = host.addrs.first().map_or(25, |a| a.port());
        let cred = self
            .logins
            .find(&self.tables, &host.name, port)
            .map_err(|e| (format!("credentials for {}: {e}", host.name), "4.3.0"))?;
        let Some(cred) = cred else { return Ok(None) };
        super::login::decide(cred, self.cfg.outbound.auth_security, mode, cv, &host.name)
            .map(Some)
            .map_err(|e| (e, "4.7.0"))
    }
}

/// How one host of a route is connected to.
struct HostTls {
    mode: crate::smtp::client::conversation::TlsMode,
    verification: crate::outbound::tls::Verification,
    cv: &'static str,
    /// Why TLS is mandatory (for failure texts), or empty.
    why: String,
}

impl Outbound {
    /// The MTA-STS policy for an MX route to `domain`, when the policy
    /// level lets MTA-STS apply.
    async fn sts_policy(
        &self,
        route: &super::hop::Route,
        domain: &str,
    ) -> (
        Option<super::mta_sts::Policy>,
        Option<super::mta_sts::StsFailure>,
    ) {
        use crate::config::TlsLevel;
        if !self.cfg.outbound.mta_sts
            || route.router != "dnslookup"
            || !matches!(
                route.tls.level,
                TlsLevel::May | TlsLevel::Encrypt | TlsLevel::Dane
            )
        {
            return (None, None);
        }
        match self.sts.lookup(&self.dns, domain).await {
            super::mta_sts::Lookup::Policy(p) => (Some(p), None),
            super::mta_sts::Lookup::NoPolicy => (None, None),
            super::mta_sts::Lookup::Failed(e) => {
                tracing::debug!(%domain, error = %e, "no MTA-STS policy");
                (None, Some(e))
            }
        }
    }

    /// The TLS plan for `host` for this message: the destination's policy
    /// (relaxed to `may` by `TLS-Required: No`, RFC 8689 §5), and for a
    /// REQUIRETLS message only a verified one. `Err`: skip the host, with
    /// the reason, whether it was REQUIRETLS's, and the TLS report class
    /// (none for REQUIRETLS, which is the message's demand, not a policy
    /// failure).
    fn host_tls(
        &self,
        env: &Envelope,
        route: &super::hop::Route,
        host: &super::hop::Host,
        sts: Option<&super::mta_sts::Policy>,
    ) -> Result<HostTls, (String, bool, Option<ResultType>)> {
        let relaxed;
        let policy = if env.tls_optional && !env.requiretls {
            relaxed = crate::config::TlsPolicy {
                implicit: route.tls.implicit,
                ..crate::config::TlsPolicy::level(crate::config::TlsLevel::May)
            };
            &relaxed
        } else {
            &route.tls
        };
        // `TLS-Required: No` (without REQUIRETLS) sets MTA-STS aside too.
        let sts = sts.filter(|_| !env.tls_optional || env.requiretls);
        let plan = super::policy::plan(policy, &host.name, &host.tlsa, sts);
        let cv = plan.cv();
        let (mode, auth, why) = match plan {
            Plan::Use { mode, auth, why } => (mode, auth, why),
            Plan::Skip(reason, kind) => return Err((reason, false, Some(kind))),
        };
        if env.requiretls && cv == "no" {
            return Err((
                format!(
                    "REQUIRETLS: TLS to {} would not be verified (TLS level {}, no usable DANE records)",
                    host.name,
                    policy.level.name()
                ),
                true,
                None,
            ));
        }
        let verification = self.settings.tls.verification(
            &auth,
            policy,
            &host.name,
            &route.nexthop,
            &host.dane_names,
        );
        Ok(HostTls {
            mode,
            verification,
            cv,
            why,
        })
    }
}

/// One outgoing transaction's worth of due recipients.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Group {
    /// The plugin transport, or `None` for SMTP.
    pub transport: Option<String>,
    /// The recipient domain (lower case).
    pub domain: String,
    /// The envelope sender for this transaction.
    pub sender: String,
    /// Header fields route hooks gave these recipients' copy (a block of
    /// lines, empty for none): recipients with other fields get their own
    /// transaction.
    pub headers: String,
}

impl Report {
    /// The host field for the log, when a host was involved.
    pub fn host(&self) -> Option<String> {
        (!self.host_field.is_empty()).then(|| self.host_field.clone())
    }
}

/// The log line for a host that failed before a transaction started.
/// A host not tried (its TLS policy or login cannot be met here): logged
/// as a failed host, the recipient deferred with `status`.
fn skipped(
    log: &MainLog,
    id: &str,
    host: &str,
    addr: SocketAddr,
    reason: String,
    status: &str,
) -> Result1 {
    log_host_failure(log, id, host, addr, &Failure::local(reason.clone(), false));
    Result1::Deferred(Report {
        host_field: host_field(&Peer::server(host, addr)),
        text: reason,
        reply: None,
        status: status.into(),
        remote: None,
    })
}

fn log_host_failure(log: &MainLog, id: &str, host: &str, addr: SocketAddr, f: &Failure) {
    log.event(&crate::log::Event::HostFailed {
        id: id.to_string(),
        peer: Peer::server(host, addr),
        reason: f.text.clone(),
    });
}
