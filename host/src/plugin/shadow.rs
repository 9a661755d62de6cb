//! Shadow mode: a new version of a plugin (`shadow_of = "NAME"`, or
//! `mailgate plugin shadow`) runs beside the active one. It is called
//! right after the active plugin at every hook with the same context and
//! data, under its own budget and in its own instance; its answer is
//! compared with the active one's, a difference is logged and counted,
//! and the answer is then dropped: a shadow never changes what happens to
//! mail (its actions, header fields and failures included). It is not
//! offered the transport hook, which would deliver. `mailgate plugin
//! promote` swaps it in for the active plugin.

use super::bindings::exports::mailgate::plugin::plugin::RouteDecision;
use super::bindings::mailgate::plugin::types as wit;
use super::engine::Loaded;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a shadow has seen so far.
#[derive(Debug, Default)]
pub struct ShadowStats {
    /// Hook calls compared with the active plugin's.
    pub compared: AtomicU64,
    /// Calls whose answers differed.
    pub differed: AtomicU64,
}

/// One hook call where a shadow answered otherwise, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The active plugin.
    pub active: String,
    /// Its shadow.
    pub shadow: String,
    /// The hook.
    pub hook: &'static str,
    /// What the hook was about (the recipient), if anything.
    pub detail: Option<String>,
    /// The active plugin's answer, described.
    pub theirs: String,
    /// The shadow's answer, described.
    pub mine: String,
}

impl ShadowStats {
    /// Count one comparison; the difference, if the answers differ.
    pub fn compare(
        &self,
        active: &str,
        shadow: &str,
        hook: &'static str,
        detail: Option<String>,
        theirs: String,
        mine: String,
    ) -> Option<Difference> {
        self.compared.fetch_add(1, Ordering::Relaxed);
        if !differ(&theirs, &mine) {
            return None;
        }
        self.differed.fetch_add(1, Ordering::Relaxed);
        crate::metrics::get()
            .plugin_shadow_differences
            .inc(&[shadow, hook]);
        Some(Difference {
            active: active.to_string(),
            shadow: shadow.to_string(),
            hook,
            detail,
            theirs,
            mine,
        })
    }
}

/// A hook's answer as the log writes it: the verdict, then the actions
/// (`continue`, `reject 550 5.7.1 text`, `continue + add-header X: y`), or
/// the failure.
pub fn describe(answer: &Result<wit::Response, String>) -> String {
    let r = match answer {
        Ok(r) => r,
        Err(e) => return format!("failed ({e})"),
    };
    let mut s = verdict(&r.verdict);
    for a in &r.actions {
        let _ = match a {
            wit::Action::AddHeader((n, v)) => write!(s, " + add-header {n}: {v}"),
            wit::Action::RemoveHeader(n) => write!(s, " + remove-header {n}"),
            wit::Action::SetSender(a) => write!(s, " + set-sender <{a}>"),
            wit::Action::AddRecipient(a) => write!(s, " + add-recipient <{a}>"),
            wit::Action::RemoveRecipient(a) => write!(s, " + remove-recipient <{a}>"),
            wit::Action::SetVar((k, v)) => write!(s, " + set-var {k}={v}"),
            wit::Action::AddAuthResult(e) => write!(s, " + add-auth-result {e}"),
            wit::Action::Redirect(a) => write!(s, " + redirect <{a}>"),
        };
    }
    s
}

fn verdict(v: &wit::Verdict) -> String {
    let reply = |r: &wit::SmtpReply| format!("{} {} {}", r.code, r.enhanced, r.text);
    match v {
        wit::Verdict::Continue => "continue".into(),
        wit::Verdict::Accept => "accept".into(),
        wit::Verdict::Reject(r) => format!("reject {}", reply(r)),
        wit::Verdict::Defer(r) => format!("defer {}", reply(r)),
        wit::Verdict::Discard => "discard".into(),
        wit::Verdict::Quarantine(why) => format!("quarantine {why}"),
    }
}

/// A route hook's answer: its decision and the header fields it added
/// for the recipient's copy, or why it failed.
pub type RouteAnswer = Result<(RouteDecision, Vec<(String, String)>), String>;

/// A route decision as the log writes it: the recipient, its own sender,
/// the plugin's transport, the header fields for its copy.
pub fn describe_route(answer: &RouteAnswer) -> String {
    match answer {
        Err(e) => format!("failed ({e})"),
        Ok((d, headers)) => {
            let mut s = format!("<{}>", d.recipient);
            if let Some(from) = &d.sender {
                let _ = write!(s, " from <{from}>");
            }
            if d.transport {
                s.push_str(" by its transport");
            }
            for (n, v) in headers {
                let _ = write!(s, " + add-header {n}: {v}");
            }
            s
        }
    }
}

