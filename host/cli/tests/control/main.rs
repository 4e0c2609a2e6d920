//! End-to-end tests of the control plane: a real host on loopback with a state directory, the
//! `percore` CLI and curl against its admin API, wrk for load.
//!
//! Every loop is bounded in count; nothing asserts on timing.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

#[path = "../common/mod.rs"]
mod common;
use common::guest;

/// A running `percore serve` with an admin API, killed when dropped.
struct Host {
    child: Child,
    addr: SocketAddr,
    admin: String,
    stderr: PathBuf,
}

fn percore() -> Command {
    Command::new(env!("CARGO_BIN_EXE_percore"))
}

impl Host {
    /// Start with `--state DIR`, the admin API on a free port, and `extra` arguments.
    fn start(state: &Path, extra: &[&str]) -> Self {
        let stderr = state.with_extension(format!("{}.log", std::process::id()));
        let log = std::fs::File::create(&stderr).unwrap();
        let mut child = percore()
            .arg("serve")
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--cores",
                "2",
            ])
            .arg("--state")
            .arg(state)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("starting percore serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut admin = None;
        let mut addr = None;
        for line in lines.by_ref().take(2) {
            let line = line.unwrap();
            let url = line.rsplit("http://").next().unwrap().trim().to_owned();
            if line.contains("admin API") {
                admin = Some(format!("http://{url}"));
            } else if line.contains("listening") {
                addr = url.parse().ok();
            }
        }
        let (Some(admin), Some(addr)) = (admin, addr) else {
            let _ = child.kill();
            panic!(
                "the host did not start: {}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        };
        Self {
            child,
            addr,
            admin,
            stderr,
        }
    }

    /// Run `percore <args>` against this host's admin API.
    fn cli(&self, args: &[&str]) -> Output {
        percore()
            .args(args)
            .env("PERCORE_ADMIN", &self.admin)
            .output()
            .unwrap()
    }

    fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "percore {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn ls(&self) -> Vec<(String, u64)> {
        let out: Value = serde_json::from_str(&self.cli_ok(&["ls", "--json"])).unwrap();
        out["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["name"].as_str().unwrap().to_owned(),
                    d["version"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    /// curl one request to the data plane: (status, body).
    fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        curl(&format!("http://{}{path}", self.addr), method, body, &[])
    }

    /// curl the admin API: (status, JSON or text).
    fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[&str],
    ) -> (u16, Value) {
        let (status, text) = curl(&format!("{}{path}", self.admin), method, body, headers);
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn signal(&self, signal: &str) {
        Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    /// SIGTERM and wait for a clean exit.
    fn stop(mut self) {
        self.signal("-TERM");
        for _ in 0..400 {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit status {status}: {}", self.log());
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the host did not stop within 20 s of SIGTERM");
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn curl(url: &str, method: &str, body: Option<&str>, headers: &[&str]) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-X", method, "-w", "\n%{http_code}", url]);
    if let Some(body) = body {
        cmd.args(["--data-binary", body]);
    }
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// `clients` curl processes, each sending `each` GETs to `url` on one keep-alive connection, at
/// the same time. Returns how many were answered 200.
fn get_many(url: &str, clients: usize, each: usize) -> usize {
    let running: Vec<_> = (0..clients)
        .map(|_| {
            let mut cmd = Command::new("curl");
            cmd.args(["-s", "-o", "/dev/null", "-w", "%{http_code}\n"]);
            for _ in 0..each {
                cmd.arg(url);
            }
            cmd.output_in_background()
        })
        .collect();
    running
        .into_iter()
        .map(|c| c.wait().lines().filter(|l| *l == "200").count())
        .sum()
}

fn wrk() -> &'static str {
    for candidate in ["/usr/bin/wrk", "/usr/local/bin/wrk"] {
        if Path::new(candidate).exists() {
            return candidate;
        }
    }
    panic!("wrk is missing: run scripts/install-test-tools.sh (the README's test command does)");
}

fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("/metrics parses as Prometheus text");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn deploy_hot_swap_under_load_then_remove() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(&dir.path().join("state"), &[]);
    assert_eq!(host.ls(), vec![]);

    let out = host.cli_ok(&["deploy", &guest("hello"), "--name", "app", "--route", "/"]);
    assert!(out.contains("deployed `app` version 1"), "{out}");
    assert_eq!(host.ls(), vec![("app".into(), 1)]);
    assert_eq!(
        host.request("GET", "/", None),
        (200, "Hello from percore!\n".into())
    );

    // Load for 4 s; swap to echo in the middle. wrk counts every non-2xx and socket error.
    let load = Command::new(wrk())
        .args(["-t1", "-c8", "-d4s", &format!("http://{}/", host.addr)])
        .output_in_background();
    std::thread::sleep(Duration::from_millis(1500));
    let out = host.cli_ok(&["deploy", &guest("echo"), "--name", "app", "--route", "/"]);
    assert!(out.contains("updated `app` version 2"), "{out}");
    let report = load.wait();
    assert!(report.contains("requests in"), "{report}");
    assert!(
        !report.contains("Non-2xx"),
        "requests failed during the swap:\n{report}"
    );
    assert!(
        !report.contains("Socket errors"),
        "connections failed during the swap:\n{report}"
    );
    assert_eq!(host.ls(), vec![("app".into(), 2)]);
    // New requests see the new version.
    assert_eq!(
        host.request("POST", "/x", Some("ping")),
        (200, "ping".into())
    );

    let out = host.cli_ok(&["rm", "app"]);
    assert!(out.contains("removed `app`"), "{out}");
    assert_eq!(host.request("GET", "/", None).0, 404);
    assert_eq!(host.ls(), vec![]);
    let text = host.cli_ok(&["ls"]);
    assert!(text.contains("no deployments"), "{text}");
    host.stop();
}

/// A child whose output is collected on a thread.
struct Background(std::thread::JoinHandle<String>);

impl Background {
    fn wait(self) -> String {
        self.0.join().unwrap()
    }
}

trait InBackground {
    fn output_in_background(&mut self) -> Background;
}

impl InBackground for Command {
    fn output_in_background(&mut self) -> Background {
        let child = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Background(std::thread::spawn(move || {
            let out = child.wait_with_output().unwrap();
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        }))
    }
}

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

#[test]
fn the_invocation_log_holds_every_request_after_a_clean_shutdown() {
    for record_queue in [None, Some("8")] {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        // A queue of 8 records makes the cores aggregate: the log must still add up.
        let extra: Vec<&str> = match record_queue {
            Some(n) => vec!["--record-queue", n],
            None => vec![],
        };
        let host = Host::start(&state, &extra);
        host.cli_ok(&["deploy", &guest("hello"), "--route", "/"]);
        host.cli_ok(&["deploy", &guest("hostile"), "--route", "/h"]);
        // 4 clients x 300 requests, each client one keep-alive connection (curl reuses it).
        let url = format!("http://{}/", host.addr);
        assert_eq!(get_many(&url, 4, 300), 1200);
        // And some faults, which are invocations too.
        for _ in 0..5 {
            assert_eq!(host.request("GET", "/h/panic", None).0, 500);
        }
        let (_, metrics) = host.admin("GET", "/metrics", None, &[]);
        let metrics = metrics.as_str().unwrap().to_owned();
        host.stop();

        let db = rusqlite::Connection::open(state.join("percore.db")).unwrap();
        let (rows, requests): (i64, i64) = db
            .query_row(
                "SELECT COUNT(*), SUM(requests) FROM invocations WHERE deployment = 'hello'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(requests, 1200, "rows {rows}");
        match record_queue {
            None => assert_eq!(rows, 1200),
            Some(_) => assert!(rows <= 1200),
        }
        let faults: i64 = db
            .query_row(
                "SELECT SUM(requests) FROM invocations WHERE deployment = 'hostile' AND fault = 'trap' AND status = 500",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(faults, 5);
        // The metrics scraped before the shutdown agree with what was served by then.
        if record_queue.is_none() {
            assert_eq!(
                metric(
                    &metrics,
                    "percore_request_duration_seconds_count",
                    &[("deployment", "hello")]
                ),
                1200.0
            );
            assert_eq!(
                metric(
                    &metrics,
                    "percore_guest_faults_total",
                    &[("deployment", "hostile"), ("kind", "trap")]
                ),
                5.0
            );
        }
    }
}

#[test]
fn metrics_scrape_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(&dir.path().join("state"), &[]);
    host.cli_ok(&["deploy", &guest("hello"), "--name", "ab", "--route", "/"]);
    for _ in 0..10 {
        assert_eq!(host.request("GET", "/", None).0, 200);
    }
    std::thread::sleep(Duration::from_millis(300));
    let (status, text) = curl(&format!("{}/metrics", host.admin), "GET", None, &[]);
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    assert!(scrape.samples.len() > 20, "{text}");
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample line {line:?}");
    }
    assert_eq!(
        metric(
            &text,
            "percore_requests_total",
            &[("deployment", "ab"), ("class", "2xx")]
        ),
        10.0
    );
    assert_eq!(metric(&text, "percore_deployments", &[]), 1.0);
    assert!(metric(&text, "percore_core_requests_total", &[]) >= 10.0);
    let stats = host.cli_ok(&["stats", "ab"]);
    assert!(stats.contains("ab"), "{stats}");
    host.stop();
}

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

#[test]
fn a_corrupt_state_database_stops_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("percore.db"), vec![0x5a; 16384]).unwrap();
    let out = percore()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--state",
        ])
        .arg(&state)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("corrupt"), "{err}");
    // The file is left as it was, for the operator to inspect.
    assert_eq!(
        std::fs::read(state.join("percore.db")).unwrap(),
        vec![0x5a; 16384]
    );
}

