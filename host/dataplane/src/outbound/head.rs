//! The head of a response: status, fields and how the body is framed.

use super::client::Failure;
use percore_engine::OutboundError;

/// Most response header fields accepted.
const MAX_FIELDS: usize = 128;

/// How the response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    Length(u64),
    Chunked,
    Close,
}

pub(super) type Head = (u16, (Vec<(String, Vec<u8>)>, Framing, bool), usize);

/// The response head in `data`, if whole: status, (fields, framing, `connection: close`) and
/// its length.
pub(super) fn parse_head(data: &[u8]) -> Result<Option<Head>, Failure> {
    if data.is_empty() {
        return Ok(None);
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut response = httparse::Response::new(&mut fields);
    let head_len = match response.parse(data) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(OutboundError::Protocol(format!(
                "the response has more than {MAX_FIELDS} header fields"
            ))
            .into());
        }
        Err(e) => {
            return Err(OutboundError::Protocol(format!("malformed response head: {e}")).into());
        }
    };
    let status = response.code.unwrap_or(0);
    let http11 = response.version == Some(1);
    let mut framing = Framing::Close;
    let mut close = !http11;
    let mut headers = Vec::with_capacity(response.headers.len());
    for field in response.headers.iter() {
        let name = field.name.to_ascii_lowercase();
        let value = field.value;
        match name.as_str() {
            "content-length" => {
                let length = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or_else(|| {
                        Failure::Error(OutboundError::Protocol("a bad content-length".into()))
                    })?;
                match framing {
                    Framing::Length(other) if other != length => {
                        return Err(OutboundError::Protocol(
                            "content-length fields disagree".into(),
                        )
                        .into());
                    }
                    Framing::Chunked => {}
                    _ => framing = Framing::Length(length),
                }
            }
            "transfer-encoding" => {
                let chunked = value
                    .rsplit(|b| *b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
                if !chunked {
                    return Err(OutboundError::Protocol(
                        "a transfer coding other than chunked".into(),
                    )
                    .into());
                }
                framing = Framing::Chunked;
            }
            "connection" => {
                for token in value.split(|b| *b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") && !http11 {
                        close = false;
                    }
                }
            }
            _ => {}
        }
        headers.push((name, value.to_vec()));
    }
    Ok(Some((status, (headers, framing, close), head_len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_give_status_fields_and_framing() {
        let (status, (headers, framing, close), len) =
            match parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello") {
                Ok(Some(head)) => head,
                _ => panic!("a complete head"),
            };
        assert_eq!(
            (status, framing, close, len),
            (200, Framing::Length(5), false, 46)
        );
        assert_eq!(headers[1], ("x-a".to_owned(), b"b".to_vec()));
        let chunked = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(matches!(
            chunked,
            Ok(Some((_, (_, Framing::Chunked, false), _)))
        ));
        let old = parse_head(b"HTTP/1.0 200 OK\r\n\r\n");
        assert!(matches!(old, Ok(Some((_, (_, Framing::Close, true), _)))));
        assert!(matches!(
            parse_head(b"HTTP/1.1 200 OK\r\nA: b\r\n"),
            Ok(None)
        ));
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"SMTP ready\r\n\r\n",
        ] {
            assert!(matches!(parse_head(bad), Err(Failure::Error(_))));
        }
    }
}
