//! The admin API: routes requests to the deploy pipeline, the metrics and the drain switch.
//!
//! | method and path                 | what                                                   |
//! |---------------------------------|--------------------------------------------------------|
//! | `GET /healthz`                  | liveness (no token needed)                             |
//! | `GET /metrics`                  | Prometheus text format                                 |
//! | `POST /v1/components`           | upload a component (body: the .wasm); gives its sha256 |
//! | `GET /v1/deployments`           | list                                                   |
//! | `GET /v1/deployments/{name}`    | show                                                   |
//! | `PUT /v1/deployments/{name}`    | deploy or update (hot swap), JSON body                 |
//! | `DELETE /v1/deployments/{name}` | remove                                                 |
//! | `GET /v1/stats[/{name}]`        | metering figures                                       |
//! | `POST /v1/drain`                | stop accepting, finish in-flight requests, exit        |
//! | `POST /invoke/{name}[/path]`    | run one request through a deployment, synchronously   |
//! | `POST /api/v1/template.execute` | Argo Workflows' executor-plugin method                 |

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};

use crate::http::{AdminRequest, AdminResponse, read_request, respond};
use crate::invoke::{self, Gateway};
use crate::meter::{DeploymentMetrics, lock};
use crate::pipeline::Plane;

/// Start the admin thread.
pub fn spawn(
    listener: TcpListener,
    mut plane: Plane,
    gateway: Gateway,
    token: Option<String>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("percore-admin".into())
        .spawn(move || {
            loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let response = match read_request(&mut stream, plane.max_upload) {
                            Ok(request) => {
                                let call = authorized(token.as_deref(), &request)
                                    .then(|| invoke::route(&request, |n| plane.invoke_target(n)))
                                    .flatten();
                                match call {
                                    Some(Ok(call)) => {
                                        gateway.start(stream, request, call);
                                        continue;
                                    }
                                    Some(Err(response)) => response,
                                    None => handle(&mut plane, token.as_deref(), &stop, &request),
                                }
                            }
                            Err(response) => response,
                        };
                        respond(&mut stream, &response);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        plane.watch_state();
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => {
                        tracing::warn!("admin API accept: {e}");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        })
}

/// `/healthz`: 200 while the host serves (liveness); what is degraded, and why, in the body.
fn health(plane: &Plane) -> Value {
    let m = lock(&plane.metrics);
    let mut degraded = Vec::new();
    if let Some((since, error)) = &m.log_failing {
        let since = since
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        degraded.push(json!({
            "component": "invocation_log",
            "error": error,
            "since_unix": since,
            "backlog_rows": m.log_backlog,
        }));
    }
    if let Some(error) = plane.state_error() {
        degraded.push(json!({ "component": "state_database", "error": error }));
    }
    json!({ "ok": true, "degraded": degraded })
}

fn authorized(token: Option<&str>, request: &AdminRequest) -> bool {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return true;
    };
    let given = request
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compare in time independent of where the first difference is.
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn stats_json(name: &str, m: &DeploymentMetrics) -> Value {
    json!({
        "deployment": name,
        "invocations": m.invocations,
        "status": {
            "2xx": m.status_classes[1], "3xx": m.status_classes[2],
            "4xx": m.status_classes[3], "5xx": m.status_classes[4],
        },
        "errors": m.errors,
        "mean_duration_us": m.duration_us.checked_div(m.invocations).unwrap_or(0),
        "cpu_us": m.cpu_us,
        "bytes_in": m.bytes_in,
        "bytes_out": m.bytes_out,
        "cold_starts": m.cold_starts,
        "outbound": m.outbound,
        "duration_buckets_us": percore_dataplane::LATENCY_BUCKETS_US,
        "duration_histogram": m.duration_buckets,
    })
}

fn handle(
    plane: &mut Plane,
    token: Option<&str>,
    stop: &AtomicBool,
    request: &AdminRequest,
) -> AdminResponse {
    let method = request.method.as_str();
    let path = request.path.trim_end_matches('/');
    if path == "/healthz" {
        return AdminResponse::json(200, &health(plane));
    }
    if !authorized(token, request) {
        return AdminResponse::error(
            401,
            "missing or wrong bearer token (Authorization: Bearer ...)",
        );
    }
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let result = match (method, segments.as_slice()) {
        ("GET", ["metrics"]) => {
            let count = plane.count();
            let text = crate::prom::render(&lock(&plane.metrics), count);
            return AdminResponse {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8".into(),
                headers: Vec::new(),
                body: text.into_bytes(),
            };
        }
        ("POST", ["v1", "components"]) => plane
            .upload(&request.body)
            .map(|hash| (201, json!({ "sha256": hash, "bytes": request.body.len() }))),
        ("GET", ["v1", "deployments"]) => Ok((200, plane.list())),
        ("GET", ["v1", "deployments", name]) => plane.show(name).map(|v| (200, v)),
        ("PUT", ["v1", "deployments", name]) => plane.deploy(name, &request.body),
        ("DELETE", ["v1", "deployments", name]) => plane.remove(name).map(|v| (200, v)),
        ("GET", ["v1", "deployments", name, "coredumps"]) => {
            plane.coredumps(name).map(|v| (200, v))
        }
        ("GET", ["v1", "deployments", name, "coredumps", file]) => {
            return match plane.coredump(name, file) {
                Ok(bytes) => AdminResponse {
                    status: 200,
                    content_type: "application/wasm".into(),
                    headers: vec![(
                        "content-disposition",
                        format!("attachment; filename=\"{file}\""),
                    )],
                    body: bytes,
                },
                Err(f) => AdminResponse::error(f.status, f.message),
            };
        }
        ("GET", ["v1", "stats"]) => {
            let m = lock(&plane.metrics);
            let all: Vec<Value> = m
                .deployments()
                .into_iter()
                .map(|(n, d)| stats_json(&n, d))
                .collect();
            let mut total = percore_dataplane::Counters::default();
            for c in m.cores.values() {
                total.add(c);
            }
            Ok((
                200,
                json!({
                    "deployments": all,
                    "host": {
                        "connections": total.connections,
                        "requests": total.requests,
                        "bad_requests": total.bad_requests,
                        "overloaded": total.overloaded,
                        "calls_yielded": total.calls_yielded,
                        "calls_queued": total.calls_queued,
                        "calls_refused": total.calls_refused,
                        "calls_in_flight": total.calls_in_flight,
                        "outbound_requests": total.outbound_requests,
                        "outbound_errors": total.outbound_errors,
                        "outbound_connections": total.outbound_connections,
                        "outbound_reused": total.outbound_reused,
                        "outbound_refused": total.outbound_refused,
                        "outbound_in_flight": total.outbound_in_flight,
                        "instances_created": total.instances_created,
                        "instance_resets": total.instance_resets,
                        "compilations": m.compilations,
                        "invocation_log_rows": m.log_rows,
                        "invocation_log_errors": m.log_errors,
                    }
                }),
            ))
        }
        ("GET", ["v1", "stats", name]) => {
            let m = lock(&plane.metrics);
            match m.deployments().get(*name) {
                Some(d) => Ok((200, stats_json(name, d))),
                None if plane.exists(name) => {
                    Ok((200, stats_json(name, &DeploymentMetrics::default())))
                }
                None => Err(crate::pipeline::Failure {
                    status: 404,
                    message: format!("no deployment `{name}`"),
                }),
            }
        }
        ("POST", ["v1", "drain"]) => {
            stop.store(true, Ordering::Relaxed);
            Ok((202, json!({ "draining": true })))
        }
        (
            _,
            ["metrics"]
            | ["v1", "components"]
            | ["v1", "deployments", ..]
            | ["v1", "stats", ..]
            | ["v1", "drain"],
        ) => Err(crate::pipeline::Failure {
            status: 405,
            message: format!("{method} is not allowed on {path}"),
        }),
        _ => Err(crate::pipeline::Failure {
            status: 404,
            message: format!("no such endpoint: {method} {path}"),
        }),
    };
    match result {
        Ok((status, value)) => AdminResponse::json(status, &value),
        Err(f) => AdminResponse::error(f.status, f.message),
    }
}
