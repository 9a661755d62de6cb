//! The generated bindings of contract 0.2 (`wit/0.2`, world `host`: every
//! import the host offers and every export it accepts). A component
//! exports `plugin` and the hook interfaces it has; which ones it has is
//! read from the component at load.

wasmtime::component::bindgen!({
    world: "host",
    path: "../wit/0.2",
    imports: { default: async },
    exports: { default: async },
    with: {
        "mailgate:plugin/types.message": crate::plugin::host::message::MessageData,
        "mailgate:plugin/services.connection": crate::plugin::host::services::ServiceConn,
    },
});
