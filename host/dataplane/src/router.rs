//! What a deployment is (name, component, routes, limits), and routing by `Host` and path
//! prefix.

use std::collections::BTreeMap;
use std::path::PathBuf;

use percore_engine::Limits;

/// Where a deployment is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Only requests whose `Host` (without port) is this name; any host when `None`.
    pub host: Option<String>,
    /// Only paths equal to this prefix or below it (segment-wise: `/api` matches `/api` and
    /// `/api/x`, not `/apix`).
    pub path_prefix: String,
}

/// One thing to serve.
#[derive(Debug, Clone)]
pub struct DeploymentSpec {
    /// Its name (logs, counters).
    pub name: String,
    /// A component (compiled at start), an artifact from `percore compile`, or `native:hello`
    /// (a built-in native handler, for benchmarks).
    pub component: PathBuf,
    /// Where it is reached.
    pub routes: Vec<RouteSpec>,
    /// Its per-request limits.
    pub limits: Limits,
    /// Its configuration values.
    pub config: BTreeMap<String, String>,
    /// Instances of it one core keeps at most (the rest are dropped after their request).
    pub max_instances_per_core: usize,
    /// The kind of guest the configuration states, if it does (it is told from the binary
    /// otherwise, and must match).
    pub kind: Option<percore_engine::GuestKind>,
    /// Requests each new instance runs before its snapshot, where instances are reset (none by
    /// default; see [`percore_engine::Warmup`]).
    pub warmup: percore_engine::Warmup,
}

/// Default of [`DeploymentSpec::max_instances_per_core`].
pub const DEFAULT_MAX_INSTANCES_PER_CORE: usize = 16;

/// A route resolved to a deployment index.
#[derive(Debug)]
struct Route {
    host: Option<String>,
    prefix: String,
    deployment: usize,
}

/// The route table: most specific first (a host before any host, then the longest prefix).
#[derive(Debug)]
pub(crate) struct Router {
    /// Most specific first: with a host before without, then longer prefixes first.
    routes: Vec<Route>,
    /// Indices into `routes` of the prefixes starting with each first path segment, in order.
    by_segment: std::collections::HashMap<String, Vec<usize>>,
    /// Indices of the routes whose prefix is the root (they match every path), in order.
    root: Vec<usize>,
}

/// The first segment of a path: `api` for `/api/v1`.
fn first_segment(path: &str) -> &str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    rest.split('/').next().unwrap_or("")
}

