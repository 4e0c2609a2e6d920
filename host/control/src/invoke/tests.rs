use super::*;

fn request(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> AdminRequest {
    AdminRequest {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

fn find(name: &str) -> Option<Target> {
    (name == "hello").then(|| Target {
        deployment: "hello".into(),
        host: None,
        prefix: "/hello".into(),
        deadline: Duration::from_secs(1),
    })
}

#[test]
fn invoke_paths_name_the_deployment_and_keep_the_rest() {
    let r = route(&request("POST", "/invoke/hello/a/b", "", &[], ""), find);
    let Some(Ok(Call::Invoke { target, rest })) = r else {
        panic!("{r:?}")
    };
    assert_eq!(
        (target.deployment.as_str(), rest.as_str()),
        ("hello", "/a/b")
    );
    let Some(Err(missing)) = route(&request("POST", "/invoke/nope", "", &[], ""), find) else {
        panic!()
    };
    assert_eq!(missing.status, 404);
    assert!(route(&request("GET", "/v1/deployments", "", &[], ""), find).is_none());
}

#[test]
fn template_execute_answers_only_for_percore_templates() {
    let other =
        r#"{"workflow":{"metadata":{"name":"w"}},"template":{"name":"t","plugin":{"hello":{}}}}"#;
    let Some(Err(r)) = route(
        &request("POST", "/api/v1/template.execute", "", &[], other),
        find,
    ) else {
        panic!()
    };
    assert_eq!((r.status, r.body.as_slice()), (200, b"{}\n".as_slice()));

    let ours = r#"{"template":{"plugin":{"percore":{"app":"hello","method":"POST","body":"x"}}}}"#;
    let Some(Ok(Call::Plugin { plugin, .. })) = route(
        &request("POST", "/api/v1/template.execute", "", &[], ours),
        find,
    ) else {
        panic!()
    };
    assert_eq!(
        (plugin.method.as_str(), plugin.path.as_str()),
        ("POST", "/")
    );

    let unknown = r#"{"template":{"plugin":{"percore":{"app":"nope"}}}}"#;
    let Some(Err(r)) = route(
        &request("POST", "/api/v1/template.execute", "", &[], unknown),
        find,
    ) else {
        panic!()
    };
    let node: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(node["node"]["phase"], "Failed");
    assert!(
        node["node"]["message"]
            .as_str()
            .unwrap()
            .contains("no deployment `nope`")
    );

    let typo = r#"{"template":{"plugin":{"percore":{"app":"hello","bdy":"x"}}}}"#;
    let Some(Err(r)) = route(
        &request("POST", "/api/v1/template.execute", "", &[], typo),
        find,
    ) else {
        panic!()
    };
    assert!(String::from_utf8_lossy(&r.body).contains("unknown field `bdy`"));
    let Some(Err(r)) = route(
        &request("POST", "/api/v1/template.execute", "", &[], "{"),
        find,
    ) else {
        panic!()
    };
    assert_eq!(r.status, 400);
}

#[test]
fn the_deadline_is_the_callers_within_bounds_else_the_deployments() {
    let t = find("hello").unwrap();
    assert_eq!(
        deadline(&t, &request("POST", "/", "", &[], "")).unwrap(),
        Duration::from_secs(1) + QUEUE_MARGIN
    );
    let h = [("x-percore-deadline-ms", "250")];
    assert_eq!(
        deadline(&t, &request("POST", "/", "", &h, "")).unwrap(),
        Duration::from_millis(250)
    );
    assert_eq!(
        deadline(&t, &request("POST", "/", "a=1&deadline_ms=40", &[], "")).unwrap(),
        Duration::from_millis(40)
    );
    for bad in ["0", "-3", "soon", "600001"] {
        let h = [("x-percore-deadline-ms", bad)];
        assert!(
            deadline(&t, &request("POST", "/", "", &h, "")).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn an_idempotency_key_runs_once_then_replays() {
    let mut ids = Idempotency::default();
    let key = ("hello".to_owned(), "k1".to_owned());
    assert!(matches!(ids.begin(&key), Begin::Fresh));
    assert!(matches!(ids.begin(&key), Begin::Running));
    ids.finish(key.clone(), Some(AdminResponse::error(418, "kept")));
    let Begin::Replay(r) = ids.begin(&key) else {
        panic!()
    };
    assert_eq!(r.status, 418);
    // Another deployment's key of the same name is another call.
    assert!(matches!(
        ids.begin(&("other".to_owned(), "k1".to_owned())),
        Begin::Fresh
    ));
    // A call that is not kept can be run again.
    let k2 = ("hello".to_owned(), "k2".to_owned());
    assert!(matches!(ids.begin(&k2), Begin::Fresh));
    ids.finish(k2.clone(), None);
    assert!(matches!(ids.begin(&k2), Begin::Fresh));
}

#[test]
fn the_idempotency_table_stays_bounded() {
    let mut ids = Idempotency::default();
    for i in 0..IDEMPOTENCY_ENTRIES + 100 {
        let key = ("hello".to_owned(), format!("k{i}"));
        assert!(matches!(ids.begin(&key), Begin::Fresh));
        ids.finish(key, Some(AdminResponse::error(200, "x")));
    }
    assert!(ids.entries.len() <= IDEMPOTENCY_ENTRIES);
    assert!(ids.order.len() <= IDEMPOTENCY_ENTRIES + 1);
}

#[test]
fn the_admin_token_and_framing_never_reach_the_guest() {
    for name in [
        "authorization",
        "host",
        "content-length",
        "idempotency-key",
        "x-percore-deadline-ms",
    ] {
        assert!(!forwarded(name), "{name}");
    }
    assert!(forwarded("content-type") && forwarded("x-request-id"));
}
