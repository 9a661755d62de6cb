//! The two contracts a component may implement, behind one face: 0.1
//! (`wit/`, one `plugin` interface with every hook and a manifest listing
//! the hooks) and 0.2 (`wit/0.2`, one interface per hook, exported only
//! for the hooks the plugin has, capability interfaces linked only when
//! granted). The host calls hooks in its own (0.1) types; a 0.2 component
//! is adapted by `convert_v2`.

use super::bindings;
use super::bindings::exports::mailgate::plugin::plugin::RouteDecision;
use super::bindings::mailgate::plugin::types::{self as wit, Hook};
use super::bindings_v2::exports::mailgate::plugin as x2;
use super::calls::Call;
use super::convert_v2 as cv;
use super::host::message::MessageData;
use super::state::State;
use crate::config::plugin::Capability;
use std::sync::Arc;
use wasmtime::Store;
use wasmtime::component::{Component, InstancePre, Linker, Resource};

/// Which contract a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// `mailgate:plugin@0.1.0`, adapted.
    V0_1,
    /// `mailgate:plugin@0.2.0`.
    V0_2,
}

impl Contract {
    /// The package version, as `plugin list` shows it.
    pub fn version(self) -> &'static str {
        match self {
            Contract::V0_1 => "0.1.0",
            Contract::V0_2 => "0.2.0",
        }
    }
}

/// A 0.2 component's exports, found once at load.
#[derive(Clone)]
pub struct PreV2 {
    pre: InstancePre<State>,
    plugin: x2::plugin::GuestIndices,
    connect: Option<x2::connect_hook::GuestIndices>,
    helo: Option<x2::helo_hook::GuestIndices>,
    mail: Option<x2::mail_hook::GuestIndices>,
    rcpt: Option<x2::rcpt_hook::GuestIndices>,
    data: Option<x2::data_hook::GuestIndices>,
    route: Option<x2::route_hook::GuestIndices>,
    deliver: Option<x2::deliver_hook::GuestIndices>,
    transport: Option<x2::transport_hook::GuestIndices>,
}

/// A linked component, ready to instantiate.
#[derive(Clone)]
pub enum Pre {
    /// Contract 0.1.
    V1(bindings::MailgatePluginPre<State>),
    /// Contract 0.2.
    V2(Box<PreV2>),
}

/// A 0.2 instance's exports.
pub struct V2 {
    plugin: x2::plugin::Guest,
    connect: Option<x2::connect_hook::Guest>,
    helo: Option<x2::helo_hook::Guest>,
    mail: Option<x2::mail_hook::Guest>,
    rcpt: Option<x2::rcpt_hook::Guest>,
    data: Option<x2::data_hook::Guest>,
    route: Option<x2::route_hook::Guest>,
    deliver: Option<x2::deliver_hook::Guest>,
    transport: Option<x2::transport_hook::Guest>,
}

/// An instance's exports, either contract.
pub enum Bindings {
    /// Contract 0.1.
    V1(Box<bindings::MailgatePlugin>),
    /// Contract 0.2.
    V2(Box<V2>),
}

/// The capability a 0.2 import needs (`None`: always linked).
fn capability_of(interface: &str) -> Option<Capability> {
    Some(match interface {
        "clock" => Capability::Clock,
        "random" => Capability::Random,
        "kv" => Capability::Kv,
        "services" => Capability::Services,
        "dns" => Capability::Dns,
        "crypto" => Capability::Crypto,
        "lookup" => Capability::Lookup,
        _ => return None,
    })
}

fn capability_name(c: Capability) -> String {
    format!("{c:?}").to_lowercase()
}

/// The export that says which contract `component` implements.
pub fn contract_of(component: &Component) -> Option<Contract> {
    if component
        .get_export_index(None, "mailgate:plugin/plugin@0.2.0")
        .is_some()
    {
        Some(Contract::V0_2)
    } else if component
        .get_export_index(None, "mailgate:plugin/plugin@0.1.0")
        .is_some()
    {
        Some(Contract::V0_1)
    } else {
        None
    }
}

