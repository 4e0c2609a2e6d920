//! Faults of the machine under a running host: the state database removed, the state directory's
//! disk full, PostgreSQL gone and back. The host keeps serving, says what is wrong (`/healthz`,
//! `/metrics`, its log), loses no invocation record, and recovers when the fault clears.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::guest;
use crate::{Host, curl, metric};

/// Ask `/healthz` until `done` holds for its body (at most 20 s); returns the last body.
fn health_until(host: &Host, done: impl Fn(&Value) -> bool) -> Value {
    let mut body = Value::Null;
    for _ in 0..100 {
        body = host.admin("GET", "/healthz", None, &[]).1;
        if done(&body) {
            return body;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("/healthz never reached the expected state: {body}");
}

fn degraded(body: &Value, component: &str) -> bool {
    body["degraded"]
        .as_array()
        .is_some_and(|d| d.iter().any(|c| c["component"] == component))
}

fn serve(host: &Host, n: usize) {
    for _ in 0..n {
        assert_eq!(
            host.request("GET", "/", None),
            (200, "Hello from percore!\n".into())
        );
    }
}

/// Requests the SQLite invocation log holds for `deployment`.
fn logged(db: &Path, deployment: &str) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(
            "SELECT COALESCE(SUM(requests), 0) FROM invocations WHERE deployment = ?1",
            [deployment],
            |r| r.get(0),
        )
        .unwrap()
}

/// Rows the host has written to its invocation log, from `/metrics`.
fn rows_written(host: &Host) -> f64 {
    let text = curl(&format!("{}/metrics", host.admin), "GET", None, &[]).1;
    metric(&text, "percore_invocation_log_rows_total", &[])
}

fn wait_rows(host: &Host, rows: f64) {
    for _ in 0..100 {
        if rows_written(host) >= rows {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the invocation log never reached {rows} rows");
}

/// A host in a new state directory (`<dir>/state`) serving `hello` at `/`, with 10 requests
/// served and in its invocation log.
fn hello_with_ten_logged() -> (tempfile::TempDir, Host) {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(&dir.path().join("state"), &[]);
    host.cli_ok(&["deploy", &guest("hello"), "--name", "hello", "--route", "/"]);
    serve(&host, 10);
    wait_rows(&host, 10.0);
    (dir, host)
}

/// Stop `host`; its database holds `logged_requests` for `hello`, and a host started again on
/// `state` serves `hello`.
fn stop_then_restart_finds_hello(host: Host, state: &Path, logged_requests: i64) {
    host.stop();
    assert_eq!(logged(&state.join("percore.db"), "hello"), logged_requests);
    let host = Host::start(state, &[]);
    assert_eq!(host.ls(), vec![("hello".to_owned(), 1)]);
    serve(&host, 1);
    host.stop();
}

#[test]
fn a_state_database_removed_under_the_host_comes_back_with_its_deployments() {
    let (dir, host) = hello_with_ten_logged();
    let state = dir.path().join("state");
    let db = state.join("percore.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    // The admin thread notices within a second and writes the deployment back.
    for _ in 0..50 {
        if db.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        db.exists(),
        "the database was not created again: {}",
        host.log()
    );
    serve(&host, 25);
    wait_rows(&host, 35.0);
    assert!(host.log().contains("removed or replaced"), "{}", host.log());
    // The new file has the deployment and every request since the old one went.
    stop_then_restart_finds_hello(host, &state, 25);
}

/// A small tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` when this process may not mount (not root): the caller skips, unless the
    /// README's test command asked for every fault test.
    fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                std::env::var_os("PERCORE_REQUIRE_FAULT_TESTS").is_none(),
                "cannot mount a tmpfs (the disk-full test needs root)"
            );
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        Some(Self(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_holds_the_log_in_memory_and_refuses_deploys_until_it_clears() {
    let dir = tempfile::tempdir().unwrap();
    // The state directory is the mount point (the host's own log stays outside it).
    let state = dir.path().join("state");
    let Some(_mount) = Tmpfs::mount(&state, "64m") else {
        return;
    };
    let db = state.join("percore.db");
    let host = Host::start(&state, &[]);
    host.cli_ok(&["deploy", &guest("hello"), "--name", "hello", "--route", "/"]);
    serve(&host, 10);
    wait_rows(&host, 10.0);

    // Fill the disk.
    let filler = state.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 1 << 20];
    while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    drop(file);

    // Serving goes on; the log's writes fail and it says so.
    serve(&host, 100);
    let body = health_until(&host, |b| degraded(b, "invocation_log"));
    assert_eq!(body["ok"], true);
    let log = body["degraded"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["component"] == "invocation_log");
    assert!(
        log.unwrap()["error"].as_str().unwrap().contains("full"),
        "{body}"
    );
    // A deploy cannot store its component: a clear error, and the running version serves on.
    let out = host.cli(&[
        "deploy",
        &guest("echo"),
        "--name",
        "echo",
        "--route",
        "/echo",
    ]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("space") || said.contains("full"), "{said}");
    serve(&host, 10);

    // Space again: the held rows are written, nothing lost.
    std::fs::remove_file(&filler).unwrap();
    health_until(&host, |b| {
        b["degraded"].as_array().is_some_and(Vec::is_empty)
    });
    wait_rows(&host, 120.0);
    host.stop();
    assert_eq!(logged(&db, "hello"), 120);
}

/// A PostgreSQL cluster of the test's own (scripts/pg-test-server.sh with its own port and state).
struct Pg {
    env: Vec<(&'static str, String)>,
}

impl Pg {
    fn run(&self, command: &str) -> String {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/pg-test-server.sh"
        );
        let out = Command::new("bash")
            .arg(script)
            .arg(command)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg-test-server.sh {command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.run("stop");
    }
}

#[test]
fn postgresql_going_away_and_back_loses_no_record() {
    // A server of this test's own, on another port: stopping the shared one would fail others.
    if crate::test_postgres().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pg = Pg {
        env: vec![
            ("PERCORE_PG_PORT", "55433".into()),
            (
                "PERCORE_PG_STATE",
                dir.path().join("pg-state").display().to_string(),
            ),
        ],
    };
    let url = pg.run("start");
    let host = Host::start(&dir.path().join("state"), &["--invocation-log", &url]);
    host.cli_ok(&["deploy", &guest("hello"), "--name", "hello", "--route", "/"]);
    serve(&host, 10);
    wait_rows(&host, 10.0);
    pg.run("halt");
    serve(&host, 50);
    let body = health_until(&host, |b| degraded(b, "invocation_log"));
    assert!(
        body["degraded"][0]["backlog_rows"].as_u64().unwrap_or(0) > 0,
        "{body}"
    );
    pg.run("resume");
    health_until(&host, |b| {
        b["degraded"].as_array().is_some_and(Vec::is_empty)
    });
    wait_rows(&host, 60.0);
    host.stop();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let requests: i64 = client
        .query_one(
            "SELECT COALESCE(SUM(requests), 0)::bigint FROM invocations WHERE deployment = 'hello'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(requests, 60);
}

#[test]
fn a_state_database_corrupted_under_the_host_is_reported_and_recovers_when_moved_away() {
    let (dir, host) = hello_with_ten_logged();
    let state = dir.path().join("state");
    let db = state.join("percore.db");
    // What a bad restore or a stray tool leaves: a file at the path that is not SQLite.
    let garbage = state.join("garbage");
    std::fs::write(&garbage, vec![0xa5u8; 64 * 1024]).unwrap();
    std::fs::rename(&garbage, &db).unwrap();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    serve(&host, 20);
    let body = health_until(&host, |b| {
        degraded(b, "state_database") && degraded(b, "invocation_log")
    });
    assert!(
        body.to_string().contains("corrupt or not SQLite"),
        "/healthz does not say what is wrong: {body}"
    );
    // A deploy is refused with the reason, and nothing is half done.
    let out = host.cli(&[
        "deploy",
        &guest("hello"),
        "--name",
        "other",
        "--route",
        "/o",
    ]);
    assert!(
        !out.status.success(),
        "a deploy succeeded on a corrupt database"
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("corrupt or not SQLite"), "{said}");
    assert_eq!(host.ls(), vec![("hello".to_owned(), 1)]);
    // The operator moves the file away: the host makes a new one, writes the deployment back
    // into it, and the records it held meanwhile follow.
    std::fs::rename(&db, state.join("percore.db.corrupt")).unwrap();
    health_until(&host, |b| {
        b["degraded"].as_array().is_some_and(Vec::is_empty)
    });
    serve(&host, 5);
    wait_rows(&host, 35.0);
    stop_then_restart_finds_hello(host, &state, 25);
}
