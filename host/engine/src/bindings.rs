//! Host bindings generated from `wit/handler.wit` (the current contract, 0.2.0) and from
//! `wit/0.1.0/handler.wit` (the previous one, whose guests still run unchanged).

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "edge:handler/handler",
    imports: {
        // May refuse an oversized request by trapping, as the contract allows.
        "edge:handler/random.get-random-bytes": trappable,
        // The guest's call sleeps while the request is out (its fiber is suspended).
        "edge:handler/outbound.fetch": async,
    },
    // Requests run as calls that can yield at the end of a time slice.
    exports: {
        "edge:handler/guest.handle": async,
        "edge:handler/guest.handle-region": async,
        // An instance with an asynchronous import takes only asynchronous calls.
        "edge:handler/guest.input-region": async,
    },
});

pub use edge::handler::{clocks, config, log, outbound, random};
pub use exports::edge::handler::guest;

/// The 0.1.0 contract: its imports are the same functions under their 0.1.0 names, and its
/// exports take and return the same records (shared with 0.2.0 through `with`).
pub mod v1 {
    wasmtime::component::bindgen!({
        path: "../../wit/0.1.0",
        world: "edge:handler/handler",
        imports: {
            "edge:handler/random.get-random-bytes": trappable,
        },
        exports: {
            "edge:handler/guest.handle": async,
            "edge:handler/guest.handle-region": async,
            "edge:handler/guest.input-region": async,
        },
        with: {
            "edge:handler/types": super::edge::handler::types,
        },
    });

    pub use edge::handler::{clocks, config, log, random};
}
