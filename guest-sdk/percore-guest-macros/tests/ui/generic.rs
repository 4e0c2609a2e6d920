#![allow(unused_imports)]
use percore_guest::{handler, Request, Response};

#[handler]
fn handle<T>(_req: Request) -> Response {
    Response::new(200)
}

fn main() {}
