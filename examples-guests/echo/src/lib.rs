//! Sends the request back: method, path and headers as `x-echo-*` headers, the body unchanged.

use percore_guest::{Request, Response, handler};

#[handler]
fn echo(req: Request) -> Response {
    let content_type = req
        .header("content-type")
        .unwrap_or(b"application/octet-stream");
    let mut response = Response::bytes(200, req.body())
        .with_header("content-type", content_type)
        .with_header("x-echo-method", req.method())
        .with_header("x-echo-path", req.path_with_query())
        .with_header("x-echo-input", req.input_path().as_str());
    for (name, value) in req.headers() {
        response = response.with_header(format!("x-echo-h-{name}"), value);
    }
    response
}
