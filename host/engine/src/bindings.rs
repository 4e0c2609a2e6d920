//! Host bindings generated from `wit/handler.wit`.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "edge:handler/handler",
    imports: {
        // May refuse an oversized request by trapping, as the contract allows.
        "edge:handler/random.get-random-bytes": trappable,
    },
    // Requests run as calls that can yield at the end of a time slice; `input-region` is a
    // short call made before the request, which never yields.
    exports: {
        "edge:handler/guest.handle": async,
        "edge:handler/guest.handle-region": async,
    },
});

pub use edge::handler::{clocks, config, log, random};
pub use exports::edge::handler::guest;
