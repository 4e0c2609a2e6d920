//! percore's control plane: its own threads, reaching the cores only through their bounded SPSC
//! queues ([`percore_dataplane::CoreLink`]).
//!
//! - the **admin thread** serves the admin API (JSON over HTTP, loopback by default, a bearer
//!   token required elsewhere) and runs the deploy pipeline: validate, compile ahead of time,
//!   store content-addressed, commit the deployment to the database, then tell every core to map
//!   the artifact and swap its route;
//! - the **meter thread** drains every core's reports and invocation records, keeps the metrics
//!   and writes the invocation log in batches (SQLite by default, PostgreSQL when configured).
//!
//! Durable state lives in a state directory: `percore.db` (SQLite), `components/` and
//! `artifacts/`. A restart restores every deployment from the database without recompiling.
#![forbid(unsafe_code)]

mod api;
mod content;
mod coredumps;
mod deploy_request;
pub mod http;
mod invoke;
pub mod meter;
mod pipeline;
#[cfg(feature = "postgres")]
pub mod postgres;
mod prom;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use percore_dataplane::{CoreLink, Ready};
use percore_engine::{EngineConfig, Limits};

pub use meter::Metrics;
/// SHA-256 of bytes, lowercase hex: how components are named.
pub use percore_engine::sha256_hex as sha256;

/// Errors of the control plane. Each says what was being done; the cause is its
/// [`source`](std::error::Error::source), so print the whole chain (`{:#}` with anyhow).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state database cannot be used.
    #[error("{context}")]
    Database {
        /// What was being done, and on which file.
        context: String,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// A record of the state database cannot be read back.
    #[error("{context}")]
    Record {
        /// Which record.
        context: String,
        /// Why it does not parse.
        #[source]
        source: serde_json::Error,
    },
    /// The PostgreSQL invocation log cannot be used.
    #[cfg(feature = "postgres")]
    #[error("{context}")]
    Postgres {
        /// What was being done, and on which server (without its password).
        context: String,
        /// What the client said.
        #[source]
        source: ::postgres::Error,
    },
    /// An invocation log in PostgreSQL was asked of a build without PostgreSQL support.
    #[error("this percore was built without PostgreSQL support")]
    NoPostgres,
    /// A file of the state directory cannot be read or written.
    #[error("{context}")]
    Io {
        /// What was being done, and on which file.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The admin API would be reachable from other hosts without a bearer token.
    #[error(
        "admin API: {addr} is not a loopback address: set a bearer token (--admin-token or \
         PERCORE_ADMIN_TOKEN) to expose the admin API"
    )]
    AdminNeedsToken {
        /// The address it was to listen on.
        addr: SocketAddr,
    },
    /// The admin listener cannot be set up.
    #[error("admin API: {context}")]
    Admin {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A bug or an impossible state.
    #[error("internal error: {0}")]
    Internal(String),
}

/// An error and its sources on one line, `error: source: source's source`, for messages that
/// go out as text (API answers, logs). A source whose text ends the line already (some errors
/// print their cause themselves) is not repeated.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

/// Where the invocation log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// No invocation log (metrics only).
    Off,
    /// The state directory's SQLite database.
    Sqlite,
    /// A PostgreSQL server (a `postgres://` URL or key=value connection string).
    Postgres(String),
}

/// How to run the control plane.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// Admin API address; `None`: no admin API.
    pub admin: Option<SocketAddr>,
    /// Bearer token the admin API requires (required when `admin` is not loopback).
    pub token: Option<String>,
    /// State directory (database, components, artifacts); `None`: nothing is persisted.
    pub state: Option<PathBuf>,
    /// Invocation log.
    pub log: LogTarget,
    /// The cores' engine configuration (artifacts must match it).
    pub engine: EngineConfig,
    /// Limits a deployment gets unless it sets its own.
    pub default_limits: Limits,
    /// Largest upload (component) the admin API accepts, and largest component pulled.
    pub max_upload: usize,
    /// Registries reached over plain HTTP besides loopback ones (with those of
    /// `PERCORE_INSECURE_REGISTRIES`).
    pub insecure_registries: Vec<String>,
    /// The data plane's address, for `/invoke` calls made through the admin API.
    pub data_plane: Option<SocketAddr>,
    /// Deployments from the configuration file or the command line (not persisted, not
    /// changeable through the API).
    pub fixed: Vec<Ready>,
    /// The host's stop flag (`POST /v1/drain` sets it).
    pub stop: Arc<AtomicBool>,
}

