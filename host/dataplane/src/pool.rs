//! One deployment's instances on one core: where a request's instance comes from and where it
//! goes afterwards. The pool owns its policy (fresh, reset or keep) and is the only code that
//! creates, resets or drops pooled instances, and the only code that counts them.

use std::collections::BTreeMap;
use std::sync::Arc;

use percore_engine::{
    Fault, Handler, HttpHandler, HttpInstance, InputPreference, Instance, Limits, NotResettable,
    ResetError, ResetStats, Warmup,
};

use crate::InstanceMode;
use crate::counters::Counters;

/// Requests one pooled instance serves before it is replaced. A reset restores linear memory,
/// not the host-side tables of the store (handles a guest took, such as WASI streams), so they
/// are bounded by replacing the instance now and then.
pub(crate) const MAX_REQUESTS_PER_INSTANCE: u64 = 10_000;

/// An instance a pool can hold: made from a loaded guest, reset to a snapshot, dropped when
/// it faulted or wore out.
pub(crate) trait Pooled: Sized {
    /// What instances are made from.
    type Source;
    fn create(
        source: &Self::Source,
        limits: &Arc<Limits>,
        config: &Arc<BTreeMap<String, String>>,
    ) -> Result<Self, Fault>;
    /// Run the deployment's warm-up requests, before the snapshot.
    fn warm_up(&mut self, warmup: &Warmup, input: InputPreference) -> Result<(), ResetError>;
    fn prepare_reset(&mut self) -> Result<(), ResetError>;
    fn reset(&mut self) -> Result<ResetStats, ResetError>;
    fn is_usable(&self) -> bool;
    fn requests(&self) -> u64;
}

impl Pooled for Instance {
    type Source = Handler;
    fn create(
        handler: &Handler,
        limits: &Arc<Limits>,
        config: &Arc<BTreeMap<String, String>>,
    ) -> Result<Self, Fault> {
        handler.instantiate(limits.clone(), config.clone())
    }
    fn warm_up(&mut self, warmup: &Warmup, input: InputPreference) -> Result<(), ResetError> {
        Instance::warm_up(self, warmup, input).map(drop)
    }
    fn prepare_reset(&mut self) -> Result<(), ResetError> {
        Instance::prepare_reset(self)
    }
    fn reset(&mut self) -> Result<ResetStats, ResetError> {
        Instance::reset(self)
    }
    fn is_usable(&self) -> bool {
        Instance::is_usable(self)
    }
    fn requests(&self) -> u64 {
        Instance::requests(self)
    }
}

impl Pooled for HttpInstance {
    type Source = HttpHandler;
    fn create(
        handler: &HttpHandler,
        limits: &Arc<Limits>,
        config: &Arc<BTreeMap<String, String>>,
    ) -> Result<Self, Fault> {
        handler.instantiate(limits.clone(), config.clone())
    }
    fn warm_up(&mut self, warmup: &Warmup, _: InputPreference) -> Result<(), ResetError> {
        HttpInstance::warm_up(self, warmup).map(drop)
    }
    fn prepare_reset(&mut self) -> Result<(), ResetError> {
        HttpInstance::prepare_reset(self)
    }
    fn reset(&mut self) -> Result<ResetStats, ResetError> {
        HttpInstance::reset(self)
    }
    fn is_usable(&self) -> bool {
        HttpInstance::is_usable(self)
    }
    fn requests(&self) -> u64 {
        HttpInstance::requests(self)
    }
}

/// What a pool does with an instance after its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    /// Drop it.
    Fresh,
    /// Restore its memory to the snapshot taken after instantiation, then keep it.
    Reset,
    /// Keep it as it is.
    Keep,
}

/// A per-core, per-deployment pool of instances.
#[derive(Debug)]
pub(crate) struct InstancePool<I = Instance> {
    policy: Policy,
    /// Why a pool asked to reset serves fresh instances instead.
    fresh_because: Option<NotResettable>,
    idle: Vec<I>,
    max_idle: usize,
    /// Requests each new instance runs before its snapshot (reset mode only).
    warmup: Warmup,
    /// How requests (and so the warm-up requests) reach the guest.
    input: InputPreference,
    /// Pooled instances in reset mode skip the reset (the suite's misbehaviour tests).
    #[cfg(feature = "misbehave")]
    pub(crate) skip_reset: bool,
}

/// An instance taken from a pool.
#[derive(Debug)]
pub(crate) struct Taken<I = Instance> {
    pub(crate) instance: I,
    /// It was created for this request.
    pub(crate) cold: bool,
}

