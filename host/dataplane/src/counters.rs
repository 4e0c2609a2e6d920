//! Per-core counters: plain integers owned by one core, summed when read.

/// Upper bounds (µs) of the latency histogram's buckets; the last bucket is everything above.
pub const LATENCY_BUCKETS_US: [u64; 12] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000, 250_000,
];

/// What one core (or, summed, the server) has done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Connections accepted.
    pub connections: u64,
    /// Connections refused with 503 because the core was full.
    pub overloaded: u64,
    /// Requests answered (any status).
    pub requests: u64,
    /// Requests a guest answered.
    pub guest_requests: u64,
    /// Responses by class: 2xx, 3xx, 4xx, 5xx.
    pub status_2xx: u64,
    /// 3xx responses.
    pub status_3xx: u64,
    /// 4xx responses.
    pub status_4xx: u64,
    /// 5xx responses.
    pub status_5xx: u64,
    /// Guest faults: timeouts.
    pub fault_timeout: u64,
    /// Guest faults: out of memory.
    pub fault_out_of_memory: u64,
    /// Guest faults: traps.
    pub fault_trap: u64,
    /// Guest faults: bad or oversized responses.
    pub fault_bad_response: u64,
    /// Host faults: the host itself failed a request (an artifact it cannot map, guest memory
    /// it cannot write).
    pub fault_host: u64,
    /// Malformed or over-limit requests (400, 408, 413, 431, 501, 505).
    pub bad_requests: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Host-side copies of request bytes (receive buffer to connection buffer, to guest memory).
    pub request_copies: u64,
    /// Request bytes those copies moved.
    pub request_bytes_copied: u64,
    /// Request bodies received straight into an instance's input region.
    pub bodies_streamed: u64,
    /// Fresh instances created.
    pub instances_created: u64,
    /// Artifacts mapped on first use (cold deployments on this core).
    pub artifacts_loaded: u64,
    /// Artifacts unmapped as least recently used.
    pub artifacts_evicted: u64,
    /// Pooled instances reset to their snapshot after a request.
    pub instance_resets: u64,
    /// Pages those resets copied back.
    pub reset_pages_copied: u64,
    /// Invocation records folded into an aggregate because the queue to the control plane was
    /// full.
    pub records_aggregated: u64,
    /// Guest log records dropped at a request's log caps.
    pub guest_logs_dropped: u64,
    /// Connections ended because the client read nothing for the idle timeout while responses
    /// waited.
    pub clients_stalled: u64,
    /// Guest calls that yielded at the end of a time slice at least once (they were in flight
    /// while the core served others).
    pub calls_yielded: u64,
    /// Time slices those calls yielded after, in all.
    pub call_yields: u64,
    /// Requests held, not started, because the core or the deployment was at its limit of
    /// calls in flight.
    pub calls_queued: u64,
    /// Requests answered 503 because that limit was reached and the queue was full.
    pub calls_refused: u64,
    /// Guest calls in flight (yielded or waiting) at the last tick: a gauge.
    pub calls_in_flight: u64,
    /// Outbound HTTP requests guests made (allowed or not).
    pub outbound_requests: u64,
    /// Those that got no response (denied, DNS, connect, timeout, too large, protocol, too
    /// many).
    pub outbound_errors: u64,
    /// Bytes of outbound requests sent (paths and bodies).
    pub outbound_bytes_out: u64,
    /// Bytes of outbound responses received.
    pub outbound_bytes_in: u64,
    /// Outbound connections opened.
    pub outbound_connections: u64,
    /// Outbound requests sent on a kept-alive connection.
    pub outbound_reused: u64,
    /// Outbound requests refused because the core had too many in flight.
    pub outbound_refused: u64,
    /// Outbound requests in flight at the last tick: a gauge.
    pub outbound_in_flight: u64,
    /// Latency histogram of guest requests (buckets of `LATENCY_BUCKETS_US`, plus overflow).
    pub latency: [u64; LATENCY_BUCKETS_US.len() + 1],
}

impl Counters {
    /// Add `other` into `self`.
    pub fn add(&mut self, other: &Counters) {
        self.connections += other.connections;
        self.overloaded += other.overloaded;
        self.requests += other.requests;
        self.guest_requests += other.guest_requests;
        self.status_2xx += other.status_2xx;
        self.status_3xx += other.status_3xx;
        self.status_4xx += other.status_4xx;
        self.status_5xx += other.status_5xx;
        self.fault_timeout += other.fault_timeout;
        self.fault_out_of_memory += other.fault_out_of_memory;
        self.fault_trap += other.fault_trap;
        self.fault_bad_response += other.fault_bad_response;
        self.fault_host += other.fault_host;
        self.bad_requests += other.bad_requests;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.request_copies += other.request_copies;
        self.request_bytes_copied += other.request_bytes_copied;
        self.instances_created += other.instances_created;
        self.bodies_streamed += other.bodies_streamed;
        self.instance_resets += other.instance_resets;
        self.artifacts_loaded += other.artifacts_loaded;
        self.artifacts_evicted += other.artifacts_evicted;
        self.reset_pages_copied += other.reset_pages_copied;
        self.records_aggregated += other.records_aggregated;
        self.guest_logs_dropped += other.guest_logs_dropped;
        self.clients_stalled += other.clients_stalled;
        self.calls_yielded += other.calls_yielded;
        self.call_yields += other.call_yields;
        self.calls_queued += other.calls_queued;
        self.calls_refused += other.calls_refused;
        self.calls_in_flight += other.calls_in_flight;
        self.outbound_requests += other.outbound_requests;
        self.outbound_errors += other.outbound_errors;
        self.outbound_bytes_out += other.outbound_bytes_out;
        self.outbound_bytes_in += other.outbound_bytes_in;
        self.outbound_connections += other.outbound_connections;
        self.outbound_reused += other.outbound_reused;
        self.outbound_refused += other.outbound_refused;
        self.outbound_in_flight += other.outbound_in_flight;
        for (a, b) in self.latency.iter_mut().zip(other.latency) {
            *a += b;
        }
    }

    pub(crate) fn status(&mut self, status: u16) {
        self.requests += 1;
        match status {
            200..=299 => self.status_2xx += 1,
            300..=399 => self.status_3xx += 1,
            400..=499 => self.status_4xx += 1,
            _ => self.status_5xx += 1,
        }
    }

    pub(crate) fn latency_us(&mut self, us: u64) {
        let bucket = LATENCY_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.latency[bucket] += 1;
    }
}
