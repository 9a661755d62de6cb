//! Calling hooks: the plugins of one session in config order, one
//! instance per plugin per transaction (fresh, or an idle one from the
//! plugin's pool when its config says `reuse`), answers validated,
//! failures counted and given their plugin's failure policy.

use super::bindings::hook_name;
use super::bindings::mailgate::plugin::types::{self as wit, Hook};
use super::engine::{Loaded, Runtime};
use super::instance::Instance;
use super::shadow::{self, Difference};
use crate::config::plugin::OnFailure;
use crate::metrics;
use crate::plugin::bindings::exports::mailgate::plugin::plugin::RouteDecision;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The outcome of running a hook through every plugin that has it.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The deciding verdict (`None`: everyone said continue).
    pub verdict: Option<wit::Verdict>,
    /// Actions collected, in plugin order.
    pub actions: Vec<wit::Action>,
    /// Failures, for the log: (plugin, reason, policy).
    pub failures: Vec<(String, String, OnFailure)>,
    /// Where a shadow answered otherwise than its active plugin.
    pub shadows: Vec<Difference>,
}

/// What the route hooks made of one recipient.
#[derive(Debug, Default)]
pub struct Routed {
    /// The recipient, possibly rewritten (routed again by the host).
    pub recipient: String,
    /// Its own envelope sender, when a plugin gave one (SRS).
    pub sender: Option<String>,
    /// The plugin that asked to be its transport.
    pub transport: Option<String>,
    /// Header fields for this recipient's copy (`routing.add-header`), in
    /// plugin order.
    pub headers: Vec<(String, String)>,
    /// Failures, as in [`Outcome`].
    pub failures: Vec<(String, String, OnFailure)>,
    /// Shadow differences, as in [`Outcome`].
    pub shadows: Vec<Difference>,
}

/// Which hook to call, with its arguments.
pub enum Call<'a> {
    /// on-connect
    Connect,
    /// on-helo
    Helo,
    /// on-mail-from
    MailFrom,
    /// on-rcpt-to
    RcptTo(&'a str),
    /// on-data
    Data(Arc<Vec<u8>>),
    /// on-deliver: the transaction and the message as it will be sent.
    Deliver(&'a wit::Delivery, Arc<Vec<u8>>),
}

impl Call<'_> {
    /// The recipient of a RCPT call, for the log.
    fn detail(&self) -> Option<String> {
        match self {
            Call::RcptTo(r) => Some(format!("<{r}>")),
            _ => None,
        }
    }

    fn hook(&self) -> Hook {
        match self {
            Call::Connect => Hook::Connect,
            Call::Helo => Hook::Helo,
            Call::MailFrom => Hook::MailFrom,
            Call::RcptTo(_) => Hook::RcptTo,
            Call::Data(_) => Hook::Data,
            Call::Deliver(..) => Hook::Deliver,
        }
    }
}

/// The plugins of one session: the set it started with, and one instance
/// per plugin for the current transaction.
pub struct SessionPlugins {
    rt: Arc<Runtime>,
    set: Arc<Vec<Arc<Loaded>>>,
    instances: Vec<Option<Instance>>,
    /// For each plugin, the index of its shadow, if it has one.
    shadow_for: Vec<Option<usize>>,
    /// A MAIL was seen since the instances were last renewed.
    begun: bool,
}

impl SessionPlugins {
    /// Snapshot the current set.
    pub fn new(rt: Arc<Runtime>) -> SessionPlugins {
        let set = rt.current();
        let n = set.len();
        let shadow_for = set
            .iter()
            .map(|p| {
                set.iter()
                    .position(|s| s.cfg.shadow_of.as_deref() == Some(p.cfg.name.as_str()))
            })
            .collect();
        SessionPlugins {
            rt,
            set,
            instances: (0..n).map(|_| None).collect(),
            shadow_for,
            begun: false,
        }
    }

