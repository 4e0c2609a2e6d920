//! Outbound HTTP from guests: the `edge:handler/outbound` import, the per-deployment policy
//! (allow-list, timeout, caps) and the seam to the client that does the I/O.
//!
//! The engine checks the request (URL, method, header fields) and the policy; the I/O is done
//! by an [`OutboundClient`] registered for the thread that runs the call
//! ([`set_thread_client`]): the data plane registers one per core that runs on the core's
//! io_uring. A thread with none answers `unavailable`.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::allowed_hosts::{AllowedHosts, Origin, Scheme};
use crate::bindings::outbound;
use crate::host::HostState;

/// What a deployment allows its guests to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundPolicy {
    /// Origins requests may go to (deny by default).
    pub allowed: AllowedHosts,
    /// Longest wait for one whole response (connect, send, receive).
    pub timeout: Duration,
    /// Outbound requests one incoming request may make.
    pub max_per_request: u32,
    /// Largest response body accepted, in bytes.
    pub max_response_bytes: usize,
}

impl Default for OutboundPolicy {
    fn default() -> Self {
        Self {
            allowed: AllowedHosts::default(),
            timeout: Duration::from_secs(10),
            max_per_request: 16,
            max_response_bytes: 16 << 20,
        }
    }
}

/// A checked request, for the client.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    /// The method token.
    pub method: String,
    /// Where it goes.
    pub origin: Origin,
    /// The path and query (`/` at least).
    pub path_and_query: String,
    /// Header fields (valid names and values; no framing or connection fields, no `host`).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
    /// The whole response must have arrived by then.
    pub deadline: Instant,
    /// Largest response body accepted.
    pub max_response_bytes: usize,
}

/// A response, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundResponse {
    /// The status code.
    pub status: u16,
    /// Header fields as received, names lowercase.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, decoded (never chunked).
    pub body: Vec<u8>,
    /// Bytes received on the wire for it (head and body as framed).
    pub wire_bytes: u64,
}

/// Why an outbound request got no response (the `error` variant of the contract).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// Not a valid request.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Not on the allow-list.
    #[error("denied: {0}")]
    Denied(String),
    /// The name did not resolve.
    #[error("DNS: {0}")]
    Dns(String),
    /// No connection.
    #[error("connect: {0}")]
    Connect(String),
    /// No whole response in time.
    #[error("timed out")]
    Timeout,
    /// The response is over the cap.
    #[error("the response is too large")]
    TooLarge,
    /// Not valid HTTP, or cut short.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Over a cap on requests.
    #[error("too many outbound requests")]
    TooMany,
    /// No client on this thread.
    #[error("outbound HTTP is unavailable here")]
    Unavailable,
}

impl OutboundError {
    /// A short name for counters and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            OutboundError::InvalidRequest(_) => "invalid_request",
            OutboundError::Denied(_) => "denied",
            OutboundError::Dns(_) => "dns",
            OutboundError::Connect(_) => "connect",
            OutboundError::Timeout => "timeout",
            OutboundError::TooLarge => "too_large",
            OutboundError::Protocol(_) => "protocol",
            OutboundError::TooMany => "too_many",
            OutboundError::Unavailable => "unavailable",
        }
    }
}

/// The future of one outbound request.
pub type OutboundFuture =
    Pin<Box<dyn Future<Output = Result<OutboundResponse, OutboundError>> + Send>>;

/// Does the I/O of outbound requests on the thread it is registered for.
pub trait OutboundClient: std::fmt::Debug {
    /// Send `request` and read the whole response. The future runs on this thread.
    fn fetch(&self, request: OutboundRequest) -> OutboundFuture;
}

thread_local! {
    static CLIENT: RefCell<Option<Arc<dyn OutboundClient>>> = const { RefCell::new(None) };
}

/// Make `client` do the outbound requests of the calls this thread runs (`None`: none).
pub fn set_thread_client(client: Option<Arc<dyn OutboundClient>>) {
    CLIENT.with(|c| *c.borrow_mut() = client);
}

/// Start `request` on this thread's client.
pub fn fetch_on_this_thread(request: OutboundRequest) -> OutboundFuture {
    match CLIENT.with(|c| c.borrow().clone()) {
        Some(client) => client.fetch(request),
        None => Box::pin(async { Err(OutboundError::Unavailable) }),
    }
}

