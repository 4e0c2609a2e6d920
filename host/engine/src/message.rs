//! The request and response as the host sees them (the input region's encoding is in
//! `percore-region`).

use crate::bindings::guest;

/// One request, borrowed from wherever the host holds it (a parse buffer, a test).
pub use percore_region::Request;

/// One response from a guest, checked against the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// 200 to 599.
    pub status: u16,
    /// Header fields in order, framing fields (`content-length`, `transfer-encoding`,
    /// `connection`) removed.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header value called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// The record for the portable path (copies every byte once more on the host).
pub(crate) fn to_record(request: &Request<'_>) -> guest::Request {
    guest::Request {
        method: request.method.to_owned(),
        path_with_query: request.path_with_query.to_owned(),
        headers: request
            .headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_vec()))
            .collect(),
        body: request.body.to_vec(),
    }
}