/// Whether two answers differ in what the host would do: verdicts and
/// actions, compared as the log describes them. A failure differs from
/// any answer; two failures count as the same answer.
pub fn differ(a: &str, b: &str) -> bool {
    let failed = |s: &str| s.starts_with("failed (");
    match (failed(a), failed(b)) {
        (true, true) => false,
        _ => a != b,
    }
}

/// Why a shadow could not be started or promoted.
#[derive(Debug, thiserror::Error)]
pub enum ShadowError {
    /// No active plugin has this name.
    #[error("no active plugin is named {0}")]
    NoPlugin(String),
    /// Nothing shadows this plugin.
    #[error("{0} has no shadow")]
    NoShadow(String),
    /// The name a shadow would take is in use.
    #[error("a plugin named {0} exists already")]
    NameTaken(String),
    /// The new version did not load.
    #[error(transparent)]
    Load(#[from] super::PluginError),
}

impl super::Runtime {
    /// Load the component at `path` as the shadow of the active plugin
    /// `of` (named `OF-shadow`), with `of`'s settings, capabilities and
    /// budgets, and `config` as its config table when given; it replaces
    /// a shadow `of` had. The running set is swapped atomically; nothing
    /// changes on error.
    pub async fn add_shadow(
        &self,
        of: &str,
        path: std::path::PathBuf,
        config: Option<toml::Table>,
    ) -> Result<Arc<Loaded>, ShadowError> {
        let cur = self.current();
        let active = cur
            .iter()
            .find(|p| p.cfg.name == of && p.cfg.shadow_of.is_none())
            .ok_or_else(|| ShadowError::NoPlugin(of.to_string()))?;
        let mut cfg = active.cfg.clone();
        cfg.name = format!("{of}-shadow");
        if cur
            .iter()
            .any(|p| p.cfg.name == cfg.name && p.cfg.shadow_of.as_deref() != Some(of))
        {
            return Err(ShadowError::NameTaken(cfg.name));
        }
        cfg.path = path;
        cfg.shadow_of = Some(of.to_string());
        if let Some(c) = config {
            cfg.config = c;
        }
        let loaded = self.load(&[cfg]).await?.remove(0);
        let mut set: Vec<Arc<Loaded>> = cur
            .iter()
            .filter(|p| p.cfg.shadow_of.as_deref() != Some(of))
            .cloned()
            .collect();
        set.push(Arc::clone(&loaded));
        self.swap(set);
        Ok(loaded)
    }

    /// Make the shadow of `name` (the active plugin's name, or the
    /// shadow's own) the active plugin in its place, under the active
    /// plugin's name (so its kv entries are the ones it finds), in one
    /// atomic swap. Returns the shadow's and the active plugin's names.
    pub fn promote(&self, name: &str) -> Result<(String, String), ShadowError> {
        let cur = self.current();
        let shadow = cur
            .iter()
            .position(|p| {
                p.cfg.shadow_of.is_some()
                    && (p.cfg.name == name || p.cfg.shadow_of.as_deref() == Some(name))
            })
            .ok_or_else(|| ShadowError::NoShadow(name.to_string()))?;
        let of = cur[shadow].cfg.shadow_of.clone().unwrap_or_default();
        let active = cur
            .iter()
            .position(|p| p.cfg.name == of && p.cfg.shadow_of.is_none())
            .ok_or_else(|| ShadowError::NoPlugin(of.clone()))?;
        let mut promoted = super::engine::clone_loaded(&cur[shadow]);
        promoted.cfg.name = of.clone();
        promoted.cfg.shadow_of = None;
        let promoted = Arc::new(promoted);
        let set: Vec<Arc<Loaded>> = cur
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != shadow)
            .map(|(i, p)| {
                if i == active {
                    Arc::clone(&promoted)
                } else {
                    Arc::clone(p)
                }
            })
            .collect();
        self.swap(set);
        Ok((cur[shadow].cfg.name.clone(), of))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reject(text: &str) -> Result<wit::Response, String> {
        Ok(wit::Response {
            verdict: wit::Verdict::Reject(wit::SmtpReply {
                code: 550,
                enhanced: "5.7.1".into(),
                text: text.into(),
            }),
            actions: vec![],
        })
    }

    #[test]
    fn answers_are_described_and_compared() {
        let cont = Ok(wit::Response {
            verdict: wit::Verdict::Continue,
            actions: vec![wit::Action::AddHeader(("X-A".into(), "1".into()))],
        });
        assert_eq!(describe(&cont), "continue + add-header X-A: 1");
        assert_eq!(describe(&reject("no")), "reject 550 5.7.1 no");
        assert!(differ(&describe(&cont), &describe(&reject("no"))));
        assert!(!differ(&describe(&reject("no")), &describe(&reject("no"))));
        assert!(differ(&describe(&reject("no")), &describe(&reject("nope"))));
        let f1 = describe(&Err("trap: x".into()));
        let f2 = describe(&Err("time budget exceeded".into()));
        assert!(!differ(&f1, &f2));
        assert!(differ(&f1, &describe(&cont)));
    }
}
