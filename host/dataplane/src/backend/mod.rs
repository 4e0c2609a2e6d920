//! The seam between the data plane and the kinds of guest: a deployment holds a [`Backend`],
//! which turns a routed request into a response. One module per kind:
//!
//! - [`edge`]: `edge:handler` components (input region or portable path), from an instance
//!   pool;
//! - [`http`]: `wasi:http@0.2` components, from an instance pool (reset, else fresh);
//! - [`http3`]: `wasi:http@0.3` (WASIp3) components, a fresh instance per request;
//! - [`cgi`]: WASI commands run CGI style (body on stdin, stdout back);
//! - [`bare`]: bare core modules, a function called with the query's numbers;
//! - [`native`]: the built-in native reference handlers (the benchmarks' baseline).
//!
//! Adding a kind of guest means one module here and one variant of [`Backend`] (and of
//! [`StreamInto`] if its requests can receive their bodies in place).

pub(crate) mod bare;
pub(crate) mod cgi;
pub(crate) mod edge;
pub(crate) mod http;
pub(crate) mod http3;
pub(crate) mod native;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::task::{Context, Poll, Waker};

use percore_engine::{Engine, Fault, Guest, GuestKind, Invocation, Request, Running};

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
    /// A `wasi:http@0.2` component.
    Http(http::HttpBackend),
    /// A `wasi:http@0.3` component.
    HttpP3(http3::HttpP3Backend),
    /// A WASI command, CGI style.
    Cgi(cgi::CgiBackend),
    /// A bare core module.
    Bare(bare::BareBackend),
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
    /// The route prefix that matched, `""` for the root route.
    pub(crate) route_prefix: &'a str,
    /// The client's connection (for `REMOTE_ADDR`).
    pub(crate) peer: Option<&'a std::net::TcpStream>,
}

/// What a backend may use while it runs a request.
#[derive(Debug)]
pub(crate) struct Cx<'a> {
    /// The core's engine (to map a component that is not mapped on this core yet).
    pub(crate) engine: &'a Engine,
    pub(crate) counters: &'a mut Counters,
    /// Where the response goes.
    pub(crate) reply: Reply<'a>,
    /// The core dump of a trap, for the control plane to keep.
    pub(crate) coredump: Option<Vec<u8>>,
    /// Running time after which a call that can yield does.
    pub(crate) slice: percore_engine::TimeSlice,
    /// Wakes the call this request starts, if it waits (see [`Suspended::poll`]).
    pub(crate) waker: &'a Waker,
}

/// What starting a request gave.
#[derive(Debug)]
pub(crate) enum Ran {
    /// It ended and its response is written.
    Done(Outcome),
    /// It yielded at the end of its first time slice: the core polls it again later.
    Yielded(Suspended),
}

/// A call that yielded, by kind of guest, and what is known of its outcome.
#[derive(Debug)]
pub(crate) struct Suspended {
    call: SuspendedCall,
    outcome: Outcome,
}

#[derive(Debug)]
pub(crate) enum SuspendedCall {
    Edge(Running<percore_engine::Instance>),
    Http(Running<percore_engine::HttpInstance>),
    /// A command or a WASIp3 call: it runs once, on no instance to give back.
    Once(Running<()>),
}

/// A call that ended after yielding: what its backend needs to finish it.
#[derive(Debug)]
pub(crate) struct Ended {
    /// The instance to give back to its pool, if any.
    instance: Returned,
    invocation: Invocation,
    outcome: Outcome,
}

#[derive(Debug)]
enum Returned {
    Edge(percore_engine::Instance),
    Http(percore_engine::HttpInstance),
    Nothing,
}

