//! The rewrite, run: globals saved and put back, and the components it refuses.

use wasmtime::component::Linker;

use super::*;

/// A component whose `bump` adds one to a global and returns it; a second mutable global
/// is what makes it need the rewrite. It also exports `bump` in an instance through a
/// nested component that only gives it its type, as wit-component does.
const COUNTER: &str = r#"(component
    (core module $m
        (global $n (mut i32) (i32.const 5))
        (global $other (mut i64) (i64.const 0))
        (func (export "bump") (result i32)
            (global.set $n (i32.add (global.get $n) (i32.const 1)))
            (global.get $n)))
    (core instance $i (instantiate $m))
    (func $bump (export "bump") (result u32) (canon lift (core func $i "bump")))
    (component $typed
        (import "import-func-bump" (func $f (result u32)))
        (export "bump" (func $f)))
    (instance $counter (instantiate $typed (with "import-func-bump" (func $bump))))
    (export "counter" (instance $counter)))"#;

#[test]
fn saved_globals_come_back_on_reset() {
    let bytes = wat::parse_str(COUNTER).unwrap();
    let rewritten = add_global_resets(&bytes).unwrap();
    Validator::new_with_features(WasmFeatures::all())
        .validate_all(&rewritten)
        .unwrap();

    let engine = wasmtime::Engine::default();
    let component = Component::new(&engine, &rewritten).unwrap();
    let resets = GlobalResets::of(&component);
    let mut store = Store::new(&engine, ());
    let instance =
        block_on(Linker::new(&engine).instantiate_async(&mut store, &component)).unwrap();
    let bound = resets.bind(&mut store, &instance).unwrap().unwrap();
    let bump = instance
        .get_typed_func::<(), (u32,)>(&mut store, "bump")
        .unwrap();
    let mut next = || block_on(bump.call_async(&mut store, ())).unwrap().0;
    assert_eq!(next(), 6);
    block_on(call_all(&bound.save, &mut store)).unwrap();
    let mut next = || block_on(bump.call_async(&mut store, ())).unwrap().0;
    assert_eq!((next(), next()), (7, 8));
    block_on(call_all(&bound.reset, &mut store)).unwrap();
    let mut next = || block_on(bump.call_async(&mut store, ())).unwrap().0;
    assert_eq!(next(), 7);
}

#[test]
fn a_component_without_them_has_no_functions_to_call() {
    let engine = wasmtime::Engine::default();
    let component = Component::new(&engine, wat::parse_str(COUNTER).unwrap()).unwrap();
    let mut store = Store::new(&engine, ());
    let instance =
        block_on(Linker::new(&engine).instantiate_async(&mut store, &component)).unwrap();
    let resets = GlobalResets::of(&component);
    assert!(resets.bind(&mut store, &instance).unwrap().is_none());
}

#[test]
fn a_module_already_exporting_the_names_is_refused() {
    let taken = COUNTER.replace(
        "(global.get $n)))",
        &format!(r#"(global.get $n)) (func (export "{SAVE}")))"#),
    );
    let bytes = wat::parse_str(&taken).unwrap();
    assert!(add_global_resets(&bytes).unwrap_err().contains(SAVE));
}

#[test]
fn a_component_exporting_a_reserved_name_is_refused_at_compile() {
    let taken = COUNTER.replace(
        r#"(export "counter" (instance $counter))"#,
        &format!(r#"(export "counter" (instance $counter)) (export "{RESET}-i0" (func $bump))"#),
    );
    let bytes = wat::parse_str(&taken).unwrap();
    let why = crate::state::with_global_resets(&bytes)
        .unwrap_err()
        .to_string();
    assert!(why.contains(&format!("exports `{RESET}-i0`")), "{why}");
    let bytes = wat::parse_str(COUNTER).unwrap();
    assert!(matches!(
        crate::state::with_global_resets(&bytes),
        Ok(std::borrow::Cow::Owned(_))
    ));
}

#[test]
fn a_nested_component_with_modules_of_its_own_is_refused() {
    let nested = COUNTER.replace(
        "(component $typed",
        "(component $typed (core module $inner (global (mut i32) (i32.const 0))) \
         (core instance (instantiate $inner))",
    );
    let bytes = wat::parse_str(&nested).unwrap();
    let why = add_global_resets(&bytes).unwrap_err();
    assert!(why.contains("nests a component"), "{why}");
}
