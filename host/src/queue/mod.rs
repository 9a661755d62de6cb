//! The queue: after a message is spooled, its recipients are routed; local
//! mailboxes are delivered at once, remote recipients wait in the spool for
//! outbound delivery (visible with `mailgate queue list`). A message leaves
//! the spool when every recipient is delivered or has failed for good.

pub mod bounce;
mod dmarc_reports;
mod reports;
pub mod schedule;

use crate::config::Config;
use crate::log::{Early, Event, MainLog};
use crate::outbound::deliver::{Outbound, Report, Result1};
use crate::routing::{Route, Router};
use crate::spool::{Envelope, RcptState, Spool};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tracing::Instrument;

/// Handle used by sessions to hand over newly spooled messages.
#[derive(Clone)]
pub struct QueueHandle {
    tx: mpsc::UnboundedSender<String>,
    runner: Arc<Runner>,
}

impl QueueHandle {
    /// Route and deliver a newly spooled message (unless the queue is
    /// queue-only: then it waits for a flush).
    pub fn submit(&self, id: String) {
        if !self.runner.cfg.outbound.queue_only {
            let _ = self.tx.send(id);
        }
    }

    /// Make queued recipients due now (one message, or all) and start
    /// delivering them, ignoring retry times and host retry hints.
    /// Returns how many messages were scheduled.
    pub async fn retry(&self, id: Option<&str>) -> usize {
        if let Some(o) = &self.runner.outbound {
            o.clear_hints().await;
        }
        let ids: Vec<String> = match id {
            Some(id) => self
                .runner
                .spool
                .get(id)
                .into_iter()
                .map(|e| e.id)
                .collect(),
            None => self.runner.spool.list().into_iter().map(|e| e.id).collect(),
        };
        let n = ids.len();
        {
            let mut f = self.runner.forced.lock().unwrap();
            f.extend(ids.iter().cloned());
        }
        for id in ids {
            self.runner.clone().dispatch(id);
        }
        n
    }

    /// TLS reports of `day` (`YYYY-MM-DD`, UTC) for `domain` or every
    /// domain with counts, as JSON; with `send`, also sent now.
    pub async fn tls_reports(
        &self,
        day: &str,
        domain: Option<&str>,
        send: bool,
    ) -> serde_json::Value {
        self.runner.tls_reports(day, domain, send).await
    }

    /// DMARC aggregate reports of `day` for `domain` or every domain
    /// with rows, as JSON (`{"reports": [{"domain", "xml"}]}`); with
    /// `send`, also sent now.
    pub async fn dmarc_reports(
        &self,
        day: &str,
        domain: Option<&str>,
        send: bool,
    ) -> serde_json::Value {
        self.runner.dmarc_reports(day, domain, send).await
    }

    /// Write the report counts gathered in memory (at shutdown).
    pub async fn flush_reports(&self) {
        if let Some(t) = self.runner.outbound.as_ref().and_then(|o| o.tlsrpt())
            && let Err(e) = t.flush().await
        {
            tracing::warn!(error = %e, "cannot write TLS report counts");
        }
        if let Some(d) = &self.runner.dmarc
            && let Err(e) = d.flush().await
        {
            tracing::warn!(error = %e, "cannot write DMARC report rows");
        }
    }

    /// Stop starting deliveries and wait (up to `timeout`) for those in
    /// flight, so that their spool records are written before the spool
    /// closes. Returns the number still running at the deadline.
    pub async fn drain(&self, timeout: Duration) -> usize {
        self.runner
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let n = self.runner.busy.lock().unwrap().len();
            if n == 0 || tokio::time::Instant::now() >= until {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

struct Runner {
    cfg: Arc<Config>,
    outbound: Option<Arc<Outbound>>,
    spool: Spool,
    router: Arc<Router>,
    log: Arc<MainLog>,
    hostname: String,
    busy: Mutex<HashSet<String>>,
    slots: Semaphore,
    stopping: std::sync::atomic::AtomicBool,
    /// Hands new messages (DSNs) to the scheduling loop; weak, so the
    /// loop ends when the last [`QueueHandle`] goes and the runner is freed.
    resubmit: mpsc::WeakUnboundedSender<String>,
    forced: Mutex<HashSet<String>>,
    plugins: Option<Arc<crate::plugin::Runtime>>,
    finish: Option<Arc<dyn Finish>>,
    dmarc: Option<Arc<crate::dmarcrpt::Dmarcrpt>>,
}

/// Run `job` on the runner every hour (and at once) until the runner is
/// gone or stopping: the daily reports' check.
fn hourly<F, Fut>(runner: &Arc<Runner>, job: F)
where
    F: Fn(Arc<Runner>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let weak = Arc::downgrade(runner);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let Some(r) = weak.upgrade() else { break };
            if r.stopping.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            job(r).await;
        }
    });
}