impl Suspended {
    /// Run the call for one more slice, when `waker` (the one it was started with) was woken:
    /// it yielded at the end of a slice (which wakes it at once), or what it waited for (an
    /// outbound response, a deadline; for wasi:http and command calls a timer or a task of the
    /// core's runtime, which the loop turns while they are in flight: see
    /// [`Suspended::uses_runtime`]) came.
    pub(crate) fn poll(&mut self, waker: &Waker) -> Poll<Ended> {
        let mut cx = Context::from_waker(waker);
        let (instance, invocation) = match &mut self.call {
            SuspendedCall::Edge(call) => match call.poll(&mut cx) {
                Poll::Ready((i, inv)) => (Returned::Edge(i), inv),
                Poll::Pending => return Poll::Pending,
            },
            SuspendedCall::Http(call) => match call.poll(&mut cx) {
                Poll::Ready((i, inv)) => (Returned::Http(i), inv),
                Poll::Pending => return Poll::Pending,
            },
            SuspendedCall::Once(call) => match call.poll(&mut cx) {
                Poll::Ready(((), inv)) => (Returned::Nothing, inv),
                Poll::Pending => return Poll::Pending,
            },
        };
        Poll::Ready(Ended {
            instance,
            invocation,
            outcome: self.outcome,
        })
    }
}

impl Suspended {
    /// Whether the call waits on the core's async runtime, which must then be turned while it
    /// is in flight (see [`Suspended::poll`]).
    pub(crate) fn uses_runtime(&self) -> bool {
        !matches!(self.call, SuspendedCall::Edge(_))
    }
}

