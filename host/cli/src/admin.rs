//! `percore deploy`, `ls`, `rm`, `stats`: the admin API from the command line. Human output by
//! default, the API's JSON with `--json`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// Where the admin API is.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// Admin API base URL.
    #[arg(long, env = "PERCORE_ADMIN", default_value = "http://127.0.0.1:9180")]
    admin: String,
    /// Bearer token for the admin API.
    #[arg(long, env = "PERCORE_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl Target {
    /// Whether `--json` was given.
    pub(crate) fn json(&self) -> bool {
        self.json
    }
}

/// Arguments of `percore deploy`.
#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The component: a file (.wasm) to upload, or `oci://REGISTRY/REPOSITORY[:TAG]` for the
    /// host to pull (the digest it resolves to is kept with the deployment).
    component: String,
    /// Deployment name (default: the file name without extension).
    #[arg(long)]
    name: Option<String>,
    /// Route: `/prefix` or `host/prefix`; repeat for several (default: `/NAME`).
    #[arg(long = "route", value_name = "ROUTE")]
    routes: Vec<String>,
    /// A configuration value the guest can read, `KEY=VALUE` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// Memory cap per instance, MiB.
    #[arg(long)]
    memory_mb: Option<usize>,
    /// CPU budget per request, ms.
    #[arg(long)]
    cpu_ms: Option<u64>,
    /// Wall-clock deadline per request, ms.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Instances one core keeps at most.
    #[arg(long)]
    max_instances_per_core: Option<usize>,
    /// Write a core dump when a guest traps, if its memories take at most this many MiB (kept
    /// in the host's state directory; `percore coredumps NAME` lists them).
    #[arg(long, value_name = "MIB")]
    coredump_mb: Option<usize>,
    /// The kind of guest (`edge`, `wasi-http`, `cgi`, `bare`); told from the binary when
    /// absent, and checked against it when given.
    #[arg(long)]
    kind: Option<String>,
    /// An origin the guest may send HTTP requests to, `scheme://host[:port]` in Spin's syntax
    /// (`https://api.example.com`, `http://*.internal:8080`, `*://127.0.0.1:*`); repeatable.
    /// None by default.
    #[arg(long = "allow-outbound", value_name = "ORIGIN")]
    allow_outbound: Vec<String>,
    /// A request (`PATH` or `METHOD PATH`, no body) each new instance runs before its
    /// snapshot, where instances are reset; repeatable, run in order. The guest sees them, and
    /// every request then starts from the state after them: an interpreted guest's first-call
    /// work (JavaScript's, typically) is done once instead of on every request.
    #[arg(long, value_name = "REQUEST")]
    warmup: Vec<String>,
    /// Longest wait for one outbound HTTP response, ms (default 10000).
    #[arg(long, value_name = "MS")]
    outbound_timeout_ms: Option<u64>,
    /// Outbound HTTP requests one request may make (default 16).
    #[arg(long, value_name = "N")]
    max_outbound_per_request: Option<u32>,
    /// Largest outbound HTTP response body, MiB (default 16).
    #[arg(long, value_name = "MIB")]
    max_outbound_response_mb: Option<usize>,
    #[command(flatten)]
    target: Target,
}

/// Arguments of `percore ls`.
#[derive(Debug, clap::Args)]
pub struct LsArgs {
    #[command(flatten)]
    target: Target,
}

/// Arguments of `percore rm`.
#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Deployments to remove.
    #[arg(required = true)]
    names: Vec<String>,
    #[command(flatten)]
    target: Target,
}

/// Arguments of `percore stats`.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// One deployment (default: all, and the host).
    name: Option<String>,
    #[command(flatten)]
    target: Target,
}

pub(crate) struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

impl Client {
    pub(crate) fn new(target: &Target) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(600)))
            .build();
        Self {
            agent: ureq::Agent::new_with_config(config),
            base: target.admin.trim_end_matches('/').to_owned(),
            token: target.token.clone(),
        }
    }

    /// One call; returns the status and the JSON body. Errors name the admin URL.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        content_type: &str,
    ) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}{path}", self.base);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let result = match (method, body) {
            ("GET", _) => with_auth(self.agent.get(&url), &auth).call(),
            ("DELETE", _) => with_auth(self.agent.delete(&url), &auth).call(),
            ("PUT", Some(b)) => with_auth(self.agent.put(&url), &auth)
                .header("content-type", content_type)
                .send(b),
            ("POST", Some(b)) => with_auth(self.agent.post(&url), &auth)
                .header("content-type", content_type)
                .send(b),
            _ => bail!("unsupported call {method} {path}"),
        };
        let mut response = result.with_context(|| {
            format!("cannot reach the admin API at {} (is `percore serve` running? set --admin or PERCORE_ADMIN)", self.base)
        })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .context("reading the admin API's answer")?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    /// A GET whose answer is bytes (a core dump): a 4xx/5xx becomes an error with the API's
    /// message.
    pub(crate) fn get_bytes(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let url = format!("{}{path}", self.base);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut response = with_auth(self.agent.get(&url), &auth)
            .call()
            .with_context(|| format!("cannot reach the admin API at {}", self.base))?;
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(4 << 30)
            .read_to_vec()
            .context("reading the admin API's answer")?;
        if status >= 400 {
            let value: Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let message = value["error"].as_str().unwrap_or("no message");
            bail!("{message} (HTTP {status})");
        }
        Ok(bytes)
    }

    /// A call that must succeed: a 4xx/5xx becomes an error carrying the API's message.
    pub(crate) fn ok(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        content_type: &str,
    ) -> anyhow::Result<Value> {
        let (status, value) = self.call(method, path, body, content_type)?;
        if status >= 400 {
            let message = value
                .get("error")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| value.to_string());
            bail!("{message} (HTTP {status})");
        }
        Ok(value)
    }
}

