//! The configuration file: TOML of a fixed shape (unknown keys are refused), then checked.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::Error;
use crate::limit::{self, LimitError};

/// A checked configuration file. Absent values are `None`: the command line or the host's
/// defaults decide them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `listen`.
    pub listen: Option<SocketAddr>,
    /// `cores`: at least 1.
    pub cores: Option<usize>,
    /// `instances` as written (`fresh`, `reset` or `keep`; the data plane reads it).
    pub instances: Option<String>,
    /// `sqpoll`.
    pub sqpoll: bool,
    /// `portable`.
    pub portable: bool,
    /// `[http]`.
    pub http: Http,
    /// `[calls]`.
    pub calls: Calls,
    /// `[outbound]`.
    pub outbound: Outbound,
    /// `[[deployment]]`: at least one, names unique, no route served twice.
    pub deployments: Vec<Deployment>,
}

/// `[http]`, in the units the host uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Http {
    /// `max_head_kib`, in bytes.
    pub max_head: Option<usize>,
    /// `max_headers`.
    pub max_headers: Option<usize>,
    /// `max_body_mib`, in bytes (0: no request bodies).
    pub max_body: Option<usize>,
    /// `request_timeout_ms`.
    pub request_timeout: Option<Duration>,
    /// `idle_timeout_ms`.
    pub idle_timeout: Option<Duration>,
    /// `max_connections_per_core`.
    pub max_connections_per_core: Option<usize>,
}

/// `[outbound]`: each core's client for guests' outbound HTTP requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outbound {
    /// `max_in_flight_per_core`: outbound requests one core has in flight at most.
    pub max_in_flight_per_core: Option<usize>,
    /// `max_idle_per_origin`: idle keep-alive connections one core keeps per origin.
    pub max_idle_per_origin: Option<usize>,
    /// `idle_timeout_ms`: how long an idle keep-alive connection is kept.
    pub idle_timeout: Option<Duration>,
    /// `ca_file`: a PEM file of CA certificates trusted for `https` origins besides the
    /// system's, as written (relative to the configuration file).
    pub ca_file: Option<String>,
}

/// `[calls]`: how guest calls share a core, in the units the host uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calls {
    /// `time_slice_ms`: running time after which a guest call yields to the core's other work.
    pub time_slice: Option<Duration>,
    /// `max_in_flight_per_core`.
    pub max_in_flight_per_core: Option<usize>,
    /// `max_in_flight_per_deployment` (on each core).
    pub max_in_flight_per_deployment: Option<usize>,
    /// `max_queued_per_core`.
    pub max_queued_per_core: Option<usize>,
}

/// One `[[deployment]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// Its name (see [`valid_name`](crate::valid_name)).
    pub name: String,
    /// A file, relative to the configuration file, or an `oci://` reference.
    pub component: String,
    /// Where it is served; `/` on any host when the file names none.
    pub routes: Vec<Route>,
    /// `memory_mb`, in bytes.
    pub memory_bytes: Option<usize>,
    /// `cpu_ms`.
    pub cpu_budget: Option<Duration>,
    /// `timeout_ms`.
    pub wall_deadline: Option<Duration>,
    /// `max_response_mb`, in bytes.
    pub max_response_body: Option<usize>,
    /// Configuration values for the guest; keys are not empty.
    pub config: BTreeMap<String, String>,
    /// `kind` as written (`edge`, `wasi-http`, `cgi`, `bare`; checked against the binary).
    pub kind: Option<String>,
    /// `allowed_outbound_hosts` as written (checked by the host, which parses it).
    pub allowed_outbound_hosts: Vec<String>,
    /// `outbound_timeout_ms`.
    pub outbound_timeout: Option<Duration>,
    /// `max_outbound_per_request`.
    pub max_outbound_per_request: Option<u32>,
    /// `max_outbound_response_mb`, in bytes.
    pub max_outbound_response: Option<usize>,
    /// `warmup` as written: requests (`PATH` or `METHOD PATH`) each new instance runs before
    /// its snapshot (checked by the host, which parses them).
    pub warmup: Vec<String>,
}

