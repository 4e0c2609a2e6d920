use super::*;

fn doc(path: &str) -> DeploymentDoc {
    DeploymentDoc {
        routes: vec![RouteDoc {
            host: None,
            path: path.into(),
        }],
        config: Default::default(),
        limits: LimitsDoc::default(),
        allowed_outbound_hosts: Vec::new(),
        warmup: Vec::new(),
        kind: None,
        oci: None,
    }
}

#[test]
fn deployments_round_trip_and_versions_count_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let warmed = DeploymentDoc {
        warmup: vec!["GET /".into(), "POST /x".into()],
        ..doc("/a2")
    };
    {
        let mut store = Store::open(&path).unwrap();
        let a = store
            .put("a", "h1", Path::new("/x/a.cwasm"), None, &doc("/a"), 10)
            .unwrap();
        assert_eq!((a.id, a.version), (FIRST_ID, 1));
        let b = store
            .put(
                "b",
                "h2",
                Path::new("/x/b.cwasm"),
                Some("why"),
                &doc("/b"),
                11,
            )
            .unwrap();
        assert_eq!(b.id, FIRST_ID + 1);
        let a2 = store
            .put("a", "h3", Path::new("/x/c.cwasm"), None, &warmed, 12)
            .unwrap();
        assert_eq!((a2.id, a2.version, a2.created), (FIRST_ID, 2, 10));
    }
    let mut store = Store::open(&path).unwrap();
    let all = store.deployments().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].component, "h3");
    assert_eq!(all[0].doc, warmed);
    assert_eq!(all[1].not_resettable.as_deref(), Some("why"));
    assert!(store.remove("a").unwrap());
    assert!(!store.remove("a").unwrap());
    assert_eq!(store.deployments().unwrap().len(), 1);
}

#[test]
fn deploys_commit_while_the_invocation_log_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut deployer = Store::open(&path).unwrap();
    let mut log = Store::open(&path).unwrap();
    let row = LogRow {
        request_id: "c0-1".into(),
        deployment: "a".into(),
        start_unix_us: 1,
        duration_us: 2,
        status: 200,
        fault: None,
        cpu_us: 1,
        bytes_in: 10,
        bytes_out: 20,
        requests: 1,
        cold_starts: 0,
        outbound: Default::default(),
    };
    let writer = std::thread::spawn(move || {
        for _ in 0..200 {
            log.append_log(&vec![row.clone(); 50]).unwrap();
        }
    });
    // Each put reads, then writes: it must wait for the log's transactions, not fail.
    for i in 0..200 {
        deployer
            .put("a", &format!("h{i}"), Path::new("/x"), None, &doc("/a"), i)
            .unwrap();
    }
    writer.join().unwrap();
    assert_eq!(deployer.deployments().unwrap()[0].version, 200);
}

#[test]
fn a_database_from_before_outbound_http_gets_its_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    // The invocation log as the first releases made it.
    let old = Connection::open(&path).unwrap();
    old.execute_batch(
        "CREATE TABLE invocations (request_id TEXT NOT NULL, deployment TEXT NOT NULL, \
         start_unix_us INTEGER NOT NULL, duration_us INTEGER NOT NULL, status INTEGER NOT NULL, \
         fault TEXT, cpu_us INTEGER NOT NULL, bytes_in INTEGER NOT NULL, \
         bytes_out INTEGER NOT NULL, requests INTEGER NOT NULL, cold_starts INTEGER NOT NULL); \
         INSERT INTO invocations VALUES ('c0-1', 'a', 1, 2, 200, NULL, 1, 10, 20, 1, 0);",
    )
    .unwrap();
    drop(old);
    let mut store = Store::open(&path).unwrap();
    let mut row = LogRow {
        request_id: "c0-2".into(),
        deployment: "a".into(),
        start_unix_us: 3,
        duration_us: 4,
        status: 200,
        fault: None,
        cpu_us: 1,
        bytes_in: 10,
        bytes_out: 20,
        requests: 1,
        cold_starts: 0,
        outbound: Default::default(),
    };
    row.outbound.requests = 2;
    row.outbound.bytes_in = 300;
    row.outbound.wait_us = 1500;
    store.append_log(&[row]).unwrap();
    let sums: (i64, i64, i64, i64) = store
        .conn
        .query_row(
            "SELECT count(*), sum(outbound_requests), sum(outbound_bytes_in), \
             sum(outbound_wait_us) FROM invocations",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(sums, (2, 2, 300, 1500));
    // Opening it again finds the columns there.
    drop(store);
    Store::open(&path).unwrap();
}

#[test]
fn a_corrupt_or_read_only_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(&path, vec![0x42; 8192]).unwrap();
    let e = Store::open(&path).unwrap_err().to_string();
    assert!(e.contains("corrupt"), "{e}");

    let ro = dir.path().join("ro.db");
    Store::open(&ro).unwrap();
    let mut perms = std::fs::metadata(&ro).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&ro, perms).unwrap();
    // Root ignores file permissions; the check is only meaningful for other users.
    if !nix_is_root() {
        let e = Store::open(&ro).unwrap_err().to_string();
        assert!(e.contains("read-only"), "{e}");
    }
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}
