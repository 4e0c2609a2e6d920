//! The handler every line of `benches/compare.sh` serves: a small JSON document computed from
//! the request, `{"method":"GET","path":"/x","body_bytes":0}`.

use percore_guest::{Request, Response, handler};

/// Append `s` as a JSON string.
fn quote(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[handler]
fn bench_json(req: Request) -> Response {
    let mut body = String::with_capacity(64);
    body.push_str("{\"method\":");
    quote(&mut body, req.method());
    body.push_str(",\"path\":");
    quote(&mut body, req.path());
    body.push_str(&format!(",\"body_bytes\":{}}}\n", req.body().len()));
    Response::new(200)
        .with_header("content-type", "application/json")
        .with_body(body)
}
