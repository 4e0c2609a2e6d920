//! The kinds of guest percore runs, and how a binary says which it is: by what it exports
//! (and, for a core module, what it imports), never by a flag the user has to remember.

use std::borrow::Cow;

use wasmparser::{Parser, Payload};

use crate::Error;

/// What kind of guest a binary is, which decides how a request reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuestKind {
    /// A component exporting `edge:handler/guest@0.2.x` (or `@0.1.x`): percore's own contract.
    Edge,
    /// A component exporting `wasi:http/incoming-handler@0.2.x` (the `wasi:http/proxy` world
    /// that `wasmtime serve`, Spin 2-3 and wasmCloud run).
    HttpP2,
    /// A component exporting `wasi:http/handler@0.3.x` (WASIp3, what Spin 4 builds).
    HttpP3,
    /// A WASI command (a component exporting `wasi:cli/run@0.2.x`, or a preview 1 core module
    /// with `_start`), run CGI style: body on stdin, response on stdout.
    Cgi,
    /// A core module with no imports, or only the `platform` set, whose exported functions are
    /// called with integer arguments.
    Bare,
}

impl GuestKind {
    /// Every kind, in the order detection tries them.
    pub const ALL: [GuestKind; 5] = [
        GuestKind::Edge,
        GuestKind::HttpP3,
        GuestKind::HttpP2,
        GuestKind::Cgi,
        GuestKind::Bare,
    ];

    /// The name used in configuration files, the admin API and `percore ls`.
    pub fn as_str(self) -> &'static str {
        match self {
            GuestKind::Edge => "edge",
            GuestKind::HttpP2 => "wasi-http@0.2",
            GuestKind::HttpP3 => "wasi-http@0.3",
            GuestKind::Cgi => "cgi",
            GuestKind::Bare => "bare",
        }
    }

    /// What a binary must have to be of this kind (for error messages).
    pub fn needs(self) -> &'static str {
        match self {
            GuestKind::Edge => "a component exporting `edge:handler/guest@0.2.0` (or `@0.1.0`)",
            GuestKind::HttpP2 => "a component exporting `wasi:http/incoming-handler@0.2.x`",
            GuestKind::HttpP3 => "a component exporting `wasi:http/handler@0.3.x`",
            GuestKind::Cgi => {
                "a component exporting `wasi:cli/run@0.2.x`, or a core module exporting \
                 `_start` that imports only `wasi_snapshot_preview1`"
            }
            GuestKind::Bare => {
                "a core module exporting functions, importing nothing or only `platform.now`"
            }
        }
    }
}

impl std::fmt::Display for GuestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is none of the kinds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown kind of guest `{0}` (expected edge, wasi-http, wasi-http@0.2, wasi-http@0.3, cgi or bare)"
)]
pub struct UnknownKind(pub String);

impl std::str::FromStr for GuestKind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, UnknownKind> {
        match s {
            "edge" | "edge:handler" => Ok(Self::Edge),
            "wasi-http" | "wasi-http@0.2" | "wasi:http" => Ok(Self::HttpP2),
            "wasi-http@0.3" => Ok(Self::HttpP3),
            "cgi" | "command" => Ok(Self::Cgi),
            "bare" => Ok(Self::Bare),
            _ => Err(UnknownKind(s.to_owned())),
        }
    }
}

/// The `platform` import set a bare module may use (documented in `docs/GUESTS.md`).
pub(crate) const PLATFORM_MODULE: &str = "platform";
/// The functions of the `platform` import set.
pub(crate) const PLATFORM_FUNCTIONS: [&str; 1] = ["now"];
/// The module a preview 1 command imports from.
pub(crate) const PREVIEW1: &str = "wasi_snapshot_preview1";

/// A binary whose kind is known, ready to compile: a core module that carries its WIT world
/// has been made into a component.
#[derive(Debug)]
pub struct Detected<'a> {
    /// The kind.
    pub kind: GuestKind,
    /// What to compile: the input, or the component made from a core module and its world.
    pub bytes: Cow<'a, [u8]>,
    /// Whether `bytes` is a core module (a bare module or a preview 1 command).
    pub core_module: bool,
}

