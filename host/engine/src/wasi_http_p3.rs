//! `wasi:http@0.3` guests (WASIp3: a component exporting `wasi:http/handler@0.3.x`, the world
//! Spin 4's SDK and the `wasip3` crate build). The handler takes a `request` resource and
//! returns a `response` or an `error-code`; the body comes back as a stream that the guest may
//! go on writing after it returned (from a task it spawned), so the host reads it to its end,
//! up to the deployment's limit, inside the same run of the store's event loop.
//!
//! WASIp3 needs wasmtime's component-model concurrency, which changes the cost of every call
//! and the format of every artifact: these guests get an engine of their own
//! ([`crate::Engine::p3`]), and every other kind keeps running without it.
//!
//! Each request runs on a fresh instance. A reset would also have to know that no task of the
//! guest is left in the store, and wasmtime 48 gives no way to ask that or to cancel one.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime::Store;
use wasmtime::component::{Accessor, Component};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p3::bindings::ServicePre;

use crate::budget::{classify, finish, new_store};
use crate::host::HostState;
use crate::instance::{InputPath, Invocation};
use crate::response_check::check_parts;
use crate::running::{Running, TimeSlice};
use crate::{Engine, Error, Fault, Limits, Request, Response, TimeoutKind, wasi};

/// A linked `wasi:http@0.3` component, ready to instantiate.
#[derive(Clone)]
pub struct HttpP3Handler {
    pre: ServicePre<HostState>,
    runtime: Arc<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for HttpP3Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpP3Handler").finish_non_exhaustive()
    }
}

/// What the guest answered: the response's head and its whole body, or the fault that ended
/// the call. The outer error is wasmtime's (a trap, a budget), classified afterwards.
type Answer = wasmtime::Result<Result<(http::response::Parts, Vec<u8>), Fault>>;

/// What tells the guest how the request's body was delivered.
type RequestIo = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
>;

impl HttpP3Handler {
    pub(crate) fn new(engine: &Engine, component: &Component) -> Result<Self, Error> {
        let pre = engine
            .p3_linker()
            .instantiate_pre(component)
            .map_err(|e| Error::Link(format!("{e:#}")))?;
        let pre = ServicePre::new(pre).map_err(|e| Error::WrongWorld(format!("{e:#}")))?;
        Ok(Self {
            pre,
            runtime: engine.runtime()?,
        })
    }

    /// Run one request on a fresh instance, dropped afterwards. The deployment's configuration
    /// values are the guest's environment variables.
    pub fn handle(
        &self,
        limits: Arc<Limits>,
        config: Arc<BTreeMap<String, String>>,
        request: &Request<'_>,
    ) -> Invocation {
        let call = self.prepare(limits, config, request);
        self.runtime.block_on(call.run())
    }

    /// [`HttpP3Handler::handle`] as a call that yields every `slice` of running (see
    /// [`Running`]).
    pub fn start(
        &self,
        limits: Arc<Limits>,
        config: Arc<BTreeMap<String, String>>,
        request: &Request<'_>,
        slice: TimeSlice,
    ) -> Running<()> {
        let mut call = self.prepare(limits, config, request);
        let (slices, wall_start) = slice.apply(call.store.data_mut());
        Running::new(
            async move { ((), call.run().await) },
            Some(self.runtime.clone()),
            slices,
            wall_start,
        )
    }

    /// The store for one request (its clock started) and the request as `http` types.
    fn prepare(
        &self,
        limits: Arc<Limits>,
        config: Arc<BTreeMap<String, String>>,
        request: &Request<'_>,
    ) -> Call {
        let output = wasi::new_output(limits.max_output_bytes);
        let mut builder = wasi::closed_builder(&output);
        for (k, v) in config.iter() {
            builder.env(k, v);
        }
        let state = HostState::with_wasi(limits, config, output, builder.build());
        Call {
            store: new_store(self.pre.engine(), state),
            pre: self.pre.clone(),
            incoming: to_http(request),
            bytes: request.head_len() + request.body.len(),
        }
    }
}

/// One request's run of a fresh instance.
struct Call {
    store: Store<HostState>,
    pre: ServicePre<HostState>,
    incoming: Result<http::Request<Full<Bytes>>, Fault>,
    /// The request's size, for the call's statistics.
    bytes: usize,
}

