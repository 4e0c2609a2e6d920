//! The seam between the data plane and the kinds of guest: a deployment holds a [`Backend`],
//! which turns a routed request into a response. One module per kind:
//!
//! - [`edge`]: `edge:handler` components (input region or portable path), from an instance
//!   pool;
//! - [`native`]: the built-in native reference handlers (the benchmarks' baseline).
//!
//! Adding a kind of guest means one module here and one variant of [`Backend`] (and of
//! [`StreamInto`] if its requests can receive their bodies in place).

pub(crate) mod edge;
pub(crate) mod native;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use percore_engine::{Engine, Request};

use crate::ServeConfig;
use crate::counters::Counters;
use crate::link::Ready;
use crate::meter::RequestId;
use crate::respond::Reply;

/// What runs a deployment's requests.
#[derive(Debug)]
// One per deployment, in the deployment table: a box would cost an indirection per request.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Backend {
    /// An `edge:handler` component.
    Edge(edge::EdgeHandler),
    /// A built-in native handler.
    Native(native::Native),
}

/// One request for a backend.
#[derive(Debug)]
pub(crate) struct Call<'a, 'r> {
    /// The request as the guest sees it: framing fields replaced by the decoded length.
    pub(crate) request: &'a Request<'r>,
    /// Its body, if it was received into an instance already.
    pub(crate) streamed: Option<Streamed>,
    pub(crate) id: RequestId,
    /// The deployment's name (logs).
    pub(crate) deployment: &'a str,
}

/// What a backend may use while it runs a request.
#[derive(Debug)]
pub(crate) struct Cx<'a> {
    /// The core's engine (to map a component that is not mapped on this core yet).
    pub(crate) engine: &'a Engine,
    pub(crate) counters: &'a mut Counters,
    /// Where the response goes.
    pub(crate) reply: Reply<'a>,
}

/// What running one request gave, for metering and the invocation log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    pub(crate) status: u16,
    /// The fault's kind, if the request failed.
    pub(crate) fault: Option<&'static str>,
    pub(crate) cpu_us: u64,
    /// The request needed a new instance (or a component mapped on this core).
    pub(crate) cold: bool,
}

impl Backend {
    /// The backend for a deployment that the control plane made ready: maps its artifact on
    /// this core (no compilation happens here).
    pub(crate) fn load(
        engine: &Engine,
        config: &ServeConfig,
        ready: &Ready,
    ) -> Result<Self, percore_engine::Error> {
        if let Some(native) = native::Native::named(&ready.artifact) {
            return Ok(Self::Native(native));
        }
        edge::EdgeHandler::load(engine, config, ready).map(Self::Edge)
    }

    /// How its requests run, for the log: `reset`, `fresh (why)`, `keep`, `native`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Edge(edge) => edge.describe(),
            Self::Native(_) => "native".into(),
        }
    }

    /// Run one request and write its response.
    pub(crate) fn run(&mut self, call: Call<'_, '_>, cx: &mut Cx<'_>) -> Outcome {
        match self {
            Self::Edge(edge) => edge.run(call, cx),
            Self::Native(native) => native.run(call.request, cx),
        }
    }

    /// Take a body of `body_len` bytes straight into guest memory, if this backend can.
    pub(crate) fn begin_stream(
        &mut self,
        request: &Request<'_>,
        body_len: usize,
        deployment: &str,
        counters: &mut Counters,
    ) -> Option<StreamInto> {
        match self {
            Self::Edge(edge) => edge
                .begin_stream(request, body_len, deployment, counters)
                .map(StreamInto::Edge),
            Self::Native(_) => None,
        }
    }

    /// Whether a component is mapped on this core (the LRU unmaps the least recently used).
    pub(crate) fn is_mapped(&self) -> bool {
        match self {
            Self::Edge(edge) => edge.is_mapped(),
            Self::Native(_) => false,
        }
    }

    /// Unmap the component and drop its instances; the next request maps it again.
    pub(crate) fn unmap(&mut self) {
        if let Self::Edge(edge) = self {
            edge.unmap();
        }
    }

    /// The instance pool, for the suite's misbehaviour tests.
    #[cfg(feature = "misbehave")]
    pub(crate) fn pool_mut(&mut self) -> Option<&mut crate::pool::InstancePool> {
        match self {
            Self::Edge(edge) => Some(edge.pool_mut()),
            Self::Native(_) => None,
        }
    }
}

/// A body being received into a backend's memory, and the deployment version that must run
/// it.
#[derive(Debug)]
pub(crate) struct Streamed {
    /// The deployment (id and load generation) that received it.
    pub(crate) deployment: u32,
    pub(crate) generation: u64,
    pub(crate) into: StreamInto,
    _permit: StreamPermit,
}

/// Where a streamed body goes, by kind of backend.
#[derive(Debug)]
pub(crate) enum StreamInto {
    /// An `edge:handler` instance's input region.
    Edge(edge::Streaming),
}

impl Streamed {
    pub(crate) fn new(
        deployment: u32,
        generation: u64,
        into: StreamInto,
        permit: StreamPermit,
    ) -> Self {
        Self {
            deployment,
            generation,
            into,
            _permit: permit,
        }
    }

    /// Append body bytes (the request's only host copy).
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        match &mut self.into {
            StreamInto::Edge(s) => s.push(bytes),
        }
    }

    /// The body's whole length.
    pub(crate) fn len(&self) -> usize {
        match &self.into {
            StreamInto::Edge(s) => s.len(),
        }
    }

    /// The body received so far, copied back out (for a request whose deployment changed
    /// while its body arrived).
    pub(crate) fn copy_out(&self) -> Vec<u8> {
        match &self.into {
            StreamInto::Edge(s) => s.copy_out(),
        }
    }
}

/// Counts the bodies one core is receiving into guest memory (each holds an instance). A
/// permit is given back when the body is used or its connection goes away. Only one thread
/// ever touches it (the count is atomic because the shard is built on another thread and moved
/// to its own), and only for bodies of 64 KiB and more.
#[derive(Debug, Clone, Default)]
pub(crate) struct StreamPermits {
    in_flight: Arc<AtomicUsize>,
}

/// One body being streamed.
#[derive(Debug)]
pub(crate) struct StreamPermit {
    in_flight: Arc<AtomicUsize>,
}

impl StreamPermits {
    /// A permit, if fewer than `max` are out.
    pub(crate) fn try_take(&self, max: usize) -> Option<StreamPermit> {
        let n = self.in_flight.load(Ordering::Relaxed);
        (n < max).then(|| {
            self.in_flight.store(n + 1, Ordering::Relaxed);
            StreamPermit {
                in_flight: self.in_flight.clone(),
            }
        })
    }

    /// Permits out.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Forward what a guest logged to the host's log, tagged with the deployment and the request.
pub(crate) fn log_guest(deployment: &str, request: RequestId, record: &percore_engine::LogRecord) {
    use percore_engine::LogLevel;
    let mut line = record.message.clone();
    for (k, v) in &record.fields {
        line.push_str(&format!(" {k}={v}"));
    }
    let request = tracing::field::display(request);
    let deployment = tracing::field::display(deployment);
    match record.level {
        LogLevel::Trace => tracing::trace!(deployment, request, "{line}"),
        LogLevel::Debug => tracing::debug!(deployment, request, "{line}"),
        LogLevel::Info => tracing::info!(deployment, request, "{line}"),
        LogLevel::Warn => tracing::warn!(deployment, request, "{line}"),
        LogLevel::Error => tracing::error!(deployment, request, "{line}"),
    }
}
