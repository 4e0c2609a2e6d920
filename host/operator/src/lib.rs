//! percore's Kubernetes operator. A `PercoreApp` (group `percore.dev`) names a component in an
//! OCI registry, its routes, limits and configuration; the operator finds the percore hosts
//! behind their headless Service and brings each selected host's admin API to that app, then
//! reports per host what it serves.
//!
//! The decisions are pure functions in [`plan`]; [`reconcile`] does the I/O around them.
#![forbid(unsafe_code)]

pub mod admin;
pub mod crd;
pub mod hosts;
pub mod plan;
pub mod reconcile;

use kube::CustomResourceExt;

/// The CustomResourceDefinition of `PercoreApp`, as YAML-compatible JSON.
pub fn crd_json() -> String {
    serde_json::to_string_pretty(&crd::PercoreApp::crd()).expect("the CRD serializes")
}
