//! percore's data plane: one pinned thread per core, each with its own io_uring, its own
//! `SO_REUSEPORT` listening socket, its own wasmtime engine, instances and connections. Nothing
//! on the request path is shared between cores: no locks, no atomic reference counts. What crosses
//! threads is read-only (the configuration) or a once-a-second counter snapshot.
#![forbid(unsafe_code)]

// The request path, in the order a request takes it: shard (event loop) -> conn (a
// connection's state) -> intake (bytes to complete requests) -> dispatch (route, run, meter)
// -> backend/edge (an edge:handler instance from the pool).
mod backend;
mod conn;
mod counters;
mod deployments;
mod dispatch;
mod intake;
mod link;
mod meter;
#[cfg(feature = "misbehave")]
mod misbehave;
mod outbound;
pub use outbound::OutboundLimits;
mod pool;
mod prepare;
mod respond;
mod router;
mod shard;

pub use backend::describe_instances;
pub use counters::{Counters, LATENCY_BUCKETS_US};
pub use link::{
    ApplyError, COMMAND_QUEUE, Command, CoreLink, InvocationRecord, OutboundUse, RECORD_QUEUE,
    Ready, Report,
};
#[cfg(feature = "misbehave")]
pub use misbehave::Misbehaviour;
pub use router::{DEFAULT_MAX_INSTANCES_PER_CORE, DeploymentSpec, RouteSpec};

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use percore_engine::{Engine, EngineConfig, EpochTicker, InputPreference};

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A socket could not be set up.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A deployment could not be loaded.
    #[error("deployment `{name}`: {source}")]
    Deployment {
        /// The deployment.
        name: String,
        /// Why.
        source: percore_engine::Error,
    },
    /// The engine could not be created.
    #[error(transparent)]
    Engine(#[from] percore_engine::Error),
    /// A shard could not start (its ring, its thread).
    #[error("core {core}: {source}")]
    Shard {
        /// The CPU.
        core: usize,
        /// Why.
        source: std::io::Error,
    },
    /// No CPU to run a shard on.
    #[error("no cores to run on")]
    NoCores,
    /// A shard thread ended before it said it was ready.
    #[error("a shard died while starting")]
    ShardDied,
}

/// What a request runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InstanceMode {
    /// A new instance per request, dropped afterwards: always clean, about 30 µs.
    Fresh,
    /// A per-core, per-deployment pool of instances; after each request the instance's memory
    /// goes back to the snapshot taken right after instantiation (only the pages written are
    /// copied back). Clean like a fresh instance, about 2 µs. Components that keep state outside
    /// their memory (see `percore_engine::check_resettable`) and kernels without
    /// `PAGEMAP_SCAN` fall back to `Fresh`.
    #[default]
    Reset,
    /// Pooled instances that keep their memory from one request to the next of the same
    /// deployment (never across deployments). Fastest; guests see earlier requests' state.
    Keep,
}

/// An instance mode that is none of `fresh`, `reset`, `keep`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown instance mode `{0}` (expected fresh, reset or keep)")]
pub struct UnknownInstanceMode(pub String);

impl std::str::FromStr for InstanceMode {
    type Err = UnknownInstanceMode;
    fn from_str(s: &str) -> Result<Self, UnknownInstanceMode> {
        match s {
            "fresh" => Ok(Self::Fresh),
            "reset" => Ok(Self::Reset),
            "keep" => Ok(Self::Keep),
            _ => Err(UnknownInstanceMode(s.to_owned())),
        }
    }
}

/// Everything the data plane needs to run.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The CPUs to run a shard on, one shard each.
    pub cores: Vec<usize>,
    /// What to serve.
    pub deployments: Vec<DeploymentSpec>,
    /// HTTP limits (head size, header count, body size).
    pub http: percore_http::Limits,
    /// Time a client has to send a complete request once it has started one (else 408).
    pub request_timeout: Duration,
    /// Time an idle keep-alive connection stays open.
    pub idle_timeout: Duration,
    /// Connections one core holds at most; past that, new ones get 503 and `Retry-After`.
    pub max_connections_per_core: usize,
    /// What each request runs on: a fresh instance, a pooled one reset to its snapshot, or a
    /// pooled one that keeps its memory.
    pub instances: InstanceMode,
    /// Input path for requests.
    pub input: InputPreference,
    /// Use a kernel submission-polling thread per ring.
    pub sqpoll: bool,
    /// Engine settings (the same on every core, so one artifact serves all).
    pub engine: EngineConfig,
    /// Where compiled components are cached (shared with the control plane's state directory
    /// when there is one).
    pub artifacts: std::path::PathBuf,
    /// Break one rule on purpose (tests of the conformance suite only).
    #[cfg(feature = "misbehave")]
    pub misbehave: Option<Misbehaviour>,
    /// Invocation records a core may queue for the control plane before it aggregates.
    pub record_queue: usize,
    /// Components one core keeps mapped; past that the least recently used is unmapped and
    /// mapped again from its artifact when next needed.
    pub max_loaded_per_core: usize,
    /// How guest calls share a core: time slices, and how many may be in flight.
    pub calls: CallLimits,
    /// Each core's outbound HTTP client.
    pub outbound: OutboundLimits,
}

