//! Synchronous calls for workflow engines, on the admin port:
//!
//! - `POST /invoke/{deployment}[/rest]`: the body (JSON or bytes) goes to the deployment, its
//!   response comes back as it is. `Idempotency-Key` makes a retried call answer the first
//!   call's response instead of running again; `X-Percore-Deadline-Ms` (or `?deadline_ms=`) is the
//!   most the caller waits.
//! - `POST /api/v1/template.execute`: Argo Workflows' executor-plugin method, for a template whose
//!   `plugin` is `{"percore": {"app", "method", "path", "body", "headers"}}`.
//!
//! A call goes to the data plane over loopback, like any client's request, so routes, limits,
//! typed faults, metering and the invocation log are those of every request. Each runs on a
//! thread of its own, at most [`MAX_IN_FLIGHT`] at once, so the admin thread stays free for
//! deploys.

use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http::{AdminRequest, AdminResponse, respond};

/// Calls running at once; past this a call is answered 503 with `Retry-After`.
pub const MAX_IN_FLIGHT: usize = 64;
/// The largest response a call gives back (the guest's own limit may be lower).
pub const MAX_RESPONSE: u64 = 16 << 20;
/// How long a caller waits when it says nothing: the deployment's deadline and this much more.
const QUEUE_MARGIN: Duration = Duration::from_secs(5);
/// The longest deadline a caller may ask for.
const MAX_DEADLINE: Duration = Duration::from_secs(600);
/// How long an idempotent call's response is kept.
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(600);
/// Responses kept for idempotent calls, at most.
const IDEMPOTENCY_ENTRIES: usize = 4096;
/// The largest response kept for an idempotent call; a larger one is not replayed.
const IDEMPOTENCY_BODY: usize = 1 << 20;

/// Where a deployment is reached on the data plane.
#[derive(Debug, Clone)]
pub struct Target {
    pub deployment: String,
    /// The `Host` header its first route needs, if any.
    pub host: Option<String>,
    /// Its first route's path prefix.
    pub prefix: String,
    /// Its wall-clock deadline per request.
    pub deadline: Duration,
}

/// Which of the two methods a call is.
#[derive(Debug)]
pub enum Call {
    /// `/invoke/{deployment}/rest`.
    Invoke { target: Target, rest: String },
    /// Argo's `template.execute` for the percore plugin.
    Plugin { target: Target, plugin: Plugin },
}

/// A template's `plugin.percore`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plugin {
    pub app: String,
    #[serde(default = "get")]
    pub method: String,
    #[serde(default = "root")]
    pub path: String,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

fn get() -> String {
    "GET".into()
}

fn root() -> String {
    "/".into()
}

/// The calls of one host: its data plane's address, the calls running, the idempotency keys.
#[derive(Debug, Clone)]
pub struct Gateway {
    data_plane: Option<SocketAddr>,
    in_flight: Arc<AtomicUsize>,
    idempotency: Arc<Mutex<Idempotency>>,
}