/// What the top level of a binary shows.
#[derive(Debug, Default)]
struct Shape {
    component: bool,
    /// A core module with a `component-type` custom section: the WIT world it was built for.
    world: bool,
    exports: Vec<String>,
    imports: Vec<(String, String)>,
}

fn shape(bytes: &[u8]) -> Result<Shape, Error> {
    let mut shape = Shape::default();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| Error::Invalid(e.to_string()))?;
        match payload {
            Payload::Version { encoding, .. } => {
                depth += 1;
                if depth == 1 {
                    shape.component = encoding == wasmparser::Encoding::Component;
                }
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::CustomSection(section)
                if depth == 1 && crate::adapt::is_world_section(section.name()) =>
            {
                shape.world = true;
            }
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    let export = export.map_err(|e| Error::Invalid(e.to_string()))?;
                    shape.exports.push(export.name.name.to_owned());
                }
            }
            Payload::ExportSection(reader) if depth == 1 => {
                for export in reader {
                    let export = export.map_err(|e| Error::Invalid(e.to_string()))?;
                    shape.exports.push(export.name.to_owned());
                }
            }
            Payload::ImportSection(reader) if depth == 1 => {
                for import in reader.into_imports() {
                    let import = import.map_err(|e| Error::Invalid(e.to_string()))?;
                    shape
                        .imports
                        .push((import.module.to_owned(), import.name.to_owned()));
                }
            }
            _ => {}
        }
    }
    Ok(shape)
}

/// Whether an interface export name is `package/interface@version` at a version starting with
/// `major_minor` (`0.2.` matches every 0.2.x).
fn exports_interface(exports: &[String], interface: &str, version_prefix: &str) -> bool {
    exports.iter().any(|name| {
        name.split_once('@')
            .is_some_and(|(n, v)| n == interface && v.starts_with(version_prefix))
    })
}

/// The kind of a component from its export names.
pub(crate) fn component_kind(exports: &[String]) -> Option<GuestKind> {
    if exports_interface(exports, "edge:handler/guest", "0.1.")
        || exports_interface(exports, "edge:handler/guest", "0.2.")
    {
        Some(GuestKind::Edge)
    } else if exports_interface(exports, "wasi:http/handler", "0.3.") {
        Some(GuestKind::HttpP3)
    } else if exports_interface(exports, "wasi:http/incoming-handler", "0.2.") {
        Some(GuestKind::HttpP2)
    } else if exports_interface(exports, "wasi:cli/run", "0.2.") {
        Some(GuestKind::Cgi)
    } else {
        None
    }
}

/// How a binary of a known kind is compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Component,
    /// A bare module, or a preview 1 command module (run against wasmtime's preview 1).
    CoreModule,
}

/// The kind of a binary (a component or core module, binary or text format), without
/// compiling or adapting anything.
pub fn kind_of(bytes: &[u8]) -> Result<GuestKind, Error> {
    let bytes = lift_world_module(crate::validate::binary(bytes)?)?;
    classify(&bytes).map(|(kind, _)| kind)
}

/// A core module carrying its WIT world (`wit-bindgen c`'s `component-type` section) made into
/// the component it describes; anything else as it is.
pub(crate) fn lift_world_module(bytes: Cow<'_, [u8]>) -> Result<Cow<'_, [u8]>, Error> {
    let shape = shape(&bytes)?;
    if shape.component || !shape.world {
        return Ok(bytes);
    }
    let preview1 = shape.imports.iter().any(|(m, _)| m == PREVIEW1);
    crate::adapt::world_component(&bytes, preview1).map(Cow::Owned)
}

/// Tell the kind of a binary (a component or core module, binary or text format), making a
/// core module that carries its WIT world into a component on the way.
pub fn detect(bytes: &[u8]) -> Result<Detected<'_>, Error> {
    let bytes = lift_world_module(crate::validate::binary(bytes)?)?;
    let (kind, form) = classify(&bytes)?;
    Ok(match form {
        Form::Component => Detected {
            kind,
            bytes,
            core_module: false,
        },
        Form::CoreModule => Detected {
            kind,
            bytes,
            core_module: true,
        },
    })
}

