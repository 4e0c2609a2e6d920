//! `percore serve`: the HTTP server, one pinned shard per core.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use percore_dataplane::{Counters, DeploymentSpec, InstanceMode, RouteSpec, ServeConfig, Server};
use percore_engine::{AllowedHosts, InputPreference, Limits, OutboundPolicy, Warmup};

use crate::limits::GuestArgs;

/// Arguments of `percore serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Components to serve: `PATH` (one component, served at `/`) or `NAME=PATH` (served under
    /// `/NAME`); a path can be an `oci://` reference. Not with `--config`.
    #[arg(conflicts_with = "config_file")]
    components: Vec<String>,
    /// A configuration file (TOML): listen address, cores, limits, deployments and routes.
    #[arg(long = "config", value_name = "FILE")]
    config_file: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port and prints it).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Number of cores to serve on (default: every CPU this process may use).
    #[arg(long)]
    cores: Option<usize>,
    /// What each request runs on: `reset` (default: a pooled instance whose memory goes back to
    /// its post-instantiation snapshot after every request), `fresh` (a new instance per
    /// request), or `keep` (pooled instances keep their memory between requests).
    #[arg(long, value_name = "MODE")]
    instances: Option<InstanceMode>,
    /// Same as `--instances keep`.
    #[arg(long, hide = true, conflicts_with = "instances")]
    reuse_instances: bool,
    /// Serve the admin API here (default 127.0.0.1:9180 when serving from a state directory
    /// only; off otherwise unless given).
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// Bearer token the admin API requires (required when it listens beyond loopback).
    #[arg(long, env = "PERCORE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// State directory: deployments made through the admin API, their components and
    /// artifacts, and the invocation log (SQLite). Default with no components and no --config:
    /// $PERCORE_STATE, else ~/.local/share/percore.
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// Where the invocation log goes: `sqlite` (the state directory's database; the default
    /// when there is one), `off`, or a PostgreSQL connection string (`postgres://...`).
    #[arg(long, value_name = "TARGET")]
    invocation_log: Option<String>,
    /// A request (`PATH` or `METHOD PATH`, no body) each new instance runs before its snapshot,
    /// where instances are reset; repeat for several, run in order. The guest sees them, and
    /// every request then starts from the state after them (interpreted guests' first-call
    /// work done once). Not with `--config` (there: `warmup = [...]` per deployment).
    #[arg(
        long,
        value_name = "REQUEST",
        conflicts_with = "config_file",
        requires = "components"
    )]
    warmup: Vec<String>,
    /// Send requests through the portable path instead of the input region.
    #[arg(long)]
    portable: bool,
    /// Use a kernel submission-polling thread per ring (io_uring SQPOLL).
    #[arg(long)]
    sqpoll: bool,
    /// A PEM file of CA certificates that guests' outbound `https` requests trust besides the
    /// system's (a private CA). In a configuration file: `[outbound] ca_file`.
    #[arg(long, value_name = "PEM")]
    outbound_ca_file: Option<PathBuf>,
    /// Components one core keeps mapped (least recently used ones are unmapped past this and
    /// mapped again from their artifact on their next request).
    #[arg(long, value_name = "N")]
    max_loaded_per_core: Option<usize>,
    /// Largest component the admin API accepts, MiB.
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    admin_max_upload_mb: usize,
    /// Close a connection with nothing to do, or whose client reads nothing of its pending
    /// responses, after this many milliseconds (default 60000; `[http] idle_timeout_ms`).
    #[arg(long, value_name = "MS")]
    idle_timeout_ms: Option<u64>,
    /// Time a started request has to arrive in full, in milliseconds (default 10000;
    /// `[http] request_timeout_ms`).
    #[arg(long, value_name = "MS")]
    request_timeout_ms: Option<u64>,
    /// Invocation records a core queues for the control plane before it aggregates them
    /// (tests of the aggregation path).
    #[arg(long, hide = true)]
    record_queue: Option<usize>,
    /// Break one rule of the contract on purpose. For testing the conformance suite only.
    #[cfg(feature = "misbehave")]
    #[arg(long, hide = true, value_enum)]
    misbehave: Option<Misbehave>,
    #[command(flatten)]
    guest: GuestArgs,
    #[command(flatten)]
    registry: crate::oci::RegistryArgs,
}

/// `--misbehave` values (see `percore_dataplane::Misbehaviour`).
#[cfg(feature = "misbehave")]
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Misbehave {
    DropRepeatedHeader,
    IgnoreMemoryCap,
    ReuseAcrossDeployments,
    MangleBinaryBody,
    TimeoutAs500,
    SkipReset,
}

