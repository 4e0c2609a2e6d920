//! A deploy request: the body of `PUT /v1/deployments/{name}` and the checks it must pass before
//! anything is compiled (name, routes, component file).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use percore_dataplane::Ready;

use crate::pipeline::{Failure, fail};
use crate::store::{RouteDoc, Stored};

/// Which component to deploy.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentRef {
    /// A file the host can read.
    pub path: Option<PathBuf>,
    /// A component uploaded with `POST /v1/components`.
    pub sha256: Option<String>,
    /// An OCI artifact (`[oci://]REGISTRY/REPOSITORY[:TAG][@DIGEST]`), pulled by the host; the
    /// digest it resolved to is kept with the deployment.
    pub oci: Option<String>,
}

/// Body of `PUT /v1/deployments/{name}`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    pub component: ComponentRef,
    #[serde(default)]
    pub routes: Vec<RouteDoc>,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: crate::store::LimitsDoc,
    /// Origins the guest may send HTTP requests to: `scheme://host[:port]` entries in Spin's
    /// syntax (`https://api.example.com`, `http://*.internal:8080`, `*://127.0.0.1:*`); none
    /// when absent.
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// Requests each new instance runs before its snapshot, where instances are reset:
    /// `PATH` or `METHOD PATH` (no body), at most [`percore_engine::MAX_WARMUP_REQUESTS`].
    #[serde(default)]
    pub warmup: Vec<String>,
    /// The kind of guest, if the caller states it (`edge`, `wasi-http`, `cgi`, `bare`); it is
    /// told from the component otherwise, and a stated kind must match what is found.
    #[serde(default)]
    pub kind: Option<String>,
}

/// A route as the router compares it: host lowercased, no trailing slash.
pub(crate) fn route_key(host: Option<&str>, path: &str) -> (Option<String>, String) {
    (
        host.map(str::to_ascii_lowercase),
        path.trim_end_matches('/').to_owned(),
    )
}

/// A deployment name: 1-63 of a-z, 0-9, `-` and `_`, starting with a letter or digit.
pub(crate) use percore_config::valid_name;

/// Refuse a limit out of its range, by name (`limits.memory_mb = 0: must be between 1 and 4096`).
pub(crate) fn check_limits(l: &crate::store::LimitsDoc) -> Result<(), Failure> {
    let named = |e: percore_config::LimitError| fail(400, format!("limits.{e}"));
    if let Some(mb) = l.memory_mb {
        percore_config::memory_bytes(mb).map_err(named)?;
    }
    if let Some(mb) = l.max_response_mb {
        percore_config::response_bytes(mb).map_err(named)?;
    }
    if let Some(ms) = l.cpu_ms {
        percore_config::millis("cpu_ms", ms).map_err(named)?;
    }
    if let Some(ms) = l.timeout_ms {
        percore_config::millis("timeout_ms", ms).map_err(named)?;
    }
    if let Some(mb) = l.coredump_mb {
        percore_config::coredump_bytes(mb).map_err(named)?;
    }
    if let Some(ms) = l.outbound_timeout_ms {
        percore_config::millis("outbound_timeout_ms", ms).map_err(named)?;
    }
    if let Some(mb) = l.max_outbound_response_mb {
        percore_config::response_bytes(mb).map_err(|e| {
            named(percore_config::LimitError {
                field: "max_outbound_response_mb",
                ..e
            })
        })?;
    }
    if let Some(n) = l.max_outbound_per_request
        && !(1..=10_000).contains(&n)
    {
        return Err(fail(
            400,
            format!("limits.max_outbound_per_request = {n}: must be between 1 and 10000"),
        ));
    }
    if l.max_instances_per_core == Some(0) {
        return Err(fail(
            400,
            "limits.max_instances_per_core = 0: must be at least 1",
        ));
    }
    Ok(())
}

/// Refuse a route another deployment serves: one of the configuration's (`fixed`), or one of the
/// API's (`dynamic`) other than `name`.
pub(crate) fn check_collisions(
    name: &str,
    routes: &[RouteDoc],
    fixed: &[Ready],
    dynamic: &BTreeMap<String, Stored>,
) -> Result<(), Failure> {
    let mut taken: Vec<(String, (Option<String>, String), String)> = Vec::new();
    for f in fixed {
        for r in &f.spec.routes {
            taken.push((
                f.spec.name.clone(),
                route_key(r.host.as_deref(), &r.path_prefix),
                r.path_prefix.clone(),
            ));
        }
    }
    for (other, row) in dynamic {
        if other == name {
            continue;
        }
        for r in &row.doc.routes {
            taken.push((
                other.clone(),
                route_key(r.host.as_deref(), &r.path),
                r.path.clone(),
            ));
        }
    }
    for r in routes {
        let key = route_key(r.host.as_deref(), &r.path);
        if let Some((other, _, _)) = taken.iter().find(|(_, k, _)| *k == key) {
            return Err(fail(
                409,
                format!(
                    "route {} is already served by deployment `{other}`",
                    show_route(r)
                ),
            ));
        }
    }
    Ok(())
}

/// A route as the errors show it: host and path.
pub(crate) fn show_route(r: &RouteDoc) -> String {
    match &r.host {
        Some(h) => format!("{h}{}", r.path),
        None => r.path.clone(),
    }
}

/// The bytes of a component file the host reads, up to `max`.
pub(crate) fn read_component(path: &Path, max: usize) -> Result<Vec<u8>, Failure> {
    let meta = std::fs::metadata(path)
        .map_err(|e| fail(400, format!("cannot read {}: {e}", path.display())))?;
    if meta.len() > max as u64 {
        return Err(fail(
            413,
            format!(
                "{} is {} bytes; the limit is {max}",
                path.display(),
                meta.len()
            ),
        ));
    }
    std::fs::read(path).map_err(|e| fail(400, format!("cannot read {}: {e}", path.display())))
}