impl Gateway {
    pub fn new(data_plane: Option<SocketAddr>) -> Self {
        // A wildcard listener is reached on loopback.
        let data_plane = data_plane.map(|mut a| {
            if a.ip().is_unspecified() {
                a.set_ip(match a {
                    SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            a
        });
        Self {
            data_plane,
            in_flight: Arc::new(AtomicUsize::new(0)),
            idempotency: Arc::new(Mutex::new(Idempotency::default())),
        }
    }

    /// Run `call` on a thread of its own, which answers on `stream`.
    pub fn start(&self, mut stream: TcpStream, request: AdminRequest, call: Call) {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            let mut busy = AdminResponse::error(
                503,
                format!("{MAX_IN_FLIGHT} calls are running on this host; try again"),
            );
            busy.headers.push(("retry-after", "1".into()));
            respond(&mut stream, &busy);
            return;
        }
        let gateway = self.clone();
        let spawned = std::thread::Builder::new()
            .name("percore-invoke".into())
            .spawn(move || {
                let response = match call {
                    Call::Invoke { target, rest } => gateway.invoke(&target, &rest, &request),
                    Call::Plugin { target, plugin } => gateway.plugin(&target, &plugin),
                };
                respond(&mut stream, &response);
                gateway.in_flight.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!("cannot start a thread for a call: {e}");
        }
    }

    fn invoke(&self, target: &Target, rest: &str, request: &AdminRequest) -> AdminResponse {
        let deadline = match deadline(target, request) {
            Ok(d) => d,
            Err(message) => return AdminResponse::error(400, message),
        };
        let key = request
            .header("idempotency-key")
            .filter(|k| !k.is_empty())
            .map(|k| (target.deployment.clone(), k.to_owned()));
        if let Some(key) = &key {
            match lock(&self.idempotency).begin(key) {
                Begin::Fresh => {}
                Begin::Running => {
                    return AdminResponse::error(
                        409,
                        "a call with this Idempotency-Key is still running",
                    );
                }
                Begin::Replay(mut stored) => {
                    stored.headers.push(("idempotent-replayed", "true".into()));
                    return stored;
                }
            }
        }
        let mut path = format!("{}{rest}", target.prefix.trim_end_matches('/'));
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        let query: Vec<&str> = request
            .query
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("deadline_ms="))
            .collect();
        if !query.is_empty() {
            path = format!("{path}?{}", query.join("&"));
        }
        let headers: Vec<(String, String)> = request
            .headers
            .iter()
            .filter(|(name, _)| forwarded(name))
            .cloned()
            .collect();
        let outcome = self.send(
            target,
            &request.method,
            &path,
            &headers,
            &request.body,
            deadline,
        );
        let response = match outcome {
            Ok(answer) => answer.into_response(),
            Err(failure) => failure,
        };
        if let Some(key) = key {
            // Answers of the guest are kept; the gateway's own refusals (busy, no answer in
            // time, data plane unreachable) are not, so that a retry runs the call.
            let keep = !matches!(response.status, 502..=504) || response_from_guest(&response);
            lock(&self.idempotency).finish(key, keep.then(|| response.clone_small()).flatten());
        }
        response
    }

    fn plugin(&self, target: &Target, plugin: &Plugin) -> AdminResponse {
        let headers: Vec<(String, String)> = plugin
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .filter(|(k, _)| forwarded(k))
            .collect();
        let path = format!(
            "{}{}",
            target.prefix.trim_end_matches('/'),
            if plugin.path.starts_with('/') {
                plugin.path.clone()
            } else {
                format!("/{}", plugin.path)
            }
        );
        let body = plugin.body.clone().unwrap_or_default().into_bytes();
        let deadline = target.deadline + QUEUE_MARGIN;
        match self.send(target, &plugin.method, &path, &headers, &body, deadline) {
            Ok(answer) => {
                let ok = (200..300).contains(&answer.status);
                let fault = answer
                    .headers
                    .iter()
                    .find(|(n, _)| *n == "x-percore-fault")
                    .map(|(_, v)| format!(" ({v})"))
                    .unwrap_or_default();
                AdminResponse::json(
                    200,
                    &json!({ "node": {
                        "phase": if ok { "Succeeded" } else { "Failed" },
                        "message": format!("{} answered HTTP {}{fault}", target.deployment, answer.status),
                        "outputs": {
                            "result": String::from_utf8_lossy(&answer.body),
                            "parameters": [{ "name": "status", "value": answer.status.to_string() }],
                        },
                    }}),
                )
            }
            // The data plane did not answer: 503 makes Argo's agent try again.
            Err(failure) if failure.status == 503 => failure,
            Err(failure) => {
                let message = serde_json::from_slice::<Value>(&failure.body)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                AdminResponse::json(
                    200,
                    &json!({ "node": { "phase": "Failed", "message": message } }),
                )
            }
        }
    }

    /// One request to the data plane.
    fn send(
        &self,
        target: &Target,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
        deadline: Duration,
    ) -> Result<Answer, AdminResponse> {
        let Some(addr) = self.data_plane else {
            return Err(AdminResponse::error(503, "this host serves no data plane"));
        };
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(deadline))
                .max_redirects(0)
                .build(),
        );
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        if let Some(host) = &target.host {
            builder = builder.header("host", host);
        }
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let request = builder
            .body(body.to_vec())
            .map_err(|e| AdminResponse::error(400, format!("bad request to forward: {e}")))?;
        let started = Instant::now();
        let mut response = match agent.run(request) {
            Ok(r) => r,
            Err(ureq::Error::Timeout(_)) => {
                return Err(AdminResponse::error(
                    504,
                    format!(
                        "{} gave no answer within the call's deadline of {} ms",
                        target.deployment,
                        deadline.as_millis()
                    ),
                ));
            }
            Err(e) => {
                return Err(AdminResponse::error(
                    503,
                    format!("the data plane ({addr}) did not answer: {e}"),
                ));
            }
        };
        let status = response.status().as_u16();
        let mut kept = Vec::new();
        for name in [
            "x-percore-fault",
            "retry-after",
            "location",
            "cache-control",
        ] {
            if let Some(v) = response.headers().get(name).and_then(|v| v.to_str().ok()) {
                kept.push((name, v.to_owned()));
            }
        }
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE)
            .read_to_vec()
            .map_err(|e| {
                AdminResponse::error(
                    502,
                    format!(
                        "reading {}'s response (at most {MAX_RESPONSE} bytes through /invoke): {e}",
                        target.deployment
                    ),
                )
            })?;
        tracing::debug!(deployment = %target.deployment, status, ms = started.elapsed().as_millis() as u64, "invoked");
        Ok(Answer {
            status,
            content_type,
            headers: kept,
            body,
        })
    }
}

