//! The reconciler against kube's mock API server (`tower_test::mock`): each test states, in
//! order, the calls the operator must make to Kubernetes and answers them, while an in-memory
//! host stands in for the percore hosts' admin APIs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kube::client::Body;
use percore_operator::admin::{AdminApi, HostRef};
use percore_operator::crd::{ConfigFrom, HostSelector, PercoreApp, PercoreAppSpec, SecretRef};
use percore_operator::hosts::HostsService;
use percore_operator::plan::{Actual, Desired, OciDoc};
use percore_operator::reconcile::{Context, FINALIZER, RESYNC, RETRY, reconcile};
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// Hosts in memory: (host, deployment) -> what it serves; hosts listed in `down` refuse.
#[derive(Default)]
struct FakeHosts {
    held: Mutex<BTreeMap<(String, String), Actual>>,
    down: Mutex<Vec<String>>,
    calls: Mutex<Vec<String>>,
}

impl FakeHosts {
    fn holds(&self, host: &str, name: &str) -> Option<Actual> {
        self.held
            .lock()
            .unwrap()
            .get(&(host.to_owned(), name.to_owned()))
            .cloned()
    }

    fn check(&self, host: &HostRef, call: String) -> Result<(), String> {
        self.calls.lock().unwrap().push(call);
        if self.down.lock().unwrap().contains(&host.name) {
            return Err(format!(
                "admin API {} unreachable: connection refused",
                host.admin
            ));
        }
        Ok(())
    }
}

/// The admin API of the fake hosts (shared with the test, which looks at them after).
struct Fake(Arc<FakeHosts>);

impl AdminApi for Fake {
    async fn get(&self, host: &HostRef, name: &str) -> Result<Option<Actual>, String> {
        self.0.check(host, format!("GET {} {name}", host.name))?;
        Ok(self.0.holds(&host.name, name))
    }

    async fn put(&self, host: &HostRef, name: &str, desired: &Desired) -> Result<Actual, String> {
        self.0.check(host, format!("PUT {} {name}", host.name))?;
        let mut held = self.0.held.lock().unwrap();
        let key = (host.name.clone(), name.to_owned());
        let version = held.get(&key).map_or(1, |a| a.version + 1);
        let actual = Actual {
            version,
            kind: Some("edge".into()),
            routes: desired.routes.clone(),
            config: desired.config.clone(),
            limits: desired.limits.clone(),
            oci: Some(OciDoc {
                reference: desired.component.oci.clone(),
                digest: "sha256:feed".into(),
            }),
            warmup: desired.warmup.clone(),
        };
        held.insert(key, actual.clone());
        Ok(actual)
    }

    async fn delete(&self, host: &HostRef, name: &str) -> Result<(), String> {
        self.0.check(host, format!("DELETE {} {name}", host.name))?;
        self.0
            .held
            .lock()
            .unwrap()
            .remove(&(host.name.clone(), name.to_owned()));
        Ok(())
    }
}

fn context(hosts: Arc<FakeHosts>) -> (Arc<Context<Fake>>, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let ctx = Context {
        client,
        admin: Fake(hosts),
        hosts: HostsService {
            namespace: "percore-system".into(),
            service: "percore-hosts".into(),
            admin_port: "admin".into(),
        },
        manager: "percore-operator".into(),
    };
    (Arc::new(ctx), handle)
}

fn app(spec: Value, finalizers: &[&str], deleting: bool) -> PercoreApp {
    let mut metadata = json!({
        "name": "hello",
        "namespace": "apps",
        "uid": "6f1c2a8e-0000-4000-8000-000000000001",
        "generation": 2,
        "resourceVersion": "100",
        "finalizers": finalizers,
    });
    if deleting {
        metadata["deletionTimestamp"] = json!("2026-11-30T12:00:00Z");
    }
    serde_json::from_value(json!({
        "apiVersion": "percore.dev/v1alpha1",
        "kind": "PercoreApp",
        "metadata": metadata,
        "spec": spec,
    }))
    .unwrap()
}

