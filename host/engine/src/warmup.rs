//! Warm-up: requests a deployment runs on each new instance before its snapshot, so that the
//! state every later request starts from already holds the work a first request does once
//! (an interpreter compiling the handler's functions, a library filling its caches).
//!
//! Opt-in, because the guest sees these requests: a reset instance then starts each request
//! from the state after the warm-up, not from the state after instantiation. Lambda's
//! SnapStart "priming" is the same idea. Only a snapshot keeps what a warm-up did, so it runs
//! only where instances are reset.

use std::fmt;

use crate::{
    Fault, HttpInstance, InputPreference, Instance, Invocation, Request, ResetError, Response,
};

/// Most warm-up requests one deployment may ask for (each runs on every new instance).
pub const MAX_WARMUP_REQUESTS: usize = 16;

/// Longest path of a warm-up request, in bytes.
const MAX_PATH: usize = 8 << 10;

/// The header fields of every warm-up request: a host name that cannot be a real one
/// (RFC 6761's `.invalid`) and a user agent a guest can recognise.
pub const WARMUP_HEADERS: &[(&str, &[u8])] = &[
    ("host", b"warmup.invalid"),
    ("user-agent", b"percore-warmup"),
];

/// One warm-up request: a method and a path with its query, no body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmupRequest {
    method: String,
    path: String,
}

/// Why a warm-up was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WarmupError {
    /// An entry that is neither `PATH` nor `METHOD PATH`.
    #[error(
        "warm-up request `{0}` is not `PATH` or `METHOD PATH` (for example `/` or `POST /api`)"
    )]
    Shape(String),
    /// A method with characters HTTP does not allow in one.
    #[error("warm-up request `{0}`: the method is not an HTTP token")]
    Method(String),
    /// A path that does not start with `/`, or holds other than visible ASCII.
    #[error(
        "warm-up request `{0}`: the path must start with `/` and be visible ASCII \
         (percent-encoded where needed, at most {MAX_PATH} bytes)"
    )]
    Path(String),
    /// More requests than [`MAX_WARMUP_REQUESTS`].
    #[error("{0} warm-up requests given; at most {MAX_WARMUP_REQUESTS} are allowed")]
    TooMany(usize),
}

/// RFC 9110's `tchar`.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

impl WarmupRequest {
    /// `PATH` (a `GET`) or `METHOD PATH`, for example `/`, `/search?q=a` or `POST /api`.
    pub fn parse(text: &str) -> Result<Self, WarmupError> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let (method, path) = match words.as_slice() {
            [path] => ("GET", *path),
            [method, path] => (*method, *path),
            _ => return Err(WarmupError::Shape(text.to_owned())),
        };
        if !method.chars().all(is_token_char) {
            return Err(WarmupError::Method(text.trim().to_owned()));
        }
        // Visible ASCII: what any guest's HTTP types (wasi:http's `http::Uri` among them) take.
        if !path.starts_with('/')
            || path.len() > MAX_PATH
            || !path.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(WarmupError::Path(text.trim().to_owned()));
        }
        Ok(Self {
            method: method.to_owned(),
            path: path.to_owned(),
        })
    }

    /// The request as the guest gets it: [`WARMUP_HEADERS`] and no body.
    pub fn request(&self) -> Request<'_> {
        Request {
            method: &self.method,
            path_with_query: &self.path,
            headers: WARMUP_HEADERS,
            body: &[],
        }
    }
}

impl fmt::Display for WarmupRequest {
    /// `METHOD PATH`, which [`WarmupRequest::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// A deployment's warm-up requests, run in order on each new instance before its snapshot.
/// Empty (the default): no warm-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Warmup(Vec<WarmupRequest>);

impl Warmup {
    /// Each entry as [`WarmupRequest::parse`] reads it.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, WarmupError> {
        if entries.len() > MAX_WARMUP_REQUESTS {
            return Err(WarmupError::TooMany(entries.len()));
        }
        let requests = entries
            .iter()
            .map(|e| WarmupRequest::parse(e.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Self(requests))
    }

