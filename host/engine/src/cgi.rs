//! WASI command guests, run CGI style (RFC 3875, as WAGI does): the request body is the
//! command's stdin, the request its environment and arguments, its stdout the response (with
//! an optional CGI header block), its stderr the request's log. Each request runs a fresh
//! instance: `wasi:cli/run` is a one-shot entry point.
//!
//! A command comes as a component exporting `wasi:cli/run`, or as a WASI preview 1 core module
//! exporting `_start`, which runs as it is against wasmtime's own preview 1 implementation.
//! (Adapting such a module into a component puts the adapter's state in a page of the guest's
//! memory that the adapter grows for itself; Go's allocator assumes it owns all memory up to
//! its break and overwrites that page, so Go programs crashed that way.)

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use wasmtime::component::Component;
use wasmtime::{InstancePre, Module, Store};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;

use crate::budget::{classify, finish, new_store};
use crate::cgi_protocol::{self, CgiRequest};
use crate::host::HostState;
use crate::instance::{InputPath, Invocation};
use crate::response_check::check_parts;
use crate::running::{Running, TimeSlice};
use crate::wasi::{self, ResponseStdout};
use crate::{Engine, Error, Fault, Limits, Request, Response, TimeoutKind};

/// Longest CGI header block read from a command's stdout.
const MAX_CGI_HEAD: usize = 64 << 10;

/// Where a request arrived, for the CGI environment.
#[derive(Debug, Clone, Copy)]
pub struct CgiSite<'a> {
    /// The route prefix that matched (`SCRIPT_NAME`), `""` for the root route.
    pub route_prefix: &'a str,
    /// The server's name (`SERVER_NAME`): the request's host, else the listening address.
    pub server_name: &'a str,
    /// The listening port (`SERVER_PORT`).
    pub server_port: u16,
    /// The client's address (`REMOTE_ADDR`), if known.
    pub remote_addr: &'a str,
}

impl Default for CgiSite<'_> {
    fn default() -> Self {
        Self {
            route_prefix: "",
            server_name: "localhost",
            server_port: 80,
            remote_addr: "",
        }
    }
}

/// A linked WASI command, ready to instantiate.
#[derive(Clone)]
pub struct CgiHandler {
    entry: Entry,
    runtime: Arc<tokio::runtime::Runtime>,
}

/// What a request instantiates and runs.
#[derive(Clone)]
enum Entry {
    /// A component's `wasi:cli/run`.
    Component(CommandPre<HostState>),
    /// A preview 1 core module's `_start`.
    Module(InstancePre<HostState>),
}

impl std::fmt::Debug for CgiHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CgiHandler").finish_non_exhaustive()
    }
}

impl CgiHandler {
    pub(crate) fn new(engine: &Engine, component: &Component) -> Result<Self, Error> {
        let pre = engine
            .wasi_linker()
            .instantiate_pre(component)
            .map_err(|e| Error::Link(format!("{e:#}")))?;
        let pre = CommandPre::new(pre).map_err(|e| Error::WrongWorld(format!("{e:#}")))?;
        Ok(Self {
            entry: Entry::Component(pre),
            runtime: engine.runtime()?,
        })
    }

    /// A preview 1 command module (imports only `wasi_snapshot_preview1`, exports `_start`).
    pub(crate) fn from_module(engine: &Engine, module: &Module) -> Result<Self, Error> {
        let pre = engine
            .p1_linker()
            .instantiate_pre(module)
            .map_err(|e| Error::Link(format!("{e:#}")))?;
        Ok(Self {
            entry: Entry::Module(pre),
            runtime: engine.runtime()?,
        })
    }

    /// Run the command once for one request. Configuration values are added to the
    /// environment (never replacing a CGI variable).
    pub fn handle(
        &self,
        limits: Arc<Limits>,
        config: Arc<BTreeMap<String, String>>,
        request: &Request<'_>,
        site: &CgiSite<'_>,
    ) -> Invocation {
        let command = self.prepare(limits, config, request, site);
        self.runtime.block_on(command.run())
    }

    /// [`CgiHandler::handle`] as a call that yields every `slice` of running (see
    /// [`Running`]).
    pub fn start(
        &self,
        limits: Arc<Limits>,
        config: Arc<BTreeMap<String, String>>,
        request: &Request<'_>,
        site: &CgiSite<'_>,
        slice: TimeSlice,
    ) -> Running<()> {
        let mut command = self.prepare(limits, config, request, site);
        let (slices, wall_start) = slice.apply(command.store.data_mut());
        Running::new(
            async move { ((), command.run().await) },
            Some(self.runtime.clone()),
            slices,
            wall_start,
        )
    }

