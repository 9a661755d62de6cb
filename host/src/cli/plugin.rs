//! `mailgate plugin ...`: list and reload through the server, test
//! offline.

use clap::Subcommand;
use mailgate::config::Config;
use std::path::PathBuf;

/// `mailgate plugin ...`
#[derive(Subcommand)]
pub enum PluginCmd {
    /// Loaded plugins with versions, hashes, capabilities, calls, failures.
    List,
    /// Load the plugins named in the config file and switch to them
    /// atomically (sessions in flight finish with the old ones).
    Reload,
    /// Run a new version of a plugin as its shadow: it sees what the
    /// active plugin sees, its differing answers are logged and counted
    /// (`plugin list`), and it never changes what happens to mail.
    Shadow {
        /// The active plugin.
        name: String,
        /// The new version's component (.wasm).
        path: PathBuf,
        /// Its config table, a TOML file (default: the active plugin's).
        #[arg(long = "plugin-config")]
        plugin_config: Option<PathBuf>,
    },
    /// Swap the shadow of NAME in for NAME, atomically.
    Promote {
        /// The active plugin (or its shadow).
        name: String,
    },
    /// Run a plugin offline through every hook it declares, with a context
    /// built from a message file, and print its verdicts and actions.
    Test(TestArgs),
}

/// Arguments of `mailgate plugin test`.
#[derive(clap::Args)]
pub struct TestArgs {
    /// The component (.wasm).
    plugin: PathBuf,
    /// The message (RFC 5322; LF or CRLF line endings).
    #[arg(long)]
    message: PathBuf,
    /// The plugin's own settings: a TOML file whose table is its config.
    #[arg(long = "plugin-config")]
    plugin_config: Option<PathBuf>,
    /// Grant capabilities (log, clock, random, kv, dns, services,
    /// directories, crypto, lookup); default: log, clock, random, kv,
    /// lookup (with no tables), and dns with --dns. With --config, the
    /// plugin's entry there decides.
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
    let zone = dns.as_deref().map(super::read_zone).transpose()?;
    let caps = match grant {
        None => {
            let mut v = vec![
                Capability::Log,
                Capability::Clock,
                Capability::Random,
                Capability::Kv,
                // No tables are named offline: a lookup fails, but a
                // plugin that imports `lookup` loads.
                Capability::Lookup,
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
                "crypto" => Ok(Capability::Crypto),
                "lookup" => Ok(Capability::Lookup),
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
            reuse: None,
            capabilities: caps,
            services: Default::default(),
            directories: Default::default(),
            keys: Default::default(),
            tables: Vec::new(),
            shadow_of: None,
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

/// `mailgate plugin list|reload|test`.
pub async fn plugin_cmd(cfg: &Config, cmd: PluginCmd) -> Result<(), String> {
    let req = match &cmd {
        PluginCmd::List => "PLUGINS".to_string(),
        PluginCmd::Reload => "RELOAD".to_string(),
        PluginCmd::Shadow {
            name,
            path,
            plugin_config,
        } => {
            let path =
                std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let config = match plugin_config {
                Some(p) => {
                    let t =
                        std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                    Some(
                        t.parse::<toml::Table>()
                            .map_err(|e| format!("{}: {e}", p.display()))?,
                    )
                }
                None => None,
            };
            let args = serde_json::json!({ "of": name, "path": path, "config": config });
            format!("SHADOW {args}")
        }
        PluginCmd::Promote { name } => format!("PROMOTE {name}"),
        PluginCmd::Test(_) => {
            let PluginCmd::Test(args) = cmd else {
                unreachable!()
            };
            return plugin_test(cfg, args).await;
        }
    };
    let a = mailgate::control::request(&cfg.control_socket(), &req)
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
                println!(
                    "    contract: mailgate:plugin@{}",
                    p["contract"].as_str().unwrap_or("")
                );
                if let Some(of) = p["shadow_of"].as_str() {
                    println!(
                        "    shadow of {of}: {} hook calls compared, {} differed",
                        p["compared"], p["differed"]
                    );
                }
                println!("    hooks: {}", join_strings(&p["hooks"]));
                println!("    capabilities: {}", join_strings(&p["capabilities"]));
                println!(
                    "    instances: {} created, {} transactions on a reused one, {} idle{}",
                    p["instances"],
                    p["reused"],
                    p["idle"],
                    if p["reuse_declared"].as_bool() == Some(true) {
                        " (reuse, as the plugin declares)"
                    } else if p["reuse"].as_bool() == Some(true) {
                        " (reuse)"
                    } else {
                        " (fresh per transaction)"
                    }
                );
            }
        }
        PluginCmd::Reload => println!("{} plugin(s) active", a["reloaded"]),
        PluginCmd::Shadow { name, .. } => println!(
            "{} {} shadows {name}",
            a["shadow"].as_str().unwrap_or(""),
            a["version"].as_str().unwrap_or("")
        ),
        PluginCmd::Promote { .. } => println!(
            "{} is now {}",
            a["promoted"].as_str().unwrap_or(""),
            a["as"].as_str().unwrap_or("")
        ),
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
