//! Tests of host-owned guest memories: host access, growth, snapshot and restore.

use super::*;

fn engine() -> wasmtime::Engine {
    let mut config = wasmtime::Config::new();
    config
        .with_host_memory(Arc::new(HostMemoryCreator))
        .memory_init_cow(false)
        .memory_reservation(1 << 32)
        .memory_guard_size(1 << 31)
        .memory_may_move(false);
    wasmtime::Engine::new(&config).unwrap()
}

const WAT: &str = r#"(module
    (memory (export "memory") 1)
    (data (i32.const 16) "guest")
    (func (export "load") (param i32) (result i32) local.get 0 i32.load8_u)
    (func (export "grow") (param i32) (result i32) local.get 0 memory.grow))"#;

#[test]
fn host_writes_are_seen_by_the_guest_and_growth_keeps_the_base() {
    let engine = engine();
    let module = wasmtime::Module::new(&engine, WAT).unwrap();
    let (mut hm, instance) = HostMemoryStore::instantiate(Store::new(&engine, ()), |s| {
        wasmtime::Instance::new(s, &module, &[])
    });
    let instance = instance.unwrap();
    assert_eq!(hm.memory_count(), 1);
    assert_eq!(hm.memory_size(0), Ok(65536));
    assert_eq!(hm.read(0, 16, 5).unwrap(), b"guest");

    hm.write(0, 100, &[42]).unwrap();
    let load = instance
        .get_typed_func::<i32, i32>(hm.store(), "load")
        .unwrap();
    assert_eq!(load.call(hm.store(), 100).unwrap(), 42);

    let grow = instance
        .get_typed_func::<i32, i32>(hm.store(), "grow")
        .unwrap();
    assert_eq!(grow.call(hm.store(), 2).unwrap(), 1);
    assert_eq!(hm.memory_size(0), Ok(3 * 65536));
    hm.write(0, 2 * 65536 + 7, &[9]).unwrap();
    assert_eq!(load.call(hm.store(), 2 * 65536 + 7).unwrap(), 9);
}

#[test]
fn out_of_bounds_access_is_refused() {
    let engine = engine();
    let module = wasmtime::Module::new(&engine, WAT).unwrap();
    let (mut hm, instance) = HostMemoryStore::instantiate(Store::new(&engine, ()), |s| {
        wasmtime::Instance::new(s, &module, &[])
    });
    instance.unwrap();
    assert_eq!(
        hm.write(0, 65535, &[1, 2]),
        Err(MemoryAccessError::OutOfBounds {
            offset: 65535,
            len: 2,
            size: 65536
        })
    );
    assert_eq!(
        hm.write(0, usize::MAX, &[1]).unwrap_err(),
        MemoryAccessError::OutOfBounds {
            offset: usize::MAX,
            len: 1,
            size: 65536
        }
    );
    assert_eq!(
        hm.write(1, 0, &[1]),
        Err(MemoryAccessError::NoSuchMemory(1))
    );
}

#[test]
fn memories_created_outside_a_capture_are_not_claimed() {
    let engine = engine();
    let module = wasmtime::Module::new(&engine, WAT).unwrap();
    let mut store = Store::new(&engine, ());
    wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
    let (hm, _) = HostMemoryStore::instantiate(Store::new(&engine, ()), |_| ());
    assert_eq!(hm.memory_count(), 0);
}

#[test]
fn restore_copies_back_only_the_written_pages() {
    if !crate::pagemap::supported() {
        eprintln!("skipped: no PAGEMAP_SCAN on this kernel");
        return;
    }
    let engine = engine();
    let module = wasmtime::Module::new(&engine, WAT).unwrap();
    let (mut hm, instance) = HostMemoryStore::instantiate(Store::new(&engine, ()), |s| {
        wasmtime::Instance::new(s, &module, &[])
    });
    let instance = instance.unwrap();
    hm.write(0, 8192, b"before").unwrap();
    hm.snapshot(0).unwrap();
    assert_eq!(hm.read(0, 16, 5).unwrap(), b"guest");
    assert_eq!(hm.read(0, 8192, 6).unwrap(), b"before");

    // Nothing written yet: nothing to copy.
    assert_eq!(hm.restore(1 << 20).unwrap().pages_copied, 0);

    let page = page_size();
    hm.write(0, 16, b"GUEST").unwrap();
    hm.write(0, 8192, b"after!").unwrap();
    hm.write(0, 5 * page + 3, &[7; 10]).unwrap();
    // A read does not make a page dirty.
    let load = instance
        .get_typed_func::<i32, i32>(hm.store(), "load")
        .unwrap();
    assert_eq!(load.call(hm.store(), (9 * page) as i32).unwrap(), 0);

    let stats = hm.restore(1 << 20).unwrap();
    assert_eq!(stats.pages_copied, 3, "{stats:?}");
    assert_eq!(stats.bytes_decommitted, 0);
    assert_eq!(hm.read(0, 16, 5).unwrap(), b"guest");
    assert_eq!(hm.read(0, 8192, 6).unwrap(), b"before");
    assert_eq!(hm.read(0, 5 * page, 20).unwrap(), vec![0; 20]);
    assert_eq!(load.call(hm.store(), 16).unwrap(), i32::from(b'g'));
}

#[test]
fn restore_past_the_budget_drops_pages_and_still_restores() {
    if !crate::pagemap::supported() {
        return;
    }
    let engine = engine();
    let module = wasmtime::Module::new(&engine, WAT).unwrap();
    let (mut hm, instance) = HostMemoryStore::instantiate(Store::new(&engine, ()), |s| {
        wasmtime::Instance::new(s, &module, &[])
    });
    instance.unwrap();
    hm.snapshot(0).unwrap();
    let page = page_size();
    for i in 0..8 {
        hm.write(0, i * page, &[0xaa; 64]).unwrap();
    }
    let stats = hm.restore(2 * page).unwrap();
    assert_eq!(stats.pages_copied, 2, "{stats:?}");
    assert!(stats.bytes_decommitted > 0, "{stats:?}");
    assert_eq!(hm.read(0, 0, 8 * page).unwrap()[..16], [0; 16]);
    assert_eq!(hm.read(0, 16, 5).unwrap(), b"guest");
    for i in 1..8 {
        assert_eq!(hm.read(0, i * page, 64).unwrap(), vec![0; 64], "page {i}");
    }
}

#[test]
fn a_memory_that_grew_is_not_restored() {
    if !crate::pagemap::supported() {
        return;
    }
    let engine = engine();
    let module = wasmtime::Module::new(&engine, WAT).unwrap();
    let (mut hm, instance) = HostMemoryStore::instantiate(Store::new(&engine, ()), |s| {
        wasmtime::Instance::new(s, &module, &[])
    });
    let instance = instance.unwrap();
    hm.snapshot(0).unwrap();
    let grow = instance
        .get_typed_func::<i32, i32>(hm.store(), "grow")
        .unwrap();
    grow.call(hm.store(), 1).unwrap();
    assert!(matches!(
        hm.restore(1 << 20),
        Err(SnapshotError::Grew {
            snapshot: 65536,
            now: 131072
        })
    ));
}
