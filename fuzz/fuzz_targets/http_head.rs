//! The request-head parser on any bytes, under the default limits and under tight ones: it never
//! panics, a head it accepts keeps every limit, and no strict prefix of an accepted head is
//! taken for a complete one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore_http::{BodyFraming, Limits, parse_head};

fuzz_target!(|data: &[u8]| {
    let tight = Limits {
        max_head: 256,
        max_headers: 8,
        max_body: 1024,
    };
    for limits in [Limits::default(), tight] {
        let Ok(Some(head)) = parse_head(data, &limits) else {
            continue;
        };
        assert!(head.len <= data.len() && head.len <= limits.max_head);
        assert!(head.headers.len() <= limits.max_headers);
        assert!(head.target.starts_with('/'));
        assert!(head.minor_version <= 1);
        if let BodyFraming::Length(n) = head.framing {
            assert!(n > 0 && n <= limits.max_body);
        }
        // The head ends at its first blank line: a shorter prefix is never complete.
        for cut in [head.len - 1, head.len / 2] {
            if let Ok(Some(early)) = parse_head(&data[..cut], &limits) {
                panic!("a prefix of {cut} bytes parsed as a head of {}", early.len);
            }
        }
    }
});