    /// No warm-up requests.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The requests, in the order they run.
    pub fn requests(&self) -> &[WarmupRequest] {
        &self.0
    }

    /// Each request as `METHOD PATH` (what a deployment stores and shows).
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }

    /// Run every request through `handle`; the first fault ends the warm-up. Any status is
    /// accepted: a guest that answers 404 to a warm-up path still ran its code.
    fn run(
        &self,
        mut handle: impl FnMut(&Request<'_>) -> Invocation,
    ) -> Result<Vec<Response>, ResetError> {
        let mut responses = Vec::with_capacity(self.0.len());
        for request in &self.0 {
            match handle(&request.request()).result {
                Ok(response) => responses.push(response),
                Err(fault) => return Err(warmup_failed(request, fault)),
            }
        }
        Ok(responses)
    }
}

fn warmup_failed(request: &WarmupRequest, fault: Fault) -> ResetError {
    ResetError::Warmup {
        request: request.to_string(),
        fault,
    }
}

impl Instance {
    /// Run the deployment's warm-up requests on this new instance, the way its requests will
    /// run (`preference`); then [`Instance::prepare_reset`] takes the snapshot with their work
    /// in it. Returns the responses. After an error the instance is unusable.
    ///
    /// Outbound HTTP requests end `unavailable`: a warm-up runs to completion outside the
    /// core's event loop, which is what drives the outbound client.
    pub fn warm_up(
        &mut self,
        warmup: &Warmup,
        preference: InputPreference,
    ) -> Result<Vec<Response>, ResetError> {
        self.state_mut().set_outbound_available(false);
        let result = warmup.run(|request| self.handle(request, preference));
        self.state_mut().set_outbound_available(true);
        result
    }
}

impl HttpInstance {
    /// Run the deployment's warm-up requests on this new instance; then
    /// [`HttpInstance::prepare_reset`] takes the snapshot with their work in it. Returns the
    /// responses. After an error the instance is unusable.
    ///
    /// Outbound HTTP requests end `unavailable`, as in [`Instance::warm_up`].
    pub fn warm_up(&mut self, warmup: &Warmup) -> Result<Vec<Response>, ResetError> {
        self.state_mut().set_outbound_available(false);
        let result = warmup.run(|request| self.handle(request));
        self.state_mut().set_outbound_available(true);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_alone_is_a_get_and_both_forms_read_back() {
        let warmup = Warmup::parse(&["/", "POST /api?x=1", "  DELETE   /a  "]).unwrap();
        assert_eq!(warmup.to_strings(), ["GET /", "POST /api?x=1", "DELETE /a"]);
        assert_eq!(Warmup::parse(&warmup.to_strings()).unwrap(), warmup);
        let request = warmup.requests()[1].request();
        assert_eq!(request.method, "POST");
        assert_eq!(request.path_with_query, "/api?x=1");
        assert_eq!(request.headers, WARMUP_HEADERS);
        assert!(request.body.is_empty());
        assert!(Warmup::parse::<&str>(&[]).unwrap().is_empty());
    }

    #[test]
    fn malformed_entries_are_refused_with_what_is_wrong() {
        let err = |s: &str| Warmup::parse(&[s]).unwrap_err();
        assert_eq!(err(""), WarmupError::Shape(String::new()));
        assert_eq!(err("GET / extra"), WarmupError::Shape("GET / extra".into()));
        assert_eq!(err("G(T /"), WarmupError::Method("G(T /".into()));
        assert_eq!(err("GET api"), WarmupError::Path("GET api".into()));
        assert_eq!(err("/a\u{7}b"), WarmupError::Path("/a\u{7}b".into()));
        assert_eq!(err("/café"), WarmupError::Path("/café".into()));
        let long = format!("/{}", "a".repeat(MAX_PATH));
        assert!(matches!(err(&long), WarmupError::Path(_)));
        let many = vec!["/"; MAX_WARMUP_REQUESTS + 1];
        assert_eq!(
            Warmup::parse(&many).unwrap_err(),
            WarmupError::TooMany(MAX_WARMUP_REQUESTS + 1)
        );
        assert!(err("GET api").to_string().contains("must start with `/`"));
    }
}