/// Link a 0.2 component: refused when it imports a capability interface
/// `granted` does not hold.
pub fn link_v2(
    linker: &Linker<State>,
    component: &Component,
    granted: &[Capability],
) -> Result<PreV2, String> {
    let engine = linker.engine();
    for (name, _) in component.component_type().imports(engine) {
        let Some(rest) = name.strip_prefix("mailgate:plugin/") else {
            continue;
        };
        let interface = rest.split('@').next().unwrap_or(rest);
        if let Some(c) = capability_of(interface)
            && !granted.contains(&c)
        {
            return Err(format!(
                "imports {name}, which its capabilities do not grant (add \"{}\")",
                capability_name(c)
            ));
        }
    }
    let pre = linker
        .instantiate_pre(component)
        .map_err(|e| format!("does not fit the mailgate:plugin@0.2.0 contract: {e}"))?;
    let plugin = x2::plugin::GuestIndices::new(&pre)
        .map_err(|e| format!("does not export mailgate:plugin/plugin@0.2.0: {e}"))?;
    Ok(PreV2 {
        plugin,
        connect: x2::connect_hook::GuestIndices::new(&pre).ok(),
        helo: x2::helo_hook::GuestIndices::new(&pre).ok(),
        mail: x2::mail_hook::GuestIndices::new(&pre).ok(),
        rcpt: x2::rcpt_hook::GuestIndices::new(&pre).ok(),
        data: x2::data_hook::GuestIndices::new(&pre).ok(),
        route: x2::route_hook::GuestIndices::new(&pre).ok(),
        deliver: x2::deliver_hook::GuestIndices::new(&pre).ok(),
        transport: x2::transport_hook::GuestIndices::new(&pre).ok(),
        pre,
    })
}

impl Pre {
    /// The contract.
    pub fn contract(&self) -> Contract {
        match self {
            Pre::V1(_) => Contract::V0_1,
            Pre::V2(_) => Contract::V0_2,
        }
    }

    /// A 0.2 component's hooks: the hook interfaces it exports (0.1
    /// components list theirs in the manifest).
    pub fn exported_hooks(&self) -> Option<Vec<Hook>> {
        let Pre::V2(p) = self else { return None };
        let mut hooks = Vec::new();
        for (present, hook) in [
            (p.connect.is_some(), Hook::Connect),
            (p.helo.is_some(), Hook::Helo),
            (p.mail.is_some(), Hook::MailFrom),
            (p.rcpt.is_some(), Hook::RcptTo),
            (p.data.is_some(), Hook::Data),
            (p.route.is_some(), Hook::Route),
            (p.deliver.is_some(), Hook::Deliver),
            (p.transport.is_some(), Hook::Transport),
        ] {
            if present {
                hooks.push(hook);
            }
        }
        Some(hooks)
    }

    /// Instantiate into `store`.
    pub async fn instantiate(&self, store: &mut Store<State>) -> wasmtime::Result<Bindings> {
        match self {
            Pre::V1(p) => Ok(Bindings::V1(Box::new(
                p.instantiate_async(&mut *store).await?,
            ))),
            Pre::V2(p) => {
                let i = p.pre.instantiate_async(&mut *store).await?;
                let s = &mut *store;
                Ok(Bindings::V2(Box::new(V2 {
                    plugin: p.plugin.load(&mut *s, &i)?,
                    connect: p
                        .connect
                        .as_ref()
                        .map(|x| x.load(&mut *s, &i))
                        .transpose()?,
                    helo: p.helo.as_ref().map(|x| x.load(&mut *s, &i)).transpose()?,
                    mail: p.mail.as_ref().map(|x| x.load(&mut *s, &i)).transpose()?,
                    rcpt: p.rcpt.as_ref().map(|x| x.load(&mut *s, &i)).transpose()?,
                    data: p.data.as_ref().map(|x| x.load(&mut *s, &i)).transpose()?,
                    route: p.route.as_ref().map(|x| x.load(&mut *s, &i)).transpose()?,
                    deliver: p
                        .deliver
                        .as_ref()
                        .map(|x| x.load(&mut *s, &i))
                        .transpose()?,
                    transport: p
                        .transport
                        .as_ref()
                        .map(|x| x.load(&mut *s, &i))
                        .transpose()?,
                })))
            }
        }
    }
}

/// What a hook returns when the plugin does not export it.
fn go_on() -> wit::Response {
    wit::Response {
        verdict: wit::Verdict::Continue,
        actions: vec![],
    }
}

/// A plugin's manifest, whichever contract it came in.
pub struct Described {
    /// The version it reports (`plugin list`, the load line).
    pub version: String,
    /// The hooks a 0.1 manifest lists (0.2: none; its exports are its
    /// hooks).
    pub hooks: Option<Vec<Hook>>,
    /// Whether it declares that an instance may serve many transactions
    /// (0.2's `reusable`; a 0.1 plugin cannot say, so false).
    pub reusable: bool,
}

impl Bindings {
    /// The plugin's manifest.
    pub async fn describe(&self, store: &mut Store<State>) -> wasmtime::Result<Described> {
        match self {
            Bindings::V1(b) => {
                let m = b.mailgate_plugin_plugin().call_describe(store).await?;
                Ok(Described {
                    version: m.version,
                    hooks: Some(m.hooks),
                    reusable: false,
                })
            }
            Bindings::V2(b) => {
                let m = b.plugin.call_describe(store).await?;
                Ok(Described {
                    version: m.version,
                    hooks: None,
                    reusable: m.reusable,
                })
            }
        }
    }

