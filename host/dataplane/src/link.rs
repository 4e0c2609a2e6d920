//! What crosses between the control plane and a core: three bounded single-producer,
//! single-consumer queues per core (`rtrb`), and nothing else.
//!
//! - commands, control plane to core: deploy (or replace) and remove a deployment;
//! - reports, core to control plane: a command applied, a counter snapshot, the core's exit;
//! - invocation records, core to control plane: one per request (or, when the queue is full,
//!   one per deployment and status summing many requests: the core aggregates, never drops).

use std::path::PathBuf;
use std::sync::Arc;

use percore_engine::{GuestKind, NotResettable};
use percore_rt::notify::Notifier;

use crate::{Counters, DeploymentSpec};

/// Commands a control plane may have queued for one core.
pub const COMMAND_QUEUE: usize = 256;
/// Reports one core may have queued.
pub const REPORT_QUEUE: usize = 1024;
/// Invocation records one core may have queued before it starts aggregating.
pub const RECORD_QUEUE: usize = 1 << 16;

/// A deployment ready for the cores: compiled, stored, checked.
#[derive(Debug, Clone)]
pub struct Ready {
    /// Numeric id the invocation records carry (stable per deployment name).
    pub id: u32,
    /// Name, routes, limits, configuration.
    pub spec: DeploymentSpec,
    /// The artifact each core maps (or `native:NAME` for a built-in handler).
    pub artifact: PathBuf,
    /// Whether its instances can be reset in place, else why not.
    pub resettable: Result<(), NotResettable>,
    /// What kind of guest it is (how its requests reach it).
    pub kind: GuestKind,
}

/// Why a core could not apply a deploy command (it changed nothing).
#[derive(Debug, thiserror::Error)]
#[error("core {core} cannot load deployment `{deployment}`")]
pub struct ApplyError {
    /// The CPU.
    pub core: usize,
    /// The deployment.
    pub deployment: String,
    /// What the engine said.
    #[source]
    pub source: percore_engine::Error,
}

/// Control plane to core.
#[derive(Debug)]
pub enum Command {
    /// Map the artifact and route to it, replacing the deployment of the same name if there is
    /// one. Requests already running finish on the old version; the next ones see the new one.
    Deploy {
        /// Echoed in [`Report::Applied`].
        seq: u64,
        /// The deployment.
        ready: Box<Ready>,
    },
    /// Stop routing to a deployment and drop its instances.
    Remove {
        /// Echoed in [`Report::Applied`].
        seq: u64,
        /// The deployment.
        name: String,
    },
}

/// Core to control plane.
#[derive(Debug)]
pub enum Report {
    /// A command took effect on this core (or failed, and changed nothing).
    Applied {
        /// The CPU.
        core: usize,
        /// The command's sequence number.
        seq: u64,
        /// Whether it worked.
        result: Result<(), ApplyError>,
    },
    /// The core's counters (every 100 ms).
    Counters {
        /// The CPU.
        core: usize,
        /// Its counters since it started.
        counters: Box<Counters>,
    },
    /// A guest of a deployment that asked for core dumps trapped: its dump, for the control
    /// plane to keep (lost, like a counter snapshot, if the queue is full).
    CoreDump {
        /// The deployment's id ([`Ready::id`]).
        deployment: u32,
        /// The request, as in [`InvocationRecord::request_id`].
        request_id: u64,
        /// The wasm core dump.
        dump: Vec<u8>,
    },
    /// The core has drained and stopped; every record it had is in the queue.
    Exited {
        /// The CPU.
        core: usize,
    },
}

/// One request (or, with `requests > 1`, several aggregated) to a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvocationRecord {
    /// The request (of an aggregate: the first): core in the top 16 bits, the core's request
    /// sequence number below; printed `c{core}-{seq}` in logs.
    pub request_id: u64,
    /// The deployment's id ([`Ready::id`]).
    pub deployment: u32,
    /// When the (first) request started, µs since the Unix epoch.
    pub start_unix_us: u64,
    /// Wall time from dispatch to response, µs (summed when aggregated).
    pub duration_us: u64,
    /// Guest CPU time, µs (summed when aggregated).
    pub cpu_us: u64,
    /// HTTP status sent.
    pub status: u16,
    /// The guest fault, if any.
    pub fault: Option<&'static str>,
    /// Request bytes (head and body).
    pub bytes_in: u64,
    /// Response bytes.
    pub bytes_out: u64,
    /// Requests this record stands for.
    pub requests: u32,
    /// Of those, how many needed a new instance.
    pub cold_starts: u32,
    /// What the guest's outbound HTTP requests did (summed when aggregated).
    pub outbound: OutboundUse,
}

/// The outbound HTTP requests of one invocation (or of several, summed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OutboundUse {
    /// Requests the guest made.
    pub requests: u32,
    /// Bytes sent (paths and bodies).
    pub bytes_out: u64,
    /// Bytes of responses received.
    pub bytes_in: u64,
    /// Time spent waiting for responses, µs.
    pub wait_us: u64,
}

impl OutboundUse {
    /// Add `other` into `self`.
    pub fn add(&mut self, other: &OutboundUse) {
        self.requests = self.requests.saturating_add(other.requests);
        self.bytes_out += other.bytes_out;
        self.bytes_in += other.bytes_in;
        self.wait_us += other.wait_us;
    }
}

impl From<percore_engine::OutboundStats> for OutboundUse {
    fn from(s: percore_engine::OutboundStats) -> Self {
        Self {
            requests: s.requests,
            bytes_out: s.bytes_out,
            bytes_in: s.bytes_in,
            wait_us: s.wait.as_micros() as u64,
        }
    }
}

/// The control plane's end of one core's queues.
#[derive(Debug)]
pub struct CoreLink {
    /// The CPU.
    pub core: usize,
    /// Commands to the core.
    pub commands: rtrb::Producer<Command>,
    /// Reports from the core.
    pub reports: rtrb::Consumer<Report>,
    /// Invocation records from the core.
    pub records: rtrb::Consumer<InvocationRecord>,
    /// Wakes the core after commands were pushed (else it looks at most every 100 ms).
    pub wake: Arc<Notifier>,
}

/// The core's end.
#[derive(Debug)]
pub(crate) struct ShardLink {
    pub(crate) commands: rtrb::Consumer<Command>,
    pub(crate) reports: rtrb::Producer<Report>,
    pub(crate) records: rtrb::Producer<InvocationRecord>,
    pub(crate) wake: Arc<Notifier>,
}

pub(crate) fn pair(core: usize, records: usize) -> std::io::Result<(CoreLink, ShardLink)> {
    let (command_tx, command_rx) = rtrb::RingBuffer::new(COMMAND_QUEUE);
    let (report_tx, report_rx) = rtrb::RingBuffer::new(REPORT_QUEUE);
    let (record_tx, record_rx) = rtrb::RingBuffer::new(records);
    let wake = Arc::new(Notifier::new()?);
    Ok((
        CoreLink {
            core,
            commands: command_tx,
            reports: report_rx,
            records: record_rx,
            wake: wake.clone(),
        },
        ShardLink {
            commands: command_rx,
            reports: report_tx,
            records: record_tx,
            wake,
        },
    ))
}
