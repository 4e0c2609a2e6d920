//! A percore guest in Rust: greets by name, echoes bodies, logs, reads its configuration.
//!
//! - `GET /?name=Ada`: `{"message":"Hello, Ada!","language":"rust","user_agent":"..."}`
//! - `POST /echo`: the body back, with its content-type
//! - `GET /fail`: panics: the host answers 500 (trap) and logs the panic message
//! - anything else: 404 `{"error":"not found"}`
//!
//! The greeting comes from the deployment's configuration (`greeting`, default "Hello").

use percore_guest::log::{self, Level};
use percore_guest::{Request, Response, config, handler};
use serde_json::json;

#[handler]
fn greet(req: Request) -> Response {
    match (req.method(), req.path()) {
        ("POST", "/echo") => Response::new(200)
            .with_header(
                "content-type",
                req.header("content-type")
                    .unwrap_or(b"application/octet-stream"),
            )
            .with_body(req.body()),
        (_, "/fail") => panic!("deliberate failure, as asked"),
        (_, "/") => {
            let name = req.query_param("name").unwrap_or("world");
            let greeting = config::get("greeting").unwrap_or_else(|| "Hello".to_owned());
            log::log(Level::Info, "greeting", &[("name", name)]);
            Response::json(
                200,
                &json!({
                    "message": format!("{greeting}, {name}!"),
                    "language": "rust",
                    "user_agent": req.header_str("user-agent"),
                }),
            )
        }
        _ => Response::json(404, &json!({ "error": "not found" })),
    }
}
