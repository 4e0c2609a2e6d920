//! Can an instance of this component be reset in place, and what does a reset restore?
//!
//! A reset puts the memory back to a snapshot taken right after instantiation. That brings
//! back everything a guest keeps in memory (its heap, its statics, its stack), but not what a
//! core module keeps outside memory: mutable globals, tables, dropped segments.
//!
//! - A component whose core modules keep no such state, except one mutable `i32` global each
//!   (the stack pointer that LLVM-built code keeps and that every completed call restores), is
//!   reset by restoring its memory alone.
//! - A component with other mutable globals (the WASI preview 1 adapter's, a stack pointer
//!   that libraries import from the main module) is rewritten at deploy so that its globals
//!   can be saved and put back too ([`crate::globals`]).
//! - A `table.set`, a `data.drop` or the like, or a component that cannot be rewritten, and the
//!   component is served from fresh instances.

use std::borrow::Cow;

use wasmparser::{Encoding, Operator, Parser, Payload, TypeRef, ValType};

use crate::globals::{add_global_resets, reserved_export};

/// Why instances of a deployment cannot be reset in place, and are served fresh instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotResettable {
    /// A core module imports a mutable global, which lives outside its memory.
    #[error("core module {module} imports the mutable global `{import_module}::{name}`")]
    ImportsMutableGlobal {
        /// The core module, counting from 1 in the order of the binary.
        module: usize,
        /// The import's module name.
        import_module: String,
        /// The import's name.
        name: String,
    },
    /// A core module has a mutable global besides its `i32` stack pointer.
    #[error("core module {module} keeps state in mutable globals besides its stack pointer")]
    MutableGlobals {
        /// The core module, counting from 1.
        module: usize,
    },
    /// A core module's code changes a table or drops a segment.
    #[error("core module {module} changes state outside its memory (`{instruction}`)")]
    StateOutsideMemory {
        /// The core module, counting from 1.
        module: usize,
        /// The instruction, for example `table.set`.
        instruction: &'static str,
    },
    /// Its mutable globals need save and reset functions, and the component cannot have them.
    #[error("its mutable globals cannot be given save and reset functions: {0}")]
    Globals(String),
    /// The component could not be parsed.
    #[error("the component cannot be parsed: {0}")]
    Unparsable(String),
    /// A reason found by an earlier check and kept in the control plane's database (read back
    /// at restart instead of parsing every stored component again).
    #[error("{0}")]
    Recorded(String),
    /// The deployment is an artifact: there is no component to check.
    #[error("served from a precompiled artifact, whose component cannot be checked")]
    Precompiled,
    /// The deployment is a handler built into the host.
    #[error("a built-in native handler, not a component")]
    Builtin,
    /// An instance has other than one linear memory.
    #[error("the instance has {0} linear memories; a reset handles exactly one")]
    MemoryCount(usize),
    /// The kernel cannot list the pages a request wrote (`PAGEMAP_SCAN` needs Linux 6.7).
    #[error("this kernel has no PAGEMAP_SCAN for resets")]
    NoPagemapScan,
}

impl NotResettable {
    fn unparsable(error: impl std::fmt::Display) -> Self {
        Self::Unparsable(error.to_string())
    }
}

/// Why a component cannot be reset in place (`Ok` when it can, after the rewrite that
/// [`with_global_resets`] makes where its mutable globals need one).
pub fn check_resettable(bytes: &[u8]) -> Result<(), NotResettable> {
    let bytes = crate::validate::binary(bytes).map_err(NotResettable::unparsable)?;
    // A core module that carries its WIT world is compiled as the component made of it (with
    // the preview 1 adapter and its globals): that is what is reset.
    let bytes = crate::kind::lift_world_module(bytes).map_err(NotResettable::unparsable)?;
    match plan(&bytes)? {
        Plan::Memory => Ok(()),
        Plan::Globals => add_global_resets(&bytes)
            .map(drop)
            .map_err(NotResettable::Globals),
    }
}

/// The component to compile: given save and reset functions for its mutable globals when a
/// reset needs them (see [`crate::globals`]), else as it is. A component of its own exporting
/// a name the rewrite reserves is refused: the host would take its exports for the rewrite's.
pub(crate) fn with_global_resets(bytes: &[u8]) -> Result<Cow<'_, [u8]>, crate::Error> {
    if let Some(name) = reserved_export(bytes).unwrap_or(None) {
        return Err(crate::Error::Invalid(format!(
            "the component exports `{name}`: names starting with `{}` or `{}` are percore's",
            crate::globals::SAVE,
            crate::globals::RESET
        )));
    }
    Ok(match plan(bytes) {
        Ok(Plan::Globals) => match add_global_resets(bytes) {
            Ok(rewritten) => Cow::Owned(rewritten),
            Err(why) => {
                tracing::debug!("no global resets: {why}");
                Cow::Borrowed(bytes)
            }
        },
        _ => Cow::Borrowed(bytes),
    })
}

/// What a reset of a component's instances restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Linear memory alone: no core module keeps state outside it but a stack pointer.
    Memory,
    /// Memory, then the mutable globals, through the functions the rewrite adds.
    Globals,
}