/// The running control plane.
#[derive(Debug)]
pub struct Control {
    admin_addr: Option<SocketAddr>,
    meter: Option<JoinHandle<()>>,
    coredump_writer: Option<JoinHandle<()>>,
    admin: Option<JoinHandle<()>>,
    metrics: Arc<Mutex<Metrics>>,
    restored: usize,
}

impl Control {
    /// Open the state, restore persisted deployments onto the cores (waiting until every core
    /// has them), then start the admin API and the meter.
    pub fn start(config: ControlConfig, links: Vec<CoreLink>) -> Result<Self, Error> {
        if let Some(addr) = config.admin
            && !addr.ip().is_loopback()
            && config.token.as_deref().is_none_or(str::is_empty)
        {
            return Err(Error::AdminNeedsToken { addr });
        }
        if let Some(dir) = &config.state {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                context: format!("cannot create the state directory {}", dir.display()),
                source,
            })?;
        }
        let metrics = Arc::new(Mutex::new(Metrics::default()));
        {
            let mut m = meter::lock(&metrics);
            for ready in &config.fixed {
                m.names.insert(ready.id, ready.spec.name.clone());
            }
        }
        let (applied_tx, applied_rx) = std::sync::mpsc::channel();
        let mut producers = Vec::new();
        let mut queues = Vec::new();
        for link in links {
            producers.push((link.commands, link.wake));
            queues.push((link.reports, link.records));
        }
        let sink: Option<Box<dyn meter::LogSink>> = match (&config.log, &config.state) {
            (LogTarget::Off, _) => None,
            (LogTarget::Sqlite, Some(state)) => {
                Some(Box::new(store::Store::open(&state.join("percore.db"))?))
            }
            (LogTarget::Sqlite, None) => None,
            #[cfg(feature = "postgres")]
            (LogTarget::Postgres(url), _) => Some(Box::new(postgres::Postgres::connect(url)?)),
            #[cfg(not(feature = "postgres"))]
            (LogTarget::Postgres(_), _) => return Err(Error::NoPostgres),
        };
        let (coredumps, coredump_writer) = match &config.state {
            Some(state) => {
                let (tx, handle) = coredumps::CoreDumps::new(state)
                    .spawn(metrics.clone())
                    .map_err(|e| {
                        Error::Internal(format!("cannot start the core dump thread: {e}"))
                    })?;
                (Some(tx), Some(handle))
            }
            None => (None, None),
        };
        let meter = meter::Meter {
            queues,
            applied: applied_tx,
            metrics: metrics.clone(),
            sink,
            coredumps,
            stop: config.stop.clone(),
        };
        let meter = std::thread::Builder::new()
            .name("percore-meter".into())
            .spawn(move || meter.run())
            .map_err(|e| Error::Internal(format!("cannot start the meter thread: {e}")))?;

        let mut plane = pipeline::Plane::new(&config, producers, applied_rx, metrics.clone())?;
        let restored = plane.restore()?;
        let (admin, admin_addr) = match config.admin {
            Some(addr) => {
                let listener =
                    std::net::TcpListener::bind(addr).map_err(|source| Error::Admin {
                        context: format!("cannot listen on {addr}"),
                        source,
                    })?;
                let local = listener.local_addr().map_err(|source| Error::Admin {
                    context: "cannot read the listener's address".into(),
                    source,
                })?;
                let gateway = invoke::Gateway::new(config.data_plane);
                let handle = api::spawn(
                    listener,
                    plane,
                    gateway,
                    config.token.clone(),
                    config.stop.clone(),
                )
                .map_err(|e| Error::Internal(format!("cannot start the admin thread: {e}")))?;
                (Some(handle), Some(local))
            }
            None => (None, None),
        };
        Ok(Self {
            admin_addr,
            meter: Some(meter),
            coredump_writer,
            admin,
            metrics,
            restored,
        })
    }

    /// Where the admin API listens.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Deployments restored from the database at start.
    pub fn restored(&self) -> usize {
        self.restored
    }

    /// The shared metrics.
    pub fn metrics(&self) -> Arc<Mutex<Metrics>> {
        self.metrics.clone()
    }

    /// After the cores have stopped: wait until the meter has written every record.
    pub fn finish(mut self) {
        if let Some(meter) = self.meter.take() {
            let _ = meter.join();
        }
        // The meter held the writer's only sender: the writer finishes what it has, then ends.
        if let Some(writer) = self.coredump_writer.take() {
            let _ = writer.join();
        }
        // The admin thread notices the stop flag within its poll interval.
        if let Some(admin) = self.admin.take() {
            let _ = admin.join();
        }
    }
}
