//! The meter: one thread that drains every core's reports and invocation records, keeps the
//! per-deployment metrics, and writes the invocation log in batches.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use percore_dataplane::{ApplyError, Counters, InvocationRecord, LATENCY_BUCKETS_US, Report};

use crate::Error;
use crate::store::LogRow;

/// Where invocation records go.
pub trait LogSink: Send {
    /// Append rows; one round trip (or transaction) per call.
    fn write(&mut self, rows: &[LogRow]) -> Result<(), Error>;
    /// What it is, for logs.
    fn describe(&self) -> String;
}

impl LogSink for crate::store::Store {
    fn write(&mut self, rows: &[LogRow]) -> Result<(), Error> {
        self.append_log(rows)
    }
    fn describe(&self) -> String {
        "SQLite".into()
    }
}

/// Metering of one deployment.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DeploymentMetrics {
    /// Requests served.
    pub invocations: u64,
    /// Responses by status class: 1xx (unused), 2xx, 3xx, 4xx, 5xx.
    pub status_classes: [u64; 5],
    /// Guest faults by kind.
    pub errors: BTreeMap<&'static str, u64>,
    /// Durations: counts per bucket of `LATENCY_BUCKETS_US`, plus the overflow bucket.
    pub duration_buckets: Vec<u64>,
    /// Sum of durations, µs.
    pub duration_us: u64,
    /// Guest CPU time, µs.
    pub cpu_us: u64,
    /// Request bytes.
    pub bytes_in: u64,
    /// Response bytes.
    pub bytes_out: u64,
    /// Requests that needed a new instance.
    pub cold_starts: u64,
}

impl DeploymentMetrics {
    fn add(&mut self, r: &InvocationRecord) {
        let n = u64::from(r.requests);
        self.invocations += n;
        let class = usize::from(r.status / 100).clamp(1, 5) - 1;
        self.status_classes[class] += n;
        if let Some(kind) = r.fault {
            *self.errors.entry(kind).or_default() += n;
        }
        if self.duration_buckets.is_empty() {
            self.duration_buckets = vec![0; LATENCY_BUCKETS_US.len() + 1];
        }
        // An aggregated record contributes its mean duration for each request it stands for.
        let mean = r.duration_us / n.max(1);
        let bucket = LATENCY_BUCKETS_US
            .iter()
            .position(|&b| mean <= b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.duration_buckets[bucket] += n;
        self.duration_us += r.duration_us;
        self.cpu_us += r.cpu_us;
        self.bytes_in += r.bytes_in;
        self.bytes_out += r.bytes_out;
        self.cold_starts += u64::from(r.cold_starts);
    }
}

/// Everything the meter knows, shared with the admin API.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Latest counters of each core.
    pub cores: BTreeMap<usize, Counters>,
    /// Per deployment, by record id (see [`Metrics::deployments`] for names).
    pub by_id: HashMap<u32, DeploymentMetrics>,
    /// Deployment names by record id.
    pub names: HashMap<u32, String>,
    /// Invocation records received (requests they stand for).
    pub requests_metered: u64,
    /// Rows written to the invocation log.
    pub log_rows: u64,
    /// Requests those rows stand for.
    pub log_requests: u64,
    /// Failed writes to the invocation log.
    pub log_errors: u64,
    /// Components compiled by the control plane.
    pub compilations: u64,
    /// Deploys that found their artifact already compiled.
    pub compile_cache_hits: u64,
    /// Deploys, updates and removals applied.
    pub deploys: u64,
}

impl Metrics {
    /// Per deployment, by name (ids without a known name show as `#id`).
    pub fn deployments(&self) -> BTreeMap<String, &DeploymentMetrics> {
        self.by_id
            .iter()
            .map(|(id, m)| {
                let name = self
                    .names
                    .get(id)
                    .cloned()
                    .unwrap_or_else(|| format!("#{id}"));
                (name, m)
            })
            .collect()
    }
}

/// One core's answer to a command: the core, the command's sequence number, and whether the
/// core could apply it.
pub type Applied = (usize, u64, Result<(), ApplyError>);

/// Rows buffered before a write is forced.
const BATCH: usize = 4096;
/// Longest time rows wait before they are written.
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Rows kept in memory while the log cannot be written, before new ones are dropped (counted).
const MAX_BACKLOG: usize = 1 << 20;
/// How long the meter waits for cores to report their exit once the host stops.
const EXIT_WAIT: Duration = Duration::from_secs(20);

