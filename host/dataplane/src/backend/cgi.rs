//! WASI commands, CGI style: the command runs once per request with the body on its stdin and
//! the request in its environment; its stdout is the response.

use std::collections::BTreeMap;
use std::sync::Arc;

use percore_engine::{CgiHandler, CgiSite, Engine, Guest, Limits};

use super::{Call, Cx, Mapped, Outcome, Ran, SuspendedCall, fail, first_slice, settle};
use crate::ServeConfig;
use crate::link::Ready;

/// A command deployment on one core.
#[derive(Debug)]
pub(crate) struct CgiBackend {
    pub(crate) guest: Mapped<CgiHandler>,
    limits: Arc<Limits>,
    config: Arc<BTreeMap<String, String>>,
    /// `SERVER_PORT`.
    port: u16,
    /// `SERVER_NAME` when the request has no `Host`.
    address: String,
}

impl CgiBackend {
    pub(crate) fn load(
        engine: &Engine,
        config: &ServeConfig,
        ready: &Ready,
    ) -> Result<Self, percore_engine::Error> {
        Ok(Self {
            guest: Mapped::load(engine, &ready.artifact, |g| match g {
                Guest::Cgi(h) => Some(h),
                _ => None,
            })?,
            limits: Arc::new(ready.spec.limits.clone()),
            config: Arc::new(ready.spec.config.clone()),
            port: config.listen.port(),
            address: config.listen.ip().to_string(),
        })
    }

    /// Start the command for one request; if it ends within its first slice, write the
    /// response, else it is in flight.
    pub(crate) fn run(&mut self, call: Call<'_, '_>, cx: &mut Cx<'_>) -> Ran {
        let mut outcome = Outcome::new();
        outcome.cold = true;
        let handler = match self.guest.get(cx, &mut outcome) {
            Ok(handler) => handler,
            Err(fault) => return Ran::Done(fail(&fault, call.deployment, call.id, cx, outcome)),
        };
        let host = call
            .request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("host"))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map(strip_port);
        // Asked of the kernel per request: only commands are told it, and a command's fresh
        // instance costs far more than one getpeername.
        let remote = call
            .peer
            .and_then(|stream| stream.peer_addr().ok())
            .map(|addr| addr.ip().to_canonical().to_string())
            .unwrap_or_default();
        let site = CgiSite {
            route_prefix: call.route_prefix,
            server_name: host.unwrap_or(&self.address),
            server_port: self.port,
            remote_addr: &remote,
        };
        let running = handler.start(
            self.limits.clone(),
            self.config.clone(),
            call.request,
            &site,
            cx.slice,
        );
        match first_slice(running, outcome, SuspendedCall::Once, cx.waker) {
            Ok(((), invocation)) => {
                Ran::Done(settle(invocation, call.deployment, call.id, cx, outcome))
            }
            Err(suspended) => Ran::Yielded(suspended),
        }
    }
}

/// `example.com:8080` → `example.com`, keeping an IPv6 literal whole.
fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    }
}
