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
mod http;
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

pub use content::sha256;
pub use meter::Metrics;

/// Errors of the control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state database cannot be used.
    #[error("{0}")]
    Database(String),
    /// A file of the state directory cannot be read or written.
    #[error("{0}")]
    Io(String),
    /// The admin listener cannot be set up.
    #[error("admin API: {0}")]
    Admin(String),
    /// A bug or an impossible state.
    #[error("internal error: {0}")]
    Internal(String),
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
    /// Largest upload (component) the admin API accepts.
    pub max_upload: usize,
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
            return Err(Error::Admin(format!(
                "{addr} is not a loopback address: set a bearer token (--admin-token or \
                 PERCORE_ADMIN_TOKEN) to expose the admin API"
            )));
        }
        if let Some(dir) = &config.state {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::Io(format!(
                    "cannot create the state directory {}: {e}",
                    dir.display()
                ))
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
            (LogTarget::Postgres(_), _) => {
                return Err(Error::Database(
                    "this percore was built without PostgreSQL support".into(),
                ));
            }
        };
        let meter = meter::Meter {
            queues,
            applied: applied_tx,
            metrics: metrics.clone(),
            sink,
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
                let listener = std::net::TcpListener::bind(addr)
                    .map_err(|e| Error::Admin(format!("cannot listen on {addr}: {e}")))?;
                let local = listener
                    .local_addr()
                    .map_err(|e| Error::Admin(e.to_string()))?;
                let handle = api::spawn(listener, plane, config.token.clone(), config.stop.clone())
                    .map_err(|e| Error::Internal(format!("cannot start the admin thread: {e}")))?;
                (Some(handle), Some(local))
            }
            None => (None, None),
        };
        Ok(Self {
            admin_addr,
            meter: Some(meter),
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
        // The admin thread notices the stop flag within its poll interval.
        if let Some(admin) = self.admin.take() {
            let _ = admin.join();
        }
    }
}
