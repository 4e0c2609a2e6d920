//! What the admin API refuses, and how it says so: bad requests, missing tokens, oversized
//! uploads, and changes to the deployments of the host's configuration.

use std::process::Command;

use serde_json::Value;

use crate::Host;
use crate::common::guest;

#[test]
fn bad_admin_input_gets_a_clear_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let host = Host::start(
        &state,
        &["--admin-token", "s3cret", "--admin-max-upload-mb", "1"],
    );
    let auth = "Authorization: Bearer s3cret";
    let hello = guest("hello");
    let deploy = |name: &str, body: &str| {
        host.admin(
            "PUT",
            &format!("/v1/deployments/{name}"),
            Some(body),
            &[auth],
        )
    };
    let good = format!(r#"{{"component": {{"path": "{hello}"}}, "routes": [{{"path": "/"}}]}}"#);
    assert_eq!(deploy("app", &good).0, 201);

    let check = |(status, body): (u16, Value), want: u16, says: &str| {
        assert_eq!(status, want, "{says}: {body}");
        let message = body["error"].as_str().unwrap_or_default().to_owned();
        assert!(
            message.contains(says),
            "{message:?} should mention {says:?}"
        );
    };
    // Token.
    check(
        host.admin("GET", "/v1/deployments", None, &[]),
        401,
        "bearer token",
    );
    check(
        host.admin(
            "GET",
            "/v1/deployments",
            None,
            &["Authorization: Bearer nope"],
        ),
        401,
        "bearer token",
    );
    // Malformed JSON, unknown fields, bad names, bad routes.
    check(deploy("x", "{not json"), 400, "bad deployment request");
    check(
        deploy("x", &good.replace("\"routes\"", "\"routez\"")),
        400,
        "unknown field `routez`",
    );
    check(deploy("BadName", &good), 400, "bad deployment name");
    check(
        deploy("x", &good.replace("\"/\"", "\"nope\"")),
        400,
        "must start with '/'",
    );
    // Garbage bytes: as an upload and as a file.
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm\x0d\0\x01\0garbage").unwrap();
    let garbage_body = format!(r#"{{"component": {{"path": "{}"}}}}"#, garbage.display());
    check(deploy("x", &garbage_body), 400, "refused");
    check(
        host.admin(
            "POST",
            "/v1/components",
            Some("definitely not wasm"),
            &[auth],
        ),
        400,
        "not WebAssembly",
    );
    // A route another deployment serves.
    check(
        deploy("other", &good),
        409,
        "already served by deployment `app`",
    );
    // An upload over the limit (1 MiB here).
    let big = dir.path().join("big.wasm");
    let mut bytes = b"\0asm".to_vec();
    bytes.resize(2 << 20, 0);
    std::fs::write(&big, &bytes).unwrap();
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-H", auth, "--data-binary"])
        .arg(format!("@{}", big.display()))
        .arg(format!("{}/v1/components", host.admin))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.trim_end().ends_with("413"), "{text}");
    // Unknown deployment, unknown endpoint, wrong method.
    check(
        host.admin("DELETE", "/v1/deployments/nope", None, &[auth]),
        404,
        "no deployment",
    );
    check(
        host.admin("GET", "/v2/x", None, &[auth]),
        404,
        "no such endpoint",
    );
    check(
        host.admin("POST", "/v1/deployments", None, &[auth]),
        405,
        "not allowed",
    );

    // Through all that, the host kept serving what it served before.
    assert_eq!(
        host.request("GET", "/", None),
        (200, "Hello from percore!\n".into())
    );
    let (status, list) = host.admin("GET", "/v1/deployments", None, &[auth]);
    assert_eq!(status, 200);
    assert_eq!(list["deployments"].as_array().unwrap().len(), 1);
    host.stop();
}

#[test]
fn a_deployment_of_the_configuration_cannot_be_changed_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(
        &dir.path().join("state"),
        &[&format!("fixed={}", guest("hello"))],
    );
    assert_eq!(host.request("GET", "/fixed", None).0, 200);
    let out = host.cli(&["rm", "fixed"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("defined by the host's configuration"));
    let out = host.cli(&["deploy", &guest("echo"), "--name", "x", "--route", "/"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already served by deployment `fixed`"));
    host.stop();
}
