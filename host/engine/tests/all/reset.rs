//! Instances reset to their snapshot between requests: same answers as fresh instances,
//! nothing kept from one request to the next, faults and growth end the instance.

use percore_engine::{
    InputPreference, Instance, NotResettable, ResetError, SnapshotError, check_resettable,
};

use crate::{PATHS, guest_path, handler, language_guest_built};

fn get(path: &str) -> percore_engine::Request<'_> {
    percore_engine::Request {
        method: "GET",
        path_with_query: path,
        headers: &[],
        body: b"",
    }
}

fn request<'a>(path: &'a str, body: &'a [u8]) -> percore_engine::Request<'a> {
    percore_engine::Request {
        method: "POST",
        path_with_query: path,
        headers: &[],
        body,
    }
}

fn prepared(guest: &str) -> Instance {
    let mut instance = handler(guest)
        .instantiate(Default::default(), Default::default())
        .unwrap();
    instance.prepare_reset().unwrap();
    instance
}

fn body(instance: &mut Instance, path: &str, input: InputPreference) -> String {
    let response = instance.handle(&request(path, b""), input).result.unwrap();
    String::from_utf8(response.body).unwrap()
}

#[test]
fn the_static_check_accepts_rust_guests_and_names_what_stops_the_others() {
    for guest in [
        "hello",
        "echo",
        "json-api",
        "greeter",
        "stateful",
        "hostile",
        "hello-unknown",
    ] {
        let bytes = std::fs::read(guest_path(guest)).unwrap();
        assert_eq!(check_resettable(&bytes), Ok(()), "{guest}");
    }
    // The preview1 adapter keeps its own state in globals: the component is given functions
    // that save and put them back.
    let bytes = std::fs::read(guest_path("hello-wasip1")).unwrap();
    assert_eq!(check_resettable(&bytes), Ok(()));
    // A bare module with globals beyond a stack pointer has no component to carry them.
    let module = "(module (global (mut i32) (i32.const 0)) (global (mut i64) (i64.const 0)))";
    let why = check_resettable(module.as_bytes()).unwrap_err();
    assert!(matches!(why, NotResettable::MutableGlobals { .. }), "{why}");
    assert!(why.to_string().contains("mutable globals"), "{why}");
}

#[test]
fn instances_whose_globals_are_put_back_answer_like_fresh_ones() {
    if !percore_rt::pagemap::supported() {
        return;
    }
    // The interpreters of Python and JavaScript keep state in mutable globals (a stack pointer
    // their libraries import, the preview 1 adapter's pointers to state it allocates on first
    // use): restoring memory without them would leave them pointing at state that is gone.
    let guests = ["hello-wasip1", "greeter-python", "greeter-js", "greeter-c"];
    for guest in guests
        .into_iter()
        .filter(|g| *g == "hello-wasip1" || language_guest_built(g))
    {
        let path = "/?name=Ada";
        let fresh = handler(guest)
            .handle_fresh(
                Default::default(),
                Default::default(),
                &get(path),
                InputPreference::Portable,
            )
            .result
            .unwrap();
        for input in PATHS {
            let mut instance = prepared(guest);
            // Each of them holds the preview 1 adapter; Python's and JavaScript's libraries
            // import their main module's stack pointer besides.
            assert!(instance.resets_globals(), "{guest}");
            for round in 0..20 {
                let reused = instance.handle(&get(path), input).result;
                let reused = reused.unwrap_or_else(|f| panic!("{guest}, round {round}: {f}"));
                assert_eq!(reused.status, fresh.status, "{guest}, round {round}");
                assert_eq!(reused.body, fresh.body, "{guest}, round {round}");
                if let Err(why) = instance.reset() {
                    panic!("{guest}: reset after round {round}: {why}");
                }
            }
        }
    }
}

