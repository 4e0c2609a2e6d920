//! Bare core modules over HTTP: the path segment after the route names the exported function
//! (optional when the module exports one function, or `_start`), the query's values are its
//! arguments in order (`/sum?5&2` or `/sum?a=5&b=2`), and the results are the body, one per
//! line. A call that cannot be made as asked is the client's mistake: 400 with the reason.

use std::sync::Arc;

use percore_engine::{BareHandler, Engine, Guest, Limits};

use super::{Call, Cx, Mapped, Outcome, fail, settle};
use crate::link::Ready;

/// Arguments taken from a query at most (no exported function takes more in practice).
const MAX_ARGS: usize = 64;

/// A bare module deployment on one core.
#[derive(Debug)]
pub(crate) struct BareBackend {
    pub(crate) guest: Mapped<BareHandler>,
    limits: Arc<Limits>,
}

impl BareBackend {
    pub(crate) fn load(engine: &Engine, ready: &Ready) -> Result<Self, percore_engine::Error> {
        Ok(Self {
            guest: Mapped::load(engine, &ready.artifact, |g| match g {
                Guest::Bare(h) => Some(h),
                _ => None,
            })?,
            limits: Arc::new(ready.spec.limits.clone()),
        })
    }

    pub(crate) fn run(&mut self, call: Call<'_, '_>, cx: &mut Cx<'_>) -> Outcome {
        let mut outcome = Outcome::new();
        outcome.cold = true;
        let handler = match self.guest.get(cx, &mut outcome) {
            Ok(handler) => handler,
            Err(fault) => return fail(&fault, call.deployment, call.id, cx, outcome),
        };
        let target = call.request.path_with_query;
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let rest = path.get(call.route_prefix.len()..).unwrap_or("");
        let name = rest.trim_matches('/');
        let args: Vec<&str> = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').map_or(pair, |(_, v)| v))
            .take(MAX_ARGS + 1)
            .collect();
        let called = if args.len() > MAX_ARGS {
            Err(percore_engine::Error::BadCall(format!(
                "more than {MAX_ARGS} arguments"
            )))
        } else {
            handler
                .pick((!name.is_empty()).then_some(name))
                .map(str::to_owned)
                .and_then(|function| handler.call(self.limits.clone(), &function, &args))
        };
        match called {
            Ok(invocation) => settle(invocation, call.deployment, call.id, cx, outcome),
            Err(e) => {
                cx.reply.simple(400, &[], &format!("{e}\n"));
                outcome.status = 400;
                outcome
            }
        }
    }
}
