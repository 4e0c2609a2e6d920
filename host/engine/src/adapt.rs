//! Preview 1 command modules (`cargo build --target wasm32-wasip1` of a `fn main`, a C or Go
//! `main`) become components at deploy, through the WASI preview 1 command adapter that ships
//! with this wasmtime release.

use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
};

use crate::Error;

/// The component of a preview 1 command module: it exports `wasi:cli/run@0.2.x` and imports
/// WASI 0.2.
pub(crate) fn command_component(module: &[u8]) -> Result<Vec<u8>, Error> {
    let adapt = |e: anyhow::Error| {
        Error::Invalid(format!(
            "cannot turn this WASI preview 1 command module into a component: {e:#}"
        ))
    };
    wit_component::ComponentEncoder::default()
        .module(module)
        .map_err(adapt)?
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
        )
        .map_err(adapt)?
        .validate(true)
        .encode()
        .map_err(adapt)
}
