//! `wasi:http` components: an instance from the deployment's pool (reset to its snapshot after
//! each request when the component qualifies, else fresh); the body the shard already holds is
//! the incoming request's body, the response body is read back up to the deployment's limit.

use std::collections::BTreeMap;
use std::sync::Arc;

use percore_engine::{Engine, Guest, HttpHandler, HttpInstance, Limits};

use super::{Call, Cx, Mapped, Outcome, Ran, SuspendedCall, fail, first_slice, settle};
use crate::ServeConfig;
use crate::counters::Counters;
use crate::link::Ready;
use crate::pool::InstancePool;

/// A `wasi:http` deployment on one core.
#[derive(Debug)]
pub(crate) struct HttpBackend {
    pub(crate) guest: Mapped<HttpHandler>,
    pool: InstancePool<HttpInstance>,
    limits: Arc<Limits>,
    config: Arc<BTreeMap<String, String>>,
}

impl HttpBackend {
    pub(crate) fn load(
        engine: &Engine,
        config: &ServeConfig,
        ready: &Ready,
    ) -> Result<Self, percore_engine::Error> {
        Ok(Self {
            guest: Mapped::load(engine, &ready.artifact, |g| match g {
                Guest::Http(h) => Some(h),
                _ => None,
            })?,
            pool: InstancePool::new(
                config.instances,
                &ready.resettable,
                ready.spec.max_instances_per_core,
            )
            .with_warmup(ready.spec.warmup.clone(), config.input),
            limits: Arc::new(ready.spec.limits.clone()),
            config: Arc::new(ready.spec.config.clone()),
        })
    }

    pub(crate) fn describe(&self) -> String {
        self.pool.describe()
    }

    /// Drop the instances and the mapping (LRU).
    pub(crate) fn unmap(&mut self) {
        self.guest.unmap();
        self.pool.clear();
    }

    /// Start one request on an instance from the pool; if it ends within its first slice,
    /// give the instance back and write the response, else it is in flight.
    pub(crate) fn run(&mut self, call: Call<'_, '_>, cx: &mut Cx<'_>) -> Ran {
        let mut outcome = Outcome::new();
        let handler = match self.guest.get(cx, &mut outcome) {
            Ok(handler) => handler,
            Err(fault) => return Ran::Done(fail(&fault, call.deployment, call.id, cx, outcome)),
        };
        let taken = self.pool.take(
            handler,
            &self.limits,
            &self.config,
            call.deployment,
            cx.counters,
        );
        let instance = match taken {
            Ok(taken) => {
                outcome.cold |= taken.cold;
                taken.instance
            }
            Err(fault) => return Ran::Done(fail(&fault, call.deployment, call.id, cx, outcome)),
        };
        let running = instance.start(call.request, cx.slice);
        match first_slice(running, outcome, SuspendedCall::Http, cx.waker) {
            Ok((instance, invocation)) => {
                self.pool.give_back(instance, cx.counters);
                Ran::Done(settle(invocation, call.deployment, call.id, cx, outcome))
            }
            Err(suspended) => Ran::Yielded(suspended),
        }
    }

    /// An instance whose call ended after yielding.
    pub(crate) fn give_back(&mut self, instance: HttpInstance, counters: &mut Counters) {
        self.pool.give_back(instance, counters);
    }
}
