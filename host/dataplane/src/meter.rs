//! A core's side of metering: its counters, request ids, and what it sends the control plane
//! through its queues (invocation records, aggregated when the queue is full; counter
//! snapshots; command results).

use std::time::{Duration, Instant};

use crate::counters::Counters;
use crate::link::{Command, InvocationRecord, Report, ShardLink};

/// Which request, on which core: `c1-2041`. Tags the host's log lines about a request and the
/// guest's own, and the request's invocation record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestId {
    pub(crate) core: usize,
    pub(crate) seq: u64,
}

impl RequestId {
    /// Packed for the invocation record: core in the top 16 bits.
    pub(crate) fn packed(self) -> u64 {
        ((self.core as u64) << 48) | (self.seq & ((1 << 48) - 1))
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "c{}-{}", self.core, self.seq)
    }
}

/// One core's counters and its link to the control plane.
#[derive(Debug)]
pub(crate) struct Meter {
    core: usize,
    link: ShardLink,
    /// Records that did not fit in the queue, aggregated by deployment, status and fault.
    overflow: Vec<InvocationRecord>,
    pub(crate) counters: Counters,
}

impl Meter {
    pub(crate) fn new(core: usize, link: ShardLink) -> Self {
        Self {
            core,
            link,
            overflow: Vec::new(),
            counters: Counters::default(),
        }
    }

    /// The next command the control plane queued, if any.
    pub(crate) fn next_command(&mut self) -> Option<Command> {
        self.link.commands.pop().ok()
    }

    /// The eventfd that wakes this core after commands were queued.
    pub(crate) fn wake(&self) -> &percore_rt::notify::Notifier {
        &self.link.wake
    }

    /// The same eventfd, for wakers that other threads call.
    pub(crate) fn wake_handle(&self) -> std::sync::Arc<percore_rt::notify::Notifier> {
        self.link.wake.clone()
    }

    pub(crate) fn report(&mut self, report: Report) {
        // A full queue means no control plane is reading (a bare `Server`): nothing to tell.
        let _ = self.link.reports.push(report);
    }

    /// Queue one invocation record, or fold it into the overflow when the queue is full.
    pub(crate) fn record(&mut self, record: InvocationRecord) {
        if self.overflow.is_empty() && self.link.records.push(record).is_ok() {
            return;
        }
        self.counters.records_aggregated += 1;
        match self.overflow.iter_mut().find(|r| {
            r.deployment == record.deployment
                && r.status == record.status
                && r.fault == record.fault
        }) {
            Some(sum) => {
                sum.duration_us += record.duration_us;
                sum.cpu_us += record.cpu_us;
                sum.bytes_in += record.bytes_in;
                sum.bytes_out += record.bytes_out;
                sum.requests += record.requests;
                sum.cold_starts += record.cold_starts;
                sum.outbound.add(&record.outbound);
            }
            None => self.overflow.push(record),
        }
    }

    /// Move aggregated records into the queue as room allows.
    fn flush_overflow(&mut self) {
        while let Some(&record) = self.overflow.last() {
            if self.link.records.push(record).is_err() {
                return;
            }
            self.overflow.pop();
        }
    }

    /// Send what is aggregated (as room allows) and a snapshot of the counters.
    pub(crate) fn publish(&mut self) {
        self.flush_overflow();
        let counters = Box::new(self.counters.clone());
        self.report(Report::Counters {
            core: self.core,
            counters,
        });
    }

    /// At exit: every record reaches the queue (waiting up to `patience` for room), then the
    /// last snapshot and the exit report.
    pub(crate) fn finish(&mut self, patience: Duration) {
        let deadline = Instant::now() + patience;
        self.flush_overflow();
        while !self.overflow.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
            self.flush_overflow();
        }
        if !self.overflow.is_empty() {
            tracing::error!(
                core = self.core,
                records = self.overflow.len(),
                "invocation records lost: the control plane stopped reading"
            );
        }
        self.publish();
        self.report(Report::Exited { core: self.core });
    }
}
