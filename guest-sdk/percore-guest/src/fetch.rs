//! Outbound HTTP: send a request to another server and get its whole response.
//!
//! ```ignore
//! let page = percore_guest::fetch::get("http://origin.internal/page")?;
//! let created = percore_guest::fetch::Request::new("POST", "https://api.example.com/items")
//!     .header("content-type", "application/json")
//!     .body(r#"{"name":"x"}"#)
//!     .send()?;
//! ```
//!
//! The host makes the request (HTTP/1.1, connections kept alive per origin); the guest's call
//! sleeps while it waits and its core serves others meanwhile. The deployment decides which
//! origins are allowed (`allowed_outbound_hosts`, none by default), the timeout, the number of
//! requests per incoming request and the largest response. Redirects are not followed.

use crate::Response;
use crate::bindings::edge::handler::outbound as host;

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Not an absolute `http`/`https` URL, or a method or header field that is not valid HTTP.
    InvalidRequest(String),
    /// The deployment's `allowed_outbound_hosts` does not allow this origin; no connection
    /// was made.
    Denied(String),
    /// The host name did not resolve.
    Dns(String),
    /// No connection could be made.
    Connect(String),
    /// No whole response within the deployment's outbound timeout (or the request's deadline).
    Timeout,
    /// The response is larger than the deployment allows.
    TooLarge,
    /// The response was not valid HTTP/1.1, or was cut short.
    Protocol(String),
    /// Over the deployment's (or the core's) cap on outbound requests.
    TooMany,
    /// This host offers no outbound HTTP here (a tool running the guest once).
    Unavailable,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::InvalidRequest(m) => write!(f, "invalid request: {m}"),
            FetchError::Denied(m) => write!(f, "denied: {m}"),
            FetchError::Dns(m) => write!(f, "DNS: {m}"),
            FetchError::Connect(m) => write!(f, "connect: {m}"),
            FetchError::Timeout => f.write_str("timed out"),
            FetchError::TooLarge => f.write_str("the response is too large"),
            FetchError::Protocol(m) => write!(f, "protocol: {m}"),
            FetchError::TooMany => f.write_str("too many outbound requests"),
            FetchError::Unavailable => f.write_str("outbound HTTP is unavailable here"),
        }
    }
}

impl std::error::Error for FetchError {}

impl FetchError {
    /// A short name: `denied`, `timeout`, ...
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::InvalidRequest(_) => "invalid_request",
            FetchError::Denied(_) => "denied",
            FetchError::Dns(_) => "dns",
            FetchError::Connect(_) => "connect",
            FetchError::Timeout => "timeout",
            FetchError::TooLarge => "too_large",
            FetchError::Protocol(_) => "protocol",
            FetchError::TooMany => "too_many",
            FetchError::Unavailable => "unavailable",
        }
    }

    /// The status a proxy would answer with: 403 denied, 504 timeout, 502 otherwise (400 for
    /// an invalid request, 503 for too many).
    pub fn status(&self) -> u16 {
        match self {
            FetchError::InvalidRequest(_) => 400,
            FetchError::Denied(_) => 403,
            FetchError::Timeout => 504,
            FetchError::TooMany | FetchError::Unavailable => 503,
            _ => 502,
        }
    }
}

impl From<host::Error> for FetchError {
    fn from(e: host::Error) -> Self {
        match e {
            host::Error::InvalidRequest(m) => FetchError::InvalidRequest(m),
            host::Error::Denied(m) => FetchError::Denied(m),
            host::Error::Dns(m) => FetchError::Dns(m),
            host::Error::Connect(m) => FetchError::Connect(m),
            host::Error::Timeout => FetchError::Timeout,
            host::Error::TooLarge => FetchError::TooLarge,
            host::Error::Protocol(m) => FetchError::Protocol(m),
            host::Error::TooMany => FetchError::TooMany,
            host::Error::Unavailable => FetchError::Unavailable,
        }
    }
}

/// A request to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Request {
    /// A request with `method` to the absolute `url`, no header fields and no body.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Add a header field (`host`, `content-length` and `connection` are the host's).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Set the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Send it and wait for the whole response.
    pub fn send(self) -> Result<Response, FetchError> {
        let request = host::OutboundRequest {
            method: self.method,
            url: self.url,
            headers: self.headers,
            body: self.body,
        };
        let response = host::fetch(&request)?;
        let mut out = Response::new(response.status).with_body(response.body);
        for (name, value) in response.headers {
            out = out.with_header(name, value);
        }
        Ok(out)
    }
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response, FetchError> {
    Request::new("GET", url).send()
}

#[cfg(feature = "http")]
impl<B: Into<Vec<u8>>> From<http::Request<B>> for Request {
    fn from(request: http::Request<B>) -> Self {
        let (parts, body) = request.into_parts();
        let mut out = Request::new(parts.method.as_str(), parts.uri.to_string()).body(body);
        for (name, value) in &parts.headers {
            out = out.header(name.as_str(), value.as_bytes());
        }
        out
    }
}