/// What the server lends the queue besides the spool and delivery.
#[derive(Default)]
pub struct Helpers {
    /// Completes the messages the gateway writes itself (DKIM signing).
    pub finish: Option<Arc<dyn Finish>>,
    /// The DMARC aggregate report rows the queue mails once a day is over.
    pub dmarc: Option<Arc<crate::dmarcrpt::Dmarcrpt>>,
}

/// What completes a message the gateway writes itself (a DSN, a TLS
/// report) before it is spooled: the server gives the DKIM signer of
/// `[[dkim]]`, which signs it by its From domain when it has a key.
pub trait Finish: Send + Sync {
    /// Complete `message` in place; an error is logged and the message goes
    /// as it is.
    fn finish(&self, message: &mut Vec<u8>) -> Result<(), String>;
}

/// Start the queue runner; it first picks up what the spool holds.
/// Without `outbound`, remote recipients stay queued.
pub fn start(
    cfg: Arc<Config>,
    outbound: Option<Arc<Outbound>>,
    spool: Spool,
    router: Arc<Router>,
    log: Arc<MainLog>,
    plugins: Option<Arc<crate::plugin::Runtime>>,
    helpers: Helpers,
) -> QueueHandle {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let interval = Duration::from_secs((cfg.outbound.retry_min.0 / 2).clamp(1, 60));
    let runner = Arc::new(Runner {
        hostname: cfg.server.hostname.clone(),
        cfg,
        outbound,
        spool,
        router,
        log,
        busy: Mutex::new(HashSet::new()),
        slots: Semaphore::new(64),
        stopping: std::sync::atomic::AtomicBool::new(false),
        resubmit: tx.downgrade(),
        forced: Mutex::new(HashSet::new()),
        plugins,
        finish: helpers.finish,
        dmarc: helpers.dmarc,
    });
    let handle = QueueHandle {
        tx,
        runner: Arc::clone(&runner),
    };
    reports::start(&runner);
    dmarc_reports::start(&runner);
    tokio::spawn(async move {
        runner.clone().scan();
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            tokio::select! {
                id = rx.recv() => match id {
                    Some(id) => runner.clone().dispatch(id),
                    None => break,
                },
                _ = tick.tick() => {
                    if let Some(o) = &runner.outbound {
                        o.reap();
                    }
                    runner.clone().scan();
                }
            }
        }
    });
    handle
}

impl Runner {
    /// Dispatch every message with recipients to route or due for a retry.
    fn scan(self: Arc<Self>) {
        if self.cfg.outbound.queue_only {
            return;
        }
        let now = chrono::Utc::now().timestamp();
        let warn = self.cfg.outbound.delay_warning.0 as i64;
        for env in self.spool.list() {
            let due = env.recipients.iter().any(|r| match r.state {
                RcptState::Pending => true,
                RcptState::Queued => {
                    self.outbound.is_some()
                        && (r.next_attempt.is_none_or(|t| t <= now)
                            || (warn > 0 && !r.warned && now - env.received_at >= warn))
                }
                _ => false,
            });
            if due {
                self.clone().dispatch(env.id);
            }
        }
    }

    fn dispatch(self: Arc<Self>, id: String) {
        if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        if !self.busy.lock().unwrap().insert(id.clone()) {
            return;
        }
        // Every trace line of the message's handling names its id.
        let span = tracing::info_span!("message", id = %id);
        tokio::spawn(
            async move {
                let _permit = self.slots.acquire().await;
                let me = self.clone();
                let id2 = id.clone();
                let span = tracing::Span::current();
                let res =
                    tokio::task::spawn_blocking(move || span.in_scope(|| me.process(&id2))).await;
                if let Ok(Some(waits)) = res {
                    for w in waits {
                        let _ = w.await;
                    }
                }
                if self.outbound.is_some() {
                    self.remote(&id).await;
                }
                self.busy.lock().unwrap().remove(&id);
            }
            .instrument(span),
        );
    }

