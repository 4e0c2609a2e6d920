//! A guest that misbehaves on request, to test that hosts contain it.
//!
//! `/ok` answers normally; `/loop` never returns; `/grow` allocates until memory runs out;
//! `/recurse` overflows the stack; `/panic` panics; `/big?mb=N` answers with N MiB;
//! `/stdout` prints to stdout and stderr; `/env` reports what the WASI sandbox exposes;
//! `/status?code=N`, `/body-on-204`, `/bad-header`, `/bad-header-name` and `/framing` answer
//! with statuses and fields that test how a host holds guests to the contract; `/random`
//! returns 16 random bytes in hex; `/spin?ms=N` is busy for N ms, then answers.

use std::hint::black_box;

use percore_guest::{Request, Response, handler};

// Unbounded on purpose: the host must stop it with a stack-overflow trap.
#[allow(unconditional_recursion)]
fn recurse(depth: u64, trail: &mut Vec<u64>) -> u64 {
    // The frame holds data used after the call, so this cannot become a loop.
    let local = [depth; 16];
    trail.push(black_box(local[depth as usize % 16]));
    let below = recurse(depth + 1, trail);
    black_box(local[0] + below)
}

#[handler]
fn hostile(req: Request) -> Response {
    // Match the last path segment, so the guest works under any route prefix.
    let behaviour = format!("/{}", req.path().rsplit('/').next().unwrap_or(""));
    match behaviour.as_str() {
        "/ok" => Response::text(200, "ok"),
        "/loop" => {
            let mut counter = 0u64;
            loop {
                counter = black_box(counter.wrapping_add(1));
            }
        }
        "/grow" => {
            // Reserve 1 MiB at a time and keep it: memory.grow until the cap refuses.
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut chunk = Vec::<u8>::with_capacity(1 << 20);
                chunk.push(1);
                hoard.push(black_box(chunk));
            }
        }
        "/recurse" => {
            let mut trail = Vec::new();
            Response::text(200, recurse(0, &mut trail).to_string())
        }
        "/panic" => panic!("deliberate panic"),
        "/big" => {
            let mb: usize = req
                .query_param("mb")
                .and_then(|v| v.parse().ok())
                .unwrap_or(32);
            Response::bytes(200, vec![b'x'; mb << 20])
        }
        "/stdout" => {
            println!("to stdout");
            eprintln!("to stderr");
            Response::text(200, "printed")
        }
        "/env" => {
            let env = std::env::vars().count();
            let fs = if std::fs::read_dir("/").is_ok() {
                "ok"
            } else {
                "error"
            };
            Response::text(200, format!("env={env} fs={fs}"))
        }
        "/status" => {
            // Any status the guest chooses; 204 and 304 without a body, as the contract says.
            let code: u16 = req
                .query_param("code")
                .and_then(|v| v.parse().ok())
                .unwrap_or(200);
            match code {
                204 | 304 => Response::new(code).with_header("x-status", code.to_string()),
                _ => Response::text(code, format!("status {code}\n")),
            }
        }
        "/body-on-204" => Response::text(204, "a 204 must not have a body"),
        "/bad-header" => Response::text(200, "x").with_header("x-bad", "line\r\nbreak"),
        "/bad-header-name" => Response::text(200, "x").with_header("bad name", "v"),
        "/framing" => Response::text(200, "framed by the host")
            .with_header("content-length", "9999")
            .with_header("transfer-encoding", "chunked")
            .with_header("connection", "close"),
        "/spin" => {
            // Busy for `ms` milliseconds of the monotonic clock, then answer: a slow but
            // well-behaved request.
            let ms: u64 = req
                .query_param("ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100);
            let start = percore_guest::clocks::monotonic_ns();
            let mut spins = 0u64;
            while percore_guest::clocks::monotonic_ns() - start < ms * 1_000_000 {
                spins = black_box(spins + 1);
            }
            Response::text(200, format!("spun {ms} ms"))
        }
        "/random" => {
            let bytes = percore_guest::random::bytes(16);
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            Response::text(200, hex)
        }
        _ => Response::text(404, "unknown behaviour"),
    }
}