    /// True when no plugin is loaded.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// End of a transaction: the instances go back to their plugins'
    /// pools (when they are reused) or are dropped; the next call gets others.
    pub fn reset(&mut self) {
        self.begun = false;
        for (i, slot) in self.instances.iter_mut().enumerate() {
            if let Some(inst) = slot.take()
                && self.set[i].reuse
            {
                self.set[i].pool.give_back(inst);
            }
        }
    }

    /// MAIL: a transaction begins. Instances that served an earlier one
    /// (ended by RSET or a refusal rather than by a message) are renewed
    /// as at its end; instances that served only connect and HELO go on
    /// into this one.
    pub fn begin_transaction(&mut self) {
        if self.begun {
            self.reset();
        }
        self.begun = true;
    }

    /// Run a hook through the plugins in config order.
    pub async fn run(&mut self, ctx: &wit::Context, call: Call<'_>) -> Outcome {
        let mut out = Outcome::default();
        let hook = call.hook();
        let set = Arc::clone(&self.set);
        // Later plugins of the stage see the variables earlier ones set
        // (an ARC verdict for DMARC, say): a copy of the context once one
        // does.
        let mut seen: Option<wit::Context> = None;
        for (i, p) in set.iter().enumerate() {
            if p.cfg.shadow_of.is_some() {
                continue;
            }
            let shadow = self.shadow_for[i].filter(|&s| set[s].hooks.contains(&hook));
            if !p.hooks.contains(&hook) {
                // Its shadow may have the hook: the active plugin's
                // answer is then to go on.
                if let Some(s) = shadow {
                    let c = seen.as_ref().unwrap_or(ctx);
                    let d = self.shadow_hook(s, i, c, &call, "continue".into()).await;
                    out.shadows.extend(d);
                }
                continue;
            }
            p.calls.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let res = self.call_one(i, seen.as_ref().unwrap_or(ctx), &call).await;
            let failed = res.as_ref().err().map(String::as_str);
            metrics::get().plugin_call(&p.cfg.name, hook_name(hook), started, failed);
            if let Some(s) = shadow {
                let c = seen.as_ref().unwrap_or(ctx);
                let d = self
                    .shadow_hook(s, i, c, &call, shadow::describe(&res))
                    .await;
                out.shadows.extend(d);
            }
            if let Some(why) = self.take_outage(i) {
                // The shared store was down under the defer policy: what
                // the plugin answered without it is not followed.
                if res.is_err() {
                    self.failed(i);
                }
                out.failures
                    .push((p.cfg.name.clone(), why, OnFailure::Tempfail));
                out.verdict = Some(wit::Verdict::Defer(wit::SmtpReply {
                    code: 451,
                    enhanced: "4.3.0".into(),
                    text: "Temporary local problem; try again later".into(),
                }));
                break;
            }
            match res {
                Ok(resp) => {
                    for a in &resp.actions {
                        if let wit::Action::SetVar((k, v)) = a {
                            let c = seen.get_or_insert_with(|| ctx.clone());
                            c.vars.retain(|(n, _)| n != k);
                            c.vars.push((k.clone(), v.clone()));
                        }
                    }
                    out.actions.extend(resp.actions);
                    match resp.verdict {
                        wit::Verdict::Continue => {}
                        v => {
                            out.verdict = Some(v);
                            break;
                        }
                    }
                }
                Err(reason) => {
                    // A failed instance may be poisoned: dropped.
                    self.failed(i);
                    out.failures
                        .push((p.cfg.name.clone(), reason, p.cfg.on_failure));
                    if p.cfg.on_failure == OnFailure::Tempfail {
                        out.verdict = Some(wit::Verdict::Defer(wit::SmtpReply {
                            code: 451,
                            enhanced: "4.3.0".into(),
                            text: "Temporary local problem; try again later".into(),
                        }));
                        break;
                    }
                }
            }
        }
        out
    }