/// How guest calls share a core. A call runs on its shard's thread as a fiber: at the end of a
/// time slice it yields, and the shard serves its other connections and its other calls (round
/// robin) before it resumes. A call that yielded is *in flight* until it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallLimits {
    /// Running time after which a call yields (rounded up to the epoch tick).
    pub time_slice: Duration,
    /// Calls in flight on one core at most. Each holds an instance (its memory up to the
    /// deployment's cap) until it ends: this bounds the memory calls in flight take.
    pub max_in_flight_per_core: usize,
    /// Calls of one deployment in flight on one core at most.
    pub max_in_flight_per_deployment: usize,
    /// Requests one core holds, not started, while those limits are reached; past that they
    /// are answered 503 with `Retry-After`.
    pub max_queued_per_core: usize,
}

impl Default for CallLimits {
    fn default() -> Self {
        Self {
            time_slice: Duration::from_millis(1),
            max_in_flight_per_core: 256,
            max_in_flight_per_deployment: 64,
            max_queued_per_core: 4096,
        }
    }
}

impl ServeConfig {
    /// Defaults for everything but what to serve.
    pub fn new(listen: SocketAddr, deployments: Vec<DeploymentSpec>) -> Self {
        Self {
            listen,
            cores: percore_rt::cpu::allowed_cpus(),
            deployments,
            http: percore_http::Limits::default(),
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections_per_core: 10_000,
            instances: InstanceMode::Reset,
            input: InputPreference::Region,
            sqpoll: false,
            engine: EngineConfig::default(),
            artifacts: percore_engine::ArtifactCache::default_dir(),
            #[cfg(feature = "misbehave")]
            misbehave: None,
            record_queue: link::RECORD_QUEUE,
            max_loaded_per_core: 2048,
            calls: CallLimits::default(),
            outbound: OutboundLimits::default(),
        }
    }
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    shards: Vec<JoinHandle<Counters>>,
    links: Vec<CoreLink>,
    deployments: Vec<Ready>,
    _ticker: EpochTicker,
}

impl Server {
    /// Load every deployment on every core, bind the sockets and start the shards.
    pub fn start(config: ServeConfig) -> Result<Self, Error> {
        if config.cores.is_empty() {
            return Err(Error::NoCores);
        }
        #[allow(unused_mut)]
        let mut config = config;
        #[cfg(feature = "misbehave")]
        misbehave::adjust(&mut config);
        let config = Arc::new(config);
        // Compile each deployment once; every core maps the same artifact.
        let artifacts = prepare::artifacts(&config)?;
        for ready in &artifacts {
            let mode = match backend::native::Native::named(&ready.artifact) {
                Some(_) => "native".to_owned(),
                None => backend::describe_instances(
                    ready.kind,
                    config.instances,
                    &ready.resettable,
                    &ready.spec.warmup,
                ),
            };
            tracing::info!(deployment = %ready.spec.name, kind = %ready.kind, instances = %mode, "deployment ready");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut listeners: Vec<TcpListener> = Vec::new();
        let mut addr = config.listen;
        for _ in &config.cores {
            let listener = percore_rt::net::reuseport_listener(addr, 4096)
                .map_err(|source| Error::Listen { addr, source })?;
            // With port 0 the first socket picks the port; the others join it.
            addr = listener
                .local_addr()
                .map_err(|source| Error::Listen { addr, source })?;
            listeners.push(listener);
        }
        if let Err(e) = percore_rt::net::attach_cpu_steering(&listeners[0]) {
            tracing::warn!("cannot attach the CPU-steering BPF program: {e}");
        }
        let mut engines = Vec::new();
        let mut shards = Vec::new();
        let mut links = Vec::new();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        for (listener, &core) in listeners.into_iter().zip(&config.cores) {
            let engine = Engine::without_ticker(config.engine.clone())?;
            engines.extend(engine.wasmtime_engines());
            let (link, shard_link) = link::pair(core, config.record_queue.max(1))
                .map_err(|source| Error::Shard { core, source })?;
            links.push(link);
            let shard = shard::Shard::new(
                core,
                listener,
                engine,
                config.clone(),
                &artifacts,
                stop.clone(),
                shard_link,
            )?;
            let ready = ready_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("percore-core-{core}"))
                .spawn(move || shard.run(ready))
                .map_err(|source| Error::Shard { core, source })?;
            shards.push(handle);
        }
        drop(ready_tx);
        for _ in 0..shards.len() {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err((core, source))) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(Error::Shard { core, source });
                }
                Err(_) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(Error::ShardDied);
                }
            }
        }
        let ticker = EpochTicker::start(engines, config.engine.epoch_tick);
        Ok(Self {
            addr,
            stop,
            shards,
            links,
            deployments: artifacts,
            _ticker: ticker,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The flag that stops the server (set it from a signal handler).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// The control plane's ends of the cores' queues (once; later calls get none). Without a
    /// reader the cores aggregate their invocation records and drop counter snapshots.
    pub fn take_links(&mut self) -> Vec<CoreLink> {
        std::mem::take(&mut self.links)
    }

    /// The deployments of the configuration as the cores loaded them (ids are positions).
    pub fn initial_deployments(&self) -> &[Ready] {
        &self.deployments
    }

    /// Stop accepting, finish what is in flight, and return the final counters.
    pub fn shutdown(self) -> Counters {
        self.stop.store(true, Ordering::Relaxed);
        self.wait()
    }

    /// Wait until the stop flag is set and every shard has drained.
    pub fn wait(self) -> Counters {
        let mut total = Counters::default();
        for shard in self.shards {
            match shard.join() {
                Ok(counters) => total.add(&counters),
                Err(_) => tracing::error!("a shard panicked"),
            }
        }
        total
    }
}