    /// Route the pending recipients of one message and deliver the local ones.
    fn process(
        &self,
        id: &str,
    ) -> Option<Vec<tokio::sync::oneshot::Receiver<std::io::Result<()>>>> {
        let mut env: Envelope = self.spool.get(id)?;
        let mut data: Option<Vec<u8>> = None;
        let mut changed = false;
        let n = env.recipients.len();
        for i in 0..n {
            if env.recipients[i].state != RcptState::Pending {
                continue;
            }
            match crate::routing::expand(&self.router, &mut env.recipients, i) {
                // A lookup table that cannot answer: the recipient stays
                // pending and is routed again at the next run.
                Err(reason) if reason.is_temporary() => {
                    self.log.event(&Event::Deferred {
                        id: id.to_string(),
                        rcpt: env.recipients[i].address.clone(),
                        parent: None,
                        route: "R=route".into(),
                        host: None,
                        reason: reason.to_string(),
                    });
                    let r = &mut env.recipients[i];
                    r.attempts += 1;
                    r.detail = Some(reason.to_string());
                    changed = true;
                }
                Err(reason) => {
                    self.log.event(&Event::Failed {
                        id: id.to_string(),
                        rcpt: env.recipients[i].address.clone(),
                        parent: None,
                        route: None,
                        host: None,
                        reason: reason.to_string(),
                    });
                    let r = &mut env.recipients[i];
                    r.state = RcptState::Failed;
                    r.detail = Some(reason.to_string());
                    changed = true;
                }
                Ok(routed) => {
                    for (j, route) in routed {
                        let via = env.recipients[j]
                            .parent
                            .and_then(|p| env.recipients.get(p))
                            .map(|p| p.address.clone());
                        // Anything but a direct local mailbox changed state
                        // in the expansion itself.
                        changed |= j != i || !matches!(route, Route::Local { .. });
                        changed |= self.apply(&mut env, j, &route, via.as_deref(), &mut data);
                    }
                }
            }
        }
        if !changed {
            return None;
        }
        let mut waits = Vec::new();
        if env.is_complete() {
            self.log.event(&Event::Completed { id: id.to_string() });
            waits.extend(self.spool.complete(id).ok());
        } else {
            waits.extend(self.spool.update(env).ok());
        }
        Some(waits)
    }

