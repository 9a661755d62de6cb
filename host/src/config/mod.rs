//! The TOML configuration: types, defaults (the embedded `default.toml`),
//! parsing with errors that name the file, line, column and reason.

pub mod auth;
pub mod metrics;
pub mod outbound;
pub mod plugin;
pub mod ratelimit;
pub mod smtp_auth;
pub mod store;
pub mod tls_policy;
mod types;

pub use outbound::{ClientAuthSecurity, Outbound, OutboundDomain};
pub use tls_policy::{TlsLevel, TlsPolicy, TlsPolicyValue};
pub use types::{
    ByteSize, HostList, InvalidValue, NameList, Network, Seconds, TABLE_PREFIX, parse_smarthost,
    table_name_ok,
};

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The embedded default configuration (also the documented reference).
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`
    pub server: Server,
    /// `[[listener]]`
    #[serde(rename = "listener")]
    pub listeners: Vec<toml::Spanned<Listener>>,
    /// `[tls]`
    #[serde(default)]
    pub tls: Tls,
    /// `[limits]`
    #[serde(default)]
    pub limits: Limits,
    /// `[outbound]`
    #[serde(default)]
    pub outbound: Outbound,
    /// `[spool]`
    #[serde(default)]
    pub spool: Spool,
    /// `[local]`
    #[serde(default)]
    pub local: Local,
    /// `[aliases]`
    #[serde(default)]
    pub aliases: BTreeMap<String, Vec<String>>,
    /// `[access]`
    #[serde(default)]
    pub access: Access,
    /// `[log]`
    #[serde(default)]
    pub log: Log,
    /// `[auth]`
    #[serde(default)]
    pub auth: auth::Auth,
    /// `[smtp_auth]`
    #[serde(default)]
    pub smtp_auth: smtp_auth::SmtpAuth,
    /// `[[dkim]]`: signing keys.
    #[serde(default)]
    pub dkim: Vec<toml::Spanned<auth::DkimKey>>,
    /// `[metrics]`
    #[serde(default)]
    pub metrics: metrics::Metrics,
    /// `[store]`: state shared by the gateways of a pool (Redis).
    #[serde(default)]
    pub store: store::Store,
    /// `[[rate_limit]]`: limits per client address, login or sender.
    #[serde(default, rename = "rate_limit")]
    pub rate_limits: Vec<toml::Spanned<ratelimit::RateLimit>>,
    /// `[[plugin]]`, in the order they run.
    #[serde(default, rename = "plugin")]
    pub plugins: Vec<plugin::PluginConfig>,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Our host name.
    pub hostname: String,
    /// Data directory.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Where compiled plugin code is kept (default: `plugin-cache` in the
    /// data directory).
    #[serde(default)]
    pub plugin_cache: Option<PathBuf>,
    /// The secret that signs compiled plugin code in the cache (default:
    /// `plugin-cache.key` in the data directory; created, mode 0600, when
    /// missing). Gateways sharing a cache share this key.
    #[serde(default)]
    pub plugin_cache_key: Option<PathBuf>,
    /// Local domains (entries may be `table:NAME`: a domain is local when
    /// its domain keys are found there, `*.example.com` and
    /// `.example.com` included).
    pub local_domains: NameList,
    /// Domains relayed for any client (a backup MX, a gateway in front of
    /// another system): recipients there are accepted from everyone and
    /// delivered onwards. Entries may be `table:NAME`.
    #[serde(default)]
    pub relay_domains: NameList,
    /// Networks allowed to relay (entries may be `table:NAME`, a CIDR
    /// table).
    #[serde(default = "HostList::loopback")]
    pub relay_networks: HostList,
    /// Hosts offered PIPECONNECT.
    #[serde(default = "HostList::everyone")]
    pub pipe_connect_hosts: HostList,
    /// Issue session tickets.
    #[serde(default = "yes")]
    pub tls_resumption: bool,
    /// Offer REQUIRETLS (RFC 8689) to clients once TLS is up: such mail is
    /// then delivered only over verified TLS to servers that offer it.
    #[serde(default = "yes")]
    pub requiretls: bool,
    /// Pending TCP Fast Open connections per listener (0: off).
    #[serde(default = "fast_open_queue")]
    pub fast_open_queue: u32,
    /// Grace period on SIGTERM.
    #[serde(default = "thirty_secs")]
    pub shutdown_timeout: Seconds,
    /// Run as this user (and its groups) once the listening sockets are
    /// bound, when started as root; the data directory must belong to it.
    #[serde(default)]
    pub user: Option<String>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}
fn yes() -> bool {
    true
}
fn fast_open_queue() -> u32 {
    256
}
fn thirty_secs() -> Seconds {
    Seconds(30)
}

/// How a listener speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ListenerMode {
    /// Plain SMTP with STARTTLS offered.
    Starttls,
    /// TLS from the first byte (RFC 8314).
    ImplicitTls,
    /// Plain SMTP, no TLS.
    Plain,
}

impl ListenerMode {
    /// As written in the config.
    pub fn name(self) -> &'static str {
        match self {
            ListenerMode::Starttls => "starttls",
            ListenerMode::ImplicitTls => "implicit-tls",
            ListenerMode::Plain => "plain",
        }
    }
}

/// `[[listener]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Socket address.
    pub address: SocketAddr,
    /// TLS mode.
    pub mode: ListenerMode,
    /// SMTP AUTH here: `off`, `offered` or `required` (submission).
    #[serde(default)]
    pub auth: smtp_auth::ListenerAuth,
}

