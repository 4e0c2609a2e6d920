//! `wasi:http` components: a fresh instance per request; the body the shard already holds is
//! the incoming request's body, the response body is read back up to the deployment's limit.

use std::collections::BTreeMap;
use std::sync::Arc;

use percore_engine::{Engine, Guest, HttpHandler, Limits};

use super::{Call, Cx, Mapped, Outcome, fail, settle};
use crate::link::Ready;

/// A `wasi:http` deployment on one core.
#[derive(Debug)]
pub(crate) struct HttpBackend {
    pub(crate) guest: Mapped<HttpHandler>,
    limits: Arc<Limits>,
    config: Arc<BTreeMap<String, String>>,
}

impl HttpBackend {
    pub(crate) fn load(engine: &Engine, ready: &Ready) -> Result<Self, percore_engine::Error> {
        Ok(Self {
            guest: Mapped::load(engine, &ready.artifact, |g| match g {
                Guest::Http(h) => Some(h),
                _ => None,
            })?,
            limits: Arc::new(ready.spec.limits.clone()),
            config: Arc::new(ready.spec.config.clone()),
        })
    }

    pub(crate) fn run(&mut self, call: Call<'_, '_>, cx: &mut Cx<'_>) -> Outcome {
        // Every request instantiates: each one is a cold start in the records' sense.
        let mut outcome = Outcome::new();
        outcome.cold = true;
        let handler = match self.guest.get(cx, &mut outcome) {
            Ok(handler) => handler,
            Err(fault) => return fail(&fault, call.deployment, call.id, cx, outcome),
        };
        let invocation = handler.handle(self.limits.clone(), self.config.clone(), call.request);
        settle(invocation, call.deployment, call.id, cx, outcome)
    }
}
