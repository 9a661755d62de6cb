//! The generated bindings of the `mailgate-plugin` world (`wit/`), the
//! only contract between the host and its plugins.

wasmtime::component::bindgen!({
    world: "mailgate-plugin",
    path: "../wit/0.1",
    imports: { default: async },
    exports: { default: async },
    with: {
        "mailgate:plugin/types.message": crate::plugin::host::message::MessageData,
        "mailgate:plugin/services.connection": crate::plugin::host::services::ServiceConn,
    },
});

use self::mailgate::plugin::types::Hook;

/// The WIT name of a hook.
pub fn hook_name(h: Hook) -> &'static str {
    match h {
        Hook::Connect => "connect",
        Hook::Helo => "helo",
        Hook::MailFrom => "mail-from",
        Hook::RcptTo => "rcpt-to",
        Hook::Data => "data",
        Hook::Route => "route",
        Hook::Deliver => "deliver",
        Hook::Transport => "transport",
    }
}