impl Call {
    async fn run(mut self) -> Invocation {
        let result = match self.incoming {
            Ok(incoming) => call(&self.pre, &mut self.store, incoming).await,
            Err(fault) => Err(fault),
        };
        finish(&mut self.store, result, InputPath::Portable, 2, self.bytes)
    }
}

/// Instantiate, call `handle` and read the response's body to its end, all within the wall
/// deadline.
async fn call(
    pre: &ServicePre<HostState>,
    store: &mut Store<HostState>,
    incoming: http::Request<Full<Bytes>>,
) -> Result<Response, Fault> {
    let limits = store.data().limits.clone();
    let left = limits
        .wall_deadline
        .saturating_sub(store.data().clock.wall_start.elapsed());
    let max_body = limits.max_response_body;
    let answer = tokio::time::timeout(left, async {
        let service = pre.instantiate_async(&mut *store).await?;
        let answer: Answer = store
            .run_concurrent(async move |accessor: &Accessor<HostState>| {
                let (request, request_io) = accessor.with(|mut access| {
                    let (request, io) = wasmtime_wasi_http::p3::Request::from_http(
                        access.get().http().hooks,
                        incoming,
                    );
                    // Boxed: the future must not keep the borrow of the hooks it was made with.
                    (request, Box::pin(io) as RequestIo)
                });
                let response = match service.handle(accessor, request).await? {
                    Ok(response) => response,
                    Err(code) => {
                        return Ok(Err(bad(format!(
                            "the guest returned an error instead of a response: {code:?}"
                        ))));
                    }
                };
                let response =
                    match accessor.with(|mut access| response.into_http(&mut access, request_io)) {
                        Ok(response) => response,
                        // A malformed `content-length`, say: the guest's response, not a trap.
                        Err(e) => return Ok(Err(bad(format!("the response is malformed: {e:#}")))),
                    };
                let (parts, mut body) = response.into_parts();
                // Only the store's event loop moves the body's bytes: read it here, in the run.
                let mut chunks = Vec::new();
                let mut size = 0;
                while let Some(frame) = body.frame().await {
                    let frame = match frame {
                        Ok(frame) => frame,
                        Err(e) => return Ok(Err(bad(format!("the response body failed: {e:?}")))),
                    };
                    if let Ok(data) = frame.into_data() {
                        size += data.len();
                        if size > max_body {
                            return Ok(Err(Fault::ResponseTooLarge {
                                size,
                                limit: max_body,
                            }));
                        }
                        chunks.push(data);
                    }
                }
                // One copy, of exactly the body's size.
                Ok(Ok((parts, chunks.concat())))
            })
            .await?;
        answer
    })
    .await;
    let (parts, body) = match answer {
        Err(_elapsed) => {
            return Err(Fault::Timeout {
                kind: TimeoutKind::Wall,
                limit: limits.wall_deadline,
            });
        }
        Ok(Err(e)) => return Err(classify(store, e)),
        Ok(Ok(answer)) => answer?,
    };
    let headers = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    check_parts(parts.status.as_u16(), headers, body, &limits)
}

fn bad(reason: String) -> Fault {
    Fault::BadResponse { reason }
}

/// The request as WASIp3 takes it: an absolute URI, its authority from `Host` (what the guest's
/// `get-authority` returns).
fn to_http(request: &Request<'_>) -> Result<http::Request<Full<Bytes>>, Fault> {
    let mut incoming = crate::wasi_http::to_http(request)?;
    let authority = incoming
        .headers()
        .get(http::header::HOST)
        .and_then(|v| http::uri::Authority::try_from(v.as_bytes()).ok())
        .unwrap_or_else(|| http::uri::Authority::from_static("localhost"));
    let mut parts = incoming.uri().clone().into_parts();
    parts.scheme = Some(http::uri::Scheme::HTTP);
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    *incoming.uri_mut() = http::Uri::from_parts(parts).map_err(|e| Fault::Host {
        message: format!("the request cannot be given to a wasi:http@0.3 guest: {e}"),
    })?;
    Ok(incoming)
}