/// `[tls]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// PEM certificate chain.
    pub certificate: Option<PathBuf>,
    /// PEM private key.
    pub private_key: Option<PathBuf>,
    /// DER OCSP response to staple (default: the certificate's path with
    /// `.ocsp` appended, when that file exists).
    pub ocsp: Option<PathBuf>,
    /// Fetch OCSP responses from each certificate's responder (its
    /// Authority Information Access URL) into its OCSP file, refreshed at
    /// half their validity.
    pub ocsp_fetch: bool,
    /// More certificates, chosen by the name the client asks for (SNI):
    /// each serves the DNS names in its subjectAltName.
    pub sni: Vec<SniCertificate>,
    /// The default certificate again with another key type (an ECDSA
    /// P-256 key beside an RSA one): a client that accepts its signature
    /// algorithm gets it, ECDSA and Ed25519 before RSA (a P-256 signature
    /// costs about 1/30 of an RSA-2048 one). Same fields as `[[tls.sni]]`.
    pub alternative: Vec<SniCertificate>,
    /// How often the certificate, key and OCSP files are checked for
    /// changes (they are also reloaded on SIGHUP).
    pub reload_interval: Seconds,
    /// Ticket lifetime.
    pub ticket_lifetime: Seconds,
    /// Ticket key rotation period.
    pub ticket_key_rotation: Seconds,
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            certificate: None,
            private_key: None,
            ocsp: None,
            ocsp_fetch: false,
            sni: vec![],
            alternative: vec![],
            reload_interval: Seconds(10),
            ticket_lifetime: Seconds(2 * 3600),
            ticket_key_rotation: Seconds(6 * 3600),
        }
    }
}

/// `[[tls.sni]]` and `[[tls.alternative]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniCertificate {
    /// PEM certificate chain.
    pub certificate: PathBuf,
    /// PEM private key.
    pub private_key: PathBuf,
    /// DER OCSP response (default: `<certificate>.ocsp` if it exists).
    #[serde(default)]
    pub ocsp: Option<PathBuf>,
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest message.
    pub max_message_size: ByteSize,
    /// Recipients per message.
    pub max_recipients: usize,
    /// Longest command line.
    pub max_line_length: usize,
    /// Protocol errors per connection.
    pub max_errors: u32,
    /// Junk commands per connection.
    pub max_junk_commands: u32,
    /// Messages per connection.
    pub max_messages_per_connection: u32,
    /// Connections in total.
    pub max_connections: usize,
    /// Connections per client IP.
    pub max_connections_per_ip: usize,
    /// Wait for a command.
    pub command_timeout: Seconds,
    /// Wait for content.
    pub data_timeout: Seconds,
    /// Whole connection.
    pub connection_timeout: Seconds,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: ByteSize(50 << 20),
            max_recipients: 1000,
            max_line_length: 2048,
            max_errors: 10,
            max_junk_commands: 100,
            max_messages_per_connection: 1000,
            max_connections: 1000,
            max_connections_per_ip: 100,
            command_timeout: Seconds(300),
            data_timeout: Seconds(300),
            connection_timeout: Seconds(3600),
        }
    }
}

