#![allow(unused_imports)]
use percore_guest::{handler, Request, Response};

#[handler]
fn handle(_req: Request, _extra: u32) -> Response {
    Response::new(200)
}

fn main() {}