    /// True when some plugin of the set implements `hook`.
    pub fn has_hook(&self, hook: Hook) -> bool {
        self.set.iter().any(|p| p.hooks.contains(&hook))
    }

    async fn instance(&mut self, i: usize) -> Result<&mut Instance, String> {
        if self.instances[i].is_none() {
            let p = Arc::clone(&self.set[i]);
            let idle = if p.reuse { p.pool.take() } else { None };
            self.instances[i] = Some(match idle {
                Some(inst) => inst,
                None => Instance::new(&self.rt, p).await?,
            });
        }
        let inst = self.instances[i].as_mut().expect("instance just created");
        inst.reset_budget();
        // Until the call returns: a call whose future is dropped midway
        // (the session went away while the plugin awaited the host) leaves
        // the instance in an unknown state, and it is not kept.
        inst.in_call = true;
        Ok(inst)
    }

    /// Call shadow `s` of plugin `active` as `active` was called, compare
    /// its answer with `theirs` and count; the answer goes no further.
    async fn shadow_hook(
        &mut self,
        s: usize,
        active: usize,
        ctx: &wit::Context,
        call: &Call<'_>,
        theirs: String,
    ) -> Option<Difference> {
        let sp = Arc::clone(&self.set[s]);
        sp.calls.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let res = self.call_one(s, ctx, call).await;
        let res = match self.take_outage(s) {
            Some(why) => Err(why),
            None => res,
        };
        let failed = res.as_ref().err().map(String::as_str);
        metrics::get().plugin_call(&sp.cfg.name, hook_name(call.hook()), started, failed);
        if res.is_err() {
            self.failed(s);
        }
        let mine = shadow::describe(&res);
        sp.shadow.compare(
            &self.set[active].cfg.name,
            &sp.cfg.name,
            hook_name(call.hook()),
            call.detail(),
            theirs,
            mine,
        )
    }

    /// Whether the last call of plugin `i` found the shared store
    /// unavailable under the defer policy (and why).
    fn take_outage(&mut self, i: usize) -> Option<String> {
        self.instances[i]
            .as_mut()?
            .store
            .data_mut()
            .store_outage
            .take()
    }

    /// Count a failure of plugin `i` and drop its (maybe poisoned) instance.
    fn failed(&mut self, i: usize) {
        self.set[i].failures.fetch_add(1, Ordering::Relaxed);
        self.instances[i] = None;
    }

    /// Run the route hook of every plugin that has it, in config order,
    /// each seeing the decision of the one before.
    pub async fn route(&mut self, ctx: &wit::Context, info: &wit::RouteInfo) -> Routed {
        let mut info = info.clone();
        let mut out = Routed::default();
        let set = Arc::clone(&self.set);
        for (i, p) in set.iter().enumerate() {
            if p.cfg.shadow_of.is_some() {
                continue;
            }
            let shadow = self.shadow_for[i].filter(|&s| set[s].hooks.contains(&Hook::Route));
            if !p.hooks.contains(&Hook::Route) {
                if let Some(s) = shadow {
                    let unchanged = Ok((
                        RouteDecision {
                            recipient: info.recipient.clone(),
                            sender: None,
                            transport: false,
                        },
                        vec![],
                    ));
                    let theirs = shadow::describe_route(&unchanged);
                    out.shadows
                        .extend(self.shadow_route(s, i, ctx, &info, theirs).await);
                }
                continue;
            }
            let r = self.route_one(i, ctx, &info).await;
            if let Some(s) = shadow {
                let theirs = shadow::describe_route(&r);
                out.shadows
                    .extend(self.shadow_route(s, i, ctx, &info, theirs).await);
            }
            if let Some(why) = self.take_outage(i) {
                out.failures
                    .push((p.cfg.name.clone(), why, OnFailure::Tempfail));
                continue;
            }
            match r {
                Ok((d, headers)) => {
                    info.recipient = d.recipient;
                    if d.sender.is_some() {
                        out.sender = d.sender;
                    }
                    if d.transport && out.transport.is_none() {
                        out.transport = Some(p.cfg.name.clone());
                    }
                    out.headers.extend(headers);
                }
                Err(reason) => {
                    self.failed(i);
                    out.failures
                        .push((p.cfg.name.clone(), reason, p.cfg.on_failure));
                }
            }
        }
        out.recipient = info.recipient;
        out
    }

