#![allow(unused_imports)]
use percore_guest::{handler, Request, Response};

#[handler]
fn handle() -> Response {
    Response::new(200)
}

fn main() {}
