//! A small JSON API: routing by path and method, JSON in and out, errors as JSON.

use percore_guest::{Request, Response, handler};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct SumRequest {
    numbers: Vec<i64>,
}

#[derive(Serialize)]
struct SumResponse {
    sum: i64,
    count: usize,
}

fn error(status: u16, message: &str) -> Response {
    Response::json(status, &serde_json::json!({ "error": message }))
}

fn method_not_allowed(allow: &str) -> Response {
    error(405, "method not allowed").with_header("allow", allow)
}

#[handler]
fn api(req: Request) -> Response {
    let path = req.path();
    match (req.method(), path) {
        ("GET", "/health") => Response::json(200, &serde_json::json!({ "status": "ok" })),
        (_, "/health") => method_not_allowed("GET"),
        ("POST", "/sum") => match req.json::<SumRequest>() {
            Ok(input) => Response::json(
                200,
                &SumResponse {
                    sum: input.numbers.iter().sum(),
                    count: input.numbers.len(),
                },
            ),
            Err(e) => error(400, &format!("invalid body: {e}")),
        },
        (_, "/sum") => method_not_allowed("POST"),
        ("GET", _) if path.starts_with("/items/") && path.len() > "/items/".len() => {
            Response::json(200, &serde_json::json!({ "id": &path["/items/".len()..] }))
        }
        (_, _) if path.starts_with("/items/") => method_not_allowed("GET"),
        _ => error(404, "not found"),
    }
}
