//! A guest that misbehaves on request, to test that hosts contain it.
//!
//! `/ok` answers normally; `/loop` never returns; `/grow` allocates until memory runs out;
//! `/recurse` overflows the stack; `/panic` panics; `/big?mb=N` answers with N MiB;
//! `/stdout` prints to stdout and stderr; `/env` reports what the WASI sandbox exposes;
//! `/status?code=N`, `/body-on-204`, `/bad-header`, `/bad-header-name` and `/framing` answer
//! with statuses and fields that test how a host holds guests to the contract; `/random`
//! returns 16 random bytes in hex; `/spin?ms=N` is busy for N ms, then answers.
//! Floods, each of which a host must cap: `/log-flood?n=N` makes N log calls of a 4 KiB message
//! and 32 fields of 4 KiB keys and values; `/print-flood?mb=N` prints N MiB to stdout and to
//! stderr; `/header-flood?n=N&kib=K` answers with N header fields of K KiB values.
//! Outbound: `/fetch-many?n=N&url=U` sends N requests to U one after another, whatever each
//! gives, and answers with how many succeeded and the errors by kind (`ok=3 too_many=7`);
//! `/fetch-spin?url=U` fetches U, then spins forever (a guest that never ends after waiting).

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

/// A numeric query parameter, `default` when absent.
fn param(req: &Request, name: &str, default: usize) -> usize {
    req.query_param(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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
        "/log-flood" => {
            let n = param(&req, "n", 1000);
            let text = "l".repeat(4096);
            let fields: Vec<(String, String)> = (0..32)
                .map(|i| (format!("{i:04}{}", "k".repeat(4092)), text.clone()))
                .collect();
            let fields: Vec<(&str, &str)> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            for _ in 0..n {
                percore_guest::log::log(percore_guest::log::Level::Info, &text, &fields);
            }
            Response::text(200, format!("logged {n} records"))
        }
        "/print-flood" => {
            use std::io::Write;
            let line = [b'p'; 1 << 16];
            for _ in 0..param(&req, "mb", 8) * 16 {
                let _ = std::io::stdout().write_all(&line);
                let _ = std::io::stderr().write_all(&line);
            }
            Response::text(200, "printed")
        }
        "/header-flood" => {
            let value = "h".repeat(param(&req, "kib", 1) << 10);
            (0..param(&req, "n", 1000)).fold(Response::text(200, "headers"), |r, i| {
                r.with_header(format!("x-flood-{i}"), value.clone())
            })
        }
        "/fetch-many" => {
            let url = req.query_param("url").unwrap_or("");
            let mut counts = std::collections::BTreeMap::<&str, usize>::new();
            for _ in 0..param(&req, "n", 1) {
                let kind = match percore_guest::fetch::get(url) {
                    Ok(_) => "ok",
                    Err(e) => e.kind(),
                };
                *counts.entry(kind).or_default() += 1;
            }
            let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{k}={n}")).collect();
            Response::text(200, summary.join(" "))
        }
        "/fetch-spin" => {
            let _ = percore_guest::fetch::get(req.query_param("url").unwrap_or(""));
            let mut n = 0u64;
            loop {
                n = black_box(n.wrapping_add(1));
            }
        }
        _ => Response::text(404, "unknown behaviour"),
    }
}
