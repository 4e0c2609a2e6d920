//! A small proxy: `GET /?url=<absolute URL>` fetches the URL (from an origin the deployment
//! allows) and answers with the origin's status, content type and body. Errors become 400
//! (no or bad `url`), 403 (origin not allowed), 504 (timeout) or 502 (anything else), with
//! the reason in the body and in the `x-fetch-error` header.

use percore_guest::{Request, Response, fetch, handler};

#[handler]
fn proxy(req: Request) -> Response {
    let Some(url) = req.query_param("url").map(percent_decode) else {
        return Response::text(400, "usage: ?url=<absolute http or https URL>\n");
    };
    let mut outbound = fetch::Request::new(req.method(), url.as_str()).body(req.body());
    if let Some(accept) = req.header("accept") {
        outbound = outbound.header("accept", accept);
    }
    match outbound.send() {
        Ok(origin) => {
            let content_type = origin
                .headers()
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
                .map(|(_, value)| value.clone());
            let mut response = Response::bytes(origin.status(), origin.body().to_vec())
                .with_header("x-fetched-from", url.as_str());
            if let Some(content_type) = content_type {
                response = response.with_header("content-type", content_type);
            }
            response
        }
        Err(e) => Response::text(e.status(), format!("fetching {url}: {e}\n"))
            .with_header("x-fetch-error", e.kind()),
    }
}

/// `%XX` escapes decoded (and `+` left alone: URLs, not forms).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
