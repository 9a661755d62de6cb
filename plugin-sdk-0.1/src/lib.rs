//! The Rust SDK of contract 0.1 (`mailgate:plugin@0.1.0`, `wit/0.1`),
//! frozen. New plugins use `plugin-sdk/` (contract 0.2); this crate builds
//! the 0.1 test plugins (`hooks-probe`, `misbehave`) that check the
//! gateway still loads and adapts 0.1 components.
//!
//! A plugin is a WebAssembly component (`wasm32-wasip2`). With this crate you
//! implement the [`Plugin`] trait, overriding only the hooks you need, and
//! export it with [`export_plugin!`]:
//!
//! ```ignore
//! use mailgate_plugin_sdk_v1::*;
//!
//! #[derive(Default)]
//! struct Deny;
//!
//! impl Plugin for Deny {
//!     const NAME: &'static str = "deny-bob";
//!     const HOOKS: &'static [Hook] = &[Hook::RcptTo];
//!     fn on_rcpt_to(ctx: &Context, rcpt: &str) -> Response {
//!         if rcpt.starts_with("bob@") {
//!             return Response::reject(550, "5.7.1", "no mail for bob");
//!         }
//!         Response::next()
//!     }
//! }
//!
//! export_plugin!(Deny);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm`
//! file is the component the gateway loads.

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "mailgate-plugin",
        path: "../wit/0.1",
        pub_export_macro: true,
        default_bindings_module: "mailgate_plugin_sdk_v1::bindings",
    });
}

pub use bindings::exports::mailgate::plugin::plugin::{Guest, Message, RouteDecision};
pub use bindings::mailgate::plugin::types::{
    Action, CheckResult, Context, Delivery, Hook, Manifest, Response, RouteInfo, SmtpReply,
    TlsInfo, TransportResult, Verdict,
};
pub use bindings::mailgate::plugin::{
    clock, crypto, dns, kv, log, lookup, random, routing, services,
};

impl RouteDecision {
    /// Leave the recipient as the host routed it.
    pub fn unchanged(rcpt: &RouteInfo) -> RouteDecision {
        RouteDecision {
            recipient: rcpt.recipient.clone(),
            sender: None,
            transport: false,
        }
    }
}

impl Message {
    /// The whole body (reads it through the host in 64 KiB pieces).
    pub fn body(&self) -> Vec<u8> {
        read_all(self.body_size(), |o, n| self.read_body(o, n))
    }

    /// The whole message, header and body, as stored.
    pub fn raw(&self) -> Vec<u8> {
        read_all(self.size(), |o, n| self.read_raw(o, n))
    }
}

fn read_all(size: u64, read: impl Fn(u64, u32) -> Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(size as usize);
    while (out.len() as u64) < size {
        let piece = read(out.len() as u64, 64 * 1024);
        if piece.is_empty() {
            break;
        }
        out.extend_from_slice(&piece);
    }
    out
}

impl Response {
    /// Continue with no actions.
    pub fn next() -> Response {
        Response {
            verdict: Verdict::Continue,
            actions: vec![],
        }
    }

    /// Accept now.
    pub fn accept() -> Response {
        Response {
            verdict: Verdict::Accept,
            actions: vec![],
        }
    }

    /// Reject permanently.
    pub fn reject(code: u16, enhanced: &str, text: &str) -> Response {
        Response {
            verdict: Verdict::Reject(SmtpReply {
                code,
                enhanced: enhanced.into(),
                text: text.into(),
            }),
            actions: vec![],
        }
    }

    /// Defer (temporary failure).
    pub fn defer(code: u16, enhanced: &str, text: &str) -> Response {
        Response {
            verdict: Verdict::Defer(SmtpReply {
                code,
                enhanced: enhanced.into(),
                text: text.into(),
            }),
            actions: vec![],
        }
    }

    /// Add an action.
    pub fn with(mut self, a: Action) -> Response {
        self.actions.push(a);
        self
    }
}

