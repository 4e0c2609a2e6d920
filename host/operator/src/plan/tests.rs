use super::*;
use crate::crd::{GuestKind, Limits, Route};

fn spec(component: &str) -> PercoreAppSpec {
    PercoreAppSpec {
        component: component.into(),
        kind: None,
        routes: Vec::new(),
        config: BTreeMap::new(),
        config_from: Vec::new(),
        limits: Limits::default(),
        warmup: Vec::new(),
        host_selector: None,
    }
}

fn actual_of(d: &Desired, version: u64) -> Actual {
    Actual {
        version,
        kind: Some("edge".into()),
        routes: d.routes.clone(),
        config: d.config.clone(),
        limits: d.limits.clone(),
        oci: Some(OciDoc {
            reference: d.component.oci.clone(),
            digest: "sha256:aa".into(),
        }),
        warmup: d.warmup.clone(),
    }
}

#[test]
fn names_on_hosts_are_namespace_and_app() {
    assert_eq!(deployment_name("apps", "hello").unwrap(), "apps-hello");
    assert_eq!(
        deployment_name("apps", "hello.v2").unwrap(),
        "apps-hello-v2"
    );
    let long = "x".repeat(60);
    assert!(
        deployment_name("apps", &long)
            .unwrap_err()
            .contains("cannot name")
    );
}

#[test]
fn the_desired_deployment_follows_the_spec() {
    let mut s = spec("oci://registry.local/apps/hello:v1");
    let d = desired("hello", &s, BTreeMap::new()).unwrap();
    assert_eq!(
        d.routes,
        vec![RouteDoc {
            host: None,
            path: "/hello".into()
        }]
    );
    assert_eq!(d.component.oci, "oci://registry.local/apps/hello:v1");

    s.routes = vec![Route {
        path: "/".into(),
        host: Some("hello.example".into()),
    }];
    s.config.insert("GREETING".into(), "hi".into());
    s.kind = Some(GuestKind::WasiHttp);
    s.limits.memory_mb = Some(32);
    let secrets = BTreeMap::from([
        ("GREETING".to_owned(), "from the secret".to_owned()),
        ("TOKEN".to_owned(), "t".to_owned()),
    ]);
    let d = desired("hello", &s, secrets).unwrap();
    assert_eq!(
        d.config["GREETING"], "hi",
        "the spec's config wins over a secret's"
    );
    assert_eq!(d.config["TOKEN"], "t");
    assert_eq!(d.kind.as_deref(), Some("wasi-http"));
    assert_eq!(d.limits.memory_mb, Some(32));
    let body = serde_json::to_value(&d).unwrap();
    assert_eq!(
        body["component"]["oci"],
        "oci://registry.local/apps/hello:v1"
    );
    assert_eq!(body["limits"], serde_json::json!({ "memory_mb": 32 }));
}

#[test]
fn a_spec_no_host_could_take_is_refused_with_the_reason() {
    for (component, words) in [
        ("registry.local/apps/hello:v1", "not an oci://"),
        ("oci://", "not an oci://"),
        ("oci://hello", "names no repository"),
    ] {
        let e = desired("a", &spec(component), BTreeMap::new()).unwrap_err();
        assert!(e.contains(words), "{component}: {e}");
    }
    let mut s = spec("oci://r/a:v1");
    s.routes = vec![Route {
        path: "nope".into(),
        host: None,
    }];
    assert!(
        desired("a", &s, BTreeMap::new())
            .unwrap_err()
            .contains("must start with '/'")
    );
    let mut s = spec("oci://r/a:v1");
    s.limits.cpu_ms = Some(0);
    assert!(
        desired("a", &s, BTreeMap::new())
            .unwrap_err()
            .contains("above zero")
    );
}

#[test]
fn each_host_gets_the_step_its_state_needs() {
    let d = desired("hello", &spec("oci://r/apps/hello:v1"), BTreeMap::new()).unwrap();
    let same = actual_of(&d, 3);
    assert_eq!(step(Some(&d), None), Step::Deploy);
    assert_eq!(step(Some(&d), Some(&same)), Step::Keep);
    assert_eq!(step(None, Some(&same)), Step::Remove);
    assert_eq!(step(None, None), Step::Keep);

    // The host stores references without the scheme when given without it; both are the same.
    let mut bare_ref = same.clone();
    bare_ref.oci.as_mut().unwrap().reference = "r/apps/hello:v1".into();
    assert_eq!(step(Some(&d), Some(&bare_ref)), Step::Keep);

    // Any difference in what the spec says is a new deploy.
    let mut changed = Vec::new();
    let mut a = same.clone();
    a.oci.as_mut().unwrap().reference = "oci://r/apps/hello:v2".into();
    changed.push(a);
    let mut a = same.clone();
    a.routes[0].path = "/other".into();
    changed.push(a);
    let mut a = same.clone();
    a.config.insert("K".into(), "V".into());
    changed.push(a);
    let mut a = same.clone();
    a.limits.timeout_ms = Some(10);
    changed.push(a);
    let mut a = same.clone();
    a.oci = None; // deployed from a file by hand under the app's name
    changed.push(a);
    for a in &changed {
        assert_eq!(step(Some(&d), Some(a)), Step::Deploy, "{a:?}");
    }
}

