//! One request read from a blocking stream: what the admin API and the Argo plugin serve with (one
//! request per connection, `Content-Length` bodies). Slow is fine there; clear refusals and a
//! bounded buffer are not optional. Generic over [`Read`] so that it is fuzzed without a socket.

use std::io::Read;

/// The largest request head accepted, however it arrives.
pub const MAX_HEAD: usize = 64 << 10;

/// Header fields beyond this many are refused.
const MAX_FIELDS: usize = 64;

/// One request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
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

impl Request {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request was not read: the status to answer with and a sentence for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// What was wrong.
    pub message: String,
}

impl Refusal {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// Read one request: a head of at most [`MAX_HEAD`] bytes and a body of at most `max_body`, which
/// must come with a `Content-Length`. Whatever the stream sends, the buffer held stays under
/// `MAX_HEAD + 16 KiB + max_body`, and the verdict does not depend on how the bytes are split
/// into reads.
pub fn read_request(stream: &mut impl Read, max_body: usize) -> Result<Request, Refusal> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 16 << 10];
    let (head_len, mut request) = loop {
        let n = stream
            .read(&mut chunk)
            .map_err(|e| Refusal::new(400, format!("reading the request: {e}")))?;
        if n == 0 {
            return Err(Refusal::new(400, "the connection closed mid-request"));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => {
                let target = parsed.path.unwrap_or("/");
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                let request = Request {
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
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
            Ok(_) => return Err(Refusal::new(431, "the request head is over 64 KiB")),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Refusal::new(
                    431,
                    format!("the request has more than {MAX_FIELDS} header fields"),
                ));
            }
            // httparse refuses some heads only once it has seen their end: a head whose first
            // 64 KiB parse is refused as too long, whatever comes after.
            Err(_) if buf.len() >= MAX_HEAD && head_fits(&buf[..MAX_HEAD]) => {
                return Err(Refusal::new(431, "the request head is over 64 KiB"));
            }
            Err(e) => return Err(Refusal::new(400, format!("malformed request: {e}"))),
        }
    };
    if request
        .header("transfer-encoding")
        .is_some_and(|v| !v.eq_ignore_ascii_case("identity"))
    {
        return Err(Refusal::new(
            411,
            "send the body with a Content-Length (chunked uploads are not accepted here)",
        ));
    }
    let length = content_length(&request)?;
    if length > max_body {
        return Err(Refusal::new(
            413,
            format!("the body is {length} bytes; this API accepts at most {max_body}"),
        ));
    }
    let mut body = buf.split_off(head_len);
    body.truncate(length);
    body.reserve_exact(length - body.len());
    while body.len() < length {
        let want = (length - body.len()).min(chunk.len());
        let n = stream
            .read(&mut chunk[..want])
            .map_err(|e| Refusal::new(400, format!("reading the body: {e}")))?;
        if n == 0 {
            return Err(Refusal::new(400, "the connection closed mid-body"));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    request.body = body;
    Ok(request)
}

/// Whether `prefix` is a valid start of a head (httparse still wants more).
fn head_fits(prefix: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; MAX_FIELDS];
    matches!(
        httparse::Request::new(&mut headers).parse(prefix),
        Ok(httparse::Status::Partial)
    )
}

/// The body's length: none is 0; every `Content-Length` field must be digits and agree.
fn content_length(request: &Request) -> Result<usize, Refusal> {
    let mut length = None;
    for (name, value) in &request.headers {
        if name != "content-length" {
            continue;
        }
        let v = value.trim();
        let n = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
            v.parse::<usize>().ok()
        } else {
            None
        }
        .ok_or_else(|| Refusal::new(400, format!("bad Content-Length {value:?}")))?;
        if length.is_some_and(|l| l != n) {
            return Err(Refusal::new(400, "two Content-Length fields that differ"));
        }
        length = Some(n);
    }
    Ok(length.unwrap_or(0))
}

#[cfg(test)]
mod tests;
