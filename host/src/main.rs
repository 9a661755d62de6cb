//! The `mailgate` command.

use clap::{Parser, Subcommand};
use mailgate::config::{Config, DEFAULT_TOML};
use mailgate::spool::{RcptState, Spool};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mailgate",
    version,
    about = "A mail gateway with WebAssembly plugins"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway (the embedded default configuration without --config).
    Serve {
        /// Configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Loaded plugins: list them, or reload them from the config.
    Plugin {
        /// Configuration file (to find the data directory).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        cmd: PluginCmd,
    },
    /// Inspect and change the queue.
    Queue {
        /// Configuration file (to find the data directory).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        cmd: QueueCmd,
    },
    /// Message authentication: check a message offline.
    Auth {
        #[command(subcommand)]
        cmd: AuthCmd,
    },
    /// DKIM signing keys.
    Dkim {
        #[command(subcommand)]
        cmd: DkimCmd,
    },
    /// Reports the gateway sends to other domains.
    Report {
        /// Configuration file (to find the data directory).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        cmd: ReportCmd,
    },
}

#[derive(Subcommand)]
enum AuthCmd {
    /// Run iprev, SPF, DKIM and the ARC and DMARC plugins on a message
    /// without a server and print the results (our Authentication-Results
    /// header, or one JSON object with --json).
    Check {
        /// The message (RFC 5322; LF or CRLF line ends).
        message: PathBuf,
        /// The client's IP address.
        #[arg(long)]
        ip: std::net::IpAddr,
        /// The client's HELO name.
        #[arg(long)]
        helo: String,
        /// The envelope sender ("" for the null sender).
        #[arg(long)]
        from: String,
        /// Answer every DNS question from this zone file (as `plugin test
        /// --dns`) instead of the configured nameservers.
        #[arg(long)]
        dns: Option<PathBuf>,
        /// Gateway config: its [auth] settings, nameservers and plugin
        /// list (default: the embedded config and the bundled plugins).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Where the bundled plugins are (default: where scripts/test.sh
        /// builds them).
        #[arg(long)]
        plugins: Option<PathBuf>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DkimCmd {
    /// Write a new private key (PEM, mode 0600) and print the TXT record
    /// to publish and the `[[dkim]]` entry that uses it.
    Keygen {
        /// The signing domain (d=).
        domain: String,
        /// The selector (s=).
        selector: String,
        /// An Ed25519 key (RFC 8463) instead of RSA.
        #[arg(long)]
        ed25519: bool,
        /// RSA key size.
        #[arg(long, default_value_t = 2048)]
        bits: usize,
        /// Where to write the key (default: DOMAIN.SELECTOR.pem here); an
        /// existing file is never overwritten.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ReportCmd {
    /// TLS reports (RFC 8460): print a day's report (JSON) per recipient
    /// domain, or send it now to the domain's `_smtp._tls` destinations.
    Tls {
        /// Only this domain.
        #[arg(long)]
        domain: Option<String>,
        /// The UTC day, YYYY-MM-DD (default: today, as counted so far).
        #[arg(long)]
        day: Option<String>,
        /// Send the reports now (needs the running server).
        #[arg(long)]
        send: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Check a configuration file and report the first error with its
    /// file, line and column.
    Check {
        /// The file.
        file: PathBuf,
    },
    /// Print the embedded default configuration (every key, documented).
    Default,
}

#[derive(Subcommand)]
enum PluginCmd {
    /// Loaded plugins with versions, hashes, capabilities, calls, failures.
    List,
    /// Load the plugins named in the config file and switch to them
    /// atomically (sessions in flight finish with the old ones).
    Reload,
    /// Run a plugin offline through every hook it declares, with a context
    /// built from a message file, and print its verdicts and actions.
    Test(TestArgs),
}

/// Arguments of `mailgate plugin test`.
#[derive(clap::Args)]
struct TestArgs {
    /// The component (.wasm).
    plugin: PathBuf,
    /// The message (RFC 5322; LF or CRLF line endings).
    #[arg(long)]
    message: PathBuf,
    /// The plugin's own settings: a TOML file whose table is its config.
    #[arg(long = "plugin-config")]
    plugin_config: Option<PathBuf>,
    /// Grant capabilities (log, clock, random, kv, dns, services,
    /// directories); default: log, clock, random, kv, and dns with
    /// --dns. With --config, the plugin's entry there decides.
    #[arg(long, value_delimiter = ',')]
    grant: Option<Vec<String>>,
    /// Answer the plugin's DNS lookups from this zone file.
    #[arg(long)]
    dns: Option<PathBuf>,
    /// Envelope sender (default: the From: address).
    #[arg(long)]
    from: Option<String>,
    /// Envelope recipients (default: the To: addresses).
    #[arg(long, value_delimiter = ',')]
    to: Option<Vec<String>>,
    /// Print one JSON object: the plugin, then each hook call's verdict,
    /// actions and headers added.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum QueueCmd {
    /// List queued messages with each recipient's state.
    List,
    /// Show one message: envelope and content.
    Show {
        /// Message id.
        id: String,
    },
    /// Remove a message from the queue without delivering it.
    Remove {
        /// Message id.
        id: String,
    },
    /// Try the queued recipients of a message (or of all) now.
    Retry {
        /// Message id.
        id: Option<String>,
        /// Every message in the queue.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    /// Try every queued recipient now (same as `retry --all`).
    Flush,
}

fn load(config: Option<&Path>) -> Result<Config, String> {
    match config {
        Some(p) => Config::load(p).map_err(|e| e.to_string()),
        None => Ok(Config::default_config()),
    }
}

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mailgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let res = match cli.cmd {
        Cmd::Serve { config } => load(config.as_deref()).and_then(|cfg| {
            init_tracing(&cfg.log.level);
            rt.block_on(mailgate::server::serve(cfg, config.clone()))
        }),
        Cmd::Config {
            cmd: ConfigCmd::Check { file },
        } => Config::load(&file)
            .map(|_| {
                println!("{}: OK", file.display());
            })
            .map_err(|e| e.to_string()),
        Cmd::Config {
            cmd: ConfigCmd::Default,
        } => {
            print!("{DEFAULT_TOML}");
            Ok(())
        }
        Cmd::Auth {
            cmd:
                AuthCmd::Check {
                    message,
                    ip,
                    helo,
                    from,
                    dns,
                    config,
                    plugins,
                    json,
                },
        } => rt.block_on(auth_check(
            message, ip, helo, from, dns, config, plugins, json,
        )),
        Cmd::Dkim {
            cmd:
                DkimCmd::Keygen {
                    domain,
                    selector,
                    ed25519,
                    bits,
                    out,
                },
        } => dkim_keygen(&domain, &selector, ed25519, bits, out),
        Cmd::Queue { config, cmd } => {
            load(config.as_deref()).and_then(|cfg| rt.block_on(queue_cmd(&cfg, cmd)))
        }
        Cmd::Report {
            config,
            cmd: ReportCmd::Tls { domain, day, send },
        } => {
            load(config.as_deref()).and_then(|cfg| rt.block_on(report_tls(&cfg, domain, day, send)))
        }
        Cmd::Plugin { config, cmd } => {
            load(config.as_deref()).and_then(|cfg| rt.block_on(plugin_cmd(&cfg, cmd)))
        }
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailgate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `mailgate report tls`: through the running server, or (printing only)
/// from the cache database when none runs.
#[allow(clippy::too_many_arguments)]
async fn auth_check(
    message: PathBuf,
    ip: std::net::IpAddr,
    helo: String,
    from: String,
    dns: Option<PathBuf>,
    config: Option<PathBuf>,
    plugins: Option<PathBuf>,
    json: bool,
) -> Result<(), String> {
    use mailgate::inbound::auth::check;
    let cfg = load(config.as_deref())?;
    let text = std::fs::read(&message).map_err(|e| format!("{}: {e}", message.display()))?;
    let zone = match &dns {
        Some(p) => {
            let t = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            Some(
                mailgate::dns::zone::Zone::parse(&t, &p.display().to_string())
                    .map_err(|e| e.to_string())?,
            )
        }
        None => None,
    };
    let list = match &config {
        Some(_) => cfg.plugins.clone(),
        None => check::bundled_plugins(plugins.as_deref()),
    };
    let work = std::env::temp_dir().join(format!("mailgate-auth-check-{}", std::process::id()));
    let req = check::Request {
        message: text,
        ip,
        helo,
        sender: from,
        zone,
        plugins: list,
        work_dir: work.clone(),
    };
    let res = check::run(&cfg, req).await;
    let _ = std::fs::remove_dir_all(&work);
    let report = res?;
    if json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    Ok(())
}

fn dkim_keygen(
    domain: &str,
    selector: &str,
    ed25519: bool,
    bits: usize,
    out: Option<PathBuf>,
) -> Result<(), String> {
    use mailgate::inbound::auth::keygen;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let entry = mailgate::config::auth::DkimKey {
        domain: domain.to_string(),
        selector: selector.to_string(),
        key: out.unwrap_or_else(|| PathBuf::from(format!("{domain}.{selector}.pem"))),
        headers: None,
        oversign: true,
        expire: None,
    };
    if let Some(p) = entry.problem() {
        return Err(p);
    }
    let k = keygen::generate(ed25519, bits)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&entry.key)
        .map_err(|e| format!("{}: {e}", entry.key.display()))?;
    f.write_all(k.pem.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("{}: {e}", entry.key.display()))?;
    let path = std::fs::canonicalize(&entry.key).unwrap_or(entry.key.clone());
    println!("wrote {} ({})", path.display(), k.kind);
    println!();
    println!("Publish:");
    println!("{}", keygen::zone_line(domain, selector, &k.record));
    println!();
    println!("Configure:");
    println!("[[dkim]]");
    println!("domain = {:?}", domain);
    println!("selector = {:?}", selector);
    println!("key = {:?}", path.display().to_string());
    Ok(())
}

async fn report_tls(
    cfg: &Config,
    domain: Option<String>,
    day: Option<String>,
    send: bool,
) -> Result<(), String> {
    use mailgate::outbound::tlsrpt;
    let day = day.unwrap_or_else(|| tlsrpt::day_of(chrono::Utc::now().timestamp()));
    let req = format!(
        "TLSRPT {day} {}{}",
        domain.as_deref().unwrap_or("*"),
        if send { " SEND" } else { "" }
    );
    let answer = match mailgate::control::request(&cfg.control_socket(), &req).await {
        Some(a) => a,
        None if send => return Err("no mailgate server is running (it sends the reports)".into()),
        None => {
            let cache = mailgate::cache::Cache::open(&cfg.cache_db())
                .map_err(|e| format!("{}: {e}", cfg.cache_db().display()))?;
            let t = tlsrpt::Tlsrpt::new(cache);
            tlsrpt::report::collect(
                &t,
                &tlsrpt::report::Submitter::from_config(cfg),
                &day,
                domain.as_deref(),
            )
        }
    };
    if let Some(e) = answer.get("error").and_then(|e| e.as_str()) {
        return Err(e.to_string());
    }
    let list = answer["reports"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return Err(match domain {
            Some(d) => format!("no TLS sessions to {d} counted on {day}"),
            None => format!("no TLS sessions counted on {day}"),
        });
    }
    let reports: Vec<serde_json::Value> = list.iter().map(|e| e["report"].clone()).collect();
    let shown = if domain.is_some() {
        reports[0].clone()
    } else {
        serde_json::Value::Array(reports)
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&shown).unwrap_or_default()
    );
    for e in &list {
        if let Some(s) = e.get("sent") {
            let to: Vec<&str> = s["to"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
                .collect();
            eprintln!(
                "{}: sent to {}",
                e["domain"].as_str().unwrap_or(""),
                if to.is_empty() {
                    "nowhere".to_string()
                } else {
                    to.join(", ")
                }
            );
            for err in s["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
            {
                eprintln!("{}: {err}", e["domain"].as_str().unwrap_or(""));
            }
        }
    }
    Ok(())
}

async fn queue_cmd(cfg: &Config, cmd: QueueCmd) -> Result<(), String> {
    let request = match &cmd {
        QueueCmd::List => "LIST".to_string(),
        QueueCmd::Show { id } => format!("SHOW {id}"),
        QueueCmd::Remove { id } => format!("REMOVE {id}"),
        QueueCmd::Retry { id: Some(id), .. } => format!("RETRY {id}"),
        QueueCmd::Retry {
            id: None,
            all: false,
        } => return Err("queue retry needs an ID or --all".into()),
        QueueCmd::Retry { .. } | QueueCmd::Flush => "RETRY".to_string(),
    };
    let answer = match mailgate::control::request(&cfg.control_socket(), &request).await {
        Some(a) => a,
        None => {
            // No server running: work on the spool directly.
            let dir = cfg.spool_dir();
            if !dir.exists() {
                return if matches!(cmd, QueueCmd::List) {
                    Ok(())
                } else {
                    Err("the queue is empty".into())
                };
            }
            let spool = if matches!(cmd, QueueCmd::Remove { .. }) {
                Spool::open(
                    &dir,
                    mailgate::spool::SpoolOptions {
                        segment_size: cfg.spool.segment_size.0,
                    },
                )
            } else {
                Spool::open_readonly(&dir)
            }
            .map_err(|e| format!("spool {}: {e}", dir.display()))?;
            let log = mailgate::log::MainLog::open(
                &cfg.expand_path(&cfg.log.mainlog),
                cfg.log.millisec,
                cfg.log.format,
            )
            .ok();
            let a = mailgate::control::answer(&spool, log.as_ref(), None, None, &request).await;
            spool.close();
            a
        }
    };
    if let Some(e) = answer.get("error").and_then(|e| e.as_str()) {
        return Err(e.to_string());
    }
    match cmd {
        QueueCmd::List => {
            let msgs: Vec<mailgate::spool::Envelope> =
                serde_json::from_value(answer["messages"].clone()).map_err(|e| e.to_string())?;
            let now = chrono::Utc::now().timestamp();
            for m in msgs {
                let age = now - m.received_at;
                let age = if age < 3600 {
                    format!("{}m", age / 60)
                } else if age < 172_800 {
                    format!("{}h", age / 3600)
                } else {
                    format!("{}d", age / 86400)
                };
                let sender = if m.sender.is_empty() {
                    "<>".to_string()
                } else {
                    format!("<{}>", m.sender)
                };
                println!("{age:>4} {:>6} {} {sender}", human(m.size), m.id);
                for r in &m.recipients {
                    let state = match r.state {
                        RcptState::Pending => "pending",
                        RcptState::Expanded => "expanded",
                        RcptState::Queued => "queued",
                        RcptState::Delivered => "delivered",
                        RcptState::Failed => "failed",
                    };
                    let next = r
                        .next_attempt
                        .map(|t| format!(" next attempt in {}s", (t - now).max(0)))
                        .unwrap_or_default();
                    println!(
                        "          {state:<9} {}{}{next}",
                        r.address,
                        r.detail
                            .as_ref()
                            .map(|d| format!("  ({d})"))
                            .unwrap_or_default()
                    );
                }
                println!();
            }
        }
        QueueCmd::Show { .. } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&answer["envelope"]).unwrap_or_default()
            );
            println!();
            print!("{}", answer["content"].as_str().unwrap_or(""));
        }
        QueueCmd::Remove { id } => println!("{id} removed"),
        QueueCmd::Retry { .. } | QueueCmd::Flush => {
            println!(
                "{} message(s) scheduled for delivery now",
                answer["retried"].as_u64().unwrap_or(0)
            )
        }
    }
    Ok(())
}

fn human(n: u64) -> String {
    if n < 1024 {
        format!("{n}")
    } else if n < 1 << 20 {
        format!("{:.1}K", n as f64 / 1024.0)
    } else {
        format!("{:.1}M", n as f64 / 1048576.0)
    }
}

fn header_addrs(msg: &str, name: &str) -> Vec<String> {
    let head = msg.split("\n\n").next().unwrap_or("").replace("\r\n", "\n");
    let mut out = Vec::new();
    for line in head.lines() {
        if line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name)
            && line.as_bytes()[name.len()] == b':'
        {
            for part in line[name.len() + 1..].split(',') {
                let a = match (part.find('<'), part.find('>')) {
                    (Some(i), Some(j)) if j > i => &part[i + 1..j],
                    _ => part,
                };
                let a = a.trim();
                if a.contains('@') {
                    out.push(a.to_string());
                }
            }
        }
    }
    out
}

async fn plugin_test(gateway: &Config, args: TestArgs) -> Result<(), String> {
    let TestArgs {
        plugin,
        message,
        plugin_config,
        grant,
        dns,
        from,
        to,
        json,
    } = args;
    use mailgate::config::plugin::{Capability, OnFailure, PluginConfig};
    let msg = std::fs::read(&message).map_err(|e| format!("{}: {e}", message.display()))?;
    let text = String::from_utf8_lossy(&msg).to_string();
    let own_config = plugin_config.is_some();
    let config = match plugin_config {
        Some(p) => {
            let t = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            t.parse::<toml::Table>()
                .map_err(|e| format!("{}: {e}", p.display()))?
        }
        None => toml::Table::new(),
    };
    let zone = match &dns {
        Some(p) => {
            let t = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            Some(
                mailgate::dns::zone::Zone::parse(&t, &p.display().to_string())
                    .map_err(|e| e.to_string())?,
            )
        }
        None => None,
    };
    let caps = match grant {
        None => {
            let mut v = vec![
                Capability::Log,
                Capability::Clock,
                Capability::Random,
                Capability::Kv,
            ];
            if zone.is_some() {
                v.push(Capability::Dns);
            }
            v
        }
        Some(list) => list
            .iter()
            .map(|c| match c.trim() {
                "log" => Ok(Capability::Log),
                "clock" => Ok(Capability::Clock),
                "random" => Ok(Capability::Random),
                "kv" => Ok(Capability::Kv),
                "dns" => Ok(Capability::Dns),
                "services" => Ok(Capability::Services),
                "directories" => Ok(Capability::Directories),
                other => Err(format!("unknown capability {other:?}")),
            })
            .collect::<Result<_, _>>()?,
    };
    // The plugin's entry in the gateway config (--config), if there is one:
    // its settings, capabilities, services and directories are used.
    let same =
        |p: &std::path::Path| std::fs::canonicalize(p).ok() == std::fs::canonicalize(&plugin).ok();
    let entry = gateway.plugins.iter().find(|p| same(&p.path)).cloned();
    let cfg = if let Some(mut e) = entry {
        e.path = plugin.clone();
        if own_config {
            e.config = config;
        }
        if zone.is_some() && !e.capabilities.contains(&Capability::Dns) {
            e.capabilities.push(Capability::Dns);
        }
        e
    } else {
        PluginConfig {
            name: plugin
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "plugin".into()),
            path: plugin.clone(),
            on_failure: OnFailure::Continue,
            timeout_ms: 1000,
            memory: mailgate::config::ByteSize(64 << 20),
            fuel: 0,
            capabilities: caps,
            services: Default::default(),
            directories: Default::default(),
            config,
        }
    };
    let sender = from
        .or_else(|| header_addrs(&text, "From").into_iter().next())
        .unwrap_or_default();
    let rcpts = to.unwrap_or_else(|| header_addrs(&text, "To"));
    if rcpts.is_empty() {
        return Err("no recipients: give --to or a To: header".into());
    }
    let work = std::env::temp_dir().join(format!("mailgate-plugin-test-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let res = mailgate::plugin::test_offline(&cfg, &msg, &sender, &rcpts, &work, zone).await;
    let _ = std::fs::remove_dir_all(&work);
    let t = res.map_err(|e| e.to_string())?;
    if json {
        println!("{}", t.json);
    } else {
        print!("{}", t.text);
    }
    Ok(())
}

async fn plugin_cmd(cfg: &Config, cmd: PluginCmd) -> Result<(), String> {
    let req = match cmd {
        PluginCmd::List => "PLUGINS",
        PluginCmd::Reload => "RELOAD",
        PluginCmd::Test(args) => return plugin_test(cfg, args).await,
    };
    let a = mailgate::control::request(&cfg.control_socket(), req)
        .await
        .ok_or("no mailgate server is running (plugins live in the server)")?;
    if let Some(e) = a.get("error").and_then(|e| e.as_str()) {
        return Err(e.to_string());
    }
    match cmd {
        PluginCmd::List => {
            for p in a["plugins"].as_array().cloned().unwrap_or_default() {
                println!(
                    "{} {}  sha256:{}  on_failure={}  calls={} failures={}",
                    p["name"].as_str().unwrap_or(""),
                    p["version"].as_str().unwrap_or(""),
                    p["sha256"].as_str().unwrap_or(""),
                    p["on_failure"].as_str().unwrap_or(""),
                    p["calls"],
                    p["failures"]
                );
                println!("    path: {}", p["path"].as_str().unwrap_or(""));
                println!("    hooks: {}", join_strings(&p["hooks"]));
                println!("    capabilities: {}", join_strings(&p["capabilities"]));
            }
        }
        PluginCmd::Reload => println!("{} plugin(s) active", a["reloaded"]),
        PluginCmd::Test(_) => {}
    }
    Ok(())
}

/// A JSON array of strings as "a, b, c".
fn join_strings(v: &serde_json::Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}
