//! Uses the host's capabilities: a configuration value, structured logging and both clocks.

use std::time::UNIX_EPOCH;

use percore_guest::log::{self, Level};
use percore_guest::{Request, Response, clocks, config, handler};

#[handler]
fn greet(req: Request) -> Response {
    if req.path() == "/elapsed" {
        let start = clocks::monotonic_ns();
        let mut x = 0u64;
        for i in 0..10_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let elapsed = clocks::monotonic_ns().saturating_sub(start).max(1);
        return Response::text(200, format!("{elapsed}\n"));
    }
    let greeting = config::get("greeting").unwrap_or_else(|| "Hello".to_owned());
    let name = req.query_param("name").unwrap_or("world");
    log::log(Level::Info, "greeting", &[("name", name)]);
    let now = clocks::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Response::text(200, format!("{greeting}, {name}!\n"))
        .with_header("x-time-unix", now.to_string())
}
