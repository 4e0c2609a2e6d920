//! A deploy's life through the CLI: a hot swap under load, then removal.

use std::process::Command;
use std::time::Duration;

use crate::common::guest;
use crate::{Host, InBackground, wrk};

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
