//! Request heads.

/// Limits on what a client may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head (request line and header fields), in bytes. Over it: 431.
    pub max_head: usize,
    /// Most header fields. Over it: 431.
    pub max_headers: usize,
    /// Largest request body, in bytes. Over it: 413.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head: 64 << 10,
            max_headers: 128,
            max_body: 16 << 20,
        }
    }
}

/// Why a request cannot be served; each maps to one status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not valid HTTP/1.x (400).
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// The head or the number of fields is over the limit (431).
    #[error("request header fields too large")]
    HeadTooLarge,
    /// The declared or received body is over the limit (413).
    #[error("request body too large")]
    BodyTooLarge,
    /// A transfer coding other than chunked (501).
    #[error("unsupported transfer coding")]
    UnsupportedTransferCoding,
    /// Not HTTP/1.0 or 1.1 (505).
    #[error("HTTP version not supported")]
    Version,
}

impl ParseError {
    /// The status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::Malformed(_) => 400,
            ParseError::HeadTooLarge => 431,
            ParseError::BodyTooLarge => 413,
            ParseError::UnsupportedTransferCoding => 501,
            ParseError::Version => 505,
        }
    }
}

/// How the body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    None,
    /// `Content-Length` bytes.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head, borrowing from the receive buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head<'b> {
    /// Method token.
    pub method: &'b str,
    /// Request target (origin form: path and query).
    pub target: &'b str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Header fields in order, framing fields included.
    pub headers: Vec<(&'b str, &'b [u8])>,
    /// How the body is framed.
    pub framing: BodyFraming,
    /// Whether the connection stays open after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    /// Bytes of the head, including the blank line.
    pub len: usize,
}

