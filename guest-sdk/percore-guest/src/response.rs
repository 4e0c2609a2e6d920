//! The response a handler returns.

use crate::bindings::exports::edge::handler::guest::Response as WitResponse;

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
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

    /// A text response (`content-type: text/plain; charset=utf-8`).
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(body.into())
    }

    /// A response with a binary body and no content type.
    pub fn bytes(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self::new(status).with_body(body)
    }

    /// A JSON response; a value that cannot be serialised gives a 500.
    #[cfg(feature = "json")]
    pub fn json<T: serde::Serialize + ?Sized>(status: u16, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::new(status)
                .with_header("content-type", "application/json")
                .with_body(body),
            Err(e) => Self::text(500, format!("cannot serialise the response: {e}\n")),
        }
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

    /// The status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The header fields, in order.
    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    pub(crate) fn into_wit(self) -> WitResponse {
        WitResponse {
            status: self.status,
            headers: self.headers,
            body: self.body,
        }
    }
}

#[cfg(feature = "http")]
impl<B: Into<Vec<u8>>> From<http::Response<B>> for Response {
    fn from(response: http::Response<B>) -> Self {
        let (parts, body) = response.into_parts();
        Self {
            status: parts.status.as_u16(),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                .collect(),
            body: body.into(),
        }
    }
}

/// What a `#[handler]` function may return.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned from a #[handler]",
    label = "a handler must return a response",
    note = "return `percore_guest::Response`, an `http::Response<B>`, or a `Result` of one whose error implements `Display`"
)]
pub trait IntoResponse {
    /// Turn the value into a response.
    fn into_response(self) -> Response;
}

#[diagnostic::do_not_recommend]
impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

#[cfg(feature = "http")]
#[diagnostic::do_not_recommend]
impl<B: Into<Vec<u8>>> IntoResponse for http::Response<B> {
    fn into_response(self) -> Response {
        self.into()
    }
}

#[diagnostic::do_not_recommend]
impl<T: IntoResponse, E: std::fmt::Display> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(value) => value.into_response(),
            Err(error) => {
                crate::log::log(
                    crate::log::Level::Error,
                    "handler error",
                    &[("error", &error.to_string())],
                );
                Response::text(500, "internal error\n")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_keep_order_and_repeats() {
        let r = Response::text(201, "x")
            .with_header("a", "1")
            .with_header("a", "2");
        assert_eq!(r.status(), 201);
        assert_eq!(
            r.headers()[1..],
            [
                ("a".to_owned(), b"1".to_vec()),
                ("a".to_owned(), b"2".to_vec())
            ]
        );
        assert_eq!(r.body(), b"x");
    }

    #[cfg(feature = "http")]
    #[test]
    fn http_responses_convert() {
        let r: Response = http::Response::builder()
            .status(404)
            .header("x-y", "z")
            .body("gone")
            .unwrap()
            .into();
        assert_eq!((r.status(), r.body()), (404, &b"gone"[..]));
        assert_eq!(r.headers(), &[("x-y".to_owned(), b"z".to_vec())]);
    }
}
