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

/// Why a component cannot be reset in place (`Ok` when it can).
pub fn check_resettable(bytes: &[u8]) -> Result<(), String> {
    let binary;
    let bytes = if bytes.starts_with(b"\0asm") {
        bytes
    } else {
        binary = wat::parse_bytes(bytes).map_err(|e| e.to_string())?;
        &binary[..]
    };
    let mut module = 0usize;
    let mut in_module = false;
    let mut mutable_globals = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| e.to_string())?;
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
                    let import = import.map_err(|e| e.to_string())?;
                    if let TypeRef::Global(g) = import.ty
                        && g.mutable
                    {
                        return Err(format!(
                            "core module {module} imports the mutable global `{}::{}`",
                            import.module, import.name
                        ));
                    }
                }
            }
            Payload::GlobalSection(reader) if in_module => {
                for global in reader {
                    let global = global.map_err(|e| e.to_string())?;
                    if !global.ty.mutable {
                        continue;
                    }
                    mutable_globals += 1;
                    if mutable_globals > 1 || global.ty.content_type != ValType::I32 {
                        return Err(format!(
                            "core module {module} keeps state in mutable globals besides its \
                             stack pointer"
                        ));
                    }
                }
            }
            Payload::CodeSectionEntry(body) if in_module => {
                let mut ops = body.get_operators_reader().map_err(|e| e.to_string())?;
                while !ops.eof() {
                    let what = match ops.read().map_err(|e| e.to_string())? {
                        Operator::TableSet { .. } => "table.set",
                        Operator::TableGrow { .. } => "table.grow",
                        Operator::TableFill { .. } => "table.fill",
                        Operator::TableCopy { .. } => "table.copy",
                        Operator::TableInit { .. } => "table.init",
                        Operator::ElemDrop { .. } => "elem.drop",
                        Operator::DataDrop { .. } => "data.drop",
                        _ => continue,
                    };
                    return Err(format!(
                        "core module {module} changes state outside its memory (`{what}`)"
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_resettable;

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
        assert!(
            check_resettable(two.as_bytes())
                .unwrap_err()
                .contains("mutable globals")
        );
        let i64_global = component("(global (mut i64) (i64.const 0))");
        assert!(check_resettable(i64_global.as_bytes()).is_err());
        let table =
            component("(table 1 funcref) (func (table.set 0 (i32.const 0) (ref.null func)))");
        assert!(
            check_resettable(table.as_bytes())
                .unwrap_err()
                .contains("table.set")
        );
        let imported = component(r#"(import "env" "g" (global (mut i32)))"#);
        assert!(
            check_resettable(imported.as_bytes())
                .unwrap_err()
                .contains("imports the mutable global")
        );
    }
}
