//! The smallest percore guest: the same greeting for every request.

use percore_guest::{Request, Response, handler};

#[handler]
fn hello(_req: Request) -> Response {
    Response::text(200, "Hello from percore!\n")
}
