//! `mailgate table ...`: build, read and list lookup tables.

use clap::{Subcommand, ValueEnum};
use mailgate::config::Config;
use mailgate::table::{Kind, Tables, search};
use std::path::PathBuf;

/// How `table get` searches.
#[derive(Clone, Copy, ValueEnum)]
pub enum Search {
    /// The key exactly (lower-cased).
    Exact,
    /// A domain: itself, `*.parent` and `.parent` partial keys, `*`.
    Domain,
    /// An address: `user@domain`, `user@`, `@domain`, then the domain's
    /// keys.
    Address,
    /// An IP address: the first network holding it (CIDR tables).
    Ip,
}

/// `mailgate table ...`
#[derive(Subcommand)]
pub enum TableCmd {
    /// Build table NAME from a text source (`key: value` or `key value`
    /// lines, `#` comments, continuation lines) and swap it in; a running
    /// server uses it from its next lookup on. A broken line leaves the old
    /// version in place.
    Build {
        /// The table's name (letters, digits, '-', '_', '.').
        name: String,
        /// The source file.
        source: PathBuf,
        /// Keys are networks (`192.0.2.0/24`, `2001:db8::/32`): looked up by
        /// IP address, the first matching line wins.
        #[arg(long)]
        cidr: bool,
    },
    /// Print the value for KEY (exit status 1 when there is none).
    Get {
        /// The table.
        name: String,
        /// The key (a domain, an address or an IP address with --search).
        key: String,
        /// How to search.
        #[arg(long, value_enum, default_value = "exact")]
        search: Search,
    },
    /// List the tables: name, kind, entries, when built, source.
    List,
    /// Print every entry of a table (`key: value`).
    Dump {
        /// The table.
        name: String,
    },
}

/// Run a `table` subcommand against the tables of `cfg`'s data directory.
pub fn table_cmd(cfg: &Config, cmd: TableCmd) -> Result<(), String> {
    let tables = Tables::new(cfg.tables_dir());
    match cmd {
        TableCmd::Build { name, source, cidr } => {
            let text = std::fs::read(&source).map_err(|e| format!("{}: {e}", source.display()))?;
            let kind = if cidr { Kind::Cidr } else { Kind::Keys };
            let shown = source.display().to_string();
            let (info, duplicates) = tables
                .build(&name, kind, &text, &shown)
                .map_err(|e| e.to_string())?;
            for (line, key) in &duplicates {
                eprintln!(
                    "mailgate: {shown}:{line}: duplicate key {key:?} ignored (the first one is kept)"
                );
            }
            println!(
                "{name}: {} {} entries from {shown}",
                info.entries,
                info.kind.name()
            );
            Ok(())
        }
        TableCmd::Get { name, key, search } => {
            let t = tables.get(&name).map_err(|e| e.to_string())?;
            let found = match search {
                Search::Exact => t.first(std::slice::from_ref(&key)),
                Search::Domain => t.first(&search::domain_keys(&key)),
                Search::Address => t.first(&search::address_keys(&key)),
                Search::Ip => {
                    let ip = key
                        .parse()
                        .map_err(|_| format!("{key:?} is not an IP address"))?;
                    t.get_ip(ip).map(|v| v.map(|v| (key.clone(), v)))
                }
            }
            .map_err(|e| e.to_string())?;
            match found {
                Some((k, v)) if k.eq_ignore_ascii_case(&key) => {
                    println!("{v}");
                    Ok(())
                }
                Some((k, v)) => {
                    println!("{v}");
                    eprintln!("mailgate: found as {k:?}");
                    Ok(())
                }
                None => Err(format!("{name}: no entry for {key:?}")),
            }
        }
        TableCmd::List => {
            for (name, info) in tables.list().map_err(|e| e.to_string())? {
                match info {
                    Ok(i) => {
                        let built = chrono::DateTime::from_timestamp(i.built as i64, 0)
                            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                            .unwrap_or_default();
                        println!(
                            "{name}\t{}\t{} entries\tbuilt {built}\tfrom {}",
                            i.kind.name(),
                            i.entries,
                            i.source
                        );
                    }
                    Err(e) => println!("{name}\tunreadable: {e}"),
                }
            }
            Ok(())
        }
        TableCmd::Dump { name } => {
            let t = tables.get(&name).map_err(|e| e.to_string())?;
            for (k, v) in t.entries().map_err(|e| e.to_string())? {
                if v.is_empty() {
                    println!("{k}");
                } else {
                    println!("{k}: {v}");
                }
            }
            Ok(())
        }
    }
}
