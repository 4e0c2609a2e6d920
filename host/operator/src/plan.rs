//! The operator's decisions, as pure functions: what a host should hold for an app, what to do
//! about what it holds, and the status that follows. No I/O here, so every case has a test.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::crd::{Condition, HostStatus, PercoreAppSpec, PercoreAppStatus};

/// A route as the admin API has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub path: String,
}

/// Limits as the admin API has them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instances_per_core: Option<u64>,
}

/// Where a deployment's component came from, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciDoc {
    pub reference: String,
    pub digest: String,
}

/// One deployment as a host's admin API shows it (`GET /v1/deployments/{name}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Actual {
    pub version: u64,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub routes: Vec<RouteDoc>,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: LimitsDoc,
    #[serde(default)]
    pub oci: Option<OciDoc>,
    /// As the host keeps it: `METHOD PATH`.
    #[serde(default)]
    pub warmup: Vec<String>,
}

/// The component of a deploy request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentDoc {
    pub oci: String,
}

/// What a host should hold: the body of `PUT /v1/deployments/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Desired {
    pub component: ComponentDoc,
    pub routes: Vec<RouteDoc>,
    pub config: BTreeMap<String, String>,
    pub limits: LimitsDoc,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Written as a host keeps it (`METHOD PATH`), so that it compares with what hosts show.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warmup: Vec<String>,
}

/// The name of an app's deployment on a host: `<namespace>-<name>`, in the characters a host
/// accepts (a-z, 0-9, `-`, `_`; at most 63).
pub fn deployment_name(namespace: &str, name: &str) -> Result<String, String> {
    let joined = format!("{namespace}-{name}").replace('.', "-");
    let valid = joined.len() <= 63
        && joined
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && joined.as_bytes()[0].is_ascii_alphanumeric();
    if valid {
        Ok(joined)
    } else {
        Err(format!(
            "`{joined}` cannot name a deployment on a host (1-63 of a-z, 0-9, '-' and '_'): shorten the namespace or the app's name"
        ))
    }
}

/// What hosts should hold for `spec`, with `from_secrets` (the values of `configFrom`) merged
/// under its own config. An error is a spec no host could take; it is reported, not retried.
pub fn desired(
    name: &str,
    spec: &PercoreAppSpec,
    from_secrets: BTreeMap<String, String>,
) -> Result<Desired, String> {
    let reference = spec
        .component
        .strip_prefix("oci://")
        .filter(|r| !r.is_empty() && !r.contains(char::is_whitespace))
        .ok_or_else(|| {
            format!(
                "component {:?} is not an oci:// reference (oci://REGISTRY/REPOSITORY:TAG)",
                spec.component
            )
        })?;
    if !reference.contains('/') {
        return Err(format!(
            "component {:?} names no repository (oci://REGISTRY/REPOSITORY:TAG)",
            spec.component
        ));
    }
    let mut routes: Vec<RouteDoc> = spec
        .routes
        .iter()
        .map(|r| RouteDoc {
            host: r.host.clone(),
            path: r.path.clone(),
        })
        .collect();
    if routes.is_empty() {
        routes.push(RouteDoc {
            host: None,
            path: format!("/{name}"),
        });
    }
    if let Some(bad) = routes.iter().find(|r| !r.path.starts_with('/')) {
        return Err(format!("route path {:?} must start with '/'", bad.path));
    }
    let l = &spec.limits;
    let limits = LimitsDoc {
        memory_mb: l.memory_mb,
        cpu_ms: l.cpu_ms,
        timeout_ms: l.timeout_ms,
        max_response_mb: l.max_response_mb,
        max_instances_per_core: l.max_instances_per_core,
    };
    if [
        limits.memory_mb,
        limits.cpu_ms,
        limits.timeout_ms,
        limits.max_response_mb,
        limits.max_instances_per_core,
    ]
    .contains(&Some(0))
    {
        return Err("limits must be above zero".into());
    }
    let mut config = from_secrets;
    config.extend(spec.config.clone());
    Ok(Desired {
        component: ComponentDoc {
            oci: spec.component.clone(),
        },
        routes,
        config,
        limits,
        kind: spec.kind.map(|k| k.as_str().to_owned()),
        warmup: spec.warmup.iter().map(|w| warmup_as_kept(w)).collect(),
    })
}