impl Router {
    /// A router over deployments given as (index, routes).
    pub(crate) fn new<'a>(deployments: impl Iterator<Item = (usize, &'a [RouteSpec])>) -> Self {
        let mut routes: Vec<Route> = deployments
            .flat_map(|(i, routes)| {
                routes.iter().map(move |r| Route {
                    host: r.host.as_ref().map(|h| h.to_ascii_lowercase()),
                    prefix: r.path_prefix.trim_end_matches('/').to_owned(),
                    deployment: i,
                })
            })
            .collect();
        routes.sort_by(|a, b| {
            b.host
                .is_some()
                .cmp(&a.host.is_some())
                .then(b.prefix.len().cmp(&a.prefix.len()))
        });
        let mut by_segment: std::collections::HashMap<String, Vec<usize>> = Default::default();
        let mut root = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            if r.prefix.is_empty() {
                root.push(i);
            } else {
                by_segment
                    .entry(first_segment(&r.prefix).to_owned())
                    .or_default()
                    .push(i);
            }
        }
        Self {
            routes,
            by_segment,
            root,
        }
    }

    /// The deployment for a request with this `Host` header value and target.
    pub(crate) fn route(&self, host: Option<&[u8]>, target: &str) -> Option<usize> {
        self.resolve(host, target).map(|(deployment, _)| deployment)
    }

    /// The deployment for a request, and the length of the route prefix that matched (the
    /// CGI `SCRIPT_NAME`: `target[..len]`).
    pub(crate) fn resolve(&self, host: Option<&[u8]>, target: &str) -> Option<(usize, usize)> {
        let host = host.map(|h| {
            let h = std::str::from_utf8(h).unwrap_or("");
            // Strip a port, keeping IPv6 literals whole.
            match h.rfind(':') {
                Some(i) if !h[i..].contains(']') => &h[..i],
                _ => h,
            }
        });
        let path = target.split(['?', '#']).next().unwrap_or(target);
        // Only routes whose first segment is the path's, and root routes, can match: merge the
        // two candidate lists in route order (thousands of deployments stay cheap to route).
        let segment = self
            .by_segment
            .get(first_segment(path))
            .map_or(&[][..], Vec::as_slice);
        let (mut a, mut b) = (segment.iter().peekable(), self.root.iter().peekable());
        std::iter::from_fn(|| match (a.peek(), b.peek()) {
            (Some(&&x), Some(&&y)) if x < y => a.next(),
            (Some(_), Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, _) => b.next(),
        })
        .map(|&i| &self.routes[i])
        .find(|r| {
            let host_ok = match (&r.host, host) {
                (None, _) => true,
                (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
                (Some(_), None) => false,
            };
            host_ok
                && (r.prefix.is_empty()
                    || path == r.prefix
                    || path.starts_with(&r.prefix)
                        && path.as_bytes().get(r.prefix.len()) == Some(&b'/'))
        })
        .map(|r| (r.deployment, r.prefix.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, routes: &[(Option<&str>, &str)]) -> DeploymentSpec {
        DeploymentSpec {
            name: name.into(),
            component: PathBuf::new(),
            routes: routes
                .iter()
                .map(|(h, p)| RouteSpec {
                    host: h.map(str::to_owned),
                    path_prefix: p.to_string(),
                })
                .collect(),
            limits: Limits::default(),
            config: BTreeMap::new(),
            max_instances_per_core: DEFAULT_MAX_INSTANCES_PER_CORE,
            kind: None,
            warmup: Default::default(),
        }
    }

    fn router_of(specs: &[DeploymentSpec]) -> Router {
        Router::new(specs.iter().enumerate().map(|(i, d)| (i, &d.routes[..])))
    }

    #[test]
    fn most_specific_route_wins() {
        let router = router_of(&[
            spec("root", &[(None, "/")]),
            spec("api", &[(None, "/api")]),
            spec("host", &[(Some("a.example"), "/")]),
        ]);
        assert_eq!(router.route(Some(b"x"), "/"), Some(0));
        assert_eq!(router.route(Some(b"x"), "/api"), Some(1));
        assert_eq!(router.route(Some(b"x"), "/api/v1?q"), Some(1));
        assert_eq!(router.route(Some(b"x"), "/apix"), Some(0));
        assert_eq!(router.route(Some(b"A.example:8080"), "/api"), Some(2));
        let router = router_of(&[spec("api", &[(None, "/api/")])]);
        assert_eq!(router.route(None, "/"), None);
        assert_eq!(router.route(None, "/api/x"), Some(0));
    }

    #[test]
    fn thousands_of_routes_route_like_a_linear_scan() {
        let mut specs = vec![
            spec("root", &[(None, "/")]),
            spec("deep", &[(None, "/d7/x/y")]),
            spec("hosted", &[(Some("h.example"), "/d7")]),
        ];
        for i in 0..3000 {
            specs.push(spec(&format!("d{i}"), &[(None, &format!("/d{i}"))]));
        }
        let router = router_of(&specs);
        assert_eq!(router.route(None, "/d7"), Some(3 + 7));
        assert_eq!(router.route(None, "/d7/x"), Some(3 + 7));
        assert_eq!(router.route(None, "/d7/x/y/z"), Some(1));
        assert_eq!(router.route(Some(b"h.example"), "/d7/x/y"), Some(2));
        assert_eq!(router.route(Some(b"h.example"), "/d8"), Some(3 + 8));
        assert_eq!(router.route(None, "/d2999?x"), Some(3 + 2999));
        assert_eq!(router.route(None, "/d3000"), Some(0));
        assert_eq!(router.route(None, ""), Some(0));
    }
}
