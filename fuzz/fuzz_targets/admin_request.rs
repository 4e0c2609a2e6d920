//! The admin API's request reader on any bytes, split into reads of any size: no panic, the same
//! verdict however the bytes arrive, a body exactly as long as its `Content-Length` and never over
//! the limit.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use percore_http::blocking::{Refusal, Request, read_request};

const MAX_BODY: usize = 1024;

/// Hands out its bytes `step` at a time.
struct Pieces<'a> {
    bytes: &'a [u8],
    step: usize,
}

impl Read for Pieces<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(out.len()).min(self.bytes.len());
        out[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

fn read(bytes: &[u8], step: usize) -> Result<Request, Refusal> {
    read_request(&mut Pieces { bytes, step }, MAX_BODY)
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, input)) = data.split_first() else {
        return;
    };
    let whole = read(input, usize::MAX);
    let pieces = read(input, usize::from(step % 33) + 1);
    match (&whole, &pieces) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b);
            assert!(a.body.len() <= MAX_BODY);
            let declared = a.header("content-length").map_or(0, |v| v.trim().parse().unwrap());
            assert_eq!(a.body.len(), declared);
            assert!(!a.path.contains('?'));
        }
        (Err(a), Err(b)) => {
            assert_eq!(a.status, b.status, "whole: {a:?}, in pieces: {b:?}");
            assert!(matches!(a.status, 400 | 411 | 413 | 431), "{a:?}");
        }
        _ => panic!("whole: {whole:?}, in pieces: {pieces:?}"),
    }
});
