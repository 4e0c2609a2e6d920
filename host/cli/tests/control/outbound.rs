//! Outbound HTTP through the admin API: `percore deploy --allow-outbound`, the policy kept with
//! the deployment (and restored), and the guest's outbound requests metered in `/v1/stats`,
//! `/metrics` and the invocation log.

use crate::common::{guest, origin::Origin};
use crate::{Host, metric};

#[test]
fn a_deployment_allowed_an_origin_fetches_and_is_metered() {
    let origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let host = Host::start(&state, &[]);
    // A bad allow-list is refused before anything is deployed.
    let out = host.cli(&[
        "deploy",
        &guest("fetch"),
        "--route",
        "/",
        "--allow-outbound",
        "api.example.com",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a scheme is required"), "{err}");
    assert_eq!(host.ls(), vec![]);

    let allowed = format!("http://{}", origin.addr);
    host.cli_ok(&[
        "deploy",
        &guest("fetch"),
        "--route",
        "/",
        "--allow-outbound",
        &allowed,
        "--outbound-timeout-ms",
        "2000",
    ]);
    let url = format!("/?url={}", origin.url("/hello"));
    for _ in 0..3 {
        assert_eq!(
            host.request("GET", &url, None),
            (200, "from origin\n".into())
        );
    }
    // Off the list: refused, and counted as an error.
    let denied = "/?url=http://127.0.0.1:1/";
    assert_eq!(host.request("GET", denied, None).0, 403);

    // The cores publish their counters at each tick (100 ms).
    let mut stats = serde_json::Value::Null;
    for _ in 0..50 {
        let (status, now) = host.admin("GET", "/v1/stats", None, &[]);
        assert_eq!(status, 200, "{now}");
        stats = now;
        if stats["host"]["outbound_requests"] == 4 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let fetch = stats["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deployment"] == "fetch")
        .expect("fetch's stats")
        .clone();
    assert_eq!(fetch["outbound"]["requests"], 4, "{fetch}");
    assert!(
        fetch["outbound"]["bytes_in"].as_u64().unwrap() >= 3 * 12,
        "{fetch}"
    );
    assert_eq!(stats["host"]["outbound_requests"], 4, "{stats}");
    assert_eq!(stats["host"]["outbound_errors"], 1, "{stats}");
    let (_, metrics) = host.admin("GET", "/metrics", None, &[]);
    let metrics = metrics.as_str().unwrap().to_owned();
    assert_eq!(
        metric(
            &metrics,
            "percore_outbound_requests_total",
            &[("deployment", "fetch")]
        ),
        4.0
    );

    // The policy is kept with the deployment: after a restart the origin is still allowed.
    host.stop();
    let host = Host::start(&state, &[]);
    assert_eq!(
        host.request("GET", &url, None),
        (200, "from origin\n".into())
    );
    host.stop();

    let db = rusqlite::Connection::open(state.join("percore.db")).unwrap();
    let (requests, outbound, bytes_in): (i64, i64, i64) = db
        .query_row(
            "SELECT SUM(requests), SUM(outbound_requests), SUM(outbound_bytes_in) \
             FROM invocations WHERE deployment = 'fetch'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((requests, outbound), (5, 5));
    assert!(bytes_in >= 4 * 12, "{bytes_in}");
}