impl Context {
    /// A variable set by an earlier hook or plugin.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parse the plugin's TOML table, which the host hands over as JSON.
pub fn parse_config<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, String> {
    serde_json::from_str(json).map_err(|e| format!("bad plugin config: {e}"))
}

/// Log at info level.
pub fn info(msg: &str) {
    log::write(log::Level::Info, msg);
}

/// A plugin. Override the hooks you list in [`Plugin::HOOKS`]; the others
/// are never called.
pub trait Plugin {
    /// Plugin name.
    const NAME: &'static str;
    /// Plugin version.
    const VERSION: &'static str = "0.1.0";
    /// The hooks implemented.
    const HOOKS: &'static [Hook];
    /// Receives the plugin's config table as JSON, once per instance.
    fn init(_config: &str) -> Result<(), String> {
        Ok(())
    }
    /// A client connected.
    fn on_connect(_ctx: &Context) -> Response {
        Response::next()
    }
    /// HELO or EHLO.
    fn on_helo(_ctx: &Context) -> Response {
        Response::next()
    }
    /// MAIL FROM.
    fn on_mail_from(_ctx: &Context) -> Response {
        Response::next()
    }
    /// RCPT TO.
    fn on_rcpt_to(_ctx: &Context, _rcpt: &str) -> Response {
        Response::next()
    }
    /// End of data.
    fn on_data(_ctx: &Context, _msg: &Message) -> Response {
        Response::next()
    }
    /// Route one recipient (once, when the message is accepted).
    fn on_route(_ctx: &Context, rcpt: &RouteInfo) -> RouteDecision {
        RouteDecision::unchanged(rcpt)
    }
    /// Before each outgoing SMTP transaction: add or remove headers of the
    /// copy sent, or stop the delivery with defer or reject.
    fn on_deliver(_ctx: &Context, _d: &Delivery, _msg: &Message) -> Response {
        Response::next()
    }
    /// Deliver recipients a route hook of this plugin took.
    fn on_transport(_ctx: &Context, _d: &Delivery, _msg: &Message) -> TransportResult {
        TransportResult::Deferred("this plugin has no transport".into())
    }
}

/// Adapter from [`Plugin`] to the generated bindings.
#[doc(hidden)]
pub struct Adapter<P>(std::marker::PhantomData<P>);

impl<P: Plugin> Guest for Adapter<P> {
    fn describe() -> Manifest {
        Manifest {
            name: P::NAME.into(),
            version: P::VERSION.into(),
            hooks: P::HOOKS.to_vec(),
        }
    }
    fn init(config: String) -> Result<(), String> {
        P::init(&config)
    }
    fn on_connect(ctx: Context) -> Response {
        P::on_connect(&ctx)
    }
    fn on_helo(ctx: Context) -> Response {
        P::on_helo(&ctx)
    }
    fn on_mail_from(ctx: Context) -> Response {
        P::on_mail_from(&ctx)
    }
    fn on_rcpt_to(ctx: Context, recipient: String) -> Response {
        P::on_rcpt_to(&ctx, &recipient)
    }
    fn on_data(ctx: Context, msg: &Message) -> Response {
        P::on_data(&ctx, msg)
    }
    fn on_route(ctx: Context, rcpt: RouteInfo) -> RouteDecision {
        P::on_route(&ctx, &rcpt)
    }
    fn on_deliver(ctx: Context, d: Delivery, msg: &Message) -> Response {
        P::on_deliver(&ctx, &d, msg)
    }
    fn on_transport(ctx: Context, d: Delivery, msg: &Message) -> TransportResult {
        P::on_transport(&ctx, &d, msg)
    }
}

/// Export a [`Plugin`] as the component's implementation.
#[macro_export]
macro_rules! export_plugin {
    ($t:ty) => {
        type __MailgatePluginExport = $crate::Adapter<$t>;
        $crate::bindings::export!(__MailgatePluginExport with_types_in $crate::bindings);
    };
}
