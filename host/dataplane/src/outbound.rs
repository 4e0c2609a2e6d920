//! Outbound HTTP on the core's own ring: the HTTP/1.1 client that guests' `fetch` calls use.
//!
//! - [`reactor`]: the core's outbound connections and their operations (connect, send,
//!   receive), which the shard submits to its io_uring; completions wake the guest's call.
//!   Deadlines are kept here too, and bound how long the shard may sleep.
//! - [`client`]: one request and its response over a connection, with a keep-alive pool per
//!   origin.
//! - [`resolve`]: host names resolved on a resolver thread (never on a core), cached briefly.
//!
//! The engine checks a guest's request against its deployment's policy first
//! ([`percore_engine::check_request`]); what arrives here is allowed.

pub(crate) mod client;
mod head;
mod link;
pub(crate) mod reactor;
pub(crate) mod resolve;
mod tls;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use percore_engine::{OutboundClient, OutboundFuture, OutboundRequest};

/// Settings of each core's outbound client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundLimits {
    /// Outbound requests one core has in flight at once; past that, `too-many`.
    pub max_in_flight_per_core: usize,
    /// Idle keep-alive connections kept per origin on one core.
    pub max_idle_per_origin: usize,
    /// How long an idle keep-alive connection is kept.
    pub idle_timeout: Duration,
    /// A PEM file of CA certificates trusted for `https` origins besides the system's.
    pub ca_file: Option<PathBuf>,
}

impl Default for OutboundLimits {
    fn default() -> Self {
        Self {
            max_in_flight_per_core: 16384,
            max_idle_per_origin: 64,
            idle_timeout: Duration::from_secs(30),
            ca_file: None,
        }
    }
}

/// The client the engine calls for this core's guests.
#[derive(Debug)]
pub(crate) struct ShardClient;

impl OutboundClient for ShardClient {
    fn fetch(&self, request: OutboundRequest) -> OutboundFuture {
        Box::pin(client::fetch(request))
    }
}

/// Give this thread (a shard) its outbound reactor and make the engine use it.
pub(crate) fn install(limits: &OutboundLimits) {
    let tls = tls::client_config(limits.ca_file.as_deref());
    if let Err(e) = &tls {
        tracing::error!("https origins will be refused: {e}");
    }
    reactor::install(limits.clone(), tls);
    percore_engine::set_thread_client(Some(Arc::new(ShardClient)));
}

/// Take them away again (the shard is ending).
pub(crate) fn uninstall() {
    percore_engine::set_thread_client(None);
    reactor::uninstall();
}
