//! The percore engine: runs guests of every kind percore serves: `edge:handler` components,
//! `wasi:http` components, WASI commands (CGI style) and bare core modules ([`GuestKind`],
//! told from the binary by [`detect`]).
//!
//! - [`Engine`] holds a wasmtime engine configured for percore (host-owned static memories with
//!   guard regions, epoch interruption) and the linker with the host's imports: the
//!   `edge:handler` capabilities and a closed WASI sandbox.
//! - [`Engine::compile`] validates a component and compiles it ahead of time to an artifact;
//!   [`Engine::load_artifact`] maps an artifact back. The data plane only ever does the latter.
//!   An [`ArtifactCache`] keeps artifacts on disk by content, so a component is compiled once.
//! - A [`Handler`] is a loaded, linked and checked component; [`Handler::instantiate`] makes an
//!   [`Instance`], and [`Instance::handle`] runs one request under the deployment's [`Limits`],
//!   turning every guest fault into a typed [`Fault`].
#![forbid(unsafe_code)]

mod adapt;
mod allowed_hosts;
mod artifacts;
mod bare;
mod bindings;
mod budget;
mod cgi;
mod cgi_protocol;
mod config;
mod contract_v1;
mod error;
mod globals;
mod host;
mod instance;
mod kind;
mod message;
mod outbound;
mod response_check;
mod running;
mod state;
mod ticker;
mod validate;
mod warmup;
mod wasi;
mod wasi_http;
mod wasi_http_p3;

pub use allowed_hosts::{AllowedHosts, AllowedHostsError, Origin, Scheme};
pub use artifacts::{ArtifactCache, Cached, sha256_hex, write_artifact};
pub use bare::BareHandler;
pub use cgi::{CgiHandler, CgiSite};
pub use config::{EngineConfig, Limits};
pub use error::{Error, Fault, TimeoutKind};
pub use host::{CoreDump, LogLevel, LogRecord, LogSource};
pub use instance::{
    CallStats, Handler, InputPath, InputPreference, Instance, Invocation, ResetError, StreamedBody,
};
pub use kind::{Detected, GuestKind, UnknownKind, detect, kind_of};
pub use message::{Request, Response};
pub use outbound::{
    OutboundClient, OutboundError, OutboundFuture, OutboundPolicy, OutboundRequest,
    OutboundResponse, OutboundStats, check_request, fetch_on_this_thread, set_thread_client,
};
pub use percore_rt::host_memory::{ResetStats, SnapshotError};
pub use running::{Running, TimeSlice};
pub use state::{NotResettable, check_resettable};
pub use ticker::EpochTicker;
pub use warmup::{MAX_WARMUP_REQUESTS, WARMUP_HEADERS, Warmup, WarmupError, WarmupRequest};
pub use wasi_http::{HttpHandler, HttpInstance};
pub use wasi_http_p3::HttpP3Handler;

use std::borrow::Cow;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::Module;
use wasmtime::component::{Component, Linker};

use crate::host::HostState;

/// The version of the `edge:handler` contract this engine implements.
pub const CONTRACT_VERSION: &str = "0.2.0";

/// A wasmtime engine set up for percore, with its linker.
pub struct Engine {
    inner: wasmtime::Engine,
    /// `edge:handler` imports and synchronous WASI.
    linker: Arc<Linker<HostState>>,
    /// Asynchronous WASI 0.2 and wasi:http, for wasi:http and command guests.
    wasi_linker: Arc<Linker<HostState>>,
    /// The `platform` imports of bare modules.
    bare_linker: Arc<wasmtime::Linker<HostState>>,
    /// WASI preview 1, for command modules.
    p1_linker: Arc<wasmtime::Linker<HostState>>,
    /// WASIp3 guests (`wasi:http@0.3`): an engine with the component model's concurrency,
    /// which every other kind runs without (it costs every call and store, and its
    /// artifacts are of another format), and its linker.
    p3: wasmtime::Engine,
    p3_linker: Arc<Linker<HostState>>,
    /// Drives asynchronous guest calls on this engine's thread (made on first use).
    runtime: OnceLock<Arc<tokio::runtime::Runtime>>,
    config: EngineConfig,
    _ticker: Option<EpochTicker>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine with its own epoch ticker thread.
    pub fn new(config: EngineConfig) -> Result<Self, Error> {
        let mut engine = Self::without_ticker(config)?;
        engine._ticker = Some(EpochTicker::start(
            engine.wasmtime_engines(),
            engine.config.epoch_tick,
        ));
        Ok(engine)
    }