    /// Call the route hook of plugin `i`: its decision, checked, and the
    /// header fields it added for the recipient's copy.
    async fn route_one(
        &mut self,
        i: usize,
        ctx: &wit::Context,
        info: &wit::RouteInfo,
    ) -> shadow::RouteAnswer {
        let p = Arc::clone(&self.set[i]);
        p.calls.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let r = match self.instance(i).await {
            Ok(inst) => {
                inst.store.data_mut().route_headers = Some(Vec::new());
                let r = inst.bindings.route(&mut inst.store, ctx, info).await;
                inst.in_call = false;
                let headers = inst.store.data_mut().route_headers.take();
                r.map(|d| (d, headers.unwrap_or_default()))
                    .map_err(|e| inst.describe_error(e))
            }
            Err(e) => Err(e),
        };
        let r = r.and_then(|(d, h)| {
            if d.recipient.is_empty()
                || d.recipient.contains(['\r', '\n', '<', '>'])
                || d.sender
                    .as_ref()
                    .is_some_and(|s| s.contains(['\r', '\n', '<', '>']))
            {
                Err("malformed answer: bad address in route decision".to_string())
            } else {
                Ok((d, h))
            }
        });
        let failed = r.as_ref().err().map(String::as_str);
        metrics::get().plugin_call(&p.cfg.name, "route", started, failed);
        r
    }

    /// The route hook of shadow `s` of plugin `active`, compared.
    async fn shadow_route(
        &mut self,
        s: usize,
        active: usize,
        ctx: &wit::Context,
        info: &wit::RouteInfo,
        theirs: String,
    ) -> Option<Difference> {
        let r = self.route_one(s, ctx, info).await;
        let r = match self.take_outage(s) {
            Some(why) => Err(why),
            None => r,
        };
        if r.is_err() {
            self.failed(s);
        }
        let mine = shadow::describe_route(&r);
        let sp = Arc::clone(&self.set[s]);
        sp.shadow.compare(
            &self.set[active].cfg.name,
            &sp.cfg.name,
            "route",
            Some(format!("<{}>", info.recipient)),
            theirs,
            mine,
        )
    }

    /// Hand a delivery to the transport hook of plugin `name`.
    pub async fn transport(
        &mut self,
        name: &str,
        ctx: &wit::Context,
        d: &wit::Delivery,
        data: Arc<Vec<u8>>,
    ) -> Result<wit::TransportResult, String> {
        let Some(i) = self.set.iter().position(|p| p.cfg.name == name) else {
            return Err(format!("plugin {name} is not loaded"));
        };
        if !self.set[i].hooks.contains(&Hook::Transport) {
            return Err(format!("plugin {name} has no transport hook"));
        }
        self.set[i].calls.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let r = async {
            let inst = self.instance(i).await?;
            let r = inst.bindings.transport(&mut inst.store, ctx, d, data).await;
            inst.in_call = false;
            r.map_err(|e| inst.describe_error(e))
        }
        .await;
        let failed = r.as_ref().err().map(String::as_str);
        metrics::get().plugin_call(name, "transport", started, failed);
        if r.is_err() {
            self.failed(i);
        }
        r
    }

    async fn call_one(
        &mut self,
        i: usize,
        ctx: &wit::Context,
        call: &Call<'_>,
    ) -> Result<wit::Response, String> {
        let inst = self.instance(i).await?;
        let r = inst.bindings.hook(&mut inst.store, ctx, call).await;
        inst.in_call = false;
        let resp = r.map_err(|e| inst.describe_error(e))?;
        validate(&resp)?;
        Ok(resp)
    }
}

