//! The cores seen through the admin API's metrics: artifacts unmapped and mapped again, a large
//! body streamed into guest memory, each flow steered to the core that received it.

use std::process::Command;
use std::time::Duration;

use crate::common::guest;
use crate::{Host, metric};

#[test]
fn least_recently_used_components_are_unmapped_and_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(&dir.path().join("state"), &["--max-loaded-per-core", "2"]);
    let names: Vec<String> = (0..6).map(|i| format!("d{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let guest_name = if i % 2 == 0 { "hello" } else { "echo" };
        host.cli_ok(&[
            "deploy",
            &guest(guest_name),
            "--name",
            name,
            "--route",
            &format!("/{name}"),
        ]);
    }
    // Two rounds over six deployments with room for two per core: every request after the
    // first round maps its artifact again, and every answer is still right.
    for _ in 0..2 {
        for (i, name) in names.iter().enumerate() {
            let (status, body) = host.request("POST", &format!("/{name}/x"), Some("b"));
            assert_eq!(status, 200);
            let want = if i % 2 == 0 {
                "Hello from percore!\n"
            } else {
                "b"
            };
            assert_eq!(body, want, "{name}");
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let (_, metrics) = host.admin("GET", "/metrics", None, &[]);
    let text = metrics.as_str().unwrap();
    assert!(
        metric(text, "percore_core_artifacts_evicted_total", &[]) > 0.0,
        "{text}"
    );
    assert!(metric(text, "percore_core_artifacts_loaded_total", &[]) > 0.0);
    host.stop();
}

#[test]
fn a_large_body_goes_straight_into_guest_memory_with_one_copy() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(&dir.path().join("state"), &[]);
    host.cli_ok(&["deploy", &guest("echo"), "--route", "/"]);
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let file = dir.path().join("body.bin");
    std::fs::write(&file, &body).unwrap();
    let out = Command::new("curl")
        .args(["-s", "-H", "Expect:", "--data-binary"])
        .arg(format!("@{}", file.display()))
        .arg(format!("http://{}/up", host.addr))
        .output()
        .unwrap();
    assert_eq!(out.stdout.len(), body.len());
    assert!(out.stdout == body, "the echoed body differs");
    std::thread::sleep(Duration::from_millis(300));
    let (_, metrics) = host.admin("GET", "/metrics", None, &[]);
    let text = metrics.as_str().unwrap();
    assert_eq!(
        metric(text, "percore_core_bodies_streamed_total", &[]),
        1.0,
        "{text}"
    );
    // One host copy of the request's bytes: from the receive buffers into the region.
    assert_eq!(metric(text, "percore_core_request_copies_total", &[]), 1.0);
    host.stop();
}

#[test]
fn the_cbpf_program_steers_each_flow_to_the_core_that_received_it() {
    if std::thread::available_parallelism().unwrap().get() < 2 {
        eprintln!("skipped: needs two CPUs");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(&dir.path().join("state"), &[]);
    host.cli_ok(&["deploy", &guest("hello"), "--route", "/"]);
    // On loopback the SYN is processed on the sending CPU, so a client pinned to CPU n is
    // accepted by core n's socket: the steering program, seen from outside.
    let url = format!("http://{}/", host.addr);
    for cpu in ["0", "1"] {
        for _ in 0..10 {
            let out = Command::new("taskset")
                .args([
                    "-c",
                    cpu,
                    "curl",
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    &url,
                ])
                .output()
                .unwrap();
            assert_eq!(out.stdout, b"200");
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let (_, metrics) = host.admin("GET", "/metrics", None, &[]);
    let text = metrics.as_str().unwrap();
    for core in ["0", "1"] {
        assert_eq!(
            metric(text, "percore_core_connections_total", &[("core", core)]),
            10.0,
            "core {core}:\n{text}"
        );
    }
    host.stop();
}
