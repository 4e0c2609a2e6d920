use std::path::PathBuf;

use percore_engine::EngineConfig;

use super::*;
use crate::intake::{Intake, IntakeSettings};
use crate::link::{Command, CoreLink};
use crate::router::{DEFAULT_MAX_INSTANCES_PER_CORE, DeploymentSpec, RouteSpec};

/// Where `cargo build-guests` puts components (the README's test command builds them
/// before the tests run).
fn guest(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/guests")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo build-guests`",
        path.display()
    );
    path
}

fn spec(name: &str, component: PathBuf) -> DeploymentSpec {
    DeploymentSpec {
        name: name.into(),
        component,
        routes: vec![RouteSpec {
            host: None,
            path_prefix: "/".into(),
        }],
        limits: Default::default(),
        config: Default::default(),
        max_instances_per_core: DEFAULT_MAX_INSTANCES_PER_CORE,
        kind: None,
        warmup: Default::default(),
    }
}

struct Fixture {
    dispatch: Dispatch,
    control: CoreLink,
    config: Arc<ServeConfig>,
    _artifacts: tempfile::TempDir,
}

/// A dispatcher serving `echo` at `/`, with no socket and no shard thread.
fn fixture() -> Fixture {
    let artifacts = tempfile::tempdir().unwrap();
    let mut config = ServeConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        vec![spec("app", guest("echo"))],
    );
    config.artifacts = artifacts.path().to_owned();
    let ready = crate::prepare::artifacts(&config).unwrap();
    let config = Arc::new(config);
    let (control, link) = crate::link::pair(0, 1024).unwrap();
    let engine = Engine::without_ticker(EngineConfig::default()).unwrap();
    let dispatch = Dispatch::new(0, engine, config.clone(), &ready, link).unwrap();
    Fixture {
        dispatch,
        control,
        config,
        _artifacts: artifacts,
    }
}

fn settings(config: &ServeConfig) -> IntakeSettings<'_> {
    IntakeSettings {
        limits: &config.http,
        peer: None,
        conn: 0,
        draining: false,
        request_timeout: config.request_timeout,
        now: Instant::now(),
    }
}

/// The body of the last response in `out` (responses here carry a `content-length`).
fn last_body(out: &[u8]) -> &[u8] {
    let text = String::from_utf8_lossy(out);
    let at = text.rfind("HTTP/1.1 ").unwrap();
    let head_end = at + text[at..].find("\r\n\r\n").unwrap() + 4;
    &out[head_end..]
}

fn large_request(len: usize) -> (Vec<u8>, Vec<u8>) {
    let body: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let mut wire =
        format!("POST /up HTTP/1.1\r\nhost: x\r\ncontent-length: {len}\r\n\r\n").into_bytes();
    wire.extend_from_slice(&body);
    (wire, body)
}

#[test]
fn a_large_body_in_pieces_goes_straight_into_guest_memory() {
    let mut f = fixture();
    let (wire, body) = large_request(300_000);
    let mut intake = Intake::default();
    let mut out = Vec::new();
    let config = f.config.clone();
    for piece in wire.chunks(32 << 10) {
        assert!(intake.feed(piece, &mut out, &mut f.dispatch, &settings(&config)));
        if out.is_empty() {
            assert_eq!(f.dispatch.streams_in_flight(), 1);
        }
    }
    assert_eq!(f.dispatch.streams_in_flight(), 0, "the permit is back");
    let counters = &f.dispatch.meter.counters;
    assert_eq!(counters.bodies_streamed, 1);
    assert_eq!(
        counters.request_copies, 1,
        "one host copy: into guest memory"
    );
    assert!(
        out.starts_with(b"HTTP/1.1 200 "),
        "{}",
        String::from_utf8_lossy(&out[..100])
    );
    assert_eq!(last_body(&out), &body[..]);
}

/// Send a body of `len` bytes to `echo`; after the first `cut` bytes of the request, deploy
/// `app` again as `v2`; send the rest. Returns the output and the body sent.
fn swap_mid_stream(v2: &str, len: usize, cut: usize) -> (Vec<u8>, Vec<u8>) {
    let mut f = fixture();
    let (wire, body) = large_request(len);
    let (first, rest) = wire.split_at(cut);
    let mut intake = Intake::default();
    let mut out = Vec::new();
    let config = f.config.clone();
    assert!(intake.feed(first, &mut out, &mut f.dispatch, &settings(&config)));
    assert_eq!(
        f.dispatch.meter.counters.bodies_streamed, 1,
        "received into `echo`"
    );
    assert_eq!(f.dispatch.streams_in_flight(), 1);
    let mut v2 = crate::prepare::artifacts(&ServeConfig {
        deployments: vec![spec("app", guest(v2))],
        ..(*config).clone()
    })
    .unwrap();
    let ready = Box::new(v2.remove(0));
    let deploy = Command::Deploy { seq: 1, ready };
    assert!(f.control.commands.push(deploy).is_ok());
    f.dispatch.apply_commands();
    assert!(intake.feed(rest, &mut out, &mut f.dispatch, &settings(&config)));
    assert_eq!(f.dispatch.streams_in_flight(), 0, "the permit is back");
    (out, body)
}

#[test]
fn a_deployment_swapped_mid_stream_runs_the_request_on_the_new_version() {
    // Version 2 of `app` is `hello`, which ignores the body.
    let (out, _) = swap_mid_stream("hello", 200_000, 40_000);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(
        text.contains("Hello from percore"),
        "the new version answered: {text}"
    );
}

#[test]
fn a_swap_to_a_new_load_copies_the_streamed_body_out_whole() {
    // Version 2 is `echo` again (a new load): the body received into version 1's instance
    // is copied back out and run on version 2.
    let (out, body) = swap_mid_stream("echo", 150_000, 70_000);
    assert!(out.starts_with(b"HTTP/1.1 200 "));
    assert_eq!(last_body(&out), &body[..], "byte-exact after the copy back");
}

#[test]
fn pipelined_requests_to_a_guest_are_answered_in_order() {
    let mut f = fixture();
    let config = f.config.clone();
    let mut intake = Intake::default();
    let mut out = Vec::new();
    let wire = b"GET /1 HTTP/1.1\r\nhost: t\r\n\r\nPOST /2 HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\n\r\nhi";
    assert!(intake.feed(wire, &mut out, &mut f.dispatch, &settings(&config)));
    let text = String::from_utf8_lossy(&out);
    let one = text.find("x-echo-path: /1\r\n").unwrap();
    let two = text.find("x-echo-path: /2\r\n").unwrap();
    assert!(one < two, "{text}");
    assert!(text.ends_with("hi"), "{text}");
    assert_eq!(f.dispatch.meter.counters.status_2xx, 2);
}
