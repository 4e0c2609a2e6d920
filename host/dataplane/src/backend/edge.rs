//! `edge:handler` components: the request goes into the guest's input region (or through the
//! portable path), on an instance from the deployment's pool.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use percore_engine::{
    Engine, Fault, Handler, InputPreference, Instance, Limits, Request, StreamedBody,
};

use super::{Call, Cx, Outcome, Ran, StreamInto, SuspendedCall, fail, first_slice, settle};
use crate::ServeConfig;
use crate::counters::Counters;
use crate::link::Ready;
use crate::pool::InstancePool;

/// An `edge:handler` deployment on one core.
#[derive(Debug)]
pub(crate) struct EdgeHandler {
    /// The artifact, mapped again after an LRU eviction.
    artifact: PathBuf,
    /// The mapped component; `None` while unmapped on this core.
    handler: Option<Handler>,
    pool: InstancePool,
    limits: Arc<Limits>,
    config: Arc<BTreeMap<String, String>>,
    input: InputPreference,
}

/// A body being received into an instance's input region, and that instance.
#[derive(Debug)]
pub(crate) struct Streaming {
    instance: Instance,
    body: StreamedBody,
    /// The instance was created for this request.
    cold: bool,
}

impl Streaming {
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.instance.stream_body(&mut self.body, bytes);
    }

    pub(crate) fn len(&self) -> usize {
        self.body.len()
    }

    pub(crate) fn copy_out(&self) -> Vec<u8> {
        self.instance.streamed_bytes(&self.body)
    }
}

impl EdgeHandler {
    pub(crate) fn load(
        engine: &Engine,
        config: &ServeConfig,
        ready: &Ready,
    ) -> Result<Self, percore_engine::Error> {
        let handler = engine.load_artifact(&ready.artifact)?;
        let spec = &ready.spec;
        Ok(Self {
            artifact: ready.artifact.clone(),
            handler: Some(handler),
            pool: InstancePool::new(
                config.instances,
                &ready.resettable,
                spec.max_instances_per_core,
            )
            .with_warmup(spec.warmup.clone(), config.input),
            limits: Arc::new(spec.limits.clone()),
            config: Arc::new(spec.config.clone()),
            input: config.input,
        })
    }

    pub(crate) fn describe(&self) -> String {
        self.pool.describe()
    }

    pub(crate) fn is_mapped(&self) -> bool {
        self.handler.is_some()
    }

    pub(crate) fn unmap(&mut self) {
        self.handler = None;
        self.pool.clear();
    }

    #[cfg(feature = "misbehave")]
    pub(crate) fn pool_mut(&mut self) -> &mut InstancePool {
        &mut self.pool
    }

    /// Take an instance and have it reserve an input region for the request's head and a body
    /// of `body_len` bytes. `None`: not mapped on this core, no region (portable path), or the
    /// instance failed; the body is then buffered by the host.
    pub(crate) fn begin_stream(
        &mut self,
        request: &Request<'_>,
        body_len: usize,
        deployment: &str,
        counters: &mut Counters,
    ) -> Option<Streaming> {
        if self.input != InputPreference::Region {
            return None;
        }
        let handler = self.handler.as_ref()?;
        let taken = self
            .pool
            .take(handler, &self.limits, &self.config, deployment, counters)
            .ok()?;
        let mut instance = taken.instance;
        match instance.begin_streamed(request, body_len) {
            Ok(Some(body)) => Some(Streaming {
                instance,
                body,
                cold: taken.cold,
            }),
            // No region: the instance goes back unused.
            Ok(None) => {
                self.pool.give_back(instance, counters);
                None
            }
            Err(_) => None,
        }
    }

    /// Start one request on an instance (the one its body was streamed into, or one from the
    /// pool). If it ends within its first time slice, give the instance back and write the
    /// response or the fault; else it is suspended with its instance.
    pub(crate) fn run(&mut self, call: Call<'_, '_>, cx: &mut Cx<'_>) -> Ran {
        let Call {
            request,
            streamed,
            id,
            deployment,
            ..
        } = call;
        let mut outcome = Outcome::new();
        let (taken, streamed_body) = match streamed.map(|s| s.into) {
            Some(StreamInto::Edge(s)) => {
                outcome.cold = s.cold;
                (Ok(s.instance), Some(s.body))
            }
            None => (self.take(deployment, cx, &mut outcome), None),
        };
        let instance = match taken {
            Ok(instance) => instance,
            Err(fault) => return Ran::Done(fail(&fault, deployment, id, cx, outcome)),
        };
        let running = match streamed_body {
            Some(body) => instance.start_streamed(request, body, cx.slice),
            None => instance.start(request, self.input, cx.slice),
        };
        match first_slice(running, outcome, SuspendedCall::Edge, cx.waker) {
            Ok((instance, invocation)) => {
                self.pool.give_back(instance, cx.counters);
                Ran::Done(settle(invocation, deployment, id, cx, outcome))
            }
            Err(suspended) => Ran::Yielded(suspended),
        }
    }

    /// An instance whose call ended after yielding.
    pub(crate) fn give_back(&mut self, instance: Instance, counters: &mut Counters) {
        self.pool.give_back(instance, counters);
    }

    /// An instance from the pool, mapping the component first if this core has not (or no
    /// longer) mapped it.
    fn take(
        &mut self,
        deployment: &str,
        cx: &mut Cx<'_>,
        outcome: &mut Outcome,
    ) -> Result<Instance, Fault> {
        if self.handler.is_none() {
            let handler = cx
                .engine
                .load_artifact(&self.artifact)
                .map_err(|e| Fault::Host {
                    message: format!("cannot map the artifact: {e}"),
                })?;
            self.handler = Some(handler);
            cx.counters.artifacts_loaded += 1;
            outcome.cold = true;
        }
        let handler = self.handler.as_ref().expect("mapped above");
        let taken = self
            .pool
            .take(handler, &self.limits, &self.config, deployment, cx.counters)?;
        outcome.cold |= taken.cold;
        Ok(taken.instance)
    }
}
