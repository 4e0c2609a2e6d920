//! Mutable globals put back with the memory: a rewrite of the component at deploy.
//!
//! A reset restores linear memory, and a core module's mutable globals live outside it. A Rust
//! or C module keeps one, the stack pointer, which every completed call puts back. Components
//! made of several modules keep more: the interpreters of Python and JavaScript link libraries
//! that import the main module's stack pointer, and the WASI preview 1 adapter keeps pointers
//! to state it allocates on first use. For those the component is rewritten before it is
//! compiled:
//!
//! - each core module that defines mutable globals gets a shadow of each (a second mutable
//!   global with the same initialiser) and two functions: `percore-save-globals` copies the
//!   globals into their shadows, `percore-reset-globals` copies them back;
//! - the component lifts both for every instance of such a module and exports them as
//!   `percore-save-globals-iN` and `percore-reset-globals-iN` (`N` counts those instances).
//!
//! The host calls every save function before it takes an instance's snapshot and every reset
//! function after each restore. Nothing existing is renumbered: the new types, globals,
//! functions and exports of a module come after its own, and the new aliases, type, lifts and
//! exports of the component at its end.

use wasm_encoder::{
    Alias, CanonicalFunctionSection, ComponentAliasSection, ComponentExportKind,
    ComponentExportSection, ComponentTypeSection, ExportKind,
};
use wasmparser::{
    BinaryReader, CanonicalFunction, ComponentAlias, ComponentExternalKind,
    ComponentOuterAliasKind, ComponentTypeRef, ExternalKind, Instance, Parser, Payload, TypeRef,
    ValType, Validator, WasmFeatures,
};
use wasmtime::Store;
use wasmtime::component::{Component, ComponentExportIndex, TypedFunc};

use crate::ResetError;
use crate::budget::start_clock;
use crate::host::HostState;
use crate::running::block_on;

/// Names this rewrite in the artifact cache's key: change it when the rewrite changes, so that
/// no artifact compiled from an older one (or from none) is taken for a new one.
pub(crate) const REWRITE: &str = "global-resets-1";

/// The export that copies a module's mutable globals into their shadows.
pub(crate) const SAVE: &str = "percore-save-globals";
/// The export that copies them back.
pub(crate) const RESET: &str = "percore-reset-globals";

/// Section ids of a component's top level that the rewrite reads.
mod component_section {
    pub const CORE_MODULE: u8 = 1;
    pub const CORE_INSTANCE: u8 = 2;
    pub const COMPONENT: u8 = 4;
    pub const ALIAS: u8 = 6;
    pub const TYPE: u8 = 7;
    pub const CANONICAL: u8 = 8;
    pub const IMPORT: u8 = 10;
    pub const EXPORT: u8 = 11;
}

/// Section ids of a core module that the rewrite extends.
mod module_section {
    pub const TYPE: u8 = 1;
    pub const FUNCTION: u8 = 3;
    pub const GLOBAL: u8 = 6;
    pub const EXPORT: u8 = 7;
    pub const CODE: u8 = 10;
}