/// Three host pods behind the headless Service; `host-c` is not ready.
fn endpoint_slices() -> Value {
    let endpoint = |pod: &str, ip: &str, ready: bool| {
        json!({
            "addresses": [ip],
            "conditions": { "ready": ready },
            "targetRef": { "kind": "Pod", "name": pod, "namespace": "percore-system" },
        })
    };
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSliceList",
        "metadata": { "resourceVersion": "7" },
        "items": [{
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": { "name": "percore-hosts-abc", "namespace": "percore-system",
                          "labels": { "kubernetes.io/service-name": "percore-hosts" } },
            "addressType": "IPv4",
            "ports": [{ "name": "http", "port": 8080 }, { "name": "admin", "port": 9180 }],
            "endpoints": [
                endpoint("host-a", "10.0.0.1", true),
                endpoint("host-b", "10.0.0.2", true),
                endpoint("host-c", "10.0.0.3", false),
            ],
        }],
    })
}

/// Take the next request, check its method and path (with query), answer `answer`; gives the
/// request's JSON body.
async fn expect(handle: &mut Handle, method: &str, path: &str, answer: Value) -> Value {
    let (request, send) = handle
        .next_request()
        .await
        .unwrap_or_else(|| panic!("the operator stopped before {method} {path}"));
    assert_eq!(request.method().as_str(), method, "{}", request.uri());
    assert_eq!(
        request.uri().path_and_query().unwrap().as_str(),
        path,
        "{method}"
    );
    let body = request.into_body().collect_bytes().await.unwrap();
    send.send_response(
        Response::builder()
            .body(Body::from(serde_json::to_vec(&answer).unwrap()))
            .unwrap(),
    );
    serde_json::from_slice(&body).unwrap_or(Value::Null)
}

/// Wait for the mock server's script to end; a call the operator never made fails the test
/// instead of hanging it.
async fn finish<T>(server: tokio::task::JoinHandle<T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(30), server)
        .await
        .expect("the operator did not make every call the test expects")
        .unwrap()
}

const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/percore-system/endpointslices?&labelSelector=kubernetes.io%2Fservice-name%3Dpercore-hosts";
const STATUS: &str = "/apis/percore.dev/v1alpha1/namespaces/apps/percoreapps/hello/status?&fieldManager=percore-operator";
const APP: &str = "/apis/percore.dev/v1alpha1/namespaces/apps/percoreapps/hello?";

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap()
}

#[tokio::test]
async fn a_new_app_gets_the_finalizer_first() {
    let hosts = Arc::new(FakeHosts::default());
    let (ctx, mut handle) = context(hosts.clone());
    let obj = app(
        json!({ "component": "oci://r.local/apps/hello:v1" }),
        &[],
        false,
    );
    let echo = serde_json::to_value(&obj).unwrap();
    let server = tokio::spawn(async move {
        let patch = expect(&mut handle, "PATCH", APP, echo).await;
        assert_eq!(patch[1]["op"], "add");
        assert_eq!(patch[1]["path"], "/metadata/finalizers");
        assert_eq!(patch[1]["value"], json!([FINALIZER]));
    });
    reconcile(Arc::new(obj), ctx).await.unwrap();
    finish(server).await;
    assert!(
        hosts.calls.lock().unwrap().is_empty(),
        "no host is touched before the finalizer"
    );
}

#[tokio::test]
async fn an_app_is_deployed_to_every_ready_host_and_its_status_says_so() {
    let hosts = Arc::new(FakeHosts::default());
    let (ctx, mut handle) = context(hosts.clone());
    let spec = json!({
        "component": "oci://r.local/apps/hello:v1",
        "routes": [{ "path": "/hello" }],
        "config": { "GREETING": "hi" },
        "limits": { "memoryMb": 32 },
    });
    let obj = app(spec, &[FINALIZER], false);
    let echo = serde_json::to_value(&obj).unwrap();
    let server = tokio::spawn(async move {
        expect(&mut handle, "GET", SLICES, endpoint_slices()).await;
        let status = expect(&mut handle, "PATCH", STATUS, echo).await;
        assert_eq!(status["status"]["observedGeneration"], 2);
        let ready = condition(&status, "Ready");
        assert_eq!(ready["status"], "True", "{status}");
        assert_eq!(ready["message"], "served by 2 of 2 hosts");
        assert_eq!(condition(&status, "Degraded")["status"], "False");
        let hosts = status["status"]["hosts"].as_array().unwrap();
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts[0]["host"], "host-a");
        assert_eq!(hosts[0]["digest"], "sha256:feed");
        assert_eq!(hosts[1]["version"], 1);
    });
    let action = reconcile(Arc::new(obj), ctx.clone()).await.unwrap();
    finish(server).await;
    assert_eq!(action, kube::runtime::controller::Action::requeue(RESYNC));
    let held = hosts.holds("host-a", "apps-hello").unwrap();
    assert_eq!(held.config["GREETING"], "hi");
    assert_eq!(held.limits.memory_mb, Some(32));
    assert!(hosts.holds("host-b", "apps-hello").is_some());
    assert!(
        hosts.holds("host-c", "apps-hello").is_none(),
        "a host that is not ready is left alone"
    );
    assert_eq!(
        *hosts.calls.lock().unwrap(),
        vec![
            "GET host-a apps-hello",
            "PUT host-a apps-hello",
            "GET host-b apps-hello",
            "PUT host-b apps-hello",
        ]
    );
}

