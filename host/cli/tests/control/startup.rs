//! Starts that must fail and say why: a corrupt state database, an admin API beyond loopback
//! without a token, an unreachable PostgreSQL.

use crate::percore;

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