    /// Deliver the due remote recipients of one message.
    async fn remote(&self, id: &str) {
        let Some(outbound) = self.outbound.clone() else {
            return;
        };
        let Some(mut env) = self.spool.get(id) else {
            return;
        };
        let now = chrono::Utc::now().timestamp();
        let forced = self.forced.lock().unwrap().remove(id);
        let groups = schedule::due_groups(&env, if forced { i64::MAX } else { now });
        let mut fail_reports = Vec::new();
        let mut delay_reports = Vec::new();
        let mut changed = false;
        if !groups.is_empty() {
            let data = match self.spool.read_data(id) {
                Ok(d) => Arc::new(d),
                Err(e) => {
                    self.log
                        .event(&Event::message_notice(id, format!("spool read error: {e}")));
                    return;
                }
            };
            let mut set = tokio::task::JoinSet::new();
            for (g, idxs) in groups {
                let o = Arc::clone(&outbound);
                let env2 = env.clone();
                let data = match g.headers.is_empty() {
                    true => Arc::clone(&data),
                    false => Arc::new(crate::spool::with_headers(&g.headers, &data)),
                };
                let log = Arc::clone(&self.log);
                let rt = self.plugins.clone();
                set.spawn(async move {
                    let all = |r: Result1| idxs.iter().map(|&i| (i, r.clone())).collect();
                    let Some(rt) = rt else {
                        if g.transport.is_some() {
                            return all(Result1::Deferred(Report {
                                host_field: String::new(),
                                text: "plugins are not running".into(),
                                reply: None,
                                status: "4.3.0".into(),
                                remote: None,
                            }));
                        }
                        return o
                            .deliver_domain(&env2, &g.sender, data, &g.domain, &idxs, &log)
                            .await;
                    };
                    if g.transport.is_some() {
                        return crate::plugin::dispatch::delivery::transport(
                            &rt, &env2, &g, &idxs, data,
                        )
                        .await;
                    }
                    match crate::plugin::dispatch::delivery::deliver(
                        &rt, &env2, &g, &idxs, data, &log,
                    )
                    .await
                    {
                        Ok(data) => {
                            o.deliver_domain(&env2, &g.sender, data, &g.domain, &idxs, &log)
                                .await
                        }
                        Err(r) => all(r),
                    }
                });
            }
            let mut results = Vec::new();
            while let Some(r) = set.join_next().await {
                if let Ok(v) = r {
                    results.push(v);
                }
            }
            let max_age = self.cfg.outbound.max_age.0 as i64;
            for group in results {
                let mut first = true;
                for (i, res) in group {
                    changed = true;
                    let parent = env.recipients[i]
                        .parent
                        .and_then(|p| env.recipients.get(p))
                        .map(|p| p.address.clone());
                    let addr = env.recipients[i].address.clone();
                    let r = &mut env.recipients[i];
                    let rt = match &r.transport {
                        Some(t) => format!("R=plugin T={t}"),
                        None => "R=remote T=remote_smtp".to_string(),
                    };
                    r.attempts += 1;
                    match res {
                        Result1::Delivered(tail) => {
                            self.log.event(&Event::Delivered {
                                id: id.to_string(),
                                first,
                                rcpt: addr.clone(),
                                parent: parent.clone(),
                                via: tail.clone(),
                            });
                            latency(
                                if r.transport.is_some() {
                                    "plugin"
                                } else {
                                    "remote"
                                },
                                env.received_at,
                            );
                            first = false;
                            r.state = RcptState::Delivered;
                            r.next_attempt = None;
                            r.detail = Some(tail);
                        }
                        Result1::Failed(rep) => {
                            self.log.event(&Event::Failed {
                                id: id.to_string(),
                                rcpt: addr.clone(),
                                parent: parent.clone(),
                                route: Some(rt.clone()),
                                host: rep.host(),
                                reason: rep.text.clone(),
                            });
                            r.state = RcptState::Failed;
                            r.next_attempt = None;
                            r.detail = Some(rep.text.clone());
                            if crate::outbound::dsn::wanted(r.notify, "failed") {
                                fail_reports.push(bounce::rcpt_report(r, "failed", &rep));
                            }
                        }
                        Result1::Deferred(rep) => {
                            if now - env.received_at >= max_age {
                                let text =
                                    format!("retry timeout exceeded; last error: {}", rep.text);
                                self.log.event(&Event::Failed {
                                    id: id.to_string(),
                                    rcpt: addr.clone(),
                                    parent: parent.clone(),
                                    route: Some(rt.clone()),
                                    host: rep.host(),
                                    reason: text.clone(),
                                });
                                r.state = RcptState::Failed;
                                r.next_attempt = None;
                                r.detail = Some(text.clone());
                                if crate::outbound::dsn::wanted(r.notify, "failed") {
                                    let mut rep = rep.clone();
                                    rep.text = text;
                                    if rep.status.starts_with('4') {
                                        rep.status = "5.4.7".into();
                                    }
                                    fail_reports.push(bounce::rcpt_report(r, "failed", &rep));
                                }
                            } else {
                                let next = schedule::next_retry(&self.cfg, r.attempts, now);
                                self.log.event(&Event::Deferred {
                                    id: id.to_string(),
                                    rcpt: addr.clone(),
                                    parent: parent.clone(),
                                    route: rt.clone(),
                                    host: rep.host(),
                                    reason: rep.text.clone(),
                                });
                                r.next_attempt = Some(next);
                                r.detail = Some(rep.text.clone());
                            }
                        }
                    }
                }
            }
        }
        // Delay warnings, once per recipient.
        let warn = self.cfg.outbound.delay_warning.0 as i64;
        if warn > 0 && now - env.received_at >= warn {
            for r in env.recipients.iter_mut() {
                if r.state == RcptState::Queued && !r.warned {
                    r.warned = true;
                    changed = true;
                    if crate::outbound::dsn::wanted(r.notify, "delayed") {
                        let rep = Report {
                            host_field: String::new(),
                            text: r
                                .detail
                                .clone()
                                .unwrap_or_else(|| "not yet delivered".into()),
                            reply: None,
                            status: "4.4.7".into(),
                            remote: None,
                        };
                        delay_reports.push(bounce::rcpt_report(r, "delayed", &rep));
                    }
                }
            }
        }
        for reports in [fail_reports, delay_reports] {
            if reports.is_empty() {
                continue;
            }
            let content = self.spool.read_data(id).unwrap_or_default();
            if let Some((denv, body)) = bounce::dsn_message(&self.cfg, &env, &content, &reports) {
                if let Err(e) = self.inject(denv, &body, Some(id), "mailgate").await {
                    self.log.event(&Event::message_notice(
                        id,
                        format!("cannot spool a DSN: {e}"),
                    ));
                }
            } else if env.sender.is_empty() {
                tracing::debug!(%id, "no DSN for the null sender");
            }
        }
        if !changed {
            return;
        }
        let wait = if env.is_complete() {
            self.log.event(&Event::Completed { id: id.to_string() });
            self.spool.complete(id)
        } else {
            self.spool.update(env)
        };
        if let Ok(w) = wait {
            let _ = w.await;
        }
    }

