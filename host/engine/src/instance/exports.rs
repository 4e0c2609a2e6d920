//! The two contract versions a component may export: linked and called alike.

use crate::bindings;
use crate::host::HostState;

/// The component linked for the contract version it exports.
#[derive(Clone)]
pub(super) enum Pre {
    V2(bindings::HandlerPre<HostState>),
    V1(bindings::v1::HandlerPre<HostState>),
}

/// An instance's exports, of either contract version (the records are the same).
pub(super) enum Exports {
    V2(bindings::Handler),
    V1(bindings::v1::Handler),
}

impl Exports {
    pub(super) async fn input_region(
        &self,
        store: &mut wasmtime::Store<HostState>,
        ask: u32,
    ) -> wasmtime::Result<bindings::guest::Region> {
        match self {
            Exports::V2(b) => b.edge_handler_guest().call_input_region(store, ask).await,
            Exports::V1(b) => b.edge_handler_guest().call_input_region(store, ask).await,
        }
    }

    pub(super) async fn handle_region(
        &self,
        store: &mut wasmtime::Store<HostState>,
        head: u32,
        body: u32,
    ) -> wasmtime::Result<bindings::guest::Response> {
        match self {
            Exports::V2(b) => {
                b.edge_handler_guest()
                    .call_handle_region(store, head, body)
                    .await
            }
            Exports::V1(b) => {
                b.edge_handler_guest()
                    .call_handle_region(store, head, body)
                    .await
            }
        }
    }

    pub(super) async fn handle(
        &self,
        store: &mut wasmtime::Store<HostState>,
        record: &bindings::guest::Request,
    ) -> wasmtime::Result<bindings::guest::Response> {
        match self {
            Exports::V2(b) => b.edge_handler_guest().call_handle(store, record).await,
            Exports::V1(b) => b.edge_handler_guest().call_handle(store, record).await,
        }
    }
}