/// What a call's outbound requests did (for its invocation record).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboundStats {
    /// Requests the guest made (allowed or not).
    pub requests: u32,
    /// Those that got no response.
    pub errors: u32,
    /// Bytes of request bodies and heads sent.
    pub bytes_out: u64,
    /// Bytes of responses received.
    pub bytes_in: u64,
    /// Time spent waiting for responses.
    pub wait: Duration,
}

/// Header fields the client writes itself, dropped from what the guest gives.
const OWN_FIELDS: [&str; 9] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
];

/// Check a guest's request against the contract and the policy (no I/O, no connection).
pub fn check_request(
    method: String,
    url: &str,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    policy: &OutboundPolicy,
    deadline: Instant,
) -> Result<OutboundRequest, OutboundError> {
    let invalid = |what: String| Err(OutboundError::InvalidRequest(what));
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return invalid(format!("`{method}` is not an HTTP method"));
    }
    let uri: http::Uri = match url.parse() {
        Ok(uri) => uri,
        Err(e) => return invalid(format!("`{url}` is not a URL: {e}")),
    };
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::Http,
        Some("https") => Scheme::Https,
        Some(other) => return invalid(format!("the scheme `{other}` is not http or https")),
        None => {
            return invalid(format!(
                "`{url}` is not an absolute http:// or https:// URL"
            ));
        }
    };
    let Some(authority) = uri.authority() else {
        return invalid(format!("`{url}` names no host"));
    };
    if authority.as_str().contains('@') {
        return invalid("user information in the URL is not supported".into());
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if host.is_empty() {
        return invalid(format!("`{url}` names no host"));
    }
    // An address in its one written form (`[0:0::1]` is `::1`), as the allow-list has it.
    let host = host
        .parse::<std::net::IpAddr>()
        .map_or(host, |ip| ip.to_string());
    let origin = Origin {
        scheme,
        host,
        port: authority.port_u16().unwrap_or(scheme.default_port()),
    };
    if !policy.allowed.allows(&origin) {
        return Err(OutboundError::Denied(format!(
            "{origin} is not in this deployment's allowed_outbound_hosts"
        )));
    }
    let mut checked = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return invalid(format!("`{name}` is not a header name"));
        }
        if value.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return invalid(format!("the value of `{name}` holds CR, LF or NUL"));
        }
        if OWN_FIELDS.iter().any(|f| name.eq_ignore_ascii_case(f)) {
            continue;
        }
        checked.push((name, value));
    }
    Ok(OutboundRequest {
        method,
        path_and_query: uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        origin,
        headers: checked,
        body,
        deadline: deadline.min(Instant::now() + policy.timeout),
        max_response_bytes: policy.max_response_bytes,
    })
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl HostState {
    /// Whether the guest's outbound requests are sent (the default) or end `unavailable` at
    /// once: off for calls run to completion outside the core's event loop (a warm-up), which
    /// would otherwise wait forever on a client that only that loop drives.
    pub(crate) fn set_outbound_available(&mut self, available: bool) {
        self.outbound.unavailable = !available;
    }

    /// One outbound request of the call in progress: counted, checked, sent; the wait is
    /// timed. The request's wall deadline bounds the wait.
    pub(crate) async fn fetch_outbound(
        &mut self,
        method: String,
        url: &str,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
    ) -> Result<OutboundResponse, OutboundError> {
        let policy = self.limits.outbound.clone();
        self.outbound_stats.requests += 1;
        let result = if self.outbound.unavailable {
            Err(OutboundError::Unavailable)
        } else if self.outbound_stats.requests > policy.max_per_request {
            Err(OutboundError::TooMany)
        } else {
            let deadline = self.clock.wall_start + self.limits.wall_deadline;
            match check_request(method, url, headers, body, &policy, deadline) {
                Ok(request) => {
                    let sent = (request.body.len() + request.path_and_query.len()) as u64;
                    let started = Instant::now();
                    let result = fetch_on_this_thread(request).await;
                    self.outbound_stats.wait += started.elapsed();
                    if result.is_ok() {
                        self.outbound_stats.bytes_out += sent;
                    }
                    result
                }
                Err(e) => Err(e),
            }
        };
        match &result {
            Ok(response) => self.outbound_stats.bytes_in += response.wire_bytes,
            Err(_) => self.outbound_stats.errors += 1,
        }
        result
    }
}

