//! The admin API's HTTP/1.1: one request per connection, `Content-Length` bodies, JSON out.
//! Requests are read by `percore_http::blocking`.
//! Slow is fine here; clear errors are not optional.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

/// One admin request: read by [`percore_http::blocking`], which the fuzzer drives.
pub use percore_http::blocking::Request as AdminRequest;

/// One admin response.
#[derive(Debug)]
pub struct AdminResponse {
    /// Status.
    pub status: u16,
    /// Content type.
    pub content_type: String,
    /// Other header fields.
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl AdminResponse {
    /// A JSON response.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Self {
            status,
            content_type: "application/json".into(),
            headers: Vec::new(),
            body,
        }
    }

    /// `{"error": message}` with a status.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Self::json(status, &serde_json::json!({ "error": message.into() }))
    }
}

/// Write a response and close.
pub fn respond(stream: &mut TcpStream, response: &AdminResponse) {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n",
        response.status,
        percore_http::reason_phrase(response.status),
        response.content_type,
        response.body.len()
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(&response.body))
        .and_then(|()| stream.flush());
}

/// Read one request (30 s at most between reads). `Err` carries the response to send instead.
pub fn read_request(
    stream: &mut TcpStream,
    max_body: usize,
) -> Result<AdminRequest, AdminResponse> {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    percore_http::blocking::read_request(stream, max_body)
        .map_err(|refusal| AdminResponse::error(refusal.status, refusal.message))
}