#[test]
fn a_warm_up_is_sent_as_hosts_keep_it_and_a_change_redeploys() {
    let mut s = spec("oci://r/apps/hello:v1");
    s.warmup = vec!["/".into(), " POST  /x ".into()];
    let d = desired("hello", &s, BTreeMap::new()).unwrap();
    assert_eq!(d.warmup, ["GET /", "POST /x"]);
    let body = serde_json::to_value(&d).unwrap();
    assert_eq!(body["warmup"], serde_json::json!(["GET /", "POST /x"]));
    let mut a = actual_of(&d, 1);
    assert_eq!(step(Some(&d), Some(&a)), Step::Keep);
    a.warmup.pop();
    assert_eq!(step(Some(&d), Some(&a)), Step::Deploy);
    // No warm-up: the request carries no field, as before warm-ups existed.
    let plain = desired("hello", &spec("oci://r/apps/hello:v1"), BTreeMap::new()).unwrap();
    assert!(
        serde_json::to_value(&plain)
            .unwrap()
            .get("warmup")
            .is_none()
    );
}

#[test]
fn a_stated_kind_matches_the_versioned_kind_a_host_reports() {
    let mut s = spec("oci://r/apps/hello:v1");
    s.kind = Some(GuestKind::WasiHttp);
    let d = desired("hello", &s, BTreeMap::new()).unwrap();
    let mut a = actual_of(&d, 1);
    a.kind = Some("wasi-http@0.2".into());
    assert_eq!(step(Some(&d), Some(&a)), Step::Keep);
    a.kind = Some("wasi-httpd".into());
    assert_eq!(step(Some(&d), Some(&a)), Step::Deploy);
}

#[test]
fn the_status_says_ready_degraded_and_what_each_host_serves() {
    let d = desired("hello", &spec("oci://r/apps/hello:v1"), BTreeMap::new()).unwrap();
    let ok = HostOutcome::Serving(Box::new(actual_of(&d, 2)));
    let all = status(
        Some(4),
        None,
        None,
        &[("host-a".into(), ok.clone()), ("host-b".into(), ok.clone())],
        "T1",
    );
    assert_eq!(all.observed_generation, Some(4));
    let ready = &all.conditions[0];
    assert_eq!(
        (ready.type_.as_str(), ready.status.as_str()),
        ("Ready", "True")
    );
    assert_eq!(all.conditions[1].status, "False");
    assert_eq!(all.hosts[0].digest.as_deref(), Some("sha256:aa"));
    assert_eq!(all.hosts[1].version, Some(2));

    // One host fails: not ready, degraded with that host's reason; the ready condition's
    // transition time moves, the degraded one's too.
    let one_down = status(
        Some(4),
        Some(&all),
        None,
        &[
            ("host-a".into(), ok.clone()),
            (
                "host-b".into(),
                HostOutcome::Failed("registry cannot be reached".into()),
            ),
        ],
        "T2",
    );
    assert_eq!(one_down.conditions[0].status, "False");
    assert_eq!(one_down.conditions[0].reason, "HostErrors");
    assert_eq!(one_down.conditions[1].status, "True");
    assert!(
        one_down.conditions[1]
            .message
            .contains("host-b: registry cannot be reached")
    );
    assert_eq!(
        one_down.conditions[0].last_transition_time.as_deref(),
        Some("T2")
    );
    assert_eq!(
        one_down.hosts[1].error.as_deref(),
        Some("registry cannot be reached")
    );

    // Unchanged conditions keep their time.
    let again = status(Some(4), Some(&all), None, &[("host-a".into(), ok)], "T3");
    assert_eq!(
        again.conditions[0].last_transition_time.as_deref(),
        Some("T1")
    );

    let invalid = status(Some(5), Some(&all), Some("bad route"), &[], "T4");
    assert_eq!(invalid.conditions[0].reason, "InvalidSpec");
    assert_eq!(invalid.conditions[1].message, "bad route");
    let none = status(Some(5), None, None, &[], "T4");
    assert_eq!(none.conditions[0].reason, "NoHosts");
}
