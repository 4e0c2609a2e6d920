//! A guest that keeps state in its memory between requests, to test instance isolation.
//!
//! `/count` increments a global counter and returns it: `1` every time when each request gets a
//! clean instance. `/peek` returns the first 16 bytes of a static buffer, then writes a marker
//! into it: all zeros every time when nothing leaks between requests.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use percore_guest::{Request, Response, handler};

static COUNTER: AtomicU64 = AtomicU64::new(0);
static BUFFER: Mutex<[u8; 4096]> = Mutex::new([0; 4096]);

#[handler]
fn stateful(req: Request) -> Response {
    // Match the last segment, so the guest works under any route prefix.
    match req.path().rsplit('/').next().unwrap_or("") {
        "count" => {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
            Response::text(200, n.to_string())
        }
        "peek" => {
            let mut buffer = BUFFER.lock().unwrap_or_else(|p| p.into_inner());
            let seen: String = buffer[..16].iter().map(|b| format!("{b:02x}")).collect();
            buffer[..16].copy_from_slice(b"previous-request");
            Response::text(200, seen)
        }
        _ => Response::text(404, "unknown"),
    }
}