fn with_auth<B>(
    request: ureq::RequestBuilder<B>,
    auth: &Option<String>,
) -> ureq::RequestBuilder<B> {
    match auth {
        Some(a) => request.header("authorization", a),
        None => request,
    }
}

/// Show elapsed time on stderr while `work` runs (when stderr is a terminal, or always with a
/// line at the end when it is not).
pub(crate) fn with_progress<T>(label: &str, work: impl FnOnce() -> T) -> T {
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let ticker = tty.then(|| {
        let done = done.clone();
        let label = label.to_owned();
        std::thread::spawn(move || {
            let frames = ['|', '/', '-', '\\'];
            let mut i = 0;
            while !done.load(Ordering::Relaxed) {
                eprint!(
                    "\r{} {label} ({:.1} s)",
                    frames[i % 4],
                    started.elapsed().as_secs_f64()
                );
                i += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            eprint!("\r\x1b[K");
        })
    });
    let result = work();
    done.store(true, Ordering::Relaxed);
    if let Some(t) = ticker {
        let _ = t.join();
    }
    result
}

fn parse_route(route: &str) -> anyhow::Result<Value> {
    if route.starts_with('/') {
        return Ok(json!({ "path": route }));
    }
    match route.split_once('/') {
        Some((host, path)) if !host.is_empty() => {
            Ok(json!({ "host": host, "path": format!("/{path}") }))
        }
        _ => bail!("bad route {route:?}: use /prefix or host/prefix"),
    }
}

pub fn deploy(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.target);
    let oci = percore_oci::is_oci(&args.component);
    let name = match &args.name {
        Some(n) => n.clone(),
        None => default_name(&args.component)?,
    };
    let component = if oci {
        percore_oci::reference(&args.component)?;
        json!({ "oci": args.component })
    } else {
        let path = PathBuf::from(&args.component);
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let size = bytes.len();
        let uploaded = with_progress(&format!("uploading {} KiB", size / 1024), || {
            client.ok("POST", "/v1/components", Some(&bytes), "application/wasm")
        })?;
        let hash = uploaded["sha256"]
            .as_str()
            .context("the API gave no sha256")?;
        json!({ "sha256": hash })
    };
    let routes = args
        .routes
        .iter()
        .map(|r| parse_route(r))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut config = serde_json::Map::new();
    for kv in &args.config {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set {kv:?}: expected KEY=VALUE"))?;
        config.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    let mut limits = serde_json::Map::new();
    for (key, value) in [
        ("memory_mb", args.memory_mb.map(|v| v as u64)),
        ("cpu_ms", args.cpu_ms),
        ("timeout_ms", args.timeout_ms),
        (
            "max_instances_per_core",
            args.max_instances_per_core.map(|v| v as u64),
        ),
        ("coredump_mb", args.coredump_mb.map(|v| v as u64)),
        ("outbound_timeout_ms", args.outbound_timeout_ms),
        (
            "max_outbound_per_request",
            args.max_outbound_per_request.map(u64::from),
        ),
        (
            "max_outbound_response_mb",
            args.max_outbound_response_mb.map(|v| v as u64),
        ),
    ] {
        if let Some(v) = value {
            limits.insert(key.to_owned(), json!(v));
        }
    }
    let mut body = json!({
        "component": component,
        "routes": routes,
        "config": config,
        "limits": limits,
    });
    if let Some(kind) = &args.kind {
        body["kind"] = json!(kind);
    }
    if !args.allow_outbound.is_empty() {
        body["allowed_outbound_hosts"] = json!(args.allow_outbound);
    }
    if !args.warmup.is_empty() {
        body["warmup"] = json!(args.warmup);
    }
    let body = serde_json::to_vec(&body)?;
    let started = Instant::now();
    let label = if oci {
        "pulling, validating, compiling and deploying"
    } else {
        "validating, compiling and deploying"
    };
    let (status, value) = with_progress(label, || {
        client.call(
            "PUT",
            &format!("/v1/deployments/{name}"),
            Some(&body),
            "application/json",
        )
    })?;
    if status >= 400 {
        let message = value["error"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| value.to_string());
        bail!("deploying `{name}`: {message} (HTTP {status})");
    }
    if args.target.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!(
            "{} `{name}` version {} ({}) in {:.2} s: {}",
            if status == 201 { "deployed" } else { "updated" },
            value["version"],
            short(value["component"].as_str().unwrap_or("")),
            started.elapsed().as_secs_f64(),
            routes_text(&value["routes"]),
        );
        if let Some(pinned) = value["oci"]["pinned"].as_str() {
            println!("from {pinned}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A deployment's name when none is given: the file's name without extension, or the last part
/// of a reference's repository.
pub(crate) fn default_name(component: &str) -> anyhow::Result<String> {
    let stem = if percore_oci::is_oci(component) {
        let reference = percore_oci::reference(component)?;
        let repository = reference.repository();
        repository
            .rsplit('/')
            .next()
            .unwrap_or(repository)
            .to_owned()
    } else {
        std::path::Path::new(component)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .context("give --name")?
    };
    Ok(stem.to_lowercase().replace('.', "-"))
}

fn short(hash: &str) -> String {
    hash.chars().take(12).collect()
}

fn routes_text(routes: &Value) -> String {
    routes
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    format!(
                        "{}{}",
                        r["host"].as_str().unwrap_or(""),
                        r["path"].as_str().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

pub fn ls(args: LsArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.target);
    let value = client.ok("GET", "/v1/deployments", None, "")?;
    if args.target.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    let list = value["deployments"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no deployments");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:>7} {:<8} {:<14} {:<12} {:<10} ROUTES",
        "NAME", "VERSION", "SOURCE", "KIND", "COMPONENT", "INSTANCES"
    );
    for d in list {
        let component = d["component"].as_str().unwrap_or("");
        println!(
            "{:<24} {:>7} {:<8} {:<14} {:<12} {:<10} {}",
            d["name"].as_str().unwrap_or(""),
            d["version"].to_string(),
            d["source"].as_str().unwrap_or(""),
            d["kind"].as_str().unwrap_or("edge"),
            if d["source"] == "api" {
                short(component)
            } else {
                component
                    .rsplit('/')
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(12)
                    .collect()
            },
            d["instances"]
                .as_str()
                .unwrap_or("")
                .split(' ')
                .next()
                .unwrap_or(""),
            routes_text(&d["routes"]),
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rm(args: RmArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.target);
    let mut failed = false;
    for name in &args.names {
        match client.ok("DELETE", &format!("/v1/deployments/{name}"), None, "") {
            Ok(value) if args.target.json => println!("{}", serde_json::to_string_pretty(&value)?),
            Ok(_) => println!("removed `{name}`"),
            Err(e) => {
                eprintln!("error: removing `{name}`: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn stats(args: StatsArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.target);
    let path = match &args.name {
        Some(name) => format!("/v1/stats/{name}"),
        None => "/v1/stats".to_owned(),
    };
    let value = client.ok("GET", &path, None, "")?;
    if args.target.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows = match &args.name {
        Some(_) => vec![value.clone()],
        None => value["deployments"].as_array().cloned().unwrap_or_default(),
    };
    println!(
        "{:<24} {:>10} {:>8} {:>8} {:>8} {:>10} {:>10} {:>8}",
        "DEPLOYMENT", "REQUESTS", "2XX", "4XX", "5XX", "MEAN µs", "CPU ms", "COLD"
    );
    for d in rows {
        println!(
            "{:<24} {:>10} {:>8} {:>8} {:>8} {:>10} {:>10.1} {:>8}",
            d["deployment"].as_str().unwrap_or(""),
            d["invocations"].to_string(),
            d["status"]["2xx"].to_string(),
            d["status"]["4xx"].to_string(),
            d["status"]["5xx"].to_string(),
            d["mean_duration_us"].to_string(),
            d["cpu_us"].as_u64().unwrap_or(0) as f64 / 1000.0,
            d["cold_starts"].to_string(),
        );
    }
    if let Some(host) = value.get("host") {
        println!();
        println!(
            "host: {} connections, {} requests, {} bad requests, {} refused (overload), {} instances created, {} resets, {} compilations, {} invocation-log rows",
            host["connections"],
            host["requests"],
            host["bad_requests"],
            host["overloaded"],
            host["instances_created"],
            host["instance_resets"],
            host["compilations"],
            host["invocation_log_rows"]
        );
    }
    Ok(ExitCode::SUCCESS)
}