#[cfg(feature = "misbehave")]
impl From<Misbehave> for percore_dataplane::Misbehaviour {
    fn from(m: Misbehave) -> Self {
        match m {
            Misbehave::DropRepeatedHeader => Self::DropRepeatedHeader,
            Misbehave::IgnoreMemoryCap => Self::IgnoreMemoryCap,
            Misbehave::ReuseAcrossDeployments => Self::ReuseAcrossDeployments,
            Misbehave::MangleBinaryBody => Self::MangleBinaryBody,
            Misbehave::TimeoutAs500 => Self::TimeoutAs500,
            Misbehave::SkipReset => Self::SkipReset,
        }
    }
}

impl Args {
    fn instance_mode(&self) -> Option<InstanceMode> {
        match self.instances {
            Some(mode) => Some(mode),
            None => self.reuse_instances.then_some(InstanceMode::Keep),
        }
    }
}

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Admin API address in operator mode.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9180";

fn from_file(path: &Path, args: &Args) -> anyhow::Result<ServeConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file = percore_config::parse(&text)
        .with_context(|| format!("{} is not a valid configuration", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let defaults = args.guest.limits()?;
    let deployments = file
        .deployments
        .into_iter()
        .map(|d| {
            let component = if percore_oci::is_oci(&d.component) {
                crate::oci::local_component(&d.component, &args.registry)
                    .with_context(|| format!("deployment `{}`", d.name))?
            } else {
                base.join(&d.component)
            };
            let kind = match d.kind.as_deref() {
                None => None,
                Some(kind) => Some(
                    kind.parse()
                        .with_context(|| format!("deployment `{}`", d.name))?,
                ),
            };
            let outbound = Arc::new(outbound_policy(&d, &defaults.outbound)?);
            let warmup =
                Warmup::parse(&d.warmup).with_context(|| format!("deployment `{}`", d.name))?;
            Ok(DeploymentSpec {
                component,
                routes: d
                    .routes
                    .into_iter()
                    .map(|r| RouteSpec {
                        host: r.host,
                        path_prefix: r.path_prefix,
                    })
                    .collect(),
                limits: Limits {
                    memory_bytes: d.memory_bytes.unwrap_or(defaults.memory_bytes),
                    cpu_budget: d.cpu_budget.unwrap_or(defaults.cpu_budget),
                    wall_deadline: d.wall_deadline.unwrap_or(defaults.wall_deadline),
                    max_response_body: d.max_response_body.unwrap_or(defaults.max_response_body),
                    outbound,
                    ..defaults.clone()
                },
                kind,
                warmup,
                config: d.config,
                name: d.name,
                max_instances_per_core: percore_dataplane::DEFAULT_MAX_INSTANCES_PER_CORE,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or(DEFAULT_LISTEN.parse()?);
    let mut config = ServeConfig::new(listen, deployments);
    config.cores = pick_cores(args.cores.or(file.cores))?;
    config.instances = match (args.instance_mode(), &file.instances) {
        (Some(mode), _) => mode,
        (None, Some(mode)) => mode
            .parse()
            .with_context(|| format!("{}", path.display()))?,
        (None, None) => InstanceMode::default(),
    };
    config.sqpoll = args.sqpoll || file.sqpoll;
    if args.portable || file.portable {
        config.input = InputPreference::Portable;
    }
    let http = &file.http;
    if let Some(bytes) = http.max_head {
        config.http.max_head = bytes;
    }
    if let Some(n) = http.max_headers {
        config.http.max_headers = n;
    }
    if let Some(bytes) = http.max_body {
        config.http.max_body = bytes;
    }
    if let Some(t) = http.request_timeout {
        config.request_timeout = t;
    }
    if let Some(t) = http.idle_timeout {
        config.idle_timeout = t;
    }
    if let Some(n) = http.max_connections_per_core {
        config.max_connections_per_core = n;
    }
    let outbound = &file.outbound;
    if let Some(n) = outbound.max_in_flight_per_core {
        config.outbound.max_in_flight_per_core = n;
    }
    if let Some(n) = outbound.max_idle_per_origin {
        config.outbound.max_idle_per_origin = n;
    }
    if let Some(t) = outbound.idle_timeout {
        config.outbound.idle_timeout = t;
    }
    if let Some(file) = &outbound.ca_file {
        let file = base.join(file);
        if !file.is_file() {
            bail!(
                "{}: [outbound] ca_file {} is not a file",
                path.display(),
                file.display()
            );
        }
        config.outbound.ca_file = Some(file);
    }
    if let Some(file) = &args.outbound_ca_file {
        if !file.is_file() {
            bail!("--outbound-ca-file {} is not a file", file.display());
        }
        config.outbound.ca_file = Some(file.clone());
    }
    let calls = &file.calls;
    if let Some(t) = calls.time_slice {
        config.calls.time_slice = t;
    }
    if let Some(n) = calls.max_in_flight_per_core {
        config.calls.max_in_flight_per_core = n;
    }
    if let Some(n) = calls.max_in_flight_per_deployment {
        config.calls.max_in_flight_per_deployment = n;
    }
    if let Some(n) = calls.max_queued_per_core {
        config.calls.max_queued_per_core = n;
    }
    Ok(config)
}

fn pick_cores(count: Option<usize>) -> anyhow::Result<Vec<usize>> {
    let allowed = percore_rt_cpus();
    match count {
        None => Ok(allowed),
        Some(0) => bail!("--cores must be at least 1"),
        Some(n) if n > allowed.len() => bail!(
            "--cores {n}: this process may only run on {} CPUs ({allowed:?})",
            allowed.len()
        ),
        Some(n) => Ok(allowed[..n].to_vec()),
    }
}

fn percore_rt_cpus() -> Vec<usize> {
    ServeConfig::new(DEFAULT_LISTEN.parse().expect("valid"), Vec::new()).cores
}

/// Operator mode: no components and no configuration file, so everything comes from the state
/// directory and the admin API.
fn operator_mode(args: &Args) -> bool {
    args.components.is_empty() && args.config_file.is_none()
}

fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PERCORE_STATE") {
        return PathBuf::from(dir);
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("percore")
}

/// The state directory: `--state`, else the default one in operator mode, else none.
fn state_dir(args: &Args) -> Option<PathBuf> {
    args.state
        .clone()
        .or_else(|| operator_mode(args).then(default_state_dir))
}

/// The control plane's settings from the command line.
fn control_config(
    args: &Args,
    server: &Server,
    engine: percore_engine::EngineConfig,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<percore_control::ControlConfig> {
    let operator = operator_mode(args);
    let state = state_dir(args);
    let admin = match args.admin {
        Some(addr) => Some(addr),
        None if operator => Some(DEFAULT_ADMIN.parse()?),
        None => None,
    };
    let log = match args.invocation_log.as_deref() {
        None | Some("sqlite") => percore_control::LogTarget::Sqlite,
        Some("off") => percore_control::LogTarget::Off,
        Some(url)
            if url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.contains("host=") =>
        {
            percore_control::LogTarget::Postgres(url.to_owned())
        }
        Some(other) => {
            bail!("--invocation-log {other:?}: expected sqlite, off or a postgres:// URL")
        }
    };
    if log == percore_control::LogTarget::Sqlite && state.is_none() && args.invocation_log.is_some()
    {
        bail!("--invocation-log sqlite needs a state directory (--state DIR)");
    }
    Ok(percore_control::ControlConfig {
        admin,
        token: args.admin_token.clone(),
        state,
        log,
        engine,
        default_limits: args.guest.limits()?,
        max_upload: args.admin_max_upload_mb << 20,
        insecure_registries: args.registry.insecure.clone(),
        data_plane: Some(server.local_addr()),
        fixed: server.initial_deployments().to_vec(),
        stop,
    })
}

fn from_args(args: &Args) -> anyhow::Result<ServeConfig> {
    let single = args.components.len() == 1;
    let limits = args.guest.limits()?;
    let config_values = args.guest.config()?;
    let warmup = Warmup::parse(&args.warmup)?;
    let deployments = args
        .components
        .iter()
        .map(|item| {
            let (name, source) = match item.split_once('=') {
                Some((name, source)) => (name.to_owned(), source),
                None if percore_oci::is_oci(item) => {
                    (crate::admin::default_name(item)?, item.as_str())
                }
                None => {
                    let name = Path::new(item)
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_else(|| item.clone());
                    (name, item.as_str())
                }
            };
            let path = crate::oci::local_component(source, &args.registry)?;
            let prefix = if single {
                "/".to_owned()
            } else {
                format!("/{name}")
            };
            Ok(DeploymentSpec {
                name,
                component: path,
                routes: vec![RouteSpec {
                    host: None,
                    path_prefix: prefix,
                }],
                limits: limits.clone(),
                config: config_values.clone(),
                max_instances_per_core: percore_dataplane::DEFAULT_MAX_INSTANCES_PER_CORE,
                kind: None,
                warmup: warmup.clone(),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut config = ServeConfig::new(args.listen.unwrap_or(DEFAULT_LISTEN.parse()?), deployments);
    config.cores = pick_cores(args.cores)?;
    config.instances = args.instance_mode().unwrap_or_default();
    config.sqpoll = args.sqpoll;
    if args.portable {
        config.input = InputPreference::Portable;
    }
    if let Some(file) = &args.outbound_ca_file {
        if !file.is_file() {
            bail!("--outbound-ca-file {} is not a file", file.display());
        }
        config.outbound.ca_file = Some(file.clone());
    }
    Ok(config)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = match &args.config_file {
        Some(path) => from_file(path, &args)?,
        None => from_args(&args)?,
    };
    let mut config = config;
    #[cfg(feature = "misbehave")]
    {
        config.misbehave = args.misbehave.map(Into::into);
    }
    // One artifact cache: the state directory's when there is one (the control plane compiles
    // into it too), else the user's cache directory.
    if let Some(state) = state_dir(&args) {
        config.artifacts = state.join("artifacts");
    }
    if let Some(n) = args.record_queue {
        config.record_queue = n;
    }
    if let Some(n) = args.max_loaded_per_core {
        config.max_loaded_per_core = n;
    }
    let flag = crate::limits::as_flag;
    if let Some(ms) = args.idle_timeout_ms {
        config.idle_timeout = percore_config::millis("idle_timeout_ms", ms).map_err(flag)?;
    }
    if let Some(ms) = args.request_timeout_ms {
        config.request_timeout = percore_config::millis("request_timeout_ms", ms).map_err(flag)?;
    }
    let cores = config.cores.clone();
    let engine = config.engine.clone();
    let names: Vec<String> = config.deployments.iter().map(|d| d.name.clone()).collect();
    // The shards accept connections as soon as they start, before `Server::start` returns: a
    // SIGTERM from then on must stop the server cleanly, not kill the process.
    let early_stop = Arc::new(AtomicBool::new(false));
    let signals = [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT];
    for signal in signals {
        signal_hook::flag::register(signal, early_stop.clone())?;
    }
    let mut server = Server::start(config).context("the server did not start")?;
    let stop = server.stop_flag();
    for signal in signals {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    if early_stop.load(Ordering::Relaxed) {
        stop.store(true, Ordering::Relaxed);
    }
    let control_config = control_config(&args, &server, engine, stop.clone())?;
    let links = server.take_links();
    let control = match percore_control::Control::start(control_config, links) {
        Ok(control) => control,
        Err(e) => {
            stop.store(true, Ordering::Relaxed);
            server.wait();
            return Err(anyhow::anyhow!(e).context("the control plane did not start"));
        }
    };
    tracing::info!(cores = ?cores, deployments = ?names, restored = control.restored(), "serving");
    if let Some(addr) = control.admin_addr() {
        println!("percore: admin API on http://{addr}");
    }
    // The readiness line: scripts and the conformance runner wait for it.
    println!("percore: listening on http://{}", server.local_addr());
    std::io::Write::flush(&mut std::io::stdout())?;
    let counters = server.wait();
    control.finish();
    print_summary(&counters);
    Ok(ExitCode::SUCCESS)
}

fn print_summary(c: &Counters) {
    tracing::info!(
        requests = c.requests,
        guest_requests = c.guest_requests,
        status_2xx = c.status_2xx,
        status_4xx = c.status_4xx,
        status_5xx = c.status_5xx,
        faults_timeout = c.fault_timeout,
        faults_oom = c.fault_out_of_memory,
        faults_trap = c.fault_trap,
        faults_bad_response = c.fault_bad_response,
        faults_host = c.fault_host,
        bad_requests = c.bad_requests,
        connections = c.connections,
        request_copies = c.request_copies,
        request_bytes_copied = c.request_bytes_copied,
        "stopped"
    );
}

/// A configuration file deployment's outbound HTTP policy.
fn outbound_policy(
    d: &percore_config::Deployment,
    defaults: &OutboundPolicy,
) -> anyhow::Result<OutboundPolicy> {
    Ok(OutboundPolicy {
        allowed: AllowedHosts::parse(&d.allowed_outbound_hosts)
            .with_context(|| format!("deployment `{}`", d.name))?,
        timeout: d.outbound_timeout.unwrap_or(defaults.timeout),
        max_per_request: d
            .max_outbound_per_request
            .unwrap_or(defaults.max_per_request),
        max_response_bytes: d
            .max_outbound_response
            .unwrap_or(defaults.max_response_bytes),
    })
}