#[tokio::test]
async fn a_host_that_fails_makes_the_app_degraded_and_the_others_still_serve() {
    let hosts = Arc::new(FakeHosts::default());
    hosts.down.lock().unwrap().push("host-b".into());
    let (ctx, mut handle) = context(hosts.clone());
    let obj = app(
        json!({ "component": "oci://r.local/apps/hello:v1" }),
        &[FINALIZER],
        false,
    );
    let echo = serde_json::to_value(&obj).unwrap();
    let server = tokio::spawn(async move {
        expect(&mut handle, "GET", SLICES, endpoint_slices()).await;
        let status = expect(&mut handle, "PATCH", STATUS, echo).await;
        assert_eq!(condition(&status, "Ready")["status"], "False");
        let degraded = condition(&status, "Degraded");
        assert_eq!(degraded["status"], "True");
        assert_eq!(degraded["reason"], "HostErrors");
        assert!(
            degraded["message"]
                .as_str()
                .unwrap()
                .starts_with("host-b: admin API http://10.0.0.2:9180 unreachable"),
            "{degraded}"
        );
        assert!(status["status"]["hosts"][1]["error"].is_string());
    });
    let action = reconcile(Arc::new(obj), ctx).await.unwrap();
    finish(server).await;
    assert_eq!(action, kube::runtime::controller::Action::requeue(RETRY));
    assert!(hosts.holds("host-a", "apps-hello").is_some());
}

