//! The input region: a buffer in this guest's linear memory that the host writes requests into.
//!
//! The buffer is allocated zeroed (the host writes it outside Rust's view, so Rust must never
//! read uninitialised bytes) and held by raw pointer: no reference to it lives between calls,
//! so the host's writes never alias a live Rust borrow. Decoding is a pure function over a
//! slice and checks every offset the host wrote.
#![allow(unsafe_code)]

use std::alloc::Layout;
use std::cell::Cell;

use crate::bindings::exports::edge::handler::guest::Region;
use crate::request::{InputPath, Request};

/// Capacity reserved at least: one page, so a fresh instance touches little new memory; larger
/// requests make the host ask again.
const MIN_CAPACITY: usize = 4 << 10;

struct RegionCell {
    ptr: Cell<*mut u8>,
    capacity: Cell<usize>,
}

// SAFETY: a guest runs single-threaded (wasm32 without threads); the cell is only touched
// from the guest's export functions, which the host never runs concurrently.
unsafe impl Sync for RegionCell {}

static REGION: RegionCell = RegionCell {
    ptr: Cell::new(std::ptr::null_mut()),
    capacity: Cell::new(0),
};

/// Make the region at least `min` bytes, keeping it where it is if it already is.
pub(crate) fn reserve(min: u32) -> Region {
    // On wasm32 a request near 4 GiB overflows the rounding: trap with a message rather than
    // allocate a wrapped size.
    let wanted = (min as usize)
        .max(MIN_CAPACITY)
        .checked_next_multiple_of(MIN_CAPACITY)
        .filter(|&n| n <= isize::MAX as usize)
        .expect("the input region does not fit in this guest's address space");
    if REGION.capacity.get() < min as usize || REGION.ptr.get().is_null() {
        let old = REGION.ptr.get();
        if !old.is_null() {
            let layout = Layout::from_size_align(REGION.capacity.get(), 16).expect("valid layout");
            // SAFETY: `old` was allocated below with exactly this layout and is not borrowed.
            unsafe { std::alloc::dealloc(old, layout) };
            REGION.ptr.set(std::ptr::null_mut());
            REGION.capacity.set(0);
        }
        let layout = Layout::from_size_align(wanted, 16).expect("valid layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        REGION.ptr.set(ptr);
        REGION.capacity.set(wanted);
    }
    Region {
        offset: REGION.ptr.get() as usize as u32,
        capacity: REGION.capacity.get() as u32,
    }
}

/// Decode the request the host wrote and give it to `f`.
pub(crate) fn with_request<R>(
    head_len: u32,
    body_len: u32,
    f: impl FnOnce(Result<Request<'_>, &'static str>) -> R,
) -> R {
    let ptr = REGION.ptr.get();
    let total = match (head_len as usize).checked_add(body_len as usize) {
        Some(total) if !ptr.is_null() && total <= REGION.capacity.get() => total,
        _ => return f(Err("the request is larger than the region")),
    };
    // SAFETY: `ptr..ptr+total` is inside the zero-initialised allocation of `capacity` bytes;
    // the host finished writing before this call, and nothing else borrows the region while
    // this shared slice lives (it does not outlive `f`).
    let bytes = unsafe { std::slice::from_raw_parts(ptr, total) };
    f(decode(bytes, head_len as usize))
}

fn word(bytes: &[u8], at: usize) -> Result<usize, &'static str> {
    let b = bytes.get(at..at + 4).ok_or("head table out of bounds")?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

fn slice(bytes: &[u8], head_len: usize, at: usize) -> Result<&[u8], &'static str> {
    let offset = word(bytes, at)?;
    let len = word(bytes, at + 4)?;
    let end = offset.checked_add(len).ok_or("entry overflows")?;
    if end > head_len {
        return Err("entry points outside the head");
    }
    Ok(&bytes[offset..end])
}

fn text(bytes: &[u8]) -> Result<&str, &'static str> {
    std::str::from_utf8(bytes).map_err(|_| "text entry is not UTF-8")
}

