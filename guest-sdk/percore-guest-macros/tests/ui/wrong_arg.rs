#![allow(unused_imports)]
use percore_guest::{handler, Request, Response};

#[handler]
fn handle(_req: String) -> Response {
    Response::new(200)
}

fn main() {}