/// wasi:http's outgoing requests (`outgoing-handler.handle`), sent through the same client
/// and checked against the same policy as `edge:handler/outbound.fetch`.
pub(crate) struct WasiHooks {
    policy: Arc<OutboundPolicy>,
    /// When the call in progress must end.
    deadline: Instant,
    /// What this call's requests did: their futures run outside the store, so it is shared.
    stats: Arc<Mutex<OutboundStats>>,
    /// A request was made since the last call started (`stats` needs resetting).
    used: bool,
    /// Requests end `unavailable` at once (see [`HostState::set_outbound_available`]).
    pub(crate) unavailable: bool,
}

impl std::fmt::Debug for WasiHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasiHooks").finish_non_exhaustive()
    }
}

/// Largest request body a wasi:http guest may send out.
const MAX_WASI_REQUEST_BODY: usize = 16 << 20;

impl WasiHooks {
    pub(crate) fn new(policy: Arc<OutboundPolicy>) -> Self {
        Self {
            policy,
            deadline: Instant::now(),
            stats: Arc::default(),
            used: false,
            unavailable: false,
        }
    }

    /// A call starts that must end by `deadline`.
    pub(crate) fn start_call(&mut self, deadline: Instant) {
        self.deadline = deadline;
        if std::mem::take(&mut self.used) {
            *self.stats.lock().unwrap_or_else(|p| p.into_inner()) = OutboundStats::default();
        }
    }

    /// What this call's requests did, if it made any.
    pub(crate) fn stats(&self) -> Option<OutboundStats> {
        if !self.used {
            return None;
        }
        let stats = *self.stats.lock().unwrap_or_else(|p| p.into_inner());
        (stats.requests > 0).then_some(stats)
    }
}

type HookFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

impl WasiHttpHooks for WasiHooks {
    /// A WASIp3 body write is copied out of the guest in chunks of this size, each held until
    /// the host reads it: small, so that a body past the response limit is stopped within a
    /// chunk of it (wasmtime's default is 1 MiB).
    fn p3_outgoing_body_chunk_size(&mut self) -> usize {
        64 << 10
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: HookFuture,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, HookFuture), HttpError>> + Send>
    {
        let policy = self.policy.clone();
        let deadline = self.deadline;
        let stats = self.stats.clone();
        self.used = true;
        let over = {
            let mut stats = stats.lock().unwrap_or_else(|p| p.into_inner());
            stats.requests += 1;
            stats.requests > policy.max_per_request
        };
        let unavailable = self.unavailable;
        Box::new(async move {
            let result = if unavailable {
                Err(OutboundError::Unavailable)
            } else if over {
                Err(OutboundError::TooMany)
            } else {
                wasi_fetch(request, &policy, deadline, &stats).await
            };
            let response = result.map_err(|e| {
                stats.lock().unwrap_or_else(|p| p.into_inner()).errors += 1;
                wasi_error(e)
            })?;
            let mut builder = http::Response::builder().status(response.status);
            for (name, value) in &response.headers {
                builder = builder.header(name.as_str(), value.as_slice());
            }
            let body = Full::new(Bytes::from(response.body))
                .map_err(|never| match never {})
                .boxed_unsync();
            let response = builder
                .body(body)
                .map_err(|_| HttpError::HttpProtocolError)?;
            Ok((response, Box::new(async { Ok(()) }) as HookFuture))
        })
    }
}

/// Check and send a wasi:http request; count what it did.
async fn wasi_fetch(
    request: http::Request<WasiBody>,
    policy: &OutboundPolicy,
    deadline: Instant,
    stats: &Mutex<OutboundStats>,
) -> Result<OutboundResponse, OutboundError> {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_WASI_REQUEST_BODY).collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(e) => {
            return Err(OutboundError::InvalidRequest(format!(
                "the request body could not be read (at most {MAX_WASI_REQUEST_BODY} bytes): {e}"
            )));
        }
    };
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    let url = parts.uri.to_string();
    let request = check_request(
        parts.method.as_str().to_owned(),
        &url,
        headers,
        body,
        policy,
        deadline,
    )?;
    let sent = (request.body.len() + request.path_and_query.len()) as u64;
    let started = Instant::now();
    let result = fetch_on_this_thread(request).await;
    let mut stats = stats.lock().unwrap_or_else(|p| p.into_inner());
    stats.wait += started.elapsed();
    if let Ok(response) = &result {
        stats.bytes_out += sent;
        stats.bytes_in += response.wire_bytes;
    }
    result
}

