//! Writing responses.

/// The reason phrase for common statuses (any other gets an empty one, which is valid).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Append a response head to `out`: status line, the given fields, `content-length` (omitted for
/// 204 and 304, which have no body), `connection: close` when the connection ends, blank line.
pub fn write_head<'h>(
    out: &mut Vec<u8>,
    status: u16,
    headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
    body_len: usize,
    keep_alive: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa(status as usize, &mut [0; 20]));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if !matches!(status, 204 | 304) {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa(body_len, &mut [0; 20]));
        out.extend_from_slice(b"\r\n");
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Append a whole short response from the host itself (errors, 404, 503), text body.
pub fn write_simple(
    out: &mut Vec<u8>,
    status: u16,
    extra: &[(&str, &[u8])],
    body: &str,
    keep_alive: bool,
) {
    let headers = [("content-type", &b"text/plain; charset=utf-8"[..])]
        .into_iter()
        .chain(extra.iter().copied());
    write_head(out, status, headers, body.len(), keep_alive);
    out.extend_from_slice(body.as_bytes());
}

fn itoa(mut n: usize, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_well_formed() {
        let mut out = Vec::new();
        write_head(
            &mut out,
            200,
            [("x-a", &b"1"[..]), ("x-a", &b"2"[..])],
            5,
            true,
        );
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nx-a: 1\r\nx-a: 2\r\ncontent-length: 5\r\n\r\n"
        );
        out.clear();
        write_head(&mut out, 204, [], 0, false);
        assert_eq!(out, b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n");
        out.clear();
        write_simple(&mut out, 404, &[], "no route\n", true);
        assert!(out.starts_with(b"HTTP/1.1 404 Not Found\r\n"));
        assert!(out.ends_with(b"content-length: 9\r\n\r\nno route\n"));
    }
}
