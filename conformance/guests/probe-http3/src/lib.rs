//! `probe-http3`: the conformance suite's probe as a `wasi:http@0.3` component (WASIp3, the
//! `wasi:http/service` world that Spin 4's SDK builds).
//!
//! It answers as the edge test guest named by `PROBE_ROLE` (see `probe-roles`), like
//! `probe-http` does for wasi:http@0.2: the request body is read to its end from the request's
//! stream; the handler returns the response with the body's stream, and a task it spawns writes
//! the body after the handler returned, as WASIp3 guests do.
//!
//! What the `wasi:http` types refuse cannot be sent (a field the Fields API rejects is left
//! out; a status it rejects is answered with an error code instead), as for `probe-http`.

use probe_roles::{ROLE_VAR, Request, Response};
use wasip3::http::types::{
    ErrorCode, Fields, Method, Request as WasiRequest, Response as WasiResponse,
};
use wasip3::{wit_future, wit_stream};

wasip3::http::service::export!(Probe);

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
async fn read_request(incoming: WasiRequest) -> Request {
    let method = method_name(incoming.get_method());
    let path_with_query = incoming.get_path_with_query().unwrap_or_else(|| "/".into());
    let headers = incoming.get_headers().copy_all();
    let (_done_tx, done_rx) = wit_future::new(|| Ok(()));
    let (body, _trailers) = WasiRequest::consume_body(incoming, done_rx);
    Request {
        method,
        path_with_query,
        headers,
        body: body.collect().await,
    }
}

/// The response, its body written by a spawned task once the handler has returned it.
fn send(response: Response) -> Result<WasiResponse, ErrorCode> {
    let headers = Fields::new();
    for (name, value) in &response.headers {
        // Refused fields are left out (see the crate's documentation).
        let _ = headers.append(name, value);
    }
    let (mut body_tx, body_rx) = wit_stream::new();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (outgoing, _sent) = WasiResponse::new(headers, Some(body_rx), trailers_rx);
    if outgoing.set_status_code(response.status).is_err() {
        return Err(ErrorCode::InternalError(Some(format!(
            "status {} cannot be sent through wasi:http",
            response.status
        ))));
    }
    wasip3::spawn(async move {
        // The host stops reading once the body is over its limit: the rest is dropped.
        let _ = body_tx.write_all(response.body).await;
        drop(body_tx);
        let _ = trailers_tx.write(Ok(None)).await;
    });
    Ok(outgoing)
}

impl wasip3::exports::http::handler::Guest for Probe {
    async fn handle(request: WasiRequest) -> Result<WasiResponse, ErrorCode> {
        let role = std::env::var(ROLE_VAR).unwrap_or_default();
        if role == "wasi-http" {
            return misbehave(request);
        }
        let request = read_request(request).await;
        let response = probe_roles::respond(&role, request)
            .unwrap_or_else(|| probe_roles::unknown_role(&role));
        send(response)
    }
}

/// The `wasi-http` role: answers only a wasi:http guest can get wrong.
fn misbehave(request: WasiRequest) -> Result<WasiResponse, ErrorCode> {
    let path = request.get_path_with_query().unwrap_or_default();
    match path
        .split('?')
        .next()
        .unwrap_or("")
        .rsplit('/')
        .next()
        .unwrap_or("")
    {
        // Write half a body, then fail it: an error where its trailers would be.
        "unfinished" => {
            let (mut body_tx, body_rx) = wit_stream::new::<u8>();
            let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
            let (outgoing, _sent) = WasiResponse::new(Fields::new(), Some(body_rx), trailers_rx);
            wasip3::spawn(async move {
                let _ = body_tx.write_all(b"half".to_vec()).await;
                drop(body_tx);
                let failed = ErrorCode::InternalError(Some("the probe gives up".into()));
                let _ = trailers_tx.write(Err(failed)).await;
            });
            Ok(outgoing)
        }
        // Answer with an error code instead of a response.
        "error-code" => Err(ErrorCode::InternalError(Some("the probe refuses".into()))),
        _ => send(
            Response::new(200)
                .with_header("content-type", "text/plain")
                .with_body(b"ok\n".to_vec()),
        ),
    }
}
