//! Host bindings generated from `wit/handler.wit`.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "edge:handler/handler",
    imports: {
        // May refuse an oversized request by trapping, as the contract allows.
        "edge:handler/random.get-random-bytes": trappable,
    },
});

pub use edge::handler::{clocks, config, log, random};
pub use exports::edge::handler::guest;
