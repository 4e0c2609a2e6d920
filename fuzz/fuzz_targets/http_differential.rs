//! percore's head parser against httparse, the reference it builds on: percore never accepts
//! what httparse rejects, agrees on everything it accepts, and every head httparse accepts that
//! percore refuses breaks one of percore's documented stricter rules (docs/RELIABILITY.md):
//! origin-form target; one Host in HTTP/1.1; Content-Length only digits and never conflicting;
//! Transfer-Encoding only `chunked` and never in HTTP/1.0 or beside Content-Length; only
//! `Expect: 100-continue`; the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore_http::{Limits, ParseError, parse_head};

fn eq(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_head: 4096,
        max_headers: 16,
        max_body: 1 << 20,
    };
    let mut storage = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut reference = httparse::Request::new(&mut storage);
    let verdict = reference.parse(data);
    let ours = parse_head(data, &limits);
    match (&verdict, &ours) {
        (Ok(httparse::Status::Complete(len)), Ok(Some(head))) => {
            assert_eq!(head.len, *len);
            assert_eq!(Some(head.method), reference.method);
            assert_eq!(Some(head.target), reference.path);
            assert_eq!(Some(head.minor_version), reference.version);
            assert_eq!(head.headers.len(), reference.headers.len());
        }
        (Ok(httparse::Status::Partial), Ok(None)) => {}
        (Ok(httparse::Status::Partial), Err(ParseError::HeadTooLarge)) => {
            assert!(data.len() > limits.max_head);
        }
        (Err(_), Err(_)) => {}
        (Ok(httparse::Status::Complete(len)), Err(e)) => {
            // A stricter rule: find the one that applies.
            let headers = &reference.headers;
            let version = reference.version.unwrap_or(1);
            let named = |n: &'static str| {
                headers
                    .iter()
                    .filter(move |h| h.name.eq_ignore_ascii_case(n))
            };
            let lengths: Vec<&[u8]> = named("content-length").map(|h| h.value).collect();
            let codings: Vec<&[u8]> = named("transfer-encoding").map(|h| h.value).collect();
            let broken = *len > limits.max_head
                || !reference.path.is_some_and(|p| p.starts_with('/'))
                || (version == 1 && named("host").count() != 1)
                || lengths
                    .iter()
                    .any(|v| v.is_empty() || !v.iter().all(u8::is_ascii_digit))
                || lengths.windows(2).any(|w| {
                    std::str::from_utf8(w[0])
                        .ok()
                        .and_then(|s| s.parse::<u128>().ok())
                        != std::str::from_utf8(w[1])
                            .ok()
                            .and_then(|s| s.parse::<u128>().ok())
                })
                || (!codings.is_empty() && (version == 0 || !lengths.is_empty()))
                || codings.iter().any(|v| {
                    let list: Vec<&[u8]> = v
                        .split(|&b| b == b',')
                        .map(<[u8]>::trim_ascii)
                        .filter(|t| !t.is_empty())
                        .collect();
                    !(list.len() == 1 && eq(list[0], "chunked"))
                })
                || named("expect").any(|h| !eq(h.value, "100-continue"))
                || (matches!(e, ParseError::BodyTooLarge) && !lengths.is_empty());
            assert!(broken, "percore refused a head that breaks no rule: {e:?}");
        }
        (Ok(httparse::Status::Partial | httparse::Status::Complete(_)), _) | (Err(_), Ok(_)) => {
            panic!("httparse: {verdict:?}, percore: {ours:?}");
        }
    }
});