impl Drop for SessionPlugins {
    /// A session or delivery that ends mid-transaction gives its
    /// instances back too.
    fn drop(&mut self) {
        self.reset();
    }
}

impl Instance {
    /// Why a call failed, in the words of the log: a budget (time, fuel,
    /// memory: the store's limiter saw a growth refused during the call),
    /// a trap, or the runtime's own first line.
    pub(super) fn describe_error(&self, e: wasmtime::Error) -> String {
        if let Some(t) = e.downcast_ref::<wasmtime::Trap>() {
            return match t {
                wasmtime::Trap::Interrupt => "time budget exceeded".into(),
                wasmtime::Trap::OutOfFuel => "fuel budget exceeded".into(),
                _ if self.store.data().limits.refused => "memory budget exceeded".into(),
                other => format!("trap: {other}"),
            };
        }
        if self.store.data().limits.refused {
            return "memory budget exceeded".into();
        }
        format!("{e:#}")
            .lines()
            .next()
            .unwrap_or("failure")
            .to_string()
    }
}

/// A header value may be folded (CRLF followed by a space or tab, as long
/// signature fields are), but carry no other line break: no new fields, no
/// end of the header block.
fn folded_ok(value: &str) -> bool {
    let b = value.as_bytes();
    b.iter().enumerate().all(|(i, &c)| match c {
        b'\r' => b.get(i + 1) == Some(&b'\n') && matches!(b.get(i + 2), Some(b' ' | b'\t')),
        b'\n' => i > 0 && b[i - 1] == b'\r',
        _ => true,
    }) && !value.split("\r\n").skip(1).any(|l| l.trim().is_empty())
}

/// A header field a plugin may add: a field name of printable ASCII
/// without a colon, and a value that may fold but not break out.
pub(crate) fn header_ok(name: &str, value: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
        && folded_ok(value)
}

/// Refuse malformed answers: bad reply codes, header injection.
pub(super) fn validate(r: &wit::Response) -> Result<(), String> {
    let check_reply = |rep: &wit::SmtpReply, lo: u16, hi: u16| {
        if !(lo..=hi).contains(&rep.code) {
            return Err(format!(
                "malformed answer: reply code {} out of range",
                rep.code
            ));
        }
        if rep.text.contains(['\r', '\n']) || rep.enhanced.contains(['\r', '\n']) {
            return Err("malformed answer: line break in reply text".into());
        }
        Ok(())
    };
    match &r.verdict {
        wit::Verdict::Reject(rep) => check_reply(rep, 500, 599)?,
        wit::Verdict::Defer(rep) => check_reply(rep, 400, 499)?,
        _ => {}
    }
    for a in &r.actions {
        if let wit::Action::AddHeader((name, value)) = a
            && !header_ok(name, value)
        {
            return Err(format!("malformed answer: bad header {name:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::folded_ok;

    #[test]
    fn header_values_may_fold_but_not_break_out() {
        assert!(folded_ok("i=1; a=rsa-sha256;\r\n\tb=abc"));
        assert!(folded_ok("plain"));
        // A new field, the end of the header block, bare CR or LF, an
        // empty continuation line.
        for bad in [
            "a\r\nX-New: 1",
            "a\r\n\r\nbody",
            "a\rb",
            "a\nb",
            "a\r\n \r\n b",
            "a\r\n",
        ] {
            assert!(!folded_ok(bad), "{bad:?}");
        }
    }

    #[test]
    fn header_names_are_field_names() {
        assert!(super::header_ok("X-Spam-Verdict", "drop; profile=strict"));
        for bad in ["", "X Verdict", "X:Verdict", "X-\u{e9}", "Bcc\r\nX"] {
            assert!(!super::header_ok(bad, "v"), "{bad:?}");
        }
        assert!(!super::header_ok("X-Ok", "v\r\nBcc: evil@example.org"));
    }
}
