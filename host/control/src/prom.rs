//! `/metrics` in the Prometheus text exposition format (version 0.0.4).
//!
//! Label cardinality is bounded: the only unbounded-looking label is `deployment`, which is
//! bounded by what an operator deploys; statuses are grouped by class and faults by kind.

use std::fmt::Write;

use percore_dataplane::{Counters, LATENCY_BUCKETS_US};

use crate::meter::Metrics;

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// Render every metric.
pub fn render(m: &Metrics, deployments: usize) -> String {
    let mut out = Out(String::new());
    let d = m.deployments();

    out.family(
        "percore_requests_total",
        "counter",
        "Requests served per deployment, by status class.",
    );
    for (name, dm) in &d {
        for (i, class) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
            if dm.status_classes[i] > 0 || i == 1 {
                out.sample(
                    "percore_requests_total",
                    &[("deployment", name), ("class", class)],
                    dm.status_classes[i],
                );
            }
        }
    }
    out.family(
        "percore_guest_faults_total",
        "counter",
        "Guest faults per deployment, by kind.",
    );
    for (name, dm) in &d {
        for (kind, n) in dm.errors.iter().filter(|(kind, _)| **kind != "host") {
            out.sample(
                "percore_guest_faults_total",
                &[("deployment", name), ("kind", kind)],
                n,
            );
        }
    }
    out.family(
        "percore_host_faults_total",
        "counter",
        "Requests the host itself failed (x-percore-fault: host), per deployment.",
    );
    for (name, dm) in &d {
        if let Some(n) = dm.errors.get("host") {
            out.sample("percore_host_faults_total", &[("deployment", name)], n);
        }
    }
    out.family(
        "percore_request_duration_seconds",
        "histogram",
        "Time from dispatch to response, per deployment.",
    );
    for (name, dm) in &d {
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS_US.iter().enumerate() {
            cumulative += dm.duration_buckets.get(i).copied().unwrap_or(0);
            let le = format!("{}", *bound as f64 / 1e6);
            out.sample(
                "percore_request_duration_seconds_bucket",
                &[("deployment", name), ("le", &le)],
                cumulative,
            );
        }
        out.sample(
            "percore_request_duration_seconds_bucket",
            &[("deployment", name), ("le", "+Inf")],
            dm.invocations,
        );
        out.sample(
            "percore_request_duration_seconds_sum",
            &[("deployment", name)],
            dm.duration_us as f64 / 1e6,
        );
        out.sample(
            "percore_request_duration_seconds_count",
            &[("deployment", name)],
            dm.invocations,
        );
    }
    for (metric, help, get) in [
        (
            "percore_guest_cpu_seconds_total",
            "Guest CPU time per deployment.",
            (|dm: &crate::meter::DeploymentMetrics| dm.cpu_us as f64 / 1e6) as fn(&_) -> f64,
        ),
        (
            "percore_received_bytes_total",
            "Request bytes per deployment.",
            |dm| dm.bytes_in as f64,
        ),
        (
            "percore_sent_bytes_total",
            "Response bytes per deployment.",
            |dm| dm.bytes_out as f64,
        ),
        (
            "percore_cold_starts_total",
            "Requests that needed a new instance, per deployment.",
            |dm| dm.cold_starts as f64,
        ),
        (
            "percore_outbound_requests_total",
            "Outbound HTTP requests guests made, per deployment.",
            |dm| f64::from(dm.outbound.requests),
        ),
        (
            "percore_outbound_sent_bytes_total",
            "Bytes of outbound HTTP requests sent (paths and bodies), per deployment.",
            |dm| dm.outbound.bytes_out as f64,
        ),
        (
            "percore_outbound_received_bytes_total",
            "Bytes of outbound HTTP responses received, per deployment.",
            |dm| dm.outbound.bytes_in as f64,
        ),
        (
            "percore_outbound_wait_seconds_total",
            "Time guests waited for outbound HTTP responses, per deployment.",
            |dm| dm.outbound.wait_us as f64 / 1e6,
        ),
    ] {
        out.family(metric, "counter", help);
        for (name, dm) in &d {
            out.sample(metric, &[("deployment", name)], get(dm));
        }
    }

    type Family = (&'static str, &'static str, fn(&Counters) -> u64);
    let per_core: [Family; 23] = [
        (
            "percore_core_outbound_requests_total",
            "Outbound HTTP requests guests made (allowed or not), per core.",
            |c| c.outbound_requests,
        ),
        (
            "percore_core_outbound_errors_total",
            "Outbound HTTP requests that got no response (denied, DNS, connect, timeout, too large, protocol, too many), per core.",
            |c| c.outbound_errors,
        ),
        (
            "percore_core_outbound_connections_total",
            "Outbound connections opened, per core.",
            |c| c.outbound_connections,
        ),
        (
            "percore_core_outbound_reused_total",
            "Outbound requests sent on a kept-alive connection, per core.",
            |c| c.outbound_reused,
        ),
        (
            "percore_core_outbound_refused_total",
            "Outbound requests refused because the core had too many in flight, per core.",
            |c| c.outbound_refused,
        ),
        (
            "percore_core_bodies_streamed_total",
            "Request bodies received straight into guest memory, per core.",
            |c| c.bodies_streamed,
        ),
        (
            "percore_core_artifacts_loaded_total",
            "Artifacts mapped on a deployment's first request on a core (cold starts from disk).",
            |c| c.artifacts_loaded,
        ),
        (
            "percore_core_artifacts_evicted_total",
            "Artifacts unmapped as least recently used, per core.",
            |c| c.artifacts_evicted,
        ),
        (
            "percore_core_connections_total",
            "Connections accepted, per core.",
            |c| c.connections,
        ),
        (
            "percore_core_overloaded_total",
            "Connections refused with 503 because the core was full, per core.",
            |c| c.overloaded,
        ),
        (
            "percore_core_calls_yielded_total",
            "Guest calls that yielded at the end of a time slice at least once, per core.",
            |c| c.calls_yielded,
        ),
        (
            "percore_core_call_yields_total",
            "Time slices after which guest calls yielded, per core.",
            |c| c.call_yields,
        ),
        (
            "percore_core_calls_queued_total",
            "Requests held because the core or deployment was at its limit of calls in flight, per core.",
            |c| c.calls_queued,
        ),
        (
            "percore_core_calls_refused_total",
            "Requests answered 503 because calls in flight and the queue were at their limits, per core.",
            |c| c.calls_refused,
        ),
        (
            "percore_core_requests_total",
            "Requests answered (any status, routed or not), per core.",
            |c| c.requests,
        ),
        (
            "percore_core_bad_requests_total",
            "Malformed or over-limit requests, per core.",
            |c| c.bad_requests,
        ),
        (
            "percore_core_host_faults_total",
            "Requests the host itself failed, per core.",
            |c| c.fault_host,
        ),
        (
            "percore_core_instances_created_total",
            "Instances created, per core.",
            |c| c.instances_created,
        ),
        (
            "percore_core_instance_resets_total",
            "Pooled instances reset to their snapshot, per core.",
            |c| c.instance_resets,
        ),
        (
            "percore_core_request_copies_total",
            "Host-side copies of request bytes, per core.",
            |c| c.request_copies,
        ),
        (
            "percore_core_guest_logs_dropped_total",
            "Guest log records dropped at a request's log caps, per core.",
            |c| c.guest_logs_dropped,
        ),
        (
            "percore_core_clients_stalled_total",
            "Connections ended because the client stopped reading its responses, per core.",
            |c| c.clients_stalled,
        ),
        (
            "percore_core_records_aggregated_total",
            "Invocation records folded into aggregates under load, per core.",
            |c| c.records_aggregated,
        ),
    ];
    for (metric, help, get) in per_core {
        out.family(metric, "counter", help);
        for (core, c) in &m.cores {
            out.sample(metric, &[("core", &core.to_string())], get(c));
        }
    }
    let per_core_gauges: [Family; 2] = [
        (
            "percore_core_calls_in_flight",
            "Guest calls in flight (yielded or waiting), per core, as of its last tick.",
            |c| c.calls_in_flight,
        ),
        (
            "percore_core_outbound_in_flight",
            "Outbound HTTP requests in flight, per core, as of its last tick.",
            |c| c.outbound_in_flight,
        ),
    ];
    for (metric, help, get) in per_core_gauges {
        out.family(metric, "gauge", help);
        for (core, c) in &m.cores {
            out.sample(metric, &[("core", &core.to_string())], get(c));
        }
    }

    out.family("percore_deployments", "gauge", "Deployments being served.");
    out.sample("percore_deployments", &[], deployments);
    for (metric, help, value) in [
        (
            "percore_compilations_total",
            "Components compiled by the control plane.",
            m.compilations,
        ),
        (
            "percore_compile_cache_hits_total",
            "Deploys whose artifact was already compiled.",
            m.compile_cache_hits,
        ),
        (
            "percore_deploys_total",
            "Deploys, updates and removals applied.",
            m.deploys,
        ),
        (
            "percore_invocation_log_rows_total",
            "Rows written to the invocation log.",
            m.log_rows,
        ),
        (
            "percore_invocation_log_errors_total",
            "Failed writes to the invocation log.",
            m.log_errors,
        ),
        (
            "percore_coredumps_written_total",
            "Core dumps of trapped guests written to the state directory.",
            m.coredumps_written,
        ),
        (
            "percore_coredumps_dropped_total",
            "Core dumps lost: the writer was behind or a write failed.",
            m.coredumps_dropped,
        ),
        (
            "percore_invocation_log_folded_rows_total",
            "Rows folded into per-deployment, status and fault rows while the log's backlog was full.",
            m.log_folded,
        ),
    ] {
        out.family(metric, "counter", help);
        out.sample(metric, &[], value);
    }
    for (metric, help, value) in [
        (
            "percore_invocation_log_up",
            "1 while the invocation log is written, 0 while its writes fail.",
            u64::from(m.log_failing.is_none()),
        ),
        (
            "percore_invocation_log_backlog_rows",
            "Rows held in memory, waiting to be written to the invocation log.",
            m.log_backlog,
        ),
    ] {
        out.family(metric, "gauge", help);
        out.sample(metric, &[], value);
    }
    out.0
}