/// The component with save and reset functions for the mutable globals of each of its core
/// instances, or why it cannot have them.
pub(crate) fn add_global_resets(component: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(component.len() + 4096);
    out.extend_from_slice(component.get(..8).ok_or("truncated header")?);
    // The index spaces that the rewrite refers to or extends, counted as the binary fills them.
    let mut n = Counts::default();
    let mut rewritten = Vec::new();
    let mut to_lift = Vec::new();
    for section in sections(component, 8)? {
        let (id, content, start) = section?;
        let reader = || BinaryReader::new(content, start);
        match id {
            component_section::CORE_MODULE => {
                match rewrite_module(content)? {
                    Some(module) => {
                        rewritten.push(n.modules);
                        push_section(&mut out, id, &module);
                    }
                    None => push_section(&mut out, id, content),
                }
                n.modules += 1;
                continue;
            }
            // wit-component wraps a component's exports in a nested component that only gives
            // them their types: that keeps no state. One with core instances would.
            component_section::COMPONENT if instantiates_modules(content)? => {
                return Err(
                    "it nests a component that instantiates core modules, whose globals a \
                     reset cannot reach"
                        .into(),
                );
            }
            component_section::CORE_INSTANCE => {
                for instance in wasmparser::InstanceSectionReader::new(reader()).map_err(e)? {
                    if let Instance::Instantiate { module_index, .. } = instance.map_err(e)?
                        && rewritten.contains(&module_index)
                    {
                        to_lift.push(n.core_instances);
                    }
                    n.core_instances += 1;
                }
            }
            component_section::TYPE => {
                let types = wasmparser::ComponentTypeSectionReader::new(reader()).map_err(e)?;
                n.types += types.count();
            }
            component_section::CANONICAL => {
                for canon in
                    wasmparser::ComponentCanonicalSectionReader::new(reader()).map_err(e)?
                {
                    match canon.map_err(e)? {
                        CanonicalFunction::Lift { .. } => n.funcs += 1,
                        _ => n.core_funcs += 1,
                    }
                }
            }
            component_section::ALIAS => {
                for alias in wasmparser::ComponentAliasSectionReader::new(reader()).map_err(e)? {
                    match alias.map_err(e)? {
                        ComponentAlias::InstanceExport { kind, .. } => n.add(kind),
                        ComponentAlias::CoreInstanceExport {
                            kind: ExternalKind::Func | ExternalKind::FuncExact,
                            ..
                        } => n.core_funcs += 1,
                        ComponentAlias::CoreInstanceExport { .. } => {}
                        ComponentAlias::Outer { kind, .. } => match kind {
                            ComponentOuterAliasKind::CoreModule => n.modules += 1,
                            ComponentOuterAliasKind::Type => n.types += 1,
                            _ => {}
                        },
                    }
                }
            }
            component_section::IMPORT => {
                for import in wasmparser::ComponentImportSectionReader::new(reader()).map_err(e)? {
                    match import.map_err(e)?.ty {
                        ComponentTypeRef::Module(_) => n.modules += 1,
                        ComponentTypeRef::Func(_) => n.funcs += 1,
                        ComponentTypeRef::Type(_) => n.types += 1,
                        _ => {}
                    }
                }
            }
            component_section::EXPORT => {
                for export in wasmparser::ComponentExportSectionReader::new(reader()).map_err(e)? {
                    let export = export.map_err(e)?;
                    if export.name.name.starts_with(SAVE) || export.name.name.starts_with(RESET) {
                        return Err(format!("it already exports `{}`", export.name.name));
                    }
                    n.add(export.kind);
                }
            }
            _ => {}
        }
        push_section(&mut out, id, content);
    }
    if to_lift.is_empty() {
        return Err("no instance of a module with mutable globals".into());
    }
    // The validator checks the component, and the count the new aliases start from.
    let types = Validator::new_with_features(WasmFeatures::all())
        .validate_all(component)
        .map_err(e)?;
    let types = types.as_ref();
    for (what, counted, validated) in [
        ("core functions", n.core_funcs, types.function_count()),
        (
            "component functions",
            n.funcs,
            types.component_function_count(),
        ),
        ("component types", n.types, types.component_type_count()),
        ("core modules", n.modules, types.module_count()),
        (
            "core instances",
            n.core_instances,
            types.core_instance_count(),
        ),
    ] {
        if counted != validated {
            return Err(format!(
                "counted {counted} {what}, the validator {validated}"
            ));
        }
    }
    let (first_core_func, func_type, first_func) = (n.core_funcs, n.types, n.funcs);

    let mut aliases = ComponentAliasSection::new();
    let mut lifts = CanonicalFunctionSection::new();
    let mut exports = ComponentExportSection::new();
    for (n, &instance) in to_lift.iter().enumerate() {
        for (k, name) in [SAVE, RESET].into_iter().enumerate() {
            let i = 2 * n as u32 + k as u32;
            aliases.alias(Alias::CoreInstanceExport {
                instance,
                kind: ExportKind::Func,
                name,
            });
            lifts.lift(first_core_func + i, func_type, []);
            exports.export(
                format!("{name}-i{n}"),
                ComponentExportKind::Func,
                first_func + i,
                None,
            );
        }
    }
    let mut func = ComponentTypeSection::new();
    func.function()
        .params(std::iter::empty::<(&str, wasm_encoder::ComponentValType)>())
        .result(None);
    let mut tail = wasm_encoder::Component::new();
    tail.section(&aliases)
        .section(&func)
        .section(&lifts)
        .section(&exports);
    out.extend_from_slice(&tail.finish()[8..]);
    // What is compiled must be valid: a rewrite that is not is refused, and the component is
    // served as it came.
    Validator::new_with_features(WasmFeatures::all())
        .validate_all(&out)
        .map_err(|error| format!("the rewritten component does not validate: {error}"))?;
    Ok(out)
}