impl Head<'_> {
    /// Whether this is a `HEAD` request (the response carries no body).
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Parse the request head at the start of `buf`. `Ok(None)` means more bytes are needed (and
/// the head is still within limits).
pub fn parse_head<'b>(buf: &'b [u8], limits: &Limits) -> Result<Option<Head<'b>>, ParseError> {
    // Tolerate empty lines before a request line (RFC 9112 §2.2).
    let mut storage = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut request = httparse::Request::new(&mut storage);
    let status = match request.parse(buf) {
        Ok(status) => status,
        Err(httparse::Error::TooManyHeaders) => return Err(ParseError::HeadTooLarge),
        Err(httparse::Error::Version) => return Err(ParseError::Version),
        Err(httparse::Error::Token) => return Err(ParseError::Malformed("invalid token")),
        Err(httparse::Error::HeaderName) => {
            return Err(ParseError::Malformed("invalid header name"));
        }
        Err(httparse::Error::HeaderValue) => {
            return Err(ParseError::Malformed("invalid header value"));
        }
        Err(_) => return Err(ParseError::Malformed("invalid request line or header")),
    };
    let len = match status {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => {
            return if buf.len() > limits.max_head {
                Err(ParseError::HeadTooLarge)
            } else {
                Ok(None)
            };
        }
    };
    if len > limits.max_head {
        return Err(ParseError::HeadTooLarge);
    }
    let method = request.method.ok_or(ParseError::Malformed("no method"))?;
    let target = request.path.ok_or(ParseError::Malformed("no target"))?;
    if !target.starts_with('/') {
        return Err(ParseError::Malformed("the target is not in origin form"));
    }
    let minor_version = request.version.ok_or(ParseError::Version)?;
    let headers: Vec<(&str, &[u8])> = request.headers.iter().map(|h| (h.name, h.value)).collect();

    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    let mut keep_alive = minor_version == 1;
    let mut expect_continue = false;
    let mut host_count = 0;
    for (name, value) in &headers {
        if name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(value)
                .map_err(|_| ParseError::Malformed("invalid content-length"))?;
            // Only digits: "+5", "-1" and "0x10" are not lengths.
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseError::Malformed("invalid content-length"));
            }
            let n: usize = text.parse().map_err(|_| ParseError::BodyTooLarge)?;
            if content_length.is_some_and(|m| m != n) {
                return Err(ParseError::Malformed("conflicting content-length"));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if minor_version == 0 {
                return Err(ParseError::Malformed("transfer-encoding in HTTP/1.0"));
            }
            // Only `chunked`, alone and last, is supported.
            let mut codings = value
                .split(|&b| b == b',')
                .map(|t| t.trim_ascii())
                .filter(|t| !t.is_empty());
            match (codings.next(), codings.next()) {
                (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") => chunked = true,
                _ => return Err(ParseError::UnsupportedTransferCoding),
            }
        } else if name.eq_ignore_ascii_case("connection") {
            if has_token(value, "close") {
                keep_alive = false;
            } else if has_token(value, "keep-alive") {
                keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if value.eq_ignore_ascii_case(b"100-continue") {
                expect_continue = minor_version == 1;
            } else {
                return Err(ParseError::Malformed("unsupported expectation"));
            }
        } else if name.eq_ignore_ascii_case("host") {
            host_count += 1;
        }
    }
    if minor_version == 1 && host_count != 1 {
        return Err(ParseError::Malformed(
            "HTTP/1.1 needs exactly one host header",
        ));
    }
    // Both framings at once is a classic request-smuggling vector: refuse it.
    let framing = match (chunked, content_length) {
        (true, Some(_)) => {
            return Err(ParseError::Malformed(
                "both content-length and transfer-encoding",
            ));
        }
        (true, None) => BodyFraming::Chunked,
        (false, Some(n)) if n > limits.max_body => return Err(ParseError::BodyTooLarge),
        (false, Some(0)) | (false, None) => BodyFraming::None,
        (false, Some(n)) => BodyFraming::Length(n),
    };
    Ok(Some(Head {
        method,
        target,
        minor_version,
        headers,
        framing,
        keep_alive,
        expect_continue,
        len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Option<Head<'_>>, ParseError> {
        parse_head(raw.as_bytes(), &Limits::default())
    }

    #[test]
    fn a_simple_get() {
        let head = parse("GET /a?b=c HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\n\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!(head.method, "GET");
        assert_eq!(head.target, "/a?b=c");
        assert_eq!(head.headers.len(), 3);
        assert_eq!(head.framing, BodyFraming::None);
        assert!(head.keep_alive);
        assert_eq!(
            head.len,
            "GET /a?b=c HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\n\r\n".len()
        );
    }

    #[test]
    fn partial_heads_wait_for_more() {
        assert_eq!(parse("GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        assert_eq!(parse("GE"), Ok(None));
    }

    #[test]
    fn framing_and_connection() {
        let h =
            parse("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(h.framing, BodyFraming::Length(5));
        assert!(!h.keep_alive);
        let h = parse("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, BodyFraming::Chunked);
        let h = parse("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let h = parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);
        let h = parse(
            "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(h.expect_continue);
    }

    #[test]
    fn bad_requests_map_to_their_status() {
        let status = |raw: &str| parse(raw).unwrap_err().status();
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n"),
            400
        );
        assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), 400); // no host
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
        assert_eq!(status("GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
            400
        );
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            400
        );
        assert_eq!(
            status(
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"),
            501
        );
        assert_eq!(status("GET / HTTP/2.0\r\nHost: x\r\n\r\n"), 505);
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n"),
            413
        );
        assert_eq!(
            status(
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999999999999999\r\n\r\n"
            ),
            413
        );
        assert_eq!(status("\x00\x01\x02 / HTTP/1.1\r\n\r\n"), 400);
    }

    #[test]
    fn limits_on_the_head() {
        let limits = Limits {
            max_head: 100,
            max_headers: 3,
            max_body: 10,
        };
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(200));
        assert_eq!(
            parse_head(long.as_bytes(), &limits),
            Err(ParseError::HeadTooLarge)
        );
        let partial_long = "GET /".to_owned() + &"a".repeat(200);
        assert_eq!(
            parse_head(partial_long.as_bytes(), &limits),
            Err(ParseError::HeadTooLarge)
        );
        let many = "GET / HTTP/1.1\r\nHost: x\r\na: 1\r\nb: 1\r\nc: 1\r\n\r\n";
        assert_eq!(
            parse_head(many.as_bytes(), &limits),
            Err(ParseError::HeadTooLarge)
        );
        let body = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n";
        assert_eq!(
            parse_head(body.as_bytes(), &limits),
            Err(ParseError::BodyTooLarge)
        );
    }
}
