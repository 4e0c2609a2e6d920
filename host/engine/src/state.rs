//! Can an instance of this component be reset by restoring its linear memory alone?
//!
//! A reset puts the memory back to a snapshot taken right after instantiation. That brings
//! back everything a guest keeps in memory (its heap, its statics, its stack), but not what a
//! core module keeps outside memory: mutable globals, tables, dropped segments. So a component
//! qualifies only if each of its core modules keeps no such state, except for one mutable `i32`
//! global: the stack pointer that LLVM-built code keeps in global 0 and that every completed
//! call restores. Anything else (a second mutable global, as in the WASI preview1 adapter, a
//! `table.set`, a `data.drop`) and the component is served from fresh instances.

use wasmparser::{Encoding, Operator, Parser, Payload, TypeRef, ValType};

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

/// Why a component cannot be reset in place (`Ok` when it can).
pub fn check_resettable(bytes: &[u8]) -> Result<(), NotResettable> {
    let binary;
    let bytes = if bytes.starts_with(b"\0asm") {
        bytes
    } else {
        binary = wat::parse_bytes(bytes).map_err(NotResettable::unparsable)?;
        &binary[..]
    };
    let mut module = 0usize;
    let mut in_module = false;
    let mut mutable_globals = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(NotResettable::unparsable)?;
        match payload {
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
                        return Err(NotResettable::ImportsMutableGlobal {
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
                        return Err(NotResettable::MutableGlobals { module });
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
    Ok(())
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
    fn state_outside_memory_is_named() {
        let two = component("(global (mut i32) (i32.const 0)) (global (mut i32) (i32.const 0))");
        let why = check_resettable(two.as_bytes()).unwrap_err();
        assert_eq!(why, NotResettable::MutableGlobals { module: 1 });
        assert!(why.to_string().contains("mutable globals"), "{why}");
        let i64_global = component("(global (mut i64) (i64.const 0))");
        assert_eq!(
            check_resettable(i64_global.as_bytes()),
            Err(NotResettable::MutableGlobals { module: 1 })
        );
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
        let imported = component(r#"(import "env" "g" (global (mut i32)))"#);
        let why = check_resettable(imported.as_bytes()).unwrap_err();
        assert_eq!(
            why.to_string(),
            "core module 1 imports the mutable global `env::g`"
        );
    }

    #[test]
    fn text_that_does_not_parse_is_named() {
        assert!(matches!(
            check_resettable(b"(component"),
            Err(NotResettable::Unparsable(_))
        ));
    }
}
