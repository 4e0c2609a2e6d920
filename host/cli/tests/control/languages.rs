//! The guests in other languages (`examples-guests/greeter-{python,js,c,go}`, built by `cargo
//! build-guests` with the tools of `scripts/setup-language-toolchains.sh`), deployed side by
//! side on one host: each greets with its configuration, echoes a body far over 1 MB byte for
//! byte, answers 404, and fails with a typed fault whose log carries the language's own message.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::{Host, curl};

/// Language, guest, the fault its deliberate failure is, and what its own runtime logs.
const GREETERS: [(&str, &str, &str, &str); 4] = [
    (
        "python",
        "greeter-python",
        "trap",
        "ValueError: deliberate failure, as asked",
    ),
    ("js", "greeter-js", "trap", "deliberate failure, as asked"),
    (
        "c",
        "greeter-c",
        "trap",
        "greeter-c: deliberate failure, as asked",
    ),
    (
        "go",
        "greeter-go",
        "exit",
        "panic: deliberate failure, as asked",
    ),
];

fn built(name: &str) -> Option<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/guests")
        .join(format!("{name}.wasm"));
    path.exists().then(|| path.to_string_lossy().into_owned())
}

#[test]
fn guests_in_four_languages_greet_echo_and_fail_with_typed_faults() {
    let greeters: Vec<_> = GREETERS
        .iter()
        .filter_map(|g| built(g.1).map(|path| (g, path)))
        .collect();
    if greeters.len() < GREETERS.len() {
        assert!(
            std::env::var("PERCORE_REQUIRE_LANGUAGES").as_deref() != Ok("1"),
            "a guest in another language is missing: run `bash \
             scripts/setup-language-toolchains.sh` and `cargo build-guests --require-languages`"
        );
        eprintln!("skipped: the guests in other languages are not built");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(&dir.path().join("state"), &[]);
    for ((language, name, _, _), path) in &greeters {
        let route = format!("{language}.test/");
        host.cli_ok(&[
            "deploy",
            path,
            "--name",
            name,
            "--route",
            &route,
            "--set",
            "greeting=Hi",
        ]);
    }
    let big: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let body_file = dir.path().join("body.bin");
    std::fs::write(&body_file, &big).unwrap();
    for ((language, name, fault, _), _) in &greeters {
        let host_header = format!("Host: {language}.test");
        let url = |path: &str| format!("http://{}{path}", host.addr);

        let (status, text) = curl(
            &url("/?name=Ada"),
            "GET",
            None,
            &[&host_header, "User-Agent: percore-test"],
        );
        assert_eq!(status, 200, "{name}: {text}");
        let doc: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}: {text}"));
        assert_eq!(doc["message"], "Hi, Ada!", "{name}");
        assert_eq!(doc["language"], *language, "{name}");
        assert_eq!(doc["user_agent"], "percore-test", "{name}");

        // 3 MiB of every byte value, both ways.
        let echoed = dir.path().join(format!("{name}.echo"));
        let out = Command::new("curl")
            .args(["-s", "-o"])
            .arg(&echoed)
            .args(["-w", "%{http_code} %{content_type}", "-H", &host_header])
            .args([
                "-H",
                "Content-Type: application/x-percore-test",
                "--data-binary",
            ])
            .arg(format!("@{}", body_file.display()))
            .arg(url("/echo"))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert_eq!(said, "200 application/x-percore-test", "{name}");
        assert!(
            std::fs::read(&echoed).unwrap() == big,
            "{name}: the echo differs"
        );

        let (status, text) = curl(&url("/nope"), "GET", None, &[&host_header]);
        assert_eq!(status, 404, "{name}: {text}");

        let out = Command::new("curl")
            .args(["-s", "-D", "-", "-H", &host_header])
            .arg(url("/fail"))
            .output()
            .unwrap();
        let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
        assert!(head.starts_with("http/1.1 500"), "{name}: {head}");
        assert!(
            head.contains(&format!("x-percore-fault: {fault}")),
            "{name}: {head}"
        );
    }
    // The input path each took: Python and JavaScript offer no region (capacity 0) and are
    // called through `handle`; C reads its requests in its region.
    for (name, input) in [
        ("greeter-python", "portable"),
        ("greeter-js", "portable"),
        ("greeter-c", "region"),
    ] {
        let Some(path) = built(name) else { continue };
        let out = crate::percore()
            .args(["invoke", &path, "--json", "--path", "/?name=Ada"])
            .output()
            .unwrap();
        let said: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{name}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(said["stats"]["input"], input, "{name}: {said}");
    }
    let log = host.log();
    for ((_, name, _, message), _) in &greeters {
        assert!(
            log.contains(message),
            "{name}'s own failure message is not in the log:\n{log}"
        );
    }
    host.stop();
}
