//! The roles of the conformance suite's probe guests.
//!
//! `probe-http` (a `wasi:http/proxy` component) and `probe-cgi` (a WASI command run CGI style)
//! each stand in for one of the edge test guests, named by the environment variable
//! [`ROLE_VAR`] (the runner sets it in the deployment's configuration, which these kinds of
//! guest read as environment variables), and answer as that guest does over HTTP: the same
//! statuses, fields and bodies. A probe turns its kind's request into a [`Request`], calls
//! [`respond`] and sends the [`Response`] its kind's way; this crate knows neither kind.
//!
//! The roles:
//!
//! - `echo` (`examples-guests/echo`): the body back, `content-type` copied (by default
//!   `application/octet-stream`), `x-echo-method`, `x-echo-path` (path with query) and one
//!   `x-echo-h-<name>` field per request field, in order. No `x-echo-input`: the input path is
//!   the edge contract's;
//! - `hello` (`examples-guests/hello`): `Hello from percore!`;
//! - `hostile` (`conformance/guests/hostile`), by the last path segment: `/ok`, `/loop`,
//!   `/grow`, `/recurse`, `/panic`, `/big?mb=N`, `/status?code=N`, `/body-on-204`,
//!   `/bad-header`, `/bad-header-name`, `/framing` (not `/stdout`, `/env`, `/random`, `/spin`:
//!   only edge cases use them);
//! - `stateful` (`conformance/guests/stateful`): `/count`, `/peek`;
//! - `json-api` (`examples-guests/json-api`): `/health` only, which the routing cases use.

use std::hint::black_box;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that names the role.
pub const ROLE_VAR: &str = "PROBE_ROLE";

/// A request as a probe received it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The method (`GET`).
    pub method: String,
    /// The path with its query, as sent (`/a/b?x=1`).
    pub path_with_query: String,
    /// Header fields in order, names lowercase; a name may repeat.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.path_with_query
            .split_once('?')
            .map_or(self.path_with_query.as_str(), |(path, _)| path)
    }

    /// The last segment of the path: roles match it, so that they work under any route prefix.
    fn last_segment(&self) -> &str {
        self.path().rsplit('/').next().unwrap_or("")
    }

    /// A query parameter's value, as the SDK's `Request::query_param` finds it.
    fn query_param(&self, name: &str) -> Option<&str> {
        let (_, query) = self.path_with_query.split_once('?')?;
        query
            .split('&')
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }

    /// The first value of a header field.
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }
}

/// A response for a probe to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status; a role may choose one outside 200-599 (`hostile`'s `/status?code=99`).
    pub status: u16,
    /// Header fields in order; a role may choose invalid ones (`hostile`'s `/bad-header`).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A text response (`content-type: text/plain; charset=utf-8`), as the SDK's.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(body.into())
    }

    /// Add a header field (names may repeat).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Set the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

/// Answer `request` as the edge guest `role` does, or `None` when no role has that name.
pub fn respond(role: &str, request: Request) -> Option<Response> {
    Some(match role {
        "echo" => echo(request),
        "hello" => Response::text(200, "Hello from percore!\n"),
        "hostile" => hostile(&request),
        "stateful" => stateful(&request),
        "json-api" => json_api(&request),
        _ => return None,
    })
}

/// The answer when [`ROLE_VAR`] names no role (or is not set).
pub fn unknown_role(role: &str) -> Response {
    Response::text(
        500,
        format!("probe: {ROLE_VAR}={role:?} names no role (set it in the deployment's config)\n"),
    )
}

fn echo(request: Request) -> Response {
    let content_type = request
        .header("content-type")
        .unwrap_or(b"application/octet-stream")
        .to_vec();
    let mut response = Response::new(200)
        .with_header("content-type", content_type)
        .with_header("x-echo-method", request.method.as_str())
        .with_header("x-echo-path", request.path_with_query.as_str());
    for (name, value) in &request.headers {
        response = response.with_header(format!("x-echo-h-{name}"), value.as_slice());
    }
    response.with_body(request.body)
}

// Unbounded on purpose: the host must stop it with a stack-overflow trap.
#[allow(unconditional_recursion)]
fn recurse(depth: u64, trail: &mut Vec<u64>) -> u64 {
    // The frame holds data used after the call, so this cannot become a loop.
    let local = [depth; 16];
    trail.push(black_box(local[depth as usize % 16]));
    let below = recurse(depth + 1, trail);
    black_box(local[0] + below)
}

fn hostile(request: &Request) -> Response {
    match request.last_segment() {
        "ok" => Response::text(200, "ok"),
        "loop" => {
            let mut counter = 0u64;
            loop {
                counter = black_box(counter.wrapping_add(1));
            }
        }
        "grow" => {
            // Reserve 1 MiB at a time and keep it: memory.grow until the cap refuses.
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut chunk = Vec::<u8>::with_capacity(1 << 20);
                chunk.push(1);
                hoard.push(black_box(chunk));
            }
        }
        "recurse" => {
            let mut trail = Vec::new();
            Response::text(200, recurse(0, &mut trail).to_string())
        }
        "panic" => panic!("deliberate panic"),
        "big" => {
            let mb: usize = request
                .query_param("mb")
                .and_then(|v| v.parse().ok())
                .unwrap_or(32);
            Response::new(200).with_body(vec![b'x'; mb << 20])
        }
        "status" => {
            // Any status the guest chooses; 204 and 304 without a body, as the contract says.
            let code: u16 = request
                .query_param("code")
                .and_then(|v| v.parse().ok())
                .unwrap_or(200);
            match code {
                204 | 304 => Response::new(code).with_header("x-status", code.to_string()),
                _ => Response::text(code, format!("status {code}\n")),
            }
        }
        "body-on-204" => Response::text(204, "a 204 must not have a body"),
        "bad-header" => Response::text(200, "x").with_header("x-bad", "line\r\nbreak"),
        "bad-header-name" => Response::text(200, "x").with_header("bad name", "v"),
        "framing" => Response::text(200, "framed by the host")
            .with_header("content-length", "9999")
            .with_header("transfer-encoding", "chunked")
            .with_header("connection", "close"),
        _ => Response::text(404, "unknown behaviour"),
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);
static BUFFER: Mutex<[u8; 4096]> = Mutex::new([0; 4096]);

fn stateful(request: &Request) -> Response {
    match request.last_segment() {
        "count" => {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
            Response::text(200, n.to_string())
        }
        "peek" => {
            let mut buffer = BUFFER.lock().unwrap_or_else(|p| p.into_inner());
            let seen: String = buffer[..16].iter().map(|b| format!("{b:02x}")).collect();
            buffer[..16].copy_from_slice(b"previous-request");
            Response::text(200, seen)
        }
        _ => Response::text(404, "unknown"),
    }
}

fn json(status: u16, body: &str) -> Response {
    Response::new(status)
        .with_header("content-type", "application/json")
        .with_body(body)
}

fn json_api(request: &Request) -> Response {
    match (request.method.as_str(), request.path()) {
        ("GET", "/health") => json(200, r#"{"status":"ok"}"#),
        (_, "/health") => {
            json(405, r#"{"error":"method not allowed"}"#).with_header("allow", "GET")
        }
        _ => json(404, r#"{"error":"not found"}"#),
    }
}
