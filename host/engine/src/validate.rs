//! Checks that turn a bad component into a clear [`Error`] before anything runs.

use wasmtime::component::Component;

use crate::Error;

/// The interface a guest must export.
pub(crate) const GUEST_EXPORT: &str = "edge:handler/guest@0.1.0";

const WASM_MAGIC: &[u8] = b"\0asm";
const CORE_VERSION: [u8; 4] = [0x01, 0x00, 0x00, 0x00];
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];

/// Check the binary's header and compile it.
pub(crate) fn compile(engine: &wasmtime::Engine, bytes: &[u8]) -> Result<Component, Error> {
    let binary;
    let bytes = if bytes.starts_with(WASM_MAGIC) {
        bytes
    } else if looks_like_text(bytes) {
        // Component text format, handy for tests and experiments.
        binary = wat::parse_bytes(bytes).map_err(|e| Error::Invalid(e.to_string()))?;
        &binary[..]
    } else {
        let start: Vec<u8> = bytes.iter().take(8).copied().collect();
        return Err(Error::NotWasm(format!(
            "it starts with {start:02x?} instead of the magic bytes 00 61 73 6d (\"\\0asm\")"
        )));
    };
    match bytes.get(4..8) {
        Some(v) if v == CORE_VERSION => return Err(Error::CoreModule),
        Some(v) if v == COMPONENT_VERSION => {}
        Some(v) => {
            return Err(Error::Invalid(format!(
                "unknown binary version/layer {v:02x?} (expected a component: 0d 00 01 00)"
            )));
        }
        None => return Err(Error::Invalid("truncated header".into())),
    }
    Component::new(engine, bytes).map_err(|e| Error::Invalid(format!("{e:#}")))
}

fn looks_like_text(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|s| {
        let s = s.trim_start();
        s.starts_with('(') || s.starts_with(";;") || s.starts_with("(;")
    })
}

/// The component must export `edge:handler/guest` at a compatible version.
pub(crate) fn check_exports(engine: &wasmtime::Engine, component: &Component) -> Result<(), Error> {
    let ty = component.component_type();
    let names: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
    if names.iter().any(|n| n == GUEST_EXPORT) {
        return Ok(());
    }
    let found = if names.is_empty() {
        "it exports nothing".to_owned()
    } else {
        format!("it exports {}", quoted_list(&names))
    };
    Err(Error::WrongWorld(format!(
        "it does not export `{GUEST_EXPORT}` ({found})"
    )))
}

/// Every import must be one the host provides: `edge:handler` capabilities or WASI 0.2.
pub(crate) fn check_imports(engine: &wasmtime::Engine, component: &Component) -> Result<(), Error> {
    let ty = component.component_type();
    for (name, _) in ty.imports(engine) {
        let provided = name.starts_with("edge:handler/") && name.ends_with("@0.1.0")
            || name.starts_with("wasi:") && name.contains("@0.2.");
        if !provided {
            return Err(Error::UnsupportedImport {
                name: name.to_owned(),
            });
        }
    }
    Ok(())
}

fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
