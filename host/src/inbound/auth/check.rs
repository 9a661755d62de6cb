//! `mailgate auth check`: the acceptance-time checks on one message
//! without a server. iprev, SPF (HELO and MAIL FROM) and DKIM run through
//! the host's resolver exactly as in a session, and the data hook of the
//! authentication plugins (ARC, DMARC) runs after them with the results
//! in its context. DNS comes from the configured nameservers, or from a
//! zone file served on loopback ([`crate::dns::serve`]); the plugins then
//! read the same file. Admins use it to explain a verdict; conformance
//! suites drive its `--json` output.

use super::{Authenticator, Checks, Entry};
use crate::config::Config;
use crate::config::plugin::PluginConfig;
use crate::dns::zone::Zone;
use crate::plugin::bindings::mailgate::plugin::types as wit;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// What to check.
pub struct Request {
    /// The message (LF line ends are made CRLF).
    pub message: Vec<u8>,
    /// The client's address.
    pub ip: IpAddr,
    /// Its HELO name.
    pub helo: String,
    /// The envelope sender (`""`: the null sender).
    pub sender: String,
    /// DNS from this zone instead of the configured nameservers.
    pub zone: Option<Zone>,
    /// The plugins whose data hook runs after the host's checks.
    pub plugins: Vec<PluginConfig>,
    /// Scratch space (plugin kv and compile cache).
    pub work_dir: PathBuf,
}

/// What came out.
pub struct Report {
    /// iprev, SPF HELO, SPF MAIL FROM, then one DKIM entry per signature.
    pub host: Vec<Entry>,
    /// The host's verdict at MAIL (an SPF action of `[auth]`), if it
    /// refused.
    pub at_mail: Option<String>,
    /// The plugins' Authentication-Results entries.
    pub plugin_results: Vec<String>,
    /// Variables the plugins set (`arc.*`, `dmarc.*`).
    pub vars: Vec<(String, String)>,
    /// The plugins' verdict: continue, reject ..., quarantine ...
    pub verdict: String,
    /// Plugin failures (name: reason).
    pub failures: Vec<String>,
    /// Our Authentication-Results header, as a session would prepend it.
    pub header: String,
}

/// The repository's authentication plugins (`arc.wasm`, `dmarc.wasm`,
/// those that exist) in `dir`, or where `scripts/test.sh` builds them:
/// `plugins/target/wasm32-wasip2/release` beside the binary's
/// `target/<profile>/` or under the working directory. Each is granted
/// what they import (`log`, `dns`, `crypto`, `clock`, `random`), 5 s per
/// call and `tempfail` on failure.
pub fn bundled_plugins(dir: Option<&std::path::Path>) -> Vec<PluginConfig> {
    use crate::config::plugin::{Capability, OnFailure};
    let rel = std::path::Path::new("plugins/target/wasm32-wasip2/release");
    let dirs: Vec<PathBuf> = match dir {
        Some(d) => vec![d.to_path_buf()],
        None => {
            let mut v = vec![];
            if let Some(root) = std::env::current_exe()
                .ok()
                .and_then(|e| e.parent()?.parent()?.parent().map(|p| p.to_path_buf()))
            {
                v.push(root.join(rel));
            }
            v.push(rel.to_path_buf());
            v
        }
    };
    let Some(found) = dirs
        .iter()
        .find(|d| d.join("dmarc.wasm").is_file() || d.join("arc.wasm").is_file())
    else {
        return vec![];
    };
    ["arc", "dmarc"]
        .iter()
        .filter(|n| found.join(format!("{n}.wasm")).is_file())
        .map(|n| PluginConfig {
            name: n.to_string(),
            path: found.join(format!("{n}.wasm")),
            on_failure: OnFailure::Tempfail,
            timeout_ms: 5000,
            memory: crate::config::ByteSize(64 << 20),
            fuel: 0,
            reuse: None,
            // What the bundled ARC and DMARC plugins import.
            capabilities: vec![
                Capability::Log,
                Capability::Dns,
                Capability::Crypto,
                Capability::Clock,
                Capability::Random,
            ],
            services: Default::default(),
            directories: Default::default(),
            keys: Default::default(),
            tables: Vec::new(),
            shadow_of: None,
            config: toml::Table::new(),
        })
        .collect()
}

