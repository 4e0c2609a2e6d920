#![allow(unused_imports)]
use percore_guest::{handler, Request, Response};

#[handler]
fn handle(_req: Request) -> u32 {
    7
}

fn main() {}
