//! `wasi:http` guests (`wasi:http/incoming-handler@0.2.x`, the `wasi:http/proxy` world): the
//! request becomes an `incoming-request` whose body the host already holds, the response comes
//! back through the `response-outparam` and its body is drained, up to the deployment's limit,
//! while the guest writes it.
//!
//! wasmtime's wasi:http is asynchronous (a guest writing its body waits for the host to read
//! it; a guest that sleeps waits on a timer), so a call runs on a fiber driven by the core's
//! current-thread runtime, inside `block_on` only: never entered otherwise, so that the
//! synchronous WASI of `edge:handler` guests is not affected.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use percore_rt::host_memory::{HostMemoryStore, ResetStats};
use wasmtime::Store;
use wasmtime::component::{Component, InstancePre};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyIndices};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::budget::{classify, finish, new_store, start_clock};
use crate::globals::{self, BoundResets, GlobalResets, Step};
use crate::host::HostState;
use crate::instance::{CallStats, InputPath, Invocation, RESET_RESIDENT_BUDGET};
use crate::response_check::check_parts;
use crate::running::{Running, TimeSlice};
use crate::{
    Engine, Error, Fault, Limits, NotResettable, Request, ResetError, Response, TimeoutKind, wasi,
};

/// A linked `wasi:http` component, ready to instantiate.
#[derive(Clone)]
pub struct HttpHandler {
    pre: InstancePre<HostState>,
    indices: ProxyIndices,
    globals: GlobalResets,
    runtime: Arc<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for HttpHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpHandler").finish_non_exhaustive()
    }
}

/// What the guest sent back before the call ended.
type Outparam = Result<http::Response<HyperOutgoingBody>, ErrorCode>;

impl HttpHandler {
    pub(crate) fn new(engine: &Engine, component: &Component) -> Result<Self, Error> {
        let pre = engine
            .wasi_linker()
            .instantiate_pre(component)
            .map_err(|e| Error::Link(format!("{e:#}")))?;
        let indices = ProxyIndices::new(&pre).map_err(|e| Error::WrongWorld(format!("{e:#}")))?;
        Ok(Self {
            pre,
            indices,
            globals: GlobalResets::of(component),
            runtime: engine.runtime()?,
        })
    }

    /// A new instance for one deployment. The deployment's configuration values are the
    /// guest's environment variables.
    pub fn instantiate(
        &self,
        limits: Arc<Limits>,
        config: Arc<BTreeMap<String, String>>,
    ) -> Result<HttpInstance, Fault> {
        let output = wasi::new_output(limits.max_output_bytes);
        let mut builder = wasi::closed_builder(&output);
        for (k, v) in config.iter() {
            builder.env(k, v);
        }
        let state = HostState::with_wasi(limits, config, output, builder.build());
        let store = new_store(self.pre.engine(), state);
        let runtime = &self.runtime;
        let (mut memories, made) = HostMemoryStore::instantiate(store, |store| {
            let instance = runtime.block_on(self.pre.instantiate_async(&mut *store))?;
            let proxy = self.indices.load(&mut *store, &instance)?;
            Ok((proxy, self.globals.bind(store, &instance)?))
        });
        match made {
            Ok((proxy, globals)) => Ok(HttpInstance {
                memories,
                proxy,
                globals,
                runtime: self.runtime.clone(),
                usable: true,
                snapshot: false,
                requests: 0,
            }),
            Err(e) => Err(classify(memories.store(), e)),
        }
    }

    /// Run one request on a fresh instance that is dropped afterwards.
    pub fn handle(
        &self,
        limits: Arc<Limits>,
        config: Arc<BTreeMap<String, String>>,
        request: &Request<'_>,
    ) -> Invocation {
        match self.instantiate(limits, config) {
            Ok(mut instance) => instance.handle(request),
            Err(fault) => Invocation {
                result: Err(fault),
                logs: Vec::new(),
                logs_dropped: 0,
                coredump: None,
                stats: CallStats {
                    input: InputPath::Portable,
                    cpu: Duration::ZERO,
                    wall: Duration::ZERO,
                    request_copies: 0,
                    request_bytes_copied: 0,
                    yields: 0,
                    outbound: crate::OutboundStats::default(),
                },
            },
        }
    }
}

/// One live instance of a `wasi:http` component. It can serve many requests one at a time when
/// it is reset between them: its memory goes back to the snapshot taken after instantiation,
/// and only if the request left no resource behind in the host's table (a body, a stream, a
/// pollable the guest kept), since a reset restores memory and nothing else.
pub struct HttpInstance {
    memories: HostMemoryStore<HostState>,
    proxy: Proxy,
    /// The functions that save and put back the mutable globals, for a rewritten component.
    globals: Option<BoundResets>,
    runtime: Arc<tokio::runtime::Runtime>,
    usable: bool,
    snapshot: bool,
    requests: u64,
}

