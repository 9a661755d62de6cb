//! Example plugin: rejects the recipients listed in its config, or found in
//! a lookup table (the host's search order for addresses: `user@domain`,
//! `user@`, `@domain`, the domain and its parents; the value, if any, is
//! the reply text), and adds an `X-Reject-List: checked` header to every
//! accepted message. A table that cannot answer, or that is not among the
//! plugin's `tables`, defers the recipient (451 4.3.0) and logs why;
//! without the `lookup` grant the plugin does not load.
//!
//! ```toml
//! [[plugin]]
//! name = "reject-list"
//! path = "plugins/target/wasm32-wasip2/release/reject_list.wasm"
//! capabilities = ["log", "lookup"]
//! tables = ["blocked"]
//! [plugin.config]
//! reject = ["bob@local.test"]
//! table = "blocked"
//! ```

use mailgate_plugin_sdk::*;
use std::sync::OnceLock;

#[derive(serde::Deserialize, Default)]
struct Config {
    #[serde(default)]
    reject: Vec<String>,
    #[serde(default)]
    table: Option<String>,
}

static CONFIG: OnceLock<Config> = OnceLock::new();

struct RejectList;

impl Plugin for RejectList {
    const NAME: &'static str = "reject-list";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    // Only the parsed config outlives a transaction.
    const REUSABLE: bool = true;

    fn init(config: &str) -> Result<(), String> {
        let c: Config = parse_config(config)?;
        let _ = CONFIG.set(c);
        Ok(())
    }

    fn on_rcpt_to(_ctx: &Context, rcpt: &str) -> Response {
        let listed = CONFIG
            .get()
            .is_some_and(|c| c.reject.iter().any(|r| r.eq_ignore_ascii_case(rcpt)));
        if listed {
            info(&format!("rejecting {rcpt}"));
            return Response::reject(550, "5.7.1", "recipient refused by policy");
        }
        let Some(table) = CONFIG.get().and_then(|c| c.table.as_deref()) else {
            return Response::next();
        };
        match lookup::search(table, rcpt, lookup::SearchOrder::Address) {
            Ok(None) => Response::next(),
            Ok(Some(text)) => {
                info(&format!("rejecting {rcpt} (table {table})"));
                let text = if text.trim().is_empty() {
                    "recipient refused by policy"
                } else {
                    text.trim()
                };
                Response::reject(550, "5.7.1", text)
            }
            Err(CapError::Failed(why)) => {
                log::write(log::Level::Warn, &format!("table {table}: {why}"));
                Response::defer(451, "4.3.0", "temporary lookup failure")
            }
            Err(CapError::Unavailable(why)) => {
                log::write(log::Level::Warn, &format!("table {table}: {why}"));
                Response::defer(451, "4.3.0", "temporary lookup failure")
            }
        }
    }

    fn on_data(_ctx: &Context, _msg: &Message) -> Response {
        Response::next().add_header("X-Reject-List", "checked")
    }
}

export_plugin!(RejectList: rcpt_to, data);