/// Run a call's first slice. `Ok`: it ended, with what it ran on and its invocation; `Err`: it
/// yielded or waits, and is in flight; `waker` wakes it.
// The suspended call is moved once, into the core's table of calls in flight.
#[allow(clippy::result_large_err)]
pub(crate) fn first_slice<I>(
    mut call: Running<I>,
    outcome: Outcome,
    suspend: fn(Running<I>) -> SuspendedCall,
    waker: &Waker,
) -> Result<(I, Invocation), Suspended> {
    let mut cx = Context::from_waker(waker);
    match call.poll(&mut cx) {
        Poll::Ready(ended) => Ok(ended),
        Poll::Pending => Err(Suspended {
            call: suspend(call),
            outcome,
        }),
    }
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
    /// What its outbound HTTP requests did.
    pub(crate) outbound: crate::link::OutboundUse,
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
        Ok(match ready.kind {
            GuestKind::Edge => Self::Edge(edge::EdgeHandler::load(engine, config, ready)?),
            GuestKind::HttpP2 => Self::Http(http::HttpBackend::load(engine, config, ready)?),
            GuestKind::HttpP3 => Self::HttpP3(http3::HttpP3Backend::load(engine, ready)?),
            GuestKind::Cgi => Self::Cgi(cgi::CgiBackend::load(engine, config, ready)?),
            GuestKind::Bare => Self::Bare(bare::BareBackend::load(engine, ready)?),
        })
    }

    /// How its requests run, for the log: `reset`, `fresh (why)`, `keep`, `native`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Edge(edge) => edge.describe(),
            Self::Http(http) => http.describe(),
            Self::HttpP3(_) => P3_INSTANCES.into(),
            Self::Cgi(_) => "fresh (a command runs once per request)".into(),
            Self::Bare(_) => "fresh (a new instance per call)".into(),
            Self::Native(_) => "native".into(),
        }
    }

    /// Start one request: it ends and its response is written, or it yields.
    pub(crate) fn run(&mut self, call: Call<'_, '_>, cx: &mut Cx<'_>) -> Ran {
        match self {
            Self::Edge(edge) => edge.run(call, cx),
            Self::Http(http) => http.run(call, cx),
            Self::HttpP3(http) => http.run(call, cx),
            Self::Cgi(cgi) => cgi.run(call, cx),
            Self::Bare(bare) => Ran::Done(bare.run(call, cx)),
            Self::Native(native) => Ran::Done(native.run(call.request, cx)),
        }
    }

    /// Finish a call that ended after yielding: give its instance back to `backend`'s pool
    /// (`None` when the deployment was replaced or removed meanwhile: the instance is dropped)
    /// and write its response.
    pub(crate) fn finish(
        backend: Option<&mut Backend>,
        ended: Ended,
        deployment: &str,
        id: RequestId,
        cx: &mut Cx<'_>,
    ) -> Outcome {
        let Ended {
            instance,
            invocation,
            outcome,
        } = ended;
        match (backend, instance) {
            (Some(Self::Edge(edge)), Returned::Edge(instance)) if edge.is_mapped() => {
                edge.give_back(instance, cx.counters)
            }
            (Some(Self::Http(http)), Returned::Http(instance)) if http.guest.is_mapped() => {
                http.give_back(instance, cx.counters)
            }
            // The deployment changed or was unmapped (LRU) meanwhile, or the call ran on no
            // instance: nothing goes back to a pool.
            _ => {}
        }
        settle(invocation, deployment, id, cx, outcome)
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
            Self::Http(_) | Self::HttpP3(_) | Self::Cgi(_) | Self::Bare(_) | Self::Native(_) => {
                None
            }
        }
    }

    /// Whether a component is mapped on this core (the LRU unmaps the least recently used).
    pub(crate) fn is_mapped(&self) -> bool {
        match self {
            Self::Edge(edge) => edge.is_mapped(),
            Self::Http(b) => b.guest.is_mapped(),
            Self::HttpP3(b) => b.guest.is_mapped(),
            Self::Cgi(b) => b.guest.is_mapped(),
            Self::Bare(b) => b.guest.is_mapped(),
            Self::Native(_) => false,
        }
    }

    /// Unmap the component and drop its instances; the next request maps it again.
    pub(crate) fn unmap(&mut self) {
        match self {
            Self::Edge(edge) => edge.unmap(),
            Self::Http(b) => b.unmap(),
            Self::HttpP3(b) => b.guest.unmap(),
            Self::Cgi(b) => b.guest.unmap(),
            Self::Bare(b) => b.guest.unmap(),
            Self::Native(_) => {}
        }
    }

    /// The instance pool, for the suite's misbehaviour tests.
    #[cfg(feature = "misbehave")]
    pub(crate) fn pool_mut(&mut self) -> Option<&mut crate::pool::InstancePool> {
        match self {
            Self::Edge(edge) => Some(edge.pool_mut()),
            _ => None,
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

/// How a WASIp3 deployment's requests run, whatever the instance mode.
const P3_INSTANCES: &str = "fresh (wasi:http@0.3 instances are not reset yet)";

/// How a deployment's requests run in instance mode `mode`: `reset`, `reset (after N warm-up
/// requests)`, `keep`, `fresh (why)` (for the log at start, and the control plane's listing).
pub fn describe_instances(
    kind: GuestKind,
    mode: crate::InstanceMode,
    resettable: &Result<(), percore_engine::NotResettable>,
    warmup: &percore_engine::Warmup,
) -> String {
    let input = percore_engine::InputPreference::default();
    match kind {
        GuestKind::Edge => {
            crate::pool::InstancePool::<percore_engine::Instance>::new(mode, resettable, 0)
                .with_warmup(warmup.clone(), input)
                .describe()
        }
        GuestKind::HttpP2 => {
            crate::pool::InstancePool::<percore_engine::HttpInstance>::new(mode, resettable, 0)
                .with_warmup(warmup.clone(), input)
                .describe()
        }
        GuestKind::HttpP3 => P3_INSTANCES.into(),
        GuestKind::Cgi => "fresh (a command runs once per request)".into(),
        GuestKind::Bare => "fresh (a new instance per call)".into(),
    }
}

/// A guest of one kind that a core maps on first use and may unmap (LRU): the artifact, and
/// the linked guest while mapped.
#[derive(Debug)]
pub(crate) struct Mapped<H> {
    artifact: PathBuf,
    guest: Option<H>,
    pick: fn(Guest) -> Option<H>,
}

impl<H> Mapped<H> {
    /// Map `artifact` now (a deployment that cannot be mapped is refused at deploy).
    pub(crate) fn load(
        engine: &Engine,
        artifact: &Path,
        pick: fn(Guest) -> Option<H>,
    ) -> Result<Self, percore_engine::Error> {
        let guest = map(engine, artifact, pick)?;
        Ok(Self {
            artifact: artifact.to_owned(),
            guest: Some(guest),
            pick,
        })
    }

    pub(crate) fn is_mapped(&self) -> bool {
        self.guest.is_some()
    }

    pub(crate) fn unmap(&mut self) {
        self.guest = None;
    }

    /// The guest, mapped again first if the LRU had unmapped it (that request is cold).
    pub(crate) fn get(&mut self, cx: &mut Cx<'_>, outcome: &mut Outcome) -> Result<&H, Fault> {
        if self.guest.is_none() {
            let guest = map(cx.engine, &self.artifact, self.pick).map_err(|e| Fault::Host {
                message: format!("cannot map the artifact: {e}"),
            })?;
            self.guest = Some(guest);
            cx.counters.artifacts_loaded += 1;
            outcome.cold = true;
        }
        Ok(self.guest.as_ref().expect("mapped above"))
    }
}

fn map<H>(
    engine: &Engine,
    artifact: &Path,
    pick: fn(Guest) -> Option<H>,
) -> Result<H, percore_engine::Error> {
    let guest = engine.load_guest_artifact(artifact)?;
    let kind = guest.kind();
    pick(guest).ok_or_else(|| {
        percore_engine::Error::WrongWorld(format!(
            "the artifact {} now holds a {kind} guest",
            artifact.display()
        ))
    })
}

impl Outcome {
    /// Nothing has happened yet.
    pub(crate) fn new() -> Self {
        Self {
            status: 0,
            fault: None,
            cpu_us: 0,
            cold: false,
            outbound: crate::link::OutboundUse::default(),
        }
    }
}

/// Meter an invocation, forward what the guest logged, and write its response or its fault.
pub(crate) fn settle(
    invocation: Invocation,
    deployment: &str,
    id: RequestId,
    cx: &mut Cx<'_>,
    mut outcome: Outcome,
) -> Outcome {
    outcome.cpu_us = invocation.stats.cpu.as_micros() as u64;
    outcome.outbound = invocation.stats.outbound.into();
    cx.counters.guest_requests += 1;
    cx.counters.request_copies += u64::from(invocation.stats.request_copies);
    cx.counters.request_bytes_copied += invocation.stats.request_bytes_copied as u64;
    let outbound = invocation.stats.outbound;
    if outbound.requests > 0 {
        cx.counters.outbound_requests += u64::from(outbound.requests);
        cx.counters.outbound_errors += u64::from(outbound.errors);
        cx.counters.outbound_bytes_out += outbound.bytes_out;
        cx.counters.outbound_bytes_in += outbound.bytes_in;
    }
    for record in &invocation.logs {
        log_guest(deployment, id, record);
    }
    match invocation.coredump {
        Some(percore_engine::CoreDump::Dump(dump)) => cx.coredump = Some(dump),
        Some(percore_engine::CoreDump::TooLarge { memory, limit }) => tracing::warn!(
            deployment,
            request = %id,
            "no core dump: the guest's memories take {memory} bytes, over the deployment's cap of {limit}"
        ),
        None => {}
    }
    if invocation.logs_dropped > 0 {
        cx.counters.guest_logs_dropped += invocation.logs_dropped as u64;
        tracing::warn!(
            deployment,
            request = %id,
            "{} guest log records dropped: the request reached its log cap",
            invocation.logs_dropped
        );
    }
    match invocation.result {
        Ok(response) => {
            outcome.status = cx.reply.response(&response);
            outcome
        }
        Err(fault) => fail(&fault, deployment, id, cx, outcome),
    }
}

/// Log a fault and answer it.
pub(crate) fn fail(
    fault: &Fault,
    deployment: &str,
    id: RequestId,
    cx: &mut Cx<'_>,
    mut outcome: Outcome,
) -> Outcome {
    match fault {
        Fault::Host { .. } => {
            tracing::error!(deployment, request = %id, kind = fault.kind(), "{fault}")
        }
        _ => tracing::warn!(deployment, request = %id, kind = fault.kind(), "{fault}"),
    }
    outcome.status = cx.reply.fault(fault, cx.counters);
    outcome.fault = Some(fault.kind());
    outcome
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
