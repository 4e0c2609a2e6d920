//! The deploy path (tell the kind, adapt a core module, validate, compile, link) on mutated real
//! guests and on valid core modules of random shapes from `wasm-smith`: whatever the bytes, a
//! guest or a typed refusal, never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use percore_engine::{Engine, EngineConfig};

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::without_ticker(EngineConfig::default()).expect("an engine"))
}

fuzz_target!(|data: &[u8]| {
    // Inputs that start like Wasm are taken as they are: the seeds are the project's guests, and
    // libFuzzer mutates them. Others drive wasm-smith.
    let bytes = if data.starts_with(b"\0asm") {
        data.to_vec()
    } else {
        let mut u = Unstructured::new(data);
        let Ok(mut config) = wasm_smith::Config::arbitrary(&mut u) else {
            return;
        };
        // Small enough to compile in milliseconds.
        config.max_funcs = config.max_funcs.min(20);
        config.max_instructions = config.max_instructions.min(200);
        let Ok(module) = wasm_smith::Module::new(config, &mut u) else {
            return;
        };
        module.to_bytes()
    };
    match engine().load_guest(&bytes) {
        Ok(guest) => {
            let _ = guest.kind();
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
        }
    }
});