/// Decode a region holding `head_len` bytes of head and then the body (layout: the WIT doc of
/// `handle-region`).
pub(crate) fn decode(bytes: &[u8], head_len: usize) -> Result<Request<'_>, &'static str> {
    if head_len > bytes.len() || head_len < 20 {
        return Err("head length out of range");
    }
    let method = text(slice(bytes, head_len, 0)?)?;
    let path = text(slice(bytes, head_len, 8)?)?;
    let count = word(bytes, 16)?;
    if count > (head_len - 20) / 16 {
        return Err("header count larger than the head");
    }
    let mut headers = Vec::with_capacity(count);
    for i in 0..count {
        let at = 20 + i * 16;
        let name = text(slice(bytes, head_len, at)?)?;
        let value = slice(bytes, head_len, at + 8)?;
        headers.push((name, value));
    }
    Ok(Request::new(
        method,
        path,
        headers,
        &bytes[head_len..],
        InputPath::Region,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(
        method: &str,
        path: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
    ) -> (Vec<u8>, usize) {
        let mut table = Vec::new();
        let mut data = Vec::new();
        let base = 20 + 16 * headers.len();
        let mut put = |table: &mut Vec<u8>, bytes: &[u8]| {
            table.extend_from_slice(&((base + data.len()) as u32).to_le_bytes());
            table.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            data.extend_from_slice(bytes);
        };
        put(&mut table, method.as_bytes());
        put(&mut table, path.as_bytes());
        table.extend_from_slice(&(headers.len() as u32).to_le_bytes());
        for (n, v) in headers {
            put(&mut table, n.as_bytes());
            put(&mut table, v);
        }
        let mut out = table;
        out.extend_from_slice(&data);
        let head_len = out.len();
        out.extend_from_slice(body);
        (out, head_len)
    }

    #[test]
    fn decodes_a_region() {
        let (bytes, head_len) = encode(
            "POST",
            "/a?b=c",
            &[("x-a", b"1"), ("x-a", b"\xff")],
            b"body",
        );
        let r = decode(&bytes, head_len).unwrap();
        assert_eq!(r.method(), "POST");
        assert_eq!(r.path(), "/a");
        assert_eq!(r.query(), Some("b=c"));
        assert_eq!(
            r.headers().collect::<Vec<_>>(),
            vec![("x-a", &b"1"[..]), ("x-a", &b"\xff"[..])]
        );
        assert_eq!(r.header("X-A"), Some(&b"1"[..]));
        assert_eq!(r.header_all("x-a").count(), 2);
        assert_eq!(r.body(), b"body");
        assert_eq!(r.input_path(), InputPath::Region);
    }

    #[test]
    fn refuses_malformed_regions() {
        let (mut bytes, head_len) = encode("GET", "/", &[("a", b"b")], b"");
        assert!(decode(&bytes, 10).is_err());
        assert!(decode(&bytes, bytes.len() + 1).is_err());
        // An entry pointing past the head.
        let saved = bytes[0..4].to_vec();
        bytes[0..4].copy_from_slice(&(head_len as u32).to_le_bytes());
        assert_eq!(
            decode(&bytes, head_len).unwrap_err(),
            "entry points outside the head"
        );
        bytes[0..4].copy_from_slice(&saved);
        // A header count the head cannot hold.
        bytes[16..20].copy_from_slice(&1000u32.to_le_bytes());
        assert!(decode(&bytes, head_len).is_err());
        bytes[16..20].copy_from_slice(&1u32.to_le_bytes());
        // A name that is not UTF-8.
        let name_at = u32::from_le_bytes(bytes[20..24].try_into().unwrap()) as usize;
        bytes[name_at] = 0xff;
        assert_eq!(
            decode(&bytes, head_len).unwrap_err(),
            "text entry is not UTF-8"
        );
        // Offsets that overflow.
        bytes[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        bytes[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&bytes, head_len).is_err());
    }
}
