//! `probe-http`: the conformance suite's probe as a `wasi:http/proxy@0.2` component.
//!
//! It answers as the edge test guest named by `PROBE_ROLE` (see `probe-roles`): the request
//! arrives as an `incoming-request`, its body read to the end from the body's stream; the
//! response leaves through the outparam and its body through the outgoing body's stream.
//!
//! What the `wasi:http` types refuse cannot be sent, and the cases that need it do not list the
//! `wasi-http` kind: a field the Fields API rejects (a value with CR or LF, an invalid name,
//! `transfer-encoding`, `connection`) is left out, and a status it rejects (`99`) is answered
//! with the outparam's error instead.

use std::io::{Read as _, Write as _};

use probe_roles::{ROLE_VAR, Request, Response};
use wasi::http::types::{
    ErrorCode, Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasi::http::proxy::export!(Probe);

struct Probe;

fn method_name(method: Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other,
    }
}

/// The request with its whole body.
fn read_request(incoming: &IncomingRequest) -> Request {
    let mut body = Vec::new();
    if let Ok(incoming_body) = incoming.consume() {
        if let Ok(mut stream) = incoming_body.stream() {
            // A stream error ends the body where it is; the role answers what arrived.
            let _ = stream.read_to_end(&mut body);
        }
    }
    Request {
        method: method_name(incoming.method()),
        path_with_query: incoming.path_with_query().unwrap_or_else(|| "/".into()),
        headers: incoming.headers().entries(),
        body,
    }
}

/// Send `response`: head through the outparam first, so that the host drains the body while it
/// is written.
fn send(response: Response, out: ResponseOutparam) {
    let headers = Fields::new();
    for (name, value) in &response.headers {
        // Refused fields are left out (see the crate's documentation).
        let _ = headers.append(name, value);
    }
    let outgoing = OutgoingResponse::new(headers);
    if outgoing.set_status_code(response.status).is_err() {
        let message = format!(
            "status {} cannot be sent through wasi:http",
            response.status
        );
        ResponseOutparam::set(out, Err(ErrorCode::InternalError(Some(message))));
        return;
    }
    let Ok(body) = outgoing.body() else {
        let message = "the response has no body".to_owned();
        ResponseOutparam::set(out, Err(ErrorCode::InternalError(Some(message))));
        return;
    };
    ResponseOutparam::set(out, Ok(outgoing));
    if let Ok(mut stream) = body.write() {
        // The host closes the stream once the body is over its limit: the rest is dropped.
        let _ = stream.write_all(&response.body);
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(body, None);
}

impl wasi::exports::http::incoming_handler::Guest for Probe {
    fn handle(incoming: IncomingRequest, out: ResponseOutparam) {
        let role = std::env::var(ROLE_VAR).unwrap_or_default();
        if role == "wasi-http" {
            return misbehave(incoming, out);
        }
        let request = read_request(&incoming);
        drop(incoming);
        let response = probe_roles::respond(&role, request)
            .unwrap_or_else(|| probe_roles::unknown_role(&role));
        send(response, out);
    }
}

/// GET `url` with `wasi:http/outgoing-handler`: the status and the whole body, or the error.
fn fetch(url: &str) -> Result<(u16, Vec<u8>), String> {
    use wasi::http::types::{OutgoingRequest, Scheme};
    let (scheme, rest) = match url.split_once("://") {
        Some(("http", rest)) => (Scheme::Http, rest),
        Some(("https", rest)) => (Scheme::Https, rest),
        _ => return Err(format!("not an http URL: {url}")),
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_method(&Method::Get);
    let _ = request.set_scheme(Some(&scheme));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some(path));
    let future =
        wasi::http::outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(format!("{code:?}")),
        _ => return Err("no response".into()),
    };
    let status = response.status();
    let body = response.consume().map_err(|()| "no body".to_owned())?;
    let mut bytes = Vec::new();
    {
        let mut stream = body.stream().map_err(|()| "no body stream".to_owned())?;
        stream.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    }
    Ok((status, bytes))
}

/// The `wasi-http` role: answers only a wasi:http guest can get wrong.
fn misbehave(incoming: IncomingRequest, out: ResponseOutparam) {
    let path = incoming.path_with_query().unwrap_or_default();
    match path
        .split('?')
        .next()
        .unwrap_or("")
        .rsplit('/')
        .next()
        .unwrap_or("")
    {
        // Return without ever setting the outparam.
        "no-response" => drop(out),
        // Set a response and write its body, but never finish it.
        "unfinished" => {
            let outgoing = OutgoingResponse::new(Fields::new());
            let body = outgoing.body().expect("a body");
            ResponseOutparam::set(out, Ok(outgoing));
            if let Ok(mut stream) = body.write() {
                let _ = stream.write_all(b"half");
                drop(stream);
            }
            std::mem::forget(body);
        }
        // `fetch?url=http://host:port/path`: an outgoing request through `outgoing-handler`,
        // answered with the origin's status and body, or 502 and the error code.
        "fetch" => {
            let url = path.split_once("url=").map_or("", |(_, u)| u).to_owned();
            let response = match fetch(&url) {
                Ok((status, body)) => Response {
                    status,
                    headers: vec![("x-origin".into(), b"yes".to_vec())],
                    body,
                },
                Err(error) => Response {
                    status: 502,
                    headers: Vec::new(),
                    body: error.into_bytes(),
                },
            };
            send(response, out);
        }
        // Answer with an error code instead of a response.
        "error-code" => ResponseOutparam::set(
            out,
            Err(ErrorCode::InternalError(Some("the probe refuses".into()))),
        ),
        _ => send(
            Response {
                status: 200,
                headers: vec![("content-type".into(), b"text/plain".to_vec())],
                body: b"ok\n".to_vec(),
            },
            out,
        ),
    }
}