fn classify(bytes: &[u8]) -> Result<(GuestKind, Form), Error> {
    let shape = shape(bytes)?;
    if shape.component {
        return match component_kind(&shape.exports) {
            Some(kind) => Ok((kind, Form::Component)),
            None => Err(Error::UnknownKind(describe_component(&shape))),
        };
    }
    let wasi = shape.imports.iter().any(|(m, _)| m == PREVIEW1);
    let starts = shape.exports.iter().any(|e| e == "_start");
    if wasi && starts {
        if let Some((m, n)) = shape.imports.iter().find(|(m, _)| m != PREVIEW1) {
            return Err(Error::UnknownKind(format!(
                "a core module exporting `_start` (a WASI command) that also imports `{m}.{n}`, \
                 which percore does not provide to a command"
            )));
        }
        return Ok((GuestKind::Cgi, Form::CoreModule));
    }
    let foreign = shape
        .imports
        .iter()
        .find(|(m, n)| !(m == PLATFORM_MODULE && PLATFORM_FUNCTIONS.contains(&n.as_str())));
    match foreign {
        None if !shape.exports.is_empty() => Ok((GuestKind::Bare, Form::CoreModule)),
        None => Err(Error::UnknownKind(
            "a core module that exports nothing".to_owned(),
        )),
        Some((m, n)) if m == PREVIEW1 => Err(Error::UnknownKind(format!(
            "a core module importing WASI preview 1 (`{m}.{n}`) without a `_start` export: a \
             WASI reactor; build it as a command (a `main` function), or as a component"
        ))),
        Some((m, n)) => Err(Error::UnknownKind(format!(
            "a core module importing `{m}.{n}`, which percore does not provide"
        ))),
    }
}

fn describe_component(shape: &Shape) -> String {
    if shape.exports.is_empty() {
        "a component that exports nothing".to_owned()
    } else {
        let names: Vec<String> = shape.exports.iter().map(|n| format!("`{n}`")).collect();
        format!("a component exporting {}", names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> Result<GuestKind, Error> {
        detect(text.as_bytes()).map(|d| d.kind)
    }

    #[test]
    fn core_modules_by_imports_and_exports() {
        let sum = r#"(module (func (export "sum") (param i32 i32) (result i32)
            local.get 0 local.get 1 i32.add))"#;
        assert_eq!(kind(sum).unwrap(), GuestKind::Bare);
        let now = r#"(module (import "platform" "now" (func (result f64)))
            (func (export "f") (result i32) i32.const 1))"#;
        assert_eq!(kind(now).unwrap(), GuestKind::Bare);
        let other = r#"(module (import "env" "x" (func)) (func (export "f")))"#;
        let e = kind(other).unwrap_err().to_string();
        assert!(e.contains("`env.x`"), "{e}");
        assert!(e.contains("wasi:http/incoming-handler"), "{e}");
        let nothing = "(module)";
        assert!(
            kind(nothing)
                .unwrap_err()
                .to_string()
                .contains("exports nothing")
        );
        let reactor = r#"(module (import "wasi_snapshot_preview1" "fd_write"
            (func (param i32 i32 i32 i32) (result i32))) (memory (export "memory") 1)
            (func (export "f")))"#;
        assert!(kind(reactor).unwrap_err().to_string().contains("reactor"));
    }

    #[test]
    fn components_by_their_exports() {
        let none = "(component)";
        let e = kind(none).unwrap_err().to_string();
        assert!(e.contains("exports nothing"), "{e}");
        assert!(
            component_kind(&["wasi:http/incoming-handler@0.2.6".into()]) == Some(GuestKind::HttpP2)
        );
        assert!(component_kind(&["wasi:http/handler@0.3.0".into()]) == Some(GuestKind::HttpP3));
        assert!(component_kind(&["wasi:cli/run@0.2.0".into()]) == Some(GuestKind::Cgi));
        assert!(component_kind(&["edge:handler/guest@0.1.0".into()]) == Some(GuestKind::Edge));
        assert!(component_kind(&["wasi:cli/run@0.3.0".into()]).is_none());
        assert!(component_kind(&["edge:handler/guest@0.2.0".into()]) == Some(GuestKind::Edge));
        assert!(component_kind(&["edge:handler/guest@0.3.0".into()]).is_none());
    }

    #[test]
    fn names_round_trip() {
        for kind in GuestKind::ALL {
            assert_eq!(kind.as_str().parse::<GuestKind>().unwrap(), kind);
        }
        assert!("lambda".parse::<GuestKind>().is_err());
    }
}
