//! The admin API's HTTP/1.1: one request per connection, `Content-Length` bodies, JSON out.
//! Slow is fine here; clear errors are not optional.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One admin request.
#[derive(Debug)]
pub struct AdminRequest {
    /// Method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// The query, without `?` (empty when there is none).
    pub query: String,
    /// Header fields, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl AdminRequest {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

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

const MAX_HEAD: usize = 64 << 10;

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// Write a response and close.
pub fn respond(stream: &mut TcpStream, response: &AdminResponse) {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n",
        response.status,
        reason(response.status),
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

/// Read one request. `Err` carries the response to send instead.
pub fn read_request(
    stream: &mut TcpStream,
    max_body: usize,
) -> Result<AdminRequest, AdminResponse> {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 16 << 10];
    let (head_len, request) = loop {
        let n = stream
            .read(&mut chunk)
            .map_err(|e| AdminResponse::error(400, format!("reading the request: {e}")))?;
        if n == 0 {
            return Err(AdminResponse::error(
                400,
                "the connection closed mid-request",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let target = parsed.path.unwrap_or("/");
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                let request = AdminRequest {
                    method: parsed.method.unwrap_or("").to_owned(),
                    path: path.to_owned(),
                    query: query.to_owned(),
                    headers: parsed
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                    body: Vec::new(),
                };
                break (len, request);
            }
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => {
                return Err(AdminResponse::error(431, "the request head is over 64 KiB"));
            }
            Err(e) => return Err(AdminResponse::error(400, format!("malformed request: {e}"))),
        }
    };
    let mut request = request;
    if request
        .header("transfer-encoding")
        .is_some_and(|v| !v.eq_ignore_ascii_case("identity"))
    {
        return Err(AdminResponse::error(
            411,
            "send the body with a Content-Length (chunked uploads are not accepted here)",
        ));
    }
    let length = match request.header("content-length") {
        None => 0,
        Some(v) => v
            .trim()
            .parse::<usize>()
            .map_err(|_| AdminResponse::error(400, format!("bad Content-Length {v:?}")))?,
    };
    if length > max_body {
        return Err(AdminResponse::error(
            413,
            format!("the body is {length} bytes; the admin API accepts at most {max_body}"),
        ));
    }
    let mut body = buf.split_off(head_len);
    if body.len() > length {
        body.truncate(length);
    }
    body.reserve(length - body.len());
    while body.len() < length {
        let want = (length - body.len()).min(chunk.len());
        let n = stream
            .read(&mut chunk[..want])
            .map_err(|e| AdminResponse::error(400, format!("reading the body: {e}")))?;
        if n == 0 {
            return Err(AdminResponse::error(400, "the connection closed mid-body"));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    request.body = body;
    Ok(request)
}