#[test]
fn a_reset_instance_forgets_every_request() {
    if !percore_rt::pagemap::supported() {
        eprintln!("skipped: no PAGEMAP_SCAN");
        return;
    }
    for input in PATHS {
        let mut instance = prepared("stateful");
        for _ in 0..50 {
            assert_eq!(body(&mut instance, "/count", input), "1");
            assert_eq!(body(&mut instance, "/peek", input), "0".repeat(32));
            let stats = instance.reset().unwrap();
            assert!(stats.pages_copied > 0, "{stats:?}");
        }
        assert_eq!(instance.requests(), 100);
    }
    // Without the reset the state stays: the test can fail.
    let mut instance = prepared("stateful");
    assert_eq!(body(&mut instance, "/count", InputPreference::Region), "1");
    assert_eq!(body(&mut instance, "/count", InputPreference::Region), "2");
}

#[test]
fn a_reset_instance_of_another_language_forgets_every_request() {
    if !percore_rt::pagemap::supported() {
        return;
    }
    let config: std::collections::BTreeMap<String, String> =
        [("PROBE_ROLE".to_owned(), "stateful".to_owned())].into();
    for probe in ["probe-python", "probe-js", "probe-c"] {
        if !language_guest_built(probe) {
            continue;
        }
        let mut instance = handler(probe)
            .instantiate(Default::default(), config.clone().into())
            .unwrap();
        instance.prepare_reset().unwrap();
        for round in 0..10 {
            let count = body(&mut instance, "/count", InputPreference::Portable);
            assert_eq!(count, "1", "{probe}, round {round}");
            let peek = body(&mut instance, "/peek", InputPreference::Portable);
            assert_eq!(peek, "0".repeat(32), "{probe}, round {round}");
            instance
                .reset()
                .unwrap_or_else(|why| panic!("{probe}: reset after round {round}: {why}"));
        }
        // Without the reset the state stays: the test can fail.
        assert_eq!(
            body(&mut instance, "/count", InputPreference::Portable),
            "1"
        );
        assert_eq!(
            body(&mut instance, "/count", InputPreference::Portable),
            "2"
        );
    }
}

#[test]
fn reset_instances_answer_like_fresh_ones_for_bodies_of_every_size() {
    if !percore_rt::pagemap::supported() {
        return;
    }
    let mut instance = prepared("echo");
    for i in 0..120usize {
        // Up to ~1 MiB: past the initial region, so the guest enlarges it, and the reset
        // must bring back the old one.
        let payload = vec![(i % 251) as u8; (i * i * 71) % (1 << 20)];
        let input = PATHS[i % 2];
        let fresh = handler("echo").handle_fresh(
            Default::default(),
            Default::default(),
            &request("/x", &payload),
            input,
        );
        let reused = instance.handle(&request("/x", &payload), input);
        assert_eq!(reused.result.unwrap().body, fresh.result.unwrap().body);
        match instance.reset() {
            Ok(_) => {}
            // A large body can make the guest grow its memory: then the instance is replaced.
            Err(why) => {
                assert!(
                    matches!(why, ResetError::Restore(SnapshotError::Grew { .. })),
                    "{why}"
                );
                instance = prepared("echo");
            }
        }
    }
}

#[test]
fn a_fault_or_a_grown_memory_ends_the_instance() {
    if !percore_rt::pagemap::supported() {
        return;
    }
    let mut instance = prepared("hostile");
    assert!(
        instance
            .handle(&request("/panic", b""), InputPreference::Region)
            .result
            .is_err()
    );
    assert!(matches!(instance.reset(), Err(ResetError::Faulted)));

    let mut instance = prepared("hostile");
    let invocation = instance.handle(&request("/big?mb=2", b""), InputPreference::Region);
    assert!(invocation.result.is_ok());
    let why = instance.reset().unwrap_err();
    assert!(
        matches!(why, ResetError::Restore(SnapshotError::Grew { .. })),
        "{why}"
    );
    assert!(why.to_string().contains("grew"), "{why}");
    assert!(!instance.is_usable());
}

#[test]
fn an_instance_without_a_snapshot_cannot_be_reset() {
    let mut instance = handler("hello")
        .instantiate(Default::default(), Default::default())
        .unwrap();
    assert!(matches!(instance.reset(), Err(ResetError::NoSnapshot)));
}