    /// An engine whose epoch someone else ticks (see [`EpochTicker`]): the data plane runs one
    /// ticker for all its per-core engines. Without a ticker, CPU budgets and deadlines are
    /// never enforced.
    pub fn without_ticker(config: EngineConfig) -> Result<Self, Error> {
        let inner = wasmtime::Engine::new(&config.wasmtime_config()).map_err(Error::engine)?;
        let mut linker = Linker::new(&inner);
        host::add_to_linker(&mut linker).map_err(Error::engine)?;
        let mut wasi_linker = Linker::new(&inner);
        host::add_wasi_to_linker(&mut wasi_linker).map_err(Error::engine)?;
        let mut bare_linker = wasmtime::Linker::new(&inner);
        bare::add_platform_to_linker(&mut bare_linker).map_err(Error::engine)?;
        let mut p1_linker = wasmtime::Linker::new(&inner);
        wasmtime_wasi::p1::add_to_linker_async(&mut p1_linker, HostState::p1)
            .map_err(Error::engine)?;
        let p3 = wasmtime::Engine::new(&config.p3_wasmtime_config()).map_err(Error::engine)?;
        let mut p3_linker = Linker::new(&p3);
        host::add_p3_to_linker(&mut p3_linker).map_err(Error::engine)?;
        Ok(Self {
            inner,
            linker: Arc::new(linker),
            wasi_linker: Arc::new(wasi_linker),
            bare_linker: Arc::new(bare_linker),
            p1_linker: Arc::new(p1_linker),
            p3,
            p3_linker: Arc::new(p3_linker),
            runtime: OnceLock::new(),
            config,
            _ticker: None,
        })
    }

