//! Hostile guests get their typed fault, and the engine serves the next request normally.

use std::time::{Duration, Instant};

use percore_engine::{Fault, Limits, TimeoutKind};

use crate::{PATHS, get};

/// After a fault, the same guest still serves a normal request.
fn still_serves() {
    for input in PATHS {
        let r = get("/ok").run("hostile", input).result.unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
    }
}

#[test]
fn an_infinite_loop_hits_the_cpu_budget() {
    let limits = Limits {
        cpu_budget: Duration::from_millis(50),
        ..Limits::default()
    };
    for input in PATHS {
        let started = Instant::now();
        let fault = get("/loop")
            .run_with("hostile", input, limits.clone(), &[])
            .result
            .unwrap_err();
        assert_eq!(
            fault,
            Fault::Timeout {
                kind: TimeoutKind::Cpu,
                limit: Duration::from_millis(50)
            }
        );
        assert_eq!(fault.http_status(), 504);
        // Bounded, not a timing assertion: it must not hang past the wall deadline.
        assert!(started.elapsed() < limits.wall_deadline * 10);
    }
    still_serves();
}

#[test]
fn the_wall_deadline_applies_when_it_is_shorter() {
    let limits = Limits {
        cpu_budget: Duration::from_secs(10),
        wall_deadline: Duration::from_millis(30),
        ..Limits::default()
    };
    let fault = get("/loop")
        .run_with("hostile", Default::default(), limits, &[])
        .result
        .unwrap_err();
    assert!(
        matches!(
            fault,
            Fault::Timeout {
                kind: TimeoutKind::Wall,
                ..
            }
        ),
        "{fault:?}"
    );
}

#[test]
fn a_memory_bomb_hits_the_memory_cap() {
    for input in PATHS {
        let fault = get("/grow").run("hostile", input).result.unwrap_err();
        assert_eq!(fault, Fault::OutOfMemory { limit: 64 << 20 });
        assert_eq!(fault.http_status(), 500);
    }
    still_serves();
}

#[test]
fn a_smaller_memory_cap_is_enforced() {
    let limits = Limits {
        memory_bytes: 8 << 20,
        ..Limits::default()
    };
    let fault = get("/big?mb=16")
        .run_with("hostile", Default::default(), limits, &[])
        .result
        .unwrap_err();
    assert_eq!(fault, Fault::OutOfMemory { limit: 8 << 20 });
}

#[test]
fn deep_recursion_traps_with_a_stack_overflow() {
    for input in PATHS {
        let fault = get("/recurse").run("hostile", input).result.unwrap_err();
        match &fault {
            Fault::Trap { message } => assert!(message.contains("stack"), "{message}"),
            other => panic!("expected a trap, got {other:?}"),
        }
    }
    still_serves();
}

#[test]
fn a_panic_is_a_trap_carrying_the_panic_message() {
    for input in PATHS {
        let invocation = get("/panic").run("hostile", input);
        match &invocation.result {
            Err(Fault::Trap { message }) => {
                assert!(message.contains("deliberate panic"), "{message}")
            }
            other => panic!("expected a trap, got {other:?}"),
        }
        assert_eq!(invocation.result.unwrap_err().http_status(), 500);
    }
    still_serves();
}

#[test]
fn a_response_over_the_limit_is_refused() {
    let limits = Limits {
        max_response_body: 4 << 20,
        ..Limits::default()
    };
    for input in PATHS {
        let fault = get("/big?mb=5")
            .run_with("hostile", input, limits.clone(), &[])
            .result
            .unwrap_err();
        assert_eq!(
            fault,
            Fault::ResponseTooLarge {
                size: 5 << 20,
                limit: 4 << 20
            }
        );
        // Exactly at the limit is fine.
        let r = get("/big?mb=4")
            .run_with("hostile", input, limits.clone(), &[])
            .result
            .unwrap();
        assert_eq!(r.body.len(), 4 << 20);
    }
    still_serves();
}

#[test]
fn stdout_and_stderr_become_log_records() {
    let invocation = get("/stdout").run("hostile", Default::default());
    invocation.result.unwrap();
    let messages: Vec<_> = invocation.logs.iter().map(|l| l.message.as_str()).collect();
    assert!(messages.contains(&"to stdout"), "{messages:?}");
    assert!(messages.contains(&"to stderr"), "{messages:?}");
}

#[test]
fn the_wasi_sandbox_is_closed() {
    let r = get("/env")
        .run("hostile", Default::default())
        .result
        .unwrap();
    let body = String::from_utf8(r.body).unwrap();
    assert!(body.starts_with("env=0"), "{body}");
    assert!(body.contains("fs=error"), "{body}");
}

#[test]
fn a_faulted_instance_is_not_reused() {
    let handler = crate::handler("hostile");
    let mut instance = handler
        .instantiate(Default::default(), Default::default())
        .unwrap();
    let headers: &[(&str, &[u8])] = &[];
    let request = |path| percore_engine::Request {
        method: "GET",
        path_with_query: path,
        headers,
        body: b"",
    };
    assert!(
        instance
            .handle(&request("/ok"), Default::default())
            .result
            .is_ok()
    );
    assert!(
        instance
            .handle(&request("/panic"), Default::default())
            .result
            .is_err()
    );
    assert!(!instance.is_usable());
    assert_eq!(
        instance.handle(&request("/ok"), Default::default()).result,
        Err(Fault::Poisoned)
    );
}

#[test]
fn a_trap_writes_a_core_dump_only_when_asked_and_within_its_cap() {
    use percore_engine::CoreDump;
    for input in PATHS {
        let off = get("/panic").run("hostile", input);
        assert!(off.coredump.is_none(), "off by default");
        let on = Limits {
            coredump_max_bytes: 64 << 20,
            ..Limits::default()
        };
        let invocation = get("/panic").run_with("hostile", input, on, &[]);
        assert!(matches!(invocation.result, Err(Fault::Trap { .. })));
        let Some(CoreDump::Dump(dump)) = invocation.coredump else {
            panic!("no core dump: {:?}", invocation.coredump);
        };
        // A wasm module with the tool conventions' `core` section, its memory among its data.
        let mut sections = Vec::new();
        for payload in wasmparser::Parser::new(0).parse_all(&dump) {
            match payload.expect("the core dump parses as wasm") {
                wasmparser::Payload::CustomSection(c) => sections.push(c.name().to_owned()),
                wasmparser::Payload::DataSection(_) => sections.push("data".into()),
                _ => {}
            }
        }
        assert!(sections.iter().any(|s| s == "core"), "{sections:?}");
        assert!(sections.iter().any(|s| s == "corestack"), "{sections:?}");
        assert!(sections.iter().any(|s| s == "data"), "{sections:?}");
        let tiny = Limits {
            coredump_max_bytes: 1,
            ..Limits::default()
        };
        let invocation = get("/panic").run_with("hostile", input, tiny, &[]);
        assert!(
            matches!(
                invocation.coredump,
                Some(CoreDump::TooLarge { limit: 1, .. })
            ),
            "{:?}",
            invocation.coredump
        );
    }
    still_serves();
}
