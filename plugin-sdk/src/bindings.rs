//! The bindings, one module per part of the contract. A plugin's component exports only the hooks it names in
//! [`export_plugin!`] and imports only the capability interfaces it calls:
//! each hook and each capability has its own bindings module here, and a
//! module's type information reaches the component only when the plugin
//! uses it.

/// Types, `log`, `routing` and the `plugin` export: what every plugin has.
#[doc(hidden)]
pub mod base {
    wit_bindgen::generate!({
        inline: r#"
            package mailgate-sdk:base;
            world base {
                import mailgate:plugin/types@0.2.0;
                import mailgate:plugin/log@0.2.0;
                import mailgate:plugin/routing@0.2.0;
                export mailgate:plugin/plugin@0.2.0;
            }
        "#,
        path: "../wit/0.2",
        world: "mailgate-sdk:base/base",
        generate_all,
        pub_export_macro: true,
        export_macro_name: "export_base",
        default_bindings_module: "mailgate_plugin_sdk::bindings::base",
    });
}
/// One module per hook interface.
#[doc(hidden)]
pub mod hooks {
    pub mod connect {
        wit_bindgen::generate!({
            inline: r#"
                package mailgate-sdk:connect;
                world connect {
                    export mailgate:plugin/connect-hook@0.2.0;
                }
            "#,
            path: "../wit/0.2",
            world: "mailgate-sdk:connect/connect",
            with: {
                "mailgate:plugin/types@0.2.0": crate::bindings::base::mailgate::plugin::types,
            },
            pub_export_macro: true,
            export_macro_name: "export_connect",
            default_bindings_module: "mailgate_plugin_sdk::bindings::hooks::connect",
        });
    }
    pub mod helo {
        wit_bindgen::generate!({
            inline: r#"
                package mailgate-sdk:helo;
                world helo {
                    export mailgate:plugin/helo-hook@0.2.0;
                }
            "#,
            path: "../wit/0.2",
            world: "mailgate-sdk:helo/helo",
            with: {
                "mailgate:plugin/types@0.2.0": crate::bindings::base::mailgate::plugin::types,
            },
            pub_export_macro: true,
            export_macro_name: "export_helo",
            default_bindings_module: "mailgate_plugin_sdk::bindings::hooks::helo",
        });
    }
    pub mod mail {
        wit_bindgen::generate!({
            inline: r#"
                package mailgate-sdk:mail;
                world mail {
                    export mailgate:plugin/mail-hook@0.2.0;
                }
            "#,
            path: "../wit/0.2",
            world: "mailgate-sdk:mail/mail",
            with: {
                "mailgate:plugin/types@0.2.0": crate::bindings::base::mailgate::plugin::types,
            },
            pub_export_macro: true,
            export_macro_name: "export_mail",
            default_bindings_module: "mailgate_plugin_sdk::bindings::hooks::mail",
        });
    }
    pub mod rcpt {
        wit_bindgen::generate!({
            inline: r#"
                package mailgate-sdk:rcpt;
                world rcpt {
                    export mailgate:plugin/rcpt-hook@0.2.0;
                }
            "#,
            path: "../wit/0.2",
            world: "mailgate-sdk:rcpt/rcpt",
            with: {
                "mailgate:plugin/types@0.2.0": crate::bindings::base::mailgate::plugin::types,
            },
            pub_export_macro: true,
            export_macro_name: "export_rcpt",
            default_bindings_module: "mailgate_plugin_sdk::bindings::hooks::rcpt",
        });
    }
    pub mod data {
        wit_bindgen::generate!({
            inline: r#"
                package mailgate-sdk:data;
                world data {
                    export mailgate:plugin/data-hook@0.2.0;
                }
            "#,
            path: "../wit/0.2",
            world: "mailgate-sdk:data/data",
            with: {
                "mailgate:plugin/types@0.2.0": crate::bindings::base::mailgate::plugin::types,
            },
            pub_export_macro: true,
            export_macro_name: "export_data",
            default_bindings_module: "mailgate_plugin_sdk::bindings::hooks::data",
        });
    }
    pub mod route {
        wit_bindgen::generate!({
            inline: r#"
                package mailgate-sdk:route;
                world route {
                    export mailgate:plugin/route-hook@0.2.0;
                }
            "#,
            path: "../wit/0.2",
            world: "mailgate-sdk:route/route",
            with: {
                "mailgate:plugin/types@0.2.0": crate::bindings::base::mailgate::plugin::types,
            },
            pub_export_macro: true,
            export_macro_name: "export_route",
            default_bindings_module: "mailgate_plugin_sdk::bindings::hooks::route",
        });
    }
    pub mod deliver {
        wit_bindgen::generate!({
            inline: r#"
                package mailgate-sdk:deliver;
                world deliver {
                    export mailgate:plugin/deliver-hook@0.2.0;
                }
            "#,
            path: "../wit/0.2",
            world: "mailgate-sdk:deliver/deliver",
            with: {
                "mailgate:plugin/types@0.2.0": crate::bindings::base::mailgate::plugin::types,
            },
            pub_export_macro: true,
            export_macro_name: "export_deliver",
            default_bindings_module: "mailgate_plugin_sdk::bindings::hooks::deliver",
        });
    }
    pub mod transport {
        wit_bindgen::generate!({
            inline: r#"
                package mailgate-sdk:transport;
                world transport {
                    export mailgate:plugin/transport-hook@0.2.0;
                }
            "#,
            path: "../wit/0.2",
            world: "mailgate-sdk:transport/transport",
            with: {
                "mailgate:plugin/types@0.2.0": crate::bindings::base::mailgate::plugin::types,
            },
            pub_export_macro: true,
            export_macro_name: "export_transport",
            default_bindings_module: "mailgate_plugin_sdk::bindings::hooks::transport",
        });
    }
}

