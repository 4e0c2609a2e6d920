//! `percore argo-plugin`: the sidecar that makes percore an Argo Workflows executor plugin.
//!
//! Argo runs each executor plugin as a sidecar of a workflow's agent pod and calls it on
//! localhost (`POST /api/v1/template.execute`, with a token it writes to
//! `/var/run/argo/token`). This sidecar checks that token, then passes the call to a percore
//! host's admin API (which runs the template, see `percore_control`'s invoke gateway) with the
//! hosts' admin token. A host that does not answer gives 503, which Argo retries.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use percore_control::http::{AdminRequest, AdminResponse, read_request, respond};

/// Arguments of `percore argo-plugin`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where Argo's agent calls the plugin (the container's first port).
    #[arg(long, default_value = "127.0.0.1:19180")]
    listen: SocketAddr,
    /// A percore host's admin API (or a Service in front of several).
    #[arg(long, value_name = "URL")]
    upstream: String,
    /// The token Argo gives the plugin.
    #[arg(long, value_name = "FILE", default_value = "/var/run/argo/token")]
    argo_token_file: PathBuf,
    /// The hosts' admin token.
    #[arg(long, env = "PERCORE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// How long a call may take, seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

/// Calls passed on at once.
const MAX_IN_FLIGHT: usize = 64;
/// The largest body taken from Argo or from the host.
const MAX_BODY: usize = 16 << 20;

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let listener = TcpListener::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!(
        "percore argo-plugin: listening on http://{}, passing calls to {}",
        listener.local_addr()?,
        args.upstream
    );
    let args = Arc::new(args);
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(args.timeout)))
            .build(),
    );
    let in_flight = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        if in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
            in_flight.fetch_sub(1, Ordering::AcqRel);
            respond(
                &mut stream,
                &AdminResponse::error(503, "too many calls at once"),
            );
            continue;
        }
        let (args, agent, in_flight) = (args.clone(), agent.clone(), in_flight.clone());
        std::thread::spawn(move || {
            let response = match read_request(&mut stream, MAX_BODY) {
                Ok(request) => pass_on(&args, &agent, &request),
                Err(response) => response,
            };
            respond(&mut stream, &response);
            in_flight.fetch_sub(1, Ordering::AcqRel);
        });
    }
    Ok(ExitCode::SUCCESS)
}

fn pass_on(args: &Args, agent: &ureq::Agent, request: &AdminRequest) -> AdminResponse {
    if request.path != "/api/v1/template.execute" {
        // 404 tells Argo's agent this plugin has no such method.
        return AdminResponse::error(404, format!("no method {}", request.path));
    }
    let expected = match std::fs::read_to_string(&args.argo_token_file) {
        Ok(t) => t.trim().to_owned(),
        Err(e) => {
            return AdminResponse::error(
                503,
                format!(
                    "cannot read Argo's token {}: {e}",
                    args.argo_token_file.display()
                ),
            );
        }
    };
    let given = request
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if expected.is_empty() || given != expected {
        return AdminResponse::error(403, "not Argo's token for this plugin");
    }
    let url = format!(
        "{}/api/v1/template.execute",
        args.upstream.trim_end_matches('/')
    );
    let mut call = agent.post(&url).header("content-type", "application/json");
    if let Some(token) = args.admin_token.as_deref().filter(|t| !t.is_empty()) {
        call = call.header("authorization", &format!("Bearer {token}"));
    }
    match call.send(&request.body[..]) {
        Ok(mut response) => {
            let status = response.status().as_u16();
            match response
                .body_mut()
                .with_config()
                .limit(MAX_BODY as u64)
                .read_to_vec()
            {
                Ok(body) => AdminResponse {
                    status,
                    content_type: "application/json".into(),
                    headers: Vec::new(),
                    body,
                },
                Err(e) => AdminResponse::error(502, format!("reading {url}: {e}")),
            }
        }
        Err(e) => AdminResponse::error(503, format!("{url} did not answer: {e}")),
    }
}
