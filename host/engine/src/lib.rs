//! The percore engine: runs `edge:handler` components.
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

mod artifacts;
mod bindings;
mod budget;
mod config;
mod error;
mod host;
mod instance;
mod message;
mod response_check;
mod state;
mod ticker;
mod validate;
mod wasi;

pub use artifacts::{ArtifactCache, Cached, sha256_hex, write_artifact};
pub use config::{EngineConfig, Limits};
pub use error::{Error, Fault, TimeoutKind};
pub use host::{LogLevel, LogRecord, LogSource};
pub use instance::{
    CallStats, Handler, InputPath, InputPreference, Instance, Invocation, ResetError, StreamedBody,
};
pub use message::{Request, Response};
pub use percore_rt::host_memory::{ResetStats, SnapshotError};
pub use state::{NotResettable, check_resettable};
pub use ticker::EpochTicker;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, Linker};

use crate::host::HostState;

/// The version of the `edge:handler` contract this engine implements.
pub const CONTRACT_VERSION: &str = "0.1.0";

/// A wasmtime engine set up for percore, with its linker.
pub struct Engine {
    inner: wasmtime::Engine,
    linker: Arc<Linker<HostState>>,
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
            vec![engine.inner.clone()],
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
        Ok(Self {
            inner,
            linker: Arc::new(linker),
            config,
            _ticker: None,
        })
    }

    /// The wasmtime engine inside, for an [`EpochTicker`].
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner
    }

    /// This engine's configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The tick of the epoch clock, which is the granularity of budgets and deadlines.
    pub fn epoch_tick(&self) -> Duration {
        self.config.epoch_tick
    }

    /// Validate a component (binary, or component text format) and compile it ahead of time.
    /// Returns the artifact bytes for [`Engine::load_artifact`].
    pub fn compile(&self, bytes: &[u8]) -> Result<Vec<u8>, Error> {
        let component = validate::compile(&self.inner, bytes)?;
        self.check(&component)?;
        component.serialize().map_err(Error::engine)
    }

    /// Validate and compile a component in memory and link it, ready to instantiate.
    pub fn load(&self, bytes: &[u8]) -> Result<Handler, Error> {
        let component = validate::compile(&self.inner, bytes)?;
        self.check(&component)?;
        Handler::new(self, component)
    }

    /// Map an artifact from [`Engine::compile`] and link it. No compilation happens here.
    pub fn load_artifact(&self, path: &Path) -> Result<Handler, Error> {
        let component = percore_rt::artifact::load_component(&self.inner, path).map_err(|e| {
            Error::Artifact {
                path: path.to_owned(),
                reason: format!("{e:#}"),
            }
        })?;
        self.check(&component)?;
        Handler::new(self, component)
    }

    /// Load either a component or an artifact from a file, whichever it is.
    pub fn load_file(&self, path: &Path) -> Result<Handler, Error> {
        let bytes = std::fs::read(path).map_err(|e| Error::Io {
            path: path.to_owned(),
            error: e,
        })?;
        if wasmtime::Engine::detect_precompiled(&bytes).is_some() {
            drop(bytes);
            self.load_artifact(path)
        } else {
            self.load(&bytes)
        }
    }

    fn check(&self, component: &Component) -> Result<(), Error> {
        validate::check_imports(&self.inner, component)?;
        validate::check_exports(&self.inner, component)
    }

    pub(crate) fn linker(&self) -> &Linker<HostState> {
        &self.linker
    }
}
