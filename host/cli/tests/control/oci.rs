//! Components as OCI artifacts against a real registry on loopback (Debian's `docker-registry`,
//! distribution 2.8), one per test: push and pull, deploys from a registry pinned by digest,
//! other tools' layouts, and every way a registry or an artifact can be wrong.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::guest;
use crate::{Host, percore};

/// A registry of its own in a temporary directory, stopped when dropped.
struct Registry {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Self {
        Self::start_with_users(&[])
    }

    /// With `users`, every request needs HTTP basic credentials (htpasswd, bcrypt).
    fn start_with_users(users: &[(&str, &str)]) -> Self {
        let bin = Path::new("/usr/bin/docker-registry");
        assert!(
            bin.exists(),
            "docker-registry is missing: run scripts/install-test-tools.sh (the README's test command does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut auth = String::new();
        if !users.is_empty() {
            let mut lines = String::new();
            for (user, password) in users {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .expect("htpasswd (apache2-utils): run scripts/install-test-tools.sh");
                lines.push_str(String::from_utf8(out.stdout).unwrap().trim());
                lines.push('\n');
            }
            std::fs::write(dir.path().join("htpasswd"), lines).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: percore-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            );
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n  secret: percore-test\n{auth}",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let registry = Self { child, addr, dir };
        for _ in 0..200 {
            if matches!(registry.get("/v2/").0, 200 | 401) {
                return registry;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "the registry did not start: {}",
            std::fs::read_to_string(registry.dir.path().join("registry.log")).unwrap_or_default()
        );
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build(),
        )
    }

    fn get(&self, path: &str) -> (u16, String) {
        match Self::agent()
            .get(format!("http://{}{path}", self.addr))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .call()
        {
            Ok(mut r) => (
                r.status().as_u16(),
                r.body_mut().read_to_string().unwrap_or_default(),
            ),
            Err(_) => (0, String::new()),
        }
    }

    /// `oci://ADDR/REPOSITORY:TAG`.
    fn reference(&self, repository_and_tag: &str) -> String {
        format!("oci://{}/{repository_and_tag}", self.addr)
    }

    /// Upload a blob the way any client does (start an upload, then put the bytes); returns its
    /// descriptor with `media_type`.
    fn put_blob(&self, repository: &str, media_type: &str, bytes: &[u8]) -> Value {
        let digest = format!("sha256:{}", percore_engine::sha256_hex(bytes));
        let agent = Self::agent();
        let started = agent
            .post(format!(
                "http://{}/v2/{repository}/blobs/uploads/",
                self.addr
            ))
            .send_empty()
            .unwrap();
        assert_eq!(started.status(), 202, "starting an upload");
        let location = started.headers()["location"].to_str().unwrap().to_owned();
        let url = if location.starts_with("http") {
            location
        } else {
            format!("http://{}{location}", self.addr)
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        let done = agent
            .put(format!("{url}{sep}digest={}", digest.replace(':', "%3A")))
            .header("content-type", "application/octet-stream")
            .send(bytes)
            .unwrap();
        assert_eq!(done.status(), 201, "finishing an upload");
        json!({ "mediaType": media_type, "digest": digest, "size": bytes.len() })
    }

    /// Put an OCI image manifest with this config and these layers under `tag`.
    fn put_manifest(&self, repository: &str, tag: &str, config: Value, layers: Vec<Value>) {
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config,
            "layers": layers,
        });
        let response = Self::agent()
            .put(format!(
                "http://{}/v2/{repository}/manifests/{tag}",
                self.addr
            ))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .send(serde_json::to_vec(&manifest).unwrap().as_slice())
            .unwrap();
        assert_eq!(response.status(), 201, "putting a manifest");
    }