impl std::fmt::Debug for HttpInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpInstance")
            .field("usable", &self.usable)
            .field("requests", &self.requests)
            .finish_non_exhaustive()
    }
}

impl HttpInstance {
    /// False once the instance has faulted: it must then be dropped, never reused.
    pub fn is_usable(&self) -> bool {
        self.usable
    }

    /// Requests this instance has run.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// The store's host state, between calls.
    pub(crate) fn state_mut(&mut self) -> &mut HostState {
        self.memories.store().data_mut()
    }

    /// Take the snapshot [`HttpInstance::reset`] returns to. Only for components that pass
    /// [`crate::check_resettable`].
    pub fn prepare_reset(&mut self) -> Result<(), ResetError> {
        if !self.usable {
            return Err(ResetError::Faulted);
        }
        let memories = self.memories.memory_count();
        if memories != 1 {
            return Err(NotResettable::MemoryCount(memories).into());
        }
        // A warm-up request that left a resource behind would leave it in every reset.
        if !self.memories.store_ref().data().table.is_empty() {
            self.usable = false;
            return Err(ResetError::ResourcesLeft);
        }
        if let Err(e) = globals::run(self.globals.as_ref(), self.memories.store(), Step::Save) {
            self.usable = false;
            return Err(e);
        }
        self.memories.snapshot(0).map_err(ResetError::Snapshot)?;
        self.snapshot = true;
        Ok(())
    }

    /// Bring the instance back to its snapshot after a request. Fails (and the instance must
    /// be dropped) if it faulted, kept resources, has no snapshot, or its memory grew.
    pub fn reset(&mut self) -> Result<ResetStats, ResetError> {
        if !self.usable {
            return Err(ResetError::Faulted);
        }
        if !self.snapshot {
            return Err(ResetError::NoSnapshot);
        }
        if !self.memories.store_ref().data().table.is_empty() {
            self.usable = false;
            return Err(ResetError::ResourcesLeft);
        }
        let stats = self.memories.restore(RESET_RESIDENT_BUDGET).map_err(|e| {
            self.usable = false;
            ResetError::Restore(e)
        })?;
        if let Err(e) = globals::run(self.globals.as_ref(), self.memories.store(), Step::Reset) {
            self.usable = false;
            return Err(e);
        }
        Ok(stats)
    }

    /// Run one request.
    pub fn handle(&mut self, request: &Request<'_>) -> Invocation {
        let prepared = self.prepare(request);
        let runtime = self.runtime.clone();
        runtime.block_on(self.run(prepared))
    }

    /// Start one request as a call that yields every `slice` of running (see [`Running`]).
    /// The call owns the instance until it ends.
    pub fn start(mut self, request: &Request<'_>, slice: TimeSlice) -> Running<HttpInstance> {
        let prepared = self.prepare(request);
        let (slices, wall_start) = slice.apply(self.memories.store().data_mut());
        let runtime = self.runtime.clone();
        Running::new(
            async move {
                let invocation = self.run(prepared).await;
                (self, invocation)
            },
            Some(runtime),
            slices,
            wall_start,
        )
    }

    /// The request as wasi:http takes it, and the call's clock started.
    fn prepare(&mut self, request: &Request<'_>) -> Prepared {
        self.requests += 1;
        let store = self.memories.store();
        let state = store.data_mut();
        state.logs.clear();
        state.logs_dropped = 0;
        state.coredump = None;
        let incoming = if self.usable {
            start_clock(store);
            to_http(request)
        } else {
            Err(Fault::Poisoned)
        };
        Prepared {
            incoming,
            bytes: request.head_len() + request.body.len(),
        }
    }

    async fn run(&mut self, prepared: Prepared) -> Invocation {
        let store = self.memories.store();
        let result = match prepared.incoming {
            Ok(incoming) => {
                let limits = store.data().limits.clone();
                call(&self.proxy, store, incoming, &limits).await
            }
            Err(fault) => Err(fault),
        };
        if result.is_err() {
            self.usable = false;
        }
        finish(store, result, InputPath::Portable, 2, prepared.bytes)
    }
}

/// A request ready for its call.
struct Prepared {
    incoming: Result<http::Request<Full<Bytes>>, Fault>,
    /// Its size, for the call's statistics.
    bytes: usize,
}

