//! Every kind of guest through the admin API: told from the binary at deploy, shown by `ls`,
//! a stated kind checked, served after a restart without compiling.

use serde_json::Value;

use crate::Host;
use crate::common::guest;

fn kinds(host: &Host) -> Vec<(String, String, String)> {
    let out: Value = serde_json::from_str(&host.cli_ok(&["ls", "--json"])).unwrap();
    let mut rows: Vec<_> = out["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_owned(),
                d["kind"].as_str().unwrap().to_owned(),
                d["instances"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn each_kind_deploys_serves_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let host = Host::start(&state, &[]);
    host.cli_ok(&[
        "deploy",
        &guest("wasi-http-json"),
        "--name",
        "http",
        "--route",
        "/http",
    ]);
    host.cli_ok(&[
        "deploy",
        &guest("upper-cgi"),
        "--name",
        "upper",
        "--route",
        "/upper",
    ]);
    host.cli_ok(&[
        "deploy",
        &guest("probe-cgi-wasip1"),
        "--name",
        "p1",
        "--route",
        "/p1",
        "--set",
        "PROBE_ROLE=cgi",
    ]);
    host.cli_ok(&["deploy", &guest("sum"), "--name", "sum", "--route", "/sum"]);
    host.cli_ok(&[
        "deploy",
        &guest("probe-http3"),
        "--name",
        "p3",
        "--route",
        "/p3",
        "--set",
        "PROBE_ROLE=echo",
    ]);
    let rows = kinds(&host);
    let kind_of = |name: &str| rows.iter().find(|r| r.0 == name).unwrap().1.clone();
    assert_eq!(kind_of("http"), "wasi-http@0.2");
    assert_eq!(kind_of("upper"), "cgi");
    assert_eq!(kind_of("p1"), "cgi");
    assert_eq!(kind_of("sum"), "bare");
    assert_eq!(kind_of("p3"), "wasi-http@0.3");
    let p3 = rows.iter().find(|r| r.0 == "p3").unwrap();
    assert!(p3.2.starts_with("fresh"), "{p3:?}");
    let table = host.cli_ok(&["ls"]);
    assert!(
        table.contains("KIND") && table.contains("wasi-http@0.2"),
        "{table}"
    );

    let check = |host: &Host| {
        let (status, body) = host.request("GET", "/http/x", None);
        assert_eq!(
            (status, body.as_str()),
            (
                200,
                "{\"method\":\"GET\",\"path\":\"/http/x\",\"body_bytes\":0}\n"
            )
        );
        assert_eq!(
            host.request("POST", "/upper", Some("shout")),
            (200, "SHOUT".into())
        );
        assert_eq!(host.request("GET", "/p1/headers", None).0, 201);
        // A WASIp3 component, its artifact loaded into the WASIp3 engine after the restart.
        assert_eq!(
            host.request("POST", "/p3/x", Some("async")),
            (200, "async".into())
        );
        assert_eq!(host.request("GET", "/sum?5&2", None), (200, "7\n".into()));
        assert_eq!(
            host.request("GET", "/sum/sum?a=40&b=2", None),
            (200, "42\n".into())
        );
        let (status, text) = host.request("GET", "/sum?5", None);
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("takes 2 argument"), "{text}");
    };
    check(&host);

    // A stated kind must match the binary.
    let out = host.cli(&[
        "deploy",
        &guest("upper-cgi"),
        "--name",
        "wrong",
        "--kind",
        "wasi-http",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("says this guest is `wasi-http@0.2`") && err.contains("`cgi`"),
        "{err}"
    );
    // A binary of no kind is refused with what was found.
    let out = host.cli(&["deploy", &guest("not-a-component"), "--name", "nothing"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot tell what kind of guest") && err.contains("env.memory"),
        "{err}"
    );
    host.stop();

    let host = Host::start(&state, &[]);
    assert_eq!(
        kinds(&host),
        rows,
        "the kinds come back from the state database"
    );
    check(&host);
    assert!(
        !host.log().contains("compiled"),
        "a restart compiles nothing:\n{}",
        host.log()
    );
    host.stop();
}
