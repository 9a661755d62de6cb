//! `mailgate queue ...`: through the control socket, or from the spool
//! when no server runs.

use clap::Subcommand;
use mailgate::config::Config;
use mailgate::spool::{RcptState, Spool};

/// `mailgate queue ...`
#[derive(Subcommand)]
pub enum QueueCmd {
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

/// `mailgate queue list|show|remove|retry|flush`.
pub async fn queue_cmd(cfg: &Config, cmd: QueueCmd) -> Result<(), String> {
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
