//! Write percore edge handlers in Rust.
//!
//! ```ignore
//! use percore_guest::{handler, Request, Response};
//!
//! #[handler]
//! fn handle(req: Request) -> Response {
//!     Response::text(200, format!("hello from {}\n", req.path()))
//! }
//! ```
//!
//! A guest crate is a `cdylib` that depends on this crate alone; build it with
//! `cargo build --target wasm32-wasip2` (a component directly), or for `wasm32-wasip1` /
//! `wasm32-unknown-unknown` and turn the module into a component. The contract is the WIT world
//! `edge:handler/handler@0.2.0` (`wit/handler.wit`).
//!
//! The request reaches the handler without a copy inside the guest: the host writes it into a
//! region of this guest's memory that the SDK owns, and [`Request`] borrows from there.
#![deny(unsafe_code)]
#![warn(missing_docs)]

// Lets generated code name this crate `::percore_guest` from inside it too.
extern crate self as percore_guest;

mod error;
pub mod fetch;
mod region;
mod request;
mod response;

pub use error::Error;
pub use fetch::FetchError;
pub use percore_guest_macros::handler;
pub use request::{InputPath, Request};
pub use response::{IntoResponse, Response};

/// Bindings generated from `wit/handler.wit` (the current contract).
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "edge:handler/handler",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "__export_edge_handler",
        default_bindings_module: "::percore_guest::bindings",
        runtime_path: "::percore_guest::__private::wit_bindgen::rt",
    });
}

/// Structured logging to the host's log, tagged with the deployment and the request.
pub mod log {
    use crate::bindings::edge::handler::log as host;
    pub use crate::bindings::edge::handler::log::Level;

    /// Log `message` with key-value `fields` at `level`.
    pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        host::log(level, message, &fields);
    }

    /// Whether a record at `level` would be kept (skip expensive formatting when not).
    pub fn enabled(level: Level) -> bool {
        host::enabled(level)
    }

    /// Log at trace level.
    pub fn trace(message: &str) {
        log(Level::Trace, message, &[]);
    }

    /// Log at debug level.
    pub fn debug(message: &str) {
        log(Level::Debug, message, &[]);
    }

    /// Log at info level.
    pub fn info(message: &str) {
        log(Level::Info, message, &[]);
    }

    /// Log at warn level.
    pub fn warn(message: &str) {
        log(Level::Warn, message, &[]);
    }

    /// Log at error level.
    pub fn error(message: &str) {
        log(Level::Error, message, &[]);
    }
}

/// Per-deployment configuration values set by the operator.
pub mod config {
    use crate::bindings::edge::handler::config as host;

    /// The value of `key`, if set.
    pub fn get(key: &str) -> Option<String> {
        host::get(key)
    }

    /// Every key and value, sorted by key.
    pub fn all() -> Vec<(String, String)> {
        host::get_all()
    }
}

/// Clocks.
pub mod clocks {
    use std::time::{Duration, SystemTime};

    use crate::bindings::edge::handler::clocks as host;

    /// Wall-clock time (it may jump; measure durations with [`monotonic_ns`]).
    pub fn now() -> SystemTime {
        let t = host::wall_now();
        SystemTime::UNIX_EPOCH + Duration::new(t.seconds, t.nanoseconds)
    }

    /// Nanoseconds on a clock that never goes back; only differences mean something.
    pub fn monotonic_ns() -> u64 {
        host::monotonic_now()
    }
}

/// Randomness from the host's secure generator.
pub mod random {
    use crate::bindings::edge::handler::random as host;

    /// `n` random bytes (the host refuses more than 65536 at once).
    pub fn bytes(n: u32) -> Vec<u8> {
        host::get_random_bytes(n)
    }

    /// A random `u64`.
    pub fn u64() -> u64 {
        host::get_random_u64()
    }
}

/// What `#[handler]` expands to calls; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;

    pub use crate::bindings::exports::edge::handler::guest::{
        Guest, Region, Request as WitRequest, Response as WitResponse,
    };
    use crate::{IntoResponse, Request};

    /// `guest.input-region`.
    pub fn input_region(min_capacity: u32) -> Region {
        crate::region::reserve(min_capacity)
    }

    /// Decode an input region of `head_len` bytes of head and then the body (the fuzzer's
    /// entry: fuzz/fuzz_targets/region_codec.rs).
    pub fn decode_region(bytes: &[u8], head_len: usize) -> Result<Request<'_>, &'static str> {
        crate::region::decode(bytes, head_len)
    }

    /// `guest.handle-region`: decode the region in place and run the handler.
    pub fn handle_region<R: IntoResponse>(
        head_len: u32,
        body_len: u32,
        handler: impl FnOnce(Request<'_>) -> R,
    ) -> WitResponse {
        install_panic_hook();
        crate::region::with_request(head_len, body_len, |request| match request {
            Ok(request) => handler(request).into_response().into_wit(),
            Err(problem) => {
                crate::log::error(&format!("percore-guest: malformed input region: {problem}"));
                crate::Response::text(500, "malformed input region\n").into_wit()
            }
        })
    }

    /// `guest.handle`: the portable path.
    pub fn handle_portable<R: IntoResponse>(
        request: WitRequest,
        handler: impl FnOnce(Request<'_>) -> R,
    ) -> WitResponse {
        install_panic_hook();
        handler(Request::from_wit(&request))
            .into_response()
            .into_wit()
    }

    /// Send panic messages to the host's log (at error level) before the trap, so the host can
    /// say why the guest trapped even on targets without stderr.
    fn install_panic_hook() {
        use std::sync::Once;
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                let payload = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "Box<dyn Any>".to_owned());
                let at = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                crate::log::error(&format!("guest panicked{at}: {payload}"));
            }));
        });
    }
}
