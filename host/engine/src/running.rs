//! Guest calls that yield at the end of each time slice, for the caller to poll again when it
//! chooses (the data plane's shard, between its other work).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::Invocation;
use crate::budget::SliceCpu;
use crate::host::HostState;

/// How long a call that can yield runs before it does, in ticks of the engine's epoch clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeSlice {
    ticks: u32,
}

impl TimeSlice {
    /// `slice` of running time on an engine whose epoch ticks every `tick`: a whole number of
    /// ticks, at least one. A slice ends at a tick, so it runs at most `slice` rounded up to
    /// the tick (less for the first tick of a slice, which comes sooner).
    pub fn new(slice: Duration, tick: Duration) -> Self {
        let ticks = slice.as_nanos().div_ceil(tick.as_nanos().max(1));
        Self {
            ticks: u32::try_from(ticks).unwrap_or(u32::MAX).max(1),
        }
    }

    /// Make the call about to run on the store whose state is `state` yield every slice;
    /// returns what [`Running::new`] needs of it.
    pub(crate) fn apply(self, state: &mut HostState) -> (Arc<SliceCpu>, Instant) {
        state.clock.slice = Some(self.ticks);
        (state.slices.clone(), state.clock.wall_start)
    }
}

/// One request running as a call that yields at the end of each time slice (an epoch tick
/// past the slice): the caller polls it again when it chooses, so that other work runs between
/// slices. The CPU budget and the wall deadline hold across slices; the CPU time charged is the
/// sum of the slices'. The call owns what it runs on (an instance, or nothing for a command
/// that runs once) and gives it back at the end.
pub struct Running<I> {
    future: Pin<Box<dyn Future<Output = (I, Invocation)> + Send>>,
    /// Drives the call's timers and tasks (wasi:http and commands: wasmtime's WASI is built on
    /// tokio); `None` for calls that need none.
    runtime: Option<Arc<tokio::runtime::Runtime>>,
    /// It has been polled before: the next poll resumes it.
    started: bool,
    /// Its CPU time across polls, shared with its store's epoch callback.
    slices: Arc<SliceCpu>,
    /// When its clock started.
    wall_start: Instant,
}

impl<I> std::fmt::Debug for Running<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl<I> Running<I> {
    /// The call `future` makes on a store whose clock started at `wall_start` and whose CPU
    /// time across polls is `slices`.
    pub(crate) fn new(
        future: impl Future<Output = (I, Invocation)> + Send + 'static,
        runtime: Option<Arc<tokio::runtime::Runtime>>,
        slices: Arc<SliceCpu>,
        wall_start: Instant,
    ) -> Self {
        Self {
            future: Box::pin(future),
            runtime,
            started: false,
            slices,
            wall_start,
        }
    }

    /// Run the call for one slice. `Ready`: it ended, with what it ran on and its outcome.
    /// `Pending`: it yielded (or waits for a timer of its own); poll it again to go on.
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<(I, Invocation)> {
        let first = !std::mem::replace(&mut self.started, true);
        if !first {
            self.slices.poll_started();
        }
        let polled = match &self.runtime {
            None => self.future.as_mut().poll(cx),
            // One slice inside the runtime, then, if the call is not done, one turn of the
            // runtime's scheduler: its tasks run and its timers (the wall deadline's among
            // them) fire. The call is polled with the caller's waker, so what it waits on
            // (a yield, a timer, a task) wakes it through the caller; between the call's
            // polls the caller turns the runtime ([`crate::Engine::turn_runtime`]).
            Some(runtime) => {
                let future = &mut self.future;
                runtime.block_on(async {
                    let polled = future.as_mut().poll(cx);
                    if polled.is_pending() {
                        tokio::task::yield_now().await;
                    }
                    polled
                })
            }
        };
        if polled.is_pending() {
            if first {
                self.slices.first_poll_ended(self.wall_start.elapsed());
            } else {
                self.slices.poll_ended();
            }
        }
        polled
    }
}

/// Drive a call that cannot yield (its clock has no slice) to its end.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}
