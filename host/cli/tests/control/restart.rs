//! Restarts: deployments come back from the state database without compiling, and a SIGKILL
//! in the middle of a deploy leaves the old or the new version.

use std::time::Duration;

use crate::common::guest;
use crate::{Host, InBackground, curl, metric, percore};

#[test]
fn a_restart_restores_every_deployment_without_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let host = Host::start(&state, &[]);
    host.cli_ok(&["deploy", &guest("hello"), "--route", "/hello"]);
    host.cli_ok(&[
        "deploy",
        &guest("greeter"),
        "--route",
        "greet.local/",
        "--set",
        "greeting=Salut",
    ]);
    host.cli_ok(&["deploy", &guest("echo"), "--route", "/echo"]);
    host.cli_ok(&[
        "deploy",
        &guest("echo"),
        "--name",
        "echo2",
        "--route",
        "/echo2",
    ]);
    host.cli_ok(&["rm", "echo2"]);
    let (_, metrics) = host.admin("GET", "/metrics", None, &[]);
    let metrics = metrics.as_str().unwrap().to_owned();
    // echo2 reused echo's artifact: three compilations for four deploys.
    assert_eq!(metric(&metrics, "percore_compilations_total", &[]), 3.0);
    assert_eq!(
        metric(&metrics, "percore_compile_cache_hits_total", &[]),
        1.0
    );
    let before = host.ls();
    host.stop();

    let host = Host::start(&state, &[]);
    assert_eq!(host.ls(), before);
    assert_eq!(host.request("GET", "/hello", None).0, 200);
    assert_eq!(
        host.request("POST", "/echo/x", Some("back")),
        (200, "back".into())
    );
    let (status, body) = curl(
        &format!("http://{}/", host.addr),
        "GET",
        None,
        &["Host: greet.local"],
    );
    assert_eq!(status, 200);
    assert!(body.contains("Salut"), "{body}");
    let (_, metrics) = host.admin("GET", "/metrics", None, &[]);
    assert_eq!(
        metric(metrics.as_str().unwrap(), "percore_compilations_total", &[]),
        0.0,
        "a restart must not compile"
    );
    host.stop();
}

#[test]
fn sigkill_during_a_deploy_leaves_the_old_or_the_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut host = Host::start(&state, &[]);
    host.cli_ok(&["deploy", &guest("hello"), "--name", "app", "--route", "/"]);
    let guests = [guest("hello"), guest("echo")];
    let mut outcomes = Vec::new();
    for (round, delay_ms) in [0u64, 2, 5, 10, 20, 40, 80, 160].into_iter().enumerate() {
        let next = &guests[(round + 1) % 2];
        // A deploy in flight (upload, validation, compilation, commit, apply), then SIGKILL.
        let deploy = percore()
            .args(["deploy", next, "--name", "app", "--route", "/"])
            .env("PERCORE_ADMIN", &host.admin)
            .output_in_background();
        std::thread::sleep(Duration::from_millis(delay_ms));
        host.signal("-KILL");
        let _ = deploy.wait();
        host.kill();
        host = Host::start(&state, &[]);
        let (status, body) = host.request("POST", "/probe", Some("ping"));
        assert_eq!(status, 200, "round {round}: {body}\n{}", host.log());
        let version = match body.as_str() {
            "Hello from percore!\n" => "hello",
            "ping" => "echo",
            other => panic!("round {round}: neither version answered: {other:?}"),
        };
        outcomes.push(version);
        // Make the next round's deploy a change again.
        if version != ["hello", "echo"][(round + 1) % 2] {
            host.cli_ok(&["deploy", next, "--name", "app", "--route", "/"]);
        }
    }
    eprintln!("versions served after each SIGKILL: {outcomes:?}");
    host.stop();
}
