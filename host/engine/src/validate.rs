//! Checks that turn a bad component into a clear [`Error`] before anything runs.

use std::borrow::Cow;

use wasmtime::component::Component;

use crate::{Error, GuestKind};

/// The interface a guest exports: the current contract's, or the previous one's (still run
/// unchanged).
pub(crate) const GUEST_EXPORTS: [&str; 2] =
    ["edge:handler/guest@0.2.0", "edge:handler/guest@0.1.0"];

const WASM_MAGIC: &[u8] = b"\0asm";
const CORE_VERSION: [u8; 4] = [0x01, 0x00, 0x00, 0x00];
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];

/// The binary form of a component or module given as binary or text; checks the magic bytes
/// and the version/layer field.
pub(crate) fn binary(bytes: &[u8]) -> Result<Cow<'_, [u8]>, Error> {
    let bytes = if bytes.starts_with(WASM_MAGIC) {
        Cow::Borrowed(bytes)
    } else if looks_like_text(bytes) {
        // Text format, handy for tests and experiments.
        Cow::Owned(
            wat::parse_bytes(bytes)
                .map_err(|e| Error::Invalid(e.to_string()))?
                .into_owned(),
        )
    } else {
        let start: Vec<u8> = bytes.iter().take(8).copied().collect();
        return Err(Error::NotWasm(format!(
            "it starts with {start:02x?} instead of the magic bytes 00 61 73 6d (\"\\0asm\")"
        )));
    };
    match bytes.get(4..8) {
        Some(v) if v == CORE_VERSION || v == COMPONENT_VERSION => Ok(bytes),
        Some(v) => Err(Error::Invalid(format!(
            "unknown binary version/layer {v:02x?} (expected a component, 0d 00 01 00, or a \
             core module, 01 00 00 00)"
        ))),
        None => Err(Error::Invalid("truncated header".into())),
    }
}

/// Check the binary's header and compile it as a component (for `edge:handler` guests, which
/// must be components).
pub(crate) fn compile(engine: &wasmtime::Engine, bytes: &[u8]) -> Result<Component, Error> {
    let bytes = binary(bytes)?;
    if bytes.get(4..8) == Some(&CORE_VERSION[..]) {
        return Err(Error::CoreModule);
    }
    compile_component(engine, &bytes)
}

/// Compile a component's binary.
pub(crate) fn compile_component(
    engine: &wasmtime::Engine,
    bytes: &[u8],
) -> Result<Component, Error> {
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
    if names.iter().any(|n| GUEST_EXPORTS.contains(&n.as_str())) {
        return Ok(());
    }
    let found = if names.is_empty() {
        "it exports nothing".to_owned()
    } else {
        format!("it exports {}", quoted_list(&names))
    };
    Err(Error::WrongWorld(format!(
        "it does not export `{}` (or `{}`) ({found})",
        GUEST_EXPORTS[0], GUEST_EXPORTS[1]
    )))
}

/// Every import must be one the host provides to this kind of guest.
pub(crate) fn check_imports(
    engine: &wasmtime::Engine,
    component: &Component,
    kind: GuestKind,
) -> Result<(), Error> {
    let ty = component.component_type();
    for (name, _) in ty.imports(engine) {
        let wasi_02 = name.starts_with("wasi:") && name.contains("@0.2.");
        let provided = match kind {
            GuestKind::Edge => {
                name.starts_with("edge:handler/")
                    && (name.ends_with("@0.1.0") || name.ends_with("@0.2.0"))
                    || wasi_02 && !name.starts_with("wasi:http/")
            }
            GuestKind::HttpP2 | GuestKind::Cgi => wasi_02,
            GuestKind::HttpP3 => {
                wasi_02
                    || name.contains("@0.3.")
                        && ["wasi:http/", "wasi:clocks/", "wasi:random/", "wasi:cli/"]
                            .iter()
                            .any(|p| name.starts_with(p))
            }
            GuestKind::Bare => false,
        };
        if !provided {
            return Err(Error::UnsupportedImport {
                name: name.to_owned(),
                provides: provides(kind),
            });
        }
    }
    Ok(())
}

/// What the host links for a kind of guest, in words.
fn provides(kind: GuestKind) -> &'static str {
    match kind {
        GuestKind::Edge => {
            "edge:handler/{log,clocks,random,config,outbound}@0.2 (and @0.1 without outbound) \
             and WASI 0.2 with no files, environment or network"
        }
        GuestKind::HttpP2 => {
            "WASI 0.2 (wasi:http@0.2, outbound requests as the deployment's allowed_outbound_hosts allows; no files or sockets)"
        }
        GuestKind::HttpP3 => {
            "WASI 0.2 and 0.3 (wasi:http, clocks, random and cli of 0.3; outbound requests as the deployment's allowed_outbound_hosts allows; no files or sockets)"
        }
        GuestKind::Cgi => "WASI 0.2 with stdin, stdout, arguments and environment, no files",
        GuestKind::Bare => "platform.now",
    }
}

fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
