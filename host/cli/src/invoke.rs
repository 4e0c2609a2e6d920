//! `percore invoke`: one request through a guest of any kind, in-process; for a bare module,
//! one call of an exported function with `--args`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine as _;
use percore_engine::{CgiSite, Engine, EngineConfig, Guest, InputPreference, Invocation, Request};
use serde_json::json;

use crate::limits::GuestArgs;
use crate::logging;

/// Exit status when the guest faulted (trap, timeout, out of memory, bad response).
pub const GUEST_FAULT_EXIT: u8 = 3;

/// Arguments of `percore invoke`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The component (.wasm), a compiled artifact (from `percore compile`), component text, or
    /// `oci://REGISTRY/REPOSITORY[:TAG][@DIGEST]`.
    component: String,
    /// Request method.
    #[arg(short = 'X', long, default_value = "GET")]
    method: String,
    /// Request path with query.
    #[arg(long, default_value = "/")]
    path: String,
    /// A request header, `Name: value` (repeatable; order kept).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Request body.
    #[arg(short = 'd', long, conflicts_with = "body_file")]
    body: Option<String>,
    /// Read the request body from a file (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    body_file: Option<PathBuf>,
    /// Send the request through the portable path (canonical ABI) instead of the input region.
    #[arg(long)]
    portable: bool,
    /// Print the response (and any fault) as one JSON object.
    #[arg(long)]
    json: bool,
    /// Print only the response body.
    #[arg(long, conflicts_with = "json")]
    body_only: bool,
    /// Bare modules: the arguments of the function called (integers or numbers).
    #[arg(long, num_args = 1.., allow_negative_numbers = true, value_name = "ARG")]
    args: Vec<String>,
    /// Bare modules: the exported function to call (default: the only one, else `_start`).
    #[arg(long, value_name = "FUNCTION")]
    invoke: Option<String>,
    #[command(flatten)]
    guest: GuestArgs,
    #[command(flatten)]
    registry: crate::oci::RegistryArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let body = match (&args.body, &args.body_file) {
        (Some(text), _) => text.clone().into_bytes(),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
            buf
        }
        (None, Some(path)) => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        (None, None) => Vec::new(),
    };
    let headers = parse_headers(&args.headers)?;
    if !args.path.starts_with('/') {
        bail!("--path {:?}: a path starts with '/'", args.path);
    }
    let header_refs: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    let limits = Arc::new(args.guest.limits()?);
    let config = Arc::new(args.guest.config()?);

    let file = crate::oci::local_component(&args.component, &args.registry)?;
    let engine = Engine::new(EngineConfig::default())?;
    let guest = engine
        .load_file(&file)
        .with_context(|| format!("cannot load {}", args.component))?;
    let request = Request {
        method: &args.method,
        path_with_query: &args.path,
        headers: &header_refs,
        body: &body,
    };
    let preference = if args.portable {
        InputPreference::Portable
    } else {
        InputPreference::Region
    };
    let name = crate::admin::default_name(&args.component).unwrap_or_default();
    if !matches!(guest, Guest::Bare(_)) && (!args.args.is_empty() || args.invoke.is_some()) {
        bail!(
            "--args and --invoke are for bare modules; {} is a {} guest",
            args.component,
            guest.kind()
        );
    }
    let invocation = match &guest {
        Guest::Edge(handler) => handler.handle_fresh(limits, config, &request, preference),
        Guest::Http(handler) => handler.handle(limits, config, &request),
        Guest::HttpP3(handler) => handler.handle(limits, config, &request),
        Guest::Cgi(handler) => handler.handle(limits, config, &request, &CgiSite::default()),
        Guest::Bare(handler) => {
            let function = handler.pick(args.invoke.as_deref())?.to_owned();
            let call_args: Vec<&str> = args.args.iter().map(String::as_str).collect();
            let invocation = handler.call(limits, &function, &call_args)?;
            return print_bare(&invocation, args.json);
        }
    };
    if !args.json {
        logging::emit_guest_logs(&name, &invocation.logs, invocation.logs_dropped);
    }
    let mut out = std::io::stdout().lock();
    let code = match (&invocation.result, args.json) {
        (_, true) => {
            serde_json::to_writer_pretty(&mut out, &to_json(&invocation))?;
            writeln!(out)?;
            exit_code(&invocation)
        }
        (Ok(response), false) => {
            if !args.body_only {
                writeln!(out, "HTTP {}", response.status)?;
                for (name, value) in &response.headers {
                    write!(out, "{name}: ")?;
                    out.write_all(value)?;
                    writeln!(out)?;
                }
                writeln!(out)?;
            }
            out.write_all(&response.body)?;
            ExitCode::SUCCESS
        }
        (Err(fault), false) => {
            eprintln!(
                "error: {fault} (a host answers HTTP {})",
                fault.http_status()
            );
            ExitCode::from(GUEST_FAULT_EXIT)
        }
    };
    out.flush()?;
    Ok(code)
}

/// A bare call prints its results alone (`7`), or the JSON object.
fn print_bare(invocation: &Invocation, json: bool) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &to_json(invocation))?;
        writeln!(out)?;
    } else if let Ok(response) = &invocation.result {
        out.write_all(&response.body)?;
    } else if let Err(fault) = &invocation.result {
        eprintln!("error: {fault}");
    }
    out.flush()?;
    Ok(exit_code(invocation))
}

fn exit_code(invocation: &Invocation) -> ExitCode {
    match invocation.result {
        Ok(_) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(GUEST_FAULT_EXIT),
    }
}

fn parse_headers(raw: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    raw.iter()
        .map(|h| {
            let (name, value) = h
                .split_once(':')
                .with_context(|| format!("--header {h:?}: expected `Name: value`"))?;
            let name = name.trim();
            if name.is_empty() || name.contains(char::is_whitespace) {
                bail!("--header {h:?}: bad header name");
            }
            Ok((name.to_owned(), value.trim().to_owned()))
        })
        .collect()
}

fn body_json(body: &[u8]) -> (&'static str, serde_json::Value) {
    match std::str::from_utf8(body) {
        Ok(text) => ("body", json!(text)),
        Err(_) => (
            "body_base64",
            json!(base64::engine::general_purpose::STANDARD.encode(body)),
        ),
    }
}

fn to_json(invocation: &Invocation) -> serde_json::Value {
    let logs: Vec<_> = invocation
        .logs
        .iter()
        .map(|r| {
            json!({
                "level": r.level.as_str(),
                "message": r.message,
                "fields": r.fields,
                "source": format!("{:?}", r.source).to_lowercase(),
            })
        })
        .collect();
    let stats = &invocation.stats;
    let stats = json!({
        "input": format!("{:?}", stats.input).to_lowercase(),
        "cpu_us": stats.cpu.as_secs_f64() * 1e6,
        "wall_us": stats.wall.as_secs_f64() * 1e6,
        "request_copies": stats.request_copies,
        "request_bytes_copied": stats.request_bytes_copied,
    });
    match &invocation.result {
        Ok(response) => {
            let headers: Vec<_> = response
                .headers
                .iter()
                .map(|(n, v)| json!([n, String::from_utf8_lossy(v)]))
                .collect();
            let (key, body) = body_json(&response.body);
            let mut value = json!({
                "status": response.status,
                "headers": headers,
                "logs": logs,
                "stats": stats,
            });
            value[key] = body;
            value
        }
        Err(fault) => json!({
            "fault": {
                "kind": fault.kind(),
                "message": fault.to_string(),
                "status": fault.http_status(),
            },
            "logs": logs,
            "stats": stats,
        }),
    }
}
