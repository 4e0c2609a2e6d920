//! Core dumps: off by default; with `--coredump-mb`, a trap leaves a wasm core dump in the state
//! directory, the newest five kept, listed and served by the admin API and the CLI.

use std::time::Duration;

use crate::common::guest;
use crate::{Host, curl, metric};

fn written(host: &Host) -> f64 {
    let text = curl(&format!("{}/metrics", host.admin), "GET", None, &[]).1;
    metric(&text, "percore_coredumps_written_total", &[])
}

#[test]
fn a_trap_leaves_a_core_dump_when_the_deployment_asks() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let host = Host::start(&state, &[]);
    host.cli_ok(&[
        "deploy",
        &guest("hostile"),
        "--name",
        "plain",
        "--route",
        "/plain",
    ]);
    host.cli_ok(&[
        "deploy",
        &guest("hostile"),
        "--name",
        "dumped",
        "--route",
        "/dumped",
        "--coredump-mb",
        "64",
    ]);
    assert_eq!(host.request("GET", "/plain/panic", None).0, 500);
    for _ in 0..7 {
        assert_eq!(host.request("GET", "/dumped/panic", None).0, 500);
    }
    for _ in 0..100 {
        if written(&host) >= 7.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(written(&host), 7.0, "{}", host.log());
    let listed: serde_json::Value =
        serde_json::from_str(&host.cli_ok(&["coredumps", "dumped", "--json"])).unwrap();
    let dumps = listed["coredumps"].as_array().unwrap();
    assert_eq!(dumps.len(), 5, "the newest five are kept: {listed}");
    let plain = host.cli_ok(&["coredumps", "plain"]);
    assert!(plain.contains("no core dumps"), "{plain}");

    // Saved with the CLI, the dump is a wasm core dump: the `core` section, the stack, memory.
    let file = dumps[0]["file"].as_str().unwrap();
    let out = dir.path().join("saved.coredump");
    host.cli_ok(&[
        "coredumps",
        "dumped",
        "--get",
        file,
        "-o",
        out.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(bytes.len() as u64, dumps[0]["bytes"].as_u64().unwrap());
    let mut sections = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        if let wasmparser::Payload::CustomSection(c) = payload.expect("a wasm file") {
            sections.push(c.name().to_owned());
        }
    }
    assert!(
        sections.iter().any(|s| s == "core") && sections.iter().any(|s| s == "corestack"),
        "{sections:?}"
    );

    // A name that is not one of its dumps is refused; removing the deployment removes them.
    let (status, _) = host.admin(
        "GET",
        "/v1/deployments/dumped/coredumps/..%2Fpercore.db",
        None,
        &[],
    );
    assert_eq!(status, 404);
    let missing = host.cli(&["coredumps", "dumped", "--get", "nope.coredump"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("has no core dump"));
    host.cli_ok(&["rm", "dumped"]);
    assert!(!state.join("coredumps").join("dumped").exists());
    host.stop();
}
