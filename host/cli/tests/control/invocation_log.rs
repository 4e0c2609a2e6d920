//! The invocation log: every request recorded in SQLite or PostgreSQL, tagged with its request id.

use crate::common::guest;
use crate::{Host, get_many, metric};

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
fn the_invocation_log_goes_to_postgresql_when_configured() {
    let Some(url) = crate::test_postgres() else {
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