/// Run the checks.
pub async fn run(cfg: &Config, req: Request) -> Result<Report, String> {
    let mut data = req.message;
    if !data.windows(2).any(|w| w == b"\r\n") {
        data = String::from_utf8_lossy(&data)
            .replace('\n', "\r\n")
            .into_bytes();
    }
    let zone = req.zone.map(Arc::new);
    let server = match &zone {
        Some(z) => Some(
            crate::dns::serve::start(Arc::clone(z))
                .await
                .map_err(|e| format!("zone server: {e}"))?,
        ),
        None => None,
    };
    let dns = match &server {
        Some(s) => crate::dns::Dns::new(&[s.addr], None),
        None => crate::dns::Dns::new(
            &cfg.outbound.nameservers,
            cfg.outbound.dnssec_trust_anchors.as_deref(),
        ),
    }
    .map_err(|e| format!("resolver: {e}"))?;
    let authserv_id = cfg
        .auth
        .authserv_id
        .clone()
        .unwrap_or_else(|| cfg.server.hostname.clone());
    let a = Authenticator::new(
        dns.shared_resolver(),
        authserv_id.clone(),
        cfg.auth.dkim_max_signatures,
    );
    let mut checks = Checks::default();
    let at_mail = match checks
        .at_mail(&a, &cfg.auth, req.ip, &req.helo, &req.sender)
        .await
    {
        crate::smtp::server::Verdict::Reject(r) => Some(r.first_line()),
        _ => None,
    };
    let v = checks.at_data(&a, &cfg.auth, &data).await;
    let data = v.data;
    let mut ctx = crate::plugin::dispatch::context(&crate::plugin::dispatch::Facts {
        client_ip: req.ip.to_string(),
        client_port: 0,
        client_name: checks.client_name(),
        helo: Some(&req.helo),
        tls: None,
        sender: Some(&req.sender),
        recipients: vec![],
        message_id: None,
        vars: &[],
        checks: checks.for_plugins(),
        auth_user: None,
    });
    let mut report = Report {
        host: checks.entries().cloned().collect(),
        at_mail,
        plugin_results: vec![],
        vars: vec![],
        verdict: "continue".into(),
        failures: vec![],
        header: String::new(),
    };
    if !req.plugins.is_empty() {
        let resolver = match &zone {
            Some(z) => crate::plugin::Resolver::Zone(Arc::clone(z)),
            None => crate::plugin::Resolver::Live(Arc::new(dns)),
        };
        std::fs::create_dir_all(&req.work_dir).map_err(|e| e.to_string())?;
        let o = crate::plugin::offline::data_hook(
            &req.plugins,
            &ctx,
            Arc::new(data.clone()),
            &req.work_dir,
            Some(resolver),
        )
        .await
        .map_err(|e| e.to_string())?;
        for a in &o.actions {
            match a {
                wit::Action::AddAuthResult(e) => report.plugin_results.push(e.clone()),
                wit::Action::SetVar((k, v)) => {
                    ctx.vars.retain(|(n, _)| n != k);
                    ctx.vars.push((k.clone(), v.clone()));
                }
                _ => {}
            }
        }
        report.vars = ctx.vars.clone();
        report.verdict = match &o.verdict {
            None | Some(wit::Verdict::Continue) => "continue".into(),
            Some(v) => crate::plugin::offline::verdict_text(v),
        };
        report.failures = o
            .failures
            .iter()
            .map(|(n, why, _)| format!("{n}: {why}"))
            .collect();
    }
    let mut head = Vec::new();
    checks.prepend_header(
        Some(&authserv_id),
        &cfg.server.hostname,
        report.plugin_results.clone(),
        &mut head,
    );
    report.header = String::from_utf8_lossy(&head).into_owned();
    drop(server);
    Ok(report)
}

impl Report {
    fn var(&self, k: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }

    fn prop<'a>(e: &'a Entry, name: &str) -> Option<&'a str> {
        e.props
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// One JSON object: `spf` (`helo`, `mailfrom`), `iprev`, `dkim` (one
    /// per signature), `arc`, `dmarc`, `verdict`, `failures` and the
    /// `authentication_results` header text.
    pub fn json(&self) -> serde_json::Value {
        use serde_json::json;
        let spf = |id: &str| {
            self.host
                .iter()
                .find(|e| e.method == "spf" && Report::prop(e, id).is_some())
                .map(|e| {
                    json!({
                        "result": e.result,
                        "identity": Report::prop(e, id),
                        "reason": e.reason,
                    })
                })
        };
        let iprev = self
            .host
            .iter()
            .find(|e| e.method == "iprev")
            .map(|e| json!({"result": e.result, "name": e.comment, "reason": e.reason}));
        let dkim: Vec<serde_json::Value> = self
            .host
            .iter()
            .filter(|e| e.method == "dkim" && Report::prop(e, "header.d").is_some())
            .map(|e| {
                json!({
                    "domain": Report::prop(e, "header.d"),
                    "selector": Report::prop(e, "header.s"),
                    "algorithm": Report::prop(e, "header.a"),
                    "result": e.result,
                    "reason": e.reason,
                    "length_limit": e.comment,
                })
            })
            .collect();
        let arc = self.var("arc.cv").map(|cv| {
            json!({
                "result": cv,
                "instances": self.var("arc.instances").and_then(|n| n.parse::<u32>().ok()),
                "domains": self.var("arc.domains"),
            })
        });
        let dmarc = self.var("dmarc.result").map(|r| {
            json!({
                "result": r,
                "domain": self.var("dmarc.domain"),
                "policy": self.var("dmarc.policy"),
                "disposition": self.var("dmarc.disposition"),
            })
        });
        json!({
            "spf": {"helo": spf("smtp.helo"), "mailfrom": spf("smtp.mailfrom")},
            "iprev": iprev,
            "dkim": dkim,
            "arc": arc,
            "dmarc": dmarc,
            "at_mail": self.at_mail,
            "verdict": self.verdict,
            "failures": self.failures,
            "authentication_results": self.header.trim_end(),
        })
    }

    /// For people: the header, then the verdicts.
    pub fn text(&self) -> String {
        let mut s = self.header.clone();
        if let Some(r) = &self.at_mail {
            s.push_str(&format!("MAIL FROM would be refused: {r}\n"));
        }
        s.push_str(&format!("plugins: {}\n", self.verdict));
        for f in &self.failures {
            s.push_str(&format!("plugin failed: {f}\n"));
        }
        s
    }
}