    /// `init` with the plugin's config as JSON.
    pub async fn init(
        &self,
        store: &mut Store<State>,
        config: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Bindings::V1(b) => b.mailgate_plugin_plugin().call_init(store, config).await,
            Bindings::V2(b) => b.plugin.call_init(store, config).await,
        }
    }

    /// A stage hook (connect to data, and deliver).
    pub async fn hook(
        &self,
        store: &mut Store<State>,
        ctx: &wit::Context,
        call: &Call<'_>,
    ) -> wasmtime::Result<wit::Response> {
        let message = match call {
            Call::Data(d) | Call::Deliver(_, d) => Some(
                store
                    .data_mut()
                    .table
                    .push(MessageData::new(Arc::clone(d)))?,
            ),
            _ => None,
        };
        let borrowed = || {
            let m = message.as_ref().expect("a message for this hook");
            Resource::<MessageData>::new_borrow(m.rep())
        };
        let r = match self {
            Bindings::V1(b) => {
                let api = b.mailgate_plugin_plugin();
                match call {
                    Call::Connect => api.call_on_connect(&mut *store, ctx).await,
                    Call::Helo => api.call_on_helo(&mut *store, ctx).await,
                    Call::MailFrom => api.call_on_mail_from(&mut *store, ctx).await,
                    Call::RcptTo(r) => api.call_on_rcpt_to(&mut *store, ctx, r).await,
                    Call::Data(_) => api.call_on_data(&mut *store, ctx, borrowed()).await,
                    Call::Deliver(d, _) => {
                        api.call_on_deliver(&mut *store, ctx, d, borrowed()).await
                    }
                }
            }
            Bindings::V2(b) => {
                let c = cv::context(ctx);
                let r = match call {
                    Call::Connect => match &b.connect {
                        Some(h) => Some(h.call_on_connect(&mut *store, &c).await),
                        None => None,
                    },
                    Call::Helo => match &b.helo {
                        Some(h) => Some(h.call_on_helo(&mut *store, &c).await),
                        None => None,
                    },
                    Call::MailFrom => match &b.mail {
                        Some(h) => Some(h.call_on_mail_from(&mut *store, &c).await),
                        None => None,
                    },
                    Call::RcptTo(r) => match &b.rcpt {
                        Some(h) => Some(h.call_on_rcpt_to(&mut *store, &c, r).await),
                        None => None,
                    },
                    Call::Data(_) => match &b.data {
                        Some(h) => Some(h.call_on_data(&mut *store, &c, borrowed()).await),
                        None => None,
                    },
                    Call::Deliver(d, _) => match &b.deliver {
                        Some(h) => Some(
                            h.call_on_deliver(&mut *store, &c, &cv::delivery(d), borrowed())
                                .await,
                        ),
                        None => None,
                    },
                };
                match r {
                    Some(r) => r.map(cv::response),
                    None => Ok(go_on()),
                }
            }
        };
        if let Some(m) = message {
            let _ = store.data_mut().table.delete(m);
        }
        r
    }

    /// The route hook.
    pub async fn route(
        &self,
        store: &mut Store<State>,
        ctx: &wit::Context,
        info: &wit::RouteInfo,
    ) -> wasmtime::Result<RouteDecision> {
        match self {
            Bindings::V1(b) => {
                b.mailgate_plugin_plugin()
                    .call_on_route(store, ctx, info)
                    .await
            }
            Bindings::V2(b) => match &b.route {
                Some(h) => h
                    .call_on_route(store, &cv::context(ctx), &cv::route_info(info))
                    .await
                    .map(cv::route_decision),
                None => Ok(RouteDecision {
                    recipient: info.recipient.clone(),
                    sender: None,
                    transport: false,
                }),
            },
        }
    }

    /// The transport hook.
    pub async fn transport(
        &self,
        store: &mut Store<State>,
        ctx: &wit::Context,
        d: &wit::Delivery,
        data: Arc<Vec<u8>>,
    ) -> wasmtime::Result<wit::TransportResult> {
        let m = store.data_mut().table.push(MessageData::new(data))?;
        let borrowed = Resource::<MessageData>::new_borrow(m.rep());
        let r = match self {
            Bindings::V1(b) => {
                b.mailgate_plugin_plugin()
                    .call_on_transport(&mut *store, ctx, d, borrowed)
                    .await
            }
            Bindings::V2(b) => match &b.transport {
                Some(h) => h
                    .call_on_transport(&mut *store, &cv::context(ctx), &cv::delivery(d), borrowed)
                    .await
                    .map(cv::transport_result),
                None => Ok(wit::TransportResult::Deferred(
                    "this plugin has no transport".into(),
                )),
            },
        };
        let _ = store.data_mut().table.delete(m);
        r
    }
}
