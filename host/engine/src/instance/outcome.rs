//! What one call gave: its outcome and its measurements.

use std::time::Duration;

use crate::{Fault, InputPath, LogRecord, Response};

/// Measurements of one call.
#[derive(Debug, Clone, Copy)]
pub struct CallStats {
    /// The path the request took.
    pub input: InputPath,
    /// CPU time of the call on this thread: read from the thread CPU clock when the call
    /// outlived an epoch tick; a shorter call is charged its wall time (a guest cannot block
    /// and its core is pinned, so the two differ only by interrupts).
    pub cpu: Duration,
    /// Wall-clock time of the call.
    pub wall: Duration,
    /// How many times the host copied the request's bytes (1 for the region path: straight
    /// into guest memory; 2 for the portable path: into the record, then lowered).
    pub request_copies: u32,
    /// Request bytes the host copied in all.
    pub request_bytes_copied: usize,
    /// Times the call yielded at the end of a time slice.
    pub yields: u32,
    /// What its outbound requests did.
    pub outbound: crate::OutboundStats,
}

/// The result of one request: the response or the fault, and what the guest logged.
#[derive(Debug)]
pub struct Invocation {
    /// The checked response, or why there is none.
    pub result: Result<Response, Fault>,
    /// What the guest logged (import and stdout/stderr lines), in order, capped.
    pub logs: Vec<LogRecord>,
    /// Records dropped past the cap.
    pub logs_dropped: usize,
    /// The core dump of a trap, when the deployment asks for them.
    pub coredump: Option<crate::CoreDump>,
    /// Measurements.
    pub stats: CallStats,
}
