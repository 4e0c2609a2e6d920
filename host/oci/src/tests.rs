use super::*;

fn settings(insecure: &[&str]) -> Settings {
    Settings {
        insecure: insecure.iter().map(|s| s.to_string()).collect(),
        ..Settings::default()
    }
}

#[test]
fn loopback_registries_are_plain_http_others_need_tls() {
    let s = settings(&["registry.lan:5000"]);
    for plain in [
        "localhost:5000",
        "localhost",
        "127.0.0.1:5000",
        "127.1.2.3",
        "[::1]:5000",
        "registry.lan:5000",
    ] {
        assert!(plain_http(plain, &s), "{plain}");
    }
    for tls in [
        "ghcr.io",
        "registry.lan",
        "10.0.0.1:5000",
        "localhost.example.com",
    ] {
        assert!(!plain_http(tls, &s), "{tls}");
    }
}

#[test]
fn references_take_the_scheme_or_not() {
    let r = reference("oci://localhost:5000/apps/hello:v1").unwrap();
    assert_eq!(r.resolve_registry(), "localhost:5000");
    assert_eq!(r.repository(), "apps/hello");
    assert_eq!(r.tag(), Some("v1"));
    assert_eq!(
        r.whole(),
        reference("localhost:5000/apps/hello:v1").unwrap().whole()
    );
    let e = reference("oci://Bad Name").unwrap_err();
    assert!(e.to_string().contains("not an OCI reference"), "{e}");
    assert_eq!(e.status(), 400);
    assert!(is_oci("oci://x/y") && !is_oci("target/guests/hello.wasm"));
}

fn layer(media_type: &str) -> OciDescriptor {
    OciDescriptor {
        media_type: media_type.into(),
        digest: format!("sha256:{:064x}", media_type.len()),
        size: 8,
        ..OciDescriptor::default()
    }
}

fn manifest(layers: &[&str]) -> OciImageManifest {
    OciImageManifest {
        layers: layers.iter().map(|m| layer(m)).collect(),
        ..OciImageManifest::default()
    }
}

#[test]
fn the_wasm_layer_is_found_in_each_layout() {
    let cncf = manifest(&[WASM_LAYER]);
    assert_eq!(wasm_layer(&cncf, "r").unwrap().media_type, WASM_LAYER);
    // Spin: the Wasm beside static files.
    let spin = manifest(&[
        "application/vnd.wasm.content.layer.v1+data",
        SPIN_WASM_LAYER,
    ]);
    assert_eq!(wasm_layer(&spin, "r").unwrap().media_type, SPIN_WASM_LAYER);
}

#[test]
fn an_image_without_wasm_or_with_several_components_is_refused_by_name() {
    let image = manifest(&["application/vnd.oci.image.layer.v1.tar+gzip"]);
    let e = wasm_layer(&image, "localhost:5000/nginx:1")
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds no Wasm") && e.contains("tar+gzip"), "{e}");
    let two = manifest(&[SPIN_WASM_LAYER, SPIN_WASM_LAYER]);
    let e = wasm_layer(&two, "r").unwrap_err().to_string();
    assert!(e.contains("2 Wasm layers"), "{e}");
}

#[test]
fn the_layer_sink_stops_at_its_limit() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        use tokio::io::AsyncWriteExt;
        let mut sink = Bounded::new(10);
        sink.write_all(b"0123456789").await.unwrap();
        let e = sink.write_all(b"x").await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::FileTooLarge);
        assert_eq!(sink.bytes.len(), 10);
    });
}

#[test]
fn pushing_refuses_what_is_not_wasm_before_any_network() {
    let e = push(
        b"#!/bin/sh".to_vec(),
        "localhost:1/x:y",
        &Settings::default(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Push { .. }), "{e}");
}

#[test]
fn an_unreachable_registry_is_named() {
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    let s = Settings {
        timeout: Duration::from_secs(20),
        ..Settings::default()
    };
    let e = pull("oci://127.0.0.1:1/apps/hello:v1", &s).unwrap_err();
    assert!(matches!(e, Error::Unreachable { .. }), "{e:?}");
    assert!(
        e.to_string().contains("127.0.0.1:1 cannot be reached"),
        "{e}"
    );
}
