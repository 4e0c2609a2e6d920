//! `POST /invoke/{deployment}` and Argo's `template.execute` on the admin port: synchronous calls
//! for workflow engines, through the data plane like any request.

use std::path::Path;

use serde_json::Value;

use crate::common::guest;
use crate::{Host, curl};

fn host(dir: &Path) -> Host {
    let host = Host::start(&dir.join("state"), &["--admin-token", "t0ken"]);
    let token = ["--token", "t0ken"];
    host.cli_ok(&[&["deploy", &guest("echo"), "--route", "/echo"][..], &token].concat());
    host.cli_ok(
        &[
            &[
                "deploy",
                &guest("hostile"),
                "--route",
                "/hostile",
                "--cpu-ms",
                "200",
            ][..],
            &token,
        ]
        .concat(),
    );
    host
}

const AUTH: &str = "Authorization: Bearer t0ken";

#[test]
fn invoke_runs_a_request_through_a_deployment_with_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path());
    let url = format!("{}/invoke/echo/some/path?x=1", host.admin);
    let (status, body) = curl(
        &url,
        "POST",
        Some(r#"{"n": 1}"#),
        &[AUTH, "Content-Type: application/json"],
    );
    assert_eq!((status, body.as_str()), (200, r#"{"n": 1}"#));
    // Without the token: refused before anything runs.
    assert_eq!(curl(&url, "POST", Some("x"), &[]).0, 401);
    let (status, body) = curl(
        &format!("{}/invoke/nope", host.admin),
        "POST",
        None,
        &[AUTH],
    );
    assert_eq!(status, 404);
    assert!(body.contains("no deployment `nope`"), "{body}");
    // The call is metered like any request to the deployment.
    let (_, stats) = host.admin("GET", "/v1/stats/echo", None, &[AUTH]);
    assert_eq!(stats["invocations"], 1, "{stats}");
    // A guest's fault comes back typed.
    let out = std::process::Command::new("curl")
        .args(["-s", "-i", "-X", "POST", "-H", AUTH])
        .arg(format!("{}/invoke/hostile/panic", host.admin))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(text.starts_with("http/1.1 500"), "{text}");
    assert!(text.contains("x-percore-fault: trap"), "{text}");
}

#[test]
fn an_idempotency_key_answers_a_retry_with_the_first_response() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path());
    let url = format!("{}/invoke/hostile/random", host.admin);
    let first = curl(&url, "POST", None, &[AUTH, "Idempotency-Key: job-17"]);
    assert_eq!(first.0, 200);
    let retried = curl(&url, "POST", None, &[AUTH, "Idempotency-Key: job-17"]);
    assert_eq!(
        retried, first,
        "a retry with the same key ran the guest again"
    );
    // Another key runs again (and a random answer differs with overwhelming odds).
    let other = curl(&url, "POST", None, &[AUTH, "Idempotency-Key: job-18"]);
    assert_eq!(other.0, 200);
    assert_ne!(other.1, first.1);
    let (_, stats) = host.admin("GET", "/v1/stats/hostile", None, &[AUTH]);
    assert_eq!(stats["invocations"], 2, "the replay ran nothing: {stats}");
}

#[test]
fn the_callers_deadline_bounds_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path());
    // The guest loops until its own CPU budget (200 ms) ends it; the caller waits 50 ms.
    let (status, body) = curl(
        &format!("{}/invoke/hostile/loop?deadline_ms=50", host.admin),
        "POST",
        None,
        &[AUTH],
    );
    assert_eq!(status, 504);
    assert!(body.contains("deadline of 50 ms"), "{body}");
    // Waiting longer gives the guest's own typed timeout.
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-i",
            "-X",
            "POST",
            "-H",
            AUTH,
            "-H",
            "X-Percore-Deadline-Ms: 5000",
        ])
        .arg(format!("{}/invoke/hostile/loop", host.admin))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        text.starts_with("http/1.1 504") && text.contains("x-percore-fault: timeout"),
        "{text}"
    );
    let (status, _) = curl(
        &format!("{}/invoke/echo?deadline_ms=soon", host.admin),
        "POST",
        None,
        &[AUTH],
    );
    assert_eq!(status, 400);
}

#[test]
fn argo_template_execute_runs_percore_templates_and_leaves_others() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path());
    let url = format!("{}/api/v1/template.execute", host.admin);
    let call = |template: &str| {
        let body = format!(
            r#"{{"workflow":{{"metadata":{{"name":"wf","namespace":"apps","uid":"u"}}}},"template":{template}}}"#
        );
        let (status, text) = curl(
            &url,
            "POST",
            Some(&body),
            &[AUTH, "Content-Type: application/json"],
        );
        assert_eq!(status, 200, "{text}");
        serde_json::from_str::<Value>(&text).unwrap()
    };
    let ok = call(
        r#"{"name":"step","plugin":{"percore":{"app":"echo","method":"POST","path":"/x","body":"from argo"}}}"#,
    );
    assert_eq!(ok["node"]["phase"], "Succeeded", "{ok}");
    assert_eq!(ok["node"]["outputs"]["result"], "from argo");
    assert_eq!(ok["node"]["outputs"]["parameters"][0]["value"], "200");
    let failed = call(r#"{"name":"step","plugin":{"percore":{"app":"hostile","path":"/panic"}}}"#);
    assert_eq!(failed["node"]["phase"], "Failed");
    assert!(
        failed["node"]["message"]
            .as_str()
            .unwrap()
            .contains("HTTP 500 (trap)"),
        "{failed}"
    );
    // Another plugin's template: an empty answer, as the protocol asks.
    assert_eq!(
        call(r#"{"name":"step","plugin":{"slack":{"text":"hi"}}}"#),
        serde_json::json!({})
    );
    assert_eq!(curl(&url, "POST", Some("{}"), &[]).0, 401);
}

#[test]
fn the_argo_plugin_sidecar_checks_argos_token_and_passes_calls_on() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path());
    let token_file = dir.path().join("argo-token");
    std::fs::write(&token_file, "argo-s3cret\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut sidecar = crate::percore()
        .args(["argo-plugin", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--upstream", &host.admin, "--argo-token-file"])
        .arg(&token_file)
        .env("PERCORE_ADMIN_TOKEN", "t0ken")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(sidecar.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.contains("listening"), "{line}");
    let url = format!("http://127.0.0.1:{port}/api/v1/template.execute");
    let body = r#"{"template":{"plugin":{"percore":{"app":"echo","method":"POST","body":"via the sidecar"}}}}"#;
    let (status, text) = curl(
        &url,
        "POST",
        Some(body),
        &["Authorization: Bearer argo-s3cret"],
    );
    assert_eq!(status, 200, "{text}");
    let node: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(node["node"]["outputs"]["result"], "via the sidecar");
    assert_eq!(
        curl(&url, "POST", Some(body), &["Authorization: Bearer guess"]).0,
        403
    );
    let other = format!("http://127.0.0.1:{port}/api/v1/other.method");
    assert_eq!(
        curl(
            &other,
            "POST",
            Some("{}"),
            &["Authorization: Bearer argo-s3cret"]
        )
        .0,
        404
    );
    // The host goes away: 503, which Argo's agent retries.
    host.kill();
    let (status, text) = curl(
        &url,
        "POST",
        Some(body),
        &["Authorization: Bearer argo-s3cret"],
    );
    assert_eq!(status, 503, "{text}");
    let _ = sidecar.kill();
    let _ = sidecar.wait();
}
