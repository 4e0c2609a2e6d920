//! Warm-up requests run before the snapshot: every reset request starts from the state they
//! left, on both input paths and for wasi:http and JavaScript guests; a warm-up that faults is
//! an error naming the request.

use percore_engine::{Fault, Guest, InputPreference, ResetError, WARMUP_HEADERS, Warmup};

use crate::{PATHS, guest, handler, language_guest_built};

fn call(
    instance: &mut percore_engine::Instance,
    method: &str,
    path: &str,
    input: InputPreference,
) -> String {
    let request = percore_engine::Request {
        method,
        path_with_query: path,
        headers: &[],
        body: b"",
    };
    let response = instance.handle(&request, input).result.unwrap();
    String::from_utf8(response.body).unwrap()
}

#[test]
fn every_reset_request_starts_from_the_state_after_the_warm_up() {
    if !percore_rt::pagemap::supported() {
        eprintln!("skipped: no PAGEMAP_SCAN");
        return;
    }
    let warmup = Warmup::parse(&["/count", "POST /count", "/peek"]).unwrap();
    for input in PATHS {
        let mut instance = handler("stateful")
            .instantiate(Default::default(), Default::default())
            .unwrap();
        let responses = instance.warm_up(&warmup, input).unwrap();
        let bodies: Vec<&[u8]> = responses.iter().map(|r| r.body.as_slice()).collect();
        assert_eq!(bodies, [&b"1"[..], b"2", "0".repeat(32).as_bytes()]);
        instance.prepare_reset().unwrap();
        for round in 0..5 {
            // The counter the warm-up left is 2: each request sees 3, never more.
            assert_eq!(call(&mut instance, "GET", "/count", input), "3", "{round}");
            // The warm-up's /peek wrote its marker: it is in the snapshot.
            assert_eq!(
                call(&mut instance, "GET", "/peek", input),
                hex(b"previous-request"),
                "{round}"
            );
            instance.reset().unwrap();
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_warmed_up_javascript_instance_keeps_the_warm_up_and_forgets_each_request() {
    if !percore_rt::pagemap::supported() || !language_guest_built("probe-js") {
        return;
    }
    let config: std::collections::BTreeMap<String, String> =
        [("PROBE_ROLE".to_owned(), "stateful".to_owned())].into();
    let mut instance = handler("probe-js")
        .instantiate(Default::default(), config.into())
        .unwrap();
    let warmup = Warmup::parse(&["/count", "/count"]).unwrap();
    instance
        .warm_up(&warmup, InputPreference::Portable)
        .unwrap();
    instance.prepare_reset().unwrap();
    for round in 0..5 {
        let count = call(&mut instance, "GET", "/count", InputPreference::Portable);
        assert_eq!(count, "3", "round {round}");
        instance.reset().unwrap();
    }
}

#[test]
fn a_wasi_http_instance_is_warmed_up_before_its_snapshot() {
    if !percore_rt::pagemap::supported() {
        return;
    }
    let Guest::Http(handler) = guest("probe-http") else {
        panic!("probe-http is wasi:http")
    };
    let config = std::sync::Arc::new(
        [("PROBE_ROLE".to_owned(), "stateful".to_owned())]
            .into_iter()
            .collect(),
    );
    let mut instance = handler.instantiate(Default::default(), config).unwrap();
    instance
        .warm_up(&Warmup::parse(&["/count"]).unwrap())
        .unwrap();
    instance.prepare_reset().unwrap();
    let request = percore_engine::Request {
        method: "GET",
        path_with_query: "/count",
        headers: WARMUP_HEADERS,
        body: b"",
    };
    for _ in 0..3 {
        assert_eq!(instance.handle(&request).result.unwrap().body, b"2");
        instance.reset().unwrap();
    }
}

#[test]
fn a_warm_up_request_that_faults_is_named_and_ends_the_instance() {
    let mut instance = handler("hostile")
        .instantiate(Default::default(), Default::default())
        .unwrap();
    let warmup = Warmup::parse(&["/ok", "PUT /panic", "/ok"]).unwrap();
    let err = instance
        .warm_up(&warmup, InputPreference::Region)
        .unwrap_err();
    let ResetError::Warmup { request, fault } = &err else {
        panic!("{err}")
    };
    assert_eq!(request, "PUT /panic");
    assert!(matches!(fault, Fault::Trap { .. }), "{fault:?}");
    assert!(
        err.to_string()
            .contains("warm-up request `PUT /panic` failed")
    );
    assert!(!instance.is_usable());
    assert!(instance.prepare_reset().is_err());
}