    /// The command's store for one request: its environment, arguments, stdin and stdout.
    fn prepare(
        &self,
        limits: Arc<Limits>,
        config: Arc<BTreeMap<String, String>>,
        request: &Request<'_>,
        site: &CgiSite<'_>,
    ) -> Command {
        let cgi = CgiRequest {
            method: request.method,
            path_with_query: request.path_with_query,
            headers: request.headers,
            body_len: request.body.len(),
            route_prefix: site.route_prefix,
            server_name: site.server_name,
            server_port: site.server_port,
            remote_addr: site.remote_addr,
        };
        let extra: Vec<(String, String)> =
            config.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let output = wasi::new_output(limits.max_output_bytes);
        let stdout = ResponseStdout::new(limits.max_response_body.saturating_add(MAX_CGI_HEAD));
        let mut builder = wasi::closed_builder(&output);
        builder
            .stdout(wasi::Output(stdout.clone()))
            .stdin(MemoryInputPipe::new(Bytes::copy_from_slice(request.body)))
            .envs(&cgi_protocol::environment(&cgi, &extra))
            .args(&cgi_protocol::arguments(&cgi));
        let (state, engine) = match &self.entry {
            Entry::Component(pre) => (
                HostState::with_wasi(limits.clone(), config, output, builder.build()),
                pre.engine(),
            ),
            Entry::Module(pre) => (
                HostState::with_p1(limits.clone(), config, output, builder.build_p1()),
                pre.module().engine(),
            ),
        };
        Command {
            store: new_store(engine, state),
            entry: self.entry.clone(),
            stdout,
            limits,
            body_len: request.body.len(),
        }
    }
}

/// One request's run of a command.
struct Command {
    store: Store<HostState>,
    entry: Entry,
    stdout: ResponseStdout,
    limits: Arc<Limits>,
    body_len: usize,
}

impl Command {
    async fn run(mut self) -> Invocation {
        let ran = run(&self.entry, &mut self.store, &self.limits).await;
        let limits = &self.limits;
        let (bytes, overflow) = self.stdout.take();
        let result = match ran {
            // A command stopped for writing too much reports that, not the failure it then hit.
            Ok(()) | Err(Fault::Trap { .. } | Fault::Exit { .. }) if overflow > 0 => {
                Err(Fault::ResponseTooLarge {
                    size: bytes.len() + overflow,
                    limit: limits.max_response_body,
                })
            }
            Ok(()) => response(bytes, limits),
            Err(fault) => Err(fault),
        };
        finish(
            &mut self.store,
            result,
            InputPath::Portable,
            2,
            self.body_len,
        )
    }
}

/// Instantiate and run the command within the wall deadline.
async fn run(entry: &Entry, store: &mut Store<HostState>, limits: &Limits) -> Result<(), Fault> {
    let deadline = limits.wall_deadline;
    let started = store.data().clock.wall_start;
    let call = async {
        match entry {
            Entry::Component(pre) => {
                let command = pre.instantiate_async(&mut *store).await?;
                command.wasi_cli_run().call_run(&mut *store).await
            }
            Entry::Module(pre) => {
                let instance = pre.instantiate_async(&mut *store).await?;
                let start = instance.get_typed_func::<(), ()>(&mut *store, "_start")?;
                start.call_async(&mut *store, ()).await.map(Ok)
            }
        }
    };
    let left = deadline.saturating_sub(started.elapsed());
    match tokio::time::timeout(left, call).await {
        Err(_) => Err(Fault::Timeout {
            kind: TimeoutKind::Wall,
            limit: deadline,
        }),
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(()))) => Err(Fault::Exit { code: 1 }),
        Ok(Err(e)) => match e.downcast_ref::<I32Exit>() {
            Some(I32Exit(0)) => Ok(()),
            // A runtime that exits when its memory cannot grow (Go's "out of memory") ran out
            // of memory, whatever status it chose.
            Some(I32Exit(_)) if store.data().memory.denied => Err(Fault::OutOfMemory {
                limit: store.data().memory.limit,
            }),
            Some(I32Exit(code)) => Err(Fault::Exit { code: *code }),
            None => Err(classify(store, e)),
        },
    }
}

/// The response a command's stdout makes.
fn response(mut stdout: Vec<u8>, limits: &Limits) -> Result<Response, Fault> {
    let parsed =
        cgi_protocol::parse_output(&stdout, MAX_CGI_HEAD).map_err(|e| Fault::BadResponse {
            reason: format!("malformed CGI output: {e}"),
        })?;
    let body = stdout.split_off(parsed.body_offset);
    check_parts(parsed.status, parsed.headers, body, limits)
}