/// A route: a path prefix starting with `/`, on one host or on any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The `Host` to match; any when absent.
    pub host: Option<String>,
    /// The path prefix, matched on whole segments.
    pub path_prefix: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    cores: Option<usize>,
    instances: Option<String>,
    #[serde(default)]
    sqpoll: bool,
    #[serde(default)]
    portable: bool,
    #[serde(default)]
    http: FileHttp,
    #[serde(default)]
    calls: FileCalls,
    #[serde(default)]
    outbound: FileOutbound,
    #[serde(default, rename = "deployment")]
    deployments: Vec<FileDeployment>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHttp {
    max_head_kib: Option<usize>,
    max_headers: Option<usize>,
    max_body_mib: Option<usize>,
    request_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    max_connections_per_core: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCalls {
    time_slice_ms: Option<u64>,
    max_in_flight_per_core: Option<usize>,
    max_in_flight_per_deployment: Option<usize>,
    max_queued_per_core: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOutbound {
    max_in_flight_per_core: Option<usize>,
    max_idle_per_origin: Option<usize>,
    idle_timeout_ms: Option<u64>,
    ca_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDeployment {
    name: String,
    component: String,
    #[serde(default)]
    routes: Vec<FileRoute>,
    memory_mb: Option<usize>,
    cpu_ms: Option<u64>,
    timeout_ms: Option<u64>,
    max_response_mb: Option<usize>,
    #[serde(default)]
    config: BTreeMap<String, String>,
    kind: Option<String>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    outbound_timeout_ms: Option<u64>,
    max_outbound_per_request: Option<u32>,
    max_outbound_response_mb: Option<usize>,
    #[serde(default)]
    warmup: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRoute {
    host: Option<String>,
    #[serde(default = "root")]
    path: String,
}

fn root() -> String {
    "/".into()
}

/// Read a configuration file's text.
pub fn parse(text: &str) -> Result<Config, Error> {
    let file: FileConfig = toml::from_str(text).map_err(|e| Error::Syntax(e.to_string()))?;
    if file.deployments.is_empty() {
        return Err(invalid("no [[deployment]]"));
    }
    let mut names = HashSet::new();
    let mut routes_seen = HashSet::new();
    let mut deployments = Vec::with_capacity(file.deployments.len());
    for d in file.deployments {
        let deployment = deployment(d).map_err(invalid)?;
        if !names.insert(deployment.name.clone()) {
            return Err(invalid(format!(
                "deployment `{}` is defined twice",
                deployment.name
            )));
        }
        for r in &deployment.routes {
            let key = (
                r.host.as_deref().map(str::to_ascii_lowercase),
                r.path_prefix.trim_end_matches('/').to_owned(),
            );
            if !routes_seen.insert(key) {
                return Err(invalid(format!(
                    "deployment `{}`: route {}{} is served twice",
                    deployment.name,
                    r.host.as_deref().unwrap_or(""),
                    r.path_prefix
                )));
            }
        }
        deployments.push(deployment);
    }
    if file.cores == Some(0) {
        return Err(invalid("cores = 0: must be at least 1"));
    }
    Ok(Config {
        listen: file.listen,
        cores: file.cores,
        instances: file.instances,
        sqpoll: file.sqpoll,
        portable: file.portable,
        http: http(file.http).map_err(|e| invalid(format!("[http] {e}")))?,
        calls: calls(file.calls).map_err(|e| invalid(format!("[calls] {e}")))?,
        outbound: outbound(file.outbound).map_err(|e| invalid(format!("[outbound] {e}")))?,
        deployments,
    })
}

fn invalid(message: impl Into<String>) -> Error {
    Error::Invalid(message.into())
}

fn deployment(d: FileDeployment) -> Result<Deployment, String> {
    if !crate::valid_name(&d.name) {
        return Err(format!(
            "deployment name {:?}: use 1 to 63 of a-z, 0-9, '-' and '_', starting with a letter or digit",
            d.name
        ));
    }
    let name = d.name;
    let at = |e: LimitError| format!("deployment `{name}`: {e}");
    let routes = if d.routes.is_empty() {
        vec![Route {
            host: None,
            path_prefix: "/".into(),
        }]
    } else {
        d.routes
            .into_iter()
            .map(|r| {
                if !r.path.starts_with('/') {
                    return Err(format!(
                        "deployment `{name}`: route path {:?} must start with '/'",
                        r.path
                    ));
                }
                if r.host.as_deref().is_some_and(str::is_empty) {
                    return Err(format!(
                        "deployment `{name}`: a route's host is empty (leave it out for any host)"
                    ));
                }
                Ok(Route {
                    host: r.host,
                    path_prefix: r.path,
                })
            })
            .collect::<Result<_, _>>()?
    };
    if d.config.keys().any(String::is_empty) {
        return Err(format!("deployment `{name}`: a config key is empty"));
    }
    Ok(Deployment {
        memory_bytes: d
            .memory_mb
            .map(limit::memory_bytes)
            .transpose()
            .map_err(at)?,
        cpu_budget: d
            .cpu_ms
            .map(|ms| limit::millis("cpu_ms", ms))
            .transpose()
            .map_err(at)?,
        wall_deadline: d
            .timeout_ms
            .map(|ms| limit::millis("timeout_ms", ms))
            .transpose()
            .map_err(at)?,
        max_response_body: d
            .max_response_mb
            .map(limit::response_bytes)
            .transpose()
            .map_err(at)?,
        outbound_timeout: d
            .outbound_timeout_ms
            .map(|ms| limit::millis("outbound_timeout_ms", ms))
            .transpose()
            .map_err(at)?,
        max_outbound_per_request: match d.max_outbound_per_request {
            Some(n) if !(1..=10_000).contains(&n) => {
                return Err(format!(
                    "deployment `{name}`: max_outbound_per_request = {n}: must be between 1 and 10000"
                ));
            }
            n => n,
        },
        max_outbound_response: d
            .max_outbound_response_mb
            .map(|mb| {
                limit::response_bytes(mb).map_err(|e| LimitError {
                    field: "max_outbound_response_mb",
                    ..e
                })
            })
            .transpose()
            .map_err(at)?,
        allowed_outbound_hosts: d.allowed_outbound_hosts,
        warmup: d.warmup,
        component: d.component,
        routes,
        config: d.config,
        kind: d.kind,
        name,
    })
}

fn http(h: FileHttp) -> Result<Http, String> {
    let range = |field: &str, value: usize, min: usize, max: usize| {
        if (min..=max).contains(&value) {
            Ok(value)
        } else {
            Err(format!(
                "{field} = {value}: must be between {min} and {max}"
            ))
        }
    };
    let time = |field: &'static str, ms: Option<u64>| {
        ms.map(|ms| limit::millis(field, ms))
            .transpose()
            .map_err(|e| e.to_string())
    };
    Ok(Http {
        max_head: h
            .max_head_kib
            .map(|k| range("max_head_kib", k, 1, 1024).map(|k| k << 10))
            .transpose()?,
        max_headers: h
            .max_headers
            .map(|n| range("max_headers", n, 1, 1024))
            .transpose()?,
        max_body: h
            .max_body_mib
            .map(|m| range("max_body_mib", m, 0, 4096).map(|m| m << 20))
            .transpose()?,
        request_timeout: time("request_timeout_ms", h.request_timeout_ms)?,
        idle_timeout: time("idle_timeout_ms", h.idle_timeout_ms)?,
        max_connections_per_core: h
            .max_connections_per_core
            .map(|n| range("max_connections_per_core", n, 1, 1 << 20))
            .transpose()?,
    })
}

fn outbound(o: FileOutbound) -> Result<Outbound, String> {
    let count = |field: &str, value: Option<usize>| {
        value
            .map(|n| {
                if (1..=1 << 20).contains(&n) {
                    Ok(n)
                } else {
                    Err(format!("{field} = {n}: must be between 1 and {}", 1 << 20))
                }
            })
            .transpose()
    };
    Ok(Outbound {
        max_in_flight_per_core: count("max_in_flight_per_core", o.max_in_flight_per_core)?,
        max_idle_per_origin: count("max_idle_per_origin", o.max_idle_per_origin)?,
        idle_timeout: o
            .idle_timeout_ms
            .map(|ms| limit::millis("idle_timeout_ms", ms))
            .transpose()
            .map_err(|e| e.to_string())?,
        ca_file: o.ca_file,
    })
}

fn calls(c: FileCalls) -> Result<Calls, String> {
    let count = |field: &str, value: Option<usize>, min: usize| {
        value
            .map(|n| {
                if (min..=1 << 20).contains(&n) {
                    Ok(n)
                } else {
                    Err(format!(
                        "{field} = {n}: must be between {min} and {}",
                        1 << 20
                    ))
                }
            })
            .transpose()
    };
    let time_slice = match c.time_slice_ms {
        Some(ms) if !(1..=1000).contains(&ms) => {
            return Err(format!(
                "time_slice_ms = {ms}: must be between 1 and 1000 (the epoch tick is 1 ms)"
            ));
        }
        ms => ms.map(Duration::from_millis),
    };
    Ok(Calls {
        time_slice,
        max_in_flight_per_core: count("max_in_flight_per_core", c.max_in_flight_per_core, 1)?,
        max_in_flight_per_deployment: count(
            "max_in_flight_per_deployment",
            c.max_in_flight_per_deployment,
            1,
        )?,
        max_queued_per_core: count("max_queued_per_core", c.max_queued_per_core, 0)?,
    })
}

#[cfg(test)]
mod tests;
