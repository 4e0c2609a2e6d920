//! Every example guest gives its documented answer through both input paths.

use percore_engine::{InputPreference, LogLevel};

use crate::{PATHS, get};

#[test]
fn hello_answers_on_both_paths() {
    for input in PATHS {
        let response = get("/").run("hello", input).result.unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"Hello from percore!\n");
        assert_eq!(
            response.header("content-type"),
            Some(&b"text/plain; charset=utf-8"[..])
        );
    }
}

#[test]
fn hello_built_for_every_target_answers_the_same() {
    for guest in ["hello", "hello-unknown", "hello-wasip1"] {
        for input in PATHS {
            let response = get("/").run(guest, input).result.unwrap();
            assert_eq!(response.body, b"Hello from percore!\n", "{guest} {input:?}");
        }
    }
}

#[test]
fn echo_returns_method_path_headers_and_body_unchanged() {
    let body: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    for input in PATHS {
        let response = get("/some/path?x=1&y=%20")
            .method("PUT")
            .header("X-Repeat", "one")
            .header("Content-Type", "application/x-test")
            .header("x-repeat", &b"two \xff"[..])
            .body(body.clone())
            .run("echo", input)
            .result
            .unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body, body, "{input:?}");
        assert_eq!(response.header("x-echo-method"), Some(&b"PUT"[..]));
        assert_eq!(
            response.header("x-echo-path"),
            Some(&b"/some/path?x=1&y=%20"[..])
        );
        let expected_input: &[u8] = match input {
            InputPreference::Region => b"region",
            InputPreference::Portable => b"portable",
        };
        assert_eq!(response.header("x-echo-input"), Some(expected_input));
        let echoed: Vec<(&str, &[u8])> = response
            .headers
            .iter()
            .filter(|(n, _)| n.starts_with("x-echo-h-"))
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        assert_eq!(
            echoed,
            vec![
                ("x-echo-h-x-repeat", &b"one"[..]),
                ("x-echo-h-content-type", &b"application/x-test"[..]),
                ("x-echo-h-x-repeat", &b"two \xff"[..]),
            ]
        );
        assert_eq!(
            response.header("content-type"),
            Some(&b"application/x-test"[..])
        );
    }
}

#[test]
fn echo_handles_empty_and_large_bodies() {
    for input in PATHS {
        let response = get("/").run("echo", input).result.unwrap();
        assert!(response.body.is_empty());
        // Larger than the initial 64 KiB region: the host asks the guest for a bigger one.
        let big = vec![7u8; 1 << 20];
        let response = get("/")
            .method("POST")
            .body(big.clone())
            .run("echo", input)
            .result
            .unwrap();
        assert_eq!(response.body.len(), big.len());
        assert!(response.body == big);
    }
}

#[test]
fn json_api_routes_and_validates() {
    for input in PATHS {
        let r = get("/health").run("json-api", input).result.unwrap();
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, &br#"{"status":"ok"}"#[..])
        );

        let r = get("/sum")
            .method("POST")
            .header("content-type", "application/json")
            .body(r#"{"numbers":[1,2,3]}"#)
            .run("json-api", input)
            .result
            .unwrap();
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, &br#"{"sum":6,"count":3}"#[..])
        );

        let r = get("/sum")
            .method("POST")
            .body("{not json")
            .run("json-api", input)
            .result
            .unwrap();
        assert_eq!(r.status, 400);
        assert!(String::from_utf8_lossy(&r.body).contains("\"error\""));

        let r = get("/items/abc-42").run("json-api", input).result.unwrap();
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, &br#"{"id":"abc-42"}"#[..])
        );

        let r = get("/nope").run("json-api", input).result.unwrap();
        assert_eq!(
            (r.status, r.body.as_slice()),
            (404, &br#"{"error":"not found"}"#[..])
        );

        let r = get("/health")
            .method("DELETE")
            .run("json-api", input)
            .result
            .unwrap();
        assert_eq!(r.status, 405);
        assert!(r.header("allow").is_some());
    }
}