    /// Spool a message the gateway writes itself (a DSN, a TLS report),
    /// DKIM-signed when a key serves its From domain, log its arrival
    /// (`origin`: the message it is about; `user`: who made it), and hand
    /// it to delivery.
    async fn inject(
        &self,
        mut env: Envelope,
        body: &[u8],
        origin: Option<&str>,
        user: &str,
    ) -> std::io::Result<()> {
        let mut signed;
        let body = match &self.finish {
            Some(f) => {
                signed = body.to_vec();
                if let Err(e) = f.finish(&mut signed) {
                    tracing::warn!(id = %env.id, error = %e, "sent unsigned");
                }
                signed.as_slice()
            }
            None => body,
        };
        let work = crate::routing::preroute(&self.router, &mut env.recipients);
        let (id, sender, requiretls) = (env.id.clone(), env.sender.clone(), env.requiretls);
        self.spool.commit_message(env, body).await?;
        self.log.event(&Event::Received {
            id: id.clone(),
            sender,
            peer: None,
            protocol: "local".into(),
            origin: origin.map(str::to_string),
            user: Some(user.to_string()),
            early: Early::No,
            tls: None,
            chunking: false,
            size: body.len() as u64,
            message_id: None,
            requiretls,
            auth: None,
            outcome: None,
        });
        if work {
            self.resubmit(id);
        }
        Ok(())
    }

    fn resubmit(&self, id: String) {
        if self.cfg.outbound.queue_only {
            return;
        }
        if let Some(tx) = self.resubmit.upgrade() {
            let _ = tx.send(id);
        }
    }

    /// Handle one routed recipient; returns true when its state changed.
    fn apply(
        &self,
        env: &mut Envelope,
        i: usize,
        route: &Route,
        via: Option<&str>,
        data: &mut Option<Vec<u8>>,
    ) -> bool {
        let id = env.id.clone();
        let parent = via.map(str::to_string);
        let defer = |rcpt: &str, reason: String| Event::Deferred {
            id: id.clone(),
            rcpt: rcpt.to_string(),
            parent: parent.clone(),
            route: "R=local_user T=maildir".into(),
            host: None,
            reason,
        };
        match route {
            Route::Remote(a) => {
                let r = &mut env.recipients[i];
                r.state = RcptState::Queued;
                r.detail = Some("waiting for outbound delivery".into());
                tracing::debug!(%id, rcpt = %a, "queued for outbound delivery");
                true
            }
            Route::Local { address, maildir } => {
                if data.is_none() {
                    match self.spool.read_data(&id) {
                        Ok(d) => *data = Some(d),
                        Err(e) => {
                            self.log.event(&defer(address, format!("spool read: {e}")));
                            return false;
                        }
                    }
                }
                let sender = env.sender.clone();
                let extra = crate::spool::copy_headers(&env.recipients, i);
                let own;
                let content = match extra.is_empty() {
                    true => data.as_deref().unwrap(),
                    false => {
                        own = crate::spool::with_headers(&extra, data.as_deref().unwrap());
                        own.as_slice()
                    }
                };
                match crate::local::maildir::deliver(
                    maildir,
                    &self.hostname,
                    &sender,
                    address,
                    content,
                ) {
                    Ok(path) => {
                        self.log.event(&Event::Delivered {
                            id: id.clone(),
                            first: true,
                            rcpt: address.clone(),
                            parent: parent.clone(),
                            via: "R=local_user T=maildir".into(),
                        });
                        latency("local", env.received_at);
                        let r = &mut env.recipients[i];
                        r.state = RcptState::Delivered;
                        r.attempts += 1;
                        r.detail = Some(path.display().to_string());
                        true
                    }
                    Err(e) => {
                        self.log.event(&defer(address, e.to_string()));
                        let r = &mut env.recipients[i];
                        r.attempts += 1;
                        r.detail = Some(format!("maildir: {e}"));
                        true
                    }
                }
            }
        }
    }
}

/// Record a delivery's time since arrival (whole seconds: the envelope
/// keeps its arrival to the second).
fn latency(class: &str, received_at: i64) {
    let secs = (chrono::Utc::now().timestamp() - received_at).max(0);
    crate::metrics::get()
        .delivery_latency
        .observe(&[class], secs as f64);
}