#[tokio::test]
async fn an_invalid_spec_is_reported_and_changes_no_host() {
    let hosts = Arc::new(FakeHosts::default());
    let (ctx, mut handle) = context(hosts.clone());
    // What the CRD's pattern refuses, as if the schema had been bypassed.
    let obj = app(json!({ "component": "oci://hello" }), &[FINALIZER], false);
    let echo = serde_json::to_value(&obj).unwrap();
    let server = tokio::spawn(async move {
        expect(&mut handle, "GET", SLICES, endpoint_slices()).await;
        let status = expect(&mut handle, "PATCH", STATUS, echo).await;
        let degraded = condition(&status, "Degraded");
        assert_eq!(degraded["reason"], "InvalidSpec");
        assert!(
            degraded["message"]
                .as_str()
                .unwrap()
                .contains("names no repository")
        );
    });
    reconcile(Arc::new(obj), ctx).await.unwrap();
    finish(server).await;
    assert!(hosts.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn config_from_a_secret_and_a_host_selector_are_honoured() {
    let hosts = Arc::new(FakeHosts::default());
    // host-b served the app before the selector narrowed it to host-a.
    let old = Desired {
        component: percore_operator::plan::ComponentDoc {
            oci: "oci://r.local/apps/hello:v1".into(),
        },
        routes: Vec::new(),
        config: BTreeMap::new(),
        limits: Default::default(),
        kind: None,
        warmup: Vec::new(),
    };
    let b = HostRef {
        name: "host-b".into(),
        admin: "http://10.0.0.2:9180".into(),
    };
    Fake(hosts.clone())
        .put(&b, "apps-hello", &old)
        .await
        .unwrap();
    hosts.calls.lock().unwrap().clear();
    let (ctx, mut handle) = context(hosts.clone());
    let spec = PercoreAppSpec {
        component: "oci://r.local/apps/hello:v1".into(),
        kind: None,
        routes: Vec::new(),
        config: BTreeMap::from([("MODE".to_owned(), "spec".to_owned())]),
        config_from: vec![ConfigFrom {
            secret_ref: SecretRef {
                name: "hello-secrets".into(),
            },
        }],
        limits: Default::default(),
        warmup: Vec::new(),
        host_selector: Some(HostSelector {
            match_labels: BTreeMap::from([("pool".to_owned(), "edge".to_owned())]),
        }),
    };
    let obj = app(serde_json::to_value(&spec).unwrap(), &[FINALIZER], false);
    let echo = serde_json::to_value(&obj).unwrap();
    let server = tokio::spawn(async move {
        expect(&mut handle, "GET", SLICES, endpoint_slices()).await;
        let pods = json!({
            "apiVersion": "v1", "kind": "PodList", "metadata": {},
            "items": [{ "apiVersion": "v1", "kind": "Pod",
                        "metadata": { "name": "host-a", "labels": { "pool": "edge" } } }],
        });
        expect(
            &mut handle,
            "GET",
            "/api/v1/namespaces/percore-system/pods?&labelSelector=pool%3Dedge",
            pods,
        )
        .await;
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": "hello-secrets", "namespace": "apps" },
            // base64 of "s3cret" and "secret"
            "data": { "TOKEN": "czNjcmV0", "MODE": "c2VjcmV0" },
        });
        expect(
            &mut handle,
            "GET",
            "/api/v1/namespaces/apps/secrets/hello-secrets",
            secret,
        )
        .await;
        let status = expect(&mut handle, "PATCH", STATUS, echo).await;
        assert_eq!(status["status"]["hosts"].as_array().unwrap().len(), 1);
        assert_eq!(condition(&status, "Ready")["status"], "True");
    });
    reconcile(Arc::new(obj), ctx).await.unwrap();
    finish(server).await;
    let held = hosts.holds("host-a", "apps-hello").unwrap();
    assert_eq!(held.config["TOKEN"], "s3cret");
    assert_eq!(
        held.config["MODE"], "spec",
        "the spec's config wins over the Secret's"
    );
    assert!(
        hosts.holds("host-b", "apps-hello").is_none(),
        "the host no longer selected lost the app"
    );
}

#[tokio::test]
async fn deleting_an_app_removes_it_from_every_host_then_the_finalizer() {
    let hosts = Arc::new(FakeHosts::default());
    let (ctx, mut handle) = context(hosts.clone());
    let spec = json!({ "component": "oci://r.local/apps/hello:v1" });
    // Deployed first.
    let obj = app(spec.clone(), &[FINALIZER], false);
    let echo = serde_json::to_value(&obj).unwrap();
    let server = tokio::spawn(async move {
        expect(&mut handle, "GET", SLICES, endpoint_slices()).await;
        expect(&mut handle, "PATCH", STATUS, echo).await;
        handle
    });
    reconcile(Arc::new(obj), ctx.clone()).await.unwrap();
    let mut handle = finish(server).await;
    assert!(hosts.holds("host-a", "apps-hello").is_some());

    // One host refuses the removal: the finalizer stays and the error says which host.
    hosts.down.lock().unwrap().push("host-b".into());
    let deleting = app(spec.clone(), &[FINALIZER], true);
    let server = tokio::spawn(async move {
        expect(&mut handle, "GET", SLICES, endpoint_slices()).await;
        handle
    });
    let e = reconcile(Arc::new(deleting.clone()), ctx.clone())
        .await
        .unwrap_err();
    let mut handle = finish(server).await;
    assert!(
        e.to_string().contains("removing the app from host-b"),
        "{e}"
    );
    assert!(hosts.holds("host-a", "apps-hello").is_none());

    // It comes back: removed there too, and only then the finalizer goes.
    hosts.down.lock().unwrap().clear();
    let echo = serde_json::to_value(&deleting).unwrap();
    let server = tokio::spawn(async move {
        expect(&mut handle, "GET", SLICES, endpoint_slices()).await;
        let patch = expect(&mut handle, "PATCH", APP, echo).await;
        assert_eq!(patch[1]["op"], "remove", "{patch}");
        assert_eq!(patch[1]["path"], "/metadata/finalizers/0");
    });
    reconcile(Arc::new(deleting), ctx).await.unwrap();
    finish(server).await;
    assert!(hosts.holds("host-b", "apps-hello").is_none());
}
