//! The request a handler receives.

use crate::bindings::exports::edge::handler::guest::Request as WitRequest;

/// Which way the host sent the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputPath {
    /// Written by the host into this guest's input region (no copy inside the guest).
    Region,
    /// Passed through the canonical ABI (the portable path).
    Portable,
}

impl InputPath {
    /// `region` or `portable`.
    pub fn as_str(self) -> &'static str {
        match self {
            InputPath::Region => "region",
            InputPath::Portable => "portable",
        }
    }
}

/// An HTTP request, borrowed: its bytes stay where the host put them.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    method: &'a str,
    path_with_query: &'a str,
    headers: Vec<(&'a str, &'a [u8])>,
    body: &'a [u8],
    input: InputPath,
}

impl<'a> Request<'a> {
    pub(crate) fn new(
        method: &'a str,
        path_with_query: &'a str,
        headers: Vec<(&'a str, &'a [u8])>,
        body: &'a [u8],
        input: InputPath,
    ) -> Self {
        Self {
            method,
            path_with_query,
            headers,
            body,
            input,
        }
    }

    pub(crate) fn from_wit(request: &'a WitRequest) -> Self {
        Self::new(
            &request.method,
            &request.path_with_query,
            request
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_slice()))
                .collect(),
            &request.body,
            InputPath::Portable,
        )
    }

    /// The method, for example `GET`.
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The path without the query, for example `/items/7`.
    pub fn path(&self) -> &'a str {
        self.path_with_query
            .split_once('?')
            .map_or(self.path_with_query, |(p, _)| p)
    }

    /// The query string without `?`, if any.
    pub fn query(&self) -> Option<&'a str> {
        self.path_with_query.split_once('?').map(|(_, q)| q)
    }

    /// The value of query parameter `name` (first occurrence, not percent-decoded).
    pub fn query_param(&self, name: &str) -> Option<&'a str> {
        self.query()?
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// Path and query as on the request line.
    pub fn path_with_query(&self) -> &'a str {
        self.path_with_query
    }

    /// Header fields in the order received; a name may repeat. Names are lowercase.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + '_ {
        self.headers.iter().copied()
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.header_all(name).next()
    }

    /// The first value of header `name` as text, if it is UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&'a str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every value of header `name`, in order.
    pub fn header_all<'n>(
        &self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n, '_> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// The body (decoded: never chunked).
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<&'a str, crate::Error> {
        Ok(std::str::from_utf8(self.body)?)
    }

    /// The body parsed as JSON.
    #[cfg(feature = "json")]
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, crate::Error> {
        Ok(serde_json::from_slice(self.body)?)
    }

    /// Which way the host sent this request.
    pub fn input_path(&self) -> InputPath {
        self.input
    }

    /// A copy as an `http::Request`.
    #[cfg(feature = "http")]
    pub fn to_http(&self) -> http::Request<Vec<u8>> {
        let mut builder = http::Request::builder()
            .method(self.method)
            .uri(self.path_with_query);
        for (name, value) in &self.headers {
            builder = builder.header(*name, *value);
        }
        builder
            .body(self.body.to_vec())
            .unwrap_or_else(|_| http::Request::new(self.body.to_vec()))
    }
}