/// Call `handle` and drain the response, all within the wall deadline.
async fn call(
    proxy: &Proxy,
    store: &mut Store<HostState>,
    incoming: http::Request<Full<Bytes>>,
    limits: &Limits,
) -> Result<Response, Fault> {
    let deadline = limits.wall_deadline;
    let started = store.data().clock.wall_start;
    let host_fault = |e: wasmtime::Error| Fault::Host {
        message: format!("cannot hand the request to the guest: {e:#}"),
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<Outparam>();
    let mut http = store.data_mut().http();
    let req = http
        .new_incoming_request(Scheme::Http, incoming)
        .map_err(host_fault)?;
    let out = http.new_response_outparam(tx).map_err(host_fault)?;
    let got_response = AtomicBool::new(false);
    let drained = drain(rx, limits.max_response_body, &got_response);
    let call = proxy
        .wasi_http_incoming_handler()
        .call_handle(&mut *store, req, out);
    let left = deadline.saturating_sub(started.elapsed());
    let outcome = tokio::time::timeout(left, call_and_drain(call, drained)).await;
    let (called, drained) = match outcome {
        Err(_) => {
            return Err(Fault::Timeout {
                kind: TimeoutKind::Wall,
                limit: deadline,
            });
        }
        Ok(both) => both,
    };
    match (called, drained) {
        (Some(Err(e)), _) => Err(classify(store, e)),
        // The body went past the limit (the call was abandoned), or the guest set an error.
        (_, Some(Err(fault))) => Err(fault),
        (Some(Ok(())), Some(Ok((parts, body)))) => {
            let headers = parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                .collect();
            check_parts(parts.status.as_u16(), headers, body, &store.data().limits)
        }
        (Some(Ok(())), None) if got_response.load(Ordering::Relaxed) => Err(Fault::BadResponse {
            reason: "the guest returned without finishing the response body \
                     (outgoing-body.finish was never called)"
                .into(),
        }),
        (Some(Ok(())), None) => Err(Fault::BadResponse {
            reason: "the guest returned without setting a response \
                     (response-outparam.set was never called)"
                .into(),
        }),
        (None, _) => Err(Fault::Host {
            message: "the call ended without a result".into(),
        }),
    }
}

/// The request as `wasi:http` types take it. Fields the `http` crate cannot represent (the
/// parser has already refused anything HTTP/1.1 forbids) are left out.
pub(crate) fn to_http(request: &Request<'_>) -> Result<http::Request<Full<Bytes>>, Fault> {
    let mut builder = http::Request::builder()
        .method(request.method)
        .uri(request.path_with_query);
    let mut has_host = false;
    if let Some(headers) = builder.headers_mut() {
        for (name, value) in request.headers {
            let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_bytes(value),
            ) else {
                continue;
            };
            has_host |= name == http::header::HOST;
            headers.append(name, value);
        }
        // An HTTP/1.0 request may come without `Host`; wasi:http needs an authority.
        if !has_host {
            headers.insert(
                http::header::HOST,
                http::HeaderValue::from_static("localhost"),
            );
        }
    }
    builder
        .body(Full::new(Bytes::copy_from_slice(request.body)))
        .map_err(|e| Fault::Host {
            message: format!("the request cannot be given to a wasi:http guest: {e}"),
        })
}

/// The response and its whole body, read as the guest writes it. Stops at the first byte past
/// `max_body`.
async fn drain(
    rx: tokio::sync::oneshot::Receiver<Outparam>,
    max_body: usize,
    got_response: &AtomicBool,
) -> Result<(http::response::Parts, Vec<u8>), Fault> {
    let bad = |reason: String| Fault::BadResponse { reason };
    let response = match rx.await {
        Ok(Ok(response)) => response,
        Ok(Err(code)) => {
            return Err(bad(format!(
                "the guest set an error instead of a response: {code:?}"
            )));
        }
        // The outparam was dropped: the call is ending without a response; `run` says so.
        Err(_) => std::future::pending().await,
    };
    got_response.store(true, Ordering::Relaxed);
    let (parts, mut body) = response.into_parts();
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| bad(format!("the response body failed: {e:?}")))?;
        if let Ok(data) = frame.into_data() {
            let size = bytes.len() + data.len();
            if size > max_body {
                return Err(Fault::ResponseTooLarge {
                    size,
                    limit: max_body,
                });
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok((parts, bytes))
}

/// Poll the guest's call and the drain of its response together until the call ends (its
/// body writes wait for the drain), then give the drain one more chance: a response whose body
/// is complete is done by then. Returns early if the drain fails (the body went past the limit):
/// the call is then dropped.
async fn call_and_drain<C, D>(call: C, drain: D) -> (Option<C::Output>, Option<D::Output>)
where
    C: Future,
    D: Future<Output = Result<(http::response::Parts, Vec<u8>), Fault>>,
{
    let mut call = pin!(call);
    let mut drain = pin!(drain);
    let mut called = None;
    let mut drained = None;
    std::future::poll_fn(|cx| {
        if called.is_none()
            && let Poll::Ready(out) = call.as_mut().poll(cx)
        {
            called = Some(out);
        }
        if drained.is_none()
            && let Poll::Ready(out) = drain.as_mut().poll(cx)
        {
            let failed = out.is_err();
            drained = Some(out);
            if failed {
                return Poll::Ready(());
            }
        }
        if called.is_some() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    (called, drained)
}