impl<I: Pooled> InstancePool<I> {
    /// A pool in `mode` for a component that can (or cannot, and why) be reset in place,
    /// keeping at most `max_idle` instances.
    pub(crate) fn new(
        mode: InstanceMode,
        resettable: &Result<(), NotResettable>,
        max_idle: usize,
    ) -> Self {
        let (policy, fresh_because) = match mode {
            InstanceMode::Fresh => (Policy::Fresh, None),
            InstanceMode::Keep => (Policy::Keep, None),
            InstanceMode::Reset => match resettable {
                Err(why) => (Policy::Fresh, Some(why.clone())),
                Ok(()) if !percore_rt::pagemap::supported() => {
                    (Policy::Fresh, Some(NotResettable::NoPagemapScan))
                }
                Ok(()) => (Policy::Reset, None),
            },
        };
        Self {
            policy,
            fresh_because,
            idle: Vec::new(),
            max_idle,
            warmup: Warmup::default(),
            input: InputPreference::default(),
            #[cfg(feature = "misbehave")]
            skip_reset: false,
        }
    }

    /// Have each new instance run `warmup` (sent as `input` says) before its snapshot, in
    /// reset mode; in the other modes there is no snapshot to keep its work.
    pub(crate) fn with_warmup(mut self, warmup: Warmup, input: InputPreference) -> Self {
        self.warmup = warmup;
        self.input = input;
        self
    }

    /// How requests run, for the log: `reset`, `reset (after N warm-up requests)`, `keep`,
    /// `fresh`, or `fresh (cannot be reset: why)`.
    pub(crate) fn describe(&self) -> String {
        match (self.policy, &self.fresh_because) {
            (Policy::Fresh, Some(why)) => format!("fresh (cannot be reset: {why})"),
            (Policy::Fresh, None) => "fresh".into(),
            (Policy::Reset, _) if !self.warmup.is_empty() => {
                let n = self.warmup.requests().len();
                let s = if n == 1 { "" } else { "s" };
                format!("reset (after {n} warm-up request{s})")
            }
            (Policy::Reset, _) => "reset".into(),
            (Policy::Keep, _) => "keep".into(),
        }
    }

    /// An instance for one request: an idle one, else a new one (warmed up, then with its
    /// snapshot taken, in reset mode). If the warm-up or the snapshot fails, the pool serves
    /// fresh instances from then on, and this request still gets an instance.
    pub(crate) fn take(
        &mut self,
        handler: &I::Source,
        limits: &Arc<Limits>,
        config: &Arc<BTreeMap<String, String>>,
        deployment: &str,
        counters: &mut Counters,
    ) -> Result<Taken<I>, Fault> {
        if let Some(instance) = self.idle.pop() {
            return Ok(Taken {
                instance,
                cold: false,
            });
        }
        counters.instances_created += 1;
        let mut instance = I::create(handler, limits, config)?;
        if self.policy == Policy::Reset
            && let Err(why) = instance
                .warm_up(&self.warmup, self.input)
                .and_then(|()| instance.prepare_reset())
        {
            // It would fail again: serve this deployment fresh from now on.
            tracing::warn!(
                deployment,
                "instances cannot be reset, serving fresh ones: {why}"
            );
            self.policy = Policy::Fresh;
            // One that ran warm-up requests is not fresh either.
            if !instance.is_usable() || !self.warmup.is_empty() {
                instance = I::create(handler, limits, config)?;
            }
        }
        Ok(Taken {
            instance,
            cold: true,
        })
    }

    /// An instance whose request is done: reset and keep it, keep it, or drop it, as the policy
    /// says. Faulted, grown or worn instances are always dropped.
    pub(crate) fn give_back(&mut self, mut instance: I, counters: &mut Counters) {
        if !instance.is_usable()
            || instance.requests() >= MAX_REQUESTS_PER_INSTANCE
            || self.idle.len() >= self.max_idle
        {
            return;
        }
        let keep = match self.policy {
            Policy::Fresh => false,
            Policy::Keep => true,
            #[cfg(feature = "misbehave")]
            Policy::Reset if self.skip_reset => true,
            Policy::Reset => match instance.reset() {
                Ok(stats) => {
                    counters.instance_resets += 1;
                    counters.reset_pages_copied += stats.pages_copied as u64;
                    true
                }
                // Grown memory, typically: the instance is replaced.
                Err(_) => false,
            },
        };
        if keep {
            self.idle.push(instance);
        }
    }

    /// Drop every idle instance.
    pub(crate) fn clear(&mut self) {
        self.idle.clear();
    }

    /// Move `other`'s idle instances into this pool (the suite's misbehaviour tests: one
    /// deployment's instances handed to another).
    #[cfg(feature = "misbehave")]
    pub(crate) fn take_idle_from(&mut self, other: &mut InstancePool<I>) {
        self.idle.append(&mut other.idle);
    }
}
