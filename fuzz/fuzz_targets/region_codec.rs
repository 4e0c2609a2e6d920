//! The host's input-region encoder (percore-region) against the guest SDK's decoder: what the host
//! writes, the guest reads back field for field; encoding what was read gives the same bytes; and
//! a region cut short, corrupted or made of any bytes is refused or read without a panic, every
//! slice inside the head.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore_guest::__private::decode_region;
use percore_guest::{InputPath, Request as Decoded};
use percore_region::{ENTRY, FIXED, Request};

/// The next length-prefixed piece of the input.
fn take<'a>(data: &mut &'a [u8]) -> &'a [u8] {
    let Some((&n, rest)) = data.split_first() else {
        return &[];
    };
    let (piece, rest) = rest.split_at(usize::from(n).min(rest.len()));
    *data = rest;
    piece
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every slice of a decoded request lies inside the head, and the body is what follows it.
fn inside(bytes: &[u8], head_len: usize, r: &Decoded<'_>) {
    let head = bytes[..head_len].as_ptr_range();
    let ok = |s: &[u8]| head.start <= s.as_ptr() && s.as_ptr_range().end <= head.end;
    assert!(ok(r.method().as_bytes()) && ok(r.path_with_query().as_bytes()));
    assert!(r.headers().count() <= (head_len - FIXED) / ENTRY);
    for (name, value) in r.headers() {
        assert!(ok(name.as_bytes()) && ok(value));
    }
    assert_eq!(r.body().as_ptr_range(), bytes[head_len..].as_ptr_range());
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut data)) = data.split_first() else {
        return;
    };
    if mode & 1 == 1 {
        // Any bytes and any head length: refused, or read with every slice in bounds.
        let Some((len, rest)) = data.split_first_chunk::<4>() else {
            return;
        };
        let head_len = u32::from_le_bytes(*len) as usize % (rest.len() + 32);
        if let Ok(r) = decode_region(rest, head_len) {
            inside(rest, head_len, &r);
        }
        return;
    }
    let method = text(take(&mut data));
    let path = text(take(&mut data));
    let count = take(&mut data).first().map_or(0, |b| b % 32);
    let owned: Vec<(String, &[u8])> =
        (0..count).map(|_| (text(take(&mut data)), take(&mut data))).collect();
    let headers: Vec<(&str, &[u8])> = owned.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    let body = data;
    let request = Request { method: &method, path_with_query: &path, headers: &headers, body };
    let head_len = request.head_len();
    let mut region = vec![0xAA; head_len + body.len()];
    request.encode(&mut region);
    let mut head = vec![0x55; head_len];
    assert_eq!(request.encode_head(&mut head), head_len);
    assert_eq!(head[..], region[..head_len]);

    // Round trip: every field as sent, names lowercased.
    let got = decode_region(&region, head_len).expect("a region the host wrote decodes");
    inside(&region, head_len, &got);
    assert_eq!((got.method(), got.path_with_query()), (method.as_str(), path.as_str()));
    let want: Vec<(String, &[u8])> =
        owned.iter().map(|(n, v)| (n.to_ascii_lowercase(), *v)).collect();
    let seen: Vec<(String, &[u8])> = got.headers().map(|(n, v)| (n.to_owned(), v)).collect();
    assert_eq!(seen, want);
    assert_eq!(got.body(), body);
    assert_eq!(got.input_path(), InputPath::Region);

    // A fixed point: encoding what was decoded gives the same bytes.
    let again: Vec<(&str, &[u8])> = got.headers().collect();
    let re = Request {
        method: got.method(),
        path_with_query: got.path_with_query(),
        headers: &again,
        body: got.body(),
    };
    let mut region2 = vec![0; region.len()];
    re.encode(&mut region2);
    assert_eq!(region2, region);

    // A head length that takes k body bytes reads the same head and the rest of the body.
    let k = usize::from(mode >> 1).min(body.len());
    let longer = decode_region(&region, head_len + k).expect("a longer head still decodes");
    assert_eq!((longer.method(), longer.body()), (got.method(), &body[k..]));
    // Cut short or with a head under the fixed part: refused.
    for cut in [0, head_len / 2, head_len - 1] {
        assert!(decode_region(&region[..cut], head_len).is_err());
    }
    assert!(decode_region(&region, FIXED - 1).is_err());
    // One head byte corrupted: refused, or read in bounds.
    let at = usize::from(mode) * 7 % head_len;
    region[at] ^= 0xFF;
    if let Ok(r) = decode_region(&region, head_len) {
        inside(&region, head_len, &r);
    }
});
