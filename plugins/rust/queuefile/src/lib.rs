//! The queuefile transport (Exim's experimental `queuefile`, for
//! MailScanner-style external processing): every recipient whose domain
//! is in `domains` is routed to this plugin at acceptance, and each
//! delivery writes the message into a directory the plugin is granted,
//! instead of sending it anywhere.
//!
//! - `format = "exim"` (default): Exim 4.96's spool format, `input/ID-H`
//!   (envelope and header lines) and `input/ID-D` (body), LF line ends,
//!   under a new Exim message id, as an Exim whose `spool_directory` is the
//!   directory reads them (`exim -bp`, queue runs).
//! - `format = "mailgate"`: `ID.eml`, the message as received (CRLF), and
//!   `ID.json`, its envelope (`id`, `sender`, `recipients`, `received`,
//!   `client_ip`, `client_port`, `helo`), under mailgate's queue id; the
//!   `.json` file appears last, so its presence means the pair is whole.
//!
//! Both are written under temporary names in `.queuefile-tmp/`, synced,
//! renamed into place and the directory synced, and only then is the
//! delivery reported done. Any failure defers (the message stays in
//! mailgate's queue) and removes what was half written.
//!
//! Config (`[plugin.config]`):
//! - `directory`: the name of the granted directory (`directories = {
//!   NAME = "/path" }` in the plugin's table; capability `directories`).
//! - `domains`: recipient domains taken (`example.com`, `.example.com`
//!   for its subdomains, `*` for every remote recipient).
//! - `format`: `exim` or `mailgate`.
//! - `owner`: the `-H` file's originator, `"login uid gid"` (default
//!   `"mailgate 0 0"`).
//!
//! Grant `directories`, `clock` and `random` (for Exim ids): the plugin imports all three.

pub mod exim;

use mailgate_plugin_sdk::*;
use std::io::Write;
use std::sync::OnceLock;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    directory: String,
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default = "exim_format")]
    format: String,
    #[serde(default = "default_owner")]
    owner: String,
}

fn exim_format() -> String {
    "exim".into()
}
fn default_owner() -> String {
    "mailgate 0 0".into()
}

/// The settings after `init` checked them.
struct Settings {
    root: String,
    domains: Vec<String>,
    exim: bool,
    owner: (String, u32, u32),
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// True when a recipient at `domain` is taken by `patterns`: a domain,
/// `.domain` for its subdomains, `*` for every remote recipient.
pub fn taken(patterns: &[String], domain: &str, remote: bool) -> bool {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    patterns.iter().any(|p| {
        let p = p.to_ascii_lowercase();
        if p == "*" {
            remote
        } else {
            p == d || (p.starts_with('.') && d.ends_with(&p))
        }
    })
}

/// A file written to `tmp`, synced, then renamed to `dest`.
fn put(tmp: &str, dest: &str, data: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(tmp, dest)
}

fn sync_dir(dir: &str) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Write `files` ([(name, data)], renamed in that order) into `dir`
/// through `tmp`; on failure remove everything written.
fn write_set(s: &Settings, dir: &str, files: &[(String, Vec<u8>)]) -> Result<(), String> {
    let tmp = format!("{}/.queuefile-tmp", s.root);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{tmp}: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{dir}: {e}"))?;
    let mut done: Vec<String> = vec![];
    for (name, data) in files {
        let t = format!("{tmp}/{name}");
        let d = format!("{dir}/{name}");
        if std::fs::metadata(&d).is_ok() {
            for p in &done {
                let _ = std::fs::remove_file(p);
            }
            return Err(format!("{d} exists already"));
        }
        if let Err(e) = put(&t, &d, data) {
            let _ = std::fs::remove_file(&t);
            for p in &done {
                let _ = std::fs::remove_file(p);
            }
            return Err(format!("{d}: {e}"));
        }
        done.push(d);
    }
    sync_dir(dir).map_err(|e| format!("sync {dir}: {e}"))
}

fn unique() -> u64 {
    let b: [u8; 8] = random::bytes(8).try_into().unwrap_or_default();
    u64::from_le_bytes(b)
}

fn exim_copy(s: &Settings, ctx: &Context, d: &Delivery, msg: &Message) -> Result<String, String> {
    let raw = msg.raw();
    let (head, body) = exim::split(&raw);
    let body = exim::lf(body);
    for a in d.recipients.iter().chain(std::iter::once(&d.sender)) {
        if !exim::line_safe(a) {
            return Err(format!("address {a:?} cannot go into a spool file"));
        }
    }
    let helo = ctx.helo.as_deref().filter(|h| exim::line_safe(h));
    let received = clock::now();
    let dir = format!("{}/input", s.root);
    // A fresh id until both names are free (they almost always are).
    for _ in 0..5 {
        let id = exim::message_id(received, unique());
        if std::fs::metadata(format!("{dir}/{id}-H")).is_ok() {
            continue;
        }
        let env = exim::Envelope {
            id: &id,
            owner: (&s.owner.0, s.owner.1, s.owner.2),
            sender: &d.sender,
            recipients: &d.recipients,
            received,
            helo,
            host: (!ctx.client_ip.is_empty()).then_some((ctx.client_ip.as_str(), ctx.client_port)),
            protocol: if ctx.tls.is_some() { "esmtps" } else { "esmtp" },
        };
        let files = vec![
            (format!("{id}-D"), exim::data_file(&id, &body)),
            (format!("{id}-H"), exim::header_file(&env, head, &body)),
        ];
        write_set(s, &dir, &files)?;
        return Ok(id);
    }
    Err("no free message id".into())
}

fn mailgate_copy(
    s: &Settings,
    ctx: &Context,
    d: &Delivery,
    msg: &Message,
) -> Result<String, String> {
    let env = serde_json::json!({
        "id": d.message_id,
        "sender": d.sender,
        "recipients": d.recipients,
        "received": clock::now(),
        "client_ip": ctx.client_ip,
        "client_port": ctx.client_port,
        "helo": ctx.helo,
    });
    let id = &d.message_id;
    if id.is_empty() || id.contains(['/', '\\']) || id.starts_with('.') {
        return Err(format!("queue id {id:?} cannot name a file"));
    }
    let files = vec![
        (format!("{id}.eml"), msg.raw()),
        (format!("{id}.json"), format!("{env}\n").into_bytes()),
    ];
    write_set(s, &s.root, &files)?;
    Ok(id.clone())
}

struct Queuefile;

impl Plugin for Queuefile {
    const NAME: &'static str = "queuefile";
    // Only the parsed config outlives a transaction.
    const REUSABLE: bool = true;

