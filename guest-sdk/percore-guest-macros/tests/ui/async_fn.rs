#![allow(unused_imports)]
use percore_guest::{handler, Request, Response};

#[handler]
async fn handle(_req: Request) -> Response {
    Response::new(200)
}

fn main() {}
