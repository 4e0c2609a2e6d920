//! The `edge:handler@0.1.0` imports: the 0.2.0 functions under their 0.1.0 names, so that
//! guests built against the previous contract run unchanged.

use wasmtime::component::{HasSelf, Linker};

use crate::bindings::v1;
use crate::bindings::{clocks, config, log, random};
use crate::host::HostState;

fn level(level: v1::log::Level) -> log::Level {
    match level {
        v1::log::Level::Trace => log::Level::Trace,
        v1::log::Level::Debug => log::Level::Debug,
        v1::log::Level::Info => log::Level::Info,
        v1::log::Level::Warn => log::Level::Warn,
        v1::log::Level::Error => log::Level::Error,
    }
}

impl v1::log::Host for HostState {
    fn log(&mut self, l: v1::log::Level, message: String, fields: Vec<(String, String)>) {
        log::Host::log(self, level(l), message, fields);
    }

    fn enabled(&mut self, l: v1::log::Level) -> bool {
        log::Host::enabled(self, level(l))
    }
}

impl v1::clocks::Host for HostState {
    fn wall_now(&mut self) -> v1::clocks::Datetime {
        let now = clocks::Host::wall_now(self);
        v1::clocks::Datetime {
            seconds: now.seconds,
            nanoseconds: now.nanoseconds,
        }
    }

    fn monotonic_now(&mut self) -> u64 {
        clocks::Host::monotonic_now(self)
    }
}

impl v1::random::Host for HostState {
    fn get_random_bytes(&mut self, len: u32) -> wasmtime::Result<Vec<u8>> {
        random::Host::get_random_bytes(self, len)
    }

    fn get_random_u64(&mut self) -> u64 {
        random::Host::get_random_u64(self)
    }
}

impl v1::config::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        config::Host::get(self, key)
    }

    fn get_all(&mut self) -> Vec<(String, String)> {
        config::Host::get_all(self)
    }
}

/// Link the 0.1.0 imports (the 0.2.0 ones are linked by the 0.2.0 world).
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    // The types-only interface: an empty instance, as its generated linker code makes.
    linker.instance("edge:handler/types@0.1.0")?;
    v1::log::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    v1::clocks::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    v1::random::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    v1::config::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    Ok(())
}