    /// The wasmtime engine inside (of every kind of guest but WASIp3).
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner
    }

    /// Every wasmtime engine inside, for an [`EpochTicker`]: the main one and WASIp3's.
    pub fn wasmtime_engines(&self) -> Vec<wasmtime::Engine> {
        vec![self.inner.clone(), self.p3.clone()]
    }

    /// The wasmtime engine a kind of guest is compiled for and runs on.
    fn engine_for(&self, kind: GuestKind) -> &wasmtime::Engine {
        match kind {
            GuestKind::HttpP3 => &self.p3,
            _ => &self.inner,
        }
    }

    /// This engine's configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The tick of the epoch clock, which is the granularity of budgets and deadlines.
    pub fn epoch_tick(&self) -> Duration {
        self.config.epoch_tick
    }

    /// Validate a guest of any kind (binary, or text format) and compile it ahead of time.
    /// Returns the artifact bytes for [`Engine::load_artifact`].
    pub fn compile(&self, bytes: &[u8]) -> Result<Vec<u8>, Error> {
        self.compile_guest(bytes).map(|c| c.artifact)
    }

    /// Tell a guest's kind, check it and compile it ahead of time.
    pub fn compile_guest(&self, bytes: &[u8]) -> Result<Compiled, Error> {
        let detected = detect(bytes)?;
        let kind = detected.kind;
        let artifact = match self.compile_detected(&detected)? {
            Compiledcode::Module(module) => module.serialize(),
            Compiledcode::Component(component) => component.serialize(),
        }
        .map_err(Error::engine)?;
        Ok(Compiled { kind, artifact })
    }

    fn compile_detected(&self, detected: &Detected<'_>) -> Result<Compiledcode, Error> {
        if detected.core_module {
            let module = Module::new(&self.inner, &detected.bytes)
                .map_err(|e| Error::Invalid(format!("{e:#}")))?;
            return Ok(Compiledcode::Module(module));
        }
        let bytes = match detected.kind {
            // Instances of these kinds are pooled and reset.
            GuestKind::Edge | GuestKind::HttpP2 => state::with_global_resets(&detected.bytes)?,
            _ => Cow::Borrowed(&detected.bytes[..]),
        };
        let component = validate::compile_component(self.engine_for(detected.kind), &bytes)?;
        self.check(&component, detected.kind)?;
        Ok(Compiledcode::Component(component))
    }

    /// Validate and compile an `edge:handler` component in memory and link it.
    pub fn load(&self, bytes: &[u8]) -> Result<Handler, Error> {
        let bytes = validate::binary(bytes)?;
        let component = validate::compile(&self.inner, &state::with_global_resets(&bytes)?)?;
        self.check(&component, GuestKind::Edge)?;
        Handler::new(self, component)
    }

    /// Validate and compile a guest of any kind in memory and link it.
    pub fn load_guest(&self, bytes: &[u8]) -> Result<Guest, Error> {
        let detected = detect(bytes)?;
        match self.compile_detected(&detected)? {
            Compiledcode::Module(module) => self.link_module(&module),
            Compiledcode::Component(component) => self.link(component, detected.kind),
        }
    }

    /// Map an `edge:handler` artifact from [`Engine::compile`] and link it. No compilation
    /// happens here.
    pub fn load_artifact(&self, path: &Path) -> Result<Handler, Error> {
        match self.load_guest_artifact(path)? {
            Guest::Edge(handler) => Ok(handler),
            other => Err(Error::WrongWorld(format!(
                "the artifact {} is a {} guest, not edge:handler",
                path.display(),
                other.kind()
            ))),
        }
    }

    /// Map an artifact of any kind of guest and link it; its kind comes from its exports.
    pub fn load_guest_artifact(&self, path: &Path) -> Result<Guest, Error> {
        let artifact_error = |e: wasmtime::Error| Error::Artifact {
            path: path.to_owned(),
            reason: format!("{e:#}"),
        };
        if wasmtime::Engine::detect_precompiled_file(path).map_err(artifact_error)?
            == Some(wasmtime::Precompiled::Module)
        {
            let module =
                percore_rt::artifact::load_module(&self.inner, path).map_err(artifact_error)?;
            return self.link_module(&module);
        }
        // A WASIp3 artifact loads only into the engine it was compiled for (wasmtime checks).
        let component = match percore_rt::artifact::load_component(&self.inner, path) {
            Ok(component) => component,
            Err(e) => percore_rt::artifact::load_component(&self.p3, path)
                .map_err(|_| artifact_error(e))?,
        };
        let exports: Vec<String> = component
            .component_type()
            .exports(component.engine())
            .map(|(n, _)| n.to_owned())
            .collect();
        let kind = kind::component_kind(&exports).ok_or_else(|| {
            Error::UnknownKind(format!("an artifact exporting {}", exports.join(", ")))
        })?;
        self.check(&component, kind)?;
        self.link(component, kind)
    }

    /// Load a guest or an artifact of any kind from a file, whichever it is.
    pub fn load_file(&self, path: &Path) -> Result<Guest, Error> {
        let bytes = std::fs::read(path).map_err(|e| Error::Io {
            path: path.to_owned(),
            error: e,
        })?;
        if wasmtime::Engine::detect_precompiled(&bytes).is_some() {
            drop(bytes);
            self.load_guest_artifact(path)
        } else {
            self.load_guest(&bytes)
        }
    }

    fn link(&self, component: Component, kind: GuestKind) -> Result<Guest, Error> {
        Ok(match kind {
            GuestKind::Edge => Guest::Edge(Handler::new(self, component)?),
            GuestKind::HttpP2 => Guest::Http(HttpHandler::new(self, &component)?),
            GuestKind::Cgi => Guest::Cgi(CgiHandler::new(self, &component)?),
            GuestKind::HttpP3 => Guest::HttpP3(HttpP3Handler::new(self, &component)?),
            GuestKind::Bare => unreachable!("bare guests are core modules"),
        })
    }

    fn link_module(&self, module: &Module) -> Result<Guest, Error> {
        if module.imports().any(|i| i.module() == kind::PREVIEW1) {
            return Ok(Guest::Cgi(CgiHandler::from_module(self, module)?));
        }
        Ok(Guest::Bare(BareHandler::new(self, module)?))
    }

    fn check(&self, component: &Component, kind: GuestKind) -> Result<(), Error> {
        if wasmtime::Engine::same(component.engine(), &self.p3) != (kind == GuestKind::HttpP3) {
            return Err(Error::WrongWorld(format!(
                "a {kind} guest compiled for the other engine (WASIp3 guests have their own)"
            )));
        }
        validate::check_imports(component.engine(), component, kind)?;
        if kind == GuestKind::Edge {
            validate::check_exports(&self.inner, component)?;
        }
        Ok(())
    }

    pub(crate) fn wasi_linker(&self) -> &Linker<HostState> {
        &self.wasi_linker
    }

    pub(crate) fn bare_linker(&self) -> &wasmtime::Linker<HostState> {
        &self.bare_linker
    }

    pub(crate) fn p1_linker(&self) -> &wasmtime::Linker<HostState> {
        &self.p1_linker
    }

    pub(crate) fn p3_linker(&self) -> &Linker<HostState> {
        &self.p3_linker
    }

    /// The current-thread runtime that drives this engine's asynchronous guest calls (only
    /// inside `block_on`; never entered otherwise).
    pub(crate) fn runtime(&self) -> Result<Arc<tokio::runtime::Runtime>, Error> {
        if let Some(runtime) = self.runtime.get() {
            return Ok(runtime.clone());
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| Error::engine(format!("cannot start the async runtime: {e}")))?;
        Ok(self.runtime.get_or_init(|| Arc::new(runtime)).clone())
    }

    /// One turn of the runtime that drives wasi:http and command calls, if it was made: its
    /// ready tasks run and its due timers fire, waking the calls that wait on them. The caller
    /// turns it while such calls are in flight.
    pub fn turn_runtime(&self) {
        if let Some(runtime) = self.runtime.get() {
            runtime.block_on(tokio::task::yield_now());
        }
    }

    pub(crate) fn linker(&self) -> &Linker<HostState> {
        &self.linker
    }
}

/// A compiled guest: its kind and its artifact's bytes.
#[derive(Debug)]
pub struct Compiled {
    /// What kind of guest it is.
    pub kind: GuestKind,
    /// The artifact (for [`Engine::load_guest_artifact`]).
    pub artifact: Vec<u8>,
}

enum Compiledcode {
    Module(Module),
    Component(Component),
}

/// A loaded, linked guest of any kind.
#[derive(Debug, Clone)]
pub enum Guest {
    /// An `edge:handler` component.
    Edge(Handler),
    /// A `wasi:http@0.2` component.
    Http(HttpHandler),
    /// A `wasi:http@0.3` (WASIp3) component.
    HttpP3(HttpP3Handler),
    /// A WASI command, run CGI style.
    Cgi(CgiHandler),
    /// A bare core module.
    Bare(BareHandler),
}

impl Guest {
    /// Its kind.
    pub fn kind(&self) -> GuestKind {
        match self {
            Guest::Edge(_) => GuestKind::Edge,
            Guest::Http(_) => GuestKind::HttpP2,
            Guest::HttpP3(_) => GuestKind::HttpP3,
            Guest::Cgi(_) => GuestKind::Cgi,
            Guest::Bare(_) => GuestKind::Bare,
        }
    }
}
