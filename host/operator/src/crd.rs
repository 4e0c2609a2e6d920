//! The `PercoreApp` resource (group `percore.dev`): one component served by a set of percore
//! hosts. Its schema is the CRD's (`percore-operator crd`), so the API server rejects a spec of
//! the wrong shape before the operator sees it; the operator checks again what a schema cannot
//! (a reference that parses, a name that fits a host's deployment names).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A component that percore hosts serve.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "percore.dev",
    version = "v1alpha1",
    kind = "PercoreApp",
    namespaced,
    status = "PercoreAppStatus",
    shortname = "papp",
    printcolumn = r#"{"name":"Component","type":"string","jsonPath":".spec.component"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PercoreAppSpec {
    /// The component as an OCI artifact: `oci://REGISTRY/REPOSITORY:TAG` or
    /// `...@sha256:DIGEST`. Each host pulls it once and keeps the digest it got; to roll out a
    /// new build, change this reference (a new tag or digest).
    #[schemars(regex(pattern = r"^oci://[^\s]+$"))]
    pub component: String,
    /// The kind of guest, checked against the component when given: `edge`, `wasi-http`, `cgi`
    /// or `bare`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<GuestKind>,
    /// Where the app is reached on every host (default: `/<name>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// Configuration values the guest reads.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// Secrets (in the app's namespace) whose keys become configuration values; `config` wins
    /// over them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_from: Vec<ConfigFrom>,
    /// Limits per request and per core; absent values take each host's defaults.
    #[serde(default, skip_serializing_if = "Limits::is_empty")]
    pub limits: Limits,
    /// Requests (`PATH` or `METHOD PATH`, no body) each new instance runs before its snapshot,
    /// where a host resets instances: every request then starts from the state they left (an
    /// interpreted guest's first-call work done once). None by default; at most 16.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub warmup: Vec<String>,
    /// Which hosts serve the app, by the labels of their pods (default: every host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_selector: Option<HostSelector>,
}

/// The kinds of guest a host tells apart.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum GuestKind {
    Edge,
    WasiHttp,
    Cgi,
    Bare,
}

impl GuestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GuestKind::Edge => "edge",
            GuestKind::WasiHttp => "wasi-http",
            GuestKind::Cgi => "cgi",
            GuestKind::Bare => "bare",
        }
    }
}

/// A route: a path prefix, and a host name to match if given.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct Route {
    #[schemars(regex(pattern = r"^/"))]
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub host: Option<String>,
}

/// A source of configuration values.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigFrom {
    pub secret_ref: SecretRef,
}

/// A Secret by name.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretRef {
    #[schemars(length(min = 1))]
    pub name: String,
}

/// Limits of the app.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Memory cap per instance, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub memory_mb: Option<u64>,
    /// CPU budget per request, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub cpu_ms: Option<u64>,
    /// Wall-clock deadline per request, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub timeout_ms: Option<u64>,
    /// Largest response body, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_response_mb: Option<u64>,
    /// Instances one core keeps at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_instances_per_core: Option<u64>,
}

impl Limits {
    fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}

/// Hosts chosen by the labels of their pods.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// What the operator last saw of the app.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PercoreAppStatus {
    /// The generation of the spec this status is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (every selected host serves the spec) and `Degraded` (with the reason).
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Each selected host: the digest it serves and its deployment's version, or its error.
    #[serde(default)]
    pub hosts: Vec<HostStatus>,
}

/// A status condition, as Kubernetes conventions have them.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// One host's part of the app.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostStatus {
    /// The host (its pod's name, else its address).
    pub host: String,
    /// The manifest digest the host serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The version of the host's deployment (1, then +1 per update).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Why the host does not serve the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
