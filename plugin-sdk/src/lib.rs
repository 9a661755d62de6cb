//! The crate for writing mailgate plugins in Rust.
//!
//! A plugin is a WebAssembly component (`wasm32-wasip2`) that implements
//! contract 0.2 (`mailgate:plugin@0.2.0`, `wit/0.2`). Implement the
//! [`Plugin`] trait, overriding only the hooks you have, and export it with
//! [`export_plugin!`], naming those hooks:
//!
//! ```ignore
//! use mailgate_plugin_sdk::*;
//!
//! struct Deny;
//!
//! impl Plugin for Deny {
//!     const NAME: &'static str = "deny-bob";
//!     fn on_rcpt_to(_ctx: &Context, rcpt: &str) -> Response {
//!         if rcpt.starts_with("bob@") {
//!             return Response::reject(550, "5.7.1", "no mail for bob");
//!         }
//!         Response::next()
//!     }
//! }
//!
//! export_plugin!(Deny: rcpt_to);
//! ```
//!
//! The hooks named in `export_plugin!` are the component's exports, so
//! they are the plugin's hooks; the capability interfaces it calls
//! (`kv::get`, `dns::lookup`, ...) are its imports, and the gateway
//! refuses to load it unless its config grants them.
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm`
//! file is the component the gateway loads. (`plugin-sdk-0.1/` is the
//! frozen SDK of contract 0.1, whose components the gateway still loads.)

#[doc(hidden)]
pub mod bindings;

pub use bindings::base::exports::mailgate::plugin::plugin::Manifest;
pub use bindings::base::mailgate::plugin::types::CapError;
pub use bindings::base::mailgate::plugin::types::{
    Action, ArcResult, CheckOutcome, Checks, Context, Delivery, DkimResult, EnhancedStatus,
    HeaderField, IprevResult, Message, Response, RouteDecision, RouteInfo, SmtpReply, SpfIdentity,
    SpfResult, TlsInfo, TlsVersion, TransportResult, Verdict,
};
pub use bindings::base::mailgate::plugin::{log, routing};
pub use bindings::caps::clock::mailgate::plugin::clock;
pub use bindings::caps::crypto::mailgate::plugin::crypto;
pub use bindings::caps::dns::mailgate::plugin::dns;
pub use bindings::caps::kv::mailgate::plugin::kv;
pub use bindings::caps::lookup::mailgate::plugin::lookup;
pub use bindings::caps::random::mailgate::plugin::random;
pub use bindings::caps::services::mailgate::plugin::services;

impl EnhancedStatus {
    /// From "x.y.z"; `None` for anything else.
    pub fn parse(s: &str) -> Option<EnhancedStatus> {
        let mut it = s.split('.');
        let class = it.next()?.parse().ok()?;
        let subject = it.next()?.parse().ok()?;
        let detail = it.next()?.parse().ok()?;
        it.next().is_none().then_some(EnhancedStatus {
            class,
            subject,
            detail,
        })
    }
}

impl CapError {
    /// Why the call failed, as the host said it (a pool's Redis outage
    /// included).
    pub fn reason(&self) -> &str {
        match self {
            CapError::Failed(why) | CapError::Unavailable(why) => why,
        }
    }
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

    fn reply(code: u16, enhanced: &str, text: &str) -> SmtpReply {
        SmtpReply {
            code,
            enhanced: EnhancedStatus::parse(enhanced),
            text: text.into(),
        }
    }

    /// Reject permanently (`enhanced` as "5.7.1"; "" for none).
    pub fn reject(code: u16, enhanced: &str, text: &str) -> Response {
        Response {
            verdict: Verdict::Reject(Self::reply(code, enhanced, text)),
            actions: vec![],
        }
    }

    /// Defer (temporary failure).
    pub fn defer(code: u16, enhanced: &str, text: &str) -> Response {
        Response {
            verdict: Verdict::Defer(Self::reply(code, enhanced, text)),
            actions: vec![],
        }
    }

    /// Add an action.
    pub fn with(mut self, a: Action) -> Response {
        self.actions.push(a);
        self
    }

    /// Add a header field.
    pub fn add_header(self, name: &str, value: &str) -> Response {
        self.with(Action::AddHeader(HeaderField {
            name: name.into(),
            value: value.into(),
        }))
    }
}

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

impl Context {
    /// A variable set by an earlier hook or plugin.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Message {
    /// The whole body (read through the host in 64 KiB pieces).
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

/// Parse the plugin's TOML table, which the host hands over as JSON.
pub fn parse_config<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, String> {
    serde_json::from_str(json).map_err(|e| format!("bad plugin config: {e}"))
}

/// The TXT records of `name`, each as its text: the record's strings
/// joined, escapes (`\"`, `\\`, `\DDD`) decoded. An empty list when the
/// name has none. (Imports `dns`: needs the grant.)
pub fn txt_records(name: &str) -> Result<Vec<String>, CapError> {
    let a = dns::lookup(name, dns::RecordType::Txt)?;
    Ok(a.records.iter().map(|r| txt_text(r)).collect())
}