fn plan(bytes: &[u8]) -> Result<Plan, NotResettable> {
    let mut component = false;
    let mut module = 0usize;
    let mut in_module = false;
    let mut mutable_globals = 0usize;
    // The first module that keeps state in globals (then only a rewrite makes it resettable).
    let mut globals = None;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(NotResettable::unparsable)?;
        match payload {
            Payload::Version {
                encoding: Encoding::Component,
                ..
            } => component = true,
            Payload::Version {
                encoding: Encoding::Module,
                ..
            } => {
                module += 1;
                in_module = true;
                mutable_globals = 0;
            }
            Payload::End(_) => in_module = false,
            Payload::ImportSection(reader) if in_module => {
                for import in reader.into_imports() {
                    let import = import.map_err(NotResettable::unparsable)?;
                    if let TypeRef::Global(g) = import.ty
                        && g.mutable
                    {
                        globals.get_or_insert(NotResettable::ImportsMutableGlobal {
                            module,
                            import_module: import.module.to_owned(),
                            name: import.name.to_owned(),
                        });
                    }
                }
            }
            Payload::GlobalSection(reader) if in_module => {
                for global in reader {
                    let global = global.map_err(NotResettable::unparsable)?;
                    if !global.ty.mutable {
                        continue;
                    }
                    mutable_globals += 1;
                    if mutable_globals > 1 || global.ty.content_type != ValType::I32 {
                        globals.get_or_insert(NotResettable::MutableGlobals { module });
                    }
                }
            }
            Payload::CodeSectionEntry(body) if in_module => {
                let mut ops = body
                    .get_operators_reader()
                    .map_err(NotResettable::unparsable)?;
                while !ops.eof() {
                    let instruction = match ops.read().map_err(NotResettable::unparsable)? {
                        Operator::TableSet { .. } => "table.set",
                        Operator::TableGrow { .. } => "table.grow",
                        Operator::TableFill { .. } => "table.fill",
                        Operator::TableCopy { .. } => "table.copy",
                        Operator::TableInit { .. } => "table.init",
                        Operator::ElemDrop { .. } => "elem.drop",
                        Operator::DataDrop { .. } => "data.drop",
                        _ => continue,
                    };
                    return Err(NotResettable::StateOutsideMemory {
                        module,
                        instruction,
                    });
                }
            }
            _ => {}
        }
    }
    match globals {
        None => Ok(Plan::Memory),
        Some(_) if component => Ok(Plan::Globals),
        Some(why) => Err(why),
    }
}

#[cfg(test)]
mod tests {
    use super::{NotResettable, check_resettable};

    fn component(module: &str) -> String {
        format!("(component (core module {module}))")
    }

    #[test]
    fn a_stack_pointer_alone_is_fine() {
        let c = component(
            r#"(memory 1) (global $sp (mut i32) (i32.const 1024))
               (func (global.set $sp (i32.sub (global.get $sp) (i32.const 16))))"#,
        );
        assert_eq!(check_resettable(c.as_bytes()), Ok(()));
    }

    #[test]
    fn globals_are_given_a_reset_in_a_component_and_named_in_a_module() {
        // In a component, globals besides a stack pointer are reset through the rewrite.
        let two = r#"(component
            (core module $m (global (mut i32) (i32.const 0)) (global (mut i64) (i64.const 7))
                (func (export "f")))
            (core instance (instantiate $m)))"#;
        assert_eq!(check_resettable(two.as_bytes()), Ok(()));
        let imported = r#"(component
            (core module $a (global (export "sp") (mut i32) (i32.const 0)) (func (export "f")))
            (core module $b (import "a" "sp" (global (mut i32))))
            (core instance $a (instantiate $a))
            (core instance (instantiate $b (with "a" (instance $a)))))"#;
        assert_eq!(check_resettable(imported.as_bytes()), Ok(()));
        // A bare core module has no component to carry the functions.
        let module = "(module (global (mut i32) (i32.const 0)) (global (mut i32) (i32.const 0)))";
        let why = check_resettable(module.as_bytes()).unwrap_err();
        assert_eq!(why, NotResettable::MutableGlobals { module: 1 });
        assert!(why.to_string().contains("mutable globals"), "{why}");
        let module = r#"(module (import "env" "g" (global (mut i32))))"#;
        assert_eq!(
            check_resettable(module.as_bytes()).unwrap_err().to_string(),
            "core module 1 imports the mutable global `env::g`"
        );
        // A module with globals that is never instantiated leaves nothing to reset, and a
        // nested component is out of the rewrite's reach.
        let unused = component("(global (mut i32) (i32.const 0)) (global (mut i32) (i32.const 0))");
        let why = check_resettable(unused.as_bytes()).unwrap_err();
        assert!(matches!(why, NotResettable::Globals(_)), "{why}");
        let nested = format!("(component {two})");
        let why = check_resettable(nested.as_bytes()).unwrap_err();
        assert!(
            why.to_string()
                .contains("nests a component that instantiates"),
            "{why}"
        );
    }

    #[test]
    fn state_outside_memory_is_named() {
        let table =
            component("(table 1 funcref) (func (table.set 0 (i32.const 0) (ref.null func)))");
        let why = check_resettable(table.as_bytes()).unwrap_err();
        assert_eq!(
            why,
            NotResettable::StateOutsideMemory {
                module: 1,
                instruction: "table.set"
            }
        );
        assert!(why.to_string().contains("table.set"), "{why}");
    }

    #[test]
    fn text_that_does_not_parse_is_named() {
        assert!(matches!(
            check_resettable(b"(component"),
            Err(NotResettable::Unparsable(_))
        ));
    }
}