#[test]
fn an_admin_api_beyond_loopback_needs_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = percore()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "0.0.0.0:0",
            "--state",
        ])
        .arg(dir.path())
        .env_remove("PERCORE_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bearer token"), "{err}");
}

#[test]
fn the_invocation_log_goes_to_postgresql_when_configured() {
    let Ok(url) = std::env::var("PERCORE_TEST_POSTGRES") else {
        assert!(
            std::env::var_os("PERCORE_REQUIRE_POSTGRES").is_none(),
            "PERCORE_TEST_POSTGRES is not set: start a server with scripts/pg-test-server.sh"
        );
        eprintln!("skipped: set PERCORE_TEST_POSTGRES (scripts/pg-test-server.sh start)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(&dir.path().join("state"), &["--invocation-log", &url]);
    // A name no earlier run used: the server may hold other runs' rows.
    let name = format!("pg{}", std::process::id());
    host.cli_ok(&["deploy", &guest("hello"), "--name", &name, "--route", "/"]);
    let base = format!("http://{}/", host.addr);
    assert_eq!(get_many(&base, 3, 400), 1200);
    host.stop();
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let row = db
        .query_one(
            "SELECT COUNT(*), COALESCE(SUM(requests), 0)::BIGINT FROM invocations WHERE deployment = $1",
            &[&name],
        )
        .unwrap();
    let (rows, requests): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(requests, 1200, "{rows} rows");
    assert_eq!(rows, 1200);
}

#[test]
fn an_unreachable_postgresql_is_a_clear_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = percore()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--state",
        ])
        .arg(dir.path())
        .args(["--invocation-log", "postgres://nobody:pw@127.0.0.1:1/none"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PostgreSQL postgres://nobody@127.0.0.1:1/none"),
        "{err}"
    );
    assert!(
        !err.contains("pw@"),
        "the password must not be printed: {err}"
    );
}

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
fn a_request_id_tags_the_guests_log_lines_and_its_invocation_record() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let host = Host::start(&state, &[]);
    host.cli_ok(&["deploy", &guest("greeter"), "--route", "/"]);
    assert_eq!(host.request("GET", "/?name=log", None).0, 200);
    host.stop();
    let db = rusqlite::Connection::open(state.join("percore.db")).unwrap();
    let id: String = db
        .query_row(
            "SELECT request_id FROM invocations WHERE deployment = 'greeter'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(id.starts_with('c') && id.contains('-'), "{id}");
    let log = std::fs::read_to_string(state.with_extension(format!("{}.log", std::process::id())))
        .unwrap();
    let tagged: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("deployment=greeter") && l.contains(&format!("request={id}")))
        .collect();
    assert!(
        !tagged.is_empty(),
        "no guest log line carries request={id}:\n{log}"
    );
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