/// The meter's inputs.
pub struct Meter {
    /// Reports and records, per core.
    pub queues: Vec<(rtrb::Consumer<Report>, rtrb::Consumer<InvocationRecord>)>,
    /// Where [`Report::Applied`] goes (the deploy pipeline waits on it).
    pub applied: Sender<Applied>,
    /// Shared metrics.
    pub metrics: Arc<Mutex<Metrics>>,
    /// The invocation log, if any.
    pub sink: Option<Box<dyn LogSink>>,
    /// Set when the host stops.
    pub stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meter")
            .field("cores", &self.queues.len())
            .finish_non_exhaustive()
    }
}

impl Meter {
    /// Run until every core has exited (after the stop flag) and everything is written.
    pub fn run(mut self) {
        let cores = self.queues.len();
        let mut exited = vec![false; cores];
        let mut pending: Vec<LogRow> = Vec::new();
        let mut last_flush = Instant::now();
        let mut stop_seen: Option<Instant> = None;
        let mut dropped = 0u64;
        loop {
            let mut progressed = false;
            let mut batch: Vec<InvocationRecord> = Vec::new();
            for (core, (reports, records)) in self.queues.iter_mut().enumerate() {
                while let Ok(report) = reports.pop() {
                    progressed = true;
                    match report {
                        Report::Applied { core, seq, result } => {
                            let _ = self.applied.send((core, seq, result));
                        }
                        Report::Counters { core, counters } => {
                            let mut m = lock(&self.metrics);
                            m.cores.insert(core, *counters);
                        }
                        Report::Exited { .. } => exited[core] = true,
                    }
                }
                let n = records.slots();
                if n > 0 {
                    progressed = true;
                    if let Ok(chunk) = records.read_chunk(n) {
                        batch.extend(chunk);
                    }
                }
            }
            if !batch.is_empty() {
                let mut m = lock(&self.metrics);
                for r in &batch {
                    m.requests_metered += u64::from(r.requests);
                    m.by_id.entry(r.deployment).or_default().add(r);
                    if self.sink.is_some() {
                        let name = m
                            .names
                            .get(&r.deployment)
                            .cloned()
                            .unwrap_or_else(|| format!("#{}", r.deployment));
                        if pending.len() >= MAX_BACKLOG {
                            dropped += 1;
                            continue;
                        }
                        pending.push(LogRow {
                            request_id: format!(
                                "c{}-{}",
                                r.request_id >> 48,
                                r.request_id & ((1 << 48) - 1)
                            ),
                            deployment: name,
                            start_unix_us: r.start_unix_us,
                            duration_us: r.duration_us,
                            status: r.status,
                            fault: r.fault,
                            cpu_us: r.cpu_us,
                            bytes_in: r.bytes_in,
                            bytes_out: r.bytes_out,
                            requests: r.requests,
                            cold_starts: r.cold_starts,
                        });
                    }
                }
            }
            let stopping = self.stop.load(Ordering::Relaxed);
            if stopping && stop_seen.is_none() {
                stop_seen = Some(Instant::now());
            }
            let all_exited = exited.iter().all(|&e| e);
            let finishing = stopping
                && (all_exited || stop_seen.is_some_and(|t| t.elapsed() > EXIT_WAIT))
                && !progressed;
            if !pending.is_empty()
                && (pending.len() >= BATCH || last_flush.elapsed() >= FLUSH_EVERY || finishing)
            {
                self.flush(&mut pending);
                last_flush = Instant::now();
            }
            if finishing {
                if !all_exited {
                    tracing::error!(
                        "some cores did not report their exit; their last records may be missing"
                    );
                }
                if !pending.is_empty() {
                    tracing::error!(
                        rows = pending.len(),
                        "invocation log rows could not be written"
                    );
                }
                if dropped > 0 {
                    tracing::error!(
                        dropped,
                        "invocation log rows dropped: the log was unwritable for too long"
                    );
                }
                return;
            }
            if !progressed {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }

    fn flush(&mut self, pending: &mut Vec<LogRow>) {
        let Some(sink) = self.sink.as_mut() else {
            pending.clear();
            return;
        };
        match sink.write(pending) {
            Ok(()) => {
                let mut m = lock(&self.metrics);
                m.log_rows += pending.len() as u64;
                m.log_requests += pending.iter().map(|r| u64::from(r.requests)).sum::<u64>();
                pending.clear();
            }
            Err(e) => {
                lock(&self.metrics).log_errors += 1;
                let why = crate::error_chain(&e);
                tracing::error!(sink = %sink.describe(), "cannot write the invocation log (will retry): {why}");
            }
        }
    }
}

/// Lock shared control-plane state, whatever a panicking holder left.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