/// The first export of the component's own (top level) that takes a name this rewrite adds.
pub(crate) fn reserved_export(component: &[u8]) -> Result<Option<String>, String> {
    for section in sections(component, 8)? {
        let (id, content, start) = section?;
        if id != component_section::EXPORT {
            continue;
        }
        let reader = BinaryReader::new(content, start);
        for export in wasmparser::ComponentExportSectionReader::new(reader).map_err(e)? {
            let name = export.map_err(e)?.name.name;
            if name.starts_with(SAVE) || name.starts_with(RESET) {
                return Ok(Some(name.to_owned()));
            }
        }
    }
    Ok(None)
}

/// Sizes of a component's index spaces, as far as a binary has been read.
#[derive(Debug, Default)]
struct Counts {
    modules: u32,
    core_instances: u32,
    core_funcs: u32,
    types: u32,
    funcs: u32,
}

impl Counts {
    /// One more item of `kind` (an import, export or alias of it adds one).
    fn add(&mut self, kind: ComponentExternalKind) {
        match kind {
            ComponentExternalKind::Module => self.modules += 1,
            ComponentExternalKind::Func => self.funcs += 1,
            ComponentExternalKind::Type => self.types += 1,
            ComponentExternalKind::Component
            | ComponentExternalKind::Instance
            | ComponentExternalKind::Value => {}
        }
    }
}

/// Does a nested component (at any depth) instantiate core modules?
fn instantiates_modules(component: &[u8]) -> Result<bool, String> {
    for payload in Parser::new(0).parse_all(component) {
        if let Payload::ModuleSection { .. } | Payload::InstanceSection(_) = payload.map_err(e)? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn e(error: impl std::fmt::Display) -> String {
    error.to_string()
}

/// A section of a binary: its id, its content, and the content's offset in the binary.
type Section<'a> = (u8, &'a [u8], usize);

/// The sections of a binary from `at` on.
fn sections(
    bytes: &[u8],
    mut at: usize,
) -> Result<impl Iterator<Item = Result<Section<'_>, String>>, String> {
    Ok(std::iter::from_fn(move || {
        if at >= bytes.len() {
            return None;
        }
        let id = bytes[at];
        let mut reader = BinaryReader::new(&bytes[at + 1..], at + 1);
        let section = reader.read_var_u32().map_err(e).and_then(|size| {
            let start = reader.original_position();
            let end = start
                .checked_add(size as usize)
                .filter(|&end| end <= bytes.len())
                .ok_or_else(|| format!("section {id} at {at} runs past the end"))?;
            Ok((start, end))
        });
        match section {
            Ok((start, end)) => {
                at = end;
                Some(Ok((id, &bytes[start..end], start)))
            }
            Err(error) => {
                at = bytes.len();
                Some(Err(error))
            }
        }
    }))
}