/// `[spool]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Spool {
    /// Segment size.
    pub segment_size: ByteSize,
}

impl Default for Spool {
    fn default() -> Self {
        Spool {
            segment_size: ByteSize(64 << 20),
        }
    }
}

/// `[local]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Local {
    /// Maildir path template.
    pub maildir: String,
    /// Known local parts (empty: any). Entries may be `table:NAME`: a user
    /// exists when `local@domain`, `local`, `local@` or `@domain` is a key.
    pub users: NameList,
    /// Extra alias file.
    pub alias_file: Option<PathBuf>,
    /// A lookup table of aliases: key `name` or `name@domain`, value the
    /// targets separated by commas (as in an alias file).
    pub alias_table: Option<String>,
}

impl Default for Local {
    fn default() -> Self {
        Local {
            maildir: "{data_dir}/maildir/{domain}/{local_part}".into(),
            users: NameList::default(),
            alias_file: None,
            alias_table: None,
        }
    }
}

/// `[access]`: Postfix-style access tables (access(5)). Each names a
/// lookup table whose values are actions: `OK` or `DUNNO` (no objection
/// from this table), `REJECT [text]` (550 5.7.1), `DEFER [text]` (450
/// 4.7.1), `4NN text` or `5NN text` (that reply), `HOLD [text]` (the
/// message is accepted into the quarantine), `DISCARD [text]` (accepted
/// and dropped, logged). Relay control is not theirs: `OK` does not open a
/// relay.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Access {
    /// Looked up by the client's IP address (a CIDR table, or a keyed
    /// table of addresses) at MAIL.
    pub client: Option<String>,
    /// Looked up by the envelope sender at MAIL (`user@domain`, `user@`,
    /// `@domain`, `domain`, parent domains, `<>` for the null sender).
    pub sender: Option<String>,
    /// Looked up by each recipient at RCPT, in the same order.
    pub recipient: Option<String>,
}

impl Access {
    /// The tables named, with their keys (for errors).
    pub fn tables(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("access.client", &self.client),
            ("access.sender", &self.sender),
            ("access.recipient", &self.recipient),
        ]
        .into_iter()
        .filter_map(|(k, t)| t.as_deref().map(|t| (k, t)))
    }
}

/// `[log]`
/// How the main log is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Exim's grammar (eximstats reads it).
    #[default]
    Exim,
    /// One JSON object per line: `time`, `event` and the event's fields.
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// Main log path template.
    pub mainlog: String,
    /// Timestamps with milliseconds.
    pub millisec: bool,
    /// `exim` (Exim's grammar, for eximstats) or `json` (one object per
    /// line, the same fields).
    pub format: LogFormat,
    /// Tracing level.
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            mainlog: "{data_dir}/log/mainlog".into(),
            millisec: false,
            format: LogFormat::Exim,
            level: "info".into(),
        }
    }
}

/// A configuration error with its location.
#[derive(Debug)]
pub struct ConfigError {
    /// The file (or `<default>`).
    pub file: String,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((l, c)) => write!(f, "{}:{}:{}: {}", self.file, l, c, self.reason),
            None => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The span of the key at `path` (table names, then the key) in a parsed
/// document.
fn key_span(doc: &toml::de::DeTable<'_>, path: &[&str]) -> Option<std::ops::Range<usize>> {
    let mut table = doc;
    for (i, k) in path.iter().enumerate() {
        let (key, value) = table.iter().find(|(key, _)| key.get_ref().as_ref() == *k)?;
        if i + 1 == path.len() {
            return Some(key.span());
        }
        match value.get_ref() {
            toml::de::DeValue::Table(t) => table = t,
            _ => return None,
        }
    }
    None
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

impl Config {
    /// The embedded default.
    pub fn default_config() -> Config {
        Config::parse(DEFAULT_TOML, "<default>").expect("embedded default config is valid")
    }

    /// Read and validate a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: name.clone(),
            position: None,
            reason: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, &name)
    }