    /// Where the registry keeps a blob's bytes.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `percore ARGS` with `env`; (success, stdout, stderr).
fn run(args: &[&str], env: &[(&str, &Path)]) -> (bool, String, String) {
    let out = percore()
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `sha256:` digest at the end of a pinned reference in `text`.
fn pinned_digest(text: &str) -> String {
    let at = text.find("@sha256:").expect("a pinned reference") + 1;
    text[at..at + 71].to_owned()
}

#[test]
fn push_then_pull_gives_back_the_same_bytes_in_the_cncf_layout() {
    let registry = Registry::start();
    let reference = registry.reference("apps/hello:v1");
    let (ok, pushed, err) = run(&["push", &guest("hello"), &reference], &[]);
    assert!(ok, "{err}");
    let digest = pinned_digest(&pushed);

    // The layout other tools read: one application/wasm layer, the Wasm config.
    let (status, manifest) = registry.get(&format!("/v2/apps/hello/manifests/{digest}"));
    assert_eq!(status, 200);
    let manifest: Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hello.wasm");
    let (ok, pulled, err) = run(&["pull", &reference, "-o", out.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    assert_eq!(pinned_digest(&pulled), digest);
    assert!(pulled.contains("wasm layout"), "{pulled}");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(guest("hello")).unwrap()
    );

    // `invoke` runs a reference as it runs a file.
    let (ok, answer, err) = run(&["invoke", &reference, "--body-only"], &[]);
    assert!(ok, "{err}");
    assert!(answer.contains("Hello"), "{answer}");
}

#[test]
fn a_deploy_from_a_registry_is_pinned_and_a_restart_pulls_nothing() {
    let registry = Registry::start();
    let reference = registry.reference("apps/site:v1");
    assert!(run(&["push", &guest("hello"), &reference], &[]).0);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let host = Host::start(&state, &[]);
    let out = host.cli_ok(&["deploy", &reference, "--route", "/site"]);
    assert!(out.contains("deployed `site`"), "{out}");
    let digest = pinned_digest(&out);
    let (status, body) = host.request("GET", "/site", None);
    assert_eq!(status, 200);
    assert!(body.contains("Hello"), "{body}");
    let (_, shown) = host.admin("GET", "/v1/deployments/site", None, &[]);
    assert_eq!(shown["oci"]["digest"], digest.as_str());
    assert_eq!(shown["oci"]["reference"], reference.as_str());

    // The tag moves to another component, then the registry goes away. A restart serves what
    // was deployed, from the state directory.
    assert!(run(&["push", &guest("echo"), &reference], &[]).0);
    drop(registry);
    host.stop();
    let host = Host::start(&state, &[]);
    let (_, shown) = host.admin("GET", "/v1/deployments/site", None, &[]);
    assert_eq!(shown["oci"]["digest"], digest.as_str());
    let (status, body) = host.request("GET", "/site", None);
    assert_eq!(status, 200);
    assert!(
        body.contains("Hello"),
        "the restart served another artifact: {body}"
    );

    // Updating from the unreachable registry fails clearly and leaves version 1 serving.
    let out = host.cli(&["deploy", &reference, "--route", "/site"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot be reached") && err.contains("HTTP 502"),
        "{err}"
    );
    assert_eq!(host.ls(), vec![("site".to_owned(), 1)]);
    assert_eq!(host.request("GET", "/site", None).0, 200);
}

#[test]
fn spins_layout_is_read_and_what_holds_no_wasm_is_refused_by_name() {
    let registry = Registry::start();
    let hello = std::fs::read(guest("hello")).unwrap();
    // Spin's layout: the locked app as config, a static file and the component as layers.
    let config = registry.put_blob(
        "spin/app",
        "application/vnd.fermyon.spin.application.v1+config",
        br#"{"spin_lock_version":1,"components":[]}"#,
    );
    let data = registry.put_blob(
        "spin/app",
        "application/vnd.wasm.content.layer.v1+data",
        b"static",
    );
    let wasm = registry.put_blob(
        "spin/app",
        "application/vnd.wasm.content.layer.v1+wasm",
        &hello,
    );
    registry.put_manifest("spin/app", "v1", config, vec![data, wasm]);
    // A container image: a tar layer.
    let image_config = registry.put_blob(
        "images/nginx",
        "application/vnd.oci.image.config.v1+json",
        b"{}",
    );
    let tar = registry.put_blob(
        "images/nginx",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        b"\x1f\x8bnot really",
    );
    registry.put_manifest("images/nginx", "1", image_config, vec![tar]);
    // A layer that claims to be Wasm and is not.
    let fake_config = registry.put_blob("apps/fake", "application/vnd.wasm.config.v0+json", b"{}");
    let fake = registry.put_blob("apps/fake", "application/wasm", b"#!/bin/sh\necho hi\n");
    registry.put_manifest("apps/fake", "v1", fake_config, vec![fake]);

    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(&dir.path().join("state"), &[]);
    let out = host.cli_ok(&["deploy", &registry.reference("spin/app:v1")]);
    assert!(out.contains("deployed `app`"), "{out}");
    assert_eq!(host.request("GET", "/app", None).0, 200);

    for (reference, words) in [
        ("images/nginx:1", "holds no Wasm"),
        ("apps/fake:v1", "Wasm magic"),
        ("apps/missing:v1", "not found"),
    ] {
        let out = host.cli(&["deploy", &registry.reference(reference), "--name", "bad"]);
        assert!(!out.status.success(), "{reference}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(words), "{reference}: {err}");
    }
    assert_eq!(host.ls(), vec![("app".to_owned(), 1)]);
}

#[test]
fn content_that_does_not_match_its_digest_or_is_over_the_limit_is_refused() {
    let registry = Registry::start();
    let reference = registry.reference("apps/hello:v1");
    assert!(run(&["push", &guest("hello"), &reference], &[]).0);
    let (_, manifest) = registry.get("/v2/apps/hello/manifests/v1");
    let manifest: Value = serde_json::from_str(&manifest).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();

    // Over the limit: the host takes components up to 1 MiB; a 2 MiB layer is refused from its
    // size in the manifest, and one whose manifest lies about its size as it streams in.
    let mut big = b"\0asm\x01\0\0\0".to_vec();
    big.resize(2 << 20, 0);
    let config = registry.put_blob("apps/big", "application/vnd.wasm.config.v0+json", b"{}");
    let honest = registry.put_blob("apps/big", "application/wasm", &big);
    let mut lying = honest.clone();
    lying["size"] = json!(1000);
    registry.put_manifest("apps/big", "honest", config.clone(), vec![honest]);
    registry.put_manifest("apps/big", "lying", config, vec![lying]);

    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(&dir.path().join("state"), &["--admin-max-upload-mb", "1"]);
    for tag in ["honest", "lying"] {
        let out = host.cli(&[
            "deploy",
            &registry.reference(&format!("apps/big:{tag}")),
            "--name",
            "big",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && err.contains("the limit is 1048576 bytes")
                && err.contains("413"),
            "{tag}: {err}"
        );
    }

    // The registry's copy of the layer is damaged (same size, other bytes): the pull fails on
    // the digest and nothing is deployed.
    let file = registry.blob_file(&layer);
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let out = host.cli(&["deploy", &reference]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("does not match its digest"),
        "{err}"
    );
    let out = dir.path().join("x.wasm");
    let (ok, _, err) = run(&["pull", &reference, "-o", out.to_str().unwrap()], &[]);
    assert!(!ok && err.contains("does not match its digest"), "{err}");
    assert!(!out.exists(), "a damaged pull left a file");
    assert!(host.ls().is_empty());
}

#[test]
fn credentials_come_from_the_docker_config() {
    let registry = Registry::start_with_users(&[("ci", "s3cret")]);
    let reference = registry.reference("private/hello:v1");
    let dir = tempfile::tempdir().unwrap();
    let docker = dir.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    let env = [("DOCKER_CONFIG", docker.as_path())];

    // No credentials: refused, and the error says how to log in.
    let (ok, _, err) = run(&["push", &guest("hello"), &reference], &env);
    assert!(!ok && err.contains("docker login"), "{err}");

    let login = |password: &str| {
        let auth = base64_encode(format!("ci:{password}").as_bytes());
        std::fs::write(
            docker.join("config.json"),
            json!({ "auths": { registry.addr.clone(): { "auth": auth } } }).to_string(),
        )
        .unwrap();
    };
    login("wrong");
    let (ok, _, err) = run(&["push", &guest("hello"), &reference], &env);
    assert!(!ok && err.contains("refused the credentials"), "{err}");

    login("s3cret");
    let (ok, _, err) = run(&["push", &guest("hello"), &reference], &env);
    assert!(ok, "{err}");
    let host = Host::start_with_env(&dir.path().join("state"), &[], &env);
    host.cli_ok(&["deploy", &reference]);
    assert_eq!(host.request("GET", "/hello", None).0, 200);

    // A config file that is not JSON is reported, not taken for anonymous access.
    std::fs::write(docker.join("config.json"), "{not json").unwrap();
    let out = dir.path().join("x.wasm");
    let (ok, _, err) = run(&["pull", &reference, "-o", out.to_str().unwrap()], &env);
    assert!(!ok && err.contains("registry credentials"), "{err}");
}

#[test]
fn serve_takes_references_on_the_command_line_and_in_the_configuration_file() {
    let registry = Registry::start();
    let reference = registry.reference("apps/echo:v1");
    let (ok, pushed, err) = run(&["push", &guest("echo"), &reference], &[]);
    assert!(ok, "{err}");
    let pinned = format!("oci://{}", pushed.lines().last().unwrap().trim());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("percore.toml");
    std::fs::write(
        &config,
        format!(
            "[[deployment]]\nname = \"echo\"\ncomponent = \"{pinned}\"\nroutes = [{{ path = \"/echo\" }}]\n"
        ),
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let env = [("PERCORE_ARTIFACTS", cache.join("artifacts"))];
    let env: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (*k, v.as_path())).collect();
    let answer = |args: &[&str]| {
        let mut child = percore()
            .args(["serve", "--listen", "127.0.0.1:0", "--cores", "1"])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let url = line.rsplit("http://").next().unwrap().trim().to_owned();
        let got = crate::curl(&format!("http://{url}/echo"), "POST", Some("ping"), &[]);
        let _ = child.kill();
        let _ = child.wait();
        got
    };
    assert_eq!(
        answer(&["--config", config.to_str().unwrap()]),
        (200, "ping".into())
    );
    assert_eq!(answer(&[&format!("echo={reference}")]).0, 200);
    // Pinned by digest and pulled once: served with the registry gone.
    drop(registry);
    assert_eq!(
        answer(&["--config", config.to_str().unwrap()]),
        (200, "ping".into())
    );
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