/// A warm-up request as a host keeps it: a path alone is a `GET`, spaces collapse. Anything
/// else is sent as written, and the host refuses it with its reason.
fn warmup_as_kept(request: &str) -> String {
    match request.split_whitespace().collect::<Vec<_>>().as_slice() {
        [path] => format!("GET {path}"),
        [method, path] => format!("{method} {path}"),
        _ => request.to_owned(),
    }
}

/// What to do on one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Deploy (or update) the desired deployment.
    Deploy,
    /// The host holds what it should.
    Keep,
    /// The host holds a deployment it should not (the app is deleted, or the host is no longer
    /// selected).
    Remove,
}

/// Compare what a host should hold (`None`: nothing) with what it holds.
pub fn step(desired: Option<&Desired>, actual: Option<&Actual>) -> Step {
    match (desired, actual) {
        (Some(_), None) => Step::Deploy,
        (Some(d), Some(a)) if !matches(d, a) => Step::Deploy,
        (Some(_), Some(_)) | (None, None) => Step::Keep,
        (None, Some(_)) => Step::Remove,
    }
}

/// Whether a host's deployment is the desired one. The component is compared by reference: a
/// host keeps the digest it pulled, so a tag pushed again is not a change.
fn matches(d: &Desired, a: &Actual) -> bool {
    let same_component = a
        .oci
        .as_ref()
        .is_some_and(|o| bare(&o.reference) == bare(&d.component.oci));
    // A host reports the kind it found (`wasi-http@0.2`); a stated kind is its prefix.
    let same_kind = match (&d.kind, &a.kind) {
        (None, _) => true,
        (Some(want), Some(found)) => found == want || found.starts_with(&format!("{want}@")),
        (Some(_), None) => false,
    };
    same_component
        && same_kind
        && a.routes == d.routes
        && a.config == d.config
        && a.limits == d.limits
        && a.warmup == d.warmup
}

fn bare(reference: &str) -> &str {
    reference.strip_prefix("oci://").unwrap_or(reference)
}

/// One host's outcome in a reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostOutcome {
    /// The host serves the desired deployment.
    Serving(Box<Actual>),
    /// It could not be brought there.
    Failed(String),
}

/// The status after a reconcile: `invalid` when the spec was refused, else each selected host's
/// outcome. Conditions keep their transition time while their status does not change.
pub fn status(
    generation: Option<i64>,
    previous: Option<&PercoreAppStatus>,
    invalid: Option<&str>,
    hosts: &[(String, HostOutcome)],
    now: &str,
) -> PercoreAppStatus {
    let host_status: Vec<HostStatus> = hosts
        .iter()
        .map(|(host, outcome)| match outcome {
            HostOutcome::Serving(a) => HostStatus {
                host: host.clone(),
                digest: a.oci.as_ref().map(|o| o.digest.clone()),
                version: Some(a.version),
                error: None,
            },
            HostOutcome::Failed(e) => HostStatus {
                host: host.clone(),
                digest: None,
                version: None,
                error: Some(e.clone()),
            },
        })
        .collect();
    let failed: Vec<String> = host_status
        .iter()
        .filter_map(|h| h.error.as_ref().map(|e| format!("{}: {e}", h.host)))
        .collect();
    let serving = hosts.len() - failed.len();
    let (ready, degraded) = if let Some(why) = invalid {
        (
            ("False", "InvalidSpec", why.to_owned()),
            ("True", "InvalidSpec", why.to_owned()),
        )
    } else if hosts.is_empty() {
        let why = "no percore host is selected (none ready, or none matches hostSelector)";
        (
            ("False", "NoHosts", why.into()),
            ("True", "NoHosts", why.into()),
        )
    } else if failed.is_empty() {
        let why = format!("served by {serving} of {} hosts", hosts.len());
        (
            ("True", "Deployed", why),
            (
                "False",
                "Deployed",
                "every selected host serves the spec".into(),
            ),
        )
    } else {
        (
            (
                "False",
                "HostErrors",
                format!("served by {serving} of {} hosts", hosts.len()),
            ),
            ("True", "HostErrors", failed.join("; ")),
        )
    };
    let condition = |type_: &str, (status, reason, message): (&str, &str, String)| {
        let kept = previous
            .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_))
            .filter(|c| c.status == status)
            .and_then(|c| c.last_transition_time.clone());
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            last_transition_time: Some(kept.unwrap_or_else(|| now.to_owned())),
        }
    };
    PercoreAppStatus {
        observed_generation: generation,
        conditions: vec![condition("Ready", ready), condition("Degraded", degraded)],
        hosts: host_status,
    }
}

#[cfg(test)]
mod tests;
