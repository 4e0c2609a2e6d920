//! The meter: one thread that drains every core's reports and invocation records, keeps the
//! per-deployment metrics, and writes the invocation log in batches.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

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
        if self.reopen_if_replaced()? {
            tracing::error!(
                path = %self.path().display(),
                "the state database was removed or replaced under the running host; the \
                 invocation log goes on in the file now at that path"
            );
        }
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
    /// The guests' outbound HTTP requests.
    pub outbound: percore_dataplane::OutboundUse,
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
        self.outbound.add(&r.outbound);
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
    /// Rows waiting to be written (a backlog while the log cannot be written).
    pub log_backlog: u64,
    /// Rows folded into per-(deployment, status, fault) rows because the backlog was full.
    pub log_folded: u64,
    /// Since when, and why, the invocation log cannot be written; `None` while it can.
    pub log_failing: Option<(SystemTime, String)>,
    /// Core dumps written.
    pub coredumps_written: u64,
    /// Core dumps lost (the writer behind, a write failed).
    pub coredumps_dropped: u64,
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
/// Rows kept one by one while the log cannot be written (about 200 bytes each); past this, new
/// rows are folded into one row per deployment, status and fault, so that the log still adds up
/// to every request once it can be written again.
const MAX_BACKLOG: usize = 1 << 17;
/// Longest wait between attempts to write a log that fails.
const MAX_RETRY: Duration = Duration::from_secs(5);
/// How often a log that keeps failing is reported again.
const REPORT_EVERY: Duration = Duration::from_secs(60);
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
    /// Where core dumps go, when there is a state directory.
    pub coredumps: Option<std::sync::mpsc::SyncSender<crate::coredumps::Pending>>,
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
        let mut folded: Vec<LogRow> = Vec::new();
        let mut last_flush = Instant::now();
        let mut stop_seen: Option<Instant> = None;
        let mut health = Health::default();
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
                        Report::CoreDump {
                            deployment,
                            request_id,
                            dump,
                        } => {
                            if let Some(tx) = &self.coredumps {
                                let name = lock(&self.metrics).names.get(&deployment).cloned();
                                let pending = crate::coredumps::Pending {
                                    deployment: name.unwrap_or_else(|| format!("#{deployment}")),
                                    request: request_name(request_id),
                                    dump,
                                };
                                crate::coredumps::offer(tx, pending, &self.metrics);
                            }
                        }
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
                        let row = LogRow {
                            request_id: request_name(r.request_id),
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
                            outbound: r.outbound,
                        };
                        if pending.len() < MAX_BACKLOG {
                            pending.push(row);
                        } else {
                            m.log_folded += 1;
                            fold(&mut folded, row);
                        }
                    }
                }
                m.log_backlog = (pending.len() + folded.len()) as u64;
            }
            let stopping = self.stop.load(Ordering::Relaxed);
            if stopping && stop_seen.is_none() {
                stop_seen = Some(Instant::now());
            }
            let all_exited = exited.iter().all(|&e| e);
            let finishing = stopping
                && (all_exited || stop_seen.is_some_and(|t| t.elapsed() > EXIT_WAIT))
                && !progressed;
            let due = pending.len() >= BATCH || last_flush.elapsed() >= FLUSH_EVERY;
            if (!pending.is_empty() || !folded.is_empty())
                && (finishing || (due && Instant::now() >= health.retry_at))
            {
                pending.append(&mut folded);
                self.flush(&mut pending, &mut health);
                last_flush = Instant::now();
                // Still failing: what is past the backlog's size goes back to the folded rows.
                if pending.len() > MAX_BACKLOG {
                    for row in pending.drain(MAX_BACKLOG..) {
                        fold(&mut folded, row);
                    }
                }
                lock(&self.metrics).log_backlog = (pending.len() + folded.len()) as u64;
            }
            if finishing {
                if !all_exited {
                    tracing::error!(
                        "some cores did not report their exit; their last records may be missing"
                    );
                }
                if !pending.is_empty() {
                    let requests: u64 = pending.iter().map(|r| u64::from(r.requests)).sum();
                    tracing::error!(
                        rows = pending.len(),
                        requests,
                        "invocation log rows lost at exit: the log could not be written"
                    );
                }
                return;
            }
            if !progressed {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }

    fn flush(&mut self, pending: &mut Vec<LogRow>, health: &mut Health) {
        let Some(sink) = self.sink.as_mut() else {
            pending.clear();
            return;
        };
        match sink.write(pending) {
            Ok(()) => {
                let mut m = lock(&self.metrics);
                m.log_rows += pending.len() as u64;
                m.log_requests += pending.iter().map(|r| u64::from(r.requests)).sum::<u64>();
                if let Some((since, _)) = m.log_failing.take() {
                    let down = since.elapsed().unwrap_or_default();
                    tracing::info!(
                        sink = %sink.describe(),
                        rows = pending.len(),
                        "the invocation log is written again after {:.1} s; the rows held meanwhile are in it",
                        down.as_secs_f64()
                    );
                }
                *health = Health::default();
                pending.clear();
            }
            Err(e) => {
                let why = crate::error_chain(&e);
                let mut m = lock(&self.metrics);
                m.log_errors += 1;
                let first = m.log_failing.is_none();
                let since = m
                    .log_failing
                    .as_ref()
                    .map_or_else(SystemTime::now, |(t, _)| *t);
                m.log_failing = Some((since, why.clone()));
                drop(m);
                health.failures += 1;
                let delay = FLUSH_EVERY * 2u32.pow(health.failures.min(5));
                health.retry_at = Instant::now() + delay.min(MAX_RETRY);
                if first || health.reported.is_none_or(|t| t.elapsed() >= REPORT_EVERY) {
                    health.reported = Some(Instant::now());
                    tracing::error!(
                        sink = %sink.describe(),
                        backlog = pending.len(),
                        "cannot write the invocation log; serving goes on and its rows are held \
                         in memory until it can: {why}"
                    );
                }
            }
        }
    }
}

/// How the invocation log's writes are going: when to try again, when the failure was last
/// reported.
#[derive(Debug)]
struct Health {
    failures: u32,
    retry_at: Instant,
    reported: Option<Instant>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            failures: 0,
            retry_at: Instant::now(),
            reported: None,
        }
    }
}

/// A packed request id as the logs print it: `c{core}-{seq}`.
fn request_name(id: u64) -> String {
    format!("c{}-{}", id >> 48, id & ((1 << 48) - 1))
}

/// Add `row` to the row of its deployment, status and fault.
fn fold(folded: &mut Vec<LogRow>, row: LogRow) {
    match folded
        .iter_mut()
        .find(|r| r.deployment == row.deployment && r.status == row.status && r.fault == row.fault)
    {
        Some(sum) => {
            sum.duration_us += row.duration_us;
            sum.cpu_us += row.cpu_us;
            sum.bytes_in += row.bytes_in;
            sum.bytes_out += row.bytes_out;
            sum.requests += row.requests;
            sum.cold_starts += row.cold_starts;
            sum.outbound.add(&row.outbound);
        }
        None => folded.push(row),
    }
}

/// Lock shared control-plane state, whatever a panicking holder left.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