#[test]
fn greeter_uses_config_logging_and_the_clock() {
    for input in PATHS {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let invocation = get("/?name=edge").run_with(
            "greeter",
            input,
            Default::default(),
            &[("greeting", "Bonjour")],
        );
        let r = invocation.result.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"Bonjour, edge!\n");
        let t: u64 = std::str::from_utf8(r.header("x-time-unix").unwrap())
            .unwrap()
            .parse()
            .unwrap();
        assert!(t >= before && t <= before + 60, "{t} vs {before}");
        let log = invocation
            .logs
            .iter()
            .find(|l| l.message == "greeting")
            .expect("the greeting log record");
        assert_eq!(log.level, LogLevel::Info);
        assert!(log.fields.contains(&("name".into(), "edge".into())));

        let r = get("/").run("greeter", input).result.unwrap();
        assert_eq!(r.body, b"Hello, world!\n");

        let r = get("/elapsed").run("greeter", input).result.unwrap();
        let elapsed: u64 = std::str::from_utf8(&r.body)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(elapsed > 0);
    }
}

#[test]
fn a_reused_instance_serves_many_requests() {
    let handler = crate::handler("echo");
    let mut instance = handler
        .instantiate(Default::default(), Default::default())
        .unwrap();
    for i in 0..200usize {
        let body = vec![(i % 251) as u8; i * 37];
        let request = percore_engine::Request {
            method: "POST",
            path_with_query: "/",
            headers: &[],
            body: &body,
        };
        let input = if i % 2 == 0 {
            InputPreference::Region
        } else {
            InputPreference::Portable
        };
        let response = instance.handle(&request, input).result.unwrap();
        assert_eq!(response.body, body);
    }
    assert!(instance.is_usable());
}

#[test]
fn a_body_streamed_into_the_region_reaches_the_guest_unchanged() {
    let handler = crate::handler("echo");
    let mut instance = handler
        .instantiate(Default::default(), Default::default())
        .unwrap();
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let length = body.len().to_string();
    let headers: [(&str, &[u8]); 1] = [("content-length", length.as_bytes())];
    let head = percore_engine::Request {
        method: "POST",
        path_with_query: "/streamed",
        headers: &headers,
        body: &[],
    };
    let mut streamed = instance
        .begin_streamed(&head, body.len())
        .unwrap()
        .expect("echo has an input region");
    for chunk in body.chunks(16 << 10) {
        assert_eq!(instance.stream_body(&mut streamed, chunk), chunk.len());
    }
    // Nothing past the declared length is taken.
    assert_eq!(instance.stream_body(&mut streamed, b"extra"), 0);
    assert_eq!(instance.streamed_bytes(&streamed), body);
    let invocation = instance.handle_streamed(&head, streamed);
    assert_eq!(invocation.stats.request_copies, 1);
    assert_eq!(invocation.result.unwrap().body, body);
    // The instance still answers normal requests afterwards.
    let again = instance.handle(
        &percore_engine::Request {
            method: "POST",
            path_with_query: "/",
            headers: &[],
            body: b"after",
        },
        InputPreference::Region,
    );
    assert_eq!(again.result.unwrap().body, b"after");
}

#[test]
fn a_streamed_body_cut_short_is_the_hosts_failure_not_the_guests() {
    let mut instance = crate::handler("echo")
        .instantiate(Default::default(), Default::default())
        .unwrap();
    let head = percore_engine::Request {
        method: "POST",
        path_with_query: "/streamed",
        headers: &[],
        body: &[],
    };
    let mut streamed = instance
        .begin_streamed(&head, 10)
        .unwrap()
        .expect("echo has an input region");
    assert_eq!(instance.stream_body(&mut streamed, b"short"), 5);
    let fault = instance
        .handle_streamed(&head, streamed)
        .result
        .unwrap_err();
    assert!(
        matches!(fault, percore_engine::Fault::Host { .. }),
        "{fault}"
    );
    assert_eq!(fault.kind(), "host");
    assert_eq!(fault.http_status(), 500);
}
