//! Bad components are refused with an error that names the problem.

use percore_engine::Error;

fn load(bytes: &[u8]) -> Error {
    crate::engine()
        .load(bytes)
        .expect_err("the component must be refused")
}

fn wat(name: &str) -> Vec<u8> {
    std::fs::read(crate::guest_path(name)).unwrap()
}

#[test]
fn bytes_that_are_not_wasm() {
    let err = load(b"#!/bin/sh\necho hello\n");
    assert!(matches!(err, Error::NotWasm(_)), "{err}");
    assert!(err.to_string().contains("magic"), "{err}");
    assert!(matches!(load(b""), Error::NotWasm(_)));
}

#[test]
fn truncated_and_corrupt_components() {
    let mut bytes = std::fs::read(crate::guest_path("hello")).unwrap();
    bytes.truncate(bytes.len() / 2);
    assert!(matches!(load(&bytes), Error::Invalid(_)));
    assert!(matches!(load(b"\0asm\x0d\x00"), Error::Invalid(_)));
}

#[test]
fn a_core_module_is_not_a_component() {
    let err = load(&wat("not-a-component"));
    assert!(matches!(err, Error::CoreModule), "{err}");
    assert!(err.to_string().contains("not a component"));
}

#[test]
fn a_component_of_another_world() {
    let err = load(&wat("wrong-world"));
    assert!(matches!(err, Error::WrongWorld(_)), "{err}");
    assert!(
        err.to_string().contains("edge:handler/guest@0.1.0"),
        "{err}"
    );
    let err = load(&wat("empty-component"));
    assert!(matches!(err, Error::WrongWorld(_)), "{err}");
}

#[test]
fn an_import_the_host_does_not_provide_is_named() {
    let err = load(&wat("unknown-import"));
    match &err {
        Error::UnsupportedImport { name, .. } => assert_eq!(name, "acme:secret/vault@1.0.0"),
        other => panic!("expected UnsupportedImport, got {other}"),
    }
    assert!(err.to_string().contains("acme:secret/vault@1.0.0"));
}

#[test]
fn artifacts_round_trip_and_garbage_artifacts_are_refused() {
    let engine = crate::engine();
    let bytes = std::fs::read(crate::guest_path("hello")).unwrap();
    let artifact = engine.compile(&bytes).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hello.cwasm");
    std::fs::write(&path, &artifact).unwrap();
    let handler = engine.load_artifact(&path).unwrap();
    let response = handler
        .handle_fresh(
            Default::default(),
            Default::default(),
            &percore_engine::Request {
                method: "GET",
                path_with_query: "/",
                headers: &[],
                body: b"",
            },
            Default::default(),
        )
        .result
        .unwrap();
    assert_eq!(response.body, b"Hello from percore!\n");

    // A mapped artifact must never be rewritten in place (truncating it under the mapping
    // would fault): garbage goes to another file, as percore's writers do by renaming.
    let garbage = dir.path().join("garbage.cwasm");
    std::fs::write(&garbage, b"not an artifact").unwrap();
    assert!(matches!(
        engine.load_artifact(&garbage),
        Err(Error::Artifact { .. })
    ));
    // `load_file` tells a component from an artifact by its content.
    assert!(engine.load_file(&path).is_ok());
    assert!(engine.load_file(&crate::guest_path("hello")).is_ok());
}

#[test]
fn the_artifact_cache_compiles_a_component_once() {
    let engine = crate::engine();
    let bytes = std::fs::read(crate::guest_path("hello")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = percore_engine::ArtifactCache::new(dir.path(), engine.config());
    let first = cache.get_or_compile(engine, &bytes).unwrap();
    assert!(first.compiled);
    assert_eq!(first.component_sha256, percore_engine::sha256_hex(&bytes));
    assert_eq!(first.path, cache.path_for(&first.component_sha256));
    let again = cache.get_or_compile(engine, &bytes).unwrap();
    assert!(!again.compiled);
    assert_eq!(again.path, first.path);
    assert!(engine.load_artifact(&again.path).is_ok());
}