    fn init(config: &str) -> Result<(), String> {
        let c: Config = parse_config(config)?;
        if c.directory.is_empty() || c.directory.contains(['/', '\\']) {
            return Err(
                "directory: the name of a granted directory (directories = { NAME = \"/path\" })"
                    .into(),
            );
        }
        let exim = match c.format.as_str() {
            "exim" => true,
            "mailgate" => false,
            other => return Err(format!("format {other:?}: exim or mailgate")),
        };
        let parts: Vec<&str> = c.owner.split_whitespace().collect();
        let owner = match parts[..] {
            [name, uid, gid] => (
                name.to_string(),
                uid.parse().map_err(|_| format!("owner: bad uid {uid:?}"))?,
                gid.parse().map_err(|_| format!("owner: bad gid {gid:?}"))?,
            ),
            _ => return Err(format!("owner {:?}: expected \"login uid gid\"", c.owner)),
        };
        let root = format!("/{}", c.directory);
        // The directory must be there and granted.
        std::fs::metadata(&root).map_err(|e| {
            format!(
                "directory {root}: {e} (grant directories and name it in the plugin's directories)"
            )
        })?;
        let _ = SETTINGS.set(Settings {
            root,
            domains: c.domains,
            exim,
            owner,
        });
        Ok(())
    }

    fn on_route(_ctx: &Context, rcpt: &RouteInfo) -> RouteDecision {
        let mut d = RouteDecision::unchanged(rcpt);
        let domain = rcpt.recipient.rsplit_once('@').map_or("", |(_, d)| d);
        d.transport = SETTINGS
            .get()
            .is_some_and(|s| taken(&s.domains, domain, rcpt.remote));
        d
    }

    fn on_transport(ctx: &Context, d: &Delivery, msg: &Message) -> TransportResult {
        let Some(s) = SETTINGS.get() else {
            return TransportResult::Deferred("queuefile: not configured".into());
        };
        let written = if s.exim {
            exim_copy(s, ctx, d, msg).map(|id| format!("queued as {id} in {}", s.root))
        } else {
            mailgate_copy(s, ctx, d, msg).map(|id| format!("written as {id} in {}", s.root))
        };
        match written {
            Ok(text) => TransportResult::Delivered(text),
            Err(why) => {
                log::write(log::Level::Warn, &format!("queuefile: {why}"));
                TransportResult::Deferred(why)
            }
        }
    }
}

export_plugin!(Queuefile: route, transport);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_taken() {
        let p = vec!["scan.test".to_string(), ".sub.test".to_string()];
        assert!(taken(&p, "Scan.Test", false));
        assert!(taken(&p, "a.sub.test", true));
        assert!(!taken(&p, "sub.test", true));
        assert!(!taken(&p, "other.test", true));
        let all = ["*".to_string()];
        assert!(taken(&all, "any.test", true));
        assert!(
            !taken(&all, "local.test", false),
            "* takes remote recipients only"
        );
    }
}
