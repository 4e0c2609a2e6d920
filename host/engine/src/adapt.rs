//! Core modules built against a WIT world (a C guest compiled with clang and `wit-bindgen c`,
//! which embeds the world in a `component-type` custom section) become components at deploy,
//! as `wasm-tools component new` makes them: the world's imports and exports are lifted, and a
//! module importing WASI preview 1 (a wasi-libc program) gets the preview 1 reactor adapter
//! that ships with this wasmtime release.

use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};

use crate::Error;

/// Whether a custom section of this name holds a WIT world for `wit-component`.
pub(crate) fn is_world_section(name: &str) -> bool {
    name.starts_with("component-type")
}

/// The component of a core module that carries its WIT world.
pub(crate) fn world_component(module: &[u8], imports_preview1: bool) -> Result<Vec<u8>, Error> {
    let adapt = |e: anyhow::Error| {
        Error::Invalid(format!(
            "cannot turn this core module and the WIT world it carries into a component: {e:#}"
        ))
    };
    let mut encoder = wit_component::ComponentEncoder::default()
        .module(module)
        .map_err(adapt)?;
    if imports_preview1 {
        encoder = encoder
            .adapter(
                WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
                WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
            )
            .map_err(adapt)?;
    }
    encoder.validate(true).encode().map_err(adapt)
}