fn push_section(out: &mut Vec<u8>, id: u8, content: &[u8]) {
    out.push(id);
    leb(
        out,
        u32::try_from(content.len()).expect("a section's size fits a u32"),
    );
    out.extend_from_slice(content);
}

fn leb(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A defined mutable global of a module.
struct Global {
    index: u32,
    /// Its value type's encoding.
    ty: u8,
    /// Its initialiser's encoding, `end` included.
    init: Vec<u8>,
}

/// The module with shadows of its mutable globals and the save and reset functions, or `None`
/// when it defines no mutable global.
fn rewrite_module(module: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut types = 0u32;
    let mut funcs = 0u32;
    let mut globals = 0u32;
    let mut mutable = Vec::new();
    for payload in Parser::new(0).parse_all(module) {
        match payload.map_err(e)? {
            Payload::TypeSection(reader) => {
                for group in reader {
                    types += group.map_err(e)?.types().len() as u32;
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    match import.map_err(e)?.ty {
                        TypeRef::Func(_) | TypeRef::FuncExact(_) => funcs += 1,
                        TypeRef::Global(_) => globals += 1,
                        _ => {}
                    }
                }
            }
            Payload::FunctionSection(reader) => funcs += reader.count(),
            Payload::GlobalSection(reader) => {
                for global in reader {
                    let global = global.map_err(e)?;
                    if global.ty.mutable {
                        if global.ty.shared {
                            return Err("a module has a shared mutable global".into());
                        }
                        let mut init = global.init_expr.get_binary_reader();
                        let init = init.read_bytes(init.bytes_remaining()).map_err(e)?.to_vec();
                        mutable.push(Global {
                            index: globals,
                            ty: value_type(global.ty.content_type)?,
                            init,
                        });
                    }
                    globals += 1;
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let name = export.map_err(e)?.name;
                    if name == SAVE || name == RESET {
                        return Err(format!("a module already exports `{name}`"));
                    }
                }
            }
            _ => {}
        }
    }
    if mutable.is_empty() {
        return Ok(None);
    }

    let shadow = |n: usize| globals + n as u32;
    let mut shadows = Vec::new();
    let mut save = Vec::new();
    let mut reset = Vec::new();
    for (n, global) in mutable.iter().enumerate() {
        shadows.push(global.ty);
        shadows.push(1); // mutable
        shadows.extend_from_slice(&global.init);
        for (body, from, to) in [
            (&mut save, global.index, shadow(n)),
            (&mut reset, shadow(n), global.index),
        ] {
            body.push(0x23); // global.get
            leb(body, from);
            body.push(0x24); // global.set
            leb(body, to);
        }
    }
    let mut code = Vec::new();
    for body in [save, reset] {
        let mut function = vec![0x00]; // no locals
        function.extend_from_slice(&body);
        function.push(0x0b);
        leb(&mut code, function.len() as u32);
        code.extend_from_slice(&function);
    }
    let mut exports = Vec::new();
    for (k, name) in [SAVE, RESET].into_iter().enumerate() {
        leb(&mut exports, name.len() as u32);
        exports.extend_from_slice(name.as_bytes());
        exports.push(0x00); // a function
        leb(&mut exports, funcs + k as u32);
    }
    let mut declarations = Vec::new();
    leb(&mut declarations, types);
    leb(&mut declarations, types);

    let mut out = module[..8].to_vec();
    let mut extended = [false; 5];
    for section in sections(module, 8)? {
        let (id, content, _) = section?;
        let (slot, extra, items): (usize, u32, &[u8]) = match id {
            module_section::TYPE => (0, 1, &[0x60, 0x00, 0x00]), // func () -> ()
            module_section::FUNCTION => (1, 2, &declarations),
            module_section::GLOBAL => (2, mutable.len() as u32, &shadows),
            module_section::EXPORT => (3, 2, &exports),
            module_section::CODE => (4, 2, &code),
            _ => {
                push_section(&mut out, id, content);
                continue;
            }
        };
        extended[slot] = true;
        push_section(&mut out, id, &extend_vector(content, extra, items)?);
    }
    if extended.contains(&false) {
        return Err(
            "a module with mutable globals lacks a type, function, export or code section".into(),
        );
    }
    Ok(Some(out))
}

/// A vector section's content with `extra` more items, encoded in `items`, at its end.
fn extend_vector(content: &[u8], extra: u32, items: &[u8]) -> Result<Vec<u8>, String> {
    let mut reader = BinaryReader::new(content, 0);
    let count = reader.read_var_u32().map_err(e)?;
    let mut out = Vec::with_capacity(content.len() + items.len() + 5);
    leb(&mut out, count + extra);
    out.extend_from_slice(&content[reader.current_position()..]);
    out.extend_from_slice(items);
    Ok(out)
}

fn value_type(ty: ValType) -> Result<u8, String> {
    Ok(match ty {
        ValType::I32 => 0x7f,
        ValType::I64 => 0x7e,
        ValType::F32 => 0x7d,
        ValType::F64 => 0x7c,
        ValType::V128 => 0x7b,
        ValType::Ref(_) => return Err("a module has a mutable reference global".into()),
    })
}

/// The save and reset functions a rewritten component exports, looked up once per component.
#[derive(Debug, Clone, Default)]
pub(crate) struct GlobalResets {
    save: Vec<ComponentExportIndex>,
    reset: Vec<ComponentExportIndex>,
}

impl GlobalResets {
    /// Those of `component` (none if it was not rewritten).
    pub(crate) fn of(component: &Component) -> Self {
        let mut resets = Self::default();
        for (name, _) in component.component_type().exports(component.engine()) {
            let list = if name.starts_with(SAVE) {
                &mut resets.save
            } else if name.starts_with(RESET) {
                &mut resets.reset
            } else {
                continue;
            };
            list.extend(component.get_export_index(None, name));
        }
        resets
    }

    /// The functions of one instance; `None` when the component has none.
    pub(crate) fn bind<T>(
        &self,
        store: &mut Store<T>,
        instance: &wasmtime::component::Instance,
    ) -> wasmtime::Result<Option<BoundResets>> {
        if self.save.is_empty() && self.reset.is_empty() {
            return Ok(None);
        }
        let mut typed = |list: &[ComponentExportIndex]| {
            list.iter()
                .map(|index| instance.get_typed_func::<(), ()>(&mut *store, index))
                .collect::<wasmtime::Result<Vec<_>>>()
        };
        Ok(Some(BoundResets {
            save: typed(&self.save)?,
            reset: typed(&self.reset)?,
        }))
    }
}

/// An instance's save and reset functions.
pub(crate) struct BoundResets {
    save: Vec<TypedFunc<(), ()>>,
    reset: Vec<TypedFunc<(), ()>>,
}

/// Which of a rewritten component's functions to call.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step {
    /// Copy every mutable global into its shadow, before the snapshot.
    Save,
    /// Copy every mutable global back from its shadow, after each restore of the memory.
    Reset,
}

/// Take `step` for an instance's globals (nothing when it has no functions for them), on a
/// clock of its own: the last request's may have run out. On an error the instance must be
/// dropped.
pub(crate) fn run(
    globals: Option<&BoundResets>,
    store: &mut Store<HostState>,
    step: Step,
) -> Result<(), ResetError> {
    let Some(globals) = globals else {
        return Ok(());
    };
    start_clock(store);
    let funcs = match step {
        Step::Save => &globals.save,
        Step::Reset => &globals.reset,
    };
    block_on(call_all(funcs, store)).map_err(|e| ResetError::Globals(format!("{e:#}")))
}

async fn call_all<T: Send>(
    funcs: &[TypedFunc<(), ()>],
    store: &mut Store<T>,
) -> wasmtime::Result<()> {
    for func in funcs {
        func.call_async(&mut *store, ()).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