    /// Parse and validate TOML text; `name` is used in errors.
    pub fn parse(text: &str, name: &str) -> Result<Config, ConfigError> {
        let err = |span: Option<std::ops::Range<usize>>, reason: String| ConfigError {
            file: name.to_string(),
            position: span.map(|s| line_col(text, s.start)),
            reason,
        };
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim().to_string();
            err(e.span(), msg)
        })?;
        // Where a key is, from the parsed document (not a text search,
        // which finds the same name in another table).
        let doc = toml::de::DeTable::parse(text).ok();
        let key_span = |path: &[&str]| -> Option<std::ops::Range<usize>> {
            key_span(doc.as_ref()?.get_ref(), path)
        };
        if cfg.listeners.is_empty() {
            return Err(err(None, "at least one [[listener]] is required".into()));
        }
        if let Some(p) = cfg.smtp_auth.problem() {
            return Err(err(key_span(&["smtp_auth"]), p));
        }
        let mut seen = std::collections::HashSet::new();
        for l in &cfg.listeners {
            if l.get_ref().auth != smtp_auth::ListenerAuth::Off && !cfg.smtp_auth.configured() {
                return Err(err(
                    Some(l.span()),
                    format!(
                        "listener {} offers AUTH, but [smtp_auth] has neither passwords nor dovecot",
                        l.get_ref().address
                    ),
                ));
            }
            if !seen.insert(l.get_ref().address) {
                return Err(err(
                    Some(l.span()),
                    format!("listener address {} is given twice", l.get_ref().address),
                ));
            }
        }
        if cfg.server.hostname.trim().is_empty() {
            return Err(err(
                key_span(&["server", "hostname"]),
                "server.hostname must not be empty".into(),
            ));
        }
        let single = [
            ("local.alias_table", &cfg.local.alias_table),
            ("outbound.tls_policy_table", &cfg.outbound.tls_policy_table),
            ("outbound.routes_table", &cfg.outbound.routes_table),
            ("outbound.auth_table", &cfg.outbound.auth_table),
            ("smtp_auth.passwords", &cfg.smtp_auth.passwords),
            ("smtp_auth.sender_logins", &cfg.smtp_auth.sender_logins),
        ];
        for (key, name) in cfg.access.tables().chain(
            single
                .iter()
                .filter_map(|(k, t)| t.as_deref().map(|t| (*k, t))),
        ) {
            if !table_name_ok(name) {
                let (a, b) = key.split_once('.').unwrap_or((key, ""));
                return Err(err(
                    key_span(&[a, b]),
                    format!(
                        "{key}: {name:?} is not a table name (letters, digits, '-', '_' and '.', not first)"
                    ),
                ));
            }
        }
        if cfg.tls.certificate.is_some() != cfg.tls.private_key.is_some() {
            return Err(err(
                key_span(&["tls", "certificate"]).or_else(|| key_span(&["tls", "private_key"])),
                "tls.certificate and tls.private_key must be given together".into(),
            ));
        }
        if !cfg.local.maildir.contains("{local_part}") {
            return Err(err(
                key_span(&["local", "maildir"]),
                "local.maildir must contain {local_part}".into(),
            ));
        }
        if cfg.limits.max_line_length < 512 {
            return Err(err(
                key_span(&["limits", "max_line_length"]),
                "limits.max_line_length must be at least 512 (RFC 5321 §4.5.3.1.4)".into(),
            ));
        }
        if cfg.limits.max_recipients < 1 || cfg.limits.max_connections < 1 {
            return Err(err(None, "limits must be at least 1".into()));
        }
        let hosts = cfg
            .outbound
            .smarthost
            .iter()
            .map(|h| (h, key_span(&["outbound", "smarthost"])))
            .chain(cfg.outbound.domains.iter().filter_map(|(d, o)| {
                let at = key_span(&["outbound", "domains", d, "smarthost"]);
                o.smarthost.as_ref().map(|h| (h, at))
            }));
        for (h, at) in hosts {
            if let Err(e) = parse_smarthost(h) {
                return Err(err(at, format!("smarthost {h:?}: {e}")));
            }
        }
        for (k, v) in &cfg.outbound.tls_policy {
            if let Some(p) = tls_policy::key_problem(k).or_else(|| v.0.problem()) {
                return Err(err(
                    key_span(&["outbound", "tls_policy", k]),
                    format!("outbound.tls_policy: {p}"),
                ));
            }
        }
        if cfg.outbound.auth_table.is_some() && cfg.outbound.auth_file.is_some() {
            return Err(err(
                key_span(&["outbound", "auth_file"]),
                "outbound.auth_table and outbound.auth_file: give one of them".into(),
            ));
        }
        if let Some(f) = &cfg.outbound.tls_ca_file
            && !f.is_file()
        {
            return Err(err(
                key_span(&["outbound", "tls_ca_file"]),
                format!("outbound.tls_ca_file {} does not exist", f.display()),
            ));
        }
        if let Some((k, p)) = cfg.store.problem() {
            return Err(err(key_span(&["store", k]), p));
        }
        for r in &cfg.rate_limits {
            if let Some(p) = r.get_ref().problem() {
                return Err(err(Some(r.span()), p));
            }
        }
        for k in &cfg.dkim {
            if let Some(p) = k.get_ref().problem() {
                return Err(err(Some(k.span()), p));
            }
            if let Err(p) = k.get_ref().read_key() {
                return Err(err(Some(k.span()), p));
            }
        }
        plugin::validate(&cfg.plugins, name)?;
        for (name_, targets) in &cfg.aliases {
            if targets.is_empty() {
                return Err(err(
                    key_span(&["aliases", name_]),
                    format!("alias {name_} has no targets"),
                ));
            }
        }
        if let Err(e) = cfg
            .log
            .level
            .parse::<tracing_subscriber::filter::LevelFilter>()
        {
            return Err(err(key_span(&["log", "level"]), format!("log.level: {e}")));
        }
        Ok(cfg)
    }

    /// Replace `{data_dir}` in a path template.
    pub fn expand_path(&self, template: &str) -> PathBuf {
        PathBuf::from(template.replace("{data_dir}", &self.server.data_dir.to_string_lossy()))
    }

    /// The spool directory.
    pub fn spool_dir(&self) -> PathBuf {
        self.server.data_dir.join("spool")
    }

    /// The cache database file (TLS ticket keys, later EHLO and DNS caches).
    pub fn cache_db(&self) -> PathBuf {
        self.server.data_dir.join("cache.redb")
    }

    /// Where compiled plugin code is cached.
    pub fn plugin_cache(&self) -> PathBuf {
        self.server
            .plugin_cache
            .clone()
            .unwrap_or_else(|| self.server.data_dir.join("plugin-cache"))
    }

    /// The key file of the compile cache.
    pub fn plugin_cache_key(&self) -> PathBuf {
        self.server
            .plugin_cache_key
            .clone()
            .unwrap_or_else(|| self.server.data_dir.join("plugin-cache.key"))
    }

    /// The control socket the CLI uses to reach a running server.
    pub fn control_socket(&self) -> PathBuf {
        self.server.data_dir.join("control.sock")
    }

    /// The directory of the lookup tables (`mailgate table build`).
    pub fn tables_dir(&self) -> PathBuf {
        self.server.data_dir.join("tables")
    }

    /// Every table the configuration names, with the key naming it.
    pub fn tables(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![];
        let s = &self.server;
        for (k, l) in [
            ("server.local_domains", &s.local_domains),
            ("server.relay_domains", &s.relay_domains),
            ("local.users", &self.local.users),
        ] {
            out.extend(l.tables().iter().map(|t| (k, t.clone())));
        }
        for (k, l) in [
            ("server.relay_networks", &s.relay_networks),
            ("server.pipe_connect_hosts", &s.pipe_connect_hosts),
        ] {
            out.extend(l.tables().iter().map(|t| (k, t.clone())));
        }
        for r in &self.rate_limits {
            let t = r.get_ref().exempt.tables();
            out.extend(t.iter().map(|t| ("rate_limit.exempt", t.clone())));
        }
        out.extend(self.access.tables().map(|(k, t)| (k, t.to_string())));
        for (k, t) in [
            ("local.alias_table", &self.local.alias_table),
            ("outbound.tls_policy_table", &self.outbound.tls_policy_table),
            ("outbound.routes_table", &self.outbound.routes_table),
            ("outbound.auth_table", &self.outbound.auth_table),
            ("smtp_auth.passwords", &self.smtp_auth.passwords),
            ("smtp_auth.sender_logins", &self.smtp_auth.sender_logins),
        ] {
            out.extend(t.iter().map(|t| (k, t.clone())));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn omitted_keys_take_the_documented_defaults() {
        let min = Config::parse(MIN, "t").unwrap();
        let def = Config::default_config();
        assert_eq!(min.server.relay_networks, def.server.relay_networks);
        assert_eq!(min.server.pipe_connect_hosts, def.server.pipe_connect_hosts);
        assert_eq!(min.server.tls_resumption, def.server.tls_resumption);
        assert_eq!(min.server.fast_open_queue, def.server.fast_open_queue);
        assert_eq!(min.server.shutdown_timeout, def.server.shutdown_timeout);
        assert_eq!(format!("{:?}", min.limits), format!("{:?}", def.limits));
        assert_eq!(format!("{:?}", min.tls), format!("{:?}", def.tls));
        assert_eq!(format!("{:?}", min.spool), format!("{:?}", def.spool));
        assert_eq!(format!("{:?}", min.outbound), format!("{:?}", def.outbound));
        assert_eq!(format!("{:?}", min.local), format!("{:?}", def.local));
        assert_eq!(format!("{:?}", min.log), format!("{:?}", def.log));
    }

    #[test]
    fn default_parses() {
        let c = Config::default_config();
        assert_eq!(c.listeners.len(), 2);
        assert_eq!(c.limits.max_message_size.0, 50 << 20);
        assert!(
            c.server
                .pipe_connect_hosts
                .contains_listed("203.0.113.9".parse().unwrap())
        );
        assert!(
            c.server
                .relay_networks
                .contains_listed("127.0.0.1".parse().unwrap())
        );
        assert!(
            !c.server
                .relay_networks
                .contains_listed("192.0.2.1".parse().unwrap())
        );
        assert_eq!(c.aliases["postmaster"], vec!["root".to_string()]);
    }

    fn error_of(text: &str) -> String {
        Config::parse(text, "t.toml").unwrap_err().to_string()
    }

    const MIN: &str = "[server]\nhostname = \"h\"\nlocal_domains = [\"l\"]\n[[listener]]\naddress = \"127.0.0.1:25\"\nmode = \"plain\"\n";

    #[test]
    fn smtp_auth_errors() {
        let base = "[server]\nhostname = \"h\"\nlocal_domains = [\"l\"]\n[[listener]]\naddress = \"127.0.0.1:1\"\nmode = \"starttls\"\nauth = \"required\"\n";
        let e = error_of(base);
        assert!(
            e.starts_with("t.toml:4:1: ") && e.contains("offers AUTH, but [smtp_auth] has neither"),
            "{e}"
        );
        let ok = format!("{base}[smtp_auth]\npasswords = \"users\"\n");
        let c = Config::parse(&ok, "t.toml").unwrap();
        assert_eq!(
            c.listeners[0].get_ref().auth,
            smtp_auth::ListenerAuth::Required
        );
        assert!(
            c.tables()
                .contains(&("smtp_auth.passwords", "users".into()))
        );
        let e = error_of(&format!("{ok}mechanisms = [\"cram-md5\"]\n"));
        assert!(e.contains("unknown variant `cram-md5`"), "{e}");
        let e = error_of(&format!("{ok}dovecot = \"/run/dovecot/auth-client\"\n"));
        assert!(e.contains("either passwords or dovecot"), "{e}");
        let e = error_of(&base.replace("required", "sometimes"));
        assert!(e.contains("unknown variant `sometimes`"), "{e}");
    }

    #[test]
    fn tls_policy_errors_name_the_entry() {
        let e = error_of(&format!(
            "{MIN}[outbound.tls_policy]\n\"a.test\" = \"sometimes\"\n"
        ));
        assert!(
            e.starts_with("t.toml:8:12: unknown variant `sometimes`"),
            "{e}"
        );
        let e = error_of(&format!(
            "{MIN}[outbound.tls_policy]\n\"ok.test\" = \"may\"\n\"*.a.test\" = \"may\"\n"
        ));
        assert!(
            e.starts_with("t.toml:9:1: outbound.tls_policy: \"*.a.test\""),
            "{e}"
        );
        let e = error_of(&format!(
            "{MIN}[outbound.tls_policy]\n\"a.test\" = {{ level = \"encrypt\", match = [\"x\"] }}\n"
        ));
        assert!(
            e.contains("8:1: outbound.tls_policy: match and ca_file apply only"),
            "{e}"
        );
        let cfg = Config::parse(
            &format!("{MIN}[outbound.tls_policy]\n\"[relay.test]:465\" = {{ level = \"secure\", implicit = true }}\n"),
            "t.toml",
        )
        .unwrap();
        assert!(cfg.outbound.tls_policy["[relay.test]:465"].0.implicit);
    }

    #[test]
    fn dkim_and_plugin_key_errors_name_the_entry_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small.pem");
        // ring signs with 2048 bits or more: a 1024-bit key is refused.
        let out = std::process::Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&small)
            .arg("1024")
            .output();
        let dkim = |key: &str, extra: &str| {
            format!(
                "{MIN}[[dkim]]\ndomain = \"d.test\"\nselector = \"s\"\nkey = \"{key}\"\n{extra}"
            )
        };
        let e = error_of(&dkim("/nonexistent/k.pem", ""));
        assert!(
            e.starts_with("t.toml:7:1:") && e.contains("key /nonexistent/k.pem: No such file"),
            "{e}"
        );
        let e = error_of(&dkim("/nonexistent/k.pem", "").replace("d.test", "d test"));
        assert!(
            e.contains("dkim domain \"d test\" is not a domain name"),
            "{e}"
        );
        let e = error_of(&dkim("/x.pem", "headers = [\"Bad:Name\"]\n"));
        assert!(e.contains("dkim header name \"Bad:Name\""), "{e}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a key").unwrap();
        let e = error_of(&dkim(&junk.display().to_string(), ""));
        assert!(e.contains("not a PEM private key"), "{e}");
        if out.is_ok_and(|o| o.status.success()) {
            let e = error_of(&dkim(&small.display().to_string(), ""));
            assert!(e.contains("RSA keys must have 2048 to 8192 bits"), "{e}");
        }
        // A plugin's signing key is read by config check too.
        let e = error_of(&format!(
            "{MIN}[[plugin]]\nname = \"arc\"\npath = \"/p.wasm\"\nkeys = {{ seal = \"{}\" }}\n",
            junk.display()
        ));
        assert!(
            e.contains("plugin arc: key seal:") && e.contains("not a PEM private key"),
            "{e}"
        );
    }

    #[test]
    fn plugin_names_and_shadows() {
        let p = |name: &str, extra: &str| {
            format!("[[plugin]]\nname = \"{name}\"\npath = \"/p.wasm\"\n{extra}")
        };
        let e = error_of(&format!("{MIN}{}", p("a:b", "")));
        assert!(e.contains("plugin name \"a:b\": 1 to 64 letters"), "{e}");
        let ok = format!(
            "{MIN}{}{}",
            p("srs", ""),
            p("srs-next", "shadow_of = \"srs\"\n")
        );
        Config::parse(&ok, "t.toml").unwrap();
        let e = error_of(&format!("{MIN}{}", p("x", "shadow_of = \"srs\"\n")));
        assert!(
            e.contains("plugin x: shadow_of: no plugin is named srs"),
            "{e}"
        );
        let e = error_of(&format!(
            "{MIN}{}{}{}",
            p("srs", ""),
            p("a", "shadow_of = \"srs\"\n"),
            p("b", "shadow_of = \"a\"\n")
        ));
        assert!(
            e.contains("plugin b: shadow_of: a is itself a shadow"),
            "{e}"
        );
        let e = error_of(&format!(
            "{MIN}{}{}{}",
            p("srs", ""),
            p("a", "shadow_of = \"srs\"\n"),
            p("b", "shadow_of = \"srs\"\n")
        ));
        assert!(e.contains("srs has more than one shadow"), "{e}");
    }

    #[test]
    fn store_mistakes_name_their_key() {
        let ok =
            format!("{MIN}[store]\nredis = \"rediss://10.0.0.5:6380/1\"\non_outage = \"local\"\n");
        let c = Config::parse(&ok, "t.toml").unwrap();
        assert_eq!(c.store.on_outage, store::OnOutage::Local);
        let e = error_of(&format!("{MIN}[store]\nredis = \"http://10.0.0.5\"\n"));
        assert!(
            e.starts_with("t.toml:8:1: store.redis \"http://10.0.0.5\""),
            "{e}"
        );
        let e = error_of(&format!(
            "{MIN}[store]\nredis = \"redis://10.0.0.5\"\nca_file = \"/etc/hosts\"\n"
        ));
        assert!(
            e.starts_with("t.toml:9:1: store.ca_file is for a rediss://"),
            "{e}"
        );
        let e = error_of(&format!(
            "{MIN}[store]\nredis = \"redis://h\"\non_outage = \"ignore\"\n"
        ));
        assert!(
            e.starts_with("t.toml:9:13: unknown variant `ignore`"),
            "{e}"
        );
    }

    #[test]
    fn minimal_config_and_errors_with_positions() {
        Config::parse(MIN, "t.toml").unwrap();
        let e = error_of(&MIN.replace("plain", "bogus"));
        assert!(e.starts_with("t.toml:6:8: unknown variant `bogus`"), "{e}");
        let e = error_of(&format!("{MIN}[limits]\nmax_recipeints = 5\n"));
        assert!(
            e.starts_with("t.toml:8:1: unknown field `max_recipeints`"),
            "{e}"
        );
        let e = error_of(&MIN.replace("127.0.0.1:25", "127.0.0.1"));
        assert!(e.starts_with("t.toml:5:11:"), "{e}");
        let e = error_of(&format!("{MIN}[limits]\ncommand_timeout = \"5 parsecs\"\n"));
        assert!(
            e.starts_with("t.toml:8:19:") && e.contains("duration"),
            "{e}"
        );
        let e = error_of(&MIN.replace("[server]", "[server]\nrelay_networks = [\"10.0.0.0/33\"]"));
        assert!(e.starts_with("t.toml:2:") && e.contains("prefix"), "{e}");
        let e = error_of(&format!(
            "{MIN}[[listener]]\naddress = \"127.0.0.1:25\"\nmode = \"plain\"\n"
        ));
        assert!(
            e.contains("given twice") && e.starts_with("t.toml:7:"),
            "{e}"
        );
        let e = error_of(&format!("{MIN}[tls]\ncertificate = \"c.pem\"\n"));
        assert!(e.starts_with("t.toml:8:1: tls.certificate"), "{e}");
    }

    #[test]
    fn validation_errors_point_at_the_key_in_its_own_table() {
        // The same key name earlier in another table must not be reported.
        let text = format!(
            "{MIN}[[plugin]]\nname = \"p\"\npath = \"/p.wasm\"\n[plugin.config]\nlevel = 3\nsmarthost = 1\n[log]\nlevel = \"loud\"\n"
        );
        let e = error_of(&text);
        assert!(e.starts_with("t.toml:14:1: log.level"), "{e}");
        let text = format!(
            "{MIN}[outbound]\nsmarthost = \"ok.test:25\"\n[outbound.domains.\"x.test\"]\nsmarthost = \"bad:port\"\n"
        );
        let e = error_of(&text);
        assert!(e.starts_with("t.toml:10:1: smarthost \"bad:port\""), "{e}");
        let e = error_of(&format!("{MIN}[aliases]\nteam = []\n"));
        assert!(e.starts_with("t.toml:8:1: alias team"), "{e}");
    }
}
