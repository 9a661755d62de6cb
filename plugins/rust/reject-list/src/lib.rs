//! Example plugin: rejects the recipients listed in its config and adds an
//! `X-Reject-List: checked` header to every accepted message.
//!
//! ```toml
//! [[plugin]]
//! name = "reject-list"
//! path = "plugins/target/wasm32-wasip2/release/reject_list.wasm"
//! [plugin.config]
//! reject = ["bob@local.test"]
//! ```

use mailgate_plugin_sdk::*;
use std::sync::OnceLock;

#[derive(serde::Deserialize, Default)]
struct Config {
    #[serde(default)]
    reject: Vec<String>,
}

static CONFIG: OnceLock<Config> = OnceLock::new();

struct RejectList;

impl Plugin for RejectList {
    const NAME: &'static str = "reject-list";
    const HOOKS: &'static [Hook] = &[Hook::RcptTo, Hook::Data];

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
        Response::next()
    }

    fn on_data(_ctx: &Context, _msg: &Message) -> Response {
        Response::next().with(Action::AddHeader((
            "X-Reject-List".into(),
            "checked".into(),
        )))
    }
}

export_plugin!(RejectList);