/// The data plane's answer.
struct Answer {
    status: u16,
    content_type: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn into_response(self) -> AdminResponse {
        let mut headers = self.headers;
        headers.push(("x-percore-from-guest", "true".into()));
        AdminResponse {
            status: self.status,
            content_type: self.content_type,
            headers,
            body: self.body,
        }
    }
}

fn response_from_guest(r: &AdminResponse) -> bool {
    r.headers.iter().any(|(n, _)| *n == "x-percore-from-guest")
}

impl AdminResponse {
    /// A copy to keep for replays, if it is small enough.
    fn clone_small(&self) -> Option<AdminResponse> {
        (self.body.len() <= IDEMPOTENCY_BODY).then(|| AdminResponse {
            status: self.status,
            content_type: self.content_type.clone(),
            headers: self.headers.clone(),
            body: self.body.clone(),
        })
    }
}

/// Request headers passed to the guest: not the admin token, not the gateway's own, not framing.
fn forwarded(name: &str) -> bool {
    !matches!(
        name,
        "authorization"
            | "host"
            | "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "upgrade"
            | "te"
            | "trailer"
            | "expect"
            | "idempotency-key"
            | "x-percore-deadline-ms"
    )
}

/// The call's deadline: the caller's (`X-Percore-Deadline-Ms`, `?deadline_ms=`), else the
/// deployment's own with a margin for queueing.
fn deadline(target: &Target, request: &AdminRequest) -> Result<Duration, String> {
    let given = request
        .header("x-percore-deadline-ms")
        .map(str::to_owned)
        .or_else(|| {
            request
                .query
                .split('&')
                .find_map(|p| p.strip_prefix("deadline_ms=").map(str::to_owned))
        });
    match given {
        None => Ok(target.deadline + QUEUE_MARGIN),
        Some(text) => match text.trim().parse::<u64>() {
            Ok(ms) if ms > 0 && Duration::from_millis(ms) <= MAX_DEADLINE => {
                Ok(Duration::from_millis(ms))
            }
            _ => Err(format!(
                "bad deadline {text:?}: milliseconds, from 1 to {}",
                MAX_DEADLINE.as_millis()
            )),
        },
    }
}

