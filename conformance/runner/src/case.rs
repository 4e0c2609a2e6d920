//! The declarative case format (`conformance/cases/<name>/case.toml`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// The configuration key that tells a probe guest which guest it stands in for.
pub const PROBE_ROLE: &str = "PROBE_ROLE";

/// A kind of guest a case runs against (conformance/README.md, "Kinds of guest").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `edge:handler` components: the case's own guests.
    Edge,
    /// `wasi:http/proxy@0.2` components: every guest replaced by the `probe-http` guest.
    WasiHttp,
    /// `wasi:http@0.3` (WASIp3) components: every guest replaced by the `probe-http3` guest.
    WasiHttpP3,
    /// WASI commands run CGI style: every guest replaced by the `probe-cgi` guest.
    Cgi,
}

impl Kind {
    /// Every kind, in the order runs are reported.
    pub const ALL: [Kind; 4] = [Kind::Edge, Kind::WasiHttp, Kind::WasiHttpP3, Kind::Cgi];

    /// The kind named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The name cases and the command line use (`wasi-http`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Edge => "edge",
            Kind::WasiHttp => "wasi-http",
            Kind::WasiHttpP3 => "wasi-http-p3",
            Kind::Cgi => "cgi",
        }
    }

    /// The guest that stands in for every guest of a case, for kinds other than `edge`.
    pub fn probe(self) -> Option<&'static str> {
        match self {
            Kind::Edge => None,
            Kind::WasiHttp => Some("probe-http"),
            Kind::WasiHttpP3 => Some("probe-http3"),
            Kind::Cgi => Some("probe-cgi"),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn edge_only() -> Vec<Kind> {
    vec![Kind::Edge]
}

/// One case: deployments the host must serve and exchanges to check.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What the case checks, in one sentence.
    pub description: String,
    /// Rule of the contract the case pins (section of conformance/README.md).
    #[serde(default)]
    pub rule: String,
    /// The kinds of guest the case runs against, each a run of its own.
    #[serde(default = "edge_only")]
    pub kinds: Vec<Kind>,
    /// Deployments the host is started with.
    #[serde(rename = "deployment")]
    pub deployments: Vec<Deployment>,
    /// Requests, sent in order, each on its own connection unless `connection` groups them.
    #[serde(rename = "request", default)]
    pub requests: Vec<Exchange>,
    /// Raw exchanges: bytes written as they are, responses read in order.
    #[serde(rename = "raw", default)]
    pub raws: Vec<RawExchange>,
    /// Host-wide settings (HTTP limits).
    #[serde(default)]
    pub host: HostSettings,
    /// Filled in when loaded.
    #[serde(skip)]
    pub name: String,
    /// Filled in when loaded.
    #[serde(skip)]
    pub dir: PathBuf,
}

/// What one run serves: a kind of guest, and the probe that stands in for every guest when the
/// command line names one (`--probe edge=probe-python`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub kind: Kind,
    /// A guest (from the guests folder) given with `--probe` for this kind.
    pub probe: Option<&'a str>,
}

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.probe {
            Some(probe) => write!(f, "{}:{probe}", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

impl Case {
    /// The name of the case's run for `target`, as reported and as expected-failures.txt lists
    /// it: the case's name for `edge`, `name [kind]` for the others, `name [kind:probe]` with a
    /// probe from the command line.
    pub fn run_name(&self, target: Target) -> String {
        match target {
            Target {
                kind: Kind::Edge,
                probe: None,
            } => self.name.clone(),
            _ => format!("{} [{target}]", self.name),
        }
    }

    /// Whether the case runs against `target`: it lists the kind, and for a probe standing in
    /// for `edge` guests (a guest in another language) the case also lists another kind, which
    /// makes it a check of the host's doing that any guest can ask for, not of the Rust SDK.
    pub fn runs_against(&self, target: Target) -> bool {
        self.kinds.contains(&target.kind)
            && (target.kind != Kind::Edge
                || target.probe.is_none()
                || self.kinds.iter().any(|&k| k != Kind::Edge))
    }

    /// The deployments the host serves for `target`: the case's own for `edge`; for another kind
    /// each guest is replaced by that kind's probe (or the deployment's `probe`), and with a
    /// probe from the command line by that one, configured with the role it plays: the name of
    /// the guest it stands in for.
    pub fn deployments_for(&self, target: Target) -> Vec<Deployment> {
        let mut deployments = self.deployments.clone();
        let default = target.probe.or_else(|| target.kind.probe());
        if let Some(default) = default {
            for d in &mut deployments {
                let chosen = d.probe.take();
                let probe = match target.probe {
                    Some(given) => given.to_owned(),
                    None => chosen.unwrap_or_else(|| default.to_owned()),
                };
                let role = std::mem::replace(&mut d.guest, probe);
                d.config.insert(PROBE_ROLE.to_owned(), role);
            }
        }
        deployments
    }
}

/// Host-wide settings a case needs.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct HostSettings {
    pub max_body_mib: Option<usize>,
    pub max_head_kib: Option<usize>,
    pub request_timeout_ms: Option<u64>,
    #[serde(default)]
    pub portable: bool,
    /// The host's instance mode (`fresh`, `reset`, `keep`), when the case needs one.
    pub instances: Option<String>,
}

/// A deployment in the manifest given to the host.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    pub name: String,
    /// A guest from the guests folder, by name (`echo` means `<guests>/echo.wasm`).
    pub guest: String,
    #[serde(default)]
    pub routes: Vec<Route>,
    pub memory_mb: Option<usize>,
    pub cpu_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub max_response_mb: Option<usize>,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// For kinds other than `edge`: the probe guest to serve instead of the kind's own
    /// (`probe-cgi-wasip1`: the CGI probe as a preview1 core module).
    pub probe: Option<String>,
}

