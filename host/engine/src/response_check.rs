//! The guest-response contract: what the host checks in a guest's response before sending it.

use crate::bindings::guest;
use crate::{Fault, Limits, Response};

/// Header fields the host owns: it frames the response and manages the connection itself.
const FRAMING: [&str; 4] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
];

fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Hold a guest's response to the contract.
pub(crate) fn check_response(
    response: guest::Response,
    limits: &Limits,
) -> Result<Response, Fault> {
    let guest::Response {
        status,
        headers,
        body,
    } = response;
    check_parts(status, headers, body, limits)
}

/// Hold a response from any kind of guest to the contract: status, header names and values,
/// no body on 204/304, the size limit. Framing fields are dropped (the host frames).
pub(crate) fn check_parts(
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    limits: &Limits,
) -> Result<Response, Fault> {
    let bad = |reason: String| Err(Fault::BadResponse { reason });
    if !(200..=599).contains(&status) {
        return bad(format!("status {status} is outside 200-599"));
    }
    if headers.len() > limits.max_response_headers {
        return bad(format!(
            "{} header fields; the limit is {}",
            headers.len(),
            limits.max_response_headers
        ));
    }
    let header_bytes: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    if header_bytes > limits.max_response_header_bytes {
        return bad(format!(
            "header fields of {header_bytes} bytes; the limit is {}",
            limits.max_response_header_bytes
        ));
    }
    for (name, value) in &headers {
        if !is_token(name) {
            return bad(format!("header name {name:?} is not an HTTP token"));
        }
        if value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
            return bad(format!(
                "the value of header `{name}` contains CR, LF or NUL"
            ));
        }
    }
    if matches!(status, 204 | 304) && !body.is_empty() {
        return bad(format!("status {status} must not have a body"));
    }
    if body.len() > limits.max_response_body {
        return Err(Fault::ResponseTooLarge {
            size: body.len(),
            limit: limits.max_response_body,
        });
    }
    let headers = headers
        .into_iter()
        .filter(|(name, _)| !FRAMING.iter().any(|f| name.eq_ignore_ascii_case(f)))
        .collect();
    Ok(Response {
        status,
        headers,
        body,
    })
}
