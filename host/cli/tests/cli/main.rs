//! `percore invoke` and `percore compile` as a user runs them.

use std::process::{Command, Output};

#[path = "../common/mod.rs"]
mod common;
use common::guest;

mod templates;

fn percore(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_percore"))
        .args(args)
        .output()
        .expect("running percore")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn invoke_prints_the_response() {
    let out = percore(&["invoke", &guest("hello")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "HTTP 200\ncontent-type: text/plain; charset=utf-8\n\nHello from percore!\n"
    );
    let out = percore(&["invoke", &guest("hello"), "--body-only", "--portable"]);
    assert_eq!(stdout(&out), "Hello from percore!\n");
}

#[test]
fn invoke_sends_method_path_headers_and_body() {
    let out = percore(&[
        "invoke",
        &guest("echo"),
        "-X",
        "POST",
        "--path",
        "/p?q=1",
        "-H",
        "X-A: 1",
        "--body",
        "payload",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["status"], 200);
    assert_eq!(json["body"], "payload");
    assert_eq!(json["stats"]["input"], "region");
    let headers = json["headers"].as_array().unwrap();
    assert!(headers.contains(&serde_json::json!(["x-echo-method", "POST"])));
    assert!(headers.contains(&serde_json::json!(["x-echo-path", "/p?q=1"])));
    assert!(headers.contains(&serde_json::json!(["x-echo-h-x-a", "1"])));
}

#[test]
fn invoke_passes_configuration_values() {
    let out = percore(&[
        "invoke",
        &guest("greeter"),
        "--set",
        "greeting=Hi",
        "--body-only",
    ]);
    assert_eq!(stdout(&out), "Hi, world!\n");
}

#[test]
fn invoke_refuses_what_is_not_a_component() {
    let out = percore(&["invoke", &guest("not-a-component")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot tell what kind of guest")
            && stderr(&out).contains("env.memory"),
        "{}",
        stderr(&out)
    );
    let out = percore(&["invoke", &guest("unknown-import")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("acme:secret/vault@1.0.0"),
        "{}",
        stderr(&out)
    );
    let out = percore(&["invoke", "/definitely/not/here.wasm"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("No such file"), "{}", stderr(&out));
}

#[test]
fn invoke_reports_guest_faults_with_exit_status_3() {
    let out = percore(&[
        "invoke",
        &guest("hostile"),
        "--path",
        "/loop",
        "--cpu-ms",
        "20",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("CPU budget"), "{}", stderr(&out));
    let out = percore(&["invoke", &guest("hostile"), "--path", "/panic", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["fault"]["kind"], "trap");
    assert_eq!(json["fault"]["status"], 500);
}

#[test]
fn compile_writes_an_artifact_and_nothing_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = dir.path().join("hello.cwasm");
    let out = percore(&["compile", &guest("hello"), "-o", artifact.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = percore(&["invoke", artifact.to_str().unwrap(), "--body-only"]);
    assert_eq!(stdout(&out), "Hello from percore!\n");

    let bad = dir.path().join("bad.cwasm");
    let out = percore(&[
        "compile",
        &guest("wrong-world"),
        "-o",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("edge:handler/guest@0.2.0"),
        "{}",
        stderr(&out)
    );
    assert!(!bad.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no stray files"
    );
}

#[test]
fn invoke_runs_every_kind_of_guest() {
    let out = percore(&["invoke", &guest("sum"), "--args", "5", "2"]);
    assert_eq!(stdout(&out), "7\n", "{}", stderr(&out));
    let out = percore(&["invoke", &guest("sum"), "--args", "-5", "2"]);
    assert_eq!(stdout(&out), "-3\n", "{}", stderr(&out));
    let out = percore(&["invoke", &guest("bare-probe")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("name the function"),
        "{}",
        stderr(&out)
    );
    let out = percore(&[
        "invoke",
        &guest("bare-probe"),
        "--invoke",
        "spin",
        "--cpu-ms",
        "20",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "a loop ends in the typed timeout"
    );
    let out = percore(&[
        "invoke",
        &guest("upper-cgi"),
        "-X",
        "POST",
        "--body",
        "quiet",
        "--body-only",
    ]);
    assert_eq!(stdout(&out), "QUIET", "{}", stderr(&out));
    let out = percore(&[
        "invoke",
        &guest("wasi-http-json"),
        "--path",
        "/a",
        "--body-only",
    ]);
    assert_eq!(
        stdout(&out),
        "{\"method\":\"GET\",\"path\":\"/a\",\"body_bytes\":0}\n",
        "{}",
        stderr(&out)
    );
    let out = percore(&["invoke", &guest("hello"), "--args", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("for bare modules"),
        "{}",
        stderr(&out)
    );
}