/// One TXT record in presentation form (`"v=spf1 " "-all"`) as its text.
pub fn txt_text(presentation: &str) -> String {
    let b = presentation.trim().as_bytes();
    if !b.starts_with(b"\"") {
        return presentation.trim().to_string();
    }
    let mut out = Vec::with_capacity(b.len());
    let mut quoted = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => quoted = !quoted,
            b'\\' if i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) => {
                let n = (b[i + 1] - b'0') as u32 * 100
                    + (b[i + 2] - b'0') as u32 * 10
                    + (b[i + 3] - b'0') as u32;
                out.push(n.min(255) as u8);
                i += 3;
            }
            b'\\' if i + 1 < b.len() => {
                out.push(b[i + 1]);
                i += 1;
            }
            c if quoted => out.push(c),
            _ => {}
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Log at info level.
pub fn info(msg: &str) {
    log::write(log::Level::Info, msg);
}

/// A plugin. Override the hooks you name in [`export_plugin!`]; the
/// others are not exported and never called.
pub trait Plugin {
    /// Plugin name.
    const NAME: &'static str;
    /// Plugin version, shown in `plugin list` and the log (set it to
    /// `env!("CARGO_PKG_VERSION")` to follow the crate's).
    const VERSION: &'static str = "0.2.0";
    /// Whether one instance may serve many transactions: true when the
    /// plugin keeps nothing from one transaction to the next that changes
    /// its answers (a config parsed by `init` into a static may stay).
    /// The host then calls `init` once per instance, not once per
    /// transaction, which saves ~50 µs of CPU per message under load. The
    /// admin's `reuse = true|false` overrides it.
    const REUSABLE: bool = false;
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
    /// Before each outgoing SMTP transaction.
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

use bindings::hooks as h;

impl<P: Plugin> bindings::base::exports::mailgate::plugin::plugin::Guest for Adapter<P> {
    fn describe() -> Manifest {
        Manifest {
            name: P::NAME.into(),
            version: P::VERSION.into(),
            reusable: P::REUSABLE,
        }
    }
    fn init(config: String) -> Result<(), String> {
        P::init(&config)
    }
}
impl<P: Plugin> h::connect::exports::mailgate::plugin::connect_hook::Guest for Adapter<P> {
    fn on_connect(ctx: Context) -> Response {
        P::on_connect(&ctx)
    }
}
impl<P: Plugin> h::helo::exports::mailgate::plugin::helo_hook::Guest for Adapter<P> {
    fn on_helo(ctx: Context) -> Response {
        P::on_helo(&ctx)
    }
}
impl<P: Plugin> h::mail::exports::mailgate::plugin::mail_hook::Guest for Adapter<P> {
    fn on_mail_from(ctx: Context) -> Response {
        P::on_mail_from(&ctx)
    }
}
impl<P: Plugin> h::rcpt::exports::mailgate::plugin::rcpt_hook::Guest for Adapter<P> {
    fn on_rcpt_to(ctx: Context, recipient: String) -> Response {
        P::on_rcpt_to(&ctx, &recipient)
    }
}
impl<P: Plugin> h::data::exports::mailgate::plugin::data_hook::Guest for Adapter<P> {
    fn on_data(ctx: Context, msg: &Message) -> Response {
        P::on_data(&ctx, msg)
    }
}
impl<P: Plugin> h::route::exports::mailgate::plugin::route_hook::Guest for Adapter<P> {
    fn on_route(ctx: Context, rcpt: RouteInfo) -> RouteDecision {
        P::on_route(&ctx, &rcpt)
    }
}
impl<P: Plugin> h::deliver::exports::mailgate::plugin::deliver_hook::Guest for Adapter<P> {
    fn on_deliver(ctx: Context, d: Delivery, msg: &Message) -> Response {
        P::on_deliver(&ctx, &d, msg)
    }
}
impl<P: Plugin> h::transport::exports::mailgate::plugin::transport_hook::Guest for Adapter<P> {
    fn on_transport(ctx: Context, d: Delivery, msg: &Message) -> TransportResult {
        P::on_transport(&ctx, &d, msg)
    }
}

/// Export a [`Plugin`] with the hooks it has: `export_plugin!(P: rcpt_to,
/// data)`. Hook names: `connect`, `helo`, `mail_from`, `rcpt_to`, `data`,
/// `route`, `deliver`, `transport`.
#[macro_export]
macro_rules! export_plugin {
    ($t:ty : $($hook:ident),* $(,)?) => {
        type __MailgatePluginExport = $crate::Adapter<$t>;
        $crate::bindings::base::export_base!(__MailgatePluginExport with_types_in $crate::bindings::base);
        $( $crate::export_plugin!(@hook $hook); )*
    };
    (@hook connect) => {
        $crate::bindings::hooks::connect::export_connect!(__MailgatePluginExport with_types_in $crate::bindings::hooks::connect);
    };
    (@hook helo) => {
        $crate::bindings::hooks::helo::export_helo!(__MailgatePluginExport with_types_in $crate::bindings::hooks::helo);
    };
    (@hook mail_from) => {
        $crate::bindings::hooks::mail::export_mail!(__MailgatePluginExport with_types_in $crate::bindings::hooks::mail);
    };
    (@hook rcpt_to) => {
        $crate::bindings::hooks::rcpt::export_rcpt!(__MailgatePluginExport with_types_in $crate::bindings::hooks::rcpt);
    };
    (@hook data) => {
        $crate::bindings::hooks::data::export_data!(__MailgatePluginExport with_types_in $crate::bindings::hooks::data);
    };
    (@hook route) => {
        $crate::bindings::hooks::route::export_route!(__MailgatePluginExport with_types_in $crate::bindings::hooks::route);
    };
    (@hook deliver) => {
        $crate::bindings::hooks::deliver::export_deliver!(__MailgatePluginExport with_types_in $crate::bindings::hooks::deliver);
    };
    (@hook transport) => {
        $crate::bindings::hooks::transport::export_transport!(__MailgatePluginExport with_types_in $crate::bindings::hooks::transport);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_presentation_to_text() {
        assert_eq!(
            txt_text("\"v=DMARC1; \" \"p=reject\""),
            "v=DMARC1; p=reject"
        );
        assert_eq!(txt_text("\"a\\\"b\\\\c\\059\""), "a\"b\\c;");
        assert_eq!(txt_text("plain"), "plain");
    }

    #[test]
    fn enhanced_codes_parse() {
        let e = EnhancedStatus::parse("5.7.1").unwrap();
        assert_eq!((e.class, e.subject, e.detail), (5, 7, 1));
        assert!(EnhancedStatus::parse("5.7").is_none());
        assert!(EnhancedStatus::parse("").is_none());
        assert!(EnhancedStatus::parse("5.7.1.2").is_none());
    }
}
