//! The chunked decoder fed in pieces gives what it gives fed at once: the same body, the same
//! bytes consumed, the same verdict; and never more than its limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore_http::ChunkedDecoder;

const MAX_BODY: usize = 4096;

/// Decode `input` in pieces of `step` bytes (all at once when 0).
fn decode(input: &[u8], step: usize) -> (Result<usize, u16>, Vec<u8>, bool) {
    let mut decoder = ChunkedDecoder::new(MAX_BODY);
    let mut out = Vec::new();
    let mut consumed = 0;
    let step = if step == 0 { input.len().max(1) } else { step };
    for piece in input.chunks(step) {
        match decoder.decode(piece, &mut out) {
            Ok(n) => {
                assert!(n <= piece.len());
                consumed += n;
                if decoder.is_done() {
                    break;
                }
                assert_eq!(n, piece.len(), "stopped early without finishing");
            }
            Err(e) => return (Err(e.status()), out, false),
        }
    }
    (Ok(consumed), out, decoder.is_done())
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, input)) = data.split_first() else {
        return;
    };
    let whole = decode(input, 0);
    let pieces = decode(input, usize::from(step % 17));
    assert!(whole.1.len() <= MAX_BODY);
    match (&whole.0, &pieces.0) {
        (Ok(_), Ok(_)) => assert_eq!(whole, pieces),
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("whole: {:?}, in pieces: {:?}", whole.0, pieces.0),
    }
});
