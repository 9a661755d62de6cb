//! The `mailgate` command.

mod cli;

use clap::{Parser, Subcommand};
use cli::auth::{AuthCmd, DkimCmd, auth_check, dkim_keygen};
use cli::load;
use cli::plugin::{PluginCmd, plugin_cmd};
use cli::queue::{QueueCmd, queue_cmd};
use cli::report::{ReportCmd, report_dmarc, report_tls};
use cli::table::{TableCmd, table_cmd};
use mailgate::config::{Config, DEFAULT_TOML};
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: the host allocates and frees many
/// small buffers per message (plugin call arguments, header lists, DNS
/// names), and glibc's free lists cost about a tenth of the gateway's CPU
/// under load (measured with perf; see README, "Every check on").
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// What the running server is doing: uptime, listeners, connections,
    /// queue, plugins and the latest problems in its log.
    Status {
        /// Configuration file (to find the control socket).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
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
    /// Lookup tables: build them from text sources, read and list them.
    Table {
        /// Configuration file (to find the data directory).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        cmd: TableCmd,
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
    // Files the commands write (lookup tables of password hashes, keys,
    // the server's spool and logs) are never world-readable.
    // SAFETY: umask(2) only sets the process's file creation mask.
    unsafe {
        libc::umask(0o027);
    }
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
            .map_err(|e| e.to_string())
            .and_then(|cfg| {
                // The tables it names must exist and be readable.
                mailgate::table::Tables::new(cfg.tables_dir())
                    .check_config(&cfg)
                    .map_err(|(key, e)| format!("{}: {key}: {e}", file.display()))?;
                // And a credentials file must be private and well-formed.
                mailgate::outbound::login::Logins::load(&cfg.outbound)
                    .map(drop)
                    .map_err(|e| format!("{}: {e}", file.display()))?;
                // So must the shared store's password file.
                mailgate::store::redis::check(&cfg.store)
                    .map_err(|e| format!("{}: {e}", file.display()))
            })
            .map(|_| {
                println!("{}: OK", file.display());
            }),
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
        Cmd::Status { config, json } => {
            load(config.as_deref()).and_then(|cfg| rt.block_on(cli::status::status(&cfg, json)))
        }
        Cmd::Queue { config, cmd } => {
            load(config.as_deref()).and_then(|cfg| rt.block_on(queue_cmd(&cfg, cmd)))
        }
        Cmd::Report {
            config,
            cmd: ReportCmd::Tls { domain, day, send },
        } => {
            load(config.as_deref()).and_then(|cfg| rt.block_on(report_tls(&cfg, domain, day, send)))
        }
        Cmd::Report {
            config,
            cmd: ReportCmd::Dmarc { domain, day, send },
        } => load(config.as_deref())
            .and_then(|cfg| rt.block_on(report_dmarc(&cfg, domain, day, send))),
        Cmd::Table { config, cmd } => load(config.as_deref()).and_then(|cfg| table_cmd(&cfg, cmd)),
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
