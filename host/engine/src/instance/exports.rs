//! The two contract versions a component may export: linked and called alike.

use wasmtime::component::{Instance, InstancePre};

use crate::bindings;
use crate::host::HostState;

/// The component linked for the contract version it exports, with its exports looked up.
#[derive(Clone)]
pub(super) enum Pre {
    V2(InstancePre<HostState>, bindings::HandlerIndices),
    V1(InstancePre<HostState>, bindings::v1::HandlerIndices),
}

impl Pre {
    pub(super) fn new(pre: InstancePre<HostState>, v2: bool) -> wasmtime::Result<Self> {
        Ok(if v2 {
            let indices = bindings::HandlerIndices::new(&pre)?;
            Pre::V2(pre, indices)
        } else {
            let indices = bindings::v1::HandlerIndices::new(&pre)?;
            Pre::V1(pre, indices)
        })
    }

    pub(super) fn engine(&self) -> &wasmtime::Engine {
        match self {
            Pre::V2(pre, _) | Pre::V1(pre, _) => pre.engine(),
        }
    }

    /// A new instance, and its exports.
    pub(super) async fn instantiate(
        &self,
        store: &mut wasmtime::Store<HostState>,
    ) -> wasmtime::Result<(Instance, Exports)> {
        let (Pre::V2(pre, _) | Pre::V1(pre, _)) = self;
        let instance = pre.instantiate_async(&mut *store).await?;
        let exports = match self {
            Pre::V2(_, indices) => Exports::V2(indices.load(&mut *store, &instance)?),
            Pre::V1(_, indices) => Exports::V1(indices.load(&mut *store, &instance)?),
        };
        Ok((instance, exports))
    }
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