/// One module per capability interface: a plugin imports one only when
/// it calls it.
#[doc(hidden)]
pub mod caps {
    pub mod clock {
        wit_bindgen::generate!({
            inline: r#"
                package mailgate-sdk:clock;
                world clock {
                    import mailgate:plugin/clock@0.2.0;
                }
            "#,
            path: "../wit/0.2",
            world: "mailgate-sdk:clock/clock",
            with: {
                "mailgate:plugin/clock@0.2.0": generate,
            },
        });
    }
    pub mod random {
        wit_bindgen::generate!({
            inline: r#"
                package mailgate-sdk:random;
                world random {
                    import mailgate:plugin/random@0.2.0;
                }
            "#,
            path: "../wit/0.2",
            world: "mailgate-sdk:random/random",
            with: {
                "mailgate:plugin/random@0.2.0": generate,
            },
        });
    }
    pub mod kv {
        wit_bindgen::generate!({
            inline: r#"
                package mailgate-sdk:kv;
                world kv {
                    import mailgate:plugin/kv@0.2.0;
                }
            "#,
            path: "../wit/0.2",
            world: "mailgate-sdk:kv/kv",
            with: {
                "mailgate:plugin/types@0.2.0": crate::bindings::base::mailgate::plugin::types,
                "mailgate:plugin/kv@0.2.0": generate,
            },
        });
    }
    pub mod services {
        wit_bindgen::generate!({
            inline: r#"
                package mailgate-sdk:services;
                world services {
                    import mailgate:plugin/services@0.2.0;
                }
            "#,
            path: "../wit/0.2",
            world: "mailgate-sdk:services/services",
            with: {
                "mailgate:plugin/types@0.2.0": crate::bindings::base::mailgate::plugin::types,
                "mailgate:plugin/services@0.2.0": generate,
            },
        });
    }
    pub mod dns {
        wit_bindgen::generate!({
            inline: r#"
                package mailgate-sdk:dns;
                world dns {
                    import mailgate:plugin/dns@0.2.0;
                }
            "#,
            path: "../wit/0.2",
            world: "mailgate-sdk:dns/dns",
            with: {
                "mailgate:plugin/types@0.2.0": crate::bindings::base::mailgate::plugin::types,
                "mailgate:plugin/dns@0.2.0": generate,
            },
        });
    }
    pub mod crypto {
        wit_bindgen::generate!({
            inline: r#"
                package mailgate-sdk:crypto;
                world crypto {
                    import mailgate:plugin/crypto@0.2.0;
                }
            "#,
            path: "../wit/0.2",
            world: "mailgate-sdk:crypto/crypto",
            with: {
                "mailgate:plugin/types@0.2.0": crate::bindings::base::mailgate::plugin::types,
                "mailgate:plugin/crypto@0.2.0": generate,
            },
        });
    }
    pub mod lookup {
        wit_bindgen::generate!({
            inline: r#"
                package mailgate-sdk:lookup;
                world lookup {
                    import mailgate:plugin/lookup@0.2.0;
                }
            "#,
            path: "../wit/0.2",
            world: "mailgate-sdk:lookup/lookup",
            with: {
                "mailgate:plugin/types@0.2.0": crate::bindings::base::mailgate::plugin::types,
                "mailgate:plugin/lookup@0.2.0": generate,
            },
        });
    }
}
