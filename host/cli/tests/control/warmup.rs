//! Warm-up requests through the admin API: each new instance runs them before its snapshot,
//! `ls` shows them, malformed ones are refused by name, and a restart keeps them.

use serde_json::Value;

use crate::Host;
use crate::common::guest;

/// `warmup` and `instances` of deployment `name`, as `percore ls --json` shows them.
fn shown(host: &Host, name: &str) -> (Value, String) {
    let out: Value = serde_json::from_str(&host.cli_ok(&["ls", "--json"])).unwrap();
    let d = out["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no deployment {name}: {out}"))
        .clone();
    (
        d["warmup"].clone(),
        d["instances"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn a_deployment_with_a_warm_up_serves_every_request_from_the_warmed_state() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let host = Host::start(&state, &[]);
    let stateful = guest("stateful");
    host.cli_ok(&[
        "deploy",
        &stateful,
        "--name",
        "warm",
        "--route",
        "/warm",
        "--warmup",
        "/count",
        "--warmup",
        "POST /count",
    ]);
    host.cli_ok(&["deploy", &stateful, "--name", "cold", "--route", "/cold"]);
    let cold = shown(&host, "cold").1;
    if cold != "reset" {
        eprintln!("skipped: instances are not reset on this machine ({cold})");
        return;
    }
    for _ in 0..6 {
        // Two warm-up requests counted to 2 before the snapshot; each request sees 3.
        assert_eq!(host.request("GET", "/warm/count", None), (200, "3".into()));
        assert_eq!(host.request("GET", "/cold/count", None), (200, "1".into()));
    }
    let (warmup, instances) = shown(&host, "warm");
    assert_eq!(warmup, serde_json::json!(["GET /count", "POST /count"]));
    assert_eq!(instances, "reset (after 2 warm-up requests)");

    for (bad, says) in [
        ("count", "must start with `/`"),
        ("GET /a extra", "is not `PATH` or `METHOD PATH`"),
        ("G(T /", "the method is not an HTTP token"),
    ] {
        let out = host.cli(&[
            "deploy", &stateful, "--name", "bad", "--route", "/bad", "--warmup", bad,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(says),
            "{bad}: {stderr}"
        );
    }
    assert!(host.ls().iter().all(|(name, _)| name != "bad"));
    // A command's instances are never reset: there is nothing for a warm-up to do.
    let out = host.cli(&[
        "deploy",
        &guest("upper-cgi"),
        "--name",
        "cgi",
        "--route",
        "/cgi",
        "--warmup",
        "/",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("only edge and wasi-http guests take one"),
        "{stderr}"
    );

    // A warm-up that faults: the host says which request, and serves fresh instances.
    host.cli_ok(&[
        "deploy",
        &guest("hostile"),
        "--name",
        "hostile",
        "--route",
        "/hostile",
        "--warmup",
        "/ok",
        "--warmup",
        "/panic",
    ]);
    for _ in 0..4 {
        assert_eq!(host.request("GET", "/hostile/ok", None), (200, "ok".into()));
    }
    let log = host.log();
    assert!(
        log.contains("warm-up request `GET /panic` failed") && log.contains("serving fresh"),
        "{log}"
    );
    host.stop();

    let host = Host::start(&state, &[]);
    assert_eq!(host.request("GET", "/warm/count", None), (200, "3".into()));
    assert_eq!(shown(&host, "warm").1, "reset (after 2 warm-up requests)");
    host.stop();
}

#[test]
fn kept_instances_run_no_warm_up() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(&dir.path().join("state"), &["--instances", "keep"]);
    host.cli_ok(&[
        "deploy",
        &guest("stateful"),
        "--name",
        "kept",
        "--route",
        "/kept",
        "--warmup",
        "/count",
    ]);
    // One instance per core keeps counting from 0: no warm-up request ran on it.
    let mut counts: Vec<u64> = (0..4)
        .map(|_| host.request("GET", "/kept/count", None).1.parse().unwrap())
        .collect();
    counts.sort();
    assert_eq!(counts[0], 1, "{counts:?}");
    host.stop();
}
