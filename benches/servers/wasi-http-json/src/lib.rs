//! The benchmark handler (`examples-guests/bench-json`) written against `wasi:http/proxy`, the
//! world `wasmtime serve` runs: `{"method":"GET","path":"/x","body_bytes":0}`.

use std::io::Write as _;

use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasi::http::proxy::export!(BenchJson);

struct BenchJson;

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

fn method_name(method: &Method) -> &str {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(other) => other,
    }
}

/// Bytes of the request body (read to the end).
fn body_bytes(request: &IncomingRequest) -> usize {
    let Ok(body) = request.consume() else {
        return 0;
    };
    let Ok(stream) = body.stream() else {
        return 0;
    };
    let mut total = 0;
    while let Ok(chunk) = stream.blocking_read(64 << 10) {
        total += chunk.len();
    }
    total
}

impl wasi::exports::http::incoming_handler::Guest for BenchJson {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let target = request.path_with_query().unwrap_or_else(|| "/".into());
        let path = target.split('?').next().unwrap_or("/").to_owned();
        let mut json = String::with_capacity(64);
        json.push_str("{\"method\":");
        quote(&mut json, method_name(&request.method()));
        json.push_str(",\"path\":");
        quote(&mut json, &path);
        json.push_str(&format!(",\"body_bytes\":{}}}\n", body_bytes(&request)));

        let headers = Fields::new();
        let _ = headers.append("content-type", b"application/json");
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("a new response has a body");
        ResponseOutparam::set(response_out, Ok(response));
        let mut out = body.write().expect("a new body has a stream");
        let _ = out.write_all(json.as_bytes());
        let _ = out.flush();
        drop(out);
        let _ = OutgoingBody::finish(body, None);
    }
}
