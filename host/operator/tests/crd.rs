//! The CRD in the manifests is the one the operator's types make.

#[test]
fn the_committed_crd_is_the_generated_one() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/kubernetes/crd.yaml"
    );
    let committed = std::fs::read_to_string(path).unwrap();
    assert_eq!(
        committed.trim_end(),
        percore_operator::crd_json(),
        "deploy/kubernetes/crd.yaml is stale: run `percore-operator crd > deploy/kubernetes/crd.yaml`"
    );
}
