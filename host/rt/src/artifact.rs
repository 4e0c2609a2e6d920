//! Mapping ahead-of-time compiled components back from disk.

use std::path::Path;

use wasmtime::component::Component;

/// Map a component artifact that [`wasmtime::Engine::precompile_component`] wrote.
///
/// Wasmtime checks that the file is a wasmtime artifact compiled for a compatible engine
/// configuration and rejects it otherwise; it cannot check that the machine code inside is
/// what the compiler produced. Artifacts are therefore trusted input: percore only maps
/// artifacts it compiled itself into storage the operator owns, or ones the operator names
/// on the command line.
pub fn load_component(engine: &wasmtime::Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: `deserialize_file` requires a file produced by `precompile_component` (or
    // `Component::serialize`) that is not modified while mapped. Per this function's contract
    // the caller passes only artifacts percore compiled or the operator vouches for; wasmtime
    // validates the header and engine compatibility; the file is mapped privately, so a later
    // write to the path by another process does not change the mapping's pages already read
    // (the residual risk is the same as for any executable on disk).
    unsafe { Component::deserialize_file(engine, path) }
}

/// Map a core module artifact that [`wasmtime::Engine::precompile_module`] (or
/// `Module::serialize`) wrote. The same trust rule as [`load_component`] applies.
pub fn load_module(engine: &wasmtime::Engine, path: &Path) -> wasmtime::Result<wasmtime::Module> {
    // SAFETY: as in `load_component`: `deserialize_file` requires an artifact produced by
    // wasmtime for a compatible engine and not modified while mapped; the caller passes only
    // artifacts percore compiled into storage the operator owns, or ones the operator names.
    unsafe { wasmtime::Module::deserialize_file(engine, path) }
}
