//! The kinds of guest besides `edge:handler`: detection, wasi:http, CGI commands (component and
//! preview 1 module), bare modules; their faults are typed like an edge guest's.

use std::time::Duration;

use percore_engine::{Error, Fault, Guest, GuestKind, Limits, TimeoutKind};

use crate::{engine, get, guest, guest_path};

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(guest_path(name)).unwrap()
}

#[test]
fn each_kind_is_told_from_the_binary() {
    for (name, kind) in [
        ("hello", GuestKind::Edge),
        ("wasi-http-json", GuestKind::HttpP2),
        ("probe-http", GuestKind::HttpP2),
        ("probe-http3", GuestKind::HttpP3),
        ("probe-cgi", GuestKind::Cgi),
        ("upper-cgi", GuestKind::Cgi),
        ("probe-cgi-wasip1", GuestKind::Cgi),
        ("sum", GuestKind::Bare),
        ("bare-probe", GuestKind::Bare),
    ] {
        assert_eq!(
            percore_engine::kind_of(&bytes(name)).unwrap(),
            kind,
            "{name}"
        );
        assert_eq!(guest(name).kind(), kind, "{name}");
        // An artifact says its kind too.
        let compiled = engine().compile_guest(&bytes(name)).unwrap();
        assert_eq!(compiled.kind, kind, "{name}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.cwasm");
        std::fs::write(&path, &compiled.artifact).unwrap();
        assert_eq!(
            engine().load_guest_artifact(&path).unwrap().kind(),
            kind,
            "{name}"
        );
    }
    let err = engine()
        .load_file(&guest_path("not-a-component"))
        .unwrap_err();
    assert!(matches!(err, Error::UnknownKind(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("env.memory") && text.contains("wasi:cli/run"),
        "{text}"
    );
    let err = engine().load_file(&guest_path("wrong-world")).unwrap_err();
    assert!(matches!(err, Error::UnknownKind(_)), "{err}");
}

#[test]
fn a_wasi_http_component_answers() {
    let invocation = get("/x?y=1").run_kind("wasi-http-json", Limits::default(), &[]);
    let response = invocation.result.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(
        String::from_utf8_lossy(&response.body),
        "{\"method\":\"GET\",\"path\":\"/x\",\"body_bytes\":0}\n"
    );
    let body = vec![7u8; 3 << 20];
    let invocation =
        get("/big")
            .method("POST")
            .body(body)
            .run_kind("wasi-http-json", Limits::default(), &[]);
    let response = invocation.result.unwrap();
    assert!(
        String::from_utf8_lossy(&response.body).contains("\"body_bytes\":3145728"),
        "{response:?}"
    );
}

#[test]
fn wasi_http_bodies_round_trip_and_config_is_the_environment() {
    let body: Vec<u8> = (0..(2 << 20)).map(|i| (i % 251) as u8).collect();
    let invocation = get("/echo")
        .method("PUT")
        .header("x-a", "1")
        .body(body.clone())
        .run_kind("probe-http", Limits::default(), &[("PROBE_ROLE", "echo")]);
    let response = invocation.result.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-echo-method"), Some(&b"PUT"[..]));
    assert!(response.body == body, "the body came back changed");
}

#[test]
fn wasi_http_faults_are_typed() {
    assert_typed_faults("probe-http", Some(TimeoutKind::Cpu));
}

#[test]
fn a_wasi_http_p3_component_answers_bodies_both_ways_and_its_faults_are_typed() {
    let body: Vec<u8> = (0..(2 << 20)).map(|i| (i % 251) as u8).collect();
    let invocation = get("/echo?q=1")
        .method("PUT")
        .header("x-a", "1")
        .header("host", "p3.example")
        .body(body.clone())
        .run_kind("probe-http3", Limits::default(), &[("PROBE_ROLE", "echo")]);
    let response = invocation.result.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-echo-method"), Some(&b"PUT"[..]));
    assert_eq!(response.header("x-echo-path"), Some(&b"/echo?q=1"[..]));
    assert!(response.body == body, "the body came back changed");
    assert_typed_faults("probe-http3", Some(TimeoutKind::Cpu));
    // A body that fails (an error where its trailers would be), an error code instead of a
    // response: both a bad response.
    for path in ["/unfinished", "/error-code"] {
        let result = get(path)
            .run_kind(
                "probe-http3",
                Limits::default(),
                &[("PROBE_ROLE", "wasi-http")],
            )
            .result;
        assert!(
            matches!(result, Err(Fault::BadResponse { .. })),
            "{path}: {result:?}"
        );
    }
}

#[test]
fn a_command_runs_cgi_style() {
    let invocation =
        get("/")
            .method("POST")
            .body("make me loud")
            .run_kind("upper-cgi", Limits::default(), &[]);
    let response = invocation.result.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"MAKE ME LOUD");
    // Bodies far over 1 MB go through stdin and stdout. Copying 3 MiB each way takes tens of
    // milliseconds in an unoptimised test build: the default 100 ms CPU budget is not what
    // this checks, so it gets a larger one.
    let body = vec![b'a'; 3 << 20];
    let limits = Limits {
        cpu_budget: std::time::Duration::from_secs(2),
        wall_deadline: std::time::Duration::from_secs(10),
        ..Limits::default()
    };
    let invocation = get("/")
        .method("POST")
        .body(body)
        .run_kind("upper-cgi", limits, &[]);
    let response = invocation.result.unwrap();
    assert_eq!(response.body.len(), 3 << 20);
    assert!(response.body.iter().all(|&b| b == b'A'));
}

#[test]
fn cgi_headers_set_the_response_from_a_component_and_a_wasip1_module() {
    for guest_name in ["probe-cgi", "probe-cgi-wasip1"] {
        let invocation =
            get("/headers").run_kind(guest_name, Limits::default(), &[("PROBE_ROLE", "cgi")]);
        let response = invocation.result.unwrap();
        assert_eq!(response.status, 201, "{guest_name}");
        assert_eq!(response.header("x-cgi"), Some(&b"yes"[..]), "{guest_name}");
    }
}

#[test]
fn command_faults_are_typed() {
    assert_typed_faults("probe-cgi", None);
}

/// The `hostile` role of a probe: a loop ends in the timeout (of `loop_kind`, when given), a
/// memory bomb out of memory, a panic in a trap, a body over the limit as too large; then the
/// guest still serves.
fn assert_typed_faults(probe: &str, loop_kind: Option<TimeoutKind>) {
    let hostile = |path: &str, limits: Limits| {
        get(path)
            .run_kind(probe, limits, &[("PROBE_ROLE", "hostile")])
            .result
    };
    let limits = Limits {
        cpu_budget: Duration::from_millis(50),
        wall_deadline: Duration::from_millis(500),
        memory_bytes: 16 << 20,
        max_response_body: 1 << 20,
        ..Limits::default()
    };
    let spun = hostile("/loop", limits.clone());
    match (&spun, loop_kind) {
        (Err(Fault::Timeout { kind, .. }), Some(want)) => assert_eq!(*kind, want, "{probe}"),
        (Err(Fault::Timeout { .. }), None) => {}
        _ => panic!("{probe}: /loop gave {spun:?}"),
    }
    assert!(matches!(
        hostile("/grow", limits.clone()),
        Err(Fault::OutOfMemory { .. })
    ));
    assert!(matches!(
        hostile("/panic", limits.clone()),
        Err(Fault::Trap { .. })
    ));
    let big = hostile("/big?mb=3", limits.clone());
    assert!(
        matches!(big, Err(Fault::ResponseTooLarge { .. })),
        "{big:?}"
    );
    assert_eq!(hostile("/ok", limits).unwrap().status, 200);
}

#[test]
fn bare_modules_are_called_with_numbers() {
    let Guest::Bare(sum) = guest("sum") else {
        panic!("sum is bare")
    };
    assert_eq!(sum.pick(None).unwrap(), "sum");
    let out = sum.call(Default::default(), "sum", &["5", "2"]).unwrap();
    assert_eq!(out.result.unwrap().body, b"7\n");
    assert!(matches!(
        sum.call(Default::default(), "sum", &["5"]),
        Err(Error::BadCall(_))
    ));
    assert!(matches!(
        sum.call(Default::default(), "sum", &["5", "two"]),
        Err(Error::BadCall(_))
    ));
    let Guest::Bare(probe) = guest("bare-probe") else {
        panic!("bare-probe is bare")
    };
    assert!(
        probe.pick(None).is_err(),
        "several exports: a name is needed"
    );
    let answer = probe.call(Default::default(), "answer", &[]).unwrap();
    assert_eq!(answer.result.unwrap().body, b"42\n");
    let now = probe.call(Default::default(), "now", &[]).unwrap();
    let ms: f64 = String::from_utf8(now.result.unwrap().body)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(ms > 1.7e12, "platform.now gives ms since the epoch: {ms}");
    let limits = Limits {
        cpu_budget: Duration::from_millis(20),
        ..Limits::default()
    };
    let spin = probe.call(limits.into(), "spin", &[]).unwrap();
    assert!(matches!(spin.result, Err(Fault::Timeout { .. })));
    let trap = probe.call(Default::default(), "trap", &[]).unwrap();
    assert!(matches!(trap.result, Err(Fault::Trap { .. })));
}

#[test]
fn a_wasi_http_instance_is_reset_between_requests() {
    let Guest::Http(handler) = guest("probe-http") else {
        panic!("probe-http is wasi:http")
    };
    assert_eq!(
        percore_engine::check_resettable(&bytes("probe-http")),
        Ok(()),
        "a wasip2 Rust component keeps its state in memory"
    );
    let config: std::sync::Arc<std::collections::BTreeMap<String, String>> = std::sync::Arc::new(
        [("PROBE_ROLE".to_owned(), "stateful".to_owned())]
            .into_iter()
            .collect(),
    );
    let mut instance = handler
        .instantiate(Default::default(), config.clone())
        .unwrap();
    instance.prepare_reset().unwrap();
    let request = |path: &'static str| percore_engine::Request {
        method: "GET",
        path_with_query: path,
        headers: &[("host", b"t.example")],
        body: b"",
    };
    for _ in 0..3 {
        let response = instance.handle(&request("/count")).result.unwrap();
        assert_eq!(
            response.body, b"1",
            "every request starts from the snapshot"
        );
        instance.reset().unwrap();
    }
    // Kept without a reset, the state shows: the reset is what cleans it.
    let mut kept = handler.instantiate(Default::default(), config).unwrap();
    kept.handle(&request("/count")).result.unwrap();
    let second = kept.handle(&request("/count")).result.unwrap();
    assert_eq!(second.body, b"2");
    // A request that faulted poisons the instance: it is never reset.
    let hostile: std::sync::Arc<std::collections::BTreeMap<String, String>> = std::sync::Arc::new(
        [("PROBE_ROLE".to_owned(), "hostile".to_owned())]
            .into_iter()
            .collect(),
    );
    let mut instance = handler.instantiate(Default::default(), hostile).unwrap();
    instance.prepare_reset().unwrap();
    assert!(instance.handle(&request("/panic")).result.is_err());
    assert!(instance.reset().is_err());
    assert!(!instance.is_usable());
}
