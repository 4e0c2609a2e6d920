//! `wasi:http@0.3` (WASIp3) components: a fresh instance per request, on the core's WASIp3
//! engine; the body the shard already holds is the request's body, the response body is read
//! back up to the deployment's limit.

use std::collections::BTreeMap;
use std::sync::Arc;

use percore_engine::{Engine, Guest, HttpP3Handler, Limits};

use super::{Call, Cx, Mapped, Outcome, Ran, SuspendedCall, fail, first_slice, settle};
use crate::link::Ready;

/// A `wasi:http@0.3` deployment on one core.
#[derive(Debug)]
pub(crate) struct HttpP3Backend {
    pub(crate) guest: Mapped<HttpP3Handler>,
    limits: Arc<Limits>,
    config: Arc<BTreeMap<String, String>>,
}

impl HttpP3Backend {
    pub(crate) fn load(engine: &Engine, ready: &Ready) -> Result<Self, percore_engine::Error> {
        Ok(Self {
            guest: Mapped::load(engine, &ready.artifact, |g| match g {
                Guest::HttpP3(h) => Some(h),
                _ => None,
            })?,
            limits: Arc::new(ready.spec.limits.clone()),
            config: Arc::new(ready.spec.config.clone()),
        })
    }

    /// Start one request on a fresh instance; if it ends within its first slice, write the
    /// response, else it is in flight.
    pub(crate) fn run(&mut self, call: Call<'_, '_>, cx: &mut Cx<'_>) -> Ran {
        let mut outcome = Outcome::new();
        outcome.cold = true;
        let handler = match self.guest.get(cx, &mut outcome) {
            Ok(handler) => handler,
            Err(fault) => return Ran::Done(fail(&fault, call.deployment, call.id, cx, outcome)),
        };
        let running = handler.start(
            self.limits.clone(),
            self.config.clone(),
            call.request,
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