/// A route of a deployment.
#[derive(Debug, Deserialize, Clone, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub host: Option<String>,
    #[serde(default = "root")]
    pub path: String,
}

fn root() -> String {
    "/".into()
}

/// A request and what its response must look like.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exchange {
    #[serde(default = "get")]
    pub method: String,
    #[serde(default = "root")]
    pub path: String,
    /// Header fields, in order; `Host` is added unless given.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(flatten)]
    pub body: BodySpec,
    /// Send the body with chunked transfer coding (in chunks of this many bytes).
    pub chunked: Option<usize>,
    /// Send it this many times on one keep-alive connection.
    #[serde(default = "one")]
    pub repeat: usize,
    pub expect: Expect,
}

fn get() -> String {
    "GET".into()
}

fn one() -> usize {
    1
}

/// Raw bytes and the responses expected, in order, on one connection.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExchange {
    /// Bytes to write, with `\r\n` written as such in TOML.
    pub send: String,
    /// Write the bytes one at a time with this pause (ms) between them (slow clients).
    pub trickle_ms: Option<u64>,
    /// Close the writing side after sending.
    #[serde(default)]
    pub half_close: bool,
    /// Answer to a `HEAD`-style request: the listed responses have no body.
    #[serde(default)]
    pub head_responses: Vec<usize>,
    pub expect: Vec<Expect>,
    /// After the responses the host must close the connection.
    #[serde(default)]
    pub expect_close: bool,
}

/// A body, given as text, hex, or a repeated byte.
#[derive(Debug, Deserialize, Default)]
pub struct BodySpec {
    pub body: Option<String>,
    pub body_hex: Option<String>,
    pub body_repeat: Option<(u8, usize)>,
}

impl BodySpec {
    pub fn bytes(&self) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(match (&self.body, &self.body_hex, &self.body_repeat) {
            (Some(text), None, None) => Some(text.clone().into_bytes()),
            (None, Some(hex), None) => Some(decode_hex(hex)?),
            (None, None, Some((byte, count))) => Some(vec![*byte; *count]),
            (None, None, None) => None,
            _ => bail!("give at most one of body, body_hex, body_repeat"),
        })
    }
}

pub fn decode_hex(hex: &str) -> anyhow::Result<Vec<u8>> {
    let hex: String = hex.chars().filter(|c| !c.is_whitespace()).collect();
    if !hex.len().is_multiple_of(2) {
        bail!("odd number of hex digits");
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).context("bad hex"))
        .collect()
}

/// What a response must look like.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub status: Option<u16>,
    /// Fields that must appear with exactly these values, in this order among fields of the same
    /// name (a name listed twice must appear at least twice, in that order).
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Fields that must appear, with any value.
    #[serde(default)]
    pub headers_present: Vec<String>,
    /// Fields that must not appear.
    #[serde(default)]
    pub headers_absent: Vec<String>,
    #[serde(flatten)]
    pub body: BodySpec,
    pub body_contains: Option<String>,
    pub body_len: Option<usize>,
    /// The body is empty (and, for 204/304/HEAD, absent).
    #[serde(default)]
    pub body_empty: bool,
    /// Different requests must get different bodies (e.g. random bytes): checked across repeats.
    #[serde(default)]
    pub bodies_differ: bool,
    /// The same body across repeats (e.g. state does not persist).
    #[serde(default)]
    pub bodies_equal: bool,
}

pub fn load_all(dir: &Path) -> anyhow::Result<Vec<Case>> {
    let mut cases = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path().join("case.toml");
        if !path.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let mut case: Case = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid case", path.display()))?;
        case.name = entry.file_name().to_string_lossy().into_owned();
        case.dir = entry.path();
        if case.requests.is_empty() && case.raws.is_empty() {
            bail!("{}: no [[request]] or [[raw]]", path.display());
        }
        if case.kinds.is_empty() {
            bail!("{}: `kinds` is empty", path.display());
        }
        let mut kinds = case.kinds.clone();
        kinds.sort();
        kinds.dedup();
        if kinds.len() != case.kinds.len() {
            bail!("{}: `kinds` lists a kind twice", path.display());
        }
        if case.kinds.iter().any(|k| k.probe().is_some())
            && case
                .deployments
                .iter()
                .any(|d| d.config.contains_key(PROBE_ROLE))
        {
            bail!(
                "{}: {PROBE_ROLE} is set by the runner for probe kinds, not in a case",
                path.display()
            );
        }
        cases.push(case);
    }
    Ok(cases)
}
