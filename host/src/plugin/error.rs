//! The plugin runtime's errors, as the rest of the gateway sees them.

/// Why plugins could not be set up, loaded or run offline. Failures of a
/// single hook call are not errors: they get the plugin's failure policy.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The wasmtime engine or its linker could not be built.
    #[error("wasm runtime: {0}")]
    Engine(String),
    /// A configured plugin cannot be loaded: unreadable, not a component,
    /// not our contract, or its init refused its config.
    #[error("plugin {plugin}: {reason}")]
    Load {
        /// The plugin's name.
        plugin: String,
        /// Why.
        reason: String,
    },
    /// `plugin test` could not set up its scratch state.
    #[error("{0}")]
    Offline(String),
}