/// The wasi:http error code for an outbound error.
fn wasi_error(e: OutboundError) -> HttpError {
    match e {
        OutboundError::InvalidRequest(_) => HttpError::HttpRequestUriInvalid,
        OutboundError::Denied(_) | OutboundError::Unavailable => HttpError::HttpRequestDenied,
        OutboundError::Dns(message) => HttpError::DnsError {
            rcode: Some(message),
            info_code: None,
        },
        OutboundError::Connect(_) => HttpError::ConnectionRefused,
        OutboundError::Timeout => HttpError::HttpResponseTimeout,
        OutboundError::TooLarge => HttpError::HttpResponseBodySize(None),
        OutboundError::Protocol(_) => HttpError::HttpProtocolError,
        OutboundError::TooMany => HttpError::ConnectionLimitReached,
    }
}

impl outbound::Host for HostState {
    async fn fetch(
        &mut self,
        request: outbound::OutboundRequest,
    ) -> Result<outbound::Response, outbound::Error> {
        let outbound::OutboundRequest {
            method,
            url,
            headers,
            body,
        } = request;
        match self.fetch_outbound(method, &url, headers, body).await {
            Ok(response) => Ok(outbound::Response {
                status: response.status,
                headers: response.headers,
                body: response.body,
            }),
            Err(e) => Err(match e {
                OutboundError::InvalidRequest(m) => outbound::Error::InvalidRequest(m),
                OutboundError::Denied(m) => outbound::Error::Denied(m),
                OutboundError::Dns(m) => outbound::Error::Dns(m),
                OutboundError::Connect(m) => outbound::Error::Connect(m),
                OutboundError::Timeout => outbound::Error::Timeout,
                OutboundError::TooLarge => outbound::Error::TooLarge,
                OutboundError::Protocol(m) => outbound::Error::Protocol(m),
                OutboundError::TooMany => outbound::Error::TooMany,
                OutboundError::Unavailable => outbound::Error::Unavailable,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allowed: &[&str]) -> OutboundPolicy {
        OutboundPolicy {
            allowed: AllowedHosts::parse(allowed).unwrap(),
            ..OutboundPolicy::default()
        }
    }

    fn check(url: &str, policy: &OutboundPolicy) -> Result<OutboundRequest, OutboundError> {
        let headers = vec![
            ("accept".to_owned(), b"*/*".to_vec()),
            ("Host".to_owned(), b"evil".to_vec()),
        ];
        check_request(
            "GET".into(),
            url,
            headers,
            Vec::new(),
            policy,
            Instant::now() + Duration::from_secs(1),
        )
    }

    #[test]
    fn requests_are_checked_before_any_connection() {
        let p = policy(&["http://127.0.0.1:*", "https://api.example.com"]);
        let ok = check("http://127.0.0.1:8080/a?b=c", &p).unwrap();
        assert_eq!(ok.path_and_query, "/a?b=c");
        assert_eq!(ok.origin.port, 8080);
        assert_eq!(ok.headers, vec![("accept".to_owned(), b"*/*".to_vec())]);
        assert!(check("https://API.example.com", &p).is_ok());
        let v6 = policy(&["http://[::1]:8080"]);
        assert_eq!(
            check("http://[0:0::1]:8080/", &v6).unwrap().origin.host,
            "::1"
        );
        for (url, kind) in [
            ("http://api.example.com/", "denied"),
            ("https://127.0.0.1/", "denied"),
            ("ftp://127.0.0.1/", "invalid_request"),
            ("/relative", "invalid_request"),
            ("http://user@127.0.0.1/", "invalid_request"),
        ] {
            assert_eq!(check(url, &p).unwrap_err().kind(), kind, "{url}");
        }
        assert_eq!(
            check("http://127.0.0.1/", &OutboundPolicy::default())
                .unwrap_err()
                .kind(),
            "denied"
        );
        let bad_value = check_request(
            "GET".into(),
            "http://127.0.0.1/",
            vec![("x".into(), b"a\r\nb".to_vec())],
            Vec::new(),
            &p,
            Instant::now(),
        );
        assert_eq!(bad_value.unwrap_err().kind(), "invalid_request");
    }
}