/// What a call with a key finds.
enum Begin {
    /// The first call with this key: run it.
    Fresh,
    /// Another call with this key is running.
    Running,
    /// The answer of the earlier call.
    Replay(AdminResponse),
}

type Key = (String, String);

/// Idempotency keys per deployment: running, or done with the response kept for a while.
#[derive(Debug, Default)]
struct Idempotency {
    entries: HashMap<Key, Entry>,
    /// Keys by the time they were begun, oldest first.
    order: VecDeque<(Key, Instant)>,
}

#[derive(Debug)]
enum Entry {
    Running,
    Done(AdminResponse),
}

impl Idempotency {
    fn begin(&mut self, key: &Key) -> Begin {
        self.expire();
        match self.entries.get(key) {
            Some(Entry::Running) => Begin::Running,
            Some(Entry::Done(r)) => Begin::Replay(r.clone_small().expect("kept small")),
            None => {
                while self.entries.len() >= IDEMPOTENCY_ENTRIES {
                    let Some((old, _)) = self.order.pop_front() else {
                        break;
                    };
                    self.entries.remove(&old);
                }
                self.entries.insert(key.clone(), Entry::Running);
                self.order.push_back((key.clone(), Instant::now()));
                Begin::Fresh
            }
        }
    }

    /// The call is over: keep its response, or forget the key (`None`).
    fn finish(&mut self, key: Key, response: Option<AdminResponse>) {
        match response {
            Some(r) => {
                self.entries.insert(key, Entry::Done(r));
            }
            None => {
                self.entries.remove(&key);
            }
        }
    }

    fn expire(&mut self) {
        while let Some((key, at)) = self.order.front() {
            if at.elapsed() < IDEMPOTENCY_TTL && self.entries.len() < IDEMPOTENCY_ENTRIES {
                break;
            }
            if !matches!(self.entries.get(key), Some(Entry::Running)) {
                self.entries.remove(key);
            }
            self.order.pop_front();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether a request is one of the gateway's, and if so the call (or the answer when it cannot
/// be made). `find` gives a deployment's target by name.
pub fn route(
    request: &AdminRequest,
    find: impl Fn(&str) -> Option<Target>,
) -> Option<Result<Call, AdminResponse>> {
    if let Some(after) = request.path.strip_prefix("/invoke/") {
        let (name, rest) = match after.find('/') {
            Some(i) => (&after[..i], &after[i..]),
            None => (after, ""),
        };
        return Some(match find(name) {
            Some(target) => Ok(Call::Invoke {
                target,
                rest: rest.to_owned(),
            }),
            None => Err(AdminResponse::error(404, format!("no deployment `{name}`"))),
        });
    }
    if request.path != "/api/v1/template.execute" {
        return None;
    }
    if request.method != "POST" {
        return Some(Err(AdminResponse::error(
            405,
            "template.execute takes POST",
        )));
    }
    let body: Value = match serde_json::from_slice(&request.body) {
        Ok(v) => v,
        Err(e) => {
            return Some(Err(AdminResponse::error(
                400,
                format!("template.execute: the body is not JSON: {e}"),
            )));
        }
    };
    let Some(spec) = body["template"]["plugin"].get("percore") else {
        // Another plugin's template: not ours, and not an error.
        return Some(Err(AdminResponse::json(200, &json!({}))));
    };
    let plugin: Plugin = match serde_json::from_value(spec.clone()) {
        Ok(p) => p,
        Err(e) => {
            return Some(Err(AdminResponse::json(
                200,
                &json!({ "node": { "phase": "Failed", "message": format!("plugin.percore: {e}") } }),
            )));
        }
    };
    Some(match find(&plugin.app) {
        Some(target) => Ok(Call::Plugin { target, plugin }),
        None => Err(AdminResponse::json(
            200,
            &json!({ "node": { "phase": "Failed", "message": format!("no deployment `{}` on this host", plugin.app) } }),
        )),
    })
}

#[cfg(test)]
mod tests;
